"""A small asyncio client for the Verso record server (wire protocol version 1, Protocol.md).

One connection is one :class:`VersoClient`. Every request gets an automatic ``rid``; a
background task reads the connection and routes each reply to its request by ``rid`` and each
subscription message (``snapshot`` with ``sub``, ``update``) to its :class:`Subscription` by
``sub``, so any number of coroutines may share one client.

    async with await VersoClient.connect("ws://127.0.0.1:7070/v1/ws") as verso:
        ack = await verso.put("notes/1", {"title": "hi"}, base=0)
        try:
            await verso.patch("notes/1", {"title": "stale"}, base=0)
        except Conflict as conflict:
            print(conflict.version, conflict.data)
        async with await verso.subscribe(prefix="notes/") as sub:
            async for event in sub:
                print(event)
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import json
import ssl
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, TypeAlias, Union

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

__all__ = [
    "JSON",
    "JSONObject",
    "Outgoing",
    "Ack",
    "CheckOp",
    "ConflictState",
    "Conflict",
    "ConnectionLost",
    "DeleteOp",
    "Event",
    "Page",
    "PatchOp",
    "ProtocolViolation",
    "PutOp",
    "Record",
    "Snapshot",
    "Subscription",
    "TxnAck",
    "TxnOp",
    "Update",
    "VersoClient",
    "VersoError",
    "Welcome",
]

JSON: TypeAlias = Union[None, bool, int, float, str, list["JSON"], dict[str, "JSON"]]
"""Any JSON value as :mod:`json` decodes it."""

JSONObject: TypeAlias = dict[str, JSON]
"""A JSON object as received: the shape of every record's data and of every wire message."""

Outgoing: TypeAlias = Mapping[str, object]
"""A JSON object to send: any mapping that :func:`json.dumps` can encode (nested values may be
any JSON-encodable dicts, lists, strings, numbers, booleans and None)."""

Rid: TypeAlias = Union[int, str]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Welcome:
    """The reply to ``hello``."""

    session: str
    epoch: str
    seq: int
    server: str


@dataclass(frozen=True)
class Record:
    """A live record, as ``get`` and ``list`` return it."""

    key: str
    version: int
    data: JSONObject


@dataclass(frozen=True)
class Ack:
    """An accepted ``put``, ``patch`` or ``delete``.

    ``merged`` is True when a write sent with ``merge=True`` was merged into a version newer
    than its base (Protocol.md 3.3, "Field-level merge"); False for every other write.
    """

    key: str
    version: int
    seq: int
    merged: bool = False


@dataclass(frozen=True)
class TxnAck:
    """An accepted ``txn``: its single seq and every named key's version afterwards.

    ``merged`` lists the keys whose ``merge=True`` ops were merged into a newer version than
    their base (empty when there are none).
    """

    seq: int
    versions: dict[str, int]
    merged: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Page:
    """One ``list`` reply. ``next`` is the ``after`` for the following page, or None at the end."""

    records: list[Record]
    next: str | None


@dataclass(frozen=True)
class Snapshot:
    """A subscription's starting state of one live record."""

    sub: int
    key: str
    version: int
    data: JSONObject


@dataclass(frozen=True)
class Update:
    """One accepted change seen by a subscription. ``data`` is None when ``deleted``."""

    sub: int
    key: str
    version: int
    seq: int
    data: JSONObject | None
    deleted: bool


Event: TypeAlias = Union[Snapshot, Update]


# --------------------------------------------------------------------------- txn ops


@dataclass(frozen=True)
class PutOp:
    key: str
    data: Outgoing
    base: int | None = None
    force: bool = False
    merge: bool = False

    def wire(self) -> dict[str, object]:
        message: dict[str, object] = {"op": "put", "key": self.key, "data": dict(self.data)}
        return _write_fields(message, self.base, self.force, self.merge)


@dataclass(frozen=True)
class PatchOp:
    key: str
    patch: Outgoing
    base: int | None = None
    force: bool = False
    merge: bool = False

    def wire(self) -> dict[str, object]:
        message: dict[str, object] = {"op": "patch", "key": self.key, "patch": dict(self.patch)}
        return _write_fields(message, self.base, self.force, self.merge)


