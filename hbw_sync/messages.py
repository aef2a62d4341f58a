"""The words for each error ``code``: one table, rendered in the person's language when shown.

Why a table: an error's ``message`` is English (logs, the wire, ``--json``) and was often written
far from the person reading it: by the relay, or by a core module that knows no language. The stable
``code`` (``errors.py``) is the key; ``params`` (names → short values) fill the template; a front end
calls ``words(e, hints)`` at display time, so the text follows the language of the moment, not the
language of the moment the error (or a stored notice) was made.

Which text is shown (``words``):

- an error from the relay (``from_peer``) or raised with ``params`` (even ``{}``) → the code's
  template here, when every name it uses is in ``params``; otherwise the error's own ``message``;
- an error raised by a module without gettext (the core), shown in another language than English →
  the code's template too (``_english_core``);
- any other error → its ``message``: client code already words those in the person's language at
  the raise site (``_("...")``).

A ``code`` may be refined by a ``case`` param (``access.invite`` + ``case=expired`` →
``access.invite/expired``) when one code covers several situations a person must tell apart.

Hints that name a command belong to the front end that has the command: ``words`` takes that front
end's table (``client/cli_hints.py`` for ``hbw-sync``, ``client/app/hints.py`` for the app); the
``HINTS`` here name no command and serve every front end. Sans-IO: this module reads no clock, file
or environment; ``tests/test_messages.py`` fails when a code raised in ``hbw_sync/`` has no entry.
"""
from __future__ import annotations

import string
from typing import Any, Mapping

from .i18n import N_, N_plural, _, ngettext, speaks_english

