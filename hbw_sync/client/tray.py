"""``hbw-sync tray``: an icon by the clock that says whether work went out, and syncs on its own.

The tray runs the watch loop (``watch.py``) in a thread, looks at ``Device.status()`` every few
seconds (another command or the app may have queued changes), and lets ``tray_state.step``
decide the icon, tooltip, menu and notifications. This module is only the glue to pystray:
which icon backend draws it is pystray's business (``PYSTRAY_BACKEND``), and a test hands in
its own ``icon_factory`` built on pystray's dummy backend to run all of this headless.

Why pystray and Pillow: pystray is the one small, maintained library with the same API on
Windows (most of the team's laptops), macOS and Linux desktops; it takes a Pillow image, which
also lets ``tray_icon.py`` draw every state at any size instead of shipping image files. Both
install headless (pure Python plus Pillow's wheels), so they are plain dependencies.
Notifications go through one seam, ``Notifier``: pystray's own ``notify`` where its backend has one
(Windows, GTK, AppIndicator), else desktop-notifier (D-Bus on Linux, including plain X11 where
pystray's xorg backend has none), else ``notify-send`` if installed. When none can show it, the
tray says so itself: it turns to "needs attention" with the message, until the person opens hbw-sync,
where the app's notices list has it (the store keeps every notice until it is seen).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, HbwError
from ..i18n import _
from .app.hints import app_words
from . import bundles, tray_icon
from . import watch as watching
from .device import Device, now_ms
from .store import default_home
from .tray_state import Memory, Menu, Notification, Observation, TrayView, step

log = logging.getLogger("hbw_sync.tray")

POLL_S = 5.0
BUNDLE_MAX_BYTES = 10_000_000  # the CLI's --max-size default: what email accepts
NOTIFY_TIMEOUT_S = 10.0  # a desktop service that does not answer in this time counts as absent

#: One way to put a notification on the desktop: (title, body) -> True once the desktop took it.
Backend = Callable[[str, str], bool]


class Notifier:
    """The one seam for desktop notifications: the first backend that takes it, else False.

    Why a worker thread: desktop-notifier's synchronous API runs its own asyncio loop, which cannot
    run in a thread that already runs one (the watch loop's sync calls the tray from inside
    ``asyncio.run``). So every backend call happens in one thread of its own, one at a time, and
    a caller waits at most ``timeout`` seconds. A backend that fails (no D-Bus session, no
    notification service) is not tried again in this run.
    """

    def __init__(self, backends: list[tuple[str, Backend]], timeout: float = NOTIFY_TIMEOUT_S):
        self.backends = list(backends)
        self.timeout = timeout
        self.broken: set[str] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hbw-notify")

    def send(self, title: str, body: str) -> bool:
        """True if a backend showed it; False: the caller falls back (nothing here raises)."""
        try:
            return self._pool.submit(self._send, title, body).result(timeout=self.timeout)
        except Exception as e:  # a hung service, or a pool already closed  # noqa: BLE001
            log.info("tray: notification not shown: %s", e)
            return False

    def _send(self, title: str, body: str) -> bool:
        for name, backend in self.backends:
            if name in self.broken:
                continue
            try:
                if backend(title, body):
                    return True
            except Exception as e:  # noqa: BLE001 - any failure of a desktop service means "try the next"
                log.info("tray: notifications through %s do not work here: %s", name, e)
            self.broken.add(name)
        return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def pystray_backend(icon: Any) -> Backend:
    def send(title: str, body: str) -> bool:
        icon.notify(body, title)
        return True
    return send


def desktop_notifier_backend() -> Backend:
    """desktop-notifier's synchronous API; it logs a failed send and returns as if it worked, so the
    service is probed first (``get_capabilities`` raises without one) and success is its dispatch callback."""
    state: dict[str, Any] = {}

    def send(title: str, body: str) -> bool:
        if "notifier" not in state:
            from desktop_notifier import DesktopNotifierSync

            notifier = DesktopNotifierSync(app_name="hbw-sync")
            notifier.get_capabilities()  # raises when there is no D-Bus session or notification service
            state["notifier"] = notifier
        shown = threading.Event()
        state["notifier"].send(title=title, message=body, on_dispatched=shown.set)
        return shown.is_set()
    return send


def notify_send_backend(path: str) -> Backend:
    def send(title: str, body: str) -> bool:
        r = subprocess.run([path, "--app-name=hbw-sync", title, body], capture_output=True, timeout=5)
        return r.returncode == 0
    return send


def default_backends(icon: Any) -> list[tuple[str, Backend]]:
    """What this desktop offers, best first (pystray's own only where its backend has notifications)."""
    out: list[tuple[str, Backend]] = []
    if getattr(icon, "HAS_NOTIFICATION", False):
        out.append(("pystray", pystray_backend(icon)))
    out.append(("desktop-notifier", desktop_notifier_backend()))
    if (path := shutil.which("notify-send")) is not None:
        out.append(("notify-send", notify_send_backend(path)))
    return out


class Tray:
    """The tray icon of one device. ``run()`` blocks until Quit (or ``stop()``)."""

    def __init__(self, home: Path | None, passphrase: str | None = None, *, interval: float = 1800,
                 icon_factory: Callable[..., Any] | None = None, poll_s: float = POLL_S,
                 launcher: Callable[[list[str]], Any] = subprocess.Popen,
                 choose_file: Callable[[str, bool], Path | None] | None = None,
                 notifier: Notifier | None = None):
        self.home = home or default_home()
        self.passphrase = passphrase
        self.interval = interval
        self.poll_s = poll_s
        self.launcher = launcher
        self.choose_file = choose_file or _choose_file
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._sync_now = threading.Event()
        self._syncing = False
        self._reachable: bool | None = None
        self._paused = False
        self._error: str | None = None
        self._stopped: str | None = None
        self._memory = Memory()
        self._watch_thread: threading.Thread | None = None
        self._watch_stop = threading.Event()
        self.view: TrayView | None = None
        self.sent: list[Notification] = []
        with Device.open(self.home) as dev:  # fails here, in words, on a home with no store
            status = dev.status()
        self.view, _notes, _mem = step(Observation(status), Memory())
        if icon_factory is None:
            icon_factory = load_pystray().Icon
        self.icon = icon_factory("hbw-sync", tray_icon.draw(self.view.state, self.view.waiting),
                                 self.view.tooltip, menu=self._menu())
        self.notifier = notifier or Notifier(default_backends(self.icon))
        self._unshown: tuple[str, ...] = ()  # notifications no desktop service showed, until the app is opened

    # -- the menu ----------------------------------------------------------------------------------

    def _menu(self) -> Any:
        pystray = load_pystray()

        def on(item: Menu) -> Callable[[Any], bool]:
            return lambda _item: bool(self.view and self.view.enabled[item])

        return pystray.Menu(
            pystray.MenuItem(_("Sync now"), self.sync_now, enabled=on(Menu.SYNC_NOW), default=True),
            pystray.MenuItem(_("Open hbw-sync"), self.open_app, enabled=on(Menu.OPEN_APP)),
            pystray.Menu.SEPARATOR,
            pystray.MenuItem(_("Export bundle…"), self.export_bundle, enabled=on(Menu.EXPORT)),
            pystray.MenuItem(_("Import bundle…"), self.import_bundle, enabled=on(Menu.IMPORT)),
            pystray.Menu.SEPARATOR,
            pystray.MenuItem(lambda _item: self.view.pause_label if self.view else _("Pause"), self.toggle_pause,
                             enabled=on(Menu.PAUSE)),
            pystray.MenuItem(_("Quit"), self.quit),
        )

    def sync_now(self, *_args: Any) -> None:
        self._sync_now.set()

    def open_app(self, *_args: Any) -> None:
        with self._lock:  # what could not be shown is in the app's notices list now in front of them
            self._unshown = ()
        self.launcher([sys.executable, "-m", "hbw_sync.client.cli", "--home", str(self.home), "app"])

    def export_bundle(self, *_args: Any) -> None:
        stamp = dt.datetime.fromtimestamp(now_ms() / 1000).strftime("%Y%m%d-%H%M")
        path = self.choose_file(f"hbw-sync-{stamp}.hbw", True)
        if path is None:
            return
        try:
            r = bundles.export_bundle(self.home, path, BUNDLE_MAX_BYTES, passphrase=self.passphrase)
        except HbwError as e:
            self._notify(Notification("export", _("Bundle not written"), app_words(e)[0]))
            return
        self._notify(Notification("export", _("Bundle written"), _(
            "{file}: send it to the office by email or on a USB stick.").format(file=path) if r["changes"] else _(
            "{file}: nothing waits to be sent; it asks the office for the team's changes.").format(file=path)))
        self.refresh()

    def import_bundle(self, *_args: Any) -> None:
        if self.passphrase is None:  # importing applies changes: that needs the passphrase, which the app asks
            self._notify(Notification("import", _("Import bundle"),
                                      _("Open hbw-sync to import a bundle: it asks for your passphrase.")))
            self.open_app()
            return
        path = self.choose_file("", False)
        if path is None:
            return
        try:
            bundles.import_bundle(self.home, path, self.passphrase)
        except HbwError as e:
            self._notify(Notification("import", _("Bundle not imported"), app_words(e)[0]))
            return
        self._notify(Notification("import", _("Bundle imported"), _("The office's reply is applied.")))
        self.refresh()

    def toggle_pause(self, *_args: Any) -> None:
        with self._lock:
            self._paused = not self._paused
        if self._paused:
            self._stop_watch()
        else:
            self._start_watch()
        self.refresh()

    def quit(self, *_args: Any) -> None:
        self.stop()

    # -- running ------------------------------------------------------------------------------------

    def run(self) -> None:
        """Show the icon and run until Quit; the watch loop and the status poll run in threads."""
        self.icon.run(setup=self._setup)
        self.stop()

    def _setup(self, icon: Any) -> None:
        icon.visible = True
        self._start_watch()
        threading.Thread(target=self._poll, name="hbw-tray-poll", daemon=True).start()
        self.refresh()

    def stop(self) -> None:
        self._stop.set()
        self._stop_watch()
        self.notifier.close()
        try:
            self.icon.stop()
        except Exception:  # a backend that never started has nothing to stop  # noqa: BLE001
            pass

    def _start_watch(self) -> None:
        if self._watch_thread is not None and self._watch_thread.is_alive():
            return
        self._watch_stop = threading.Event()
        self._watch_thread = threading.Thread(target=self._watch, args=(self._watch_stop,), name="hbw-tray-watch",
                                              daemon=True)
        self._watch_thread.start()

    def _stop_watch(self) -> None:
        self._watch_stop.set()
        self._sync_now.set()  # ends the watch loop's wait at once
        t = self._watch_thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=30)
        self._sync_now.clear()
        with self._lock:
            self._syncing = False

    def _watch(self, stop: threading.Event) -> None:
        why: str | None
        try:
            code = watching.watch(self.home, self.passphrase, interval=self.interval, max_backoff=30.0,
                                  log=log.info, stop=stop, install_signals=False,
                                  on_event=lambda kind, detail: None if stop.is_set() else self._on_event(kind, detail),
                                  sync_now=self._sync_now)
        except HbwError as e:
            code, why = 1, app_words(e)[0]
        else:
            why = None
        if code and not stop.is_set():
            with self._lock:
                self._stopped = why or self._error or _("syncing stopped; open hbw-sync to see why")
            self.refresh()

    def _on_event(self, kind: str, detail: str | None) -> None:
        with self._lock:
            if kind == "syncing":
                self._syncing, self._reachable = True, True
            elif kind == "synced":
                self._syncing, self._error = False, None
            elif kind in ("unreachable", "interrupted"):  # a dropped link is "offline", not a fault to look at
                self._syncing, self._reachable = False, False
            elif kind in ("failed", "refused"):
                self._syncing, self._error = False, detail
                if kind == "refused":
                    self._stopped = detail
        self.refresh()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def observation(self) -> Observation:
        with Device.open(self.home) as dev:
            status = dev.status()
        with self._lock:
            return Observation(status, syncing=self._syncing, reachable=self._reachable, paused=self._paused,
                               error=self._error, stopped=self._stopped, unshown=self._unshown)

    def refresh(self) -> TrayView | None:
        """Look at the device now and bring the icon, tooltip, menu and notifications up to date."""
        try:
            obs = self.observation()
        except HbwError as e:  # the store is busy for a moment (a sync's transaction): next poll
            log.info("tray: status not read: %s", e)
            return self.view
        with self._lock:
            view, notes, self._memory = step(obs, self._memory)
            changed = view != self.view
            self.view = view
        if changed:
            self._show(view)
        for n in notes:
            self._notify(n)
        if notes and self._unshown != obs.unshown:  # one no desktop showed: the icon says so now, not at the next poll
            return self.refresh()
        return self.view

    def _show(self, view: TrayView) -> None:
        self.icon.icon = tray_icon.draw(view.state, view.waiting)
        self.icon.title = view.tooltip
        self.icon.update_menu()

    def _notify(self, n: Notification) -> None:
        self.sent.append(n)
        log.info("tray notification: %s: %s", n.title, n.body)
        if self.notifier.send(n.title, n.body):
            return
        with self._lock:  # no desktop service showed it: the tray's own look says so instead (refresh)
            self._unshown = (*self._unshown, n.body)[-20:]


def load_pystray() -> Any:
    """pystray, imported only when a tray is made: importing it connects to the display.

    Raises:
        ConfigError: no desktop to draw on (a server, an SSH session without X).
    """
    try:
        import pystray
    except Exception as e:  # Xlib raises its own DisplayNameError, not ImportError  # noqa: BLE001
        raise ConfigError(_("the tray needs a desktop session, and none was found ({why})").format(why=e),
                          hint=_("use 'hbw-sync watch' or 'hbw-sync schedule install' instead")) from None
    return pystray


def _choose_file(suggested: str, save: bool) -> Path | None:
    """A file dialog where Tk is installed; else a bundle next to the person's documents."""
    try:
        import tkinter
        from tkinter import filedialog
    except ImportError:
        if not save:
            return None
        docs = Path.home() / "Documents"
        return (docs if docs.is_dir() else Path.home()) / suggested
    root = tkinter.Tk()
    root.withdraw()
    try:
        if save:
            name = filedialog.asksaveasfilename(initialfile=suggested, defaultextension=".hbw",
                                                title=_("Export bundle"))
        else:
            name = filedialog.askopenfilename(title=_("Import bundle"))
    finally:
        root.destroy()
    return Path(name) if name else None
