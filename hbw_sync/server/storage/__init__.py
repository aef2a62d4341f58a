"""The relay's storage: one seam (``base.Store``), two backends (``sqlite``, ``postgres``).

A data directory always holds the relay's key (``relay.key``) and either its
SQLite database (``relay.db``, the embedded default) or, for PostgreSQL, the
file ``database.url`` (0600: it may hold a password) naming the database. So
every admin command keeps taking ``--data DIR`` and finds its database from
there; ``hbw-relay serve --database URL`` may name it instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from ... import fileio
from ...errors import ConfigError
from .base import SCHEMA_VERSION, Runner, Store, Txn
from .faults import faults, for_device, storage_error
from .sqlite import DB_NAME

URL_FILE = "database.url"

__all__ = ["SCHEMA_VERSION", "Runner", "Store", "Txn", "DB_NAME", "URL_FILE", "faults", "for_device",
           "storage_error", "open_store", "create", "migrate", "database_url", "holds_relay", "check_url"]


def check_url(url: str) -> str:
    """The PostgreSQL URL as given; ConfigError saying what is accepted for anything else."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"--database must be a postgresql:// URL, not {url.split(':', 1)[0]!r}",
                          hint="e.g. postgresql://hbw@db.office/hbw; leave it out for SQLite in the data directory")
    return url


def database_url(data: Path, database: str | None = None) -> str | None:
    """The PostgreSQL URL this data directory uses (``database`` overrides its file), or None for SQLite."""
    if database:
        return check_url(database)
    path = Path(data) / URL_FILE
    if path.exists():
        return check_url(path.read_text().strip())
    return None


def holds_relay(data: Path) -> bool:
    data = Path(data)
    return (data / DB_NAME).exists() or (data / URL_FILE).exists()


def open_store(data: Path, database: str | None = None) -> Store:
    """The relay database of ``data`` (or ``database``), checked to be of the current schema.

    Raises:
        ConfigError: no relay there, another schema (older: run ``hbw-relay migrate``), not a relay.
        StorageError: the disk or the PostgreSQL server cannot be used now.
    """
    url = database_url(data, database)
    if url is None:
        from .sqlite import SqliteStore

        return SqliteStore(Path(data))
    from .postgres import PgStore

    return PgStore(url)


def create(data: Path, database: str | None = None) -> None:
    """The empty schema for a new relay: ``relay.db`` in ``data``, or the tables in PostgreSQL (and
    ``data/database.url`` to find them again)."""
    data = Path(data)
    if database is None:
        from . import sqlite

        sqlite.create(data)
        return
    from . import postgres

    postgres.create(check_url(database))
    with faults(where=data):
        fd = os.open(data / URL_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fileio.FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(database + "\n")


def migrate(data: Path, database: str | None = None) -> tuple[int, int]:
    """Upgrade the relay database to ``SCHEMA_VERSION``; returns (version found, version now).

    Raises:
        ConfigError: no relay, not a relay database, or a newer schema than this hbw-relay knows.
    """
    url = database_url(data, database)
    if url is None:
        from . import sqlite

        return sqlite.migrate(Path(data) / DB_NAME)
    from . import postgres

    return postgres.migrate(url, Path(data))
