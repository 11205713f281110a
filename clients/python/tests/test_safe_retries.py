"""Idempotency keys (Protocol.md 3.7, "Idempotency keys: safe retries") and the client that
reconnects and sends again every write still waiting for its reply."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from websockets.asyncio.server import ServerConnection, serve

from cutting_proxy import CuttingProxy
from verso_client import (
    Ack,
    CheckOp,
    ConnectionLost,
    DeleteOp,
    Event,
    PatchOp,
    PutOp,
    RecordEvent,
    Snapshot,
    Update,
    VersoClient,
    VersoError,
)
from verso_server_process import VersoServer

if TYPE_CHECKING:
    from conftest import Connect

pytestmark = pytest.mark.asyncio

TIMEOUT = 10.0  # seconds to wait for any one expected message


def record(event: Event) -> RecordEvent:
    """The event as a record event: a test subscribed without progress gets no bookmark, and one
    whose keys no other connection has presence on gets no presence."""
    assert isinstance(event, (Snapshot, Update)), f"not a record event: {event}"
    return event


@pytest_asyncio.fixture
async def proxy(server: VersoServer) -> AsyncIterator[CuttingProxy]:
    """A proxy in front of the session's server that can cut a connection mid-request."""
    async with CuttingProxy("127.0.0.1", server.port) as running:
        yield running


@pytest_asyncio.fixture
async def reconnecting(proxy: CuttingProxy) -> AsyncIterator[VersoClient]:
    """A client that reconnects, connected through the proxy."""
    client = await VersoClient.connect(proxy.ws_url, reconnect=True, reconnect_timeout=TIMEOUT)
    yield client
    await client.close()


# --------------------------------------------------------------------------- keys on the wire


async def test_every_write_carries_a_fresh_idempotency_key_unless_given_one() -> None:
    received: list[dict[str, object]] = []

    async def record(websocket: ServerConnection) -> None:  # a server that acks everything it is sent
        async for text in websocket:
            message = json.loads(text)
            received.append(message)
            reply: dict[str, object] = {"type": "ack", "rid": message["rid"], "key": "k", "version": 1, "seq": 1}
            if message["type"] == "txn":
                reply = {"type": "ack", "rid": message["rid"], "seq": 1, "versions": {"k": 1}}
            await websocket.send(json.dumps(reply))

    async with serve(record, "127.0.0.1", 0) as fake:
        port = fake.sockets[0].getsockname()[1]
        async with await VersoClient.connect(f"ws://127.0.0.1:{port}/v1/ws") as client:
            await client.put("k", {}, base=0)
            await client.put("k", {}, base=0)
            await client.patch("k", {}, base=1)
            await client.delete("k", base=1)
            await client.txn([CheckOp("k", base=1)])
            await client.put("k", {}, base=0, idempotency_key="mine-1")
            await client.txn([CheckOp("k", base=1)], idempotency_key="mine-2")

    keys = [message["idempotency_key"] for message in received]
    assert [message["type"] for message in received] == ["put", "put", "patch", "delete", "txn", "put", "txn"]
    generated = keys[:5]
    assert all(isinstance(key, str) and str(uuid.UUID(key)) == key for key in generated), generated
    assert len(set(generated)) == len(generated), "a fresh key for every write, even the same one twice"
    assert keys[5:] == ["mine-1", "mine-2"], "a key the caller gives is sent as given"


async def test_an_idempotency_key_outside_1_to_128_bytes_of_utf8_is_refused_before_sending(
    client: VersoClient, prefix: str
) -> None:
    key = prefix + "a"
    for bad in ["", "x" * 129, "é" * 65, "\ud800"]:
        for attempt in (
            client.put(key, {}, base=0, idempotency_key=bad),
            client.patch(key, {}, base=0, idempotency_key=bad),
            client.delete(key, base=0, idempotency_key=bad),
            client.txn([PutOp(key, {}, base=0)], idempotency_key=bad),
        ):
            with pytest.raises(ValueError, match="idempotency_key"):
                await attempt
    with pytest.raises(ValueError, match="idempotency_key"):
        await client.put(key, {}, base=0, idempotency_key=128)  # type: ignore[arg-type]
    with pytest.raises(VersoError):
        await client.get(key)  # nothing was sent

    ack = await client.put(key, {}, base=0, idempotency_key="é" * 64)  # 128 bytes: the most there may be
    assert (ack.version, ack.replayed) == (1, False)


# --------------------------------------------------------------------------- retries


