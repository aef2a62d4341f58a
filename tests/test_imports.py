"""Imports go one way around the client's Replica (STYLE.md §3).

The front ends (cli, sync, app, bundles, team...) import ``replica``; ``replica`` imports its
parts (``documents``, ``incoming``, ``changes``, ``versions``, ``ledger``, ``locked``) and they
import ``store`` and ``vault``. No module the replica is built from may import ``replica``, nor a
module that imports it (``device``, ``sync``...), not even for the type checker: that is how a
mixin's ``self`` and a function-level ``from .replica import Replica`` came about. The graph is
read from the source (every ``import``, at module level, in functions, under ``TYPE_CHECKING``),
so a new upward import fails here without running anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "hbw_sync"
REPLICA = "hbw_sync.client.replica"
#: Known upward imports, type-only: docdelta/docsync name ``sync._Session`` in hints. They go
#: when the session gets a Protocol of its own; nothing else may join this list.
ALLOWED = {
    "hbw_sync.client.docdelta": {"hbw_sync.client.sync"},
    "hbw_sync.client.docsync": {"hbw_sync.client.sync"},
}


def _sources() -> dict[str, str]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p.read_text(encoding="utf-8")
    return out


def _is_package(name: str, sources: dict[str, str]) -> bool:
    return any(m.startswith(name + ".") for m in sources)


def graph(sources: dict[str, str]) -> dict[str, dict[str, bool]]:
    """{module: {imported module: True if only for the type checker}} within the package."""
    out: dict[str, dict[str, bool]] = {}
    for name, text in sources.items():
        tree = ast.parse(text)
        package = name if _is_package(name, sources) else name.rpartition(".")[0]
        type_only: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                type_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
        edges: dict[str, bool] = {}
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[:len(up) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                # ``from . import docdelta`` imports the module docdelta, not only the package
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in sources]
                targets = subs or [base]
            for t in targets:
                while t and t not in sources:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges[t] = edges.get(t, True) and id(node) in type_only
        out[name] = edges
    return out


def upward_imports(sources: dict[str, str]) -> list[str]:
    """Imports, from a module the replica is built from, of ``replica`` or of a module importing it."""
    g = graph(sources)
    above = {REPLICA} | {m for m, edges in g.items() if REPLICA in edges}
    below: set[str] = set()
    todo = [REPLICA]
    while todo:  # what replica needs to run: its run-time imports, followed down
        for dep, type_only in g[todo.pop()].items():
            if not type_only and dep not in below:
                below.add(dep)
                todo.append(dep)
    return sorted(f"{m} imports {dep}" for m in below for dep in g[m]
                  if dep in above and dep not in ALLOWED.get(m, set()))


def test_nothing_the_replica_is_built_from_imports_it() -> None:
    assert upward_imports(_sources()) == []


def test_the_parts_are_below_the_replica_and_device_above() -> None:
    g = graph(_sources())
    parts = {"documents", "incoming", "changes", "versions", "ledger", "locked", "store", "vault"}
    assert {f"hbw_sync.client.{p}" for p in parts} <= set(g[REPLICA]) | {
        d for p in ("documents", "incoming", "changes") for d in g[f"hbw_sync.client.{p}"]}
    assert g["hbw_sync.client.device"][REPLICA] is False  # device builds a Replica: it sits above it
    for front in ("cli", "sync", "team", "workload"):
        assert REPLICA in g[f"hbw_sync.client.{front}"]


def test_a_new_upward_import_is_caught_even_for_the_type_checker() -> None:
    """The check is not vacuous: the hint a mixin needed (documents.py naming Replica) fails it."""
    sources = _sources()
    sources["hbw_sync.client.documents"] += "\nif TYPE_CHECKING:\n    from .replica import Replica\n"
    sources["hbw_sync.client.ledger"] += "\ndef _f():\n    from .device import Device\n"
    found = upward_imports(sources)
    assert {"hbw_sync.client.documents imports hbw_sync.client.replica",
            "hbw_sync.client.ledger imports hbw_sync.client.device"} <= set(found), found


def test_the_replica_is_composed_not_mixed() -> None:
    from hbw_sync.client.documents import Documents
    from hbw_sync.client.incoming import Incoming
    from hbw_sync.client.locked import LockedDevice
    from hbw_sync.client.replica import Replica

    assert Replica.__bases__ == (LockedDevice,)
    assert Documents.__bases__ == (object,) and Incoming.__bases__ == (object,)
