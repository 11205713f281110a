"""When and by whom each change was made (``at``, ``by``: Protocol.md 2, 3.3, 5), a key's history
and restoring an old version (3.9), and presence (5.1), against a real verso-server."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from websockets.asyncio.server import ServerConnection, serve

from cutting_proxy import CuttingProxy
from verso_client import (
    Conflict,
    Event,
    History,
    JSONObject,
    Presence,
    ProtocolViolation,
    PutOp,
    Record,
    Snapshot,
    Subscription,
    Update,
    Version,
    VersionNotFound,
    VersoClient,
    VersoError,
)
from verso_server_process import VersoServer

if TYPE_CHECKING:
    from conftest import Connect

pytestmark = pytest.mark.asyncio

TIMEOUT = 10.0  # seconds to wait for any one expected message
CLOCK_SLACK_MS = 2000  # how far the server's `at` may be from this process's clock (one machine)


def now_ms() -> int:
    return int(time.time() * 1000)


def presence(event: Event) -> Presence:
    assert isinstance(event, Presence), f"not a presence: {event}"
    return event


async def presence_until(
    subscription: Subscription, expected: dict[tuple[str, str], JSONObject | None]
) -> dict[tuple[str, str], JSONObject | None]:
    """Read presence events until the latest state of each (session, key) is the expected one
    (the presence of two connections may interleave in any order); returns every latest state."""
    latest: dict[tuple[str, str], JSONObject | None] = {}
    missing = object()
    while any(latest.get(pair, missing) != state for pair, state in expected.items()):
        event = presence(await subscription.next(TIMEOUT))
        latest[(event.session, event.key)] = event.state
    return latest


# --------------------------------------------------------------------------- at and by


async def test_updates_and_conflicts_say_when_the_change_was_made(connect: Connect, prefix: str) -> None:
    writer, reader = await connect(), await connect()
    key = prefix + "note"
    subscription = await reader.subscribe(prefix=prefix)
    started = now_ms()
    ack = await writer.put(key, {"n": 1}, base=0)
    update = await subscription.next(TIMEOUT)
    assert isinstance(update, Update)
    assert update.at is not None and started - CLOCK_SLACK_MS <= update.at <= now_ms() + CLOCK_SLACK_MS
    assert update.by is None, "no user on a server that does not authenticate"
    assert update == Update(subscription.sub, key, 1, ack.seq, {"n": 1}, False), "at and by take no part in =="

    with pytest.raises(Conflict) as caught:
        await writer.put(key, {"n": 2}, base=0)
    assert (caught.value.version, caught.value.at, caught.value.by) == (1, update.at, None)
    assert caught.value.conflicts[0].at == update.at, "the current version's at"
    with pytest.raises(Conflict) as never:
        await writer.put(prefix + "ghost", {}, base=1)
    assert never.value.at is None, "a key that never existed has no at"

    txn = await writer.txn([PutOp(prefix + "a", {}, base=0), PutOp(prefix + "b", {}, base=0)])
    both = [await subscription.next(TIMEOUT) for _ in range(2)]
    assert all(isinstance(event, Update) and event.seq == txn.seq for event in both)
    assert len({event.at for event in both if isinstance(event, Update)}) == 1, "one commit, one at"
    history = await writer.history(key)
    assert history.versions[0].at == update.at, "history has the same at as the update"


async def test_by_and_user_on_a_server_that_authenticates(tmp_path: Path, prefix: str) -> None:
    everything = [{"prefix": "", "allow": ["read", "write"]}]
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [
        {"token": "ann-0123456789", "user": "ann", "rules": everything},
        {"token": "bob-0123456789", "user": "bob", "rules": everything},
    ]}))
    tokens.chmod(0o600)
    key = prefix + "note"
    with VersoServer("--auth", "tokens", "--tokens-file", str(tokens)) as server:
        async with await VersoClient.connect(server.ws_url, token="ann-0123456789") as ann, \
                await VersoClient.connect(server.ws_url, token="bob-0123456789") as bob:
            subscription = await bob.subscribe(prefix=prefix)
            ack = await ann.put(key, {"title": "ann's"}, base=0)
            update = await subscription.next(TIMEOUT)
            assert isinstance(update, Update) and (update.version, update.by) == (1, "ann")

            with pytest.raises(Conflict) as caught:
                await bob.put(key, {"title": "bob's"}, base=0)
            assert (caught.value.by, caught.value.at) == ("ann", update.at), "who got there first, and when"

            bobs = await bob.put(key, {"title": "bob's"}, base=ack.version)
            own = await subscription.next(TIMEOUT)
            assert isinstance(own, Update) and (own.seq, own.by) == (bobs.seq, "bob")
            history = await bob.history(key)
            assert [(version.version, version.by) for version in history.versions] == [(2, "bob"), (1, "ann")]

            shown = await ann.set_presence(key, {"field": "title"})
            assert (shown.user, shown.client) == ("ann", None)
            seen = presence(await subscription.next(TIMEOUT))
            assert (seen.user, seen.session, seen.state) == ("ann", shown.session, {"field": "title"})


# --------------------------------------------------------------------------- history


async def test_history_pages_newest_first_with_next(client: VersoClient, prefix: str) -> None:
    key = prefix + "note"
    acks = [
        await client.put(key, {"n": 1}, base=0),
        await client.put(key, {"n": 2}, base=1),
        await client.delete(key, base=2),
        await client.put(key, {"n": 4}, base=3),
        await client.patch(key, {"m": 5}, base=4),
    ]
    first = await client.history(key, limit=2)
    assert ([version.version for version in first.versions], first.next, first.gone) == ([5, 4], 4, None)
    second = await client.history(key, before=first.next, limit=2)
    assert ([version.version for version in second.versions], second.next, second.gone) == ([3, 2], 2, None)
    assert second.next is not None
    third = await client.history(key, before=second.next, limit=2)
    assert ([version.version for version in third.versions], third.next, third.gone) == ([1], None, None)

    versions = first.versions + second.versions + third.versions
    assert [version.seq for version in versions] == [ack.seq for ack in reversed(acks)]
    assert [version.data for version in versions] == [{"m": 5, "n": 4}, {"n": 4}, None, {"n": 2}, {"n": 1}]
    assert [version.deleted for version in versions] == [False, False, True, False, False]
    times = [version.at for version in versions]
    assert all(isinstance(at, int) and abs(at - now_ms()) < CLOCK_SLACK_MS + 60_000 for at in times)
    assert times == sorted(times, key=lambda at: at or 0, reverse=True), "newest first"
    assert all(version.by is None for version in versions)
    assert versions[0] == Version(5, acks[-1].seq, versions[0].at, None, {"m": 5, "n": 4})

    assert await client.history_all(key, page_size=2) == History(key, versions, None, None)
    assert (await client.history(key)).versions == versions, "the default limit (20) takes them all"
    assert await client.history_all(key, before=3) == History(key, versions[3:], None, None)


async def test_history_of_a_key_that_never_existed_or_with_a_bad_limit_is_an_error(
    client: VersoClient, prefix: str
) -> None:
    with pytest.raises(VersoError) as missing:
        await client.history(prefix + "never")
    assert missing.value.code == "not_found"
    await client.put(prefix + "a", {}, base=0)
    for bad in ({"limit": 0}, {"limit": 101}, {"before": 0}):
        with pytest.raises(VersoError) as caught:
            await client.history(prefix + "a", **bad)
        assert caught.value.code == "bad_request", bad


async def test_history_says_which_versions_are_gone(connect: Connect, short_history_server: VersoServer, prefix: str) -> None:
    client = await connect(short_history_server.ws_url)
    key = prefix + "note"
    for version in range(20):
        await client.put(key, {"n": version + 1}, base=version)
    whole = await client.history_all(key, page_size=3)
    assert whole.gone is not None and whole.gone >= 4, "the log holds 16 seqs, and no versions are kept beyond it"
    assert [version.version for version in whole.versions] == list(range(20, whole.gone, -1))
    assert len(whole.versions) <= 16
    older = await client.history(key, before=whole.gone + 1)
    assert (older.versions, older.next, older.gone) == ([], None, whole.gone)

    with pytest.raises(VersionNotFound) as caught:
        await client.restore(key, 1)
    gone = caught.value
    assert (gone.code, gone.key, gone.requested, gone.gone) == ("not_found", key, 1, 1)
    assert isinstance(gone, VersoError) and "no longer kept" in str(gone)

    oldest_kept = whole.gone + 1
    restored = await client.restore(key, oldest_kept)
    assert restored.version == 21
    assert (await client.get(key)).data == {"n": oldest_kept}


# --------------------------------------------------------------------------- restore


async def test_restore_writes_an_old_version_back_as_a_new_one(connect: Connect, prefix: str) -> None:
    writer, reader = await connect(), await connect()
    key = prefix + "note"
    await writer.put(key, {"title": "first", "tags": ["a"]}, base=0)
    await writer.put(key, {"title": "second"}, base=1)
    subscription = await reader.subscribe(keys=[key])
    assert await subscription.next(TIMEOUT) == Snapshot(subscription.sub, key, 2, {"title": "second"})

    restored = await writer.restore(key, 1)
    assert (restored.key, restored.version, restored.merged) == (key, 3, False)
    assert await writer.get(key) == Record(key, 3, {"title": "first", "tags": ["a"]})
    assert await subscription.next(TIMEOUT) == Update(subscription.sub, key, 3, restored.seq, {"title": "first", "tags": ["a"]}, False)
    history = await writer.history(key)
    assert [version.data for version in history.versions] == [
        {"tags": ["a"], "title": "first"}, {"title": "second"}, {"tags": ["a"], "title": "first"}
    ], "nothing is rewritten: the restore is a new version"


async def test_restore_conflicts_when_someone_writes_first(
    connect: Connect, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, bob = await connect(), await connect()
    key = prefix + "note"
    await ann.put(key, {"v": 1}, base=0)
    await ann.put(key, {"v": 2}, base=1)
    read_history = ann.history

    async def history_then_bob_writes(key: str, *, before: int | None = None, limit: int | None = None) -> History:
        page = await read_history(key, before=before, limit=limit)
        if before is None:  # restore has just read the current version: bob writes before its put
            await bob.put(key, {"v": "bob"}, base=page.versions[0].version)
        return page

    monkeypatch.setattr(ann, "history", history_then_bob_writes)
    with pytest.raises(Conflict) as caught:
        await ann.restore(key, 1)
    conflict = caught.value
    assert (conflict.key, conflict.base, conflict.version, conflict.data) == (key, 2, 3, {"v": "bob"})
    assert conflict.at is not None
    assert await bob.get(key) == Record(key, 3, {"v": "bob"}), "a conflict changes nothing"


async def test_restore_onto_a_deleted_key_and_what_cannot_be_restored(client: VersoClient, prefix: str) -> None:
    key = prefix + "note"
    await client.put(key, {"title": "kept"}, base=0)
    await client.delete(key, base=1)
    restored = await client.restore(key, 1)
    assert restored.version == 3, "the tombstone's version is the base"
    assert await client.get(key) == Record(key, 3, {"title": "kept"})

    with pytest.raises(ValueError, match="is a deletion.*delete"):
        await client.restore(key, 2)
    with pytest.raises(VersionNotFound) as ahead:
        await client.restore(key, 9)
    assert (ahead.value.code, ahead.value.gone, ahead.value.current) == ("not_found", None, 3)
    assert "does not exist" in str(ahead.value)
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="at least 1"):
            await client.restore(key, bad)
    with pytest.raises(VersoError) as never:
        await client.restore(prefix + "never", 1)
    assert type(never.value) is VersoError and never.value.code == "not_found"
    assert (await client.get(key)).version == 3, "none of these wrote anything"


# --------------------------------------------------------------------------- presence


async def test_presence_is_seen_by_other_connections_and_cleared_when_it_closes(connect: Connect, prefix: str) -> None:
    ann, bob = await connect(), await connect()
    welcome = await ann.hello("ann-laptop")
    key, other = prefix + "note", prefix + "elsewhere"
    await ann.put(key, {"title": "x"}, base=0)
    own = await ann.subscribe(keys=[key])
    assert await own.next(TIMEOUT) == Snapshot(own.sub, key, 1, {"title": "x"})

    shown = await ann.set_presence(key, {"field": "title"})
    assert shown == Presence(None, key, welcome.session, "ann-laptop", None, {"field": "title"})
    assert ann.presence == {key: {"field": "title"}}

    subscription = await bob.subscribe(prefix=prefix)
    assert await subscription.next(TIMEOUT) == Snapshot(subscription.sub, key, 1, {"title": "x"})
    seen = await subscription.next(TIMEOUT)
    assert seen == Presence(subscription.sub, key, welcome.session, "ann-laptop", None, {"field": "title"}), \
        "the current presence follows the snapshots"

    await ann.set_presence(key, {"field": "body"})
    assert presence(await subscription.next(TIMEOUT)).state == {"field": "body"}
    cleared = await ann.set_presence(key, None)
    assert cleared.state is None and ann.presence == {}
    left = presence(await subscription.next(TIMEOUT))
    assert (left.key, left.session, left.state, left.left) == (key, welcome.session, None, True)

    await ann.set_presence(other, {"n": 1})  # a key that does not exist
    assert presence(await subscription.next(TIMEOUT)).key == other
    ack = await ann.put(key, {"title": "y"}, base=1)
    assert await own.next(TIMEOUT) == Update(own.sub, key, 2, ack.seq, {"title": "y"}, False), \
        "a connection is not sent its own presence"
    assert isinstance(await subscription.next(TIMEOUT), Update)

    await ann.close()
    gone = presence(await subscription.next(TIMEOUT))
    assert (gone.key, gone.session, gone.state) == (other, welcome.session, None), "closing clears it"
    assert subscription.pending() == 0


async def test_presence_limits_change_nothing(client: VersoClient, prefix: str) -> None:
    with pytest.raises(VersoError) as large:
        await client.set_presence(prefix + "a", {"text": "x" * 1100})
    assert (large.value.code, client.presence) == ("too_large", {})
    for index in range(32):
        await client.set_presence(f"{prefix}{index:02}", {"i": index})
    with pytest.raises(VersoError) as many:
        await client.set_presence(prefix + "one-too-many", {})
    assert many.value.code == "too_large"
    assert len(client.presence) == 32 and prefix + "one-too-many" not in client.presence
    await client.set_presence(prefix + "00", None)
    await client.set_presence(prefix + "one-too-many", {})
    assert len(client.presence) == 32 and prefix + "00" not in client.presence


async def test_presence_is_set_again_after_a_reconnect(server: VersoServer, connect: Connect, prefix: str) -> None:
    key, later = prefix + "note", prefix + "later"
    bob = await connect()
    subscription = await bob.subscribe(prefix=prefix)
    async with CuttingProxy("127.0.0.1", server.port) as proxy:
        ann = await VersoClient.connect(proxy.ws_url, reconnect=True, reconnect_timeout=TIMEOUT)
        try:
            first = await ann.set_presence(key, {"line": 1})
            assert presence(await subscription.next(TIMEOUT)).state == {"line": 1}

            proxy.cut_before_next_reply()  # the server sets `later`, and its echo never arrives
            shown = await asyncio.wait_for(ann.set_presence(later, {"line": 9}), TIMEOUT)
            assert (proxy.cuts, proxy.accepted) == (1, 2), "one cut, one reconnection"
            assert shown.session != first.session, "sent again, and answered on the new connection"
            assert ann.presence == {key: {"line": 1}, later: {"line": 9}}

            # Bob sees the old connection leave both keys and the new one take them again.
            await presence_until(subscription, {
                (first.session, key): None,
                (first.session, later): None,
                (shown.session, key): {"line": 1},
                (shown.session, later): {"line": 9},
            })
            await ann.set_presence(key, None)
            assert await subscription.next(TIMEOUT) == Presence(subscription.sub, key, shown.session, None, None, None)
            assert ann.presence == {later: {"line": 9}}
        finally:
            await ann.close()


# --------------------------------------------------------------------------- malformed replies

VERSION = {"version": 2, "seq": 7, "at": 1764790000123, "data": {}, "deleted": False}


@pytest.mark.parametrize(
    ("reply", "violation"),
    [
        ({"type": "history", "key": "k", "versions": [VERSION, {**VERSION, "version": 0}], "next": None},
         "versions not newest first one by one: [2, 0]"),
        ({"type": "history", "key": "k", "versions": [{**VERSION, "deleted": True}], "next": None},
         "data must be null exactly when deleted"),
        ({"type": "history", "key": "k", "versions": [{**VERSION, "data": None}], "next": None},
         "data must be null exactly when deleted"),
        ({"type": "history", "key": "k", "versions": [{**VERSION, "at": "noon"}], "next": None},
         "history.versions[].at is not an integer"),
        ({"type": "history", "key": "k", "versions": [{**VERSION, "by": 1}], "next": None},
         "history.versions[].by is not a string"),
        ({"type": "history", "key": "k", "versions": [VERSION], "next": 2, "gone": 1}, "gone=1 with next=2"),
        ({"type": "history", "key": "k", "versions": [VERSION], "next": None, "gone": 2}, "gone=2"),
        ({"type": "history", "key": "k", "versions": [VERSION], "next": "1"}, "history.next is not an integer"),
        ({"type": "history", "key": "k", "versions": [VERSION], "next": None}, "end above 1 with neither next nor gone"),
        ({"type": "history", "key": "k", "versions": [{**VERSION, "version": 3}], "next": 3}, "outside 1 to before=3"),
        ({"type": "history", "key": "k", "versions": {}, "next": None}, "history.versions is not a list"),
        ({"type": "presence", "key": "k", "session": "s"}, "presence without a state"),
        ({"type": "presence", "key": "k", "session": "s", "state": [1]}, "presence.state is not an object"),
        ({"type": "presence", "key": "k", "session": "s", "client": None, "state": {}}, "presence.client is not a string"),
        ({"type": "conflict", "key": "k", "base": 1, "version": 2, "at": 1.5, "data": {}, "deleted": False},
         "conflict.at is not an integer"),
        ({"type": "conflict", "key": "k", "base": 1, "version": 2, "by": None, "data": {}, "deleted": False},
         "conflict.by is not a string"),
    ],
)
async def test_malformed_history_presence_and_conflict_fields_are_a_protocol_violation(
    reply: dict[str, object], violation: str
) -> None:
    async def answer(websocket: ServerConnection) -> None:  # a server that always sends `reply`
        async for text in websocket:
            await websocket.send(json.dumps({**reply, "rid": json.loads(text)["rid"]}))

    async with serve(answer, "127.0.0.1", 0) as fake:
        port = fake.sockets[0].getsockname()[1]
        async with await VersoClient.connect(f"ws://127.0.0.1:{port}/v1/ws") as client:
            with pytest.raises(ProtocolViolation, match=re.escape(violation)):
                if reply["type"] == "history":
                    await client.history("k", before=3)
                elif reply["type"] == "presence":
                    await client.set_presence("k", {})
                else:
                    await client.put("k", {}, base=1)
            assert client.presence == {}, "an echo that is not an object is not remembered"


async def test_history_all_refuses_pages_that_skip_a_version() -> None:
    def version(number: int) -> dict[str, object]:
        return {**VERSION, "version": number, "seq": number}

    pages: list[dict[str, object]] = [
        {"type": "history", "key": "k", "versions": [version(5)], "next": 5},
        {"type": "history", "key": "k", "versions": [version(3), version(2), version(1)], "next": None},
    ]

    async def answer(websocket: ServerConnection) -> None:  # a server whose second page skips version 4
        async for text in websocket:
            await websocket.send(json.dumps({**pages.pop(0), "rid": json.loads(text)["rid"]}))

    async with serve(answer, "127.0.0.1", 0) as fake:
        port = fake.sockets[0].getsockname()[1]
        async with await VersoClient.connect(f"ws://127.0.0.1:{port}/v1/ws") as client:
            with pytest.raises(ProtocolViolation, match="after version 5 starts at 3"):
                await client.history_all("k", page_size=1)