#: code (or ``code/case``) → template, English msgid with ``{named}`` params; a (singular, plural)
#: pair is chosen by the count in param ``n``.
MESSAGES: dict[str, str | tuple[str, str]] = {
    # -- the error classes' own codes: what a bare error of that class means -------------------------
    "error": N_("something went wrong: {message}"),
    "internal": N_("the relay met an internal error; office IT finds the details in its log"),
    "usage": N_("the request was refused: {message}"),
    "config": N_("hbw-sync is not set up for this: {message}"),
    "store": N_("the local store could not be used: {message}"),
    "protocol": N_("a message was not valid, so nothing of it was used"),
    "integrity": N_("a check failed: the data was altered, damaged or sealed with another key; "
                    "nothing of it was used"),
    "access": N_("this is not allowed"),
    "transient": N_("the relay could not be used just now; try again later"),
    # -- access ---------------------------------------------------------------------------------------
    "access.wrong_key": N_("the passphrase or the key is wrong"),
    "access.revoked": N_("this device was revoked by the office; it can no longer sync"),
    "access.unknown_team": N_("this relay serves no such team: the relay address in the invite is wrong, or "
                              "the team was removed"),
    "access.clock": N_("this computer's clock is too far from the relay's"),
    "access.code": N_("the word code was not accepted"),
    "access.code/no_invite": N_("no invite waits under code {slot}: it was used, it expired, or the "
                                "number is wrong"),
    "access.code/words": N_("the words do not match code {slot} ({left} tries left)"),
    "access.code/cancelled": N_("the words do not match code {slot}; the code is now cancelled"),
    "access.epoch": N_("this change was refused: only the relay may send unsealed changes"),
    "access.invite": N_("this invite cannot be used"),
    "access.invite/other_relay": N_("this invite is not valid for this relay"),
    "access.invite/used": N_("this invite was already used; ask for a new one"),
    "access.invite/expired": N_("this invite has expired; ask for a new one"),
    "access.invite/enrolled": N_("this device is already enrolled"),
    "access.not_author": N_("only the author (or a supervisor) may do this"),
    "access.old_bundle": N_("this bundle is older than one the office already took in: nothing changed"),
    "access.replay": N_("this request was already received once; it was ignored"),
    "access.role": N_("only a supervisor's device may do this"),
    "access.unknown_device": N_("this device is not enrolled in the team"),
    "access.not_joined": N_("this device has not joined a relay"),
    # -- config ---------------------------------------------------------------------------------------
    "config.not_joined": N_("this device has not joined a relay"),
    "config.no_store": N_("there is no hbw-sync store here yet"),
    "config.no_team": N_("this device belongs to no team yet"),
    # -- integrity ------------------------------------------------------------------------------------
    "integrity.aead": N_("something sealed does not open: it was altered, or sealed with another team key"),
    "integrity.bundle": N_("this reply answers a bundle this device never exported"),
    "integrity.body": N_("a bundle's contents are not the ones its sender signed; it was not used"),
    "integrity.chain": N_("a document version cannot be rebuilt here (a part of its history is missing)"),
    "integrity.chunk": N_("a part of a document does not match its id; it was not used"),
    "integrity.code": N_("the invite this relay holds for the code does not open with these words: it is "
                         "not the office's relay, or the code was mistyped"),
    "integrity.coverage": N_("a snapshot of the team's history does not match what it claims; it was not used"),
    "integrity.delta": N_("a document rebuilt from a change does not match its hash; it was not used"),
    "integrity.device": N_("changes came from a device that no supervisor of this team approved; they "
                           "were not used"),
    "integrity.doc": N_("a document does not match its recorded hash; it was not used"),
    "integrity.epoch": N_("only the relay may send unsealed changes; this one was refused"),
    "integrity.grant": N_("a team key grant does not match its key id; it was not used"),
    "integrity.receipts": N_("the relay's receipts do not match the relay's signature"),
    "integrity.recipient": N_("this bundle is addressed to another device"),
    "integrity.relay_key": N_("the file's receipts are signed by another relay key than the one given"),
    "integrity.relay_scope": N_("a change signed by the relay touches more than a task's assignee; refused"),
    "integrity.sha256": N_("the bytes of a large transfer did not match the hash vouched for them; they were "
                           "dropped and are sent again"),
    "integrity.signature": N_("a signature does not match its author's key: the data was altered or forged"),
    "integrity.store": N_("a record in the local store does not decrypt: the file was altered or damaged"),
    "integrity.team": N_("this belongs to another team"),
    "integrity.tls": N_("the relay's TLS certificate is not trusted: this may not be your office's relay"),
    # -- protocol -------------------------------------------------------------------------------------
    "protocol.action": N_("the relay does not know this request (is it an older version?)"),
    "protocol.answer_size": N_("the relay's answer is longer than hbw-sync reads; nothing of it was used"),
    "protocol.bomb": N_("a message would unpack to more than the size limit; it was refused"),
    "protocol.bundle": N_("this bundle carries no valid sync request"),
    "protocol.bundle_type": N_("this bundle goes the other way (a request where a reply was expected, or back)"),
    "protocol.chunk": N_("a part of a document is malformed; it was not used"),
    "protocol.delta": N_("a document change is malformed; it was not used"),
    "protocol.download": N_("the relay sent a malformed piece"),
    "protocol.encoding": N_("compressed requests are not accepted; nothing was read"),
    "protocol.http": N_("the relay answered {status} {reason}"),
    "protocol.length": N_("a transfer came without its length; nothing of it was read"),
    "protocol.limit": N_("this is over a size limit; it was refused whole and nothing changed"),
    "protocol.upload": N_("the relay answered an upload in a way this device does not understand"),
    "protocol.version": N_("this uses a format version this hbw-sync does not know"),
    "protocol.magic": N_("this is not an hbw-sync file or message"),
    "protocol.manifest": N_("a document's list of parts is malformed; it was not used"),
    "protocol.msgpack": N_("a message is malformed; it was not used"),
    "protocol.order": N_("a message is out of order; it was not used"),
    "protocol.quota": N_("the team's documents at the relay would go over its quota; nothing of this was kept"),
    "protocol.replay": N_("the relay's answer does not belong to this request"),
    "protocol.schema": N_("a message is malformed; it was not used"),
    "protocol.seq_reuse": N_("a batch number was already used with other content; it was refused"),
    "protocol.trailing": N_("there are unexpected bytes after the end of a message; it was not used"),
    "protocol.truncated": N_("this is incomplete (cut off during a download or copy?); it was not used"),
    "protocol.type": N_("a message has a value of the wrong type; it was not used"),
    "protocol.zstd": N_("compressed data is damaged; it was not used"),
    # -- store ----------------------------------------------------------------------------------------
    "store.io": N_("the relay's disk reported an error, so it could not finish this sync"),
    "store.disk_full": N_("the relay's disk is full, so it could not finish this sync"),
    "store.read_only": N_("the relay's disk is read-only, so it could not finish this sync"),
    "store.busy": N_("the relay's database is busy, so it could not finish this sync"),
    "store.corrupt": N_("the relay's database is damaged, so it could not finish this sync"),
    # -- transient ------------------------------------------------------------------------------------
    "transient.busy": N_("the relay is receiving too much at once; nothing was stored"),
    "transient.code_rate": N_("too many wrong word codes were tried recently; the relay is not answering "
                              "codes for a few minutes"),
    "transient.deadline": N_("the sync's deadline passed"),
    "transient.locked": N_("another sync of this store is running"),
    "transient.no_progress": N_("the relay could not be reached"),
    "transient.no_progress/dropped": N_plural(
        "The link to {where} dropped after {went} of {total}, and {n} try since moved nothing; {left} is left.",
        "The link to {where} dropped after {went} of {total}, and {n} tries since moved nothing; {left} is left."),
    "transient.no_progress/unreachable": N_plural("Could not reach {where} ({n} try in {spent}).",
                                                  "Could not reach {where} ({n} tries in {spent})."),
    "transient.slow_body": N_("the request arrived too slowly; the relay stopped waiting and stored nothing of it"),
    "transient.stopped": N_("the sync was stopped before it finished"),
    "transient.upload": N_("the relay did not take this device's upload; try again later"),
    "transient.unreachable": N_("could not reach the relay at {url}"),
    # -- usage ----------------------------------------------------------------------------------------
    "usage.admin_bind": N_("the office page listens on this computer only (127.0.0.1)"),
    "usage.asset_exists": N_("asset tag {tag} is already in the register"),
    "usage.asset_lent": N_("asset {tag} is lent to {holder}; record its return first"),
    "usage.asset_lost": N_("asset {tag} is marked lost"),
    "usage.asset_not_lent": N_("asset {tag} is not lent out; nothing changed"),
    "usage.bad_asset": N_("this is not a valid asset tag"),
    "usage.bundle_too_small": N_("a document does not fit in a bundle of this size: nothing was written"),
    "usage.changed_meanwhile": N_("the passphrase was changed by another command meanwhile; nothing was changed"),
    "usage.code": N_("no device waiting for approval shows this code"),
    "usage.date": N_("this is not a date hbw-sync understands"),
    "usage.deleted": N_("this task was deleted; nothing changed"),
    "usage.doc_base_missing": N_("this version is rebuilt from an earlier version that is not on this device and "
                                 "not at the relay: it cannot be worked out until that version arrives"),
    "usage.doc_not_at_relay": N_("a part of this document is not at the relay yet: its author has not "
                                 "synced since saving it"),
    "usage.doc_not_local": N_("this document is not on this device yet"),
    "usage.doc_too_large": N_("this file is too large to add"),
    "usage.import_bad_rows": N_("some rows are not valid; nothing was imported"),
    "usage.key": N_("this is not a valid key"),
    "usage.max_size": N_("this bundle size is too small for a reply"),
    "usage.member": N_("this is not a valid member name"),
    "usage.no_asset": N_("no equipment with asset tag {tag}"),
    "usage.not_found": N_("this was not found at the relay"),
    "usage.not_supervisor": N_("only a supervisor can delete a task; nothing changed"),
    "usage.nothing_to_change": N_("nothing to change"),
    "usage.period": N_("the period ends before it starts"),
    "usage.postgres": N_("this relay keeps its data in PostgreSQL; this copies SQLite files only"),
    "usage.reason_required": N_("this document is confidential: writing it outside hbw-sync needs a reason, "
                                "which is recorded for your supervisor; nothing was written"),
    "usage.reason_too_long": N_("the reason is too long; nothing was written"),
    "usage.rebalance_target": N_("this member cannot receive work now"),
    "usage.same_passphrase": N_("the new passphrase is the same as the old one; nothing was changed"),
    "usage.too_large": N_("the changes in this range are too large for one evidence file"),
    "usage.weak_passphrase": N_("this passphrase cannot be used; nothing was changed"),
    "usage.workers": N_("this number of relay worker processes cannot be used here"),
    "relay.workers_crashed": N_("the relay's worker processes stopped; every worker was stopped"),
    # -- notices, problems and conflicts kept in the store (client/notices.py) ------------------------
    "notice.reassigned": N_("task {task} was reassigned to {to} by {by}; what you wrote on it is kept"),
    "notice.new_task": N_("new task {task} \"{title}\" for you, from {by}"),
    "notice.given": N_("task {task} \"{title}\" was given to you by {by}"),
    "notice.many_given": N_plural("{n} task was given to you: it is in your list of work",
                                  "{n} tasks were given to you: they are in your list of work"),
    "notice.exported": N_("{who} exported confidential document {doc} ({name}) from device {device} at {at}; "
                          "reason: {reason}"),
    "notice.doc_base_missing": N_("document {doc} ({name}): one of its versions cannot be worked out on this device: "
                                  "the earlier version it is rebuilt from is not at the relay any more. The document is "
                                  "readable again from its next version saved in full (every 8th save at the latest)."),
    "notice.doc_refused": N_("document {doc} ({name}): a version that arrived could not be read on this device and "
                             "was refused. Its earlier versions stay readable, and the document is readable again "
                             "from its next version saved in full (every 8th save at the latest). If this happens "
                             "often, tell the office: a device of the team may run another hbw-sync."),
    "notice.snapshot_refused": N_("Refused a summary of the team's history from {who}'s device: {why}. This device "
                                  "fetches the full history instead; nothing will be missing, it only takes longer."),
    "problem.doc_base_missing": N_("document {doc}: a version's base is missing; it will be readable after the "
                                   "next full version"),
    "problem.doc_refused": N_("document {doc}: a version does not rebuild to its recorded hash and was refused "
                              "({why}); it will be readable after the next full version"),
    "problem.dropped_batch": N_("dropped batch {rseq} from device {device}: {why}"),
    "problem.grant_refused": N_("refused a key grant for epoch {epoch}: {why}"),
    "problem.grant_not_team": N_("refused a key grant for epoch {epoch}: it is not the team's key"),
    "problem.snapshot_dropped": N_("dropped a snapshot from device {device}: {why}"),
    "problem.reads_malformed": N_("the relay's list of what each device reads was malformed and was not used; "
                                  "documents keep travelling in the form every device reads"),
    "problem.welcome_refused": N_("refused a welcome that was not made with this device's secret: {why}"),
    "conflict.doc": N_("document {doc}: {loser} and {winner} saved versions at the same time; {winner}'s is "
                       "current, {loser}'s is kept as a conflict copy in the list of documents"),
    "conflict.field": N_("{field} {lost} by {loser} lost to {won} by {winner}"),
    "conflict.field/versions": N_("{field} {lost} by {loser} lost to {won} by {winner}: both versions kept: the "
                                  "later is current, the other is a conflict copy"),
    "conflict.field/done_stays": N_("{field} {lost} by {loser} lost to {won} by {winner}: a task marked done "
                                    "stays done"),
    "conflict.field/supervisor": N_("{field} {lost} by {loser} lost to {won} by {winner}: a supervisor's change "
                                    "beats a member's"),
    "conflict.field/person": N_("{field} {lost} by {loser} lost to {won} by {winner}: a person's change beats "
                                "automatic rebalancing"),
    "conflict.field/role": N_("{field} {lost} by {loser} lost to {won} by {winner}: higher role wins"),
    "conflict.field/later": N_("{field} {lost} by {loser} lost to {won} by {winner}: the later change wins "
                               "(same role)"),
}

