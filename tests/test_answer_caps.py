"""The client bounds what it reads from a relay (``sync.read_capped``): a hostile server on loopback
that sends an endless body, or declares a huge one, costs the device a bounded number of bytes and
ends in a plain ``protocol.answer_size`` error (exit 65 through the one mapping), not in a full memory.
"""

from __future__ import annotations

import asyncio

import pytest

from hbw_sync.errors import LimitError, exit_code_for
from hbw_sync.client import sync


class Hostile:
    """A real HTTP/1.1 server on a loopback port that answers every request with ``head`` and then
    ``chunk`` for ever (or until the client goes away), counting the bytes it managed to send."""

    def __init__(self, head: bytes, chunk: bytes = b"x" * 65536) -> None:
        self.head, self.chunk, self.sent = head, chunk, 0

    async def __aenter__(self) -> "Hostile":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.head)
            while True:
                writer.write(self.chunk)
                await writer.drain()
                self.sent += len(self.chunk)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


ENDLESS_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-hbw\r\nConnection: close\r\n\r\n"
ENDLESS_ERROR = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"error\": \""


@pytest.mark.parametrize("head, cap", [(ENDLESS_OK, sync.MAX_ANSWER), (ENDLESS_ERROR, sync.MAX_ERROR_BODY)])
async def test_an_endless_answer_is_cut_at_its_cap_with_a_plain_error(head: bytes, cap: int) -> None:
    async with Hostile(head) as relay:
        with pytest.raises(LimitError) as got:
            await sync.post(relay.url, b"\x00" * 100, timeout=10)
    e = got.value
    assert e.code == "protocol.answer_size" and exit_code_for(e) == 65
    assert "nothing of it was used" in str(e)
    # What the server pushed is the cap, one piece, and what the two sockets buffer; never endless.
    assert relay.sent < cap + 16 * 1024 * 1024


async def test_an_endless_streamed_fetch_is_cut_too() -> None:
    got: list[int] = []
    async with Hostile(ENDLESS_OK) as relay:
        with pytest.raises(LimitError) as e:
            await sync.post(relay.url, b"\x00", timeout=10, path="/v1/fetch", on_chunk=lambda b: got.append(len(b)))
    assert e.value.code == "protocol.answer_size"
    assert sum(got) <= sync.MAX_STREAMED_ANSWER and relay.sent < sync.MAX_STREAMED_ANSWER + 16 * 1024 * 1024


async def test_a_declared_length_over_the_cap_is_refused_before_its_body() -> None:
    head = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10737418240\r\n\r\n")
    async with Hostile(head) as relay:
        with pytest.raises(LimitError) as e:
            await sync.post(relay.url, b"\x00", timeout=10)
    assert e.value.code == "protocol.answer_size" and "65.5 KB" in str(e.value)


async def test_an_answer_within_the_cap_is_read_whole() -> None:
    body = b"y" * (3 * 1024 * 1024)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        assert await sync.post(url, b"\x00", timeout=10) == body
    finally:
        server.close()
        await server.wait_closed()
