"""The page's defences: the headers verso-server sends with it, ?ws= naming another server, and
the server's origin check.

The page talks only to the server that served it unless the person agrees, in a confirm()
dialog that names the other URL, to connect elsewhere; the Content-Security-Policy lets it run
only its own inline script and style and open WebSockets only to its own server. The server,
for its part, refuses a WebSocket from a page of any origin but its own and those it was started
with (--allow-origin): another site the person visits cannot use it (Protocol.md section 1.3).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.alert import Alert
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from verso_client import VersoError
from verso_server_process import VersoServer, self_signed_certificate

if TYPE_CHECKING:
    from conftest import NewBrowser, PageURL, SyncVerso

# The page's folder (verso-server embeds its index.html).
PAGE_DIR = Path(__file__).resolve().parents[3] / "Sources" / "VersoWebClient"
WAIT_SECONDS = 15.0
FROM_DISK = os.environ.get("VERSO_WEB_FROM_DISK") == "1"
served_page_only = pytest.mark.skipif(
    FROM_DISK, reason="checks the page verso-server serves; VERSO_WEB_FROM_DISK=1 tests the page on disk"
)


# A page of another site that tries to use the Verso server the browser can reach: it opens
# ?ws= and, once open, puts ?key=. data-state says how far it got.
ELSEWHERE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>elsewhere</title></head>
<body><p id="state" data-state="connecting">connecting</p>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const state = document.getElementById("state");
function set(value) { state.dataset.state = value; state.textContent = value; }
const ws = new WebSocket(params.get("ws"));
ws.onopen = () => {
  set("open");
  ws.send(JSON.stringify({type: "put", rid: "elsewhere", key: params.get("key"), base: 0, data: {from: "elsewhere"}}));
};
ws.onmessage = (event) => set("reply " + event.data);
ws.onclose = (event) => { if (state.dataset.state === "connecting") set("closed " + event.code); };
</script></body></html>
"""


@pytest.fixture
def disk_page(serve_static: Callable[[Path], str]) -> str:
    """The page (Sources/VersoWebClient/index.html) from a plain file server (another origin, no CSP): its URL."""
    return serve_static(PAGE_DIR) + "/index.html"


@pytest.fixture
def elsewhere_origin(tmp_path: Path, serve_static: Callable[[Path], str]) -> str:
    """The origin of a site on another port serving ELSEWHERE_PAGE at /elsewhere.html."""
    (tmp_path / "elsewhere.html").write_text(ELSEWHERE_PAGE)
    return serve_static(tmp_path)


def open_elsewhere(driver: webdriver.Chrome, origin: str, server: VersoServer, key: str) -> str:
    """Opens the other site's page against `server`; returns its state once it settled."""
    driver.get(f"{origin}/elsewhere.html?" + urllib.parse.urlencode({"ws": server.ws_url, "key": key}))

    def settled(_driver: webdriver.Chrome) -> str | None:
        value = driver.find_element(By.CSS_SELECTOR, "#state").get_attribute("data-state") or ""
        return value if value.startswith(("closed", "reply")) else None

    state = WebDriverWait(driver, WAIT_SECONDS).until(settled)
    assert state is not None
    return state


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
    disk_page: str, new_browser: Callable[[], webdriver.Chrome]
) -> None:
    # The page comes from another origin: the server must have been told to accept it.
    page_origin = disk_page.removesuffix("/index.html")
    with VersoServer("--allow-origin", page_origin) as server:
        driver = new_browser()
        driver.get(f"{disk_page}?" + urllib.parse.urlencode({"ws": server.ws_url}))
        alert = wait_for_confirm(driver)
        assert server.ws_url in alert.text, alert.text
        alert.accept()
        WebDriverWait(driver, WAIT_SECONDS).until(lambda _driver: status(driver) == "open")
        assert driver.find_element(By.CSS_SELECTOR, "#status").get_attribute("data-epoch")
        assert websockets_opened(driver) == [server.ws_url]


def test_a_page_from_another_origin_is_refused_and_changes_nothing_while_the_servers_own_page_connects(
    server: VersoServer,
    page_url: PageURL,
    elsewhere_origin: str,
    new_browser: Callable[[], webdriver.Chrome],
    verso: SyncVerso,
) -> None:
    key = f"origin/{uuid.uuid4().hex[:8]}"
    driver = new_browser()
    # The handshake fails: the socket never opens, so the put is never sent.
    assert open_elsewhere(driver, elsewhere_origin, server, key) == "closed 1006"
    assert websockets_opened(driver) == [server.ws_url], "the page did try"
    assert any("403" in message for message in severe_console_messages(driver)), "Chromium saw the 403"
    with pytest.raises(VersoError) as missing:
        verso.run(verso.client.get(key))
    assert missing.value.code == "not_found"
    # The server says whom it refused.
    assert f"verso.origin={elsewhere_origin} " in server.log(), server.log()
    # In the same browser, the page the server serves (its own origin) still connects.
    driver.get(page_url(server))
    WebDriverWait(driver, WAIT_SECONDS).until(lambda _driver: status(driver) == "open")


def test_a_page_from_another_origin_connects_once_the_server_allows_that_origin(
    elsewhere_origin: str, new_browser: Callable[[], webdriver.Chrome], connect_verso: Callable[[str], SyncVerso]
) -> None:
    # The same page as above, so its refusal there is the origin check and nothing else.
    key = f"origin/{uuid.uuid4().hex[:8]}"
    with VersoServer("--allow-origin", elsewhere_origin) as server:
        state = open_elsewhere(new_browser(), elsewhere_origin, server, key)
        assert state.startswith("reply "), state
        assert json.loads(state.removeprefix("reply ")) == {"type": "ack", "rid": "elsewhere", "key": key, "version": 1, "seq": 1}
        verso = connect_verso(server.ws_url)
        assert verso.run(verso.client.get(key)).data == {"from": "elsewhere"}


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


def spki_sha256(certificate: Path) -> str:
    """The base64 SHA-256 of a certificate's public key, as Chromium's
    --ignore-certificate-errors-spki-list takes it: trust exactly that key, nothing else."""
    public_key = subprocess.run(["openssl", "x509", "-in", str(certificate), "-pubkey", "-noout"],
                                check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"],
                         input=public_key, check=True, capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@served_page_only
def test_page_over_https_connects_over_wss_to_its_own_server(
    tmp_path: Path, new_browser: NewBrowser
) -> None:
    certificate, key = self_signed_certificate(tmp_path)
    trusted = ssl.create_default_context(cafile=str(certificate))
    with VersoServer("--tls-cert-file", str(certificate), "--tls-key-file", str(key), ssl_context=trusted) as server:
        assert server.http_url.startswith("https://")
        driver = new_browser(f"--ignore-certificate-errors-spki-list={spki_sha256(certificate)}")
        driver.get(f"{server.http_url}/")
        WebDriverWait(driver, WAIT_SECONDS).until(lambda _driver: status(driver) == "open")
        # The page over https opened its WebSocket over wss, to the server that sent it.
        assert websockets_opened(driver) == [server.ws_url]
        assert server.ws_url.startswith("wss://")
        assert severe_console_messages(driver) == []