@dataclass(frozen=True)
class DeleteOp:
    key: str
    base: int | None = None
    force: bool = False

    def wire(self) -> dict[str, object]:
        return _write_fields({"op": "delete", "key": self.key}, self.base, self.force)


@dataclass(frozen=True)
class CheckOp:
    key: str
    base: int

    def wire(self) -> dict[str, object]:
        return {"op": "check", "key": self.key, "base": self.base}


TxnOp: TypeAlias = Union[PutOp, PatchOp, DeleteOp, CheckOp]


def _write_fields(message: dict[str, object], base: int | None, force: bool, merge: bool = False) -> dict[str, object]:
    """Add ``base`` or ``force`` to a write (exactly one of them must be given), and
    ``"merge": "fields"`` when ``merge``, which needs a base."""
    if merge and force:
        raise ValueError("merge=True needs base (the version the edit started from), not force=True")
    if force:
        if base is not None:
            raise ValueError("give either base or force=True, not both")
        message["force"] = True
    else:
        if base is None:
            raise ValueError("a write needs base (the version it started from; 0 to create) or force=True")
        if isinstance(base, bool) or not isinstance(base, int) or base < 0:
            raise ValueError(f"base must be a non-negative integer, not {base!r}")
        message["base"] = base
    if merge:
        message["merge"] = "fields"
    return message


# --------------------------------------------------------------------------- errors


class VersoError(Exception):
    """An ``error`` reply: ``code`` is one of Protocol.md section 6 (``not_found``, ``bad_request``…).

    ``key``, ``version`` and ``deleted`` are set when the reply carries them (a ``not_found``
    for a tombstone has ``version`` and ``deleted=True``). ``reply`` is the whole message.
    """

    def __init__(self, reply: JSONObject) -> None:
        self.reply: Final = reply
        self.code: Final[str] = _as_str(reply.get("code"), "error.code")
        self.message: Final[str] = _as_str(reply.get("message", ""), "error.message")
        key = reply.get("key")
        self.key: Final[str | None] = key if isinstance(key, str) else None
        version = reply.get("version")
        self.version: Final[int | None] = version if isinstance(version, int) and not isinstance(version, bool) else None
        self.deleted: Final[bool] = reply.get("deleted") is True
        self.rid: Final[JSON] = reply.get("rid")
        super().__init__(f"{self.code}: {self.message}")


@dataclass(frozen=True)
class ConflictState:
    """The current state of one key whose ``base`` was stale.

    For a write sent with ``merge=True`` that could not be merged, ``reason`` says why:
    ``"clash"``, ``"deleted"``, ``"recreated"``, ``"history_gone"`` or ``"unknown_base"``
    (Protocol.md 3.3). ``clashes`` are the JSON Pointers of this write's own values that clash
    (only for ``"clash"``), and ``changed`` every path changed since ``base`` (only for
    ``"clash"``, else None). A write without ``merge`` has ``reason`` None, no ``clashes`` and
    ``changed`` None.
    """

    key: str
    base: int
    version: int
    data: JSONObject | None
    deleted: bool
    reason: str | None = None
    clashes: list[str] = field(default_factory=list)
    changed: list[str] | None = None


