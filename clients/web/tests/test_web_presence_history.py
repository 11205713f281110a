"""Presence and history in the browser client (Protocol.md 3.9, 5.1), against a real verso-server.

Two pages on the same record: each shows beside the record who else has it open and which field
they are on or editing (the presence the other page sets as its person moves), the presence goes
when the other page closes, and comes back after a reconnect. A record's History lists its
versions newest first, pages through them with "More", says which are no longer kept, and
Restore writes an old version back as a new one (or shows the conflict when the record moved).
On a server that authenticates, the page says who changed a record, and who got there first in a
conflict.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from test_web_page import Page, open_page, record
from test_web_tokens import open_unconnected, sign_in
from verso_client import Record
from verso_server_process import VersoServer

if TYPE_CHECKING:
    from conftest import PageURL, SyncVerso


# --------------------------------------------------------------------------- helpers


def presence(page: Page, key: str) -> list[tuple[str, str | None, bool]]:
    """Who else the page shows beside `key`: (name, field or None, editing), in display order."""
    return [
        (chip.get_attribute("data-name") or "", chip.get_attribute("data-field"), chip.get_attribute("data-editing") == "true")
        for chip in page.row(key).find_elements(By.CSS_SELECTOR, "[data-role=presence] .who")
    ]


def presence_sent(page: Page) -> list[tuple[str, Any]]:
    """The presence messages the page has sent: (key, state)."""
    return [(message["key"], message["state"]) for message in page.sent_messages() if message["type"] == "presence"]


def set_name(page: Page, name: str) -> None:
    box = page.css("#client-name")
    box.clear()
    box.send_keys(name)
    page.css("#client-name-apply").click()


def history_panel(page: Page, key: str) -> WebElement:
    return page.row(key).find_element(By.CSS_SELECTOR, "[data-role=history]")


def open_history(page: Page, key: str) -> None:
    page.row(key).find_element(By.CSS_SELECTOR, "[data-action=history]").click()


def history_versions(page: Page, key: str) -> list[int]:
    """The versions the History panel of `key` lists, top to bottom; [] while it loads."""
    panel = history_panel(page, key)
    if panel.find_elements(By.CSS_SELECTOR, "[data-role=loading]"):
        return []
    return [int(item.get_attribute("data-version") or 0) for item in panel.find_elements(By.CSS_SELECTOR, "li.version-entry")]


def history_entry(page: Page, key: str, version: int) -> WebElement:
    return history_panel(page, key).find_element(By.CSS_SELECTOR, f'li.version-entry[data-version="{version}"]')


def server_history(verso: SyncVerso, key: str, **options: int) -> dict[str, Any]:
    reply: dict[str, Any] = verso.run(verso.client.request({"type": "history", "key": key, **options}))
    return reply


# --------------------------------------------------------------------------- presence


def test_pages_see_who_else_has_a_record_open_and_where_until_the_page_closes(
    server: VersoServer,
    page_url: PageURL,
    new_browser: Callable[[], webdriver.Chrome],
    verso: SyncVerso,
    output_dir: Path,
) -> None:
    prefix = f"notes-{uuid.uuid4().hex[:8]}/"
    key, other = prefix + "plan", prefix + "shopping"
    verso.run(verso.client.put(key, {"title": "plan", "body": "draft"}, base=0))
    verso.run(verso.client.put(other, {"title": "groceries"}, base=0))

    # A names itself; its hello carries the name, which the page keeps for the next visit.
    a = open_page(new_browser, page_url(server, prefix=prefix), "A")
    assert [m["client"] for m in a.sent_messages() if m["type"] == "hello"] == ["web"], "the default name"
    set_name(a, "ann-laptop")
    a.wait_for(lambda: a.message() == "Others now see you as “ann-laptop”.", "the rename")
    assert [m["client"] for m in a.sent_messages() if m["type"] == "hello"] == ["web", "ann-laptop"]
    assert a.driver.execute_script("return localStorage.getItem('verso.client')") == "ann-laptop"
    a.wait_for_record(key, 1, {"title": "plan"})
    assert presence_sent(a) == [], "nothing is sent before this person opens a record"

    # A edits the title; B, opened afterwards, is told of it right after its snapshots.
    editor = a.open_editor(key, "title")
    b = open_page(new_browser, page_url(server, prefix=prefix), "B")
    b.wait_for(lambda: presence(b, key) == [("ann-laptop", "title", True)], "A editing the title, on B")
    assert presence(b, other) == []
    title = b.row(key).find_element(By.CSS_SELECTOR, '.field[data-field="title"]')
    assert "others-editing" in (title.get_attribute("class") or "")
    assert presence(a, key) == [], "a page does not list itself"
    a.driver.save_screenshot(str(output_dir / "presence-editing-a.png"))
    b.driver.save_screenshot(str(output_dir / "presence-editing-b.png"))

    # A saves: still on the title, no longer editing. B opens the body, and A sees it.
    a.type_and_save(key, "title", editor, "plan for Monday")
    b.wait_for(lambda: presence(b, key) == [("ann-laptop", "title", False)], "A on the title, not editing")
    b.open_editor(key, "body")
    a.wait_for(lambda: presence(a, key) == [("web", "body", True)], "B editing the body, on A")

    # A moves to the other record: it leaves this one (state null) and is on the other, on no field.
    a.row(other).find_element(By.CSS_SELECTOR, "td.key code").click()
    b.wait_for(lambda: presence(b, key) == [] and presence(b, other) == [("ann-laptop", None, False)], "A moving")
    assert "current" in (a.row(other).get_attribute("class") or "")
    # Exactly one message per change, in order.
    assert presence_sent(a) == [
        (key, {"field": "title", "editing": True}),
        (key, {"field": "title", "editing": False}),
        (key, None),
        (other, {"editing": False}),
    ]
    # Clicking around the same record again changes nothing, so sends nothing.
    a.row(other).find_element(By.CSS_SELECTOR, "td.version").click()
    a.row(other).find_element(By.CSS_SELECTOR, "td.key code").click()
    assert len(presence_sent(a)) == 4

    # A leaves its page: the server clears its presence with the connection, and B's row says so
    # (Chromium keeps the page in its back/forward cache: the page closes its connection itself).
    a.driver.get("about:blank")
    b.wait_for(lambda: presence(b, other) == [], "A's presence to go when A's page closed")
    assert presence(b, key) == []
    # Back on the page (from the cache), A connects again and says where it is again.
    a.driver.back()
    a.wait_for(lambda: a.status() == "open", "A to reconnect")
    b.wait_for(lambda: presence(b, other) == [("ann-laptop", None, False)], "A's presence again")
    assert presence_sent(a)[-1] == (other, {"editing": False})
    assert a.severe_console_messages() == [] and b.severe_console_messages() == []


def test_the_name_is_kept_and_presence_is_set_again_after_a_reconnect(
    page_url: PageURL,
    new_browser: Callable[[], webdriver.Chrome],
    connect_verso: Callable[[str], SyncVerso],
    server_args: tuple[str, ...],
) -> None:
    key = "notes/meeting"  # the page's default prefix, on a server of its own
    with VersoServer(*server_args) as server:
        setup = connect_verso(server.ws_url)
        setup.run(setup.client.put(key, {"title": "weekly"}, base=0))
        a = open_page(new_browser, page_url(server), "A")
        set_name(a, "ann")
        a.wait_for(lambda: a.message() == "Others now see you as “ann”.", "the rename")
        a.driver.refresh()  # the name is kept in localStorage and said in the first hello
        a.wait_for(lambda: a.status() == "open", "the page to connect again")
        assert a.css("#client-name").get_attribute("value") == "ann"
        hellos = [m for m in a.sent_messages() if m["type"] == "hello"]
        assert hellos[-1]["client"] == "ann", hellos

        b = open_page(new_browser, page_url(server), "B")
        for page in (a, b):
            page.wait_for_record(key, 1, {"title": "weekly"})
        a.open_editor(key, "title")
        b.wait_for(lambda: presence(b, key) == [("ann", "title", True)], "A's presence")

        def disconnected(page: Page) -> bool:
            return page.status() == "reconnecting" and presence(page, key) == []

        assert server.stop() == 0
        a.wait_for(lambda: disconnected(a), "A to notice the server is gone, and forget who is here")
        b.wait_for(lambda: disconnected(b), "B to notice the server is gone, and forget who is here")
        server.start()
        a.wait_for(lambda: a.status() == "open", "A to reconnect")
        b.wait_for(lambda: b.status() == "open", "B to reconnect")
        # The server forgot A's presence with the old connection: A set it again.
        b.wait_for(lambda: presence(b, key) == [("ann", "title", True)], "A's presence after the reconnect")
        sets = [state for sent_key, state in presence_sent(a) if sent_key == key]
        assert sets[-2:] == [{"field": "title", "editing": True}] * 2, sets
        for page in (a, b):
            # Only the attempts to connect while the server was down.
            assert all("ERR_CONNECTION_REFUSED" in line for line in page.severe_console_messages())


# --------------------------------------------------------------------------- history


def test_history_lists_versions_newest_first_and_restore_writes_an_old_one_back(
    server: VersoServer,
    page_url: PageURL,
    new_browser: Callable[[], webdriver.Chrome],
    verso: SyncVerso,
    output_dir: Path,
) -> None:
    prefix = f"notes-{uuid.uuid4().hex[:8]}/"
    key = prefix + "recipe"
    verso.run(verso.client.put(key, {"title": "soup", "salt": 1}, base=0))
    verso.run(verso.client.patch(key, {"salt": 2}, base=1))
    verso.run(verso.client.patch(key, {"title": "stew"}, base=2))
    page = open_page(new_browser, page_url(server, prefix=prefix), "history")
    page.wait_for_record(key, 3, {"title": "stew"})
    changed = page.row(key).find_element(By.CSS_SELECTOR, "[data-role=changed]")
    assert changed.text == "", "a snapshot does not say when the record changed"

    open_history(page, key)
    page.wait_for(lambda: history_versions(page, key) == [3, 2, 1], "versions 3, 2, 1")
    sent = [{k: v for k, v in m.items() if k != "rid"} for m in page.sent_messages() if m["type"] == "history"]
    assert sent == [{"type": "history", "key": key}]
    expected = server_history(verso, key)["versions"]
    for entry in expected:
        item = history_entry(page, key, entry["version"])
        assert json.loads(item.find_element(By.CSS_SELECTOR, "[data-role=data]").text) == entry["data"]
        assert item.find_element(By.CSS_SELECTOR, "time").get_attribute("data-at") == str(entry["at"])
    assert "current" in history_entry(page, key, 3).text
    assert history_entry(page, key, 3).find_elements(By.CSS_SELECTOR, "[data-action=restore]") == [], "the current version"
    assert history_panel(page, key).find_elements(By.CSS_SELECTOR, "[data-role=gone], [data-action=more-history]") == []
    # The history told the page when the current version was written.
    assert changed.get_attribute("data-at") == str(expected[0]["at"])
    assert changed.text.startswith("last changed at ")
    page.driver.save_screenshot(str(output_dir / "history.png"))

    # Restore version 1: a new version, 4, with version 1's data; the panel shows it on top.
    history_entry(page, key, 1).find_element(By.CSS_SELECTOR, "[data-action=restore]").click()
    page.wait_for_record(key, 4, {"title": "soup", "salt": "1"})
    page.wait_for(lambda: page.message() == f"Restored {key} to version 1: now version 4.", "the restore's note")
    assert record(verso, key) == Record(key, 4, {"title": "soup", "salt": 1})
    restore = [m for m in page.sent_messages() if m["type"] == "put"][-1]
    assert (restore["key"], restore["base"], restore["data"]) == (key, 3, {"salt": 1, "title": "soup"})
    page.wait_for(lambda: history_versions(page, key) == [4, 3, 2, 1], "version 4 on top of the history")
    assert "current" in history_entry(page, key, 4).text
    assert history_entry(page, key, 3).find_elements(By.CSS_SELECTOR, "[data-action=restore]"), "no longer current"
    newest = server_history(verso, key, limit=1)["versions"][0]
    assert changed.get_attribute("data-at") == str(newest["at"]), "the update said when"

    # A deletion elsewhere removes the row, and its history with it.
    verso.run(verso.client.delete(key, base=4))
    page.wait_for_rows([])
    assert page.severe_console_messages() == []


def test_history_pages_with_more_shows_deletions_and_says_which_versions_are_gone(
    page_url: PageURL,
    new_browser: Callable[[], webdriver.Chrome],
    connect_verso: Callable[[str], SyncVerso],
    server_args: tuple[str, ...],
    output_dir: Path,
) -> None:
    key = "notes/counter"
    # The change log keeps 2 seqs, and 25 versions per key beyond it: of 30 versions, 6–30 are kept.
    with VersoServer(*server_args, "--history", "2", "--keep-versions", "25") as server:
        verso = connect_verso(server.ws_url)
        for version in range(1, 31):
            if version == 27:
                verso.run(verso.client.delete(key, base=26))
            else:
                verso.run(verso.client.put(key, {"n": version}, base=version - 1))
        page = open_page(new_browser, page_url(server), "paging")
        page.wait_for_record(key, 30, {"n": "30"})

        open_history(page, key)
        page.wait_for(lambda: history_versions(page, key) == list(range(30, 10, -1)), "the first page, 30 down to 11")
        assert history_panel(page, key).find_elements(By.CSS_SELECTOR, "[data-role=gone]") == []
        deleted = history_entry(page, key, 27)
        assert deleted.get_attribute("data-deleted") == "true"
        assert deleted.find_element(By.CSS_SELECTOR, "[data-role=data]").text == "deleted"
        assert deleted.find_elements(By.CSS_SELECTOR, "[data-action=restore]") == [], "a deletion is not restored"

        history_panel(page, key).find_element(By.CSS_SELECTOR, "[data-action=more-history]").click()
        page.wait_for(lambda: history_versions(page, key) == list(range(30, 5, -1)), "30 down to 6")
        gone = page.wait_for(lambda: history_panel(page, key).find_element(By.CSS_SELECTOR, "[data-role=gone]"), "the gone notice")
        assert gone.text == "Versions 1–5 are no longer kept."
        assert history_panel(page, key).find_elements(By.CSS_SELECTOR, "[data-action=more-history]") == []
        sent = [{k: v for k, v in m.items() if k != "rid"} for m in page.sent_messages() if m["type"] == "history"]
        assert sent == [{"type": "history", "key": key}, {"type": "history", "key": key, "before": 11}]
        page.driver.save_screenshot(str(output_dir / "history-gone.png"))

        # Restoring the version before the deletion brings that data back as version 31.
        history_entry(page, key, 26).find_element(By.CSS_SELECTOR, "[data-action=restore]").click()
        page.wait_for_record(key, 31, {"n": "26"})
        assert record(verso, key) == Record(key, 31, {"n": 26})
        page.wait_for(lambda: history_versions(page, key)[:2] == [31, 30], "version 31 on top")
        assert page.severe_console_messages() == []


def test_a_restore_on_a_record_that_moved_meanwhile_shows_the_conflict(
    server: VersoServer,
    page_url: PageURL,
    new_browser: Callable[[], webdriver.Chrome],
    verso: SyncVerso,
    output_dir: Path,
) -> None:
    prefix = f"notes-{uuid.uuid4().hex[:8]}/"
    key = prefix + "doc"
    verso.run(verso.client.put(key, {"text": "one"}, base=0))
    verso.run(verso.client.put(key, {"text": "two"}, base=1))
    page = open_page(new_browser, page_url(server, prefix=prefix), "restore conflict")
    page.wait_for_record(key, 2, {"text": "two"})
    open_history(page, key)
    page.wait_for(lambda: history_versions(page, key) == [2, 1], "versions 2, 1")

    # The update of someone else's write is still on its way when the person clicks Restore:
    # the page holds back the updates it receives until the restore is answered.
    page.driver.execute_script("""
        const ws = state.ws, deliver = ws.onmessage, held = [];
        window.releaseUpdates = () => { ws.onmessage = deliver; held.forEach((event) => deliver(event)); };
        ws.onmessage = (event) => { if (JSON.parse(event.data).type === "update") held.push(event); else deliver(event); };
    """)
    verso.run(verso.client.put(key, {"text": "three"}, base=2))
    history_entry(page, key, 1).find_element(By.CSS_SELECTOR, "[data-action=restore]").click()
    conflict = page.wait_for(lambda: page.css(f'.conflict[data-key="{key}"][data-kind="restore"]'), "the restore's conflict")
    page.driver.execute_script("window.releaseUpdates();")
    conflict = page.css(f'.conflict[data-key="{key}"][data-kind="restore"]')
    written_at = server_history(verso, key, limit=1)["versions"][0]["at"]
    assert conflict.get_attribute("data-restore") == "1"
    assert conflict.get_attribute("data-version") == "3"
    assert conflict.get_attribute("data-at") == str(written_at), "when the current version was written"
    assert "you restored on version 2; it is now version 3, written at " in conflict.text
    assert json.loads(conflict.find_element(By.CSS_SELECTOR, "[data-role=mine]").text) == {"text": "one"}
    assert json.loads(conflict.find_element(By.CSS_SELECTOR, "[data-role=theirs]").text) == {"text": "three"}
    assert page.message().startswith(f"Not restored: {key} changed (now version 3) before your restore of version 1")
    assert record(verso, key).version == 3, "a conflict changes nothing"
    page.driver.save_screenshot(str(output_dir / "restore-conflict.png"))

    # Restore anyway: version 1's data over version 3.
    conflict.find_element(By.CSS_SELECTOR, "[data-action=reapply]").click()
    page.wait_for(lambda: page.conflicts() == [], "the conflict to close")
    page.wait_for_record(key, 4, {"text": "one"})
    assert record(verso, key) == Record(key, 4, {"text": "one"})
    page.wait_for(lambda: history_versions(page, key) == [4, 3, 2, 1], "the history to follow")
    assert page.severe_console_messages() == []


# --------------------------------------------------------------------------- who changed it


def test_with_auth_the_page_says_who_changed_a_record_who_is_here_and_who_got_there_first(
    tmp_path: Path,
    server_args: tuple[str, ...],
    page_url: PageURL,
    new_browser: Callable[[], webdriver.Chrome],
    connect_verso: Callable[[str], SyncVerso],
    output_dir: Path,
) -> None:
    prefix = f"who{uuid.uuid4().hex[:8]}/"
    key = prefix + "note"
    tokens = tmp_path / "tokens.json"
    rules = [{"prefix": prefix, "allow": ["read", "write"]}]
    tokens.write_text(json.dumps({"tokens": [
        {"token": "ann-0123456789abcdef", "user": "ann", "rules": rules},
        {"token": "bob-0123456789abcdef", "user": "bob", "rules": rules},
    ]}))
    tokens.chmod(0o600)
    with VersoServer(*server_args, "--auth", "tokens", "--tokens-file", str(tokens)) as server:
        ann = connect_verso(server.ws_url)
        ann.run(ann.client.request({"type": "hello", "token": "ann-0123456789abcdef", "client": "ann-script"}))
        ann.run(ann.client.put(key, {"title": "first"}, base=0))

        page = open_unconnected(new_browser, page_url(server, prefix=prefix))
        page.wait_for(lambda: page.css("#token-form").is_displayed(), "the token form")
        sign_in(page, "bob-0123456789abcdef")
        page.wait_for_record(key, 1, {"title": "first"})

        # Ann's change comes as an update that says who and when.
        ann.run(ann.client.patch(key, {"title": "second"}, base=1))
        page.wait_for_record(key, 2, {"title": "second"})
        changed = page.row(key).find_element(By.CSS_SELECTOR, "[data-role=changed]")
        at = server_history(ann, key, limit=1)["versions"][0]["at"]
        page.wait_for(lambda: changed.get_attribute("data-by") == "ann", "who changed it")
        assert changed.get_attribute("data-at") == str(at)
        assert changed.text.startswith("last changed by ann at ")

        # Ann's presence shows her user name.
        ann.run(ann.client.request({"type": "presence", "key": key, "state": {"field": "title", "editing": True}}))
        page.wait_for(lambda: presence(page, key) == [("ann", "title", True)], "ann editing the title")
        page.driver.save_screenshot(str(output_dir / "who.png"))

        # Bob edits from version 2 while ann writes version 3: the conflict says she wrote it.
        editor = page.open_editor(key, "title")
        ann.run(ann.client.patch(key, {"title": "third"}, base=2))
        page.wait_for(lambda: page.version(key) == 3, "version 3 under the open editor")
        page.type_and_save(key, "title", editor, "bob's title")
        conflict = page.wait_for(lambda: page.conflict(key, "title"), "the conflict")
        assert conflict.get_attribute("data-by") == "ann"
        assert "it is now version 3, written by ann at " in conflict.text
        assert "Version 3 was written by ann." in page.message()
        # Bob's own edit then shows as his.
        conflict.find_element(By.CSS_SELECTOR, "[data-action=reapply]").click()
        page.wait_for(lambda: changed.get_attribute("data-by") == "bob" and page.version(key) == 4, "bob's change")
        assert record(ann, key).data == {"title": "bob's title"}
        assert page.severe_console_messages() == []
