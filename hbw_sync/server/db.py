"""Where the relay's storage used to live; now ``storage/`` (the seam, SQLite and PostgreSQL backends).

Kept so that ``from hbw_sync.server import db`` and ``db.storage_error`` /
``db.Writer`` still work for code written against it; new code imports
``storage`` directly.
"""

from __future__ import annotations

from .storage.base import SCHEMA_VERSION
from .storage.faults import RELAY_DISK, faults, for_device, is_storage_fault, storage_error
from .storage.sqlite import DB_NAME, MAX_GROUP, Writer, connect, create_schema, open_checked

__all__ = ["SCHEMA_VERSION", "RELAY_DISK", "faults", "for_device", "is_storage_fault", "storage_error", "DB_NAME",
           "MAX_GROUP", "Writer", "connect", "create_schema", "open_checked"]
