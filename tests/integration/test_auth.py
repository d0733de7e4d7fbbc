"""The sign-in service (``/auth/v1``) as a GoTrue client sees it: shapes, rotation, logout."""

from __future__ import annotations

import uuid

import httpx

from progressbench.app.supervisor import Stack


def test_signup_sign_in_refresh_user_and_logout(module_stack: Stack, http: httpx.Client) -> None:
    """GoTrue's session and error shapes; a refresh token works once; logout ends the session."""
    auth = module_stack.endpoints()["api"] + "/auth/v1"
    email, password = f"ada.{uuid.uuid4().hex[:6]}@example.test", "correct horse"
    signed_up = http.post(f"{auth}/signup", json={"email": email, "password": password})
    assert signed_up.status_code == 200, signed_up.text
    session = signed_up.json()
    assert set(session) >= {"access_token", "token_type", "expires_in", "expires_at", "refresh_token", "user"}
    assert session["token_type"] == "bearer" and session["expires_in"] == 3600
    assert session["user"]["email"] == email and session["user"]["aud"] == "authenticated"

    again = http.post(f"{auth}/signup", json={"email": email, "password": password})
    assert again.status_code == 422 and again.json()["error_code"] == "user_already_exists"
    weak = http.post(f"{auth}/signup", json={"email": "b" + email, "password": "123"})
    assert weak.status_code == 422 and weak.json()["error_code"] == "weak_password"
    wrong = http.post(
        f"{auth}/token", params={"grant_type": "password"}, json={"email": email, "password": "x"}
    )
    assert wrong.status_code == 400 and wrong.json() == {
        "code": 400,
        "error_code": "invalid_credentials",
        "msg": "Invalid login credentials",
    }
    signed_in = http.post(
        f"{auth}/token", params={"grant_type": "password"}, json={"email": email, "password": password}
    )
    assert signed_in.status_code == 200 and signed_in.json()["user"]["id"] == session["user"]["id"]

    old = signed_in.json()["refresh_token"]
    refreshed = http.post(
        f"{auth}/token", params={"grant_type": "refresh_token"}, json={"refresh_token": old}
    )
    assert refreshed.status_code == 200 and refreshed.json()["refresh_token"] != old
    reused = http.post(f"{auth}/token", params={"grant_type": "refresh_token"}, json={"refresh_token": old})
    assert reused.status_code == 400 and reused.json()["error_code"] == "refresh_token_already_used"
    # Reuse revokes the session: its newest refresh token is dead too.
    newest = refreshed.json()["refresh_token"]
    after_reuse = http.post(
        f"{auth}/token", params={"grant_type": "refresh_token"}, json={"refresh_token": newest}
    )
    assert after_reuse.status_code == 400

    bearer = {"authorization": f"Bearer {session['access_token']}"}
    user = http.get(f"{auth}/user", headers=bearer)
    assert user.status_code == 200 and user.json()["id"] == session["user"]["id"]
    assert http.get(f"{auth}/user").json()["error_code"] == "no_authorization"
    assert http.post(f"{auth}/logout", headers=bearer).status_code == 204
    assert http.get(f"{auth}/user", headers=bearer).json()["error_code"] == "session_not_found"
    gone = http.post(
        f"{auth}/token",
        params={"grant_type": "refresh_token"},
        json={"refresh_token": session["refresh_token"]},
    )
    assert gone.status_code == 400
