"""A real HTTP server for ASGI apps in tests: uvicorn on 127.0.0.1 and an ephemeral port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import uvicorn
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    """uvicorn.Server that tells us, without polling, when it is listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@asynccontextmanager
async def serving(make_app: Callable[[str], ASGIApp]) -> AsyncIterator[str]:
    """Serves ``make_app(origin)`` on 127.0.0.1 and an ephemeral port; yields the origin."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        make_app(origin),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        log_config=None,
        lifespan="off",
        ws="none",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    try:
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not server.started:
            await task  # re-raises whatever stopped the server
            pytest.fail("uvicorn stopped before it started")
        port = server.servers[0].sockets[0].getsockname()[1]
        assert origin.endswith(f":{port}")
        yield origin
    finally:
        ready.cancel()
        server.should_exit = True
        await task
        sock.close()
