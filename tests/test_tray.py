"""The tray: its decisions tested directly (tray_state), its icons drawn, and the real thing run headless.

The headless test uses pystray's dummy backend (what ``PYSTRAY_BACKEND=dummy`` selects: the
backend-free ``pystray._base.Icon``), completed with a display that records what it is told to
show. Everything behind it is real: the watch loop, a relay on a loopback port, SQLite stores.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image

os.environ["PYSTRAY_BACKEND"] = "dummy"  # before pystray is imported: no display is needed or touched
from pystray import _base as pystray_dummy  # noqa: E402

from hbw_sync import i18n  # noqa: E402
from hbw_sync.client import tray_icon  # noqa: E402
from hbw_sync.client.tray import Tray  # noqa: E402
from hbw_sync.client.tray_state import Memory, Menu, Observation, TrayState, step, view  # noqa: E402
from relay_helpers import Team, set_relay_url  # noqa: E402

IDLE: dict[str, Any] = {"outbox": {"batches": 0, "changes": 0, "bytes": 0}, "conflicts": 0, "conflict_details": [],
                        "notices": [], "rejected_batches": 0, "waiting_for_team_key": 0, "key_flow": [],
                        "received": None, "last_sync_wrong_passphrase": False}


def status(**kw: Any) -> dict[str, Any]:
    return {**IDLE, **kw}


WAITING = status(outbox={"batches": 1, "changes": 3, "bytes": 900})


# -- the decisions ------------------------------------------------------------------------------------


def test_states_from_strongest_to_weakest() -> None:
    assert view(Observation(IDLE)).state is TrayState.ALL_SENT
    assert view(Observation(WAITING)).state is TrayState.WAITING
    assert view(Observation(WAITING, reachable=False)).state is TrayState.OFFLINE
    assert view(Observation(WAITING, reachable=False, paused=True)).state is TrayState.PAUSED
    assert view(Observation(WAITING, error="the link dropped")).state is TrayState.ATTENTION
    assert view(Observation(status(conflicts=1, conflict_details=["x"]))).state is TrayState.ATTENTION
    assert view(Observation(WAITING, syncing=True, error="x")).state is TrayState.SYNCING


def test_tooltip_says_what_waits_in_words() -> None:
    assert view(Observation(WAITING)).tooltip == "hbw-sync: 3 changes waiting to be sent"
    assert view(Observation(status(outbox={"batches": 1, "changes": 1, "bytes": 9}))).tooltip == \
        "hbw-sync: 1 change waiting to be sent"
    assert view(Observation(IDLE)).tooltip == "hbw-sync: All sent"
    assert "Offline: 3 changes wait" in view(Observation(WAITING, reachable=False)).tooltip
    key_wait = status(key_flow=[{"waits_for": "approval", "code": "12345 67890"}])
    assert "supervisor's approval (code 12345 67890)" in view(Observation(key_wait)).tooltip
    assert view(Observation(WAITING, error="relay unreachable")).tooltip.endswith("the last sync failed: relay "
                                                                                  "unreachable")


def test_menu_items_enabled_by_state() -> None:
    v = view(Observation(WAITING))
    assert all(v.enabled.values()) and v.pause_label == "Pause"
    v = view(Observation(WAITING, syncing=True))
    assert not v.enabled[Menu.SYNC_NOW] and not v.enabled[Menu.EXPORT] and v.enabled[Menu.QUIT]
    v = view(Observation(WAITING, paused=True))
    assert not v.enabled[Menu.SYNC_NOW] and v.pause_label == "Resume"
    v = view(Observation(IDLE, stopped="this device was revoked"))
    assert v.state is TrayState.ATTENTION and not v.enabled[Menu.SYNC_NOW] and not v.enabled[Menu.PAUSE]
    assert v.enabled[Menu.OPEN_APP]


def test_each_notification_fires_once() -> None:
    s = status(received={"to_me": [{"task": "a1b2c3", "by": "dana"}], "conflicts": []},
               key_flow=[{"waits_for": "your approval", "device": "ab" * 16, "member": "bosco", "label": "desk"}],
               conflicts=1, conflict_details=["task a1b2c3: assignee is chidi (by dana); bosco (by chidi) lost"])
    _v, notes, mem = step(Observation(s), Memory())
    assert [n.title for n in notes] == ["Task moved to you", "Conflict settled", "A device waits for approval"]
    assert "a1b2c3 is yours now, from dana" in notes[0].body
    assert "bosco's device 'desk'" in notes[2].body
    _v, again, mem = step(Observation(s), mem)
    assert again == []
    s2 = {**s, "received": {"to_me": [{"task": "a1b2c3", "by": "dana"}, {"task": "ffeedd", "by": "dana"}]}}
    _v, more, _mem = step(Observation(s2), mem)
    assert [n.key for n in more] == ["to_me:ffeedd"]


def test_tray_words_are_french_when_asked() -> None:
    i18n.set_language("fr")
    try:
        assert view(Observation(WAITING)).tooltip == "hbw-sync: 3 modifications en attente d'envoi"
        assert view(Observation(IDLE)).tooltip == "hbw-sync: Tout est envoyé"
    finally:
        i18n.set_language("en")


def test_every_state_has_its_own_icon() -> None:
    images = {s: tray_icon.draw(s, 7).tobytes() for s in TrayState}
    assert len(set(images.values())) == len(TrayState)
    assert tray_icon.draw(TrayState.WAITING, 3).tobytes() != tray_icon.draw(TrayState.WAITING, 42).tobytes()
    big = tray_icon.draw(TrayState.WAITING, 150, size=256)
    assert big.size == (256, 256) and big.mode == "RGBA"


# -- the real tray, headless -------------------------------------------------------------------------


class RecordingDisplay(pystray_dummy.Icon):
    """pystray's dummy backend, with a display that keeps what it was asked to show."""

    HAS_NOTIFICATION = True

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.titles: list[str] = []
        self.images: list[Image.Image] = []
        self.notes: list[tuple[str | None, str]] = []
        self._done = threading.Event()

    def _show(self) -> None: ...
    def _hide(self) -> None: ...
    def _update_icon(self) -> None: self.images.append(self.icon)
    def _update_title(self) -> None: self.titles.append(self.title)
    def _update_menu(self) -> None: ...
    def _notify(self, message: str, title: str | None = None) -> None: self.notes.append((title, message))
    def _remove_notification(self) -> None: ...
    def _stop(self) -> None: self._done.set()

    def _run(self) -> None:
        self._mark_ready()
        self._done.wait()


