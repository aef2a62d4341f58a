"""What a large upload costs the local app's memory: ``upload.py`` against the old ``request.post()`` path.

Run: .venv/bin/python scripts/bench_app_upload.py [--quick] [--json]

Each case runs in a fresh app process (``--serve``) so its resident size is its own: VmRSS after
start, VmHWM (the peak) after the request. Both processes hold a real store and a real, unlocked
gate; a raw HTTP client on loopback sends the multipart body as it makes it (the client never holds
it whole). The two paths, in the same run:

  old   the guard as it was: ``request.clone(client_max_size=4 GiB + 1 MiB).post()`` (the whole
        form, text fields in memory, the file spooled by aiohttp), then the CSRF check, then the
        handler's copy of the file into a temporary folder
  new   ``server.guard`` (the token first, ``upload.open_form``) and ``upload.receive`` with the
        document form's caps, the file streamed to the store's folder

Both stop where the library would take the file (no ``add_doc``), so the figures are the upload's.
Cases: a text field of 100 MiB (``task``); the same with no CSRF token ("stranger": a page that
found the port and the cookie, not the token); a file of 200 MiB; each sent to ``/docs``
(``--quick``: 20, 20 and 40 MiB). Targets: the new path grows by at most 32 MiB in every case, and
the stranger is refused (403) having pushed less than 32 MiB, socket buffers included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from upload_helpers import BOUNDARY, end, part, send  # noqa: E402
import _benchkit  # noqa: E402  (scripts/: what every --json records)

MIB = 1024 * 1024
TARGET_GROWTH = 32 * MIB
PASSPHRASE = "bench upload passphrase, long enough"


def _vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"no {key} in /proc/{pid}/status")


def serve(mode: str, home: Path) -> None:
    """One app process: print how to reach it, then serve until killed."""
    from aiohttp import web

    from hbw_sync.client import Device
    from hbw_sync.client.app import server, upload
    from hbw_sync.client.app.layout import COOKIE, FLASH, GATE, HOME, ROLE_CACHE, unlocked
    from hbw_sync.client.app.pages.documents import DOC_FORM
    from hbw_sync.client.app.security import Gate
    from hbw_sync.client.documents import MAX_DOC_BYTES
    from hbw_sync.client.vault import KdfParams

    Device.init(home, "dana", PASSPHRASE, kdf=KdfParams(n=2**10)).close()
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    gate = Gate(port=sock.getsockname()[1])
    gate.unlock(PASSPHRASE, time.monotonic())
    sid = gate.open_session(gate.launch_token)
    assert sid is not None

    @unlocked  # as the app's handlers are: a refusal becomes its page (and the guard cuts the connection)
    async def new_docs(request: web.Request, pp: str) -> web.StreamResponse:
        async with upload.receive(request, DOC_FORM, upload.folder(home)) as up:
            return web.Response(text=f"{up.size} {len(up.fields.get('task') or '')}")

    @web.middleware
    async def old_guard(request: web.Request, handler: Any) -> web.StreamResponse:
        request = request.clone(client_max_size=MAX_DOC_BYTES + MIB)
        form = await request.post()
        if not gate.csrf_ok(request.cookies.get(COOKIE), form.get("csrf")):  # type: ignore[arg-type]
            return web.Response(status=403)
        request["form"] = form
        return await handler(request)

    async def old_docs(request: web.Request) -> web.StreamResponse:
        import shutil

        form = request["form"]
        up = form.get("file")
        size = 0
        if isinstance(up, web.FileField):
            with tempfile.TemporaryDirectory(dir=home) as tmp:
                up.file.seek(0)
                with open(Path(tmp) / "f", "wb") as out:
                    shutil.copyfileobj(up.file, out)
                    size = out.tell()
        return web.Response(text=f"{size} {len(form.get('task') or '')}")

    app = web.Application(middlewares=[server.guard if mode == "new" else old_guard], client_max_size=server.MAX_BODY)
    app[GATE], app[HOME], app[ROLE_CACHE], app[FLASH] = gate, home, {}, {}
    app.router.add_post("/docs", new_docs if mode == "new" else old_docs)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        print(json.dumps({"port": gate.port, "sid": sid, "csrf": gate.csrf_for(sid)}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def run_case(mode: str, case: str, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hbw-bench-upload-") as tmp:
        proc = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--home", str(Path(tmp) / "home")],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            before = _vm(proc.pid, "VmRSS")
            csrf = part("csrf", info["csrf"].encode()) if case != "stranger" else b""
            if case in ("text", "stranger"):
                head = csrf + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="task"\r\n\r\n'.encode()
                tail = b"\r\n" + part("file", b"hello", "a.txt") + end()
            else:
                head = csrf + (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="scan.pdf"\r\n'
                               f"Content-Type: application/pdf\r\n\r\n").encode()
                tail = b"\r\n" + end()
            t0 = time.perf_counter()
            got = asyncio.run(send(info["port"], "/docs", info["sid"], head, filler=b"7" * MIB, repeat=size // MIB,
                                   tail=tail))
            seconds = time.perf_counter() - t0
            peak = _vm(proc.pid, "VmHWM")
        finally:
            proc.kill()
            proc.wait()
    return {"mode": mode, "case": case, "mib": size // MIB, "status": got.status, "answer": got.text[:80],
            "sent_mib": round(got.sent / MIB, 1), "rss_before_mib": round(before / MIB, 1),
            "peak_mib": round(peak / MIB, 1), "growth_mib": round((peak - before) / MIB, 1),
            "seconds": round(seconds, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 MiB text, 40 MiB file (a smoke run)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--serve", choices=("old", "new"), help=argparse.SUPPRESS)
    ap.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve, a.home)
        return
    text_size, file_size = (20 * MIB, 40 * MIB) if a.quick else (100 * MIB, 200 * MIB)
    cases = (("text", text_size), ("stranger", text_size), ("file", file_size))
    rows = [run_case(mode, case, size) for case, size in cases for mode in ("old", "new")]
    new = [r for r in rows if r["mode"] == "new"]
    met = all(r["growth_mib"] * MIB <= TARGET_GROWTH for r in new)
    met = met and next(r for r in new if r["case"] == "text")["status"] == 413
    met = met and next(r for r in new if r["case"] == "file")["status"] == 200
    stranger = next(r for r in new if r["case"] == "stranger")
    met = met and stranger["status"] == 403 and stranger["sent_mib"] * MIB < TARGET_GROWTH
    out = _benchkit.stamp({"rows": rows, "target_growth_mib": TARGET_GROWTH // MIB}, met, quick=a.quick)
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{'path':5} {'case':8} {'MiB':>5} {'status':>6} {'sent':>6} {'RSS before':>11} {'peak':>8} {'growth':>8} {'s':>6}")
        for r in rows:
            print(f"{r['mode']:5} {r['case']:8} {r['mib']:>5} {r['status']:>6} {r['sent_mib']:>5.1f}M {r['rss_before_mib']:>10.1f}M "
                  f"{r['peak_mib']:>7.1f}M {r['growth_mib']:>7.1f}M {r['seconds']:>6.2f}")
        print("targets met" if met else "TARGET MISSED")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