class Conflict(Exception):
    """A ``conflict`` reply: the write's base was stale and nothing changed.

    ``conflicts`` lists every stale key (exactly one for ``put``/``patch``/``delete``, one or
    more for ``txn``). ``key``, ``base``, ``version``, ``data``, ``deleted``, ``reason``,
    ``clashes`` and ``changed`` are those of the first, i.e. of the only one for a single-key
    write: ``version`` is the key's current version (0 if it never existed) and ``data`` its
    current object (None when deleted or missing); ``reason``, ``clashes`` and ``changed`` say
    why a ``merge=True`` write was not merged (see :class:`ConflictState`).
    """

    def __init__(self, conflicts: Sequence[ConflictState], reply: JSONObject) -> None:
        if not conflicts:
            raise ProtocolViolation(f"conflict without any stale key: {reply!r}")
        self.conflicts: Final = tuple(conflicts)
        self.reply: Final = reply
        first = self.conflicts[0]
        self.key: Final = first.key
        self.base: Final = first.base
        self.version: Final = first.version
        self.data: Final = first.data
        self.deleted: Final = first.deleted
        self.reason: Final = first.reason
        self.clashes: Final = first.clashes
        self.changed: Final = first.changed
        stale = ", ".join(f"{c.key} (base {c.base}, now {c.version}{_not_merged(c)})" for c in self.conflicts)
        super().__init__(f"stale base: {stale}")


class ConnectionLost(Exception):
    """The connection closed before the reply came, or while a subscription was being read.

    ``code`` and ``reason`` are the WebSocket close code and reason when known (1001: the server
    shut down; 1008: this client read too slowly; 1009: a message was too large).
    """

    def __init__(self, code: int | None, reason: str) -> None:
        self.code: Final = code
        self.reason: Final = reason
        super().__init__(f"connection closed (code {code}{': ' + reason if reason else ''})")


class ProtocolViolation(Exception):
    """The server sent something Protocol.md does not allow."""


# --------------------------------------------------------------------------- subscription


class _RawRequest:
    """Stands for the rid of a request sent as raw text: its reply is matched by order."""


class _End:
    """Queued into a subscription to end it, with the exception to raise (None: just stop)."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error


class Subscription:
    """A live subscription: an async iterator of :class:`Snapshot` then :class:`Update` events.

    ``sub`` is its id on the connection and ``seq`` the seq its starting point is at.
    ``snapshots`` is how many snapshots come first. ``reset`` is True when a ``since`` could not
    be honoured and current snapshots were sent instead (the caller must drop what it held).

    Iteration ends after :meth:`unsubscribe` or :meth:`VersoClient.close`; it raises
    :class:`ConnectionLost` when the connection drops. Events are buffered without bound
    until read.
    """

    def __init__(self, client: VersoClient, reply: JSONObject, queue: asyncio.Queue[Event | _End]) -> None:
        self._client = client
        self._queue = queue
        self._ended: _End | None = None
        self.sub: Final[int] = _as_int(reply.get("sub"), "subscribed.sub")
        self.seq: Final[int] = _as_int(reply.get("seq"), "subscribed.seq")
        self.snapshots: Final[int] = _as_int(reply.get("snapshots", 0), "subscribed.snapshots")
        self.reset: Final[bool] = reply.get("reset") is True
        self.active = True

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._ended is None:
            item = await self._queue.get()
            if isinstance(item, _End):
                self._ended = item
            else:
                return item
        if self._ended.error is not None:
            raise self._ended.error
        raise StopAsyncIteration

    async def next(self, timeout: float | None = None) -> Event:
        """The next event, waiting at most ``timeout`` seconds (``TimeoutError`` after that)."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    def pending(self) -> int:
        """How many events have arrived and are not yet read."""
        return self._queue.qsize()

    async def unsubscribe(self) -> None:
        """End the subscription on the server; iteration stops after the events already queued."""
        if not self.active:
            return
        await self._client.request({"type": "unsubscribe", "sub": self.sub})

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.active and not self._client.closed:
            await self.unsubscribe()


# --------------------------------------------------------------------------- client