#: code → what to do, naming no command (any front end may show it).
HINTS: dict[str, str] = {
    "access.revoked": N_("ask office IT to enroll this device again if it was found"),
    "access.clock": N_("set this computer's clock (date and time zone) and retry"),
    "access.code": N_("check the words with office IT, or ask for a new code"),
    "access.invite": N_("ask your supervisor or office IT for a new invite"),
    "access.unknown_device": N_("this device must join the team with an invite first"),
    "protocol.version": N_("upgrade hbw-sync"),
    "protocol.quota": N_("ask office IT to make room at the relay, then try again"),
    "store.io": N_("nothing was lost: your changes stay queued on this device and go out at a later sync; "
                   "if this lasts, tell office IT"),
    "store.disk_full": N_("nothing was lost: your changes stay queued on this device and go out at a later "
                          "sync; if this lasts, tell office IT"),
    "store.read_only": N_("nothing was lost: your changes stay queued on this device and go out at a later "
                          "sync; if this lasts, tell office IT"),
    "store.corrupt": N_("nothing was lost: your changes stay queued on this device and go out at a later "
                        "sync; if this lasts, tell office IT"),
    "store.busy": N_("nothing was lost: sync again in a moment"),
    "transient.busy": N_("nothing was lost: sync again in a moment"),
    "transient.code_rate": N_("try again in 10 minutes, or use the full invite"),
    "transient.slow_body": N_("nothing was lost: sync again when the link is better"),
    "integrity.tls": N_("ask office IT whether the relay's certificate changed"),
}

