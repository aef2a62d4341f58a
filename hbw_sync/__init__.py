"""hbw-sync: offline-first, low-bandwidth task and document sync.

The package is split the way TaskChampion splits its crates:

* ``hbw_sync`` (this level) is the sans-IO protocol core: errors, clocks, ops,
  merge rules, crypto and the batch framing. Plain functions and data classes,
  no sockets, no SQLite, no event loop, so that the client, the relay, bundles
  and the tests share one implementation.
* ``hbw_sync.client`` holds the local store and the ``hbw-sync`` CLI.
* ``hbw_sync.server`` holds the relay and the ``hbw-relay`` CLI.
"""

__version__ = "0.1.0"
FORMAT_VERSION = 1
