"""A private D-Bus session with a minimal notification service, for the tray's notifier tests.

Real parts: Debian's ``dbus-daemon`` (a session bus of its own, on a socket in tmp) and a service
written with dbus-fast that answers ``org.freedesktop.Notifications`` as a desktop would, keeping
what it was asked to show. No ``from __future__ import annotations`` here: dbus-fast reads the
D-Bus signatures from the annotations.
"""
import asyncio
import os
import shutil
import subprocess
import threading
from pathlib import Path

from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, method, signal


class Notifications(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.freedesktop.Notifications")
        self.shown: list[tuple[str, str]] = []

    @method()
    def GetCapabilities(self) -> "as":  # noqa: F821
        return ["body"]

    @method()
    def GetServerInformation(self) -> "ssss":  # noqa: F821
        return ["test", "hbw-sync tests", "1", "1.2"]

    @method()
    def Notify(self, app_name: "s", replaces_id: "u", app_icon: "s", summary: "s", body: "s",  # noqa: F821
               actions: "as", hints: "a{sv}", expire_timeout: "i") -> "u":  # noqa: F821
        self.shown.append((summary, body))
        return len(self.shown)

    @method()
    def CloseNotification(self, id: "u"):  # noqa: F821
        return None

    @signal()
    def NotificationClosed(self) -> "uu":  # noqa: F821
        return [0, 0]

    @signal()
    def ActionInvoked(self) -> "us":  # noqa: F821
        return [0, ""]


class SessionBus:
    """``with SessionBus(tmp) as bus:`` a dbus-daemon of our own; ``bus.address`` for DBUS_SESSION_BUS_ADDRESS."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None
        self.address = ""

    def __enter__(self) -> "SessionBus":
        daemon = shutil.which("dbus-daemon")
        if daemon is None:
            raise RuntimeError("dbus-daemon is not installed")
        self.proc = subprocess.Popen([daemon, "--session", "--nofork", "--print-address=1",
                                      f"--address=unix:path={self.tmp / 'bus'}"],
                                     stdout=subprocess.PIPE, text=True)
        self.address = self.proc.stdout.readline().strip()  # ready once it prints its address
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class NotificationService:
    """The service on its own thread and loop; ``shown`` is what it was asked to show."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.iface = Notifications()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def shown(self) -> list[tuple[str, str]]:
        return self.iface.shown

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            bus = await MessageBus(bus_address=self.address).connect()
            bus.export("/org/freedesktop/Notifications", self.iface)
            await bus.request_name("org.freedesktop.Notifications")
            self.ready.set()
            await asyncio.Event().wait()

        try:
            self.loop.run_until_complete(main())
        except RuntimeError:  # the loop was stopped
            pass

    def __enter__(self) -> "NotificationService":
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the notification service did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def env_with(address: str) -> dict[str, str]:
    return {**os.environ, "DBUS_SESSION_BUS_ADDRESS": address}