_NO_PARAMS: Mapping[str, Any] = {}


def template_key(code: str, params: Mapping[str, Any] | None) -> str:
    """The table key for a code and its params: ``code/case`` when that refinement exists."""
    case = (params or _NO_PARAMS).get("case")
    if isinstance(case, str) and f"{code}/{case}" in MESSAGES:
        return f"{code}/{case}"
    return code


def fields(template: str | tuple[str, str]) -> set[str]:
    """The names a template uses (``{url}`` → ``url``); a plural pair also needs its count ``n``."""
    if isinstance(template, tuple):
        return fields(template[0]) | fields(template[1]) | {"n"}
    return {f for _t, f, _s, _c in string.Formatter().parse(template) if f}


def _say(template: str | tuple[str, str], values: Mapping[str, Any]) -> str:
    if isinstance(template, tuple):
        n = values.get("n")
        return ngettext(template[0], template[1], n if isinstance(n, int) else 2).format(**values)
    return _(template).format(**values)


def render(code: str, params: Mapping[str, Any] | None, fallback: str) -> str:
    """The words for ``(code, params)`` in the current language; ``fallback`` when the table has
    none for the code or a name the template uses is missing (a stored notice from an older version,
    a peer that sent fewer params)."""
    values = dict(params or _NO_PARAMS)
    values.setdefault("message", fallback)
    template = MESSAGES.get(template_key(code, params))
    if template is None or not fields(template) <= set(values):
        return fallback
    try:
        return _say(template, values)
    except (KeyError, IndexError, ValueError, AttributeError):  # a catalog with a bad placeholder
        return fallback


