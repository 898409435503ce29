"""The daily login (issue 12, item 6): the venue imitates Kite's login and `POST /session/token`;
the gateway's callback exchanges the request token and the account leaves `auth_expired` with
no paste. Bad, used, foreign or cancelled logins are 4xx and leave the account as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio
from kiteconnect import KiteConnect

from brokers.kite import session_checksum
from brokers.paper import VenueAddress
from supervision.service import Running
from supervision.settings import ConfigError, load_settings
from tests.fixtures_service import ADMIN, api, expire_token, open_test_service
from tests.fixtures_venue import NIFTY_FUT, kite_headers
from tests.fixtures_web import wait_upstream

ORDER = {"tradingsymbol": NIFTY_FUT, "exchange": "NFO", "transaction_type": "BUY",
         "quantity": 75, "order_type": "MARKET", "product": "NRML"}


async def _request_token(rest_url: str, account: str, redirect_url: str) -> str:
    """Sign `account` in at the venue's login stand-in; the request token it redirects with."""
    async with httpx.AsyncClient(base_url=rest_url, timeout=10) as http:
        answer = await http.get("/connect/login", params={
            "v": "3", "api_key": "paper", "user_id": account, "redirect_url": redirect_url})
    assert answer.status_code == 302, answer.text
    target = urlsplit(answer.headers["location"])
    query = parse_qs(target.query)
    assert target.path == urlsplit(redirect_url).path
    assert (query["status"], query["action"]) == (["success"], ["login"])
    return query["request_token"][0]


