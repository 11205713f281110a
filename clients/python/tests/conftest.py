"""Fixtures: real verso-server processes and connected clients."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # clients/python: verso_client
sys.path.insert(0, str(Path(__file__).resolve().parent))  # verso_server_process

from verso_client import VersoClient  # noqa: E402
from verso_server_process import VersoServer  # noqa: E402


class Connect(Protocol):
    async def __call__(self, url: str | None = None, *, compression: bool = True) -> VersoClient: ...


@pytest.fixture(scope="session")
def server() -> Iterator[VersoServer]:
    """One server for the whole session; tests keep apart by using their own key prefix."""
    with VersoServer() as running:
        yield running


@pytest.fixture(scope="session")
def force_server() -> Iterator[VersoServer]:
    """A server started with --allow-force."""
    with VersoServer("--allow-force") as running:
        yield running


@pytest.fixture(scope="session")
def short_history_server() -> Iterator[VersoServer]:
    """A server that keeps only the last 16 seqs of its change log and no versions beyond them
    (--history 16 --keep-versions 0), so older versions of a key are soon gone from its history."""
    with VersoServer("--history", "16", "--keep-versions", "0") as running:
        yield running


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"t/{uuid.uuid4().hex[:12]}/"


@pytest_asyncio.fixture
async def connect(server: VersoServer) -> AsyncIterator[Connect]:
    """Open clients (to `server` unless a url is given); all are closed after the test."""
    opened: list[VersoClient] = []

    async def open_client(url: str | None = None, *, compression: bool = True) -> VersoClient:
        client = await VersoClient.connect(url or server.ws_url, compression=compression)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()


@pytest_asyncio.fixture
async def client(connect: Connect) -> VersoClient:
    return await connect()