class VersoClient:
    """One WebSocket connection to a Verso server. Create it with :meth:`connect`."""

    def __init__(self, websocket: ClientConnection) -> None:
        self._ws = websocket
        self._rids = itertools.count(1)
        self._pending: dict[Rid | _RawRequest, asyncio.Future[JSONObject]] = {}
        self._order: deque[Rid | _RawRequest] = deque()  # in the order sent: replies come in that order
        self._subs: dict[int, asyncio.Queue[Event | _End]] = {}
        self._subscriptions: dict[int, Subscription] = {}
        self._closing = False
        self._lost: ConnectionLost | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(), name="verso-client-reader")

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        compression: bool = True,
        open_timeout: float | None = 10,
        max_size: int | None = None,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> VersoClient:
        """Open a connection to ``ws://HOST:PORT/v1/ws`` (or ``wss://`` for a server with TLS).

        ``compression`` offers permessage-deflate (the server accepts whenever it is offered).
        ``token`` is an access token for a server started with ``--auth`` (Protocol.md 2.1),
        sent as ``Authorization: Bearer``; a request outside its rules raises ``VersoError``
        with ``code`` ``"forbidden"``, one without a valid token ``"unauthorized"``.
        ``max_size`` bounds one incoming message after decompression (None: no bound; a list
        reply of 1000 large records can be big). The connection goes straight to the server,
        never through an HTTP proxy named in the environment. For ``wss://``, ``ssl_context``
        decides which certificates to trust (for example
        ``ssl.create_default_context(cafile="ca.pem")`` for a private CA or a self-signed
        certificate); by default the system's certificate authorities.
        """
        # websockets refuses ssl=None for wss:// (it makes a default context when ssl is absent).
        tls: dict[str, Any] = {} if ssl_context is None else {"ssl": ssl_context}
        websocket = await connect(
            url,
            compression="deflate" if compression else None,
            open_timeout=open_timeout,
            max_size=max_size,
            proxy=None,
            additional_headers={"Authorization": f"Bearer {token}"} if token is not None else None,
            **tls,
        )
        return cls(websocket)

    # ---- connection facts

    @property
    def extensions_header(self) -> str | None:
        """The handshake response's ``Sec-WebSocket-Extensions`` header, if any."""
        response = self._ws.response
        return None if response is None else response.headers.get("Sec-WebSocket-Extensions")

    @property
    def compressed(self) -> bool:
        """Whether permessage-deflate is in effect on this connection."""
        return any(ext.name == "permessage-deflate" for ext in self._ws.protocol.extensions)

    @property
    def closed(self) -> bool:
        return self._closing or self._lost is not None

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    # ---- lifecycle

    async def close(self) -> None:
        """Close the connection (code 1000). Pending requests fail; subscriptions stop."""
        self._closing = True
        await self._ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def wait_closed(self) -> ConnectionLost:
        """Wait until the server closes the connection; returns how it closed."""
        await asyncio.shield(self._reader)
        assert self._lost is not None
        return self._lost

    async def __aenter__(self) -> VersoClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---- the raw request

    async def request(self, message: Outgoing) -> JSONObject:
        """Send one request with a fresh ``rid`` and return its reply.

        Raises :class:`VersoError` for an ``error`` reply, :class:`Conflict` for a ``conflict``
        and :class:`ConnectionLost` if the connection closes first. Any other reply is returned
        as it came.
        """
        rid = next(self._rids)
        body = dict(message)
        body["rid"] = rid
        reply = await self._exchange(rid, json.dumps(body, ensure_ascii=False, allow_nan=False))
        kind = reply.get("type")
        if kind == "error":
            raise VersoError(reply)
        if kind == "conflict":
            raise Conflict(_conflicts(reply), reply)
        return reply

    async def request_text(self, text: str) -> JSONObject:
        """Send ``text`` exactly as given (it need not be valid JSON) and return the reply.

        The reply is the next one in request order, whatever ``rid`` it carries or lacks, and is
        returned as it came, ``error`` and ``conflict`` included: for testing bad input.
        """
        return await self._exchange(_RawRequest(), text)

    async def _exchange(self, key: Rid | _RawRequest, text: str) -> JSONObject:
        if self._lost is not None:
            raise self._lost
        if self._closing:
            raise ConnectionLost(1000, "closed by the client")
        future: asyncio.Future[JSONObject] = asyncio.get_running_loop().create_future()
        # Register before sending: the reply may be read before send() returns.
        self._pending[key] = future
        self._order.append(key)
        try:
            await self._ws.send(text)
        except ConnectionClosed:
            pass  # the reader fails the future with the close code
        try:
            return await future
        finally:
            self._pending.pop(key, None)

    # ---- requests

    async def hello(self, client: str | None = None) -> Welcome:
        message: dict[str, object] = {"type": "hello"}
        if client is not None:
            message["client"] = client
        reply = _expect(await self.request(message), "welcome")
        return Welcome(
            session=_as_str(reply.get("session"), "welcome.session"),
            epoch=_as_str(reply.get("epoch"), "welcome.epoch"),
            seq=_as_int(reply.get("seq"), "welcome.seq"),
            server=_as_str(reply.get("server"), "welcome.server"),
        )

    async def get(self, key: str) -> Record:
        """The live record at ``key``; :class:`VersoError` ``not_found`` if missing or deleted."""
        reply = _expect(await self.request({"type": "get", "key": key}), "snapshot")
        return _record(reply, "snapshot")

    async def put(
        self, key: str, data: Outgoing, base: int | None = None, *, force: bool = False, merge: bool = False
    ) -> Ack:
        """Replace the record's object. ``base`` is the version the edit started from (0: create).

        With ``merge=True`` (``"merge": "fields"``) a stale base is not a conflict as long as
        none of the values this put changes was changed since ``base``: the server applies the
        changed values to the current record and the ack has ``merged=True`` (Protocol.md 3.3).
        """
        message = _write_fields({"type": "put", "key": key, "data": dict(data)}, base, force, merge)
        return _ack(await self.request(message))

    async def patch(
        self, key: str, patch: Outgoing, base: int | None = None, *, force: bool = False, merge: bool = False
    ) -> Ack:
        """Apply an RFC 7396 merge patch (``None`` removes a member); ``merge`` as for :meth:`put`."""
        message = _write_fields({"type": "patch", "key": key, "patch": dict(patch)}, base, force, merge)
        return _ack(await self.request(message))

    async def delete(self, key: str, base: int | None = None, *, force: bool = False) -> Ack:
        """Delete the record, leaving a tombstone at the next version."""
        message = _write_fields({"type": "delete", "key": key}, base, force)
        return _ack(await self.request(message))

    async def list(self, prefix: str = "", *, after: str | None = None, limit: int | None = None) -> Page:
        """One page of live records under ``prefix`` in key order (server default limit: 100)."""
        message: dict[str, object] = {"type": "list", "prefix": prefix}
        if after is not None:
            message["after"] = after
        if limit is not None:
            message["limit"] = limit
        reply = _expect(await self.request(message), "records")
        raw = reply.get("records")
        if not isinstance(raw, list):
            raise ProtocolViolation(f"records.records is not a list: {reply!r}")
        records = [_record(_as_object(item, "records[]"), "records[]") for item in raw]
        next_key = reply.get("next")
        if next_key is not None and not isinstance(next_key, str):
            raise ProtocolViolation(f"records.next is not a string or null: {reply!r}")
        return Page(records=records, next=next_key)

    async def list_all(self, prefix: str = "", *, page_size: int | None = None) -> builtins.list[Record]:
        """Every live record under ``prefix``, following ``next`` page by page."""
        records: builtins.list[Record] = []
        after: str | None = None
        while True:
            page = await self.list(prefix, after=after, limit=page_size)
            records.extend(page.records)
            if page.next is None:
                return records
            after = page.next

    async def txn(self, ops: Iterable[TxnOp]) -> TxnAck:
        """Apply all ops or none. A stale base raises :class:`Conflict` listing every stale op."""
        wire_ops = [op.wire() for op in ops]
        reply = _expect(await self.request({"type": "txn", "ops": wire_ops}), "ack")
        raw_versions = _as_object(reply.get("versions"), "ack.versions")
        versions = {key: _as_int(version, f"ack.versions[{key!r}]") for key, version in raw_versions.items()}
        merged = _as_str_list(reply.get("merged", []), "ack.merged")
        return TxnAck(seq=_as_int(reply.get("seq"), "ack.seq"), versions=versions, merged=merged)

    async def subscribe(
        self,
        *,
        prefix: str | None = None,
        keys: Sequence[str] | None = None,
        since: int | None = None,
        epoch: str | None = None,
    ) -> Subscription:
        """Subscribe to a ``prefix`` or to ``keys`` (exactly one of them).

        Without ``since`` the current records arrive as snapshots, then every change as an
        update. With ``since`` (and ``epoch``, to detect a different store), the changes after
        that seq are replayed as updates, unless the subscription comes back with ``reset``.
        """
        if (prefix is None) == (keys is None):
            raise ValueError("subscribe needs exactly one of prefix or keys")
        message: dict[str, object] = {"type": "subscribe"}
        if prefix is not None:
            message["prefix"] = prefix
        if keys is not None:
            message["keys"] = list(keys)
        if since is not None:
            message["since"] = since
        if epoch is not None:
            message["epoch"] = epoch
        reply = _expect(await self.request(message), "subscribed")
        sub_id = _as_int(reply.get("sub"), "subscribed.sub")
        queue = self._subs.get(sub_id)
        if queue is None:  # the reader registers it on the reply; only a closed connection skips that
            raise self._lost or ConnectionLost(1000, "closed by the client")
        subscription = Subscription(self, reply, queue)
        self._subscriptions[sub_id] = subscription
        return subscription

    # ---- the reader

    async def _read_loop(self) -> None:
        lost = ConnectionLost(None, "")
        try:
            async for raw in self._ws:
                if isinstance(raw, bytes):
                    raise ProtocolViolation("the server sent a binary message")
                message = json.loads(raw)
                if not isinstance(message, dict):
                    raise ProtocolViolation(f"the server sent a non-object: {raw[:200]!r}")
                self._dispatch(message)
            lost = ConnectionLost(self._ws.close_code, self._ws.close_reason or "")
        except ConnectionClosed as closed:
            lost = ConnectionLost(self._ws.close_code, self._ws.close_reason or str(closed))
        except Exception as violation:  # ProtocolViolation, bad JSON: this connection is unusable
            lost = ConnectionLost(None, f"protocol violation: {violation}")
            await self._ws.close(1002, "protocol violation")
        finally:
            self._lost = lost
            failure = ConnectionLost(1000, "closed by the client") if self._closing else lost
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(failure)
            self._order.clear()
            end = _End(None if self._closing else lost)
            for queue in self._subs.values():
                queue.put_nowait(end)
            for subscription in self._subscriptions.values():
                subscription.active = False
            self._subs.clear()

    def _dispatch(self, message: JSONObject) -> None:
        kind = message.get("type")
        sub = message.get("sub")
        if kind == "update" or (kind == "snapshot" and "rid" not in message and sub is not None):
            sub_id = _as_int(sub, f"{kind}.sub")
            queue = self._subs.get(sub_id)
            if queue is not None:  # messages for an ended subscription are dropped
                queue.put_nowait(_event(message, kind))
            return
        if not self._order:
            raise ProtocolViolation(f"a reply with no request open: {message!r}")
        key: Rid | _RawRequest
        rid = message.get("rid")
        if isinstance(self._order[0], _RawRequest) or rid is None:
            # Replies come in request order: the oldest open request is the one answered (an
            # error whose rid the server could not read has none).
            key = self._order[0]
        elif isinstance(rid, str) or _is_int(rid):
            assert isinstance(rid, (int, str))
            key = rid
        else:
            raise ProtocolViolation(f"a reply with an ill-typed rid: {message!r}")
        if key not in self._order:
            raise ProtocolViolation(f"a reply to no open request: {message!r}")
        # Every request sent before this one has had its reply.
        while self._order.popleft() != key:
            pass
        if kind == "subscribed":
            # Register now, before reading further: the snapshots follow right behind this reply.
            self._subs[_as_int(sub, "subscribed.sub")] = asyncio.Queue()
        elif kind == "unsubscribed":
            sub_id = _as_int(sub, "unsubscribed.sub")
            queue = self._subs.pop(sub_id, None)
            if queue is not None:
                queue.put_nowait(_End(None))
            subscription = self._subscriptions.pop(sub_id, None)
            if subscription is not None:
                subscription.active = False
        future = self._pending.get(key)
        if future is not None and not future.done():
            future.set_result(message)


