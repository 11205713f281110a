"""The page against a server started with --auth (Protocol.md 2.1): it asks for an access token
when the server says one is needed, sends it in hello only (never in a URL), keeps it in this
tab's sessionStorage, shows only what the token may read, and asks again when the token is
refused, when the person signs out and when the token expires (close code 4401).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from selenium import webdriver

from test_web_page import Page
from verso_client import Ack, VersoClient
from verso_server_process import VersoServer, server_binary

if TYPE_CHECKING:
    from conftest import PageURL

ANN_TOKEN = "ann-0123456789abcdef"


def tokens_file(folder: Path, prefix: str) -> Path:
    """A tokens file in which ann may read and write under `prefix` only."""
    path = folder / "tokens.json"
    path.write_text(json.dumps({"tokens": [
        {"token": ANN_TOKEN, "user": "ann", "rules": [{"prefix": prefix, "allow": ["read", "write"]}]},
    ]}))
    path.chmod(0o600)
    return path


async def put_as(server: VersoServer, token: str, key: str, data: dict[str, int]) -> None:
    client = await VersoClient.connect(server.ws_url, token=token)
    try:
        assert isinstance(await client.put(key, data, base=0), Ack)
    finally:
        await client.close()


def open_unconnected(new_browser: Callable[[], webdriver.Chrome], url: str) -> Page:
    page = Page(new_browser(), "tokens")
    page.driver.get(url)
    return page


def token_form_shown(page: Page) -> bool:
    return page.css("#token-form").is_displayed()


def sign_in(page: Page, token: str) -> None:
    box = page.css("#token")
    box.clear()
    box.send_keys(token)
    page.css("#token-submit").click()


def stored_token(page: Page) -> str | None:
    value = page.driver.execute_script("return sessionStorage.getItem('verso.token')")
    return value if isinstance(value, str) else None


def test_page_asks_for_a_token_signs_in_shows_only_what_it_may_read_and_signs_out(
    tmp_path: Path,
    server_args: tuple[str, ...],
    page_url: PageURL,
    new_browser: Callable[[], webdriver.Chrome],
) -> None:
    prefix = f"tok{uuid.uuid4().hex[:8]}/"
    with VersoServer(*server_args, "--auth", "tokens", "--tokens-file", str(tokens_file(tmp_path, prefix))) as server:
        asyncio.run(put_as(server, ANN_TOKEN, prefix + "a", {"n": 1}))
        page = open_unconnected(new_browser, page_url(server, prefix=prefix))

        # Without a token the server answers unauthorized: the page asks for one, shows nothing.
        page.wait_for(lambda: token_form_shown(page), "the token form")
        assert "access token" in page.message()
        assert page.rows() == {}

        # A token the server does not know is refused, and the page asks again.
        sign_in(page, "nobody-0123456789")
        page.wait_for(lambda: "refused" in page.message(), "the refusal of an unknown token")
        assert token_form_shown(page) and page.rows() == {}
        assert stored_token(page) is None

        # Ann's token shows her records, and who she is.
        sign_in(page, ANN_TOKEN)
        page.wait_for(lambda: list(page.rows()) == [prefix + "a"], "ann's record")
        assert "signed in as ann" in page.css("#info").text
        assert not token_form_shown(page)
        assert page.css("#sign-out").is_displayed()
        assert stored_token(page) == ANN_TOKEN
        # The token went only in hello, and never into the page's URL.
        assert ANN_TOKEN not in page.driver.current_url
        carrying = [message for message in page.sent_messages() if ANN_TOKEN in json.dumps(message)]
        assert carrying and all(message["type"] == "hello" for message in carrying), carrying

        # A prefix outside her rules is refused and shows nothing.
        page.choose_prefix("elsewhere/")
        page.wait_for(lambda: 'Cannot show prefix "elsewhere/"' in page.message(), "the refusal of another prefix")
        assert page.rows() == {}
        page.choose_prefix(prefix)
        page.wait_for(lambda: list(page.rows()) == [prefix + "a"], "ann's record again")

        # Signing out forgets the token and the records; the server then wants a token again.
        page.css("#sign-out").click()
        page.wait_for(lambda: token_form_shown(page) and "access token" in page.message(), "the token form after signing out")
        assert page.rows() == {}
        assert stored_token(page) is None
        assert page.severe_console_messages() == []


def test_page_asks_for_a_fresh_token_when_its_token_expires(
    tmp_path: Path,
    server_args: tuple[str, ...],
    page_url: PageURL,
    new_browser: Callable[[], webdriver.Chrome],
) -> None:
    prefix = f"exp{uuid.uuid4().hex[:8]}/"
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    secret.chmod(0o600)

    def mint(seconds: int) -> str:
        return subprocess.run(
            [str(server_binary()), "token", "--secret-file", str(secret), "--user", "ann",
             "--allow", f"{prefix}=read,write", "--expires-in", str(seconds)],
            check=True, capture_output=True, text=True,
        ).stdout.strip()

    with VersoServer(*server_args, "--auth", "jwt", "--jwt-secret-file", str(secret)) as server:
        page = open_unconnected(new_browser, page_url(server, prefix=prefix))
        page.wait_for(lambda: token_form_shown(page), "the token form")
        # JWT times are whole seconds: this one ends 5 to 6 s from now.
        sign_in(page, mint(6))
        page.wait_for(lambda: "signed in as ann" in page.css("#info").text, "signing in")
        assert not token_form_shown(page)
        page.wait_for(lambda: token_form_shown(page) and "expired" in page.message(), "the expiry notice", timeout=30)
        assert stored_token(page) is None
        # It waits for a fresh token rather than reconnecting without one.
        assert page.status() == "signed-out"
        assert page.rows() == {}
        # A fresh token carries on.
        sign_in(page, mint(3600))
        page.wait_for(lambda: "signed in as ann" in page.css("#info").text and not token_form_shown(page), "signing in again")
