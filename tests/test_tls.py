"""TLS with a small office's self-signed certificate: the invite pins it, and nothing else passes."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hbw_sync.client import sync as syncing
from hbw_sync.errors import IntegrityError
from hbw_sync.server import admin
from hbw_sync.server.app import RelayConfig
from hbw_sync.server.runner import RelayThread

from relay_helpers import FAST_KDF, STRONG


def self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "office-relay")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def server_ctx(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_pinned_self_signed_certificate(tmp_path: Path) -> None:
    data = tmp_path / "relay"
    admin.init(data, "Office")
    cert, key = self_signed(tmp_path, "good")
    admin.set_tls_certificate(data, cert)
    with RelayThread(RelayConfig(data=data, port=0, access_log=False), server_ctx(cert, key)) as url:
        assert url.startswith("https://")
        inv = admin.invite(data, "dana", "supervisor", url=url)
        assert inv.tls_sha256 is not None and len(inv.tls_sha256) == 32
        out = syncing.join(tmp_path / "dana", inv.encode(), STRONG, kdf=FAST_KDF)
        assert out["synced"] is True
        assert syncing.sync(tmp_path / "dana", STRONG).ok
        port = url.rsplit(":", 1)[1]
    # The same address now answers with another certificate (an impostor on the office network).
    cert2, key2 = self_signed(tmp_path, "evil")
    with RelayThread(RelayConfig(data=data, port=int(port), access_log=False), server_ctx(cert2, key2)):
        with pytest.raises(IntegrityError) as e:
            syncing.sync(tmp_path / "dana", STRONG)
        assert e.value.code == "integrity.tls" and "not the one your invite pinned" in str(e.value)


def test_unpinned_self_signed_certificate_is_refused_clearly(tmp_path: Path) -> None:
    data = tmp_path / "relay"
    admin.init(data, "Office")
    cert, key = self_signed(tmp_path, "good")  # served, but never registered: invites cannot pin it
    with RelayThread(RelayConfig(data=data, port=0, access_log=False), server_ctx(cert, key)) as url:
        inv = admin.invite(data, "dana", "supervisor", url=url)
        assert inv.tls_sha256 is None
        with pytest.raises(IntegrityError) as e:
            syncing.join(tmp_path / "dana", inv.encode(), STRONG, kdf=FAST_KDF)
        assert e.value.code == "integrity.tls" and "not trusted" in str(e.value)