def wait_for(predicate, what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_headless_tray_goes_from_waiting_to_all_sent_against_a_real_relay(tmp_path: Path) -> None:
    with Team(tmp_path) as team:
        dana, chidi = team.pair()
        with dana.open() as rep:
            rep.add_task("Budget report")
            rep.add_task("Invoices")
        opened: list[list[str]] = []
        # An interval longer than the test: a turn syncs only because changes wait or "Sync now" was asked.
        tray = Tray(dana.home, dana.passphrase, interval=3600, icon_factory=RecordingDisplay, poll_s=0.2,
                    launcher=opened.append)
        assert tray.view.state is TrayState.WAITING and tray.view.tooltip == "hbw-sync: 2 changes waiting to be sent"
        display: RecordingDisplay = tray.icon
        runner = threading.Thread(target=tray.run, daemon=True)
        runner.start()
        try:
            wait_for(lambda: tray.view.state is TrayState.ALL_SENT, "all sent")
            assert display.visible and display.titles[-1] == "hbw-sync: All sent"
            assert display.images[-1].tobytes() == tray_icon.draw(TrayState.ALL_SENT).tobytes()
            with dana.open() as rep:
                assert rep.status()["outbox"]["changes"] == 0

            # Paused, work queued meanwhile waits; resumed, "Sync now" sends it.
            tray.toggle_pause()
            with dana.open() as rep:
                rep.add_task("Payroll")
            assert tray.refresh().state is TrayState.PAUSED and tray.view.waiting == 1
            tray.toggle_pause()
            tray.sync_now()
            wait_for(lambda: tray.view.state is TrayState.ALL_SENT, "all sent after Sync now")

            # A colleague gives Dana a task: her tray syncs it in and tells her, once.
            with chidi.open() as rep:
                task = rep.add_task("Site visit", assignee="dana")
            chidi.sync()
            tray.sync_now()
            wait_for(lambda: any("Site visit" in body and "chidi" in body for _t, body in display.notes), "notification")
            assert sum("Site visit" in body for _t, body in display.notes) == 1

            # The relay cannot be reached: the tray says offline, with what waits.
            set_relay_url(dana, "http://127.0.0.1:9")
            with dana.open() as rep:
                rep.add_task("Offline work")
            wait_for(lambda: tray.view.state is TrayState.OFFLINE, "offline")
            assert tray.view.tooltip == "hbw-sync: Offline: 1 change waits for the office relay"

            tray.open_app()
            assert opened == [[*opened[0][:3], "--home", str(dana.home), "app"]]
        finally:
            tray.quit()
            runner.join(timeout=60)
        assert not runner.is_alive()
        assert task


def test_tray_command_without_a_store_says_so_in_words(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hbw_sync.client.cli import cli

    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "none"), "tray"])
    assert r.exit_code == 78 and "no hbw-sync store" in r.output


