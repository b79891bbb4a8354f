"""A node home: its configuration file, key, genesis and data directory.

    HOME/config.toml       options (documented in docs/configuration.md)
    HOME/genesis.json      the network's genesis (identical on every node)
    HOME/institution.key   this node's identity (mode 0600)
    HOME/data/             LevelDB (owned by storage/)
    HOME/snapshots/        state snapshots (storage/snapshots.py), every storage.snapshot_interval blocks

Every option can be overridden by an environment variable MEDLEDGER_<SECTION>_<OPTION>
(for example MEDLEDGER_API_PORT=8080). Invalid values are refused at start with the option's
name and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict


class ConfigError(ValueError):
    """The configuration is invalid (the operator's to fix); the message names the option."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSection:
    name: str = "node"
    key_file: str = "institution.key"
    genesis_file: str = "genesis.json"
    data_dir: str = "data"
    research_secret_file: str = "research.secret"
    observer: bool = False
    log_format: str = "text"  # text | json (`node run --log-format` overrides)
    log_level: str = "info"  # debug | info | warning | error (`node run --log-level` overrides)
    verify_workers: int = 0  # processes verifying transaction signatures in parallel; 0: one per core


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSection:
    host: str = "127.0.0.1"
    port: int = 8700
    max_body_bytes: int = 16 * 1024 * 1024
    max_txs_per_request: int = 5_000
    tls_cert: str = ""  # PEM certificate chain; with tls_key, the API serves https only
    tls_key: str = ""  # PEM private key of tls_cert (mode 0600)
    tls_ca: str = ""  # CA file trusted when this node calls other nodes' APIs over https
    rate_per_ip: int = 500  # requests a second per client IP (0: no limit)
    burst_per_ip: int = 1_000
    rate_per_signer: int = 50  # signed reads a second per signer (0: no limit)
    burst_per_signer: int = 100
    rate_table_size: int = 10_000  # clients (IPs, signers) tracked; the least recently seen is forgotten
    upload_ttl_ms: int = 3_600_000  # an upload no committed record.add announces within this is deleted
    max_pending_uploads: int = 100  # uploads of one author waiting for their record.add
    max_pending_upload_bytes: int = 64 * 1024 * 1024  # their ciphertext bytes


class TlsFiles(TypedDict, total=False):
    """The TLS file options that ApiSection and P2PSection share (`dataclasses.replace(s, **files)`)."""

    tls_cert: str
    tls_key: str
    tls_ca: str


@dataclass(frozen=True, slots=True, kw_only=True)
class P2PSection:
    host: str = "127.0.0.1"
    port: int = 8800
    observers: str = ""  # comma-separated ids of observer nodes allowed to connect
    peers: str = ""  # extra peers to dial, comma-separated id@host:port (observers list validators here)
    tls_cert: str = ""  # with tls_key: peers connect with TLS (wss) and we dial them with TLS
    tls_key: str = ""
    tls_ca: str = ""  # CA that peers' certificates must chain to (empty: the system's trust store)
    max_frames_per_s: int = 10_000  # frames a second accepted from one peer (more are dropped and penalised)
    frames_burst: int = 20_000


@dataclass(frozen=True, slots=True, kw_only=True)
class MempoolSection:
    max_txs: int = 100_000
    max_bytes: int = 128 * 1024 * 1024
    max_per_sender: int = 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsensusSection:
    max_block_txs: int = 5_000
    max_block_bytes: int = 4 * 1024 * 1024
    empty_blocks: bool = False
    empty_block_interval_ms: int = 1_000
    base_timeout_ms: int = 3_000
    max_timeout_ms: int = 60_000
    max_clock_drift_ms: int = 30_000


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageSection:
    snapshot_interval: int = 1_000  # a state snapshot every this many blocks (0: none)
    snapshot_dir: str = "snapshots"  # where they are written (relative: to the home)
    keep_history: bool = False  # a node joined from a snapshot fetches the earlier blocks in the background


@dataclass(frozen=True, slots=True, kw_only=True)
class FhirSection:
    enabled: bool = True  # serve FHIR R4 at /fhir/R4 and its SMART token endpoint (docs/fhir.md)
    base_url: str = ""  # the API's public URL (https://node.example.org:8700): token audience, discovery
    token_ttl_s: int = 300  # lifetime of an access token
    token_rate_per_ip: int = 5  # token requests a second per client IP (0: no limit)
    token_burst_per_ip: int = 20
    max_tokens: int = 10_000  # live access tokens held (the oldest is dropped beyond)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    node: NodeSection = field(default_factory=NodeSection)
    api: ApiSection = field(default_factory=ApiSection)
    p2p: P2PSection = field(default_factory=P2PSection)
    mempool: MempoolSection = field(default_factory=MempoolSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    storage: StorageSection = field(default_factory=StorageSection)
    fhir: FhirSection = field(default_factory=FhirSection)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {f.name: dataclasses.asdict(getattr(self, f.name)) for f in dataclasses.fields(self)}


_LIMITS: dict[str, tuple[int, int]] = {
    "api.port": (0, 65535),
    "p2p.port": (0, 65535),
    "api.max_body_bytes": (1024, 1 << 30),
    "api.max_txs_per_request": (1, 100_000),
    "api.rate_per_ip": (0, 1_000_000),
    "api.burst_per_ip": (1, 10_000_000),
    "api.rate_per_signer": (0, 1_000_000),
    "api.burst_per_signer": (1, 10_000_000),
    "api.rate_table_size": (16, 10_000_000),
    "api.upload_ttl_ms": (1_000, 30 * 86_400_000),
    "api.max_pending_uploads": (1, 1_000_000),
    "api.max_pending_upload_bytes": (1 << 16, 1 << 40),
    "p2p.max_frames_per_s": (1, 10_000_000),
    "p2p.frames_burst": (1, 100_000_000),
    "node.verify_workers": (0, 256),
    "mempool.max_txs": (1, 10_000_000),
    "mempool.max_bytes": (1 << 16, 1 << 34),
    "mempool.max_per_sender": (1, 10_000_000),
    "consensus.max_block_txs": (1, 20_000),
    "consensus.max_block_bytes": (1 << 12, 8 * 1024 * 1024 - 4096),
    "consensus.empty_block_interval_ms": (10, 3_600_000),
    "consensus.base_timeout_ms": (50, 3_600_000),
    "consensus.max_timeout_ms": (50, 86_400_000),
    "consensus.max_clock_drift_ms": (0, 3_600_000),
    "storage.snapshot_interval": (0, 100_000_000),
    "fhir.token_ttl_s": (30, 3_600),
    "fhir.token_rate_per_ip": (0, 1_000_000),
    "fhir.token_burst_per_ip": (1, 10_000_000),
    "fhir.max_tokens": (16, 10_000_000),
}


_CHOICES: dict[str, tuple[str, ...]] = {
    "node.log_format": ("text", "json"),
    "node.log_level": ("debug", "info", "warning", "error"),
}


def _coerce(name: str, kind: Any, value: Any) -> Any:
    if kind is bool or kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if kind is int or kind == "int":
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        lo, hi = _LIMITS.get(name, (-(1 << 63), 1 << 63))
        if not lo <= number <= hi:
            raise ConfigError(f"{name}: {number} is outside the allowed range {lo}..{hi}")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    allowed = _CHOICES.get(name)
    if allowed is not None and value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not allowed (one of: {', '.join(allowed)})")
    return value


def build_config(doc: Mapping[str, Any], env: Mapping[str, str] | None = None) -> NodeConfig:
    """Validate a parsed TOML document, apply MEDLEDGER_* overrides from `env`."""
    env = os.environ if env is None else env
    sections: dict[str, Any] = {}
    for sec_field in dataclasses.fields(NodeConfig):
        cls = sec_field.type if not isinstance(sec_field.type, str) else globals()[sec_field.type]
        given = doc.get(sec_field.name, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"[{sec_field.name}] must be a table")
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in given:
            if key not in known:
                raise ConfigError(f"{sec_field.name}.{key}: unknown option (known: {', '.join(known)})")
        values: dict[str, Any] = {}
        for key, f in known.items():
            name = f"{sec_field.name}.{key}"
            env_name = f"MEDLEDGER_{sec_field.name.upper()}_{key.upper()}"
            if env_name in env:
                values[key] = _coerce(name, f.type, env[env_name])
            elif key in given:
                values[key] = _coerce(name, f.type, given[key])
        sections[sec_field.name] = cls(**values)
    for key in doc:
        if key not in sections:
            raise ConfigError(f"[{key}]: unknown section (known: {', '.join(sections)})")
    cfg = NodeConfig(**sections)
    if cfg.consensus.max_timeout_ms < cfg.consensus.base_timeout_ms:
        raise ConfigError("consensus.max_timeout_ms must be at least consensus.base_timeout_ms")
    base = cfg.fhir.base_url
    if base and (not base.startswith(("http://", "https://")) or base.endswith("/") or any(c in base for c in "?# ")):
        raise ConfigError(f"fhir.base_url: {base!r} must be the API's public URL, http(s)://host[:port][/path], "
                          "without a trailing slash, query or fragment")
    for section in ("api", "p2p"):
        sec = getattr(cfg, section)
        if bool(sec.tls_cert) != bool(sec.tls_key):
            raise ConfigError(f"{section}.tls_cert and {section}.tls_key go together: give both or neither")
    return cfg


def dump_toml(cfg: NodeConfig) -> str:
    """Render a config as TOML (flat tables of strings, integers and booleans)."""
    lines: list[str] = []
    for section, values in cfg.to_dict().items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                rendered = "true" if value else "false"
            elif isinstance(value, int):
                rendered = str(value)
            else:
                rendered = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"{key} = {rendered}")
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class NodeHome:
    """Paths of a node home directory."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    def load_config(self, env: Mapping[str, str] | None = None) -> NodeConfig:
        try:
            doc = tomllib.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{self.config_path} not found: is {self.root} a node home? (create one with `medledger node init`)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.config_path}: invalid TOML: {exc}") from None
        return build_config(doc, env)

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p
