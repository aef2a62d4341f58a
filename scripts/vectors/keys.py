"""protocol/vectors/keys.json: device ids, key ids and content keys from fixed seeds (PROTOCOL.md §3, §15).
"""

from __future__ import annotations

from typing import Any

from hbw_sync import batch as B

from ._kit import DEVICES, DEVICE_SEEDS, OTHER_TEAM_ID, TEAM_ID, TEAM_KEYS

# -- keys ---------------------------------------------------------------------------------


def build() -> dict[str, Any]:
    return {
        "meta": {
            "device_id": "SHA-256('hbw-sync device id v1' || 0x00 || public_key)[0:8]",
            "key_id": "HMAC-SHA256(secret, 'hbw-sync key id v1' || 0x00 || epoch as u32 BE)[0:8]",
            "content_key": "HKDF-SHA256(ikm=secret, salt=none, info='hbw-sync batch content v1', L=32)",
        },
        "devices": [
            {"name": n, "seed": DEVICE_SEEDS[n].hex(), "public_key": k.public.hex(), "device_id": k.device_id.hex()}
            for n, k in DEVICES.items()
        ],
        "team_id": TEAM_ID.hex(),
        "other_team_id": OTHER_TEAM_ID.hex(),
        "team_keys": [
            {
                "name": n,
                "epoch": k.epoch,
                "secret": k.secret.hex(),
                "key_id": k.key_id.hex(),
                "content_key": k.subkey(B.CONTENT_PURPOSE).hex(),
            }
            for n, k in TEAM_KEYS.items()
        ],
    }
