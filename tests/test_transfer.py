"""Large batches (documents) travel in resumable pieces: a dropped link resumes, never restarts."""

from __future__ import annotations

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
    """The real transport, which drops the link after ``allow`` pieces of the given action."""

    def __init__(self, action: str, allow: int | None):
        self.action, self.allow, self.pieces = action, allow, 0

    async def __call__(self, url: str, body: bytes, timeout: float) -> bytes:
        req = envelope.parse_request(body)
        is_piece = req.action == "download" or "chunk" in req.args  # not the "where are we?" question
        if req.action == self.action and is_piece:
            if self.allow is not None and self.pieces >= self.allow:
                raise TransientError("link dropped (test)")
            self.pieces += 1
        return await syncing.post(url, body, timeout)



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

    cut = FlakyLink("upload", allow=5)
    with pytest.raises(TransientError):
        syncing.sync(amina.home, amina.passphrase, transport=cut)
    # The small change went first and is acknowledged; the document is still queued.
    with amina.open() as rep:
        left = rep.store.execute("SELECT COUNT(*), MAX(size) FROM outbox").fetchone()
    assert left == (1, size)
    resumed = FlakyLink("upload", allow=None)
    syncing.sync(amina.home, amina.passphrase, transport=resumed)
    assert resumed.pieces == pieces - 5  # went on from the offset the relay held
    with amina.open() as rep:
        assert rep.store.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0

    cut = FlakyLink("download", allow=3)
    with pytest.raises(TransientError):
        syncing.sync(chidi.home, chidi.passphrase, transport=cut)
    resumed = FlakyLink("download", allow=None)
    syncing.sync(chidi.home, chidi.passphrase, transport=resumed)
    assert resumed.pieces == pieces - 3
    with chidi.open() as rep:
        view, got = rep.doc_bytes(doc.id)
        assert got == data and view.name == "report.bin"
        assert {t.title for t in rep.tasks()} == {"small urgent change"}
