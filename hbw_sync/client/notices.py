"""Notices, problems and conflicts kept as ``(code, params)``; rendered in the language of the moment shown.

Why: a notice written on Monday in English must read in French on Tuesday when the person's language
is French (and the other way round). So a row keeps the code and its params (JSON) beside an English
sentence (logs, ``--json``, and what a store of schema 1 holds), and ``shown`` renders it when it is
read, through the one table of words (``hbw_sync/messages.py``). Rows from schema 1 have no code:
their sentence is shown as it was stored.

Params are short values (names, short ids, counts). Two conventions:

* a value in ``WORDS`` (``"@relay"``, ``"@colleague"``, ``"@nobody"``) is a word, translated when shown
  (member names never start with ``@``);
* ``why_code`` + ``why`` describe an error inside the notice: with ``why_table`` (the error's words
  come from the table, as ``messages.words`` decides) ``why`` is shown as that code's words when the
  table has them without params, else as the message kept.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from .. import messages
from ..errors import HbwError, clean_params
from ..i18n import N_, _
from .store import Store

#: Words a param may stand for, translated when shown.
WORDS: dict[str, str] = {
    "@relay": N_("rebalancing at the office"),
    "@colleague": N_("a colleague"),
    "@nobody": N_("nobody"),
}


def why_params(e: HbwError) -> dict[str, str | int]:
    """The params that describe an error inside a notice: its code, its message, and whether its words
    come from the table (an error from the relay or raised with params, as ``messages.words`` decides)."""
    out: dict[str, str | int] = {"why_code": e.code, "why": e.message}
    if e.from_peer or e.params is not None:
        out["why_table"] = 1
    return out


def pack(params: Mapping[str, Any] | None) -> str | None:
    return None if params is None else json.dumps(clean_params(dict(params)), ensure_ascii=False)


def shown(code: str | None, params: str | None, text: str) -> str:
    """The words of a stored row now: its code's template filled from its params, else ``text``."""
    if not code or params is None:
        return text
    try:
        values = clean_params(json.loads(params))
    except ValueError:
        return text
    for k, v in list(values.items()):
        if isinstance(v, str) and v in WORDS:
            values[k] = _(WORDS[v])
    why_code = values.get("why_code")
    if isinstance(why_code, str) and values.get("why_table") == 1:
        fallback = str(values.get("why", ""))
        template = messages.MESSAGES.get(why_code)
        values["why"] = messages.render(why_code, {}, fallback) if template and not messages.fields(template) \
            else fallback
    return messages.render(code, values, text)


def add_notice(store: Store, text: str, *, code: str, params: Mapping[str, Any], when_ms: int) -> None:
    """One notice for the person (inside the caller's transaction)."""
    store.execute("INSERT INTO notices (created_ms, text, seen, code, params) VALUES (?, ?, 0, ?, ?)",
                  (when_ms, text, code, pack(params)))


def add_log(store: Store, started_ms: int, finished_ms: int, ok: bool, how: str, detail: str,
            code: str | None = None, params: Mapping[str, Any] | None = None) -> None:
    """One sync-log row; ``code``/``params`` let ``status`` word ``detail`` in the language of the moment."""
    store.execute("INSERT INTO sync_log (started_ms, finished_ms, ok, how, detail, code, params)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?)", (started_ms, finished_ms, int(ok), how, detail, code, pack(params)))


def error_row(e: BaseException | str | None) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """(English detail, code, params) to log an error: params only when the error asks for its words
    (from the relay, or raised with params); a message worded at the raise site is kept as it is."""
    if e is None or isinstance(e, str):
        return e, None, None
    if isinstance(e, HbwError):
        wants = e.from_peer or e.params is not None
        return str(e), e.code, (dict(e.params or {}) if wants else None)
    return str(e), None, None
