"""The relay's storage seam: what every backend (SQLite, PostgreSQL) offers the relay.

Why this shape. The relay's decisions (signatures, freshness, budgets, who may
do what) live in ``relay``, ``admission``, ``board``, ``receipts`` and
``equipment``; each of those modules owns its queries, written once in the
*portable subset* of SQL below, and runs them on a ``Txn``. A backend owns
everything that differs between databases: the schema (DDL and types),
connections, how a transaction is run and serialised, placeholders, and
turning driver faults into ``StorageError``. So a PostgreSQL relay runs the
same code path, statement for statement, as the SQLite one, and the same test
suite proves both (``tests/conftest.py``, fixture ``backend``).

The portable subset (checked by ``tests/test_storage.py``):
- ``?`` placeholders; no ``%`` outside parameters.
- ``INSERT ... ON CONFLICT (cols) DO NOTHING | DO UPDATE SET c = excluded.c``
  (never ``INSERT OR ...``); ``RETURNING`` where an id is needed.
- blobs are parameters (no ``x''`` literals); ``length()`` and ``substr()`` on
  blobs; no ``hex()``, ``PRAGMA``, ``sqlite_master`` or boolean arithmetic
  (``SUM(x IS NULL)``: write ``CASE WHEN``).
- the column ``"offset"`` is quoted (a reserved word in PostgreSQL).
- ``SAVEPOINT n`` / ``ROLLBACK TO SAVEPOINT n`` / ``RELEASE SAVEPOINT n``.

Transaction rules (as taskchampion-sync-server's ``Storage`` trait states
its own): every function handed to ``run``/``call``/``transact`` runs inside
one transaction that commits before its result is returned, or rolls back
whole if it raises. Transactions of one relay's team are serialised: SQLite by
its single writer thread, PostgreSQL by a per-team advisory lock taken first
in each transaction. So ``rseq`` (MAX + 1 under that lock) has no gaps or
duplicates and commits in its own order, nonces and (device, seq) stay unique,
and a reader that saw rseq N has seen every rseq below it.

Team keying. ``equipment`` and ``chunks`` carry ``team`` in their key. The other
tables are keyed per relay (one team per data directory or PostgreSQL schema, the
team id in ``meta``): the sharding unit is the schema (README, "Sharding by
team": Citus schema-based sharding); adding ``team`` to every key is needed
only when several teams share one schema.

Schema history: 1 (first release), 2 (every table made at init; ``chunk_refs``),
3 (``chunks``: the document-chunk index, and on PostgreSQL the bytes too).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterator, Protocol, Sequence

from ...errors import StorageError

#: The schema this hbw-relay writes; ``migrate`` brings older ones up to it.
SCHEMA_VERSION = 4


class Cursor(Protocol):
    """What a statement returns: rows as tuples."""

    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Txn(Protocol):
    """One open transaction. ``sqlite3.Connection`` satisfies it as it is (no wrapper on the hot path)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


TxnFn = Callable[..., Any]  # fn(txn, *args) -> result


class Runner(Protocol):
    """How the server runs request transactions (the SQLite writer thread, or a PostgreSQL pool)."""

    commits: int
    #: The storage fault of the last failed transaction, None once one commits (for /healthz).
    fault: StorageError | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def run(self, fn: TxnFn, *args: Any) -> Awaitable[Any]: ...

    def call(self, fn: TxnFn, *args: Any) -> Any: ...


class Store(Protocol):
    """An opened relay database of the current schema."""

    #: "sqlite" or "postgres": for words and for the few things only one backend has (file backups).
    kind: str

    def transact(self, fn: TxnFn, *args: Any) -> Any:
        """Run ``fn(txn, *args)`` in one write transaction now, in this thread (admin commands)."""
        ...

    def read(self, fn: TxnFn, *args: Any) -> Any:
        """Run ``fn(txn, *args)`` for reading (no write lock taken)."""
        ...

    def runner(self) -> Runner:
        """A new, unstarted runner for the server."""
        ...

    def close(self) -> None: ...
