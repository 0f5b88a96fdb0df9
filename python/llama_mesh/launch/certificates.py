"""A local certificate authority for the embedded default (and for tests).

`up` can give every component TLS (and mTLS between them) without an existing PKI
(`security: {tls: auto}`): it makes a CA, a server certificate for the loopback names
(and the hosts the file binds), and a client certificate for the mesh's components and
its operator, all under the state directory, private keys 0600.

The CA lives ten years; the certificates it signs live `LEAF_LIFETIME` and are
issued again, by the same CA, when less than `RENEW_BEFORE` is left (or they name
other hosts), each time `create` runs: at every `up`. Clients keep trusting the CA.

    pki = LocalPki.create(state_dir / "tls")
    ServerTls(pki.server_cert, pki.server_key, client_ca_file=pki.ca_cert)
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
CA_LIFETIME = datetime.timedelta(days=3650)
LEAF_LIFETIME = datetime.timedelta(days=90)
RENEW_BEFORE = datetime.timedelta(days=30)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "llama-mesh"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_ca(
    common_name: str = "llama-mesh local CA", *, now: datetime.datetime | None = None
) -> tuple[bytes, bytes]:
    """A self-signed CA: (certificate PEM, key PEM)."""
    key = _key()
    now = now or _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue(
    ca_cert: bytes,
    ca_key: bytes,
    common_name: str,
    *,
    hosts: Sequence[str] = LOOPBACK_NAMES,
    server: bool = True,
    client: bool = True,
    now: datetime.datetime | None = None,
    lifetime: datetime.timedelta = LEAF_LIFETIME,
) -> tuple[bytes, bytes]:
    """A certificate signed by the CA for `hosts`: (certificate PEM, key PEM)."""
    authority = x509.load_pem_x509_certificate(ca_cert)
    signer = serialization.load_pem_private_key(ca_key, password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = _key()
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    usages = [
        *([ExtendedKeyUsageOID.SERVER_AUTH] if server else []),
        *([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []),
    ]
    now = now or _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(authority.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` readable by its owner only (0600), never briefly wider."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class LocalPki:
    """The files of a local CA: the CA, a server and a client certificate."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    @classmethod
    def create(
        cls,
        directory: Path,
        hosts: Sequence[str] = LOOPBACK_NAMES,
        *,
        now: datetime.datetime | None = None,
    ) -> LocalPki:
        """Make the CA and certificates in `directory`; keep those already there, but
        issue a certificate again (same CA) when less than RENEW_BEFORE of it is left,
        another CA signed it, or it does not name every one of `hosts`."""
        pki = cls(directory)
        now = now or _now()
        ca = _load(pki.ca_cert)
        if ca is None or not pki.ca_key.exists() or ca.not_valid_after_utc - now < RENEW_BEFORE:
            ca_cert, ca_key = make_ca(now=now)
            write_private(pki.ca_key, ca_key)
            pki.ca_cert.write_bytes(ca_cert)
            logger.info("local CA created in %s", directory)
        ca_cert, ca_key = pki.ca_cert.read_bytes(), pki.ca_key.read_bytes()
        authority = x509.load_pem_x509_certificate(ca_cert)
        wanted = (
            (pki.server_cert, pki.server_key, "llama-mesh server", tuple(hosts), True),
            (pki.client_cert, pki.client_key, "llama-mesh component", (), False),
        )
        for cert_file, key_file, common_name, names, server in wanted:
            current = _load(cert_file)
            if (
                current is not None
                and key_file.exists()
                and current.not_valid_after_utc - now >= RENEW_BEFORE
                and _signed_by(current, authority)
                and set(names) <= _hosts_of(current)
            ):
                continue
            cert, key = issue(ca_cert, ca_key, common_name, hosts=names, server=server, now=now)
            write_private(key_file, key)
            cert_file.write_bytes(cert)
            logger.info("%s issued, valid until %s", cert_file, now + LEAF_LIFETIME)
        return pki


def _load(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def _signed_by(cert: x509.Certificate, authority: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _hosts_of(cert: x509.Certificate) -> set[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {
        *names.get_values_for_type(x509.DNSName),
        *(str(ip) for ip in names.get_values_for_type(x509.IPAddress)),
    }