# -- notifications: one seam, real services or the fallback --------------------------------------------


def _plain_display(*a: Any, **kw: Any) -> Any:
    """pystray's dummy backend as it is: no notifications, like pystray's xorg backend on plain X11."""
    icon = RecordingDisplay(*a, **kw)
    icon.HAS_NOTIFICATION = False
    return icon


def test_notifier_tries_the_next_backend_and_never_retries_a_broken_one() -> None:
    from hbw_sync.client.tray import Notifier

    calls: list[str] = []

    def broken(title: str, body: str) -> bool:
        calls.append("broken")
        raise OSError("no service")

    def works(title: str, body: str) -> bool:
        calls.append(f"works:{title}:{body}")
        return True

    n = Notifier([("a", broken), ("b", works)])
    assert n.send("T", "B") and n.send("T2", "B2")
    assert calls == ["broken", "works:T:B", "works:T2:B2"] and n.broken == {"a"}
    assert not Notifier([("a", lambda t, b: False)]).send("T", "B")
    slow = Notifier([("slow", lambda t, b: time.sleep(5) or True)], timeout=0.2)
    assert not slow.send("T", "B")  # a service that hangs counts as absent; the caller goes on
    for x in (n, slow):
        x.close()


def test_without_a_desktop_service_notifications_fall_back_quietly_even_inside_a_running_loop(
        tmp_path: Path, monkeypatch) -> None:
    """No D-Bus session here (or one with no notification service): send says False, raises nothing."""
    import asyncio

    from hbw_sync.client.tray import Notifier, default_backends

    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no notify-send either
    icon = _plain_display("t", tray_icon.draw(TrayState.ALL_SENT), "t")
    n = Notifier(default_backends(icon))
    assert [name for name, _b in n.backends] == ["desktop-notifier"]

    async def inside_a_loop() -> bool:  # the watch loop calls the tray from inside asyncio.run
        return n.send("Task moved to you", "Task abc123 is yours now")

    assert asyncio.run(inside_a_loop()) is False and "desktop-notifier" in n.broken
    n.close()


def test_desktop_notifier_shows_it_through_a_real_dbus_session(tmp_path: Path, monkeypatch) -> None:
    """Plain X11 has no pystray notifications: desktop-notifier talks to the session's notification service."""
    import asyncio
    import shutil as sh

    if sh.which("dbus-daemon") is None:
        import pytest
        pytest.skip("dbus-daemon is not installed (Debian package dbus-daemon)")
    from dbus_helpers import NotificationService, SessionBus

    from hbw_sync.client.tray import Notifier, default_backends

    with SessionBus(tmp_path) as bus, NotificationService(bus.address) as service:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
        icon = _plain_display("t", tray_icon.draw(TrayState.ALL_SENT), "t")
        n = Notifier(default_backends(icon))

        async def inside_a_loop() -> bool:
            return n.send("Conflict settled", "Task abc123: assignee is chidi (by dana).")

        assert asyncio.run(inside_a_loop())
        assert n.send("A device waits for approval", "bosco's device waits for your approval.")
        assert service.shown == [("Conflict settled", "Task abc123: assignee is chidi (by dana)."),
                                 ("A device waits for approval", "bosco's device waits for your approval.")]
        n.close()


def test_a_notification_no_desktop_shows_turns_the_tray_to_needs_attention_until_the_app_opens(
        tmp_path: Path) -> None:
    from hbw_sync.client.tray import Notifier

    with Team(tmp_path) as team:
        dana, chidi = team.pair()
        opened: list[list[str]] = []
        tray = Tray(dana.home, dana.passphrase, interval=3600, icon_factory=_plain_display, poll_s=3600,
                    launcher=opened.append, notifier=Notifier([("none here", lambda t, b: False)]))
        assert tray.refresh().state is TrayState.ALL_SENT
        with chidi.open() as rep:
            rep.add_task("Site visit", assignee="dana")
        chidi.sync()
        dana.sync()  # the notice "new task ... for you" waits in dana's store
        view_now = tray.refresh()
        assert view_now.state is TrayState.ATTENTION and "Site visit" in view_now.tooltip
        assert "open hbw-sync" in view_now.tooltip
        with dana.open() as rep:  # the app's notices list still has it
            assert any("Site visit" in x for x in rep.status()["notices"])
        tray.open_app()
        assert opened and tray.refresh().state is TrayState.ALL_SENT
        tray.stop()
