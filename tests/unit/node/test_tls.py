"""The devnet CA and node certificates, the SSL contexts built from a node's config, and the
configuration's TLS and rate-limit options."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from node.home.config import ConfigError, NodeHome, build_config
from node.daemon import p2p_limits, ssl_contexts, with_tls_files
from node.home.layout import init_network
from node.home.tls import TlsError, client_context, issue_certificate, make_local_ca, server_context, write_private


def test_a_node_certificate_chains_to_the_ca_and_names_its_hosts(tmp_path: Path):
    ca = make_local_ca()
    cert_pem, key_pem = issue_certificate(ca, "institution-0", ["127.0.0.1", "node0.example", "127.0.0.1"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca.certificate)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["node0.example"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    write_private(tmp_path / "k.pem", key_pem)
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_private(tmp_path / "k.pem", key_pem)  # never overwritten
    (tmp_path / "c.pem").write_bytes(cert_pem)
    assert isinstance(server_context(tmp_path / "c.pem", tmp_path / "k.pem"), ssl.SSLContext)


def test_unusable_files_are_a_clear_error(tmp_path: Path):
    with pytest.raises(TlsError, match="not found"):
        server_context(tmp_path / "missing.crt", tmp_path / "missing.key")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TlsError):
        server_context(tmp_path / "junk.pem", tmp_path / "junk.pem")
    with pytest.raises(TlsError):
        client_context(tmp_path / "missing-ca.pem")
    ca = make_local_ca()
    cert, _ = issue_certificate(ca, "n", ["127.0.0.1"])
    _, other_key = issue_certificate(ca, "m", ["127.0.0.1"])
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(other_key)
    with pytest.raises(TlsError, match="cannot use"):
        server_context(tmp_path / "c.pem", tmp_path / "k.pem")  # a key that is not the certificate's


def test_devnet_homes_with_tls_get_their_files_and_https_addresses(tmp_path: Path):
    made = init_network([tmp_path / "node0", tmp_path / "node1"], chain_id="c", names=["a", "b"],
                        api_ports=[1, 2], p2p_ports=[3, 4], tls=True)
    assert (tmp_path / "ca.pem").exists() and not list(tmp_path.rglob("*ca*.key"))
    for m in made:
        assert m.api_url.startswith("https://")
        assert (m.home / "tls.key").stat().st_mode & 0o777 == 0o600
        cfg = NodeHome(m.home).load_config(env={})
        assert (cfg.api.tls_cert, cfg.api.tls_key, cfg.api.tls_ca) == ("tls.crt", "tls.key", "ca.pem")
        assert (cfg.p2p.tls_cert, cfg.p2p.tls_key, cfg.p2p.tls_ca) == ("tls.crt", "tls.key", "ca.pem")
        contexts = ssl_contexts(NodeHome(m.home), cfg)
        assert all(isinstance(c, ssl.SSLContext) for c in contexts.values())
    plain = init_network([tmp_path / "p0"], chain_id="c", names=["a"], api_ports=[1], p2p_ports=[3])
    cfg = NodeHome(plain[0].home).load_config(env={})
    assert plain[0].api_url.startswith("http://")
    assert all(c is None for c in ssl_contexts(NodeHome(plain[0].home), cfg).values())


def test_node_run_tls_flags_set_the_api_and_the_peer_links(tmp_path: Path):
    cfg = build_config({}, env={})
    assert with_tls_files(cfg, None, None) is cfg
    both = with_tls_files(cfg, Path("c.pem"), Path("k.pem"))
    assert both.api.tls_cert == both.p2p.tls_cert == str(Path("c.pem").resolve())
    assert both.api.tls_key == both.p2p.tls_key == str(Path("k.pem").resolve())
    with pytest.raises(ConfigError, match="together"):
        with_tls_files(cfg, Path("c.pem"), None)


def test_config_options_and_their_checks():
    cfg = build_config({}, env={})
    assert (cfg.api.rate_per_ip, cfg.api.burst_per_ip, cfg.api.rate_per_signer, cfg.api.burst_per_signer) == (500, 1000, 50, 100)
    assert (cfg.p2p.max_frames_per_s, cfg.p2p.frames_burst) == (10_000, 20_000)
    limits = p2p_limits(build_config({"p2p": {"max_frames_per_s": 7, "frames_burst": 9}}, env={}))
    assert (limits.inbound_frames_per_second, limits.inbound_frames_burst) == (7.0, 9)
    assert build_config({}, env={"MEDLEDGER_API_RATE_PER_IP": "0"}).api.rate_per_ip == 0
    with pytest.raises(ConfigError, match="api.tls_cert and api.tls_key"):
        build_config({"api": {"tls_cert": "c.pem"}}, env={})
    with pytest.raises(ConfigError, match="p2p.tls_cert and p2p.tls_key"):
        build_config({"p2p": {"tls_key": "k.pem"}}, env={})
    with pytest.raises(ConfigError, match="api.burst_per_signer"):
        build_config({"api": {"burst_per_signer": 0}}, env={})
    with pytest.raises(ConfigError, match="api.rate_per_ip"):
        build_config({"api": {"rate_per_ip": -1}}, env={})
