"""Configuration, tokens, the gate and the cost model, without sockets."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from progressbench.reports.gate import SATURATED_NOTE, Rule, apply_rules, compare_baseline, load_rules

from progressbench.app.gate_rules import builtin_rules
from progressbench.app.judging import Judgement, warnings_of
from progressbench.app.results import load_summary
from progressbench.core import tokens
from progressbench.core.config import build_run_config, from_environment, split_list
from progressbench.core.errors import ConfigError, ResultsError
from tests.unit.summaries import make_cell

SECRET = "s" * 32


def test_errors_name_the_key() -> None:
    """A bad value is reported with the key it belongs to."""
    with pytest.raises(ConfigError, match="users"):
        build_run_config({"users": 0})
    with pytest.raises(ConfigError, match="transports"):
        build_run_config({"transports": ()})


def test_database_url_from_environment_is_checked() -> None:
    """A DATABASE_URL that is not a postgres URL is refused with the key's name."""
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        from_environment({"DATABASE_URL": "mysql://x"})
    assert from_environment({"DATABASE_URL": "postgresql://h/db"}) == {"database_url": "postgresql://h/db"}


def test_split_list() -> None:
    """Comma lists tolerate spaces and empty items."""
    assert split_list(" a, b,,c ") == ("a", "b", "c")


def test_token_reads_only_its_job_of_its_owner() -> None:
    """A job token authorises that job for that owner and nothing else."""
    job, other = uuid.uuid4(), uuid.uuid4()
    token = tokens.issue(SECRET, "alice", job)
    assert tokens.authorize(SECRET, f"Bearer {token}", job, "alice").job_id == job
    with pytest.raises(tokens.TokenRejected) as exc:
        tokens.authorize(SECRET, f"Bearer {token}", other, "alice")
    assert exc.value.status == 404
    with pytest.raises(tokens.TokenRejected) as exc:
        tokens.authorize(SECRET, f"Bearer {token}", job, "mallory")
    assert exc.value.status == 404


def test_bad_tokens_are_401() -> None:
    """Missing, malformed, forged and expired tokens are all 401."""
    job = uuid.uuid4()
    for header in (
        None,
        "Basic abc",
        "Bearer ",
        "Bearer not-a-jwt",
        f"Bearer {tokens.issue('x' * 32, 'alice', job)}",
        f"Bearer {tokens.issue(SECRET, 'alice', job, ttl_s=-10)}",
    ):
        with pytest.raises(tokens.TokenRejected) as exc:
            tokens.authorize(SECRET, header, job, "alice")
        assert exc.value.status == 401


GOOD = {
    "sessions": 10,
    "delivery_ratio": 1.0,
    "terminal_ratio": 1.0,
    "job_terminal_ratio": 1.0,
    "lost": 0,
    "duplicates": 0,
    "foreign_events": 0,
    "canary_probes": 3,
    "latency_ms": {"p50": 10.0, "p95": 20.0, "p99": 30.0},
}
CELL = make_cell("polling", "clean", **GOOD)


def test_built_in_rules_pass_a_good_cell_and_fail_a_foreign_event() -> None:
    """foreign_events must be 0 in every cell; polling must deliver the terminal event."""
    rules = builtin_rules()
    assert all(v.ok for v in apply_rules([CELL], rules))
    bad = make_cell("polling", "clean", **{**GOOD, "foreign_events": 1, "job_terminal_ratio": 0.9})
    failed = [v.rule for v in apply_rules([bad], rules) if not v.ok]
    assert any("foreign_events" in r for r in failed) and any("job_terminal_ratio" in r for r in failed)


def test_a_failure_on_a_saturated_cell_still_fails_and_says_so() -> None:
    """A saturated cell measured the machine: its failures stay failures, labelled as such."""
    bad = {**GOOD, "foreign_events": 1}
    saturated = make_cell("polling", "clean", **bad, saturated=True)
    [plain, labelled] = [
        [v for v in apply_rules([cell], builtin_rules()) if not v.ok]
        for cell in (make_cell("polling", "clean", **bad), saturated)
    ]
    assert [v.rule for v in plain] == [v.rule for v in labelled] != []
    assert all(SATURATED_NOTE in v.note and v.saturated for v in labelled)
    assert not any(SATURATED_NOTE in v.note or v.saturated for v in plain)
    judgement = Judgement(
        verdicts=apply_rules([saturated], builtin_rules()), partial=False, other_machine=False
    )
    warning = judgement.saturation_warning()
    assert warning is not None and "polling × clean" in warning
    assert warning in warnings_of(judgement)
    assert Judgement(verdicts=plain, partial=False, other_machine=False).saturation_warning() is None


def test_required_rule_fails_when_its_cell_was_not_run() -> None:
    """A gate cannot pass because nothing was measured."""
    rule = Rule(transport="sse", metric="lost", op="==", value=0, required=True)
    verdicts = apply_rules([CELL], [rule])
    assert [v.ok for v in verdicts] == [False] and verdicts[0].note == "not run"


def test_baseline_catches_regressions() -> None:
    """Lower delivery or more loss per session than the baseline fails."""
    worse = make_cell("polling", "clean", **{**GOOD, "delivery_ratio": 0.9, "lost": 3})
    failed = [v.rule for v in compare_baseline([worse], [CELL]) if not v.ok]
    assert any(r.startswith("delivery_ratio") for r in failed) and any(r.startswith("lost") for r in failed)
    assert all(v.ok for v in compare_baseline([CELL], [CELL]))


def test_bad_rules_file_is_a_config_error(tmp_path: Path) -> None:
    """A rules file with an unknown operator names the problem."""
    path = tmp_path / "r.toml"
    path.write_text('[[rule]]\nmetric = "lost"\nop = "~"\nvalue = 0\n')
    with pytest.raises(ConfigError, match="op"):
        load_rules(path)


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    """Results of an unknown schema version are refused, not misread."""
    (tmp_path / "summary.json").write_text('{"schema_version": 99}')
    with pytest.raises(ResultsError, match="schema_version"):
        load_summary(tmp_path)


def test_supabase_environment_becomes_client_options_and_a_secret_kept_out_of_results() -> None:
    """SUPABASE_* feed the watchers and the token secret; the secret is never dumped."""
    found = from_environment(
        {
            "SUPABASE_URL": "https://x.supabase.co",
            "SUPABASE_ANON_KEY": "anon",
            "SUPABASE_JWT_SECRET": "s" * 40,
        }
    )
    assert found["client_options"] == {"supabase_url": "https://x.supabase.co", "supabase_anon_key": "anon"}
    config = build_run_config({**found, "transports": ("realtime",)})
    assert config.token_secret == "s" * 40
    dumped = config.model_dump(mode="json")
    assert "token_secret" not in dumped and "s" * 40 not in str(dumped) and "s" * 40 not in repr(config)


def test_a_rule_may_name_several_profiles() -> None:
    """profile = [..] applies the rule to each listed profile and no other."""
    rule = Rule(transport="sse", profile=["tunnel", "handoff"], metric="lost", op="==", value=0)
    cells = [make_cell("sse", p, **{**GOOD, "lost": 1}) for p in ("tunnel", "handoff", "cgnat")]
    assert [v.cell for v in apply_rules(cells, [rule]) if not v.ok] == ["sse × tunnel", "sse × handoff"]