async def test_a_later_write_with_the_same_key_and_request_gets_the_original_ack_marked_replayed(
    connect: Connect, prefix: str
) -> None:
    writer, watcher = await connect(), await connect()
    key = prefix + "a"
    subscription = await watcher.subscribe(prefix=prefix)

    first = await writer.put(key, {"n": 1}, base=0, idempotency_key=prefix + "put")
    again = await writer.put(key, {"n": 1}, base=0, idempotency_key=prefix + "put")
    assert first.replayed is False
    assert again == Ack(key, first.version, first.seq, replayed=True), "its version and seq, and nothing changed"

    patched = await writer.patch(key, {"m": 2}, base=1, idempotency_key=prefix + "patch")
    assert await writer.patch(key, {"m": 2}, base=1, idempotency_key=prefix + "patch") == Ack(
        key, patched.version, patched.seq, replayed=True
    )
    deleted = await writer.delete(key, base=2, idempotency_key=prefix + "delete")
    assert await writer.delete(key, base=2, idempotency_key=prefix + "delete") == Ack(
        key, deleted.version, deleted.seq, replayed=True
    )
    ops = [PutOp(key, {"back": True}, base=3), PutOp(prefix + "b", {}, base=0)]
    txn = await writer.txn(ops, idempotency_key=prefix + "txn")
    replayed_txn = await writer.txn(ops, idempotency_key=prefix + "txn")
    assert (replayed_txn.seq, replayed_txn.versions, replayed_txn.replayed) == (txn.seq, txn.versions, True)
    assert txn.replayed is False

    assert (await writer.get(key)).version == 4, "each write changed the record once"
    updates = [record(await subscription.next(TIMEOUT)) for _ in range(5)]
    assert [(event.key, event.version) for event in updates] == [
        (key, 1), (key, 2), (key, 3), (key, 4), (prefix + "b", 1)
    ], "no update is sent again for a replayed write"
    await writer.put(prefix + "c", {}, base=0)
    last = record(await subscription.next(TIMEOUT))
    assert last.key == prefix + "c" and subscription.pending() == 0


async def test_the_same_key_with_another_request_is_a_bad_request_and_changes_nothing(
    client: VersoClient, prefix: str
) -> None:
    key = prefix + "a"
    await client.put(key, {"n": 1}, base=0, idempotency_key=prefix + "k")
    with pytest.raises(VersoError) as caught:
        await client.put(key, {"n": 2}, base=1, idempotency_key=prefix + "k")
    assert caught.value.code == "bad_request"
    with pytest.raises(VersoError) as as_txn:
        await client.txn([DeleteOp(key, base=1)], idempotency_key=prefix + "k")
    assert as_txn.value.code == "bad_request"
    record = await client.get(key)
    assert (record.version, record.data) == (1, {"n": 1})


# --------------------------------------------------------------------------- reconnecting


async def test_a_write_whose_ack_was_lost_is_sent_again_and_its_caller_gets_the_original_ack(
    reconnecting: VersoClient, proxy: CuttingProxy, connect: Connect, prefix: str
) -> None:
    watcher = await connect()
    key = prefix + "a"
    subscription = await watcher.subscribe(prefix=prefix)

    proxy.cut_before_next_reply()  # the server applies the put; its ack never arrives
    ack = await asyncio.wait_for(reconnecting.put(key, {"n": 1}, base=0), TIMEOUT)
    assert (proxy.cuts, proxy.accepted) == (1, 2), "one cut, one reconnection"
    assert (ack.key, ack.version, ack.replayed) == (key, 1, True), "the original ack, not a conflict with itself"
    assert not reconnecting.closed

    first = await subscription.next(TIMEOUT)
    assert first == Update(subscription.sub, key, 1, ack.seq, {"n": 1}, False)
    after = await reconnecting.patch(key, {"m": 2}, base=1)
    assert (after.version, after.replayed) == (2, False)
    second = record(await subscription.next(TIMEOUT))
    assert (second.key, second.version) == (key, 2), "the record went up once for the put"


async def test_a_write_lost_on_its_way_is_sent_again_and_applied_once(
    reconnecting: VersoClient, proxy: CuttingProxy, prefix: str
) -> None:
    key = prefix + "a"
    proxy.cut_before_next_request()  # the server never sees the put
    ack = await asyncio.wait_for(reconnecting.put(key, {"n": 1}, base=0), TIMEOUT)
    assert proxy.cuts == 1 and proxy.accepted == 2
    assert (ack.version, ack.replayed) == (1, False), "a write that was not applied is decided as new"
    assert (await reconnecting.get(key)).version == 1


async def test_pipelined_writes_are_sent_again_in_the_order_first_sent(
    reconnecting: VersoClient, proxy: CuttingProxy, prefix: str
) -> None:
    key = prefix + "a"
    proxy.cut_before_next_reply()
    acks = await asyncio.wait_for(
        asyncio.gather(
            reconnecting.put(key, {"n": 1}, base=0),
            reconnecting.patch(key, {"n": 2}, base=1),
            reconnecting.patch(key, {"n": 3}, base=2),
            reconnecting.txn([PatchOp(key, {"n": 4}, base=3), PutOp(prefix + "b", {}, base=0)]),
        ),
        TIMEOUT,
    )
    assert proxy.cuts == 1
    assert [ack.versions[key] if not isinstance(ack, Ack) else ack.version for ack in acks] == [1, 2, 3, 4]
    assert isinstance(acks[0], Ack) and acks[0].replayed, "the first reply was cut: the put had been applied"
    record = await reconnecting.get(key)
    assert (record.version, record.data) == (4, {"n": 4})


