"""The security suite: hostile requests against a real stack, one test per probe of issue 13.

Each test replays a probe as an attacker would send it and asserts that it
gets nothing. The helpers here also run against a stack without the sign-in
service (``/auth/v1`` answering 404, as before it existed): the attacker then
acts anonymously and names owners in bodies, as it could there, so the same
test shows the hole on old code and its absence on new code.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from progressbench.app.supervisor import Stack
from tests.helpers import UNIT
from tests.integration.conftest import SCALE, running_stack

__all__ = ["SCALE", "Account", "account", "create"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/security" in str(item.fspath):
            item.add_marker(pytest.mark.security)
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class Account:
    """A signed-in test user (``token`` None on a stack without sign-in)."""

    name: str
    token: str | None
    user_id: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def owner(self) -> str:
        """What the store records as this user's jobs' owner."""
        return self.user_id or self.name


def account(api: str, name: str) -> Account:
    email = f"{name}.{uuid.uuid4().hex[:8]}@security.progressbench.test"
    response = httpx.post(
        f"{api}/auth/v1/signup",
        json={"email": email, "password": "pw-" + uuid.uuid4().hex},
        timeout=10 * UNIT,
    )
    if response.status_code == 404:  # a stack from before the sign-in service
        return Account(name, None, None)
    assert response.status_code == 200, response.text
    data = response.json()
    return Account(name, data["access_token"], data["user"]["id"])


def create(api: str, path: str, who: Account, **extra: Any) -> httpx.Response:
    """POST a job as ``who`` (on a stack without sign-in, by naming the owner in the body)."""
    body: dict[str, Any] = {"seed": 1, "time_scale": SCALE, **extra}
    if who.token is None:
        body.setdefault("owner", who.name)
    return httpx.post(f"{api}{path}", json=body, headers=who.headers, timeout=10 * UNIT)


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    """Every registered transport's services (API, workers, realtime, queue, rooms)."""
    run_dir: Path = tmp_path_factory.mktemp("security")
    with running_stack(run_dir, module_database_url, transports=None) as running:
        yield running
