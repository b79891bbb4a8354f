"""Creating node homes: a one-validator network (`node init`) or one home per institution of a
local multi-node network (`devnet init`; with `tls=True`, a local CA and a certificate per node,
see node/home/tls.py)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.home.config import ApiSection, NodeConfig, NodeHome, NodeSection, P2PSection, TlsFiles, dump_toml
from node.core.crypto import Identity
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.home.keys import write_key_file


class HomeExists(Exception):
    """The directory already holds a node home; we never overwrite keys or data."""


@dataclass(frozen=True, slots=True)
class InitializedNode:
    home: Path
    node_id: str
    api_url: str


def _check_empty(root: Path) -> None:
    if (root / "config.toml").exists() or (root / "institution.key").exists():
        raise HomeExists(f"{root} already holds a node home; choose another directory or remove it")


def init_network(
    dirs: list[Path],
    *,
    chain_id: str,
    names: list[str],
    api_host: str = "127.0.0.1",
    api_ports: list[int],
    p2p_ports: list[int],
    observer: bool = False,
    observer_dirs: Sequence[Path] = (),
    observer_api_ports: Sequence[int] = (),
    observer_p2p_ports: Sequence[int] = (),
    hosts: list[str] | None = None,
    tls: bool = False,
) -> list[InitializedNode]:
    """Write keys, configs and one shared genesis for the given node homes (and observers).

    Every validator listens on `api_host`, or with `hosts` on its own address (one per
    directory: institutions on separate hosts), and the genesis lists that address.

    With `tls`, the parent directory of the first home gets `ca.pem` (a fresh CA whose key is
    never written), and every home gets `tls.crt`, `tls.key` and `ca.pem`: its API serves https
    and its peer links use TLS verified against that CA."""
    for d in [*dirs, *observer_dirs]:
        _check_empty(d)
    hosts = list(hosts) if hosts is not None else [api_host] * len(dirs)
    if len(hosts) != len(dirs):
        raise ValueError("give one host per validator directory")
    scheme = "https" if tls else "http"
    ca = None
    if tls:
        from node.home.tls import make_local_ca

        ca = make_local_ca()
        root = dirs[0].parent if dirs else observer_dirs[0].parent
        root.mkdir(parents=True, exist_ok=True)
        (root / "ca.pem").write_bytes(ca.pem)

    def tls_files(d: Path, name: str, host: str) -> TlsFiles:
        if ca is None:
            return {}
        from node.home.tls import issue_certificate, write_private

        cert, key = issue_certificate(ca, name, sorted({host, api_host, "127.0.0.1", "localhost"}))
        (d / "tls.crt").write_bytes(cert)
        write_private(d / "tls.key", key)
        (d / "ca.pem").write_bytes(ca.pem)
        return {"tls_cert": "tls.crt", "tls_key": "tls.key", "tls_ca": "ca.pem"}
    observer_ids = [Identity.generate() for _ in observer_dirs]
    # the institutions of one local network share the research secret (study pseudonym keys)
    research_secret = os.urandom(32).hex()
    identities = [Identity.generate() for _ in dirs]
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time_ms=time.time_ns() // 1_000_000,
        validators=tuple(
            ValidatorInfo(id=ident.public_key, name=name, address=f"{host}:{p2p}", api=f"{scheme}://{host}:{api}")
            for ident, name, host, api, p2p in zip(identities, names, hosts, api_ports, p2p_ports, strict=True)
        ),
        institutions=tuple(InstitutionInfo(id=ident.public_key, name=name) for ident, name in zip(identities, names, strict=True)),
    )
    out = []
    for d, ident, name, host, api, p2p in zip(dirs, identities, names, hosts, api_ports, p2p_ports, strict=True):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        write_key_file(d / "institution.key", ident)
        genesis.save(d / "genesis.json")
        secret_fd = os.open(d / "research.secret", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(secret_fd, "w") as fh:
            fh.write(research_secret + "\n")
        files = tls_files(d, name, host)
        cfg = NodeConfig(
            node=NodeSection(name=name, observer=observer),
            api=dataclasses.replace(ApiSection(), host=host, port=api, **files),
            p2p=dataclasses.replace(P2PSection(), host=host, port=p2p, observers=",".join(o.id for o in observer_ids),
                                    **files),
        )
        NodeHome(d).config_path.write_text(dump_toml(cfg))
        out.append(InitializedNode(home=d, node_id=ident.id, api_url=f"{scheme}://{host}:{api}"))
    peers = ",".join(f"{v.id.hex()}@{v.address}" for v in genesis.validators)
    for i, (d, ident, api, p2p) in enumerate(zip(observer_dirs, observer_ids, observer_api_ports, observer_p2p_ports, strict=True)):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        write_key_file(d / "institution.key", ident)
        genesis.save(d / "genesis.json")
        files = tls_files(d, f"observer-{i}", api_host)
        cfg = NodeConfig(
            node=NodeSection(name=f"observer-{i}", observer=True),
            api=dataclasses.replace(ApiSection(), host=api_host, port=api, **files),
            p2p=dataclasses.replace(P2PSection(), host=api_host, port=p2p, peers=peers, **files),
        )
        NodeHome(d).config_path.write_text(dump_toml(cfg))
        out.append(InitializedNode(home=d, node_id=ident.id, api_url=f"{scheme}://{api_host}:{api}"))
    return out
