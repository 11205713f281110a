"""A small asyncio client for the Verso record server (wire protocol version 1, Protocol.md).

One connection is one :class:`VersoClient`. Every request gets an automatic ``rid``; a
background task reads the connection and routes each reply to its request by ``rid`` and each
subscription message (``snapshot`` with ``sub``, ``update``, ``progress``, ``presence`` with
``sub``) to its :class:`Subscription` by ``sub``, so any number of coroutines may share one
client.

Every write carries an ``idempotency_key`` (Protocol.md 3.7), a fresh UUID unless the caller
gives one, so sending it again can never apply it twice. A client opened with
``reconnect=True`` uses that: when the connection drops it connects again and resends every
write still waiting for its reply, so each caller gets exactly one outcome (the original ack,
marked ``replayed``, for a write that had landed).

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
import functools
import itertools
import json
import random
import ssl
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, TypeAlias, Union

from websockets.asyncio.client import ClientConnection, connect
from websockets.client import process_exception
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
    "History",
    "Page",
    "PatchOp",
    "Presence",
    "Progress",
    "ProtocolViolation",
    "RecordEvent",
    "PutOp",
    "Record",
    "Snapshot",
    "Subscription",
    "TxnAck",
    "TxnOp",
    "Update",
    "Version",
    "VersionNotFound",
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

MAX_IDEMPOTENCY_KEY_BYTES: Final = 128
"""The longest ``idempotency_key`` the server takes, in bytes of UTF-8 (Protocol.md 3.7)."""

_WRITES: Final = frozenset({"put", "patch", "delete", "txn"})

# Close codes after which a reconnecting client gives up rather than connect again: sending the
# same requests again would only repeat them (Protocol.md 1.2). 1002, 1003 and 1007: the server
# could not take what this client sent; 1009: a message over a size limit (the server's, or
# max_size for a reply); 4401: the token expired or was withdrawn, so the handshake would be
# refused.
_FINAL_CLOSE_CODES: Final = frozenset({1002, 1003, 1007, 1009, 4401})

# Delays between reconnection attempts: each is random between 0 and a ceiling that starts here
# and doubles up to the maximum, so clients of a restarted server do not all come back at once.
_FIRST_RETRY_CEILING: Final = 0.1
_MAX_RETRY_CEILING: Final = 5.0


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
    ``replayed`` is True when the server had already applied a write with the same
    idempotency key and answered from its stored outcome: the version and seq are those of
    the write when it was first applied, and nothing changed this time (Protocol.md 3.7).
    """

    key: str
    version: int
    seq: int
    merged: bool = False
    replayed: bool = False


@dataclass(frozen=True)
class TxnAck:
    """An accepted ``txn``: its single seq and every named key's version afterwards.

    ``merged`` lists the keys whose ``merge=True`` ops were merged into a newer version than
    their base (empty when there are none). ``replayed`` as for :class:`Ack`: the txn had
    already been applied and this is its original outcome.
    """

    seq: int
    versions: dict[str, int]
    merged: list[str] = field(default_factory=list)
    replayed: bool = False


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
    """One accepted change seen by a subscription. ``data`` is None when ``deleted``.

    ``at`` is when the change committed (milliseconds since the Unix epoch, server time; the
    changes of one txn share it) and ``by`` the user whose token made it, on a server that
    authenticates (Protocol.md 2); each is None when the server does not know it (a change
    stored before it recorded them; ``by`` on a server without authentication). They are
    facts of the change that ``seq`` already identifies, so they take no part in ``==``.
    """

    sub: int
    key: str
    version: int
    seq: int
    data: JSONObject | None
    deleted: bool
    at: int | None = field(default=None, compare=False)
    by: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Progress:
    """A progress bookmark (asked for with ``subscribe(progress=...)``): nothing changed for this
    subscription, and every matching change up to ``seq`` has been delivered, so subscribing
    again with ``since=seq`` replays nothing already seen (Protocol.md 5)."""

    sub: int
    seq: int


@dataclass(frozen=True)
class Presence:
    """A connection's presence on a key (Protocol.md 5.1): who has the record open, and where.

    As a subscription event (``sub`` set) it is another connection's presence on a matching
    key: its current presence right after the subscription's snapshots (or replayed changes),
    then each change as it happens. ``state`` None means that connection left the key (it
    cleared its presence, or closed). A connection never sees its own presence. As the reply
    to :meth:`VersoClient.set_presence` (``sub`` None) it is this connection's presence as the
    others see it.

    ``session`` is the connection's (as in :class:`Welcome`), ``client`` the name it gave in
    ``hello`` (None if it gave none), ``user`` its token's user on a server that
    authenticates (else None).
    """

    sub: int | None
    key: str
    session: str
    client: str | None
    user: str | None
    state: JSONObject | None

    @property
    def left(self) -> bool:
        """Whether this says the connection left the key (``state`` is None)."""
        return self.state is None


RecordEvent: TypeAlias = Union[Snapshot, Update]
"""The events that carry a record: :class:`Snapshot` and :class:`Update`."""

