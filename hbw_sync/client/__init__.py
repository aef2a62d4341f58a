"""The hbw-sync client: local store, replica, and the ``hbw-sync`` CLI.

Library first: ``Device`` (no passphrase: identity, status, sealed batches)
and ``Replica`` (unlocked: every change and query) are what the CLI calls and
what tests and a future tray app use directly.
"""

from .device import Device, Identity
from .replica import Replica

__all__ = ["Device", "Identity", "Replica"]
