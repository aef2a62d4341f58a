"""A hostile uploader for the app's tests and its benchmark: a raw HTTP/1.1 client on a loopback socket.

It sends a multipart body made of ``parts`` and then, if ``endless``, filler bytes for ever, while it
reads the app's answer on the same connection; it counts what the socket took before the app
answered and closed. Not aiohttp's client: that one would stop at its own limits, and a test must
see what the app does with a sender that never stops.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

BOUNDARY = "hbwhostile7f3a"


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    fn = f'; filename="{filename}"' if filename is not None else ""
    ctype = "Content-Type: application/octet-stream\r\n" if filename is not None else ""
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{fn}\r\n{ctype}\r\n").encode() + value + b"\r\n"


def end() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


@dataclass
class Sent:
    status: int
    text: str
    sent: int  # bytes of the body the socket took before the app's answer and close


async def send(port: int, path: str, cookie: str, body: bytes, *, endless: bool = False,
               filler: bytes = b"A" * 65536, repeat: int = 0, tail: bytes = b"") -> Sent:
    """POST ``body``, then ``filler`` ``repeat`` times and ``tail`` (or ``filler`` for ever if ``endless``),
    and return the app's answer. A large body is never held whole: it is made as it is sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    declared = 1 << 40 if endless else len(body) + repeat * len(filler) + len(tail)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
            f"Cookie: hbw_app={cookie}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {declared}\r\nConnection: close\r\n\r\n").encode()
    sent = 0

    async def push() -> None:
        nonlocal sent
        try:
            writer.write(head + body)
            await writer.drain()
            sent += len(body)
            n = 0
            while endless or n < repeat:
                writer.write(filler)
                await writer.drain()
                sent += len(filler)
                n += 1
            writer.write(tail)
            await writer.drain()
            sent += len(tail)
        except (ConnectionError, OSError):
            pass

    pusher = asyncio.create_task(push())
    try:
        raw = b""
        try:
            while chunk := await reader.read(65536):
                raw += chunk
        except (ConnectionError, OSError):
            pass
    finally:
        await asyncio.wait_for(pusher, 30)
        writer.close()
    status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0
    return Sent(status, raw.partition(b"\r\n\r\n")[2].decode("utf-8", "replace"), sent)
