"""The browser client (Sources/VersoWebClient/index.html) in headless Chromium, against a real verso-server.

Two pages and the Python client edit the same record: each sees the others' edits live, the page
whose base went stale shows the conflict, and both resolutions (take theirs, reapply mine) end
with the record the test expects, checked with the Python client.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from verso_client import Record
from verso_server_process import VersoServer

if TYPE_CHECKING:
    from conftest import PageURL, SyncVerso

WAIT_SECONDS = 15.0
T = TypeVar("T")


class Page:
    """One browser window showing the Verso page, with the actions a person takes."""

    def __init__(self, driver: webdriver.Chrome, name: str) -> None:
        self.driver = driver
        self.name = name
        self._sent: list[dict[str, Any]] = []

    # ---- waiting

    def wait_for(self, condition: Callable[[], T], what: str, timeout: float = WAIT_SECONDS) -> T:
        """Poll `condition` until it returns something truthy, or fail saying what was awaited."""
        waiter = WebDriverWait(
            self.driver, timeout, poll_frequency=0.05,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        )
        try:
            return waiter.until(lambda _driver: condition())
        except TimeoutException:
            raise AssertionError(
                f"page {self.name}: timed out after {timeout}s waiting for {what}\n"
                f"status: {self.status_text()!r}; message: {self.message()!r}\nrows: {self.rows()!r}"
            ) from None

    # ---- reading

    def css(self, selector: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def row(self, key: str) -> WebElement:
        return self.css(f'tr[data-key="{key}"]')

    def version(self, key: str) -> int:
        return int(self.row(key).find_element(By.CSS_SELECTOR, "td.version").text)

    def value(self, key: str, field: str) -> str:
        return self.row(key).find_element(By.CSS_SELECTOR, f'.field[data-field="{field}"] [data-role=value]').text

    def rows(self) -> dict[str, str]:
        try:
            return {row.get_attribute("data-key") or "": row.text.replace("\n", " | ")
                    for row in self.driver.find_elements(By.CSS_SELECTOR, "#record-rows tr")}
        except StaleElementReferenceException:
            return {}

    def status(self) -> str:
        return self.css("#status").get_attribute("data-state") or ""

    def status_text(self) -> str:
        try:
            return self.css("#status").text
        except NoSuchElementException:
            return ""

    def message(self) -> str:
        try:
            return self.css("#message").text
        except NoSuchElementException:
            return ""

    def conflict(self, key: str, field: str) -> WebElement:
        return self.css(f'.conflict[data-key="{key}"][data-field="{field}"]')

    def conflicts(self) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, "#conflicts .conflict")

    def wait_for_record(self, key: str, version: int, fields: dict[str, str]) -> None:
        def shows() -> bool:
            return self.version(key) == version and all(self.value(key, f) == v for f, v in fields.items())

        self.wait_for(shows, f"{key} at version {version} showing {fields}")

    def wait_for_rows(self, keys: list[str]) -> None:
        self.wait_for(lambda: list(self.rows()) == keys, f"exactly the rows {keys}")

    # ---- acting

    def choose_prefix(self, prefix: str) -> None:
        box = self.css("#prefix")
        box.clear()
        box.send_keys(prefix)
        self.css("#prefix-apply").click()

    def open_editor(self, key: str, field: str) -> WebElement:
        self.row(key).find_element(By.CSS_SELECTOR, f'.field[data-field="{field}"] [data-role=value]').click()
        return self.wait_for(
            lambda: self.row(key).find_element(By.CSS_SELECTOR, f'.field[data-field="{field}"] input[data-role=editor]'),
            f"the editor of {key}.{field}",
        )

    def edit(self, key: str, field: str, text: str, *, submit_with_enter: bool = True) -> None:
        editor = self.open_editor(key, field)
        self.type_and_save(key, field, editor, text, submit_with_enter=submit_with_enter)

    def type_and_save(self, key: str, field: str, editor: WebElement, text: str, *, submit_with_enter: bool = True) -> None:
        editor.clear()
        editor.send_keys(text)
        if submit_with_enter:
            editor.send_keys(Keys.ENTER)
        else:
            self.row(key).find_element(By.CSS_SELECTOR, f'.field[data-field="{field}"] [data-action=save]').click()

    def sent_messages(self) -> list[dict[str, Any]]:
        """Every JSON message the page has sent over its WebSockets so far, as DevTools saw them."""
        entries: list[dict[str, Any]] = self.driver.get_log("performance")  # type: ignore[no-untyped-call]
        for entry in entries:
            event = json.loads(entry["message"])["message"]
            if event.get("method") == "Network.webSocketFrameSent":
                self._sent.append(json.loads(event["params"]["response"]["payloadData"]))
        return list(self._sent)

    def severe_console_messages(self) -> list[str]:
        entries: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [str(entry["message"]) for entry in entries if entry["level"] == "SEVERE"]


def open_page(new_browser: Callable[[], webdriver.Chrome], url: str, name: str) -> Page:
    page = Page(new_browser(), name)
    page.driver.get(url)
    page.wait_for(lambda: page.status() == "open", "the connection to open")
    return page


def record(verso: SyncVerso, key: str) -> Record:
    return verso.run(verso.client.get(key))


# --------------------------------------------------------------------------- tests


def test_page_is_served_and_connects(
    server: VersoServer, page_url: PageURL, new_browser: Callable[[], webdriver.Chrome]
) -> None:
    page = open_page(new_browser, page_url(server), "solo")
    assert page.driver.title == "Verso"
    assert page.css("#prefix").get_attribute("value") == "notes/", "the default prefix"
    assert page.css("#status").get_attribute("data-epoch"), "the page learned the store's epoch"
    assert page.severe_console_messages() == []


def test_two_pages_see_each_other_and_resolve_conflicts(
    server: VersoServer,
    page_url: PageURL,
    new_browser: Callable[[], webdriver.Chrome],
    verso: SyncVerso,
    output_dir: Path,
) -> None:
    prefix = f"notes-{uuid.uuid4().hex[:8]}/"
    key = prefix + "shopping"
    other = prefix + "todo"
    verso.run(verso.client.put(key, {"title": "groceries", "body": "milk"}, base=0))
    verso.run(verso.client.put(other, {"title": "call Ada", "done": False}, base=0))
    verso.run(verso.client.put(prefix[:-1] + "-elsewhere", {"title": "not listed"}, base=0))

    # Page A chooses the prefix in the page; page B is opened on it through the query string.
    a = open_page(new_browser, page_url(server), "A")
    a.choose_prefix(prefix)
    b = open_page(new_browser, page_url(server, prefix=prefix), "B")
    for page in (a, b):
        page.wait_for_record(key, 1, {"title": "groceries", "body": "milk"})
        page.wait_for_record(other, 1, {"title": "call Ada", "done": "false"})
        assert list(page.rows()) == [key, other], "the records under the prefix, in key order"

    # Each page's edit shows up on the other page, and in the store.
    a.edit(key, "title", "groceries for the week")
    b.wait_for_record(key, 2, {"title": "groceries for the week"})
    a.wait_for_record(key, 2, {"title": "groceries for the week"})
    b.edit(key, "body", "milk, eggs", submit_with_enter=False)
    a.wait_for_record(key, 3, {"body": "milk, eggs"})
    assert record(verso, key) == Record(key, 3, {"title": "groceries for the week", "body": "milk, eggs"})
    b.edit(other, "done", "true")  # a JSON value stays JSON
    a.wait_for_record(other, 2, {"done": "true"})
    assert record(verso, other).data == {"title": "call Ada", "done": True}

    # A starts editing at version 3; meanwhile the Python client changes the title (version 4).
    editor = a.open_editor(key, "title")
    verso.run(verso.client.patch(key, {"title": "from python"}, base=3))
    b.wait_for_record(key, 4, {"title": "from python"})
    a.wait_for(lambda: a.version(key) == 4, "A's table to show version 4 under the open editor")
    a.type_and_save(key, "title", editor, "A's title")
    conflict = a.wait_for(lambda: a.conflict(key, "title"), "the conflict on page A")
    assert conflict.find_element(By.CSS_SELECTOR, "[data-role=mine]").text == "A's title"
    assert conflict.find_element(By.CSS_SELECTOR, "[data-role=theirs]").text == "from python"
    assert conflict.get_attribute("data-version") == "4"
    assert "version 3" in conflict.text and "version 4" in conflict.text
    assert b.conflicts() == [], "only the stale page has a conflict"
    a.driver.save_screenshot(str(output_dir / "conflict.png"))

    # Take theirs: nothing is written; the record stays as the Python client left it.
    conflict.find_element(By.CSS_SELECTOR, "[data-action=take-theirs]").click()
    a.wait_for(lambda: a.conflicts() == [], "A's conflict to close")
    a.wait_for_record(key, 4, {"title": "from python"})
    assert record(verso, key) == Record(key, 4, {"title": "from python", "body": "milk, eggs"})

    # B starts editing at version 4; the Python client changes the title again (version 5).
    editor = b.open_editor(key, "title")
    verso.run(verso.client.patch(key, {"title": "python again"}, base=4))
    b.wait_for(lambda: b.version(key) == 5, "B's table to show version 5 under the open editor")
    b.type_and_save(key, "title", editor, "B's title", submit_with_enter=False)
    conflict = b.wait_for(lambda: b.conflict(key, "title"), "the conflict on page B")
    assert conflict.find_element(By.CSS_SELECTOR, "[data-role=theirs]").text == "python again"
    # While B looks at it, another field changes (version 6): the conflict follows the record.
    verso.run(verso.client.patch(key, {"body": "bread"}, base=5))
    b.wait_for(lambda: b.conflict(key, "title").get_attribute("data-version") == "6", "B's conflict to show version 6")
    b.driver.save_screenshot(str(output_dir / "conflict-before-reapply.png"))

    # Reapply mine: B's title on top of version 6, keeping everyone else's changes.
    b.conflict(key, "title").find_element(By.CSS_SELECTOR, "[data-action=reapply]").click()
    b.wait_for(lambda: b.conflicts() == [], "B's conflict to close after the reapply")
    for page in (a, b):
        page.wait_for_record(key, 7, {"title": "B's title", "body": "bread"})
    assert record(verso, key) == Record(key, 7, {"title": "B's title", "body": "bread"})
    assert record(verso, other) == Record(other, 2, {"title": "call Ada", "done": True})
    assert a.conflicts() == []
    a.driver.save_screenshot(str(output_dir / "final.png"))

    # A deletion elsewhere removes the row live.
    verso.run(verso.client.delete(other, base=2))
    for page in (a, b):
        page.wait_for_rows([key])
        assert page.severe_console_messages() == []


def test_edits_of_different_fields_from_one_base_both_land_and_a_clash_names_only_the_clashing_field(
    server: VersoServer,
    page_url: PageURL,
    new_browser: Callable[[], webdriver.Chrome],
    verso: SyncVerso,
    output_dir: Path,
) -> None:
    prefix = f"notes-{uuid.uuid4().hex[:8]}/"
    key = prefix + "trip"
    verso.run(verso.client.put(key, {"title": "trip", "body": "tickets", "size": {"h": 2, "w": 1}}, base=0))
    a = open_page(new_browser, page_url(server, prefix=prefix), "A")
    b = open_page(new_browser, page_url(server, prefix=prefix), "B")
    for page in (a, b):
        page.wait_for_record(key, 1, {"title": "trip", "body": "tickets"})

    # Both start from version 1: A edits the title, B the body. A saves first (a plain write).
    a_editor, b_editor = a.open_editor(key, "title"), b.open_editor(key, "body")
    a.type_and_save(key, "title", a_editor, "trip to Lyon")
    a.wait_for(lambda: a.message() == f"Saved {key}.title as version 2.", "A's save")
    b.wait_for(lambda: b.version(key) == 2, "B's table to show version 2 under the open editor")
    # B's base is stale, but the title is not B's field: the server merges B's body in.
    b.type_and_save(key, "body", b_editor, "tickets, hotel", submit_with_enter=False)
    b.wait_for(lambda: b.message() == f"Saved {key}.body as version 3 — merged with someone else's change.",
               "B's save, merged")
    assert b.css("#message").get_attribute("data-kind") == "ok"
    for page in (a, b):
        page.wait_for_record(key, 3, {"title": "trip to Lyon", "body": "tickets, hotel"})
        assert page.conflicts() == []
    assert record(verso, key).data == {"title": "trip to Lyon", "body": "tickets, hotel", "size": {"h": 2, "w": 1}}
    body_save = [message for message in b.sent_messages() if message["type"] == "patch"][-1]
    assert (body_save["base"], body_save["patch"], body_save["merge"]) == (1, {"body": "tickets, hotel"}, "fields")

    # A clash: A starts editing the title at version 3; meanwhile the Python client changes the
    # title and the body (version 4). The conflict names the title, the one field both changed.
    editor = a.open_editor(key, "title")
    verso.run(verso.client.patch(key, {"title": "trip to Paris", "body": "train"}, base=3))
    a.wait_for(lambda: a.version(key) == 4, "A's table to show version 4 under the open editor")
    a.type_and_save(key, "title", editor, "trip to Nice")
    conflict = a.wait_for(lambda: a.conflict(key, "title"), "the clash on page A")
    assert conflict.get_attribute("data-reason") == "clash"
    clashes = conflict.find_elements(By.CSS_SELECTOR, "[data-role=clashes] [data-path]")
    assert [(path.get_attribute("data-path"), path.text) for path in clashes] == [("/title", "title")]
    assert "body" not in conflict.text, "only the clashing field is named, not everything that changed"
    assert conflict.find_element(By.CSS_SELECTOR, "[data-role=mine]").text == "trip to Nice"
    assert conflict.find_element(By.CSS_SELECTOR, "[data-role=theirs]").text == "trip to Paris"
    assert a.message() == f"Not saved: someone else changed “title” of {key} since your version 3. Choose below."
    assert b.conflicts() == []
    a.driver.save_screenshot(str(output_dir / "clash.png"))
    assert record(verso, key).version == 4, "a clash changes nothing"
    conflict.find_element(By.CSS_SELECTOR, "[data-action=take-theirs]").click()
    a.wait_for(lambda: a.conflicts() == [], "A's conflict to close")

    # Inside an object field, a clash is named by its path: B sets size to {"h":3,"w":1} from
    # version 4 while the Python client changes size.h.
    editor = b.open_editor(key, "size")
    verso.run(verso.client.patch(key, {"size": {"h": 5}}, base=4))
    b.wait_for(lambda: b.version(key) == 5, "B's table to show version 5 under the open editor")
    b.type_and_save(key, "size", editor, '{"h":3,"w":1}')
    conflict = b.wait_for(lambda: b.conflict(key, "size"), "the clash on page B")
    clashes = conflict.find_elements(By.CSS_SELECTOR, "[data-role=clashes] [data-path]")
    assert [(path.get_attribute("data-path"), path.text) for path in clashes] == [("/size/h", "size › h")]
    # Reapply mine: on the current version it lands.
    conflict.find_element(By.CSS_SELECTOR, "[data-action=reapply]").click()
    b.wait_for(lambda: b.conflicts() == [], "B's conflict to close after the reapply")
    assert record(verso, key) == Record(key, 6, {"title": "trip to Paris", "body": "train", "size": {"h": 3, "w": 1}})
    for page in (a, b):
        page.wait_for_record(key, 6, {"title": "trip to Paris"})
        assert page.severe_console_messages() == []


def test_set_field_form_creates_records(
    server: VersoServer, page_url: PageURL, new_browser: Callable[[], webdriver.Chrome], verso: SyncVerso
) -> None:
    prefix = f"notes-{uuid.uuid4().hex[:8]}/"
    page = open_page(new_browser, page_url(server, prefix=prefix), "form")
    page.wait_for(lambda: page.css("#empty").is_displayed(), "the empty-prefix notice")
    for box, text in (("#set-key", prefix + "new"), ("#set-field", "count"), ("#set-value", "3")):
        page.css(box).clear()
        page.css(box).send_keys(text)
    page.css("#set-submit").click()
    page.wait_for_record(prefix + "new", 1, {"count": "3"})
    assert record(verso, prefix + "new") == Record(prefix + "new", 1, {"count": 3})


def test_page_reconnects_and_resumes_with_since(
    page_url: PageURL,
    new_browser: Callable[[], webdriver.Chrome],
    connect_verso: Callable[[str], SyncVerso],
    server_args: tuple[str, ...],
) -> None:
    key = "notes/resume"  # the page's default prefix, on a server of its own
    with VersoServer(*server_args) as server:
        before = connect_verso(server.ws_url)
        created = before.run(before.client.put(key, {"n": "1"}, base=0))
        epoch = before.run(before.client.hello()).epoch
        page = open_page(new_browser, page_url(server), "reconnecting")
        page.wait_for_record(key, 1, {"n": "1"})
        assert page.css("#status").get_attribute("data-epoch") == epoch
        assert page.css("#status").get_attribute("data-resumed") == "false"
        first = [message for message in page.sent_messages() if message["type"] == "subscribe"]
        assert len(first) == 1 and "since" not in first[0], first

        assert server.stop() == 0
        page.wait_for(lambda: page.status() == "reconnecting", "the page to notice the server is gone")
        server.start()  # the same port and data folder: the same store
        after = connect_verso(server.ws_url)
        after.run(after.client.patch(key, {"n": "2"}, base=1))
        page.wait_for(lambda: page.status() == "open", "the page to reconnect")
        page.wait_for_record(key, 2, {"n": "2"})
        subscribes = [message for message in page.sent_messages() if message["type"] == "subscribe"]
        assert len(subscribes) == 2, subscribes
        resumed = subscribes[1]
        assert (resumed.get("prefix"), resumed.get("since"), resumed.get("epoch")) == ("notes/", created.seq, epoch), \
            "it resumes from the last seq it saw, in the store's epoch"
        status = page.css("#status")
        assert status.get_attribute("data-resumed") == "true", "the server replayed instead of resetting"
        assert status.get_attribute("data-reset") == "false"
        after.run(after.client.patch(key, {"n": "3"}, base=2))
        page.wait_for_record(key, 3, {"n": "3"})


def test_an_invalid_prefix_is_reported(
    server: VersoServer, page_url: PageURL, new_browser: Callable[[], webdriver.Chrome]
) -> None:
    page = open_page(new_browser, page_url(server), "bad prefix")
    # A control character (U+0007) makes the prefix invalid (Protocol.md section 4).
    page.driver.execute_script("document.getElementById('prefix').value = arguments[0];", "bad\u0007prefix")
    page.css("#prefix-apply").click()
    page.wait_for(lambda: "Cannot show prefix" in page.message(), "the page to report the refused prefix")
    assert page.css("#message").get_attribute("data-kind") == "error"
