"""Fixtures for driving the browser client (Sources/VersoWebClient/index.html) in headless Chromium against a real verso-server.

The page is the one verso-server serves at `/`, or, with VERSO_WEB_FROM_DISK=1,
Sources/VersoWebClient/index.html served from disk by a local HTTP server (for a binary that embeds an older page),
pointed at the verso-server with `?ws=`; the servers are then started with `--allow-origin` for
that HTTP server, which is another origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import os
import shutil
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

WEB_DIR = Path(__file__).resolve().parents[1]
PYTHON_CLIENT_DIR = WEB_DIR.parent / "python"
# The page itself, which verso-server embeds: Sources/VersoWebClient/index.html.
PAGE_DIR = WEB_DIR.parents[1] / "Sources" / "VersoWebClient"
sys.path.insert(0, str(PYTHON_CLIENT_DIR))  # verso_client
sys.path.insert(0, str(PYTHON_CLIENT_DIR / "tests"))  # verso_server_process

from verso_client import VersoClient  # noqa: E402
from verso_server_process import VersoServer  # noqa: E402

OUTPUT_DIR = Path(os.environ.get("VERSO_WEB_OUTPUT", WEB_DIR / "tests" / "output"))
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

T = TypeVar("T")


class SyncVerso:
    """The asyncio Python client, driven from synchronous Selenium tests on a background loop."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="verso-client-loop", daemon=True)
        self._thread.start()
        self.client = self.run(VersoClient.connect(url))

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def close(self) -> None:
        try:
            self.run(self.client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class PageURL(Protocol):
    def __call__(self, server: VersoServer, **query: str) -> str: ...


@contextlib.contextmanager
def static_site(directory: Path) -> Iterator[str]:
    """Serves `directory` over plain HTTP on a free port of 127.0.0.1 (another origin than any
    verso-server's, no CSP); yields its origin, http://127.0.0.1:PORT."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name=f"static-site-{directory.name}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture
def serve_static() -> Iterator[Callable[[Path], str]]:
    """Serves folders over plain HTTP for one test: each call serves one and returns its origin."""
    with contextlib.ExitStack() as stack:
        yield lambda directory: stack.enter_context(static_site(directory))


@pytest.fixture(scope="session")
def web_dir_origin() -> Iterator[str]:
    """The page's folder served from disk: the origin of that site (its page is index.html)."""
    with static_site(PAGE_DIR) as origin:
        yield origin


@pytest.fixture(scope="session")
def server_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Flags every verso-server of these tests is started with: with VERSO_WEB_FROM_DISK=1, the
    page comes from another origin, which the server must allow."""
    if os.environ.get("VERSO_WEB_FROM_DISK") != "1":
        return ()
    return ("--allow-origin", request.getfixturevalue("web_dir_origin"))


@pytest.fixture(scope="session")
def page_url(request: pytest.FixtureRequest) -> PageURL:
    """Builds the URL of the page for a server: served by it, or from disk with ?ws=."""
    if os.environ.get("VERSO_WEB_FROM_DISK") != "1":
        def served(server: VersoServer, **query: str) -> str:
            return f"{server.http_url}/" + (f"?{urlencode(query)}" if query else "")

        return served

    origin: str = request.getfixturevalue("web_dir_origin")

    def from_disk(server: VersoServer, **query: str) -> str:
        return f"{origin}/index.html?" + urlencode({"ws": server.ws_url, **query})

    return from_disk


@pytest.fixture(scope="session")
def server(server_args: tuple[str, ...]) -> Iterator[VersoServer]:
    with VersoServer(*server_args) as running:
        yield running


@pytest.fixture
def connect_verso() -> Iterator[Callable[[str], SyncVerso]]:
    """Connects Python clients (by ws URL); all are closed after the test."""
    clients: list[SyncVerso] = []

    def connect(url: str) -> SyncVerso:
        clients.append(SyncVerso(url))
        return clients[-1]

    try:
        yield connect
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def verso(server: VersoServer, connect_verso: Callable[[str], SyncVerso]) -> SyncVerso:
    """A Python client connected to the session's server."""
    return connect_verso(server.ws_url)


class NewBrowser(Protocol):
    def __call__(self, *arguments: str) -> webdriver.Chrome: ...


@pytest.fixture
def new_browser() -> Iterator[NewBrowser]:
    """Opens headless Chromium windows (each its own page, with `arguments` added to
    Chromium's command line); all are quit after the test."""
    for path in (CHROMEDRIVER, CHROMIUM):
        if shutil.which(path) is None:
            raise RuntimeError(f"{path} not found: apt-get install chromium chromium-driver")
    drivers: list[webdriver.Chrome] = []

    def open_browser(*arguments: str) -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1200,860", "--force-device-scale-factor=1", *arguments):
            options.add_argument(argument)
        # "performance" records DevTools events, among them every WebSocket frame the page sends.
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        if os.environ.get("VERSO_WEB_FROM_DISK") == "1":
            # The page from disk is pointed at verso-server with ?ws=, another origin, and asks
            # before connecting there: agree.
            options.set_capability("unhandledPromptBehavior", "accept")
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        drivers.append(driver)
        return driver

    try:
        yield open_browser
    finally:
        for driver in drivers:
            driver.quit()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR
