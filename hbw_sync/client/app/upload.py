"""Uploads to the local app, read part by part: the CSRF token first, every part capped, files to disk.

Why not ``request.post()``: it buffers the whole body (text fields in memory) before anyone can
look at the CSRF token, so any page or program on this machine that found the session cookie's
port could make the app hold 40 MiB, or 4 GiB on the document forms, per request. Here:

* the body is read through ``_Metered``, which counts every byte the multipart reader takes and
  refuses past a budget that is small (``CSRF_BUDGET``) until the token has been checked;
* the token must be the FIRST part (our forms put it first: ``layout.form``), and a wrong or
  missing one is refused before another byte is read;
* at most ``MAX_PARTS`` parts; a text field at most ``MAX_TEXT`` bytes; one file part, streamed to a
  private temporary directory in the store's folder (the library reads a path) and refused past its
  form's cap (a document 4 GiB, a bundle 64 MiB, a spreadsheet 16 MiB);
* a refusal keeps nothing (the temporary directory goes) and ``server.guard`` closes the connection
  instead of reading the rest of the body ("cut off, not drained").

``document_name`` makes the name a browser sent into one a person can read and a folder can hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable
from urllib.parse import unquote

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ...errors import LimitError, UsageError
from ...i18n import _
from ...timefmt import human_bytes
from .. import views

#: Largest text field of an upload form (a task id, a list of names); more is refused, not buffered.
MAX_TEXT = 64 * 1024
#: Parts of one upload form, the CSRF token included (ours have at most 4).
MAX_PARTS = 8
#: Bytes read before the CSRF token is checked: headers of the first part and the token itself.
CSRF_BUDGET = 16 * 1024
#: Longest CSRF token read (ours are 43 characters).
MAX_TOKEN = 256
#: Bytes of the body each part's headers may take, over its value (a backstop for the reader's own caps).
PART_OVERHEAD = 16 * 1024
#: Bytes read from the socket per step of a file part.
READ_CHUNK = 256 * 1024
#: Longest document name kept (the library's and the page's limit).
MAX_NAME = 200

#: The open form of a multipart POST whose CSRF token the gate accepted (``server.guard`` sets it).
FORM = web.RequestKey("upload_form", object)
#: Set when a handler refused an upload before its end: ``server.guard`` closes the connection.
CUT = web.RequestKey("upload_cut", bool)


class _Overrun(Exception):
    """The body went past what may be read at this point."""


class _Metered:
    """The request body as ``MultipartReader`` reads it, counted: a read past ``budget`` raises ``_Overrun``.

    Every read of the reader is itself bounded (a line by the stream's high-water mark or the
    header-field cap, a chunk by its size), so the bytes taken never exceed ``budget`` by more than
    one such read, whatever the body claims or holds.
    """

    def __init__(self, stream: Any, budget: int) -> None:
        self._s = stream
        self.budget = budget
        self.taken = 0

    def _take(self, data: bytes) -> bytes:
        self.taken += len(data)
        if self.taken > self.budget:
            raise _Overrun()
        return data

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        return self._take(await self._s.readline(max_line_length=max_line_length))

    async def read(self, n: int = -1) -> bytes:
        return self._take(await self._s.read(n if 0 <= n <= READ_CHUNK else READ_CHUNK))

    def at_eof(self) -> bool:
        return bool(self._s.at_eof())

    def unread_data(self, data: bytes) -> None:
        self.taken -= len(data)
        self._s.unread_data(data)


@dataclass
class Form:
    """A multipart form whose first part, the CSRF token, was read and accepted; the rest is unread."""

    reader: MultipartReader
    meter: _Metered
    parts: int = 1


@dataclass(frozen=True)
class Spec:
    """What one upload form takes: its file's cap and the names of its text fields."""

    file_cap: int
    texts: frozenset[str] = frozenset()


@dataclass
class Upload:
    """The form as received: text fields, and the file on disk (``path``) under its person's ``name``."""

    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    name: str = ""
    size: int = 0

    def get(self, key: str) -> str | None:
        """A text field (``layout.text_of`` reads an ``Upload`` as it reads a posted form)."""
        return self.fields.get(key)

    def file(self) -> Path:
        """The uploaded file's path, or the person's error when the form came without one."""
        if self.path is None:
            raise UsageError(_("Choose a file first."))
        return self.path


def folder(home: Path | None) -> Path:
    """Where an upload waits: the store's own folder (its disk, its owner's permissions)."""
    from ..store import default_home

    return Path(home) if home is not None else default_home()


#: Prefixes of the app's private folders in the store's directory (uploads waiting, import previews).
LEFT_BEHIND = (".hbw-upload-", ".hbw-import-")
#: Age past which such a folder is a crashed app's leftover, removed when an app starts.
LEFTOVER_AGE_S = 24 * 3600


def sweep(home: Path | None, now: float) -> int:
    """Remove what an app that did not stop cleanly left in the store's folder; how many folders went.

    Why: a refused or finished upload removes its own folder, but a killed process (power cut,
    OOM) cannot, and the folder may hold a person's document. Only folders untouched for a day go,
    so a second app running on the same store keeps what it is using.
    """
    base = folder(home)
    gone = 0
    if not base.is_dir():
        return 0
    for p in base.iterdir():
        try:
            old = p.name.startswith(LEFT_BEHIND) and p.is_dir() and now - p.stat().st_mtime > LEFTOVER_AGE_S
        except OSError:
            continue
        if old:
            shutil.rmtree(p, ignore_errors=True)
            gone += 1
    return gone


def is_multipart(request: web.Request) -> bool:
    return request.content_type == "multipart/form-data"


def _malformed() -> UsageError:
    return UsageError(_("The form did not arrive whole; nothing was kept. Send it again."))