def _hint_from(table: Mapping[str, str], code: str, params: Mapping[str, Any] | None) -> str | None:
    template = table.get(template_key(code, params)) or table.get(code)
    if template is None:
        return None
    values = dict(params or _NO_PARAMS)
    if not fields(template) <= set(values):
        return None
    try:
        return _(template).format(**values)
    except (KeyError, IndexError, ValueError, AttributeError):
        return None


def _english_core(e: Any) -> bool:
    """An error raised by a module without gettext (the sans-IO core: bundle, batch, codec, crypto...)
    has an English message; a person reading another language gets its code's words instead.

    Why look at the raise site: the core knows no language by design, and converting each of its
    hundred raise sites to params would change nothing for an English reader, who keeps the core's
    own, more precise sentence.
    """
    if speaks_english():
        return False
    tb = getattr(e, "__traceback__", None)
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    g = tb.tb_frame.f_globals
    return str(g.get("__name__", "")).startswith("hbw_sync") and g.get("_") is not _


def words(e: Any, hints: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """(message, hint) of an ``HbwError`` for a person, in the current language.

    ``hints`` is the front end's own table (code → hint naming its commands). A relay's hint is
    English and names the relay's side: it is replaced by a table hint when there is one.
    """
    code = str(getattr(e, "code", "error"))
    params = getattr(e, "params", None)
    peer = bool(getattr(e, "from_peer", False))
    message = str(getattr(e, "message", e))
    hint = getattr(e, "hint", None)
    text = render(code, params, message) if (peer or params is not None or _english_core(e)) else message
    # A hint given (or changed) on this device first: it says what the error means here. Then the
    # front end's own (it may name its commands), a neutral one, and last the peer's English.
    ours = hint if not peer or hint != getattr(e, "peer_hint", None) else None
    for choice in (ours, _hint_from(hints or _NO_PARAMS, code, params), _hint_from(HINTS, code, params), hint):
        if choice:
            return text, choice
    return text, None
