"""The page's defences: the headers verso-server sends with it, and ?ws= naming another server.

The page talks only to the server that served it unless the person agrees, in a confirm()
dialog that names the other URL, to connect elsewhere; the Content-Security-Policy lets it run
only its own inline script and style and open WebSockets only to its own server.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import os
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.alert import Alert
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from verso_server_process import VersoServer

WEB_DIR = Path(__file__).resolve().parents[1]
WAIT_SECONDS = 15.0
FROM_DISK = os.environ.get("VERSO_WEB_FROM_DISK") == "1"
served_page_only = pytest.mark.skipif(
    FROM_DISK, reason="checks the page verso-server serves; VERSO_WEB_FROM_DISK=1 tests the page on disk"
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def disk_page() -> Iterator[str]:
    """clients/web/index.html from a plain file server (another origin, no CSP): its URL."""
    handler = functools.partial(_QuietHandler, directory=str(WEB_DIR))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="disk-page-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def inline_hashes(html: str, tag: str) -> set[str]:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    assert blocks, f"the page has no inline <{tag}>"
    return {"'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'" for block in blocks}


def wait_for_confirm(driver: webdriver.Chrome) -> Alert:
    alert: Alert = WebDriverWait(driver, WAIT_SECONDS).until(expected_conditions.alert_is_present())
    return alert


def status(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#status").get_attribute("data-state") or ""


def websockets_opened(driver: webdriver.Chrome) -> list[str]:
    """The URL of every WebSocket the page created, as DevTools saw them."""
    entries: list[dict[str, Any]] = driver.get_log("performance")  # type: ignore[no-untyped-call]
    events = [json.loads(entry["message"])["message"] for entry in entries]
    return [event["params"]["url"] for event in events if event.get("method") == "Network.webSocketCreated"]


def severe_console_messages(driver: webdriver.Chrome) -> list[str]:
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [str(entry["message"]) for entry in entries if entry["level"] == "SEVERE"]


@served_page_only
def test_page_is_served_with_a_content_security_policy_and_no_framing(server: VersoServer) -> None:
    with urllib.request.urlopen(f"{server.http_url}/", timeout=10) as response:
        headers = response.headers
        html = response.read().decode()
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    policy = {
        directive.split()[0]: set(directive.split()[1:])
        for directive in (part.strip() for part in headers["Content-Security-Policy"].split(";"))
        if directive
    }
    assert policy["default-src"] == {"'none'"}
    # Exactly the page's own inline script and style, by hash: no 'unsafe-inline'.
    assert policy["script-src"] == inline_hashes(html, "script")
    assert policy["style-src"] == inline_hashes(html, "style")
    host = server.http_url.removeprefix("http://")
    assert policy["connect-src"] == {"'self'", f"ws://{host}", f"wss://{host}"}
    assert policy["frame-ancestors"] == {"'none'"}
    assert "style=" not in html, "an inline style attribute would need 'unsafe-inline'"


@served_page_only
def test_page_asks_before_connecting_to_another_server_and_stays_with_its_own_when_refused(
    server: VersoServer, new_browser: Callable[[], webdriver.Chrome]
) -> None:
    elsewhere = "ws://127.0.0.1:9/v1/ws"
    driver = new_browser()
    driver.get(f"{server.http_url}/?" + urllib.parse.urlencode({"ws": elsewhere}))
    alert = wait_for_confirm(driver)
    assert elsewhere in alert.text, alert.text
    alert.dismiss()
    WebDriverWait(driver, WAIT_SECONDS).until(lambda _driver: status(driver) == "open")
    assert driver.find_element(By.CSS_SELECTOR, "#info").text.startswith(server.ws_url)
    assert elsewhere in driver.find_element(By.CSS_SELECTOR, "#message").text
    assert websockets_opened(driver) == [server.ws_url]
    # The page runs under its Content-Security-Policy without a violation.
    assert severe_console_messages(driver) == []


def test_page_connects_to_another_server_once_the_person_agrees(
    server: VersoServer, disk_page: str, new_browser: Callable[[], webdriver.Chrome]
) -> None:
    driver = new_browser()
    driver.get(f"{disk_page}?" + urllib.parse.urlencode({"ws": server.ws_url}))
    alert = wait_for_confirm(driver)
    assert server.ws_url in alert.text, alert.text
    alert.accept()
    WebDriverWait(driver, WAIT_SECONDS).until(lambda _driver: status(driver) == "open")
    assert driver.find_element(By.CSS_SELECTOR, "#status").get_attribute("data-epoch")
    assert websockets_opened(driver) == [server.ws_url]


@served_page_only
def test_page_ignores_a_ws_parameter_that_is_not_a_websocket_url(
    server: VersoServer, new_browser: Callable[[], webdriver.Chrome]
) -> None:
    driver = new_browser()
    driver.get(f"{server.http_url}/?" + urllib.parse.urlencode({"ws": "javascript:alert(1)"}))
    WebDriverWait(driver, WAIT_SECONDS).until(lambda _driver: status(driver) == "open")
    assert "Ignored ?ws=javascript:alert(1)" in driver.find_element(By.CSS_SELECTOR, "#message").text
    assert expected_conditions.alert_is_present()(driver) is False, "no dialog for a URL that is not ws:// or wss://"
    assert websockets_opened(driver) == [server.ws_url]
