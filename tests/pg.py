"""A throwaway PostgreSQL for tests: ``initdb`` + ``pg_ctl`` in a temp dir, a unix socket, no TCP port.

Why not a shared server: CI and laptops have PostgreSQL's binaries (Debian's
``postgresql`` package) but no running server we may touch. One cluster per test
session, one schema per relay (``search_path`` in the URL), so tests never see
each other's rows and nothing is left behind.

initdb refuses to run as root: as root (CI containers) the cluster runs as
``nobody`` via ``runuser``, in a temp dir that user owns. ``fsync=off``: a crash
of a throwaway cluster loses nothing we keep.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from external import need

_counter = itertools.count(1)


class PgServer:
    """A running throwaway cluster; ``url()`` names a fresh empty schema in it."""

    def __init__(self) -> None:
        bindir = Path(need("postgres")).resolve().parent  # Debian: PATH has initdb, not createdb
        self.dir = Path(tempfile.mkdtemp(prefix="hbw-pg-"))
        self.port = 5432  # only names the socket file in self.dir: no TCP listener
        self._as: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root without runuser: cannot start PostgreSQL as another user")
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            os.chmod(self.dir, 0o700)
            self._as = [runuser, "-u", "nobody", "--"]
        self.bindir = bindir
        db = self.dir / "db"
        self._run([str(bindir / "initdb"), "-D", str(db), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                   "--no-sync", "--no-instructions"])
        self.start()
        self._run([str(bindir / "createdb"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", "hbw"])

    def start(self) -> None:
        """Start the cluster (again, after ``halt``)."""
        opts = f"-k {self.dir} -c listen_addresses= -p {self.port} -c fsync=off -c full_page_writes=off " \
               "-c max_connections=200"
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.dir / "db"), "-o", opts, "-l", str(self.dir / "log"),
                   "-w", "start"])

    def halt(self) -> None:
        """Stop the server but keep its data: a database that went away (tests of the relay's words for it)."""
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.dir / "db"), "-m", "fast", "-w", "stop"])

    def _run(self, cmd: list[str]) -> None:
        r = subprocess.run(self._as + cmd, capture_output=True, text=True, cwd=self.dir)
        if r.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}\n{log[-2000:]}")

    def base_url(self) -> str:
        return f"postgresql://postgres@/hbw?host={quote(str(self.dir))}&port={self.port}"

    def url(self) -> str:
        """A new empty schema, and the URL whose ``search_path`` is that schema."""
        import psycopg

        name = f"t{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.base_url(), autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {name}")
        return f"{self.base_url()}&options={quote('-csearch_path=' + name)}"

    def stop(self) -> None:
        try:
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.dir / "db"), "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