Event: TypeAlias = Union[Snapshot, Update, Progress, Presence]
"""Everything a subscription yields: records, :class:`Progress` bookmarks (only when asked
for) and other connections' :class:`Presence` on matching keys."""


@dataclass(frozen=True)
class Version:
    """One version of a key, as :meth:`VersoClient.history` lists it.

    ``seq`` is that of its change; ``at`` and ``by`` are when and by whom it was written, as
    for :class:`Update` (None when unknown). ``data`` is the record's object at that version,
    or None when the version is a deletion (:attr:`deleted`).
    """

    version: int
    seq: int
    at: int | None
    by: str | None
    data: JSONObject | None

    @property
    def deleted(self) -> bool:
        """Whether this version is a delete (a tombstone): it has no data."""
        return self.data is None


@dataclass(frozen=True)
class History:
    """A page of a key's versions (Protocol.md 3.9), or all of them from
    :meth:`VersoClient.history_all`.

    ``versions`` are newest first and contiguous: each is one less than the one before it. ``next`` is the
    ``before`` of the next, older page, None when the page reached the oldest version kept.
    ``gone``, when not None, says version ``gone`` and every older one are no longer kept
    (``next`` is then None). A page with neither ``next`` nor ``gone`` ends at version 1 (or
    is empty, for ``before=1``). The client checks all of this: a reply that would skip a
    version silently raises :class:`ProtocolViolation`.
    """

    key: str
    versions: list[Version]
    next: int | None
    gone: int | None = None


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


