"""Large batches (documents) travel resumably: uploads as streams kept at the byte, downloads in pieces.

A dropped link resumes, never restarts. A stream cut mid-body is cut for real here: the request's
head and part of its body go out on a socket, which is then closed (``cut_stream``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from hbw_sync import envelope
from hbw_sync.client import sync as syncing
from hbw_sync.errors import TransientError

from relay_helpers import Team

# Runs against each relay storage backend (SQLite, PostgreSQL): resumable pieces use substr/length on blobs.
pytestmark = pytest.mark.usefixtures("backend")


class FlakyLink:
    """The real transport, which drops the link after ``allow`` pieces (or streams) of the given action.

    A stream past ``allow`` is really cut: its head and ``keep`` bytes of its body reach the relay.
    """

    def __init__(self, action: str, allow: int | None, keep: int = 0):
        self.action, self.allow, self.pieces, self.keep = action, allow, 0, keep
        self.streamed: list[int] = []  # body bytes (after the head) of each stream sent whole

    async def __call__(self, url: str, body: bytes, timeout: float, **kw) -> bytes:
        if kw.get("path") == "/v1/fetch" and self.action == "fetch":  # cut after ``keep`` bytes came down
            if self.allow is not None and self.pieces >= self.allow:
                inner, got = kw["on_chunk"], [0]

                def cut(data: bytes) -> None:
                    room = self.keep - got[0]
                    if len(data) >= room:
                        inner(data[:room])
                        raise TransientError("link dropped (test)")
                    got[0] += len(data)
                    inner(data)
                kw = {**kw, "on_chunk": cut}
            else:
                self.pieces += 1
                inner, counted = kw["on_chunk"], self.streamed

                def count(data: bytes) -> None:
                    counted.append(len(data))
                    inner(data)
                kw = {**kw, "on_chunk": count}
            return await syncing.post(url, body, timeout, **kw)
        if kw.get("path") == "/v1/stream":
            head_end = 2 + int.from_bytes(body[:2], "big")
            if self.action == "stream":
                if self.allow is not None and self.pieces >= self.allow:
                    await cut_stream(url, body, head_end + self.keep)
                    raise TransientError("link dropped (test)")
                self.pieces += 1
            self.streamed.append(len(body) - head_end)
            return await syncing.post(url, body, timeout, **kw)
        req = envelope.parse_request(body)
        is_piece = req.action == "download" or "chunk" in req.args  # not the "where are we?" question
        if req.action == self.action and is_piece:
            if self.allow is not None and self.pieces >= self.allow:
                raise TransientError("link dropped (test)")
            self.pieces += 1
        return await syncing.post(url, body, timeout, **kw)


async def cut_stream(url: str, body: bytes, send: int) -> None:
    """Send a stream's HTTP request with its whole Content-Length, but only ``send`` bytes of body; then close."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    r, w = await asyncio.open_connection(host, int(port))
    w.write(f"POST /v1/stream HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-hbw\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:send])
    await w.drain()
    await asyncio.sleep(0.3)  # the relay reads what came before the cut
    w.transport.abort()
    await asyncio.sleep(0.2)


def held(team: Team) -> int:
    return team.sql("SELECT COALESCE(SUM(length(data)), 0) FROM upload_chunks")[0][0]


def test_large_document_upload_and_download_resume(team: Team, tmp_path: Path) -> None:
    amina, chidi = team.join("amina", "supervisor"), team.join("chidi")
    amina.sync()
    chidi.sync()
    report = tmp_path / "report.bin"
    data = os.urandom(1_000_000)  # incompressible: about 16 pieces of 64 KiB
    report.write_bytes(data)
    with amina.open() as rep:
        rep.add_task("small urgent change")
        doc = rep.add_doc(report)
        size = rep.store.execute("SELECT MAX(size) FROM outbox").fetchone()[0]
    pieces = -(-size // syncing.CHUNK)

    # The stream is cut 300,000 bytes into its body: the relay keeps every one of them.
    cut = FlakyLink("stream", allow=0, keep=300_000)
    with pytest.raises(TransientError):
        syncing.sync(amina.home, amina.passphrase, transport=cut)
    # The small change went first and is acknowledged; the document is still queued.
    with amina.open() as rep:
        left = rep.store.execute("SELECT COUNT(*), MAX(size) FROM outbox").fetchone()
    assert left == (1, size)
    assert held(team) == 300_000  # at the byte: not rounded down to a piece
    resumed = FlakyLink("stream", allow=None)
    syncing.sync(amina.home, amina.passphrase, transport=resumed)
    assert resumed.streamed == [size - 300_000]  # one stream, from the byte the relay held
    assert held(team) == 0
    with amina.open() as rep:
        assert rep.store.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0

    # The download is cut 300,000 bytes in (the head's bytes included): Chidi keeps what came.
    cut = FlakyLink("fetch", allow=0, keep=300_000)
    with pytest.raises(TransientError):
        syncing.sync(chidi.home, chidi.passphrase, transport=cut)
    with chidi.open() as rep:
        kept = rep.store.execute("SELECT COALESCE(SUM(length(data)), 0) FROM download_chunks").fetchone()[0]
    assert 300_000 - 400 < kept < 300_000  # at the byte, less the signed head
    resumed = FlakyLink("fetch", allow=None)
    syncing.sync(chidi.home, chidi.passphrase, transport=resumed)
    assert resumed.pieces == 1 and sum(resumed.streamed) < size - kept + 400  # only the rest came
    with chidi.open() as rep:
        view, got = rep.doc_bytes(doc.id)
        assert got == data and view.name == "report.bin"
        assert {t.title for t in rep.tasks()} == {"small urgent change"}
