"""The whole service on loopback plus a real browser: Debian's chromium, driven by Playwright.

`open_served_desk(tmp_path)` starts `open_service` from a TOML file exactly as `orderdesk serve`
would (SQLite, the embedded paper venue, accounts `primary` and `secondary`). `in_browser(fn)` runs
`fn(page)` with Playwright's sync API in a worker thread (Playwright drives its own asyncio
loop; the service keeps running on Trio in the main thread). The scenario talks to the service
over plain HTTP from that thread (`DeskClient`), as a second client would.

The browser: `/usr/bin/chromium` (or `ORDERDESK_CHROMIUM`); `playwright install` downloads
browsers and cannot work here. Without the browser or Playwright the tests skip, saying why;
with `CI=true` that skip is a failure.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx
import pytest
import trio

from supervision.service import open_service
from supervision.settings import load_settings
from tests.fixtures_web import wait_upstream

T = TypeVar("T")

CHROMIUM = os.environ.get("ORDERDESK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_TOKEN = "admin-browser-secret"
TOKENS = {"primary": "primary-browser-secret", "secondary": "secondary-browser-secret"}
UI_TIMEOUT_MS = 15_000
SCREENSHOTS = os.environ.get("ORDERDESK_SCREENSHOTS_DIR")  # e.g. "docs" to refresh them


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: .venv/bin/pip install 'playwright==1.63.0'"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no browser at {CHROMIUM}: apt-get install -y chromium (as root)"
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    reason = browser_unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run on CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


@attrs.frozen
class ServedDesk:
    """The whole service as `orderdesk serve` runs it (not `fixtures_desk.Desk`, the in-process
    coordinator and actor of the actor-level tests)."""

    base_url: str
    venue_url: str
    running: Any  # supervision.service.Running

    def client(self, token: str | None = None) -> DeskClient:
        return DeskClient(self, token)


class DeskClient:
    """A synchronous HTTP client of orderdesk and the venue, for the browser thread."""

    def __init__(self, desk: ServedDesk, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=desk.base_url, headers=headers, timeout=30.0)
        self.venue = httpx.Client(base_url=desk.venue_url, timeout=10.0)

    def __enter__(self) -> DeskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.venue.close()

    def orders(self, account: str = "primary") -> list[dict[str, Any]]:
        response = self.http.get(f"/accounts/{account}/orders")
        response.raise_for_status()
        return list(response.json()["orders"])

    def place_at_venue(self, account: str = "primary", **form: Any) -> str:
        """An order placed directly at the broker, as any other client of the account would."""
        body = {
            "tradingsymbol": "SBIN", "exchange": "NSE", "transaction_type": "BUY",
            "order_type": "MARKET", "quantity": "1", "product": "MIS", "validity": "DAY",
            "market_protection": "-1",
        }
        body.update({k: str(v) for k, v in form.items()})
        response = self.venue.post(
            "/orders/regular",
            data=body,
            headers={"X-Kite-Version": "3", "Authorization": f"token paper:paper-{account}"},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["data"]["order_id"])

    def faults(self, **faults: Any) -> None:
        response = self.venue.post("/_venue/faults", json=faults)
        assert response.status_code < 300, response.text

    def clear_faults(self) -> None:
        self.venue.delete("/_venue/faults")


def write_config(directory: Path, allowed_origins: tuple[str, ...] = (),
                 tick_interval_s: float = 1.0) -> Path:
    """Ports 0: the page is served by orderdesk itself, and its own origin always passes;
    `allowed_origins` adds other origins (a front-end of its own, for CORS); a long
    `tick_interval_s` keeps the venue's prices where a test sets them."""
    accounts = "".join(
        f'\n[[accounts]]\nid = "{a}"\nbroker = "paper"\ntokens = ["{t}"]\n'
        for a, t in TOKENS.items()
    )
    path = directory / "orderdesk.toml"
    origins = ", ".join(f'"{o}"' for o in allowed_origins)
    extra = f"allowed_origins = [{origins}]\n" if allowed_origins else ""
    path.write_text(
        f'[server]\nbind = "127.0.0.1:0"\nadmin_token = "{ADMIN_TOKEN}"\n{extra}\n'
        f'[database]\nurl = "sqlite:///{directory}/od.db"\n\n'
        f'[venue]\nbind = "127.0.0.1:0"\nseed = 7\nrate_limit_per_s = 0\n'
        f'read_limit_per_s = 0\nstate = "memory"\ntick_interval_s = {tick_interval_s}\n'
        + accounts
    )
    return path


