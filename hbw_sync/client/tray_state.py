"""What the tray shows, decided without I/O: device status + watch events -> icon, tooltip, menu, notifications.

Why a pure function: the tray's look is where a person who never opens a terminal learns whether
their work went out. Every rule about it (what "needs attention" means, which notification fires
once and which never) lives here and is tested directly; ``tray.py`` only feeds it what
``Device.status()`` and the watch loop report, and hands the result to pystray.

States, strongest first: syncing, needs attention (a key wait, an unseen conflict, a refused
batch, a failed or refused sync, a notification this desktop could not show), paused, offline (the relay cannot be reached), N waiting
(changes in the outbox), all sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from ..i18n import _, ngettext


class TrayState(enum.Enum):
    ALL_SENT = "all_sent"
    WAITING = "waiting"
    SYNCING = "syncing"
    ATTENTION = "attention"
    OFFLINE = "offline"
    PAUSED = "paused"


class Menu(enum.Enum):
    SYNC_NOW = "sync_now"
    OPEN_APP = "open_app"
    EXPORT = "export"
    IMPORT = "import"
    PAUSE = "pause"
    QUIT = "quit"


@dataclass(frozen=True)
class Observation:
    """One look at the device: ``status`` is ``Device.status()``; the rest comes from the watch loop."""

    status: dict[str, Any]
    syncing: bool = False
    reachable: bool | None = None  # None: not probed yet
    paused: bool = False
    error: str | None = None  # the last sync's failure in words, cleared by a sync that worked
    stopped: str | None = None  # the watch loop ended for good (revoked, refused): why
    unshown: tuple[str, ...] = ()  # notifications no desktop service could show, since the app was last opened


@dataclass(frozen=True)
class Notification:
    """A desktop notification; ``key`` makes it fire once per tray run."""

    key: str
    title: str
    body: str


@dataclass(frozen=True)
class TrayView:
    state: TrayState
    waiting: int  # changes not yet sent
    tooltip: str
    enabled: dict[Menu, bool]
    pause_label: str


@dataclass(frozen=True)
class Memory:
    """What was already notified in this run (keys), so a notification never repeats."""

    notified: frozenset[str] = field(default_factory=frozenset)


def _attention(obs: Observation) -> str | None:
    """Why a person must look, in words; None when nothing needs them."""
    s = obs.status
    if obs.stopped:
        return obs.stopped
    for w in s.get("key_flow") or []:
        if w.get("waits_for") == "approval":
            return _("this device waits for a supervisor's approval (code {code})").format(code=w.get("code", "?"))
        if w.get("waits_for") == "unlock":
            return _("the team key has arrived: open hbw-sync to unlock it")
        if w.get("waits_for") == "your approval":
            return _("a device waits for your approval")
    if s.get("conflicts"):
        n = int(s["conflicts"])
        return ngettext("{n} conflict settled: see what was kept", "{n} conflicts settled: see what was kept",
                        n).format(n=n)
    if s.get("rejected_batches"):
        return _("the relay refused some changes: open hbw-sync to see why")
    if s.get("last_sync_wrong_passphrase"):
        return _("the saved passphrase does not open this device")
    if obs.error:
        return _("the last sync failed: {why}").format(why=obs.error)
    if obs.unshown:  # this desktop shows no notifications: the tray itself carries the news
        n = len(obs.unshown)
        return ngettext("{last} (open hbw-sync to see it again)",
                        "{n} messages for you, the last: {last} (open hbw-sync to see them)", n).format(
                            n=n, last=obs.unshown[-1])
    return None


def view(obs: Observation) -> TrayView:
    """The icon's state, its tooltip and which menu items can be used now."""
    waiting = int((obs.status.get("outbox") or {}).get("changes") or 0) + int(obs.status.get("waiting_for_team_key") or 0)
    why = _attention(obs)
    if obs.syncing:
        state, tip = TrayState.SYNCING, _("Syncing…")
    elif why:
        state, tip = TrayState.ATTENTION, _("Needs attention: {why}").format(why=why)
    elif obs.paused:
        state, tip = TrayState.PAUSED, _("Paused: nothing is sent until you resume")
    elif obs.reachable is False:
        state = TrayState.OFFLINE
        tip = (ngettext("Offline: {n} change waits for the office relay", "Offline: {n} changes wait for the office "
                        "relay", waiting).format(n=waiting) if waiting else _("Offline: everything was sent before"))
    elif waiting:
        state, tip = TrayState.WAITING, ngettext("{n} change waiting to be sent", "{n} changes waiting to be sent",
                                                 waiting).format(n=waiting)
    else:
        state, tip = TrayState.ALL_SENT, _("All sent")
    enabled = {
        Menu.SYNC_NOW: not obs.syncing and not obs.paused and obs.stopped is None,
        Menu.OPEN_APP: True,
        Menu.EXPORT: not obs.syncing,
        Menu.IMPORT: not obs.syncing,
        Menu.PAUSE: obs.stopped is None,
        Menu.QUIT: True,
    }
    return TrayView(state, waiting, "hbw-sync: " + tip, enabled, _("Resume") if obs.paused else _("Pause"))


def notifications(obs: Observation, memory: Memory) -> tuple[list[Notification], Memory]:
    """New things a person should hear about now: a task moved to them, a conflict settled, a device to approve.

    Each has a key from what it is about (the task, the device, the conflict count) so that the next
    look at the same status says nothing again.
    """
    s = obs.status
    out: list[Notification] = []
    received = s.get("received") or {}
    for t in received.get("to_me") or []:
        out.append(Notification(f"to_me:{t.get('task')}", _("Task moved to you"),
                                _("Task {task} is yours now, from {by}.").format(task=t.get("task"), by=t.get("by"))))
    for text in s.get("notices") or []:
        out.append(Notification(f"notice:{text}", _("hbw-sync"), str(text)))
    n_conflicts = int(s.get("conflicts") or 0)
    details = s.get("conflict_details") or []
    if n_conflicts:
        out.append(Notification(f"conflicts:{n_conflicts}:{details[-1] if details else ''}", _("Conflict settled"),
                                str(details[-1]) if details else ngettext(
                                    "{n} conflict was settled; nothing was lost.",
                                    "{n} conflicts were settled; nothing was lost.", n_conflicts).format(n=n_conflicts)))
    for c in received.get("conflicts") or []:
        out.append(Notification(f"conflict:{c.get('task')}:{c.get('field')}", _("Conflict settled"),
                                _("Task {task}: {field} is {kept} (by {kept_by}).").format(
                                    task=c.get("task"), field=c.get("field"), kept=c.get("kept"),
                                    kept_by=c.get("kept_by"))))
    for w in s.get("key_flow") or []:
        if w.get("waits_for") == "your approval":
            out.append(Notification(f"approve:{w.get('device')}", _("A device waits for approval"),
                                    _("{member}'s device '{label}' waits for your approval.").format(
                                        member=w.get("member"), label=w.get("label"))))
    fresh = [n for n in out if n.key not in memory.notified]
    return fresh, replace(memory, notified=memory.notified | {n.key for n in fresh})


def step(obs: Observation, memory: Memory) -> tuple[TrayView, list[Notification], Memory]:
    """The tray's whole decision for one observation."""
    fresh, memory = notifications(obs, memory)
    return view(obs), fresh, memory