async def test_on_a_drop_reads_in_flight_and_subscriptions_raise_connection_lost_and_the_client_goes_on(
    reconnecting: VersoClient, proxy: CuttingProxy, prefix: str
) -> None:
    subscription = await reconnecting.subscribe(prefix=prefix)
    proxy.cut_before_next_reply()
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(reconnecting.get(prefix + "a"), TIMEOUT)
    with pytest.raises(ConnectionLost):
        await subscription.next(TIMEOUT)
    assert not subscription.active and not reconnecting.closed

    ack = await asyncio.wait_for(reconnecting.put(prefix + "a", {}, base=0), TIMEOUT)
    assert (ack.version, ack.replayed) == (1, False)
    resumed = await reconnecting.subscribe(prefix=prefix, since=subscription.seq)
    assert record(await resumed.next(TIMEOUT)).key == prefix + "a", "resume with since on the same client"
    assert proxy.accepted == 2


async def test_a_server_restart_is_ridden_out_and_requests_made_meanwhile_wait(prefix: str) -> None:
    with VersoServer() as server:
        client = await VersoClient.connect(server.ws_url, reconnect=True, reconnect_timeout=30)
        try:
            subscription = await client.subscribe(prefix=prefix)
            await asyncio.to_thread(server.stop)
            with pytest.raises(ConnectionLost) as caught:
                await subscription.next(TIMEOUT)
            assert caught.value.code == 1001
            assert not client.closed, "a client that reconnects is not closed by a drop"
            # Made while the server is down, the put waits for the next connection.
            waiting = asyncio.ensure_future(client.put(prefix + "a", {"n": 1}, base=0))
            await asyncio.to_thread(server.start)  # the same port and data
            ack = await asyncio.wait_for(waiting, TIMEOUT)
            assert (ack.version, ack.replayed) == (1, False)
            assert (await client.get(prefix + "a")).data == {"n": 1}
        finally:
            await client.close()


async def test_a_client_that_cannot_reconnect_gives_up_after_its_timeout(prefix: str) -> None:
    with VersoServer() as server:
        client = await VersoClient.connect(server.ws_url, reconnect=True, reconnect_timeout=0.5)
        try:
            subscription = await client.subscribe(prefix=prefix)
            await asyncio.to_thread(server.stop)
            with pytest.raises(ConnectionLost):
                await subscription.next(TIMEOUT)
            started = time.monotonic()
            with pytest.raises(ConnectionLost) as caught:
                await asyncio.wait_for(client.put(prefix + "a", {}, base=0), TIMEOUT)
            assert time.monotonic() - started < 5
            assert caught.value.code == 1001 and "not reconnected within 0.5s" in caught.value.reason
            assert client.closed
            assert (await client.wait_closed()) is caught.value
        finally:
            await client.close()


async def test_close_while_reconnecting_ends_at_once(prefix: str) -> None:
    with VersoServer() as server:
        client = await VersoClient.connect(server.ws_url, reconnect=True, reconnect_timeout=60)
        subscription = await client.subscribe(prefix=prefix)
        await asyncio.to_thread(server.stop)
        with pytest.raises(ConnectionLost):
            await subscription.next(TIMEOUT)
        waiting = asyncio.ensure_future(client.put(prefix + "a", {}, base=0))
        await asyncio.sleep(0)
        await asyncio.wait_for(client.close(), TIMEOUT)
        with pytest.raises(ConnectionLost) as caught:
            await waiting
        assert (caught.value.code, caught.value.reason) == (1000, "closed by the client")
        assert client.closed


async def test_a_message_over_the_size_limit_ends_even_a_reconnecting_client(
    reconnecting: VersoClient, proxy: CuttingProxy, prefix: str
) -> None:
    with pytest.raises(ConnectionLost) as caught:
        await asyncio.wait_for(reconnecting.put(prefix + "huge", {"blob": "x" * (1024 * 1024 + 1)}, base=0), TIMEOUT)
    assert caught.value.code == 1009, "sent again it would be refused again"
    assert reconnecting.closed and proxy.accepted == 1


async def test_without_reconnect_a_drop_ends_the_client_and_a_retry_with_the_same_key_is_replayed(
    proxy: CuttingProxy, connect: Connect, prefix: str
) -> None:
    key, idempotency_key = prefix + "a", str(uuid.uuid4())
    client = await connect(proxy.ws_url)
    proxy.cut_before_next_reply()
    with pytest.raises(ConnectionLost):
        await client.put(key, {"n": 1}, base=0, idempotency_key=idempotency_key)
    assert client.closed and proxy.accepted == 1, "by default the client does not reconnect"

    retry = await connect()
    ack = await retry.put(key, {"n": 1}, base=0, idempotency_key=idempotency_key)
    assert (ack.version, ack.replayed) == (1, True)