# --------------------------------------------------------------------------- decoding


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(value: object, what: str) -> int:
    if not _is_int(value):
        raise ProtocolViolation(f"{what} is not an integer: {value!r}")
    assert isinstance(value, int)
    return value


def _as_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ProtocolViolation(f"{what} is not a string: {value!r}")
    return value


def _as_object(value: object, what: str) -> JSONObject:
    if not isinstance(value, dict):
        raise ProtocolViolation(f"{what} is not an object: {value!r}")
    return value


def _as_optional_object(value: object, what: str) -> JSONObject | None:
    return None if value is None else _as_object(value, what)


def _as_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolViolation(f"{what} is not a boolean: {value!r}")
    return value


def _as_str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list):
        raise ProtocolViolation(f"{what} is not a list: {value!r}")
    return [_as_str(item, f"{what}[]") for item in value]


def _expect(reply: JSONObject, kind: str) -> JSONObject:
    if reply.get("type") != kind:
        raise ProtocolViolation(f"expected a {kind!r} reply, got {reply!r}")
    return reply


def _record(message: JSONObject, what: str) -> Record:
    return Record(
        key=_as_str(message.get("key"), f"{what}.key"),
        version=_as_int(message.get("version"), f"{what}.version"),
        data=_as_object(message.get("data"), f"{what}.data"),
    )