def _idempotency_key(key: str | None) -> str:
    """The caller's idempotency key, checked as the server would (1–128 bytes of UTF-8), or a
    fresh UUID when None."""
    if key is None:
        return str(uuid.uuid4())
    if not isinstance(key, str):
        raise ValueError(f"idempotency_key must be a string, not {key!r}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"idempotency_key is not valid UTF-8 (a lone surrogate?): {key!r}") from None
    if not 1 <= size <= MAX_IDEMPOTENCY_KEY_BYTES:
        raise ValueError(f"idempotency_key must be 1–{MAX_IDEMPOTENCY_KEY_BYTES} bytes of UTF-8, not {size}")
    return key


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


class VersionNotFound(VersoError):
    """:meth:`VersoClient.restore` was asked for a version the key's history does not hold.

    Either it is no longer kept (``gone`` is then set, to ``requested``: that version and every
    older one are gone, Protocol.md 3.9, "What is kept"; :meth:`VersoClient.history_all` says
    where the versions kept begin), or it was never made (``gone`` None: it is newer than the
    key's current version, ``current``). ``code`` is ``"not_found"``, as for
    the server's own errors, and ``reply`` is made by the client (there was no error reply).
    """

    def __init__(self, key: str, requested: int, *, gone: int | None, current: int | None) -> None:
        if gone is not None:
            message = f"version {requested} of {key!r} is no longer kept (versions {gone} and older are gone)"
        else:
            message = f"version {requested} of {key!r} does not exist (its current version is {current})"
        super().__init__({"type": "error", "code": "not_found", "message": message, "key": key})
        self.requested: Final = requested
        self.gone: Final = gone
        self.current: Final = current


@dataclass(frozen=True)
class ConflictState:
    """The current state of one key whose ``base`` was stale.

    For a write sent with ``merge=True`` that could not be merged, ``reason`` says why:
    ``"clash"``, ``"deleted"``, ``"recreated"``, ``"history_gone"`` or ``"unknown_base"``
    (Protocol.md 3.3). ``clashes`` are the JSON Pointers of this write's own values that clash
    (only for ``"clash"``). ``changed`` is every path changed since ``base``, for any conflict
    (merge or not) whose versions since ``base`` the server still knows, else None. A write
    without ``merge`` has ``reason`` None and no ``clashes``.

    ``at`` and ``by`` say when (milliseconds since the Unix epoch) and by whom (the user, on a
    server that authenticates) the current ``version`` was written, so a caller can say who
    got there first; None when unknown (a key that never existed, a change stored before the
    server recorded them, ``by`` withheld from a writer that may not read the key). As for
    :class:`Update`, they take no part in ``==``.
    """

    key: str
    base: int
    version: int
    data: JSONObject | None
    deleted: bool
    reason: str | None = None
    clashes: list[str] = field(default_factory=list)
    changed: list[str] | None = None
    at: int | None = field(default=None, compare=False)
    by: str | None = field(default=None, compare=False)


class Conflict(Exception):
    """A ``conflict`` reply: the write's base was stale and nothing changed.

    ``conflicts`` lists every stale key (exactly one for ``put``/``patch``/``delete``, one or
    more for ``txn``). ``key``, ``base``, ``version``, ``data``, ``deleted``, ``reason``,
    ``clashes`` and ``changed`` are those of the first, i.e. of the only one for a single-key
    write: ``version`` is the key's current version (0 if it never existed) and ``data`` its
    current object (None when deleted or missing); ``reason``, ``clashes`` and ``changed`` say
    why a ``merge=True`` write was not merged, and ``at`` and ``by`` when and by whom the
    current version was written (see :class:`ConflictState`).
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
        self.at: Final = first.at
        self.by: Final = first.by
        stale = ", ".join(f"{c.key} (base {c.base}, now {c.version}{_not_merged(c)})" for c in self.conflicts)
        super().__init__(f"stale base: {stale}")


class ConnectionLost(Exception):
    """The connection closed before the reply came, or while a subscription was being read.

    ``code`` and ``reason`` are the WebSocket close code and reason when known (1001: the server
    shut down; 1008: this client read too slowly; 1009: a message was too large; 1006: the
    connection dropped without a close). On a client opened with ``reconnect=True`` it is
    raised by subscriptions and by requests other than writes that were in flight when the
    connection dropped (the client itself goes on), and by everything once the client gives up
    reconnecting.
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


@dataclass(eq=False)
class _Pending:
    """A request waiting for its reply."""

    future: asyncio.Future[JSONObject]
    text: str
    resend: bool  # a write with an idempotency key, or a presence: safe to send again on a new connection
    sent_on: int | None = None  # the connection it was last sent on (VersoClient._connection)
    presence_key: str | None = None  # a presence request: its echo updates VersoClient._presence


class _End:
    """Queued into a subscription to end it, with the exception to raise (None: just stop)."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error


class Subscription:
    """A live subscription: an async iterator of :class:`Snapshot` then :class:`Update` events,
    with :class:`Presence` events interleaved (and :class:`Progress` bookmarks when asked for).

    ``sub`` is its id on the connection and ``seq`` the seq its starting point is at.
    ``snapshots`` is how many snapshots come first. ``reset`` is True when a ``since`` could not
    be honoured and current snapshots were sent instead (the caller must drop what it held).
    After the snapshots (or replayed changes) comes the current presence of every other
    connection on the matching keys, one :class:`Presence` each in key order, then presence
    changes as they happen; a ``Presence`` whose ``state`` is None means that connection left.

    Iteration ends after :meth:`unsubscribe` or :meth:`VersoClient.close`; it raises
    :class:`ConnectionLost` when the connection drops, also on a client that reconnects (which
    does not subscribe again by itself: resume with ``since``). Events are buffered without
    bound until read.
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
        #: The seq to resume from with ``since``: the start's, then each update's or progress
        #: bookmark's as it is read.
        self.last_seq: int = self.seq

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._ended is None:
            item = await self._queue.get()
            if isinstance(item, _End):
                self._ended = item
            else:
                if isinstance(item, (Update, Progress)):
                    self.last_seq = max(self.last_seq, item.seq)
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
    """A connection to a Verso server. Create it with :meth:`connect`.

    Opened with ``reconnect=True``, the client outlives its WebSocket: when the connection
    drops it opens another to the same URL and sends again every write still waiting for its
    reply (see :meth:`connect`).
    """

    def __init__(
        self,
        websocket: ClientConnection,
        *,
        reopen: Callable[[float], Awaitable[ClientConnection]] | None = None,
        reconnect_timeout: float = 30.0,
    ) -> None:
        """Take over an open ``websocket``. ``reopen(limit)`` opens a new one within ``limit``
        seconds; with it the client reconnects for up to ``reconnect_timeout`` seconds after
        a drop (without it, a drop ends the client)."""
        self._ws = websocket
        self._reopen = reopen
        self._reconnect_timeout = reconnect_timeout
        self._connection = 0  # counts the WebSockets this client has had; _Pending.sent_on names one
        self._live = True  # requests may be sent on self._ws (False while reconnecting and resending)
        self._reopening = False  # between connections: close() cancels the reader then
        self._rids = itertools.count(1)
        self._pending: dict[Rid | _RawRequest, _Pending] = {}  # in the order first sent
        self._order: deque[Rid | _RawRequest] = deque()  # sent on self._ws, in order: replies come in that order
        self._subs: dict[int, asyncio.Queue[Event | _End]] = {}
        self._subscriptions: dict[int, Subscription] = {}
        # The presence the server confirmed for this client, by key (in the order first set): set
        # again on each new connection, since the server ends a connection's presence with it.
        self._presence: dict[str, JSONObject] = {}
        self._closing = False
        self._lost: ConnectionLost | None = None  # set once the client is finished
        self._last_drop: ConnectionLost | None = None  # the latest connection lost, reconnected or not
        self._reader = asyncio.get_running_loop().create_task(self._run(), name="verso-client-reader")

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
        reconnect: bool = False,
        reconnect_timeout: float = 30.0,
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

        With ``reconnect=True``, a connection that drops is opened again (after a short random
        delay that grows with each failed attempt) for up to ``reconnect_timeout`` seconds.
        Every write still waiting for its reply is then sent again with its idempotency key,
        in the order first sent, so its caller gets one outcome: the original ack marked
        ``replayed`` if it had been applied, else the write decided as new. Other requests in
        flight (``get``, ``list``, ``subscribe``…) raise :class:`ConnectionLost`, as do
        subscriptions; requests made while reconnecting wait for the new connection. The
        presence this client had set (:meth:`set_presence`) is set again on the new connection
        before anything else is sent, and a ``set_presence`` in flight is sent again. The
        client gives up, and everything waiting raises :class:`ConnectionLost`, when the time
        runs out, when the handshake is refused for good (401, 403…), or after a close that a
        resend would only repeat (1002, 1007, 1009, 4401). By default (``reconnect=False``) a
        dropped connection ends the client and every request in flight raises
        :class:`ConnectionLost`.
        """
        if reconnect_timeout <= 0:
            raise ValueError(f"reconnect_timeout must be positive, not {reconnect_timeout!r}")
        # websockets refuses ssl=None for wss:// (it makes a default context when ssl is absent).
        tls: dict[str, Any] = {} if ssl_context is None else {"ssl": ssl_context}

        async def open_websocket(limit: float | None) -> ClientConnection:
            """Open the WebSocket, within ``limit`` seconds as well as ``open_timeout``."""
            timeout = open_timeout if limit is None else limit if open_timeout is None else min(open_timeout, limit)
            return await connect(
                url,
                compression="deflate" if compression else None,
                open_timeout=timeout,
                max_size=max_size,
                proxy=None,
                additional_headers={"Authorization": f"Bearer {token}"} if token is not None else None,
                **tls,
            )

        websocket = await open_websocket(None)
        return cls(websocket, reopen=open_websocket if reconnect else None, reconnect_timeout=reconnect_timeout)

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
        """Whether the client is finished: closed, or its connection lost for good (a client
        that is reconnecting is not closed)."""
        return self._closing or self._lost is not None

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def presence(self) -> dict[str, JSONObject]:
        """The presence states the server has confirmed for this client, by key (a copy): those
        it sets again after a reconnect. A key cleared with ``None`` is not in it."""
        return dict(self._presence)

    # ---- lifecycle

    async def close(self) -> None:
        """Close the connection (code 1000). Pending requests fail; subscriptions stop."""
        self._closing = True
        if self._reopening:
            self._reader.cancel()  # it is waiting to reconnect: there is no connection to close
        else:
            await self._ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def wait_closed(self) -> ConnectionLost:
        """Wait until the client is finished (the server closed the connection, or a
        reconnecting client gave up); returns how it ended."""
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
        as it came. A write that carries an ``idempotency_key`` is sent again after a
        reconnect, like those of :meth:`put` and the others; a ``presence`` is sent again too,
        and its outcome remembered, as :meth:`set_presence` does.
        """
        rid = next(self._rids)
        body = dict(message)
        body["rid"] = rid
        kind, key = body.get("type"), body.get("key")
        presence_key = key if kind == "presence" and isinstance(key, str) else None
        resend = presence_key is not None or (kind in _WRITES and isinstance(body.get("idempotency_key"), str))
        text = json.dumps(body, ensure_ascii=False, allow_nan=False)
        reply = await self._exchange(rid, text, resend=resend, presence_key=presence_key)
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

    async def _exchange(
        self, key: Rid | _RawRequest, text: str, *, resend: bool = False, presence_key: str | None = None
    ) -> JSONObject:
        if self._lost is not None:
            raise self._lost
        if self._closing:
            raise ConnectionLost(1000, "closed by the client")
        pending = _Pending(asyncio.get_running_loop().create_future(), text, resend, presence_key=presence_key)
        self._pending[key] = pending
        try:
            if self._live:  # else the reader sends it once it has a connection again
                await self._send(self._ws, key, pending)
            return await pending.future
        finally:
            self._pending.pop(key, None)

    async def _send(self, websocket: ClientConnection, key: Rid | _RawRequest, pending: _Pending) -> bool:
        """Send one request on ``websocket``; False if the connection is closed (the reader then
        fails the request or sends it again on the next connection)."""
        pending.sent_on = self._connection
        # Register before sending: the reply may be read before send() returns.
        self._order.append(key)
        try:
            await websocket.send(pending.text)
        except ConnectionClosed:
            return False
        return True

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
        self,
        key: str,
        data: Outgoing,
        base: int | None = None,
        *,
        force: bool = False,
        merge: bool = False,
        idempotency_key: str | None = None,
    ) -> Ack:
        """Replace the record's object. ``base`` is the version the edit started from (0: create).

        With ``merge=True`` (``"merge": "fields"``) a stale base is not a conflict as long as
        none of the values this put changes was changed since ``base``: the server applies the
        changed values to the current record and the ack has ``merged=True`` (Protocol.md 3.3).

        ``idempotency_key`` (1–128 bytes of UTF-8, else ``ValueError``; a fresh UUID when not
        given) makes the write safe to send again: the same key with the same request gets the
        original ack with ``replayed=True`` and changes nothing; with another request it is a
        :class:`VersoError` ``bad_request`` (Protocol.md 3.7). The same holds for every write.
        """
        message = _write_fields({"type": "put", "key": key, "data": dict(data)}, base, force, merge)
        return _ack(await self._write(message, idempotency_key))

    async def patch(
        self,
        key: str,
        patch: Outgoing,
        base: int | None = None,
        *,
        force: bool = False,
        merge: bool = False,
        idempotency_key: str | None = None,
    ) -> Ack:
        """Apply an RFC 7396 merge patch (``None`` removes a member); ``merge`` and
        ``idempotency_key`` as for :meth:`put`."""
        message = _write_fields({"type": "patch", "key": key, "patch": dict(patch)}, base, force, merge)
        return _ack(await self._write(message, idempotency_key))

    async def delete(
        self, key: str, base: int | None = None, *, force: bool = False, idempotency_key: str | None = None
    ) -> Ack:
        """Delete the record, leaving a tombstone at the next version; ``idempotency_key`` as for
        :meth:`put`."""
        message = _write_fields({"type": "delete", "key": key}, base, force)
        return _ack(await self._write(message, idempotency_key))

    async def _write(self, message: dict[str, object], idempotency_key: str | None) -> JSONObject:
        message["idempotency_key"] = _idempotency_key(idempotency_key)
        return await self.request(message)

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

    async def txn(self, ops: Iterable[TxnOp], *, idempotency_key: str | None = None) -> TxnAck:
        """Apply all ops or none. A stale base raises :class:`Conflict` listing every stale op.
        ``idempotency_key`` as for :meth:`put`: a replayed txn ack has its versions as first sent."""
        wire_ops = [op.wire() for op in ops]
        reply = _expect(await self._write({"type": "txn", "ops": wire_ops}, idempotency_key), "ack")
        raw_versions = _as_object(reply.get("versions"), "ack.versions")
        versions = {key: _as_int(version, f"ack.versions[{key!r}]") for key, version in raw_versions.items()}
        return TxnAck(
            seq=_as_int(reply.get("seq"), "ack.seq"),
            versions=versions,
            merged=_as_str_list(reply.get("merged", []), "ack.merged"),
            replayed=_as_bool(reply.get("replayed", False), "ack.replayed"),
        )

    async def history(self, key: str, *, before: int | None = None, limit: int | None = None) -> History:
        """One page of ``key``'s versions, newest first (Protocol.md 3.9).

        The versions below ``before`` (an integer of at least 1; from the current version when
        None), at most ``limit`` of them (1–100; the server's default is 20; a page also stops
        early, with ``next``, before its data passes 8 MiB). Pass the page's ``next`` as
        ``before`` for the next, older page; ``gone`` says where the versions no longer kept
        begin. A key that never existed raises :class:`VersoError` ``not_found`` (a deleted
        key has a history: its newest version is the deletion); a key outside the token's
        ``read`` rules, ``forbidden``.
        """
        message: dict[str, object] = {"type": "history", "key": key}
        if before is not None:
            message["before"] = before
        if limit is not None:
            message["limit"] = limit
        return _history(_expect(await self.request(message), "history"), before)

    async def history_all(self, key: str, *, before: int | None = None, page_size: int | None = None) -> History:
        """Every version of ``key`` still kept (below ``before``, if given), newest first,
        following ``next`` page by page (``page_size`` versions a page; the server's default
        is 20). The result's ``next`` is None and its ``gone`` is the last page's: the newest
        version no longer kept, or None when the history reaches back to version 1. The pages
        are read one after another, not as one snapshot: a version written meanwhile is not
        included (every page is below the first page's versions), and the oldest ones may be
        pruned meanwhile, which ``gone`` then says."""
        versions: builtins.list[Version] = []
        while True:
            page = await self.history(key, before=before, limit=page_size)
            if versions and page.versions and page.versions[0].version != versions[-1].version - 1:
                raise ProtocolViolation(
                    f"history: a page after version {versions[-1].version} starts at {page.versions[0].version}"
                )
            versions.extend(page.versions)
            if page.next is None:
                return History(key=page.key, versions=versions, next=None, gone=page.gone)
            before = page.next

    async def restore(self, key: str, version: int, *, idempotency_key: str | None = None) -> Ack:
        """Write version ``version`` of ``key`` back as a new version: a :meth:`put` of that
        version's data with ``base`` the key's current version (Protocol.md 3.9).

        It reads the version through :meth:`history`, then the current version (the newest
        in the history, so a deleted key is restored on its tombstone), then puts. It is a
        write like any other: if someone writes the key between the read and the put, it
        raises :class:`Conflict` with their version and changes nothing, and it makes a new
        version even when the data equals the current data. Raises :class:`VersionNotFound`
        when that version is no longer kept (or is newer than the current one),
        :class:`VersoError` ``not_found`` when the key never existed, and ``ValueError`` when
        ``version`` is not an integer of at least 1 (before sending anything) or is a
        deletion, which a put cannot write back (:meth:`delete` the key instead).
        ``idempotency_key`` as for :meth:`put`.
        """
        if not _is_int(version) or version < 1:
            raise ValueError(f"version must be an integer of at least 1, not {version!r}")
        page = await self.history(key, before=version + 1, limit=1)
        if not page.versions or page.versions[0].version != version:
            current = page.versions[0].version if page.versions else None
            raise VersionNotFound(key, version, gone=page.gone, current=current)
        old = page.versions[0]
        if old.data is None:
            raise ValueError(
                f"version {version} of {key!r} is a deletion: a restore writes data back with put; "
                "to delete the key again, use delete(key, base=<its current version>)"
            )
        newest = await self.history(key, limit=1)
        if not newest.versions:
            raise ProtocolViolation(f"the history of {key!r} has no current version")
        return await self.put(key, old.data, base=newest.versions[0].version, idempotency_key=idempotency_key)

    async def set_presence(self, key: str, state: Outgoing | None) -> Presence:
        """Set this connection's presence on ``key`` to ``state`` (a JSON object of at most
        1 KiB as the server encodes it), or clear it with None (Protocol.md 5.1).

        Other connections' subscriptions matching ``key`` get it as a :class:`Presence` event
        until it is cleared or this connection closes; this client's own subscriptions never
        see it. Returns the presence as they see it (``sub`` None). The key need not exist.
        Errors: :class:`VersoError` ``too_large`` for a ``state`` over 1 KiB or a 33rd key
        with presence (clear one first), ``forbidden`` without ``presence`` or ``write`` on
        the key; they change nothing. Past 10 changes a second the server answers at once but
        delays what subscribers see, coalesced per key to the latest state.

        The client remembers each state the server confirmed (see :attr:`presence`). On a
        client opened with ``reconnect=True`` the server's presence ends with the dropped
        connection; the client sets every remembered state again on the new connection
        before sending anything else, and sends a ``set_presence`` that was in flight again
        (setting a state twice is harmless), so others see this client leave and come back.
        """
        message: dict[str, object] = {"type": "presence", "key": key, "state": None if state is None else dict(state)}
        return _presence(_expect(await self.request(message), "presence"))

    async def subscribe(
        self,
        *,
        prefix: str | None = None,
        keys: Sequence[str] | None = None,
        since: int | None = None,
        epoch: str | None = None,
        progress: int | None = None,
    ) -> Subscription:
        """Subscribe to a ``prefix`` or to ``keys`` (exactly one of them).

        Without ``since`` the current records arrive as snapshots, then every change as an
        update. With ``since`` (and ``epoch``, to detect a different store), the changes after
        that seq are replayed as updates, unless the subscription comes back with ``reset``.
        With ``progress`` (seconds, 1–3600), a :class:`Progress` bookmark arrives whenever that
        long passes without an update; :attr:`Subscription.last_seq` follows them, and is the
        ``since`` to resume with. Other connections' presence on matching keys arrives as
        :class:`Presence` events (see :class:`Subscription`).
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
        if progress is not None:
            message["progress"] = progress
        reply = _expect(await self.request(message), "subscribed")
        sub_id = _as_int(reply.get("sub"), "subscribed.sub")
        queue = self._subs.get(sub_id)
        if queue is None:  # the reader registers it on the reply; only a lost connection skips that
            if self._closing:
                raise ConnectionLost(1000, "closed by the client")
            raise self._lost or self._last_drop or ConnectionLost(None, "connection lost")
        subscription = Subscription(self, reply, queue)
        self._subscriptions[sub_id] = subscription
        return subscription

    # ---- the reader

    async def _run(self) -> None:
        """Read the connection; on a client that reconnects, open new ones as they drop."""
        lost = ConnectionLost(None, "")
        outage_ends = 0.0  # when a reconnecting client gives up, counted from the first drop
        resend = False
        try:
            while True:
                lost, final = await self._read(self._ws, resend)
                was_live, self._live = self._live, False
                self._last_drop = lost
                if self._closing or final or self._reopen is None:
                    return
                self._interrupt(lost)
                if was_live:  # a drop while resending continues the same outage
                    outage_ends = asyncio.get_running_loop().time() + self._reconnect_timeout
                self._reopening = True
                reopened = await self._reconnect(lost, outage_ends)
                self._reopening = False
                if isinstance(reopened, ConnectionLost):
                    lost = reopened
                    return
                self._ws = reopened
                self._connection += 1
                resend = True
        except asyncio.CancelledError:
            if not self._closing:
                raise
            lost = ConnectionLost(1000, "closed by the client")  # close() while reconnecting
        finally:
            self._finish(lost)

    async def _read(self, websocket: ClientConnection, resend: bool) -> tuple[ConnectionLost, bool]:
        """Dispatch every message of ``websocket`` until it closes, first sending again what is
        waiting (``resend``, on a new connection). Returns how it closed, and whether that is
        final: a close that a new connection would only repeat."""
        sender = None
        if resend:
            sender = asyncio.get_running_loop().create_task(self._resend(websocket), name="verso-client-resend")
        try:
            async for raw in websocket:
                if isinstance(raw, bytes):
                    raise ProtocolViolation("the server sent a binary message")
                message = json.loads(raw)
                if not isinstance(message, dict):
                    raise ProtocolViolation(f"the server sent a non-object: {raw[:200]!r}")
                self._dispatch(message)
            lost = ConnectionLost(websocket.close_code, websocket.close_reason or "")
        except ConnectionClosed as closed:
            lost = ConnectionLost(websocket.close_code, websocket.close_reason or str(closed))
        except Exception as violation:  # ProtocolViolation, bad JSON: this connection is unusable
            await websocket.close(1002, "protocol violation")
            return ConnectionLost(None, f"protocol violation: {violation}"), True
        finally:
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        return lost, lost.code in _FINAL_CLOSE_CODES

    async def _resend(self, websocket: ClientConnection) -> None:
        """Send every request waiting for a new connection on ``websocket``, in the order they
        were first sent, then let requests go straight out again. Requests made meanwhile
        queue behind them. The presence this client had set goes first: the server ended it
        with the old connection, and a presence change waiting to be sent comes after it."""
        if not await self._restore_presence(websocket):
            return
        while True:
            waiting = [
                (key, pending)
                for key, pending in self._pending.items()
                if pending.sent_on != self._connection and not pending.future.done()
            ]
            if not waiting:
                self._live = True  # no await since the last check: nothing is left behind
                return
            for key, pending in waiting:
                if pending.future.done():  # its caller gave up while an earlier one was sent
                    continue
                if not await self._send(websocket, key, pending):
                    return  # closed again: the reader sees it

    async def _restore_presence(self, websocket: ClientConnection) -> bool:
        """Set every remembered presence again on a new ``websocket``; False if it closed.

        Nobody waits for these replies: an echo keeps the state remembered (the dispatcher
        updates it as for any presence reply), and an error (the server shutting down, say)
        leaves it remembered for the next connection."""
        loop = asyncio.get_running_loop()
        for key, state in builtins.list(self._presence.items()):
            rid = next(self._rids)
            message = {"type": "presence", "rid": rid, "key": key, "state": state}
            text = json.dumps(message, ensure_ascii=False, allow_nan=False)
            pending = _Pending(loop.create_future(), text, resend=False, presence_key=key)
            self._pending[rid] = pending
            pending.future.add_done_callback(functools.partial(self._restored, rid))
            if not await self._send(websocket, rid, pending):
                return False
        return True

    def _remember_presence(self, key: str, echo: JSONObject) -> None:
        """Keep the state the server confirmed for ``key`` (its echo, in reply order, so the
        latest confirmed state wins); forget the key when it was cleared."""
        try:
            shown = _presence(echo)
        except ProtocolViolation:
            return  # the caller gets the violation; nothing is remembered
        if shown.state is None:
            self._presence.pop(key, None)
        else:
            self._presence[key] = shown.state

    def _restored(self, rid: Rid, future: asyncio.Future[JSONObject]) -> None:
        """A presence set again by the client itself has its outcome: forget the request."""
        self._pending.pop(rid, None)
        if not future.cancelled():
            future.exception()  # a connection lost again: nothing to report, the next one retries

    def _interrupt(self, lost: ConnectionLost) -> None:
        """The connection dropped and the client will reconnect: fail the requests that cannot
        be sent again (anything but a write with an idempotency key or a presence) and end the
        subscriptions.
        Writes, and requests not sent yet, wait for the next connection."""
        for pending in self._pending.values():
            if pending.sent_on is not None and not pending.resend and not pending.future.done():
                pending.future.set_exception(lost)
        self._order.clear()
        self._end_subscriptions(lost)

    def _finish(self, lost: ConnectionLost) -> None:
        """The client is done: fail everything still waiting and end the subscriptions."""
        self._live = False
        self._lost = lost
        failure = ConnectionLost(1000, "closed by the client") if self._closing else lost
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(failure)
        self._order.clear()
        self._end_subscriptions(None if self._closing else lost)

    def _end_subscriptions(self, error: ConnectionLost | None) -> None:
        end = _End(error)
        for queue in self._subs.values():
            queue.put_nowait(end)
        for subscription in self._subscriptions.values():
            subscription.active = False
        self._subs.clear()
        self._subscriptions.clear()

    async def _reconnect(self, lost: ConnectionLost, give_up_at: float) -> ClientConnection | ConnectionLost:
        """Open a new connection, trying until ``give_up_at`` (the loop's clock); the
        ConnectionLost to end the client with if that fails."""
        assert self._reopen is not None
        loop = asyncio.get_running_loop()
        ceiling = _FIRST_RETRY_CEILING
        failure = "no attempt in time"
        while (remaining := give_up_at - loop.time()) > 0:
            await asyncio.sleep(random.uniform(0, min(ceiling, remaining)))
            ceiling = min(2 * ceiling, _MAX_RETRY_CEILING)
            try:
                return await self._reopen(max(give_up_at - loop.time(), 0.001))
            except Exception as error:
                failure = f"{type(error).__name__}: {error}"
                if process_exception(error) is not None:  # refused for good (an HTTP 401, say)
                    return ConnectionLost(lost.code, f"{lost.reason or 'connection lost'}; reconnecting refused: {failure}")
        return ConnectionLost(
            lost.code, f"{lost.reason or 'connection lost'}; not reconnected within {self._reconnect_timeout}s: {failure}"
        )

    def _dispatch(self, message: JSONObject) -> None:
        kind = message.get("type")
        sub = message.get("sub")
        if kind in ("update", "progress") or (kind in ("snapshot", "presence") and "rid" not in message and sub is not None):
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
        pending = self._pending.get(key)
        if pending is not None and pending.presence_key is not None and kind == "presence":
            self._remember_presence(pending.presence_key, message)
        if pending is not None and not pending.future.done():
            pending.future.set_result(message)


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


def _optional_int(message: JSONObject, name: str, what: str) -> int | None:
    """``message[name]`` as an integer, or None when the member is absent (not when it is null)."""
    return _as_int(message[name], f"{what}.{name}") if name in message else None


def _optional_str(message: JSONObject, name: str, what: str) -> str | None:
    """``message[name]`` as a string, or None when the member is absent (not when it is null)."""
    return _as_str(message[name], f"{what}.{name}") if name in message else None


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
        replayed=_as_bool(reply.get("replayed", False), "ack.replayed"),
    )


def _conflict_state(message: JSONObject, base: object) -> ConflictState:
    # reason and clashes come only with a write that asked for a merge; changed with any conflict
    # whose versions since its base the server knows (Protocol.md 3.3).
    return ConflictState(
        key=_as_str(message.get("key"), "conflict.key"),
        base=_as_int(base, "conflict.base"),
        version=_as_int(message.get("version"), "conflict.version"),
        data=_as_optional_object(message.get("data"), "conflict.data"),
        deleted=_as_bool(message.get("deleted"), "conflict.deleted"),
        reason=_as_str(message["reason"], "conflict.reason") if "reason" in message else None,
        clashes=_as_str_list(message.get("clashes", []), "conflict.clashes"),
        changed=_as_str_list(message["changed"], "conflict.changed") if "changed" in message else None,
        at=_optional_int(message, "at", "conflict"),
        by=_optional_str(message, "by", "conflict"),
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


def _version(message: JSONObject) -> Version:
    what = "history.versions[]"
    data = _as_optional_object(message.get("data"), f"{what}.data")
    deleted = _as_bool(message.get("deleted"), f"{what}.deleted")
    if deleted != (data is None):
        raise ProtocolViolation(f"{what}: data must be null exactly when deleted: {message!r}")
    return Version(
        version=_as_int(message.get("version"), f"{what}.version"),
        seq=_as_int(message.get("seq"), f"{what}.seq"),
        at=_optional_int(message, "at", what),
        by=_optional_str(message, "by", what),
        data=data,
    )


def _history(reply: JSONObject, before: int | None) -> History:
    """A ``history`` reply, checked for what Protocol.md 3.9 promises: versions newest first
    with none left out, below ``before``, above ``gone``, and no ``next`` with ``gone``."""
    raw = reply.get("versions")
    if not isinstance(raw, list):
        raise ProtocolViolation(f"history.versions is not a list: {reply!r}")
    versions = [_version(_as_object(item, "history.versions[]")) for item in raw]
    next_before = reply.get("next")
    if next_before is not None:
        next_before = _as_int(next_before, "history.next")
    gone = _optional_int(reply, "gone", "history")
    numbers = [version.version for version in versions]
    if any(newer - 1 != older for newer, older in zip(numbers, numbers[1:])):
        raise ProtocolViolation(f"history: versions not newest first one by one: {numbers}")
    if numbers and (numbers[-1] < 1 or (before is not None and numbers[0] >= before)):
        raise ProtocolViolation(f"history: versions {numbers} outside 1 to before={before}")
    if gone is not None and (next_before is not None or (numbers and numbers[-1] <= gone)):
        raise ProtocolViolation(f"history: gone={gone} with next={next_before} and versions {numbers}")
    if next_before is None and gone is None and numbers and numbers[-1] != 1:
        # A version is never skipped silently: listed, after a `next`, or named gone.
        raise ProtocolViolation(f"history: versions {numbers} end above 1 with neither next nor gone")
    return History(
        key=_as_str(reply.get("key"), "history.key"), versions=versions, next=next_before, gone=gone
    )


def _presence(message: JSONObject) -> Presence:
    if "state" not in message:
        raise ProtocolViolation(f"presence without a state: {message!r}")
    return Presence(
        sub=_optional_int(message, "sub", "presence"),
        key=_as_str(message.get("key"), "presence.key"),
        session=_as_str(message.get("session"), "presence.session"),
        client=_optional_str(message, "client", "presence"),
        user=_optional_str(message, "user", "presence"),
        state=_as_optional_object(message["state"], "presence.state"),
    )


def _event(message: JSONObject, kind: object) -> Event:
    sub = _as_int(message.get("sub"), f"{kind}.sub")
    if kind == "presence":
        return _presence(message)
    if kind == "progress":
        return Progress(sub=sub, seq=_as_int(message.get("seq"), "progress.seq"))
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
        at=_optional_int(message, "at", "update"),
        by=_optional_str(message, "by", "update"),
    )
