"""The local CA of `tls: auto`: made once, kept across restarts, and its certificates
issued again by the same CA before they expire (or when they name other hosts)."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509

from llama_mesh.launch.certificates import LEAF_LIFETIME, RENEW_BEFORE, LocalPki
from llama_mesh.launch.deployment import DeploymentError, parse_deployment


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _files(pki: LocalPki) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(pki.directory.iterdir())}


def test_a_second_run_keeps_every_file_and_keys_are_private(tmp_path: Path) -> None:
    pki = LocalPki.create(tmp_path / "tls")
    first = _files(pki)
    assert sorted(first) == [
        "ca.key", "ca.pem", "client.key", "client.pem", "server.key", "server.pem",
    ]  # fmt: skip
    for key in (pki.ca_key, pki.server_key, pki.client_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert _files(LocalPki.create(tmp_path / "tls")) == first


def test_certificates_near_their_end_are_issued_again_by_the_same_ca(tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)  # as certificates keep it
    pki = LocalPki.create(tmp_path / "tls", now=now)
    before = _files(pki)
    server = _cert(pki.server_cert)
    assert server.not_valid_after_utc - now == LEAF_LIFETIME

    # A day before the renewal window: nothing changes.
    early = now + LEAF_LIFETIME - RENEW_BEFORE - datetime.timedelta(days=1)
    assert _files(LocalPki.create(pki.directory, now=early)) == before

    # Inside it: new server and client certificates and keys, the same CA.
    late = now + LEAF_LIFETIME - RENEW_BEFORE + datetime.timedelta(days=1)
    after = _files(LocalPki.create(pki.directory, now=late))
    assert after["ca.pem"] == before["ca.pem"] and after["ca.key"] == before["ca.key"]
    for name in ("server.pem", "server.key", "client.pem", "client.key"):
        assert after[name] != before[name], name
    renewed = _cert(pki.server_cert)
    assert renewed.not_valid_after_utc - late == LEAF_LIFETIME
    renewed.verify_directly_issued_by(_cert(pki.ca_cert))  # clients trust it as before
    _cert(pki.client_cert).verify_directly_issued_by(_cert(pki.ca_cert))


def test_a_new_host_or_a_foreign_certificate_is_issued_again(tmp_path: Path) -> None:
    pki = LocalPki.create(tmp_path / "tls")
    ca = pki.ca_cert.read_bytes()
    client = pki.client_cert.read_bytes()
    LocalPki.create(pki.directory, hosts=("localhost", "127.0.0.1", "::1", "mesh.internal"))
    names = _cert(pki.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "mesh.internal" in names.value.get_values_for_type(x509.DNSName)
    assert pki.client_cert.read_bytes() == client  # it names no host: kept

    # A certificate another CA signed (files copied from elsewhere) is replaced.
    other = LocalPki.create(tmp_path / "other")
    pki.client_cert.write_bytes(other.client_cert.read_bytes())
    LocalPki.create(pki.directory, hosts=("localhost", "127.0.0.1", "::1", "mesh.internal"))
    _cert(pki.client_cert).verify_directly_issued_by(_cert(pki.ca_cert))
    assert pki.ca_cert.read_bytes() == ca


@pytest.mark.parametrize("field", ["tls_cert", "tls_client_ca"])
def test_tls_auto_with_files_of_ones_own_is_refused_naming_them(tmp_path: Path, field: str) -> None:
    text = f"name: x\nsecurity:\n  tls: auto\n  {field}: a.pem\n"
    if field == "tls_cert":
        text += "  tls_key: a.key\n"
    with pytest.raises(DeploymentError) as caught:
        parse_deployment(text, tmp_path / "deployment.yaml")
    message = str(caught.value)
    assert "security" in message and "line 2" in message, message
    assert f"tls: auto makes the certificates itself: remove {field}" in message, message


def test_gateway_https_needs_a_certificate(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError) as caught:
        parse_deployment("name: x\ngateway:\n  https: true\n", tmp_path / "deployment.yaml")
    assert "gateway.https" in str(caught.value), caught.value
    assert "security.tls: auto" in str(caught.value)
    parse_deployment(
        "name: x\nsecurity:\n  tls: auto\ngateway:\n  https: true\n", tmp_path / "deployment.yaml"
    )