def _ack(reply: JSONObject) -> Ack:
    _expect(reply, "ack")
    return Ack(
        key=_as_str(reply.get("key"), "ack.key"),
        version=_as_int(reply.get("version"), "ack.version"),
        seq=_as_int(reply.get("seq"), "ack.seq"),
        merged=_as_bool(reply.get("merged", False), "ack.merged"),
    )


def _conflict_state(message: JSONObject, base: object) -> ConflictState:
    # reason, clashes and changed come only with a write that asked for a merge (Protocol.md 3.3).
    return ConflictState(
        key=_as_str(message.get("key"), "conflict.key"),
        base=_as_int(base, "conflict.base"),
        version=_as_int(message.get("version"), "conflict.version"),
        data=_as_optional_object(message.get("data"), "conflict.data"),
        deleted=_as_bool(message.get("deleted"), "conflict.deleted"),
        reason=_as_str(message["reason"], "conflict.reason") if "reason" in message else None,
        clashes=_as_str_list(message.get("clashes", []), "conflict.clashes"),
        changed=_as_str_list(message["changed"], "conflict.changed") if "changed" in message else None,
    )


def _not_merged(state: ConflictState) -> str:
    """Why a merge was refused, for a Conflict's message: "" for a write without merge."""
    if state.reason is None:
        return ""
    return f"; not merged: {state.reason}" + (f" on {', '.join(state.clashes)}" if state.clashes else "")


def _conflicts(reply: JSONObject) -> list[ConflictState]:
    listed = reply.get("conflicts")
    if listed is None:
        return [_conflict_state(reply, reply.get("base"))]
    if not isinstance(listed, list):
        raise ProtocolViolation(f"conflict.conflicts is not a list: {reply!r}")
    states = []
    for item in listed:
        entry = _as_object(item, "conflict.conflicts[]")
        states.append(_conflict_state(entry, entry.get("base")))
    return states


def _event(message: JSONObject, kind: object) -> Event:
    sub = _as_int(message.get("sub"), f"{kind}.sub")
    if kind == "snapshot":
        record = _record(message, "snapshot")
        return Snapshot(sub=sub, key=record.key, version=record.version, data=record.data)
    return Update(
        sub=sub,
        key=_as_str(message.get("key"), "update.key"),
        version=_as_int(message.get("version"), "update.version"),
        seq=_as_int(message.get("seq"), "update.seq"),
        data=_as_optional_object(message.get("data"), "update.data"),
        deleted=_as_bool(message.get("deleted"), "update.deleted"),
    )
