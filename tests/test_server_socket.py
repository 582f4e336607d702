"""The socket ``imagegate serve`` listens on: connections it accepts have Nagle turned off.

With Nagle on, each answer on a kept-alive connection (the official SDKs keep connections
alive) waited ~40 ms for the client's delayed ACK; ``make bench`` measures the latency itself.
"""

from __future__ import annotations

import asyncio
import socket

from imagegate.server.commands import _bind


async def test_accepted_connections_have_tcp_nodelay() -> None:
    listener = _bind("127.0.0.1", 0)
    port = listener.getsockname()[1]
    accepted: asyncio.Queue[int] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        accepted.put_nowait(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=listener)
    async with server:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        nodelay = await asyncio.wait_for(accepted.get(), timeout=10)
        writer.close()
    assert listener.proto == socket.IPPROTO_TCP
    assert nodelay != 0
