"""The RLS checks of a batch: grouped by identity, each (row, identity) once, one query text."""

from __future__ import annotations

import pytest
from progressbench.transports.realtime import rls

ALICE = rls.Identity("authenticated", '{"sub":"alice","role":"authenticated"}')
ALICE_OTHER_TOKEN = rls.Identity("authenticated", '{"sub":"alice","role":"authenticated","sid":"2"}')
ANON = rls.Identity("anon", '{"role":"anon"}')


def row(job: str, seq: int) -> rls.RowRef:
    return rls.RowRef("public", "job_events", (("job_id", "uuid", job), ("seq", "integer", str(seq))))


def test_each_row_is_asked_once_per_identity_and_every_check_gets_its_answer() -> None:
    """Two channels of one token on one row share a check; other claims are asked on their own."""
    checks = [(ALICE, row("a", 1)), (ANON, row("a", 1)), (ALICE, row("a", 1)), (ALICE, row("a", 2))]
    plan = rls.plan_checks(checks)
    assert [identity for identity, _ in plan.groups] == [ALICE, ANON]
    assert plan.groups[0][1] == [row("a", 1), row("a", 2)]
    assert plan.distinct == 3
    assert plan.verdicts([[True, False], [False]]) == [True, False, True, False]


def test_claims_that_differ_in_any_claim_are_different_identities() -> None:
    """A policy may read any claim, so the same sub with other claims is never merged."""
    plan = rls.plan_checks([(ALICE, row("a", 1)), (ALICE_OTHER_TOKEN, row("a", 1))])
    assert len(plan.groups) == 2
    assert plan.verdicts([[True], [False]]) == [True, False]


def test_verdicts_refuse_answers_of_another_shape() -> None:
    plan = rls.plan_checks([(ALICE, row("a", 1)), (ANON, row("a", 1))])
    with pytest.raises(ValueError):
        plan.verdicts([[True]])
    with pytest.raises(ValueError):
        plan.verdicts([[True, True], [True]])


def test_batch_sql_switches_identity_before_its_rows_and_maps_the_result_sets() -> None:
    plan = rls.plan_checks([(ALICE, row("a", 1)), (ANON, row("b", 2))])
    query, results = rls.batch_sql(plan)
    statements = query.split("; SELECT ")
    assert len(statements) == 4 and results == [(-1, 0), (0, 0), (-1, 0), (1, 0)]
    assert "set_config('role', E'authenticated', true)" in statements[0]
    assert "\"job_id\" = E'a'::uuid AND \"seq\" = E'1'::integer" in statements[1]
    assert "set_config('role', E'anon', true)" in statements[2]
    assert rls.collect(plan, results, [None, [True], None, [False]]) == [[True], [False]]


def test_a_large_group_is_split_and_reassembled_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rls, "MAX_TERMS", 2)
    plan = rls.plan_checks([(ALICE, row("a", seq)) for seq in range(1, 6)])
    query, results = rls.batch_sql(plan)
    assert results == [(-1, 0), (0, 0), (0, 2), (0, 4)]
    assert query.count("SELECT ARRAY[") == 3
    answers = rls.collect(plan, results, [None, [True, False], [False, True], [True]])
    assert plan.verdicts(answers) == [True, False, False, True, True]


def test_collect_refuses_result_sets_that_do_not_fit_the_batch() -> None:
    plan = rls.plan_checks([(ALICE, row("a", 1)), (ALICE, row("a", 2))])
    _, results = rls.batch_sql(plan)
    with pytest.raises(ValueError):
        rls.collect(plan, results, [None])
    with pytest.raises(ValueError):
        rls.collect(plan, results, [None, [True]])
    with pytest.raises(ValueError):
        rls.collect(plan, results, [None, "t"])


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", "E'plain'"),
        ("it's", "E'it''s'"),
        ("back\\slash", "E'back\\\\slash'"),
        ("\\'); DROP TABLE x; --", "E'\\\\''); DROP TABLE x; --'"),
    ],
)
def test_quote_literal_escapes_quotes_and_backslashes(value: str, quoted: str) -> None:
    assert rls.quote_literal(value) == quoted


def test_quote_ident_doubles_double_quotes_and_nul_is_refused() -> None:
    assert rls.quote_ident('we"ird') == '"we""ird"'
    with pytest.raises(ValueError):
        rls.quote_literal("a\0b")
    with pytest.raises(ValueError):
        rls.quote_ident("a\0b")


def test_a_null_key_value_never_matches() -> None:
    """As a NULL parameter did: ``= NULL`` is never true, so the row is not readable."""
    query, _ = rls.batch_sql(
        rls.plan_checks([(ALICE, rls.RowRef("public", "t", (("id", "integer", None),)))])
    )
    assert '"id" = NULL::integer' in query