async def test_venue_session_token_checks_checksum_and_is_single_use(
    venue: VenueAddress, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(20):
        token = await _request_token(venue.rest_url, "primary", "https://app.invalid/cb")
        form = {"api_key": "paper", "request_token": token}
        wrong = await control.post("/session/token", data={
            **form, "checksum": session_checksum("paper", token, "not-the-secret")})
        assert wrong.status_code == 403, wrong.text
        assert wrong.json()["error_type"] == "TokenException"
        assert "checksum" in wrong.json()["message"]

        good = await control.post("/session/token", data={
            **form, "checksum": session_checksum("paper", token, "paper")})
        assert good.status_code == 200, good.text
        session = good.json()["data"]
        assert session["user_id"] == "primary"
        # The fresh token works; the start-of-day one stopped working.
        fresh = await control.get("/orders", headers=kite_headers(token=session["access_token"]))
        assert fresh.status_code == 200, fresh.text
        old = await control.get("/orders", headers=kite_headers())
        assert old.status_code == 403

        again = await control.post("/session/token", data={
            **form, "checksum": session_checksum("paper", token, "paper")})
        assert again.status_code == 403, again.text
        assert again.json()["message"] == "Token is invalid or has expired."

        missing = await control.post("/session/token", data={"api_key": "paper"})
        assert missing.status_code == 400
        assert missing.json()["message"] == "Missing `request_token`."


async def test_official_client_generates_a_session(venue: VenueAddress) -> None:
    with trio.fail_after(20):
        token = await _request_token(venue.rest_url, "secondary", "http://127.0.0.1:1/cb")

        def login() -> dict[str, Any]:
            kite = KiteConnect(api_key="paper", root=venue.rest_url)
            session = kite.generate_session(token, api_secret="paper")
            return {"session": session, "orders": kite.orders()}  # the client set the token

        out = await trio.to_thread.run_sync(login)
    assert out["session"]["user_id"] == "secondary"
    assert out["session"]["access_token"].startswith("paper-secondary-")
    assert out["orders"] == []


async def test_login_callback_brings_the_account_back_without_a_paste(service: Running) -> None:
    with trio.fail_after(40):
        await expire_token(service)
        async with httpx.AsyncClient(base_url=f"http://{service.web_bind}", timeout=10,
                                     follow_redirects=True) as browser:
            # The operator's browser: gateway -> venue's login page -> gateway's callback.
            answer = await browser.get("/accounts/primary/kite/login")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body == {"account": "primary", "logged_in": True, "user_id": "primary",
                        "upstream_before": "auth_expired"}
        assert [urlsplit(str(r.url)).path for r in answer.history] == [
            "/accounts/primary/kite/login", "/connect/login"]
        callback_url = str(answer.url)
        await wait_upstream(service.actors["primary"], "connected")
        async with api(service) as http:
            placed = await http.post("/accounts/primary/orders", json=ORDER)
            assert placed.status_code == 200, placed.text

            # The same request token again: Kite's are single use. 4xx, nothing changes.
            replay = await http.get(callback_url)
            assert replay.status_code == 400, replay.text
            assert replay.json()["error"] == "login_failed"
            assert "sign in again at /accounts/primary/kite/login" in replay.json()["message"]
            assert service.actors["primary"].upstream.state == "connected"

        async with api(service, ADMIN) as admin:
            audit = (await admin.get("/admin/audit", params={"account": "primary"})).json()
        login = next(e for e in audit["entries"] if e["action"] == "login")
        assert login["actor_name"] == "kite-login:primary"
        assert login["detail"]["upstream_before"] == "auth_expired"


@pytest.mark.parametrize(("query", "status", "error"), [
    ({"request_token": "notissuedbythevenue", "status": "success"}, 400, "login_failed"),
    ({"status": "cancelled"}, 400, "login_failed"),
    ({"status": "success"}, 422, "invalid"),
    ({"request_token": "bad token!", "status": "success"}, 422, "invalid"),
])
async def test_a_bad_callback_leaves_the_account_parked(
    service: Running, query: dict[str, str], status: int, error: str
) -> None:
    with trio.fail_after(30):
        await expire_token(service)
        async with api(service, None) as http:
            answer = await http.get("/accounts/primary/kite/callback", params=query)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"] == error
        assert answer.json()["correlation_id"]
        assert service.actors["primary"].upstream.state == "auth_expired"


async def test_another_users_login_is_refused(service: Running) -> None:
    """A login-CSRF: secondary's request token delivered to primary's callback."""
    with trio.fail_after(30):
        await expire_token(service)
        assert service.venue is not None
        callback = f"http://{service.web_bind}/accounts/primary/kite/callback"
        token = await _request_token(service.venue.rest_url, "secondary", callback)
        async with api(service, None) as http:
            answer = await http.get(callback, params={"request_token": token,
                                                      "status": "success"})
            unknown = await http.get("/accounts/nobody/kite/login")
        assert answer.status_code == 403, answer.text
        assert "'secondary'" in answer.json()["message"]
        assert service.actors["primary"].upstream.state == "auth_expired"
        assert unknown.status_code == 404


async def test_kite_account_login_needs_api_secret_env(tmp_path: Path) -> None:
    toml = tmp_path / "kite.toml"
    toml.write_text('[server]\nadmin_token = "a"\n[[accounts]]\nid = "live"\nbroker = "kite"\n'
                    'api_key_env = "K"\naccess_token_env = "T"\napi_secret_env = "S"\n')
    with pytest.raises(ConfigError, match=r"accounts\[0\].api_secret_env: the variable S"):
        load_settings(str(toml), environ={"K": "key"})
    settings = load_settings(str(toml), environ={"K": "key", "S": "secret"})
    assert settings.accounts[0].api_secret == "secret"
    assert "secret" not in repr(settings.accounts[0])


async def test_login_url_is_configurable(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_test_service(
            tmp_path, account_toml={"secondary": 'login_url = "http://127.0.0.1:1/x"'},
        ) as running:
            account = running.app.deps.settings.account("secondary")
            assert account is not None and account.login_url == "http://127.0.0.1:1/x"
            async with api(running, None) as http:
                answer = await http.get("/accounts/secondary/kite/login")
            assert answer.status_code == 302
            assert answer.headers["location"].startswith("http://127.0.0.1:1/x?v=3&api_key=paper")