def _too_much() -> LimitError:
    return LimitError(_("This form sent more than the app reads; nothing was kept."))


async def open_form(request: web.Request, csrf_ok: Callable[[str | None], bool]) -> Form | None:
    """Read only the first part of a multipart POST and check it is the CSRF token; None if it is not.

    At most ``CSRF_BUDGET`` bytes of the body are read whatever it holds: a stranger's gigabyte
    costs the app a few kilobytes before it is refused.
    """
    try:
        meter = _Metered(request.content, CSRF_BUDGET)
        reader = MultipartReader(request.headers, meter)  # type: ignore[arg-type]
        part = await reader.next()
        if not isinstance(part, BodyPartReader) or part.name != "csrf" or part.filename is not None:
            return None
        token = await _read_text(part, MAX_TOKEN)
    # AssertionError: aiohttp's reader asserts on some malformed bodies; here any of these is "no token".
    except (_Overrun, ValueError, KeyError, LimitError, UsageError, HttpProcessingError, AssertionError):
        return None
    return Form(reader, meter) if csrf_ok(token) else None


async def _read_text(part: BodyPartReader, cap: int) -> str:
    buf = bytearray()
    while chunk := await part.read_chunk(4096):  # at least the boundary's length, as the reader asks
        buf += chunk
        if len(buf) > cap:
            raise LimitError(_("A field of this form is longer than {size}; nothing was kept.").format(
                size=human_bytes(cap)))
    try:
        return buf.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(_("A field of this form is not text; nothing was kept.")) from None


@contextlib.asynccontextmanager
async def receive(request: web.Request, spec: Spec, folder: Path) -> AsyncIterator[Upload]:
    """The rest of the form the gate opened: text fields and the file, which waits in ``folder``.

    The file goes to a new private directory (mode 0700) inside ``folder`` (the store's, so it is on
    the store's disk and no other user reads it), and that directory is removed when the block
    ends, whether the library took the file or not. A refusal (a cap, too many parts, a broken
    form) removes it at once, marks the request ``CUT`` so the connection is closed, and raises
    the person's error.
    """
    form = request.get(FORM)
    if not isinstance(form, Form):
        raise UsageError(_("Choose a file first."))
    form.meter.budget = form.meter.taken + spec.file_cap + MAX_PARTS * (MAX_TEXT + PART_OVERHEAD)
    tmp = Path(tempfile.mkdtemp(prefix=".hbw-upload-", dir=folder))
    try:
        try:
            up = await _read_rest(form, spec, tmp)
        except BaseException:
            request[CUT] = True
            raise
        yield up
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _read_rest(form: Form, spec: Spec, tmp: Path) -> Upload:
    up = Upload()
    try:
        while (part := await form.reader.next()) is not None:
            form.parts += 1
            if form.parts > MAX_PARTS:
                raise UsageError(_("This form has more parts than the app takes (at most {n}); nothing was kept.")
                                 .format(n=MAX_PARTS))
            if not isinstance(part, BodyPartReader) or not part.name:
                raise _malformed()
            if part.filename is None:
                value = await _read_text(part, MAX_TEXT)
                if part.name in spec.texts:
                    up.fields[part.name] = value
                continue
            if part.name != "file" or up.path is not None:
                raise UsageError(_("This form takes one file; nothing was kept."))
            await _save_file(part, spec, tmp, up)
    except _Overrun:
        raise _too_much() from None
    except (ValueError, KeyError, AssertionError, HttpProcessingError):
        raise _malformed() from None
    if up.path is not None and up.size == 0 and not up.name:
        up.path = None  # the browser's empty file field: no file chosen
    return up


async def _save_file(part: BodyPartReader, spec: Spec, tmp: Path, up: Upload) -> None:
    """Stream the file part to disk, refusing past ``spec.file_cap`` (checked per chunk, before writing)."""
    raw = part.filename or ""
    up.name = document_name(raw) if raw else ""
    path = tmp / views.safe_filename(up.name or "document")
    with open(path, "wb") as out:
        while chunk := await part.read_chunk(READ_CHUNK):
            up.size += len(chunk)
            if up.size > spec.file_cap:
                raise LimitError(_("This file is larger than this form takes ({size}); nothing was kept.")
                                 .format(size=human_bytes(spec.file_cap)))
            await asyncio.to_thread(out.write, chunk)
    up.path = path


#: Characters that reorder text on screen (bidi embedding, override, isolate, marks): a name such as
#: "invoice\u202egpj.exe" must not read as something else than it is.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def document_name(raw: str | None) -> str:
    """The uploaded file's name as a person should read it, safe to show and to store.

    Percent-escapes decoded, up to three times (browsers escape quotes and line ends, some tools
    escape everything, some twice; decoding comes before the checks, so a name cannot hide a
    separator from them), NFC (a name
    typed on a Mac and on Windows is the same name), control characters, line separators and bidi
    controls removed, only the last path part kept (``../../x`` and ``C:\\a\\x`` are ``x``), at most
    200 characters keeping the extension, and never empty ("document").
    """
    name = raw or ""
    for _round in range(3):  # a client that escaped an already escaped name: "%252F" -> "%2F" -> "/"
        decoded = unquote(name, errors="replace")
        if decoded == name:
            break
        name = decoded
    name = unicodedata.normalize("NFC", name)
    name = "".join(c for c in name if not (c in _BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs")))
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip().rstrip(". ")
    if name in ("", ".", ".."):
        return _("document")
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and 0 < len(ext) <= 16:
            name = stem[:MAX_NAME - len(ext) - 1].rstrip() + "." + ext
        else:
            name = name[:MAX_NAME]
    return name