@asynccontextmanager
async def open_served_desk(
    tmp_path: Path, allowed_origins: tuple[str, ...] = (), tick_interval_s: float = 1.0
) -> AsyncIterator[ServedDesk]:
    """The service as `orderdesk serve` runs it, on loopback."""
    settings = load_settings(str(write_config(tmp_path, allowed_origins, tick_interval_s)),
                             environ={})
    async with open_service(settings) as running:
        with trio.fail_after(15):
            for actor in running.actors.values():
                await wait_upstream(actor, "connected")
        assert running.venue is not None
        yield ServedDesk(f"http://{running.web_bind}", running.venue.rest_url, running)



async def serve_page(nursery: trio.Nursery, html: str) -> int:
    """A front-end of its own on another port (another origin): every GET answers `html`.
    Returns the port; it serves until `nursery` closes."""
    body = html.encode()
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()

    async def answer(stream: trio.SocketStream) -> None:
        received = b""
        with trio.move_on_after(10):
            while b"\r\n\r\n" not in received and len(received) < 65536:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                received += chunk
            await stream.send_all(head + body)
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, answer, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


@contextmanager
def _plain_asyncio() -> Iterator[None]:
    """Playwright's sync API makes its own asyncio loop; trio_asyncio (imported by the store
    and the web fixtures) patches `asyncio.new_event_loop` to make its own kind instead. Its
    policy override is per thread, so this worker thread asks for asyncio's default policy."""
    if "trio_asyncio" not in sys.modules:
        yield
        return
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(None)


def _run_browser(executable: str, fn: Callable[..., T], viewport: dict[str, int]) -> T:
    from playwright.sync_api import sync_playwright

    with (
        _plain_asyncio(),
        sync_playwright() as pw,
        tempfile.TemporaryDirectory(prefix="od-chromium-") as profile,
    ):
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=viewport,
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        errors: list[str] = []
        console: list[str] = []
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            try:
                result = fn(page)
            except Exception as exc:  # say what the page showed: a flaky wait is then diagnosable
                exc.add_note(f"page text: {_page_text(page)}")
                exc.add_note(f"console (last 20): {console[-20:]}")
                exc.add_note(f"JavaScript errors: {errors}")
                raise
        finally:
            context.close()
        assert not errors, f"JavaScript errors on the page: {errors}"
        return result


def _page_text(page: Any) -> str:
    try:
        return " ".join(page.inner_text("body", timeout=2_000).split())[:3_000]
    except Exception as exc:  # the page itself may be what broke
        return f"<unreadable: {exc}>"


async def in_browser(
    executable: str, fn: Callable[..., T], *, viewport: dict[str, int] | None = None
) -> T:
    """Run `fn(page)` in a fresh headless chromium, in a worker thread."""
    size = viewport or {"width": 1440, "height": 900}
    return await trio.to_thread.run_sync(partial(_run_browser, executable, fn, size))


def screenshot(page: Any, name: str, selector: str | None = None) -> None:
    """Save a PNG of the page (or of one element) into $ORDERDESK_SCREENSHOTS_DIR; the README's
    pictures live in docs/."""
    if not SCREENSHOTS:
        return
    Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
    path = str(Path(SCREENSHOTS) / name)
    # no focus ring and no sticky header over the element in the picture
    page.evaluate(_STILL, True)
    try:
        if selector:
            page.locator(selector).screenshot(path=path, animations="disabled")
        else:
            page.screenshot(path=path, animations="disabled")
    finally:
        page.evaluate(_STILL, False)


_STILL = """(still) => {
    document.activeElement?.blur();
    document.querySelector(".topbar").style.position = still ? "static" : "";
    window.scrollTo(0, 0);
}"""


def sign_in(page: Any, base_url: str, token: str) -> None:
    page.goto(base_url + "/")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()


__all__ = [
    "ADMIN_TOKEN",
    "CHROMIUM",
    "TOKENS",
    "ServedDesk",
    "DeskClient",
    "browser_unavailable",
    "chromium",
    "in_browser",
    "open_served_desk",
    "screenshot",
    "serve_page",
    "sign_in",
]
