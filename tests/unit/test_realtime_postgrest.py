"""The PostgREST query subset (sans-I/O) and the gateway's routing of one base URL."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from progressbench.transports.realtime.auth import AuthError, project_user
from progressbench.transports.realtime.gateway import rewrite_head, route
from progressbench.transports.realtime.postgrest import EXPOSED, MAX_ROWS, Filter, Order, RestError, parse

JOB = "3f1c2a9e-6b0d-4a51-9d7e-0c2b8e1f4a77"


def test_the_refetch_query_parses_into_columns_filters_order_and_limit() -> None:
    """What postgrest-py sends for select().eq().gt().order().limit() becomes exactly that plan."""
    query = parse(
        "job_events",
        [
            ("select", "job_id,seq,kind"),
            ("job_id", f"eq.{JOB}"),
            ("seq", "gt.3"),
            ("order", "seq.asc"),
            ("limit", "5"),
        ],
    )
    assert query.columns == ("job_id", "seq", "kind")
    assert query.filters == (Filter("job_id", "eq", JOB), Filter("seq", "gt", "3"))
    assert query.order == (Order("seq"),)
    assert query.limit == 5


def test_defaults_star_and_the_row_cap() -> None:
    """No select (or ``*``) is every exposed column; no limit, or a larger one, is Supabase's 1,000 rows."""
    assert parse("job_events", []).columns == EXPOSED["job_events"]
    assert parse("job_events", [("select", "*")]).limit == MAX_ROWS
    assert parse("job_events", [("limit", "5000")]).limit == MAX_ROWS
    assert parse("job_events", [("order", "seq.desc.nullslast")]).order == (Order("seq", True, False),)


@pytest.mark.parametrize(
    ("table", "params", "status", "code"),
    [
        ("jobs", [], 404, "PGRST205"),
        ("auth_users", [], 404, "PGRST205"),
        ("job_events", [("message", "like.*x*")], 400, "PGRST100"),
        ("job_events", [("seq", "in.(1,2)")], 400, "PGRST100"),
        ("job_events", [("seq", "3")], 400, "PGRST100"),
        ("job_events", [("or", "(seq.eq.1,seq.eq.2)")], 400, "PGRST100"),
        ("job_events", [("select", "seq,jobs(*)")], 400, "PGRST100"),
        ("job_events", [("select", "n:seq")], 400, "PGRST100"),
        ("job_events", [("order", "seq.sideways")], 400, "PGRST100"),
        ("job_events", [("limit", "ten")], 400, "PGRST100"),
        ("job_events", [("nope", "eq.1")], 400, "42703"),
        ("job_events", [("select", "secret")], 400, "42703"),
        ("job_events", [("order", "secret")], 400, "42703"),
    ],
)
def test_what_the_subset_refuses_is_a_postgrest_error(
    table: str, params: list[tuple[str, str]], status: int, code: str
) -> None:
    """Unexposed tables, operators outside the subset, embedding and unknown columns are refused,
    never ignored: a filter the server dropped would answer someone else's question."""
    with pytest.raises(RestError) as refused:
        parse(table, params)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert set(refused.value.body()) == {"code", "message", "details", "hint"}


def test_another_schema_is_406() -> None:
    """Accept-Profile other than public: PostgREST's PGRST106."""
    with pytest.raises(RestError) as refused:
        parse("job_events", [], schema="auth")
    assert (refused.value.status, refused.value.code) == (406, "PGRST106")


def test_the_gateway_routes_by_prefix_only() -> None:
    """auth and rest go to the API, realtime to the realtime server; look-alike prefixes go nowhere."""
    assert route("/auth/v1/token?grant_type=password") == "api"
    assert route("/rest/v1/job_events?select=*") == "api"
    assert route("/realtime/v1/websocket?apikey=k&vsn=1.0.0") == "realtime"
    assert route("/realtime/jobs") is None
    assert route("/rest/v10/x") is None
    assert route("/") is None


def test_plain_requests_are_forwarded_with_connection_close_and_upgrades_untouched() -> None:
    """A kept-alive connection must not carry a second request to the wrong upstream; a websocket
    upgrade keeps its Connection: Upgrade."""
    target, head = rewrite_head(
        b"GET /rest/v1/job_events HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    )
    assert target == "/rest/v1/job_events"
    assert head == b"GET /rest/v1/job_events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    upgrade = (
        b"GET /realtime/v1/websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    assert rewrite_head(upgrade) == ("/realtime/v1/websocket", upgrade)
    with pytest.raises(ValueError):
        rewrite_head(b"HELLO\r\n\r\n")


SECRET = "s" * 32


def _gotrue(**claims: object) -> str:
    """A GoTrue-shaped access token, with ``claims`` replaced (a ``None`` value drops the claim)."""
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "https://abcdefgh.supabase.co/auth/v1",
        "sub": str(uuid.UUID(int=7)),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 600,
    }
    merged = {k: v for k, v in {**base, **claims}.items() if v is not None}
    return jwt.encode(merged, SECRET, algorithm="HS256")


def test_a_project_auth_token_names_its_user() -> None:
    """A GoTrue access token of the project (its issuer, the project secret) owns what it creates."""
    assert project_user(SECRET, _gotrue()) == "00000000-0000-0000-0000-000000000007"


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "progressbench/auth/v1"},  # not a project's Auth
        {"iss": None},  # a per-job token has none
        {"role": "anon"},
        {"aud": "service"},
        {"sub": "not-a-uuid"},
        {"exp": 1},
    ],
)
def test_other_tokens_are_not_project_users(claims: dict[str, object]) -> None:
    """Stack and per-job tokens, anon keys, expired or odd tokens do not pass as a project's user."""
    with pytest.raises(AuthError):
        project_user(SECRET, _gotrue(**claims))


def test_a_token_signed_with_another_secret_is_no_project_user() -> None:
    """The project secret is the trust anchor: the same claims signed otherwise are refused."""
    forged = jwt.encode(
        jwt.decode(_gotrue(), options={"verify_signature": False}), "x" * 32, algorithm="HS256"
    )
    with pytest.raises(AuthError):
        project_user(SECRET, forged)
