"""The Python client against a real verso-server: every method, conflicts, subscriptions, errors."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from websockets.asyncio.server import ServerConnection, serve

from verso_client import (
    Ack,
    CheckOp,
    Conflict,
    ConnectionLost,
    DeleteOp,
    Event,
    JSONObject,
    PatchOp,
    Progress,
    ProtocolViolation,
    PutOp,
    Record,
    RecordEvent,
    Snapshot,
    Subscription,
    Update,
    VersoClient,
    VersoError,
)
from verso_server_process import VersoServer, self_signed_certificate

if TYPE_CHECKING:
    from conftest import Connect

pytestmark = pytest.mark.asyncio

TIMEOUT = 10.0  # seconds to wait for any one expected message


def record(event: Event) -> RecordEvent:
    """The event as a record event: a test subscribed without progress gets no bookmark, and one
    whose keys no other connection has presence on gets no presence."""
    assert isinstance(event, (Snapshot, Update)), f"not a record event: {event}"
    return event


async def next_events(subscription: Subscription, count: int) -> list[RecordEvent]:
    return [record(await subscription.next(TIMEOUT)) for _ in range(count)]


def utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda key: key.encode())


# --------------------------------------------------------------------------- connection


async def test_permessage_deflate_is_negotiated(client: VersoClient, prefix: str) -> None:
    header = client.extensions_header
    assert header is not None, "the handshake response has no Sec-WebSocket-Extensions header"
    assert "permessage-deflate" in header.lower()
    assert client.compressed
    # A large, very compressible record goes through the compressed connection intact.
    data = {"text": "verso " * 50_000}
    await client.put(prefix + "big", data, base=0)
    assert (await client.get(prefix + "big")).data == data


async def test_no_extension_when_not_offered(connect: Connect, prefix: str) -> None:
    plain = await connect(compression=False)
    assert plain.extensions_header is None
    assert not plain.compressed
    ack = await plain.put(prefix + "a", {"x": 1}, base=0)
    assert ack.version == 1


async def test_health_and_plain_http_to_websocket_endpoint(server: VersoServer) -> None:
    def fetch(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(server.http_url + path, timeout=TIMEOUT) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    status, body = await asyncio.to_thread(fetch, "/healthz")
    assert (status, body.strip()) == (200, b"ok")
    status, body = await asyncio.to_thread(fetch, "/v1/ws")
    assert status == 400
    reply = json.loads(body)
    assert reply["type"] == "error" and reply["code"] == "bad_request"


async def test_hello(connect: Connect, prefix: str) -> None:
    first, second = await connect(), await connect()
    welcome = await first.hello("pytest")
    assert welcome.server.startswith("verso/")
    assert welcome.epoch and welcome.session
    ack = await first.put(prefix + "a", {}, base=0)
    again = await second.hello()
    assert again.epoch == welcome.epoch, "one store, one epoch"
    assert again.session != welcome.session, "each connection is its own session"
    assert again.seq == ack.seq, "welcome.seq is the last committed seq"


# --------------------------------------------------------------------------- get and writes


async def test_get_missing_key_is_not_found(client: VersoClient, prefix: str) -> None:
    with pytest.raises(VersoError) as caught:
        await client.get(prefix + "nothing")
    assert caught.value.code == "not_found"
    assert caught.value.key == prefix + "nothing"
    assert caught.value.version is None and not caught.value.deleted


async def test_put_creates_and_replaces(client: VersoClient, prefix: str) -> None:
    key = prefix + "note"
    data = {"title": "héllo ✓", "n": 12345678901234567890, "f": 1.5, "nested": {"list": [1, None, True]}}
    created = await client.put(key, data, base=0)
    assert (created.key, created.version) == (key, 1)
    record = await client.get(key)
    assert (record.key, record.version, record.data) == (key, 1, data)

    replaced = await client.put(key, {"title": "replaced"}, base=1)
    assert replaced.version == 2 and replaced.seq > created.seq
    assert (await client.get(key)).data == {"title": "replaced"}


async def test_members_come_in_utf8_byte_order(client: VersoClient, prefix: str) -> None:
    key = prefix + "order"
    names = ["zeta", "Alpha", "émile", "alpha", "_", "Zed", "\U0001f600", "\uffee"]
    await client.put(key, {name: index for index, name in enumerate(names)}, base=0)
    reply = await client.request({"type": "get", "key": key})
    data = reply["data"]
    assert isinstance(data, dict)
    assert list(data) == utf8_sorted(names)


async def test_put_on_stale_base_raises_conflict_with_current_state(client: VersoClient, prefix: str) -> None:
    key = prefix + "note"
    await client.put(key, {"title": "theirs"}, base=0)
    with pytest.raises(Conflict) as caught:
        await client.put(key, {"title": "mine"}, base=0)
    conflict = caught.value
    assert (conflict.key, conflict.base, conflict.version) == (key, 0, 1)
    assert conflict.data == {"title": "theirs"} and conflict.deleted is False
    assert len(conflict.conflicts) == 1
    record = await client.get(key)
    assert (record.version, record.data) == (1, {"title": "theirs"}), "a conflict changes nothing"


async def test_conflict_on_a_key_that_never_existed(client: VersoClient, prefix: str) -> None:
    with pytest.raises(Conflict) as caught:
        await client.patch(prefix + "ghost", {"a": 1}, base=3)
    assert (caught.value.version, caught.value.data, caught.value.deleted) == (0, None, False)


async def test_patch_is_an_rfc7396_merge_patch(client: VersoClient, prefix: str) -> None:
    key = prefix + "note"
    await client.put(key, {"title": "a", "tags": ["x"], "meta": {"a": 1, "b": 2}}, base=0)
    ack = await client.patch(key, {"title": None, "tags": ["y"], "meta": {"b": None, "c": 3}}, base=1)
    assert ack.version == 2
    assert (await client.get(key)).data == {"tags": ["y"], "meta": {"a": 1, "c": 3}}

    with pytest.raises(Conflict) as caught:
        await client.patch(key, {"title": "stale"}, base=1)
    assert caught.value.version == 2 and caught.value.data == {"tags": ["y"], "meta": {"a": 1, "c": 3}}

    created = await client.patch(prefix + "fresh", {"a": {"b": None, "c": 1}, "d": None}, base=0)
    assert created.version == 1
    assert (await client.get(prefix + "fresh")).data == {"a": {"c": 1}}


async def test_delete_leaves_a_tombstone_whose_version_continues(client: VersoClient, prefix: str) -> None:
    key = prefix + "note"
    await client.put(key, {"title": "x"}, base=0)
    deleted = await client.delete(key, base=1)
    assert (deleted.key, deleted.version) == (key, 2)

    with pytest.raises(VersoError) as missing:
        await client.get(key)
    assert (missing.value.code, missing.value.version, missing.value.deleted) == ("not_found", 2, True)

    with pytest.raises(Conflict) as stale:
        await client.put(key, {"title": "y"}, base=1)
    assert (stale.value.version, stale.value.data, stale.value.deleted) == (2, None, True)

    with pytest.raises(VersoError) as again:
        await client.delete(key, base=2)
    assert (again.value.code, again.value.version, again.value.deleted) == ("not_found", 2, True)

    revived = await client.put(key, {"title": "back"}, base=2)
    assert revived.version == 3, "writing a tombstone continues its count; no version is reused"
    assert (await client.get(key)).version == 3


async def test_delete_of_a_missing_key_is_not_found(client: VersoClient, prefix: str) -> None:
    with pytest.raises(VersoError) as caught:
        await client.delete(prefix + "nothing", base=0)
    assert caught.value.code == "not_found" and not caught.value.deleted
    with pytest.raises(VersoError):
        await client.get(prefix + "nothing")


# --------------------------------------------------------------------------- list


async def test_list_pages_through_live_records_in_key_order(client: VersoClient, prefix: str) -> None:
    keys = [prefix + name for name in ["b", "a", "c/1", "é", "z", "D"]]
    for key in keys:
        await client.put(key, {"k": key}, base=0)
    await client.delete(prefix + "z", base=1)
    await client.put(prefix[:-1] + "_outside", {}, base=0)
    live = utf8_sorted([key for key in keys if key != prefix + "z"])

    first = await client.list(prefix, limit=2)
    assert [record.key for record in first.records] == live[:2]
    assert first.next == live[1]
    second = await client.list(prefix, after=first.next, limit=2)
    assert [record.key for record in second.records] == live[2:4]

    everything = await client.list_all(prefix, page_size=2)
    assert [record.key for record in everything] == live
    assert all(record.version == 1 and record.data == {"k": record.key} for record in everything)

    whole = await client.list(prefix)
    assert [record.key for record in whole.records] == live and whole.next is None
    assert (await client.list(prefix + "c/")).records[0].key == prefix + "c/1"
    assert (await client.list(prefix + "nothing/")).records == []


# --------------------------------------------------------------------------- txn


async def test_txn_applies_every_op_under_one_seq(client: VersoClient, prefix: str) -> None:
    a, b, c, d = (prefix + name for name in "abcd")
    for key in (b, c, d):
        await client.put(key, {"y": 1}, base=0)
    ack = await client.txn([
        PutOp(a, {"x": 1}, base=0),
        PatchOp(b, {"y": 2}, base=1),
        DeleteOp(c, base=1),
        CheckOp(d, base=1),
    ])
    assert ack.versions == {a: 1, b: 2, c: 2, d: 1}
    assert (await client.hello()).seq == ack.seq, "one seq for the whole txn"
    assert (await client.get(a)).data == {"x": 1}
    assert (await client.get(b)).data == {"y": 2}
    with pytest.raises(VersoError):
        await client.get(c)

    checks = await client.txn([CheckOp(a, base=1), CheckOp(d, base=1)])
    assert checks.seq == ack.seq, "a txn of checks that hold is acknowledged with the current seq"
    assert checks.versions == {a: 1, d: 1}


async def test_txn_conflict_lists_every_stale_op_and_applies_nothing(client: VersoClient, prefix: str) -> None:
    a, b, c = (prefix + name for name in "abc")
    await client.put(a, {"v": "a"}, base=0)
    await client.put(b, {"v": "b"}, base=0)
    with pytest.raises(Conflict) as caught:
        await client.txn([
            PutOp(a, {"v": "stale"}, base=0),
            PutOp(c, {"v": "fine"}, base=0),
            CheckOp(b, base=7),
        ])
    stale = {state.key: state for state in caught.value.conflicts}
    assert set(stale) == {a, b}
    assert (stale[a].base, stale[a].version, stale[a].data, stale[a].deleted) == (0, 1, {"v": "a"}, False)
    assert (stale[b].base, stale[b].version, stale[b].data) == (7, 1, {"v": "b"})
    with pytest.raises(VersoError):
        await client.get(c)
    assert (await client.get(a)).data == {"v": "a"}


async def test_txn_delete_of_missing_key_is_not_found_and_applies_nothing(client: VersoClient, prefix: str) -> None:
    with pytest.raises(VersoError) as caught:
        await client.txn([PutOp(prefix + "a", {}, base=0), DeleteOp(prefix + "missing", base=0)])
    assert (caught.value.code, caught.value.key) == ("not_found", prefix + "missing")
    with pytest.raises(VersoError):
        await client.get(prefix + "a")


async def test_txn_naming_a_key_twice_is_a_bad_request(client: VersoClient, prefix: str) -> None:
    with pytest.raises(VersoError) as caught:
        await client.txn([CheckOp(prefix + "a", base=0), PutOp(prefix + "a", {}, base=0)])
    assert caught.value.code == "bad_request"


# --------------------------------------------------------------------------- field-level merge

# The record at base in Protocol.md 3.3's worked examples.
MERGE_BASE = {"title": "a", "meta": {"x": 1, "y": 1}, "tags": ["p"]}


async def test_merge_fields_lands_a_write_on_a_stale_base_when_nothing_it_changes_changed(
    connect: Connect, prefix: str
) -> None:
    mine, theirs = await connect(), await connect()
    key = prefix + "note"
    await theirs.put(key, MERGE_BASE, base=0)
    await theirs.patch(key, {"title": "b"}, base=1)

    patched = await mine.patch(key, {"meta": {"x": 2}}, base=1, merge=True)
    assert (patched.version, patched.merged) == (3, True)
    assert (await mine.get(key)).data == {"title": "b", "meta": {"x": 2, "y": 1}, "tags": ["p"]}

    # A put applies the values where its data differs from the record at base: only meta.y here.
    put = await mine.put(key, {"title": "a", "meta": {"x": 1, "y": 3}, "tags": ["p"]}, base=1, merge=True)
    assert (put.version, put.merged) == (4, True)
    assert (await mine.get(key)).data == {"title": "b", "meta": {"x": 2, "y": 3}, "tags": ["p"]}

    current = await mine.patch(key, {"tags": ["q"]}, base=4, merge=True)
    assert (current.version, current.merged) == (5, False), "with base equal to the current version it is a plain write"
    assert (await mine.patch(key, {"n": 1}, base=5)).merged is False


async def test_merge_fields_refused_on_a_clash_names_the_clashing_and_changed_paths(
    client: VersoClient, prefix: str
) -> None:
    key = prefix + "note"
    await client.put(key, MERGE_BASE, base=0)
    await client.patch(key, {"title": "b", "meta": {"y": 2}}, base=1)
    now: JSONObject = {"title": "b", "meta": {"x": 1, "y": 2}, "tags": ["p"]}

    with pytest.raises(Conflict) as patched:
        await client.patch(key, {"title": "c", "meta": {"x": 2}}, base=1, merge=True)
    conflict = patched.value
    assert (conflict.reason, conflict.clashes, conflict.changed) == ("clash", ["/title"], ["/meta/y", "/title"])
    assert (conflict.key, conflict.base, conflict.version, conflict.data, conflict.deleted) == (key, 1, 2, now, False)
    assert "clash on /title" in str(conflict)

    # meta replaced by a scalar is one value, and /meta/y is inside it.
    with pytest.raises(Conflict) as put:
        await client.put(key, {"title": "a", "meta": 5, "tags": ["p"]}, base=1, merge=True)
    assert (put.value.reason, put.value.clashes, put.value.changed) == ("clash", ["/meta"], ["/meta/y", "/title"])
    assert await client.get(key) == Record(key, 2, now), "a refused merge changes nothing"


async def test_merge_fields_refused_for_other_reasons_has_no_clashes(client: VersoClient, prefix: str) -> None:
    key = prefix + "note"
    await client.put(key, {"n": 1}, base=0)
    with pytest.raises(Conflict) as ahead:
        await client.patch(key, {"n": 2}, base=5, merge=True)
    with pytest.raises(Conflict) as created:
        await client.put(key, {"n": 2}, base=0, merge=True)
    await client.delete(key, base=1)
    with pytest.raises(Conflict) as deleted:
        await client.patch(key, {"n": 2}, base=1, merge=True)
    reasons = [(refused.value.reason, refused.value.clashes, refused.value.changed)
               for refused in (ahead, created, deleted)]
    assert reasons == [("unknown_base", [], None), ("recreated", [], None), ("deleted", [], None)]
    assert (deleted.value.version, deleted.value.data, deleted.value.deleted) == (2, None, True)


async def test_a_conflict_without_merge_has_no_reason_but_says_what_changed(client: VersoClient, prefix: str) -> None:
    key = prefix + "note"
    await client.put(key, {"title": "a"}, base=0)
    await client.patch(key, {"body": "b"}, base=1)
    with pytest.raises(Conflict) as caught:
        await client.patch(key, {"title": "c"}, base=1)
    conflict = caught.value
    assert (conflict.reason, conflict.clashes, conflict.changed) == (None, [], ["/body"])
    assert not {"reason", "clashes"} & set(conflict.reply), "a write without merge gets no reason or clashes"


async def test_txn_merge_ops_are_merged_and_their_keys_listed(client: VersoClient, prefix: str) -> None:
    a, b, c = (prefix + name for name in "abc")
    await client.put(a, MERGE_BASE, base=0)
    await client.patch(a, {"title": "b"}, base=1)
    await client.put(b, {"n": 1}, base=0)
    wire = PatchOp(a, {}, base=1, merge=True).wire()
    assert wire == {"op": "patch", "key": a, "patch": {}, "base": 1, "merge": "fields"}

    ack = await client.txn([
        PatchOp(a, {"tags": ["q"]}, base=1, merge=True),
        PutOp(b, {"n": 2}, base=1, merge=True),
        PutOp(c, {}, base=0),
    ])
    assert ack.versions == {a: 3, b: 2, c: 1}
    assert ack.merged == [a], "only ops merged into a newer version than their base"
    assert (await client.get(a)).data == {"title": "b", "meta": {"x": 1, "y": 1}, "tags": ["q"]}
    assert (await client.txn([CheckOp(a, base=3)])).merged == []

    with pytest.raises(Conflict) as caught:
        await client.txn([PatchOp(a, {"title": "c"}, base=1, merge=True), PutOp(c, {"x": 1}, base=0)])
    stale = {state.key: state for state in caught.value.conflicts}
    assert set(stale) == {a, c}, "every stale op is listed"
    assert (stale[a].reason, stale[a].clashes, stale[a].changed) == ("clash", ["/title"], ["/tags", "/title"])
    assert (stale[c].reason, stale[c].clashes, stale[c].changed) == (None, [], None)
    assert (await client.get(a)).version == 3, "nothing is applied"


MERGE_CONFLICT = {"type": "conflict", "key": "k", "base": 1, "version": 2, "data": {}, "deleted": False}


@pytest.mark.parametrize(
    ("reply", "violation"),
    [
        ({"type": "ack", "key": "k", "version": 2, "seq": 2, "merged": "yes"}, "ack.merged is not a boolean"),
        ({**MERGE_CONFLICT, "reason": 1, "clashes": []}, "conflict.reason is not a string"),
        ({**MERGE_CONFLICT, "reason": "clash", "clashes": "/a"}, "conflict.clashes is not a list"),
        ({**MERGE_CONFLICT, "reason": "clash", "clashes": [1]}, "conflict.clashes[] is not a string"),
        ({**MERGE_CONFLICT, "reason": "clash", "clashes": ["/a"], "changed": None}, "conflict.changed is not a list"),
        ({"type": "ack", "seq": 2, "versions": {"k": 2}, "merged": [None]}, "ack.merged[] is not a string"),
        ({"type": "conflict", "conflicts": [{**MERGE_CONFLICT, "reason": "clash", "clashes": {}}]},
         "conflict.clashes is not a list"),
        ({"type": "ack", "key": "k", "version": 2, "seq": 2, "replayed": "yes"}, "ack.replayed is not a boolean"),
        ({"type": "ack", "key": "k", "version": 2, "seq": 2, "replayed": None}, "ack.replayed is not a boolean"),
        ({"type": "ack", "seq": 2, "versions": {"k": 2}, "replayed": 1}, "ack.replayed is not a boolean"),
    ],
)
async def test_malformed_merge_and_replayed_fields_are_a_protocol_violation(
    reply: dict[str, object], violation: str
) -> None:
    async def answer(websocket: ServerConnection) -> None:  # a server that always sends `reply`
        async for text in websocket:
            await websocket.send(json.dumps({**reply, "rid": json.loads(text)["rid"]}))

    async with serve(answer, "127.0.0.1", 0) as fake:
        port = fake.sockets[0].getsockname()[1]
        async with await VersoClient.connect(f"ws://127.0.0.1:{port}/v1/ws") as client:
            with pytest.raises(ProtocolViolation, match=re.escape(violation)):
                if "versions" in reply or "conflicts" in reply:
                    await client.txn([PatchOp("k", {"a": 1}, base=1, merge=True)])
                else:
                    await client.patch("k", {"a": 1}, base=1, merge=True)


# --------------------------------------------------------------------------- forced writes


async def test_forced_writes_are_forbidden_by_default(client: VersoClient, prefix: str) -> None:
    for attempt in (
        client.put(prefix + "a", {}, force=True),
        client.patch(prefix + "a", {}, force=True),
        client.delete(prefix + "a", force=True),
        client.txn([PutOp(prefix + "a", {}, force=True)]),
    ):
        with pytest.raises(VersoError) as caught:
            await attempt
        assert caught.value.code == "forbidden"
    with pytest.raises(VersoError):
        await client.get(prefix + "a")


async def test_forced_writes_take_the_next_version(connect: Connect, force_server: VersoServer, prefix: str) -> None:
    client = await connect(force_server.ws_url)
    key = prefix + "a"
    await client.put(key, {"n": 1}, base=0)
    await client.put(key, {"n": 2}, base=1)
    forced = await client.put(key, {"n": "forced"}, force=True)
    assert forced.version == 3
    patched = await client.patch(key, {"m": 1}, force=True)
    assert patched.version == 4
    assert (await client.get(key)).data == {"n": "forced", "m": 1}
    assert (await client.delete(key, force=True)).version == 5
    with pytest.raises(VersoError) as caught:
        await client.delete(key, force=True)
    assert (caught.value.code, caught.value.version, caught.value.deleted) == ("not_found", 5, True)
    txn = await client.txn([PutOp(key, {"again": True}, force=True)])
    assert txn.versions == {key: 6}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("request_body", "code"),
    [
        ({"type": "teleport"}, "bad_request"),
        ({"type": "get"}, "bad_request"),
        ({"type": "get", "key": ""}, "bad_request"),
        ({"type": "get", "key": "bad\u0001key"}, "bad_request"),
        ({"type": "get", "key": "k" * 513}, "bad_request"),
        ({"type": "put", "key": "k", "base": 0, "data": [1]}, "bad_request"),
        ({"type": "put", "key": "k", "base": -1, "data": {}}, "bad_request"),
        ({"type": "put", "key": "k", "base": 1.0, "data": {}}, "bad_request"),
        ({"type": "patch", "key": "k", "base": 0, "patch": "x"}, "bad_request"),
        ({"type": "put", "key": "k", "force": True, "data": {}}, "forbidden"),
        ({"type": "list", "limit": 0}, "bad_request"),
        ({"type": "subscribe", "prefix": "a", "keys": ["a"]}, "bad_request"),
        ({"type": "subscribe", "keys": [f"k{i}" for i in range(1001)]}, "too_large"),
        ({"type": "txn", "ops": [{"op": "check", "key": f"k{i}", "base": 0} for i in range(1001)]}, "too_large"),
        ({"type": "unsubscribe", "sub": 424242}, "not_found"),
    ],
)
async def test_error_replies_carry_code_message_and_rid(
    client: VersoClient, request_body: dict[str, object], code: str
) -> None:
    with pytest.raises(VersoError) as caught:
        await client.request(request_body)
    error = caught.value
    assert error.code == code, error.message
    assert error.message, "an error says what went wrong"
    assert isinstance(error.rid, int), "the reply echoes the request's rid"
    assert await client.hello(), "an error leaves the connection open"


async def test_malformed_input_gets_an_error_and_the_connection_stays_open(client: VersoClient) -> None:
    for text in ["{not json", "[1, 2]", '"just a string"', '{"type": "get", "rid": [1], "key": "k"}']:
        reply = await client.request_text(text)
        assert reply["type"] == "error" and reply["code"] == "bad_request", (text, reply)
        assert "rid" not in reply, (text, reply)
    echoed = await client.request_text('{"type": "get", "rid": "mine", "key": "\\u0000"}')
    assert (echoed["type"], echoed["code"], echoed["rid"]) == ("error", "bad_request", "mine")
    await client.hello()


async def test_client_side_argument_checks(client: VersoClient) -> None:
    with pytest.raises(ValueError):
        await client.put("k", {})
    with pytest.raises(ValueError):
        await client.put("k", {}, base=1, force=True)
    for forced_merge in (
        client.put("k", {}, force=True, merge=True),
        client.patch("k", {}, force=True, merge=True),
        client.txn([PatchOp("k", {}, force=True, merge=True)]),
    ):
        with pytest.raises(ValueError, match="merge"):
            await forced_merge
    with pytest.raises(ValueError):
        await client.subscribe(prefix="a", keys=["a"])
    with pytest.raises(ValueError):
        await client.subscribe()


# --------------------------------------------------------------------------- subscriptions


async def test_prefix_subscription_sends_snapshots_then_live_updates(connect: Connect, prefix: str) -> None:
    writer, reader = await connect(), await connect()
    await writer.put(prefix + "b", {"n": "b"}, base=0)
    await writer.put(prefix + "a", {"n": "a"}, base=0)
    await writer.put(prefix + "gone", {}, base=0)
    await writer.delete(prefix + "gone", base=1)

    subscription = await reader.subscribe(prefix=prefix)
    assert (subscription.snapshots, subscription.reset) == (2, False)
    assert subscription.seq == (await writer.hello()).seq
    snapshots = await next_events(subscription, 2)
    assert snapshots == [
        Snapshot(subscription.sub, prefix + "a", 1, {"n": "a"}),
        Snapshot(subscription.sub, prefix + "b", 1, {"n": "b"}),
    ]

    patched = await writer.patch(prefix + "a", {"m": 1}, base=1)
    await writer.put(prefix[:-1] + "_outside", {}, base=0)
    deleted = await writer.delete(prefix + "b", base=1)
    created = await writer.put(prefix + "c", {"n": "c"}, base=0)
    updates = await next_events(subscription, 3)
    assert updates == [
        Update(subscription.sub, prefix + "a", 2, patched.seq, {"n": "a", "m": 1}, False),
        Update(subscription.sub, prefix + "b", 2, deleted.seq, None, True),
        Update(subscription.sub, prefix + "c", 1, created.seq, {"n": "c"}, False),
    ]
    assert subscription.pending() == 0


async def test_progress_bookmarks_arrive_while_idle_and_resume_without_replay(connect: Connect, prefix: str) -> None:
    writer, reader = await connect(), await connect()
    subscription = await reader.subscribe(prefix=prefix + "quiet/", progress=1)
    elsewhere = await writer.put(prefix + "busy", {}, base=0)
    bookmark = await subscription.next(TIMEOUT)
    assert isinstance(bookmark, Progress) and bookmark.sub == subscription.sub
    assert bookmark.seq >= elsewhere.seq, "every change up to the bookmark has been delivered"
    assert subscription.last_seq == bookmark.seq

    resumed = await reader.subscribe(prefix=prefix + "quiet/", since=subscription.last_seq)
    assert (resumed.reset, resumed.snapshots) == (False, 0)
    created = await writer.put(prefix + "quiet/a", {}, base=0)
    assert await resumed.next(TIMEOUT) == Update(resumed.sub, prefix + "quiet/a", 1, created.seq, {}, False)


async def test_key_subscription_sees_only_its_keys_and_creations(connect: Connect, prefix: str) -> None:
    writer, reader = await connect(), await connect()
    one, two, other = prefix + "1", prefix + "2", prefix + "3"
    await writer.put(one, {"v": 1}, base=0)
    subscription = await reader.subscribe(keys=[one, two])
    assert subscription.snapshots == 1
    assert await subscription.next(TIMEOUT) == Snapshot(subscription.sub, one, 1, {"v": 1})

    await writer.put(other, {}, base=0)
    created = await writer.put(two, {"v": 2}, base=0)
    first = await subscription.next(TIMEOUT)
    assert first == Update(subscription.sub, two, 1, created.seq, {"v": 2}, False)


async def test_own_writes_reach_own_subscription(client: VersoClient, prefix: str) -> None:
    subscription = await client.subscribe(prefix=prefix)
    ack = await client.put(prefix + "a", {"x": 1}, base=0)
    assert await subscription.next(TIMEOUT) == Update(subscription.sub, prefix + "a", 1, ack.seq, {"x": 1}, False)


async def test_txn_ops_arrive_as_separate_updates_with_one_seq(connect: Connect, prefix: str) -> None:
    writer, reader = await connect(), await connect()
    subscription = await reader.subscribe(prefix=prefix)
    ack = await writer.txn([PutOp(prefix + "x", {"x": 1}, base=0), PutOp(prefix + "y", {"y": 1}, base=0)])
    updates = await next_events(subscription, 2)
    assert all(isinstance(update, Update) and update.seq == ack.seq for update in updates)
    assert {event.key for event in updates} == {prefix + "x", prefix + "y"}


async def test_resume_with_since_replays_missed_changes(connect: Connect, prefix: str) -> None:
    writer = await connect()
    welcome = await writer.hello()
    first = await connect()
    subscription = await first.subscribe(prefix=prefix)
    resume_from = subscription.seq
    await first.close()

    missed = [
        await writer.put(prefix + "a", {"v": 1}, base=0),
        await writer.patch(prefix + "a", {"v": 2}, base=1),
        await writer.put(prefix + "b", {}, base=0),
        await writer.delete(prefix + "b", base=1),
    ]
    second = await connect()
    resumed = await second.subscribe(prefix=prefix, since=resume_from, epoch=welcome.epoch)
    assert (resumed.reset, resumed.snapshots) == (False, 0)
    replayed = await next_events(resumed, len(missed))
    assert [(event.key, event.version) for event in replayed] == [(ack.key, ack.version) for ack in missed]
    assert [event.seq for event in replayed if isinstance(event, Update)] == [ack.seq for ack in missed]
    assert isinstance(replayed[-1], Update) and replayed[-1].deleted

    live = await writer.patch(prefix + "a", {"v": 3}, base=2)
    assert await resumed.next(TIMEOUT) == Update(resumed.sub, prefix + "a", 3, live.seq, {"v": 3}, False)


async def test_resume_from_another_epoch_or_the_future_resets(client: VersoClient, prefix: str) -> None:
    await client.put(prefix + "a", {"v": 1}, base=0)
    welcome = await client.hello()
    for since, epoch in [(0, "not-this-store"), (welcome.seq + 1000, welcome.epoch)]:
        subscription = await client.subscribe(prefix=prefix, since=since, epoch=epoch)
        assert subscription.reset, (since, epoch)
        assert subscription.snapshots == 1
        assert await subscription.next(TIMEOUT) == Snapshot(subscription.sub, prefix + "a", 1, {"v": 1})
        await subscription.unsubscribe()


async def test_unsubscribe_ends_iteration(client: VersoClient, prefix: str) -> None:
    subscription = await client.subscribe(prefix=prefix)
    await client.put(prefix + "a", {}, base=0)
    await subscription.unsubscribe()
    assert not subscription.active
    await client.put(prefix + "b", {}, base=0)
    seen = [record(event).key async for event in subscription]
    assert seen == [prefix + "a"], "queued events are delivered, nothing after the unsubscribe"
    with pytest.raises(VersoError) as caught:
        await client.request({"type": "unsubscribe", "sub": subscription.sub})
    assert caught.value.code == "not_found"


async def test_subscription_context_manager_unsubscribes(client: VersoClient, prefix: str) -> None:
    async with await client.subscribe(prefix=prefix) as subscription:
        await client.put(prefix + "a", {}, base=0)
        assert record(await subscription.next(TIMEOUT)).key == prefix + "a"
    assert not subscription.active


# --------------------------------------------------------------------------- concurrency


async def test_pipelined_requests_are_routed_by_rid(connect: Connect, prefix: str) -> None:
    client = await connect()
    subscription = await client.subscribe(prefix=prefix)
    keys = [f"{prefix}{index:03}" for index in range(60)]
    acks = await asyncio.gather(*(client.put(key, {"i": index}, base=0) for index, key in enumerate(keys)))
    assert [ack.key for ack in acks] == keys
    records = await asyncio.gather(*(client.get(key) for key in keys))
    assert [record.data for record in records] == [{"i": index} for index in range(len(keys))]
    updates = await next_events(subscription, len(keys))
    assert sorted(event.key for event in updates) == keys
    seqs = [event.seq for event in updates if isinstance(event, Update)]
    assert seqs == sorted(seqs), "updates arrive in seq order"


async def test_replies_without_rid_go_to_the_request_they_answer(client: VersoClient, prefix: str) -> None:
    await client.put(prefix + "a", {"v": 1}, base=0)
    bad_json, record, bad_rid, welcome = await asyncio.gather(
        client.request_text("{not json"),
        client.get(prefix + "a"),
        client.request_text('{"type": "get", "rid": {"no": 1}, "key": "k"}'),
        client.hello(),
    )
    assert bad_json["code"] == "bad_request" and "rid" not in bad_json
    assert record.data == {"v": 1}
    assert bad_rid["code"] == "bad_request" and "rid" in str(bad_rid["message"])
    assert welcome.seq > 0


async def test_of_concurrent_writes_on_one_base_exactly_one_wins(connect: Connect, prefix: str) -> None:
    key = prefix + "contested"
    writers = [await connect() for _ in range(12)]
    await writers[0].put(key, {"by": "setup"}, base=0)

    async def attempt(index: int) -> Ack | Conflict:
        try:
            return await writers[index].put(key, {"by": index}, base=1)
        except Conflict as conflict:
            return conflict

    outcomes = await asyncio.gather(*(attempt(index) for index in range(len(writers))))
    wins = [outcome for outcome in outcomes if isinstance(outcome, Ack)]
    losses = [outcome for outcome in outcomes if isinstance(outcome, Conflict)]
    assert len(wins) == 1 and len(losses) == len(writers) - 1
    assert wins[0].version == 2
    winner = outcomes.index(wins[0])
    assert all(loss.version == 2 and loss.data == {"by": winner} for loss in losses)
    assert (await writers[0].get(key)).data == {"by": winner}


# --------------------------------------------------------------------------- closing


async def test_close_ends_subscriptions_and_fails_later_requests(connect: Connect, prefix: str) -> None:
    client = await connect()
    subscription = await client.subscribe(prefix=prefix)
    await client.close()
    assert [event async for event in subscription] == []
    with pytest.raises(ConnectionLost):
        await client.get(prefix + "a")


async def test_oversized_message_closes_with_1009(client: VersoClient, prefix: str) -> None:
    with pytest.raises(ConnectionLost) as caught:
        await client.put(prefix + "huge", {"blob": "x" * (1024 * 1024 + 1)}, base=0)
    assert caught.value.code == 1009
    assert client.closed


async def test_server_shutdown_closes_with_1001_and_exits_0(prefix: str) -> None:
    with VersoServer() as server:
        client = await VersoClient.connect(server.ws_url)
        try:
            subscription = await client.subscribe(prefix=prefix)
            await client.put(prefix + "a", {}, base=0)
            assert record(await subscription.next(TIMEOUT)).key == prefix + "a"
            exit_code = await asyncio.to_thread(server.stop)
            assert exit_code == 0
            with pytest.raises(ConnectionLost) as caught:
                await subscription.next(TIMEOUT)
            assert caught.value.code == 1001
            assert (await client.wait_closed()).code == 1001
            with pytest.raises(ConnectionLost):
                await client.hello()
        finally:
            await client.close()


async def test_restart_keeps_records_and_epoch(prefix: str) -> None:
    with VersoServer() as server:
        async with await VersoClient.connect(server.ws_url) as client:
            before = await client.hello()
            await client.put(prefix + "a", {"kept": True}, base=0)
            await client.delete(prefix + "a", base=1)
            await client.put(prefix + "b", {"kept": True}, base=0)
        server.stop()
        server.start()
        async with await VersoClient.connect(server.ws_url) as client:
            after = await client.hello()
            assert after.epoch == before.epoch and after.seq == before.seq + 3
            assert (await client.get(prefix + "b")).data == {"kept": True}
            with pytest.raises(VersoError) as caught:
                await client.get(prefix + "a")
            assert (caught.value.version, caught.value.deleted) == (2, True)


async def test_a_token_acts_within_its_rules(tmp_path: Path, prefix: str) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [
        {"token": "ann-0123456789", "user": "ann", "rules": [{"prefix": "mine/", "allow": ["read", "write"]}]},
    ]}))
    tokens.chmod(0o600)
    with VersoServer("--auth", "tokens", "--tokens-file", str(tokens)) as server:
        ann = await VersoClient.connect(server.ws_url, token="ann-0123456789")
        try:
            assert isinstance(await ann.put("mine/" + prefix, {"n": 1}, base=0), Ack)
            with pytest.raises(VersoError) as forbidden:
                await ann.get("theirs/" + prefix)
            assert forbidden.value.code == "forbidden"
        finally:
            await ann.close()
        anonymous = await VersoClient.connect(server.ws_url)
        try:
            with pytest.raises(VersoError) as unauthorized:
                await anonymous.get("mine/" + prefix)
            assert unauthorized.value.code == "unauthorized"
        finally:
            await anonymous.close()


async def test_wss_with_a_trusted_certificate_and_a_refused_untrusted_one(tmp_path: Path, prefix: str) -> None:
    certificate, key = self_signed_certificate(tmp_path)
    trusted = ssl.create_default_context(cafile=str(certificate))
    with VersoServer("--tls-cert-file", str(certificate), "--tls-key-file", str(key), ssl_context=trusted) as server:
        assert server.ws_url.startswith("wss://127.0.0.1:")
        async with await VersoClient.connect(server.ws_url, ssl_context=trusted) as client:
            assert isinstance(await client.put(prefix + "tls", {"secure": True}, base=0), Ack)
            assert (await client.get(prefix + "tls")).data == {"secure": True}
        # The system's authorities do not know this certificate: the handshake fails.
        with pytest.raises(ssl.SSLCertVerificationError):
            await VersoClient.connect(server.ws_url)
