"""Real Chromium (Debian's, driven by Playwright) on a page of one origin, calling Throughline on
another, as a customer's website does.

Throughline runs as production serves it (config.core.wsgi: the lean /v1 handler and the full
one) on http://localhost:<port>; the pages come from a second server on http://127.0.0.1:<port>,
which also serves the npm packages installed by scripts/browser-sdks. Playwright runs in a thread
of its own: its sync API keeps an event loop in the thread that uses it, where Django refuses ORM
calls.
"""

import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
NODE_MODULES = ROOT / "browser-sdks" / "node_modules"
# No network beyond the two local servers, no first-run or background work: a test sees only
# what the page's SDK does.
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
BROWSER_TIMEOUT_SECONDS = 60
LOCALE = "de-DE"


class _QuietWSGIHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def throughline(transactional_db: Any) -> Iterator[str]:
    """Throughline's production WSGI application on a live port; its base URL."""
    from config.core.wsgi import application

    server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietWSGIHandler, allow_reuse_address=False)
    server.set_app(application())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class Site:
    """The customer's website: pages registered by path, and the npm packages under /node_modules/."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(NODE_MODULES.parent), **kwargs)

            def do_GET(self) -> None:
                page = site.pages.get(urlsplit(self.path).path)
                if page is None:
                    super().do_GET()
                    return
                body = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"

    def add(self, path: str, html: str) -> str:
        self.pages[path] = html
        return self.origin + path


@pytest.fixture
def site() -> Iterator[Site]:
    site = Site()
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    yield site
    site.server.shutdown()
    site.server.server_close()
    thread.join(timeout=10)


@dataclass(frozen=True)
class Exchange:
    """One request the page made, and the status it got (0: no answer, e.g. blocked by CORS)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Visit:
    """A page open in Chromium until `close()`: what it requested, and its console."""

    exchanges: list[Exchange] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _loaded: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: list[BaseException] = field(default_factory=list)

    def to(self, path_or_url: str) -> list[Exchange]:
        return [e for e in list(self.exchanges) if path_or_url in e.url]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=BROWSER_TIMEOUT_SECONDS)
        if self._error:
            raise self._error[0]


@pytest.fixture
def chromium() -> Iterator[Callable[[str], Visit]]:
    """open(url): Chromium loads the page and keeps it open (its SDK sending) until the test
    closes it or ends."""
    visits: list[Visit] = []

    def open_page(url: str) -> Visit:
        visit = Visit()

        def run() -> None:
            from playwright.sync_api import Request, Response, sync_playwright

            def finished(request: Request, status: int) -> None:
                visit.exchanges.append(
                    Exchange(request.method, request.url, request.headers, request.post_data_buffer or b"", status)
                )

            def answered(response: Response) -> None:
                finished(response.request, response.status)

            try:
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                    context = browser.new_context(locale=LOCALE)
                    page = context.new_page()
                    page.on("response", answered)
                    page.on("requestfailed", lambda r: finished(r, 0))
                    page.on("console", lambda m: visit.console.append(f"{m.type}: {m.text}"))
                    page.goto(url)
                    visit._loaded.set()
                    # Keep the page open, its event loop turning, until the test has seen enough.
                    while not visit._stop.is_set():
                        page.wait_for_timeout(50)
                    browser.close()
            except BaseException as error:  # handed to the test thread by close()
                visit._error.append(error)
                visit._loaded.set()

        visit._thread = threading.Thread(target=run, daemon=True)
        visit._thread.start()
        if not visit._loaded.wait(BROWSER_TIMEOUT_SECONDS):
            raise AssertionError("Chromium did not load the page in time")
        if visit._error:
            raise visit._error[0]
        visits.append(visit)
        return visit

    yield open_page
    for visit in visits:
        visit.close()
