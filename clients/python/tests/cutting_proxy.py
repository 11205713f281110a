"""A TCP proxy in front of a server that cuts a connection at a chosen point, for tests of what
a client does when its connection drops in the middle of a request."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Literal

Direction = Literal["request", "reply"]


class CuttingProxy:
    """Forwards every connection to ``upstream_host:upstream_port`` byte for byte.

    After the WebSocket handshake (the HTTP head each way passes untouched), a cut can be armed
    for one direction: the next bytes to go that way on any connection are dropped instead, and
    both sides of that connection are reset at once. Cutting the ``"reply"`` means the server
    has handled the request whose answer those bytes are and the client never hears of it;
    cutting the ``"request"`` means the server never sees it. The cut is made once, then the
    proxy forwards again (so a client can connect anew through it).
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.accepted = 0  # connections taken so far
        self.cuts = 0  # cuts made so far
        self._armed: Direction | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.ws_url = ""

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.ws_url = f"ws://127.0.0.1:{port}/v1/ws"
        return self

    def cut_before_next_request(self) -> None:
        """Drop the next bytes from a client, and reset that connection."""
        self._armed = "request"

    def cut_before_next_reply(self) -> None:
        """Drop the next bytes from the server, and reset that connection."""
        self._armed = "reply"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for connection in list(self._connections):
            connection.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def __aenter__(self) -> CuttingProxy:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            server_reader, server_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            client_writer.transport.abort()
            self._connections.discard(task)
            return
        ends = (client_writer, server_writer)
        try:
            await asyncio.gather(
                self._pump(client_reader, server_writer, "request", ends),
                self._pump(server_reader, client_writer, "reply", ends),
            )
        finally:
            for writer in ends:
                writer.transport.abort()
            self._connections.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: Direction,
        ends: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        head = b""
        upgraded = False  # the HTTP head has gone by: what follows are WebSocket frames
        try:
            while data := await reader.read(65536):
                if not upgraded:
                    head += data
                    upgraded = b"\r\n\r\n" in head
                elif self._armed == direction:
                    self._armed = None
                    self.cuts += 1
                    for end in ends:
                        end.transport.abort()
                    return
                writer.write(data)
                await writer.drain()
            writer.close()  # the other side closed: pass it on
        except (ConnectionError, OSError):
            for end in ends:
                end.transport.abort()
