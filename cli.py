"""`medledger`: the command-line interface of MedLedger.

Thin by design: each command parses its options, calls into `node/` (the client library, the
daemon, the home initialiser) and prints the result, as text or, with --json, as one JSON
document. Errors are one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from node.core.advice import explain
from node.client import ApiError, Client, ClientError, HealthClient
from node.home.config import ConfigError, NodeHome, dump_toml
from node.core.crypto import Identity
from node.app.studies import K_FLOOR, K_MAX
from node.chain.genesis import GenesisError
from node.home.layout import HomeExists, init_network
from node.home.keys import KeyFileError, is_encrypted, key_file_id, load_key_file, write_key_file
from node.app.access import BREAKGLASS_REASONS
from node.app.types.record_contest import CONTEST_REASONS
from node.home.logs import LOG_FORMATS, LOG_LEVELS, setup_logging

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
READER_KEY_HELP = ("Your key: the read is signed with it (the patient's, its guardian's, or a custodian's or "
                   "grant holder's); the patient's by default.")
BREAKGLASS_REASON_CODES = list(BREAKGLASS_REASONS)
CONTEST_REASON_CODES = CONTEST_REASONS


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def emit(as_json: bool, data: Any, text: str | Callable[[], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(text() if callable(text) else text)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)


def node_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--node", "node_url", default="http://127.0.0.1:8700", show_default=True, envvar="MEDLEDGER_NODE",
        help="Base URL of a node's API (env MEDLEDGER_NODE).",
    )(f)


def passphrase_env_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--passphrase-env", metavar="VAR",
        help="Read the key's passphrase from environment variable VAR (otherwise prompted if the key is encrypted).",
    )(f)


def read_passphrase(env_var: str | None, *, confirm: bool = False) -> str | None:
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            fail(f"environment variable {env_var} is not set or empty", EXIT_USAGE)
        return value
    return None


def load_identity(path: str, passphrase_env: str | None) -> Identity:
    try:
        passphrase = read_passphrase(passphrase_env)
        if passphrase is None and is_encrypted(path):
            if not sys.stdin.isatty():
                fail(f"{path} is encrypted: pass --passphrase-env VAR", EXIT_USAGE)
            passphrase = click.prompt(f"Passphrase for {path}", hide_input=True)
        return load_key_file(path, passphrase)
    except KeyFileError as exc:
        fail(str(exc), EXIT_USAGE)


def require_extra(module: str, what: str) -> None:
    """Refuse `what` with the extra to install when the optional `module` is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        fail(f"{what} needs {module}, which comes with the tools extra: pip install 'medledger[tools]' "
             "(from a clone: pip install -e '.[tools]')", EXIT_USAGE)


def run_client(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ApiError as exc:
        fail(explain(exc.code, exc.message), EXIT_REFUSED)
    except ClientError as exc:
        fail(str(exc), EXIT_UNREACHABLE)


def identity_arg(text: str, option: str) -> bytes:
    """An identity id given on the command line: 64 hex characters that are an Ed25519 public key
    (a mistyped character almost always makes it no curve point at all)."""
    from nacl.bindings import crypto_core_ed25519_is_valid_point

    raw = _hex32(text)
    if raw is None or not crypto_core_ed25519_is_valid_point(raw):
        fail(f"{option}: {text[:80]!r} is not a MedLedger identity id (64 hex characters, as `medledger keys show KEY` "
             "prints); check it for a mistyped character", EXIT_USAGE)
    return raw


def record_arg(text: str, option: str = "--record") -> bytes:
    """A record id given on the command line (64 hex characters, printed by `record put`)."""
    raw = _hex32(text)
    if raw is None:
        fail(f"{option}: {text[:80]!r} is not a record id (64 hex characters, as `medledger record put` prints and "
             "`medledger record list` shows)", EXIT_USAGE)
    return raw


def tx_hash_arg(text: str, option: str) -> bytes:
    """A transaction hash (or consent id) given on the command line."""
    raw = _hex32(text)
    if raw is None:
        fail(f"{option}: {text[:80]!r} is not a transaction hash (64 hex characters)", EXIT_USAGE)
    return raw


def _hex32(text: str) -> bytes | None:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


class MedLedgerGroup(click.Group):
    """The root group: whatever a command did not foresee still ends as one line, never a
    traceback (MEDLEDGER_DEBUG=1 shows it, for a bug report)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except ClientError as exc:
            fail(str(exc), EXIT_UNREACHABLE)
        except Exception as exc:  # our own bug: say so in one line
            if os.environ.get("MEDLEDGER_DEBUG"):
                raise
            detail = " ".join(str(exc).split())[:200]
            fail(f"unexpected {type(exc).__name__}: {detail} (a bug: please report it; MEDLEDGER_DEBUG=1 shows the traceback)",
                 EXIT_REFUSED)


@click.group(cls=MedLedgerGroup, context_settings=CONTEXT)
@click.version_option(package_name="medledger", prog_name="medledger")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="Log verbosity (to stderr).")
@click.option("--ca", "ca_file", default=None, type=click.Path(dir_okay=False, exists=True), envvar="MEDLEDGER_CA",
              help="CA certificate to trust for https nodes (env MEDLEDGER_CA), e.g. devnet/ca.pem after `devnet init --tls`.")
def main(log_level: str, ca_file: str | None) -> None:
    """MedLedger: a permissioned blockchain for healthcare.

    \b
    Start a local network, then talk to it:
      medledger devnet up
      medledger keys new --out alice.key
      medledger identity register --key alice.key --role patient
      medledger status
      medledger --ca devnet/ca.pem status --node https://127.0.0.1:8700
    """
    if ca_file:
        os.environ["MEDLEDGER_CA"] = str(Path(ca_file).resolve())  # every Client of this command trusts it
    setup_logging(log_level, "text")


# -- keys ---------------------------------------------------------------------------------------
@main.group(context_settings=CONTEXT)
def keys() -> None:
    """Create and inspect identity key files."""


@keys.command("new", context_settings=CONTEXT)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="File to create (mode 0600; never overwritten).")
@click.option("--encrypt", is_flag=True, help="Encrypt the key with a passphrase (prompted twice).")
@passphrase_env_option
@json_option
def keys_new(out: str, encrypt: bool, passphrase_env: str | None, as_json: bool) -> None:
    """Create a new Ed25519 identity key and print its id.

    \b
    Examples:
      medledger keys new --out alice.key
      medledger keys new --out alice.key --encrypt
      MY_PASS=... medledger keys new --out alice.key --passphrase-env MY_PASS
    """
    passphrase = read_passphrase(passphrase_env)
    if encrypt and passphrase is None:
        passphrase = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True)
    identity = Identity.generate()
    try:
        write_key_file(out, identity, passphrase)
    except KeyFileError as exc:
        fail(str(exc), EXIT_USAGE)
    emit(as_json, {"id": identity.id, "file": out, "encrypted": bool(passphrase)}, identity.id)


@keys.command("show", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def keys_show(file: str, as_json: bool) -> None:
    """Print the identity id held in FILE (no passphrase needed).

    \b
    Example:
      medledger keys show alice.key
    """
    try:
        ident_id = key_file_id(file)
        encrypted = is_encrypted(file)
    except KeyFileError as exc:
        fail(str(exc), EXIT_USAGE)
    emit(as_json, {"id": ident_id, "file": file, "encrypted": encrypted}, ident_id)


# -- node ---------------------------------------------------------------------------------------
@main.group(context_settings=CONTEXT)
def node() -> None:
    """Initialise and run a node."""


@node.command("init", context_settings=CONTEXT)
@click.option("--home", required=True, type=click.Path(file_okay=False), help="Directory for the node home (created).")
@click.option("--api-port", default=8700, show_default=True, type=click.IntRange(1, 65535), help="Port of the HTTP API.")
@click.option("--p2p-port", default=8800, show_default=True, type=click.IntRange(1, 65535), help="Port of the peer endpoint.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--chain-id", default="medledger-local", show_default=True, help="Name of the new network.")
@click.option("--name", default="institution-0", show_default=True, help="Name of this institution.")
@click.option("--observer", is_flag=True, help="Follow the chain without voting (replace genesis.json with the network's).")
@json_option
def node_init(home: str, api_port: int, p2p_port: int, host: str, chain_id: str, name: str, observer: bool, as_json: bool) -> None:
    """Create a one-validator network in HOME: key, config and genesis.

    \b
    Example:
      medledger node init --home ./node-home
      medledger node run --home ./node-home
    """
    try:
        [made] = init_network([Path(home)], chain_id=chain_id, names=[name], api_host=host,
                              api_ports=[api_port], p2p_ports=[p2p_port], observer=observer)
    except (HomeExists, KeyFileError) as exc:
        fail(str(exc), EXIT_USAGE)
    emit(as_json, {"home": str(made.home), "node_id": made.node_id, "api_url": made.api_url},
         lambda: f"node home: {made.home}\nnode id:   {made.node_id}\nAPI URL:   {made.api_url}\n"
                 f"run it with: medledger node run --home {made.home}")


@node.command("run", context_settings=CONTEXT)
@click.option("--home", required=True, type=click.Path(file_okay=False, exists=True), help="The node home.")
@passphrase_env_option
@click.option("--log-format", type=click.Choice(LOG_FORMATS),
              help="Log lines as text (default) or one JSON object per line (overrides node.log_format).")
@click.option("--log-level", "run_log_level", type=click.Choice(LOG_LEVELS),
              help="Log verbosity (overrides node.log_level).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM certificate: serve the API over https and the peer links over TLS (with --tls-key).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None, help="PEM private key of --tls-cert.")
@click.option("--unsafe-test-switches", is_flag=True, hidden=True, help="Test harness only: enable partition switches.")
@click.pass_context
def node_run(ctx: click.Context, home: str, passphrase_env: str | None, log_format: str | None,
             run_log_level: str | None, tls_cert: str | None, tls_key: str | None, unsafe_test_switches: bool) -> None:
    """Run the node in the foreground until Ctrl-C or SIGTERM.

    Logs go to stderr, one event per line (see node.log_format and node.log_level in
    docs/configuration.md); metrics are served at /metrics on the API port.

    \b
    Examples:
      medledger node run --home ./node-home
      medledger node run --home ./node-home --log-format json --log-level debug
      medledger node run --home ./node-home --tls-cert node.crt --tls-key node.key
    """
    from click.core import ParameterSource

    from node.devtools.byzantine import ByzantineConfigError, hook_from_env
    from node.home.tls import TlsError

    from node.daemon import run_node
    from storage.chain import StoreCorrupted
    from storage.kv import StorageError

    try:
        cfg = NodeHome(Path(home)).load_config()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    # precedence: `node run --log-level`, then `medledger --log-level` if given, then the config
    given_above = ctx.parent is not None and ctx.parent.get_parameter_source("log_level") == ParameterSource.COMMANDLINE
    level = run_log_level or (ctx.parent.params["log_level"] if given_above and ctx.parent else cfg.node.log_level)
    setup_logging(level, log_format or cfg.node.log_format)
    log = logging.getLogger("medledger.node")

    def refuse(message: str) -> NoReturn:
        if (log_format or cfg.node.log_format) == "json":
            log.error("cannot start: %s", message)
            sys.exit(EXIT_USAGE)
        fail(message, EXIT_USAGE)

    try:
        key_path = NodeHome(Path(home)).path(cfg.node.key_file)
        passphrase = read_passphrase(passphrase_env)
        if passphrase is None and key_path.exists() and is_encrypted(key_path):
            if not sys.stdin.isatty():
                fail(f"{key_path} is encrypted: pass --passphrase-env VAR", EXIT_USAGE)
            passphrase = click.prompt(f"Passphrase for {key_path}", hide_input=True)
        # a Byzantine test node is wired from the tools, never by the daemon itself
        hook = hook_from_env(unsafe_test_switches)
        run_node(Path(home), passphrase=passphrase, test_switches=unsafe_test_switches,
                 tls_cert=Path(tls_cert) if tls_cert else None, tls_key=Path(tls_key) if tls_key else None,
                 hook=hook)
    except (ConfigError, GenesisError, KeyFileError, StorageError, StoreCorrupted, TlsError, ByzantineConfigError) as exc:
        refuse(str(exc))
    except OSError as exc:
        refuse(f"cannot start: {exc.strerror or exc}")


@node.command("config", context_settings=CONTEXT)
@click.option("--home", required=True, type=click.Path(file_okay=False, exists=True), help="The node home.")
@json_option
def node_config(home: str, as_json: bool) -> None:
    """Print the effective configuration (file plus MEDLEDGER_* environment overrides).

    \b
    Example:
      MEDLEDGER_API_PORT=8080 medledger node config --home ./node-home
    """
    try:
        cfg = NodeHome(Path(home)).load_config()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    emit(as_json, cfg.to_dict(), lambda: dump_toml(cfg).rstrip())


@node.command("systemd-unit", context_settings=CONTEXT)
@click.option("--home", required=True, type=click.Path(file_okay=False), help="The node home on the target host (absolute).")
@click.option("--user", required=True, help="Dedicated non-root user the node runs as.")
@click.option("--group", help="Its group (default: the user's name).")
@click.option("--executable", help="Path of the `medledger` program (default: the one on PATH).")
@click.option("--passphrase-env", metavar="VAR", help="For an encrypted key: the variable holding its passphrase.")
@click.option("--environment-file", metavar="FILE", help="File (root-only, mode 0600) that sets VAR for the unit.")
def node_systemd_unit(home: str, user: str, group: str | None, executable: str | None,
                      passphrase_env: str | None, environment_file: str | None) -> None:
    """Print a systemd unit that runs the node of HOME as USER (restart on failure, hardened).

    \b
    Example:
      medledger node systemd-unit --home /var/lib/medledger --user medledger \\
        > /etc/systemd/system/medledger.service
      systemctl daemon-reload && systemctl enable --now medledger
    """
    import shutil

    from node.home.systemd import UnitError, render_unit

    program = executable or shutil.which("medledger")
    if not program:
        fail("no `medledger` program on PATH; pass --executable PATH", EXIT_USAGE)
    try:
        click.echo(render_unit(home, user=user, group=group, executable=str(program),
                               passphrase_env=passphrase_env, environment_file=environment_file), nl=False)
    except UnitError as exc:
        fail(str(exc), EXIT_USAGE)


# -- status, transactions, blocks -----------------------------------------------------------------
@main.command(context_settings=CONTEXT)
@node_option
@json_option
def status(node_url: str, as_json: bool) -> None:
    """Show a node's chain, height, last block, state root and mempool.

    \b
    Example:
      medledger status --node http://127.0.0.1:8700 --json
    """
    s = run_client(lambda: Client(node_url).status())

    def text() -> str:
        lines = [
            f"chain:       {s['chain_id']}",
            f"node:        {s.get('name', '')} {s['node_id']}",
            f"height:      {s['height']}   view: {s.get('view', 0)}   syncing: {'yes' if s.get('syncing') else 'no'}",
            f"last block:  {s['last_block_hash']}",
            f"state root:  {s['state_root']}",
            f"peers:       {len(s.get('peers', []))} connected" + "".join(f"\n  - {p[:16]}..." for p in s.get("peers", [])),
            f"mempool:     {s['mempool_size']} transactions",
            f"validators:  {len(s['validators'])}" + "".join(f"\n  - {v['name']} {v['id'][:16]}... {v['address']}" for v in s["validators"]),
        ]
        return "\n".join(lines)

    emit(as_json, s, text)


@main.group(context_settings=CONTEXT)
def identity() -> None:
    """Register identities on the ledger."""


DEFAULT_DEVNET_NODES = 4

ROLES = ["patient", "practitioner", "researcher"]


def submit_and_report(client: Client, ident: Identity, tx_type: str, body: dict[str, Any], *, wait: bool, timeout: float, as_json: bool) -> None:
    result = run_client(lambda: client.send(ident, tx_type, body, wait=wait, timeout=timeout))
    st = result["status"]
    if st == "committed":
        emit(as_json, result, f"committed at height {result['height']} (tx {result['tx_hash']})")
    elif st == "pending":
        emit(as_json, result, f"pending (tx {result['tx_hash']})")
        if wait:
            sys.exit(EXIT_REFUSED)
    else:
        if as_json:
            emit(True, result, "")
        message = result.get("message") or (f"the ledger refused it (tx {result['tx_hash']}, recorded at height "
                                            f"{result['height']})" if result.get("height") else f"tx {result['tx_hash']}")
        fail(explain(str(st), message), EXIT_REFUSED) if not as_json else sys.exit(EXIT_REFUSED)


@identity.command("register", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="Key file of the identity to register.")
@click.option("--role", required=True, type=click.Choice(ROLES), help="The role this identity takes.")
@click.option("--label", default="", help="Display name (institutions, practitioners, researchers; never for patients).")
@node_option
@click.option("--institution-key", type=click.Path(dir_okay=False, exists=True),
              help="Key of the institution that attests this identity (required for practitioners and researchers).")
@passphrase_env_option
@click.option("--no-wait", is_flag=True, help="Return once accepted instead of waiting for the commit.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the commit.")
@json_option
def identity_register(key_file: str, role: str, label: str, institution_key: str | None, node_url: str, passphrase_env: str | None,
                      no_wait: bool, timeout: float, as_json: bool) -> None:
    """Register KEY's identity with ROLE; waits for the commit and prints the outcome.

    Practitioners and researchers are registered under an institution, which signs an
    attestation with its key (--institution-key). Patients register with their own key alone.

    \b
    Examples:
      medledger keys new --out alice.key
      medledger identity register --key alice.key --role patient --node http://127.0.0.1:8700
      medledger identity register --key drb.key --role practitioner --label "Dr B" \\
          --institution-key devnet/node1/institution.key --node http://127.0.0.1:8701
    """
    ident = load_identity(key_file, passphrase_env)
    body: dict[str, Any] = {"role": role}
    if label:
        body["label"] = label
    if institution_key:
        from node.app.types.identity import attest

        inst = load_identity(institution_key, passphrase_env)
        client = Client(node_url)
        body["institution"] = inst.public_key
        body["attestation"] = run_client(lambda: attest(inst, chain_id=client.chain_id, registrant=ident.public_key, role=role))
    submit_and_report(Client(node_url), ident, "identity.register", body, wait=not no_wait, timeout=timeout, as_json=as_json)


@main.group(context_settings=CONTEXT)
def tx() -> None:
    """Look up transactions."""


def reader_key_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """--key for explorer reads: the node shows a transaction that concerns a patient whole only
    to a signed request by one of its parties (docs/security-compliance.md)."""
    f = click.option("--key", "key_file", default=None, type=click.Path(dir_okay=False, exists=True),
                     help="Sign the read with this key: transactions you are a party to are shown whole.")(f)
    return passphrase_env_option(f)


def _reader(key_file: str | None, passphrase_env: str | None) -> Identity | None:
    return load_identity(key_file, passphrase_env) if key_file else None


def _check_proof(tx_hash: str, p: dict[str, Any], tx_root: bytes) -> dict[str, bool]:
    """The proof's checks: the leaf hashes up to the root; with the leaf (shown to a party), the
    leaf is the transaction (its SHA-256 is the tx hash) and its leaf hash is the one proven."""
    import hashlib

    from node.core.merkle import leaf_hash, verify_inclusion_of_hash

    checks = {"merkle_proof": verify_inclusion_of_hash(bytes.fromhex(p["leaf_hash"]), p["index"], p["size"],
                                                       [bytes.fromhex(x) for x in p["path"]], tx_root)}
    if "leaf" in p:
        leaf = bytes.fromhex(p["leaf"])
        checks["leaf_is_tx"] = hashlib.sha256(leaf).hexdigest() == tx_hash and leaf_hash(leaf).hex() == p["leaf_hash"]
    return checks


@tx.command("show", context_settings=CONTEXT)
@click.argument("tx_hash")
@click.option("--proof", is_flag=True, help="Also fetch and check the Merkle inclusion proof.")
@reader_key_option
@node_option
@json_option
def tx_show(tx_hash: str, proof: bool, key_file: str | None, passphrase_env: str | None, node_url: str, as_json: bool) -> None:
    """Show a transaction's status: pending, or committed with height, index and result.

    With --proof the Merkle proof is checked from the leaf's hash (public); with --key of one of
    the transaction's parties the leaf is given too, and checked to be the transaction.

    \b
    Example:
      medledger tx show <tx hash> --proof --node http://127.0.0.1:8700
    """
    tx_hash_arg(tx_hash, "TX_HASH")
    client = Client(node_url)
    s = run_client(lambda: client.tx(tx_hash))
    if proof and s.get("status") == "committed":
        reader = _reader(key_file, passphrase_env)
        p = run_client(lambda: client.tx_proof(tx_hash, signer=reader))
        checks = _check_proof(tx_hash, p, bytes.fromhex(p["tx_root"]))
        s["proof"] = {**p, "checks": checks, "verified": all(checks.values())}
    emit(as_json, s, lambda: " ".join(f"{k}={v}" for k, v in s.items() if k != "proof") + (f" proof={'valid' if s['proof']['verified'] else 'INVALID'}" if "proof" in s else ""))


@main.group(context_settings=CONTEXT)
def block() -> None:
    """Look at blocks."""


@block.command("show", context_settings=CONTEXT)
@click.argument("height")
@reader_key_option
@node_option
@json_option
def block_show(height: str, key_file: str | None, passphrase_env: str | None, node_url: str, as_json: bool) -> None:
    """Show block HEIGHT (a number or `latest`) with its header and transactions.

    A transaction that concerns a patient shows only its hash and result, unless --key is the
    key of one of its parties (its sender, the patient, their guardian, the node's institution).

    \b
    Examples:
      medledger block show latest
      medledger block show 12 --json --key patient.key
    """
    reader = _reader(key_file, passphrase_env)
    b = run_client(lambda: Client(node_url).block(height, signer=reader))

    def text() -> str:
        h = b["header"]
        lines = [f"block {b['height']}  {b['hash']}", f"  time {h['timestamp_ms']}  proposer {h['proposer'][:16]}...",
                 f"  state root {h['state_root']}", f"  {len(b['txs'])} transactions"]
        lines += [f"    {t['index']:>4} {t['hash'][:16]}... {t.get('type') or '(withheld)'} -> {t['result']}" for t in b["txs"]]
        return "\n".join(lines)

    emit(as_json, b, text)



# -- records, consent, audit ------------------------------------------------------------------------
def _date_ms(text: str, option: str, *, end_of_day: bool = False) -> int:
    """A day (YYYY-MM-DD, UTC; its end with end_of_day) or an ISO 8601 instant, in ms since the epoch."""
    import datetime as _dt

    try:
        if "T" in text:
            moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_dt.timezone.utc)
        else:
            day = _dt.date.fromisoformat(text)
            moment = _dt.datetime.combine(day, _dt.time.max if end_of_day else _dt.time.min, tzinfo=_dt.timezone.utc)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date like 2027-12-31 or an instant like 2027-12-31T08:00:00Z",
                                 param_hint=option) from None
    return int(moment.timestamp() * 1000)


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def check_types(text: str, option: str, *, allow_any: bool) -> None:
    """Refuse a resource type that is not a FHIR R4 name before anything is signed, with the
    closest name (the ledger refuses it too, but a typo should not cost a round trip)."""
    from node.app.fhir_types import is_resource_type, unknown_type_message

    for name in _split(text):
        if not (allow_any and name == "*") and not is_resource_type(name):
            fail(f"{option}: {unknown_type_message(name)}", EXIT_USAGE)


def _day(ms: Any) -> str:
    import datetime as _dt

    if not isinstance(ms, int):
        return "?"
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def consent_lines(c: dict[str, Any]) -> str:
    """A consent as a user checks it: who, what (types, excluded types, records), why and until when."""
    scope = []
    if c.get("resource_types"):
        scope.append("types " + ",".join(c["resource_types"]))
    if c.get("deny_types"):
        scope.append("except " + ",".join(c["deny_types"]))
    if c.get("record_ids"):
        scope.append("records " + ",".join(str(r)[:12] + "..." for r in c["record_ids"]))
    return (f"{c.get('id')}  {c.get('status', ''):<8} to {c.get('grantee_kind')}:{str(c.get('grantee'))[:16]}\n"
            f"    scope {'; '.join(scope) or '-'}\n"
            f"    purposes {','.join(c.get('purposes', []))}   valid {_day(c.get('valid_from'))} to {_day(c.get('valid_until'))}")


def _report_tx(result: dict[str, Any], as_json: bool, ok_text: str, *, refuse_on: tuple[str, ...] = ()) -> None:
    st = result.get("status")
    if st == "committed" and st not in refuse_on:
        emit(as_json, result, ok_text)
        return
    if as_json:
        emit(True, result, "")
        sys.exit(EXIT_REFUSED)
    rule = (result.get("decision") or {}).get("rule")
    if st == "denied" and rule:
        fail(f"denied: {explain(rule)}", EXIT_REFUSED)
    message = result.get("message") or (f"the ledger refused it (tx {result.get('tx_hash')}, height {result['height']})"
                                        if result.get("height") else f"tx {result.get('tx_hash')}")
    fail(explain(str(st), message), EXIT_REFUSED)


def _transact(node_url: str, ident: Identity, tx_type: str, body: dict[str, Any], for_patient: str | None = None) -> dict[str, Any]:
    """Sign, submit and wait for one healthcare transaction (on a patient's behalf with --for)."""
    from node.client import HealthClient

    if for_patient:
        body["on_behalf_of"] = identity_arg(for_patient, "--for")
    return run_client(lambda: HealthClient(node_url).transact(ident, tx_type, body))


def for_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--for", "for_patient", default=None, help="Act for this patient (as their guardian).")(f)


@main.group(context_settings=CONTEXT)
def record() -> None:
    """Write, read, list and erase encrypted health records."""


@record.command("put", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The author's (practitioner's) key.")
@click.option("--patient", required=True, help="The patient's identity id.")
@click.option("--file", "resource_file", required=True, type=click.Path(dir_okay=False, exists=True), help="A FHIR R4 resource as JSON.")
@click.option("--subject", default=None, metavar="Patient/LOCAL-ID",
              help="The local reference your file uses for this patient (your system's id), if it does not use "
              "Patient/<patient id>: references to it are taken as the patient's, any other patient's refused.")
@node_option
@passphrase_env_option
@json_option
def record_put(key_file: str, patient: str, resource_file: str, subject: str | None, node_url: str,
               passphrase_env: str | None, as_json: bool) -> None:
    """Validate, encrypt and store a FHIR resource at your institution's node; prints the record id.

    The resource is encrypted in this process with a fresh key; the node stores only the
    ciphertext, and the ledger gets the record id, patient, type and the ciphertext's hash.
    Every patient the resource names (subject, patient, beneficiary; each entry of a Bundle)
    must be --patient: as Patient/<patient id>, an identifier of system urn:medledger:identity,
    or the local reference given with --subject. Another patient's record is refused.

    \b
    Example:
      medledger record put --key drA.key --patient <patient id> --file obs.json --node http://127.0.0.1:8700
    """
    from node.client import HealthClient, RecordError

    identity_arg(patient, "--patient")
    author = load_identity(key_file, passphrase_env)
    try:
        data = Path(resource_file).read_bytes()
    except OSError as exc:
        fail(f"--file: cannot read {resource_file}: {exc.strerror or exc}", EXIT_USAGE)

    def put() -> Any:
        # a RecordError is a ClientError: catch it before run_client takes it for an unreachable node
        try:
            return HealthClient(node_url).put_record(author, patient, data, subject=subject)
        except RecordError as exc:
            return exc

    result = run_client(put)
    if isinstance(result, RecordError):
        if result.code == "invalid_fhir":
            fail(f"--file: {result.message} (a FHIR R4 resource as JSON; see docs/examples/)", EXIT_USAGE)
        if result.code == "wrong_patient":
            fail(f"--file: {result.message}", EXIT_USAGE)  # the file is the writer's to fix
        fail(explain(result.code, result.message), EXIT_REFUSED)
    _report_tx(result, as_json, result.get("record_id", ""))


@record.command("get", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The reader's key.")
@click.option("--record", "record_id", required=True, help="The record id.")
@click.option("--purpose", required=True, type=click.Choice(["treatment", "payment", "operations", "research", "emergency"]), help="Purpose of use.")
@click.option("--reason", default="", type=click.Choice(["", *BREAKGLASS_REASON_CODES]), metavar="CODE",
              help="Why consent cannot be asked, for purpose emergency (required then): one of "
              + ", ".join(BREAKGLASS_REASON_CODES) + ". It is on the chain; free text goes in --note.")
@click.option("--note", default="", help="Your own account of the emergency: it stays OFF the chain (keep it in your "
              "notes); only its salted SHA-256 goes on the chain, and the salt is printed for the review.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="Where to write the decrypted resource.")
@node_option
@passphrase_env_option
@json_option
def record_get(key_file: str, record_id: str, purpose: str, reason: str, note: str, out_file: str, node_url: str,
               passphrase_env: str | None, as_json: bool) -> None:
    """Ask the ledger for access, then fetch, verify and decrypt the record.

    The access request is decided on the ledger by the patient's consents (or break-glass for
    purpose emergency) and recorded in the patient's audit trail, denied or granted. A denial
    exits with status 1 and the reason.

    \b
    Example:
      medledger record get --key drB.key --record <rid> --purpose treatment --out obs.json
    """
    from node.client import HealthClient, RecordError

    from node.app.notes import commit_note

    record_arg(record_id)
    reader = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    note_salt, note_hash = commit_note(note) if note else (None, None)
    result = run_client(lambda: client.request_access(reader, record_id, purpose, reason, note_hash))
    if note_salt is not None:
        result.update(note_salt=note_salt.hex(), note_hash=note_hash.hex() if note_hash else None)
    decision = result.get("decision") or {}
    if result.get("status") != "committed":
        if as_json:
            emit(True, result, "")
            sys.exit(EXIT_REFUSED)
        if result.get("status") == "denied" and decision.get("rule"):
            fail(f"access denied: {explain(decision['rule'])}", EXIT_REFUSED)
        fail(explain(str(result.get("status")), str(result.get("message") or "")), EXIT_REFUSED)
    try:
        plaintext = run_client(lambda: client.fetch_record(reader, record_id))
    except RecordError as exc:
        fail(explain(exc.code, exc.message), EXIT_REFUSED)
    try:
        fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        fail(f"cannot write {out_file}: {exc.strerror}", EXIT_USAGE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(plaintext)
    result["out"] = out_file
    kept = f"\nkeep your note with its salt {note_salt.hex()} for the review" if note_salt is not None else ""
    emit(as_json, result, f"access granted ({decision.get('rule', '')}); record written to {out_file}{kept}")


@record.command("list", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help=READER_KEY_HELP)
@click.option("--patient", default=None, help="The patient's identity id (default: the key's).")
@node_option
@passphrase_env_option
@json_option
def record_list(key_file: str, patient: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """List a patient's records (metadata only: id, type, custodian, author, erased).

    \b
    Example:
      medledger record list --key alice.key --node http://127.0.0.1:8700
    """
    if patient:
        identity_arg(patient, "--patient")
    reader = load_identity(key_file, passphrase_env)
    pid = patient or reader.id
    doc = run_client(lambda: HealthClient(node_url).patient_records(reader, pid))
    emit(as_json, doc, lambda: "\n".join(
        f"{r['id']}  {r.get('resource_type', '?'):<18} custodian {str(r.get('custodian', ''))[:16]}...{'  ERASED' if r.get('erased') else ''}{'  CONTESTED' if r.get('contested') else ''}"
        for r in doc["records"]) or "no records")


@record.command("erase", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The patient's (or guardian's) key.")
@click.option("--record", "record_id", required=True, help="The record to erase.")
@for_option
@node_option
@passphrase_env_option
@json_option
def record_erase(key_file: str, record_id: str, for_patient: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Erase a record: the custodian deletes the ciphertext and every wrapped key.

    The ledger keeps the ciphertext's hash and the erasure event; later reads fail with "erased".

    \b
    Example:
      medledger record erase --key alice.key --record <record id>
    """
    body: dict[str, Any] = {"record": record_arg(record_id)}
    ident = load_identity(key_file, passphrase_env)
    result = _transact(node_url, ident, "record.erase", body, for_patient)
    _report_tx(result, as_json, f"record {record_id} erased (tx {result.get('tx_hash')})")


@record.command("contest", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The patient's (or guardian's) key.")
@click.option("--record", "record_id", required=True, help="The record to contest.")
@click.option("--reason", default="no_treatment", show_default=True, type=click.Choice(list(CONTEST_REASON_CODES)),
              help="Why: " + "; ".join(f"{k}: {v}" for k, v in CONTEST_REASON_CODES.items()) + ".")
@for_option
@node_option
@passphrase_env_option
@json_option
def record_contest(key_file: str, record_id: str, reason: str, for_patient: str | None, node_url: str,
                   passphrase_env: str | None, as_json: bool) -> None:
    """Contest a record in your chart that you do not recognise or believe wrong.

    The record is marked contested in the chart (`record list`) and in your audit trail; it is
    not erased (`record erase` does that).

    \b
    Example:
      medledger record contest --key alice.key --record <record id> --reason not_my_record
    """
    from node.core.crypto import parse_id

    ident = load_identity(key_file, passphrase_env)
    try:
        body: dict[str, Any] = {"record": parse_id(record_id), "reason": reason}
    except ValueError:
        fail("--record must be a record id: 64 hex characters (see `medledger record list`)", EXIT_USAGE)
    result = _transact(node_url, ident, "record.contest", body, for_patient)
    _report_tx(result, as_json, f"record {record_id} contested ({reason}) (tx {result.get('tx_hash')})")


@main.group(context_settings=CONTEXT)
def consent() -> None:
    """Grant and revoke access to a patient's records."""


@consent.command("grant", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The patient's (or guardian's) key.")
@click.option("--to", "grantee", required=True, help="A practitioner or institution id, or study:STUDY.")
@click.option("--types", default="", help="Resource types, comma-separated (* for all).")
@click.option("--records", default="", help="Record ids, comma-separated.")
@click.option("--deny-types", default="", help="Resource types excluded even if --types covers them.")
@click.option("--purpose", "purposes", required=True, help="Purpose(s) of use, comma-separated: treatment, payment, operations, research, emergency.")
@click.option("--until", "until", required=True, help="Last day the consent is valid (YYYY-MM-DD, inclusive, UTC), or an instant (2027-12-31T08:00:00Z).")
@click.option("--from", "from_date", default=None, help="First day (or instant) the consent is valid (default: now).")
@for_option
@node_option
@passphrase_env_option
@json_option
def consent_grant(key_file: str, grantee: str, types: str, records: str, deny_types: str, purposes: str, until: str,
                  from_date: str | None, for_patient: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Grant access to your records; prints the consent id.

    \b
    Examples:
      medledger consent grant --key alice.key --to <practitioner id> --types Observation --purpose treatment --until 2027-12-31
      medledger consent grant --key alice.key --to <institution id> --types '*' --deny-types Condition --purpose treatment --until 2027-06-30
      medledger consent grant --key alice.key --to study:DIAB-2027 --types Patient,Observation --purpose research --until 2028-01-01
    """
    from node.client import HealthClient

    check_types(types, "--types", allow_any=True)
    check_types(deny_types, "--deny-types", allow_any=False)
    body: dict[str, Any] = {"purposes": _split(purposes), "valid_until": _date_ms(until, "--until", end_of_day=True)}
    ident = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    if grantee.startswith("study:"):
        body["grantee_kind"], body["grantee"] = "study", grantee[len("study:"):]
    else:
        gid = identity_arg(grantee.split(":", 1)[-1], "--to")
        kind = grantee.split(":", 1)[0] if ":" in grantee else None
        if kind is None:
            found = run_client(lambda: client.get(f"/v1/identities/{gid.hex()}"))
            kind = found.get("role")
        if kind not in ("practitioner", "institution"):
            fail(f"--to must name a practitioner, an institution or study:ID (that id is a {kind})", EXIT_USAGE)
        body["grantee_kind"], body["grantee"] = kind, gid
    if _split(types):
        body["resource_types"] = _split(types)
    if _split(records):
        body["record_ids"] = [record_arg(r, "--records") for r in _split(records)]
    if _split(deny_types):
        body["deny_types"] = _split(deny_types)
    if from_date:
        body["valid_from"] = _date_ms(from_date, "--from")
    if for_patient:
        body["on_behalf_of"] = identity_arg(for_patient, "--for")
    result = run_client(lambda: client.transact(ident, "consent.grant", body))
    result["consent_id"] = result.get("tx_hash")
    _report_tx(result, as_json, str(result["consent_id"]))


@consent.command("revoke", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The patient's (or guardian's) key.")
@click.option("--consent", "consent_id", required=True, help="The consent id printed by `consent grant`.")
@for_option
@node_option
@passphrase_env_option
@json_option
def consent_revoke(key_file: str, consent_id: str, for_patient: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Revoke a consent; later access requests that relied on it are denied.

    \b
    Example:
      medledger consent revoke --key alice.key --consent <consent id>
    """

    body: dict[str, Any] = {"consent": tx_hash_arg(consent_id, "--consent")}
    ident = load_identity(key_file, passphrase_env)
    result = _transact(node_url, ident, "consent.revoke", body, for_patient)
    _report_tx(result, as_json, f"consent {consent_id} revoked")


@consent.command("list", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help=READER_KEY_HELP)
@click.option("--patient", default=None, help="The patient's identity id (default: the key's).")
@click.option("--fhir", "as_fhir", is_flag=True, help="Print FHIR R4 Consent resources.")
@node_option
@passphrase_env_option
@json_option
def consent_list(key_file: str, patient: str | None, as_fhir: bool, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """List a patient's consents with their status (active, expired, revoked).

    \b
    Examples:
      medledger consent list --key alice.key
      medledger consent list --key guardian.key --patient <patient id> --fhir
    """
    if patient:
        identity_arg(patient, "--patient")
    reader = load_identity(key_file, passphrase_env)
    pid = patient or reader.id
    doc = run_client(lambda: HealthClient(node_url).consents(reader, pid, fhir=as_fhir))
    if as_fhir:
        emit(True, doc, "")
        return
    emit(as_json, doc, lambda: "\n".join(consent_lines(c) for c in doc["consents"]) or "no consents")


@main.group(context_settings=CONTEXT, invoke_without_command=True)
@click.option("--key", "key_file", type=click.Path(dir_okay=False, exists=True), help=READER_KEY_HELP)
@click.option("--patient", default=None, help="The patient's identity id (default: the key's).")
@click.option("--fhir", "as_fhir", is_flag=True, help="Print FHIR R4 AuditEvent resources.")
@node_option
@passphrase_env_option
@json_option
@click.pass_context
def audit(ctx: click.Context, key_file: str | None, patient: str | None, as_fhir: bool, node_url: str,
          passphrase_env: str | None, as_json: bool) -> None:
    """A patient's audit trail: who did what with their records, when and why.

    \b
    Examples:
      medledger audit --key alice.key --patient <patient id> --node http://127.0.0.1:8700
      medledger audit --key alice.key --patient <patient id> --fhir
      medledger audit disclosures --key devnet/node0/institution.key --since 2026-01-01
      medledger audit verify --tx <tx hash>
    """
    if ctx.invoked_subcommand is not None:
        return
    if not key_file:
        fail("give --key: reads of a patient's audit trail are signed with the reader's key", EXIT_USAGE)
    if patient:
        identity_arg(patient, "--patient")
    reader = load_identity(key_file, passphrase_env)
    pid = patient or reader.id
    doc = run_client(lambda: HealthClient(node_url).audit(reader, pid, fhir=as_fhir))
    if as_fhir:
        emit(True, doc, "")
        return

    def text() -> str:
        import datetime as _dt

        lines = []
        for e in doc["entries"]:
            when = _dt.datetime.fromtimestamp(e.get("time_ms", 0) / 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            what = e.get("event", "?")
            extra = " ".join(f"{k}={v}" for k, v in e.items() if k in ("decision", "purpose", "reason", "rule") and v)
            lines.append(f"{when}  h{e.get('height', '?'):<5} {what:<20} by {str(e.get('actor', ''))[:16]}  {extra}")
        return "\n".join(lines) or "no audit entries"

    emit(as_json, doc, text)


@audit.command("disclosures", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The institution's key.")
@click.option("--since", required=True, help="First day (YYYY-MM-DD, UTC).")
@click.option("--until", "until", default=None, help="Last day (default: now).")
@click.option("--fhir", "as_fhir", is_flag=True, help="Print FHIR R4 AuditEvent resources.")
@node_option
@passphrase_env_option
@json_option
def audit_disclosures(key_file: str, since: str, until: str | None, as_fhir: bool, node_url: str, passphrase_env: str | None,
                      as_json: bool) -> None:
    """An institution's accounting of disclosures for a period.

    \b
    Example:
      medledger audit disclosures --key devnet/node0/institution.key --since 2026-01-01 --until 2026-12-31 [--fhir]
    """
    since_ms = _date_ms(since, '--since')
    until_ms = _date_ms(until, '--until', end_of_day=True) if until else None
    inst = load_identity(key_file, passphrase_env)
    require_institution_key(HealthClient(node_url), inst, key_file)
    if as_fhir:
        emit(True, run_client(lambda: HealthClient(node_url).disclosures(inst, since_ms=since_ms, until_ms=until_ms, fhir=True)), "")
        return
    doc = run_client(lambda: HealthClient(node_url).disclosures(inst, since_ms=since_ms, until_ms=until_ms))
    emit(as_json, doc, lambda: "\n".join(
        f"h{d.get('height', '?'):<6} {d.get('event', ''):<18} patient {str(d.get('patient', ''))[:16]} purpose {d.get('purpose', '')}"
        for d in doc["disclosures"]) or "no disclosures in that period")


def require_institution_key(client: HealthClient, ident: Identity, key_file: str) -> None:
    """An accounting of disclosures is an institution's: any other key would read an empty list
    and believe nothing was disclosed."""
    try:
        found = client.get(f"/v1/identities/{ident.id}", signer=ident)
    except ApiError as exc:
        if exc.code not in ("unknown_identity", "not_found"):
            fail(explain(exc.code, exc.message), EXIT_REFUSED)
        found = {}
    except ClientError as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    role = found.get("role") if isinstance(found, dict) else None
    if role != "institution":
        what = f"a {role}'s key" if role else "not a registered identity"
        fail(f"--key: {key_file} is {what}, not an institution's: disclosures are accounted per institution; use the "
             "institution's key (e.g. devnet/node0/institution.key)", EXIT_USAGE)


@audit.command("verify", context_settings=CONTEXT)
@click.option("--tx", "tx_hash", required=True, help="The transaction hash of an audit entry.")
@reader_key_option
@node_option
@json_option
def audit_verify(tx_hash: str, key_file: str | None, passphrase_env: str | None, node_url: str, as_json: bool) -> None:
    """Check an audit entry's Merkle inclusion proof and its block's commit certificate.

    The proof ties the transaction to the header's tx_root; the header's hash must be what
    2f+1 validators of the genesis signed in the block's commit certificate. The node gives the
    leaf (the encoded transaction, whose SHA-256 is the tx hash) only to one of the
    transaction's parties: sign with --key (the patient's key for their audit trail) to check
    that the proven leaf is this transaction.

    \b
    Example:
      medledger audit verify --tx <tx hash from medledger audit --json> --key patient.key
    """
    from consensus.certificate import CommitCertificate, verify_certificate
    from consensus.validators import ValidatorSet
    from node.chain.block import Header
    from node.core.crypto import Ed25519Verifier

    tx_hash_arg(tx_hash, "--tx")
    client = Client(node_url)
    reader = _reader(key_file, passphrase_env)
    proof = run_client(lambda: client.tx_proof(tx_hash, signer=reader))
    block = run_client(lambda: client.block(proof["height"]))
    status = run_client(lambda: client.status())
    h = block["header"]
    header = Header(chain_id=h["chain_id"], height=h["height"], prev_hash=bytes.fromhex(h["prev_hash"]), timestamp_ms=h["timestamp_ms"],
                    proposer=bytes.fromhex(h["proposer"]), tx_root=bytes.fromhex(h["tx_root"]), results_root=bytes.fromhex(h["results_root"]),
                    state_root=bytes.fromhex(h["state_root"]), prev_certificate=bytes.fromhex(h["prev_certificate"]))
    # without the leaf (not a party, or no --key) the proof says that the leaf hash is in the
    # block, not that this tx hash is that leaf: `leaf_is_tx` fails and says so
    proven = _check_proof(tx_hash, proof, header.tx_root)
    checks = {"leaf_is_tx": proven.get("leaf_is_tx", False), "merkle_proof": proven["merkle_proof"],
              "header_hash": header.hash().hex() == block["hash"]}
    cert_ok = False
    if block.get("certificate"):
        cert = CommitCertificate.decode(bytes.fromhex(block["certificate"]))
        validators = ValidatorSet(validators=tuple(bytes.fromhex(v["id"]) for v in status["validators"]))
        cert_ok = cert.digest == header.hash() and cert.height == header.height and verify_certificate(
            cert, chain_id=status["chain_id"], validators=validators, verifier=Ed25519Verifier())
    checks["commit_certificate"] = cert_ok
    ok = all(checks.values())
    result = {"tx_hash": tx_hash, "height": proof["height"], "block_hash": block["hash"], "verified": ok, "checks": checks}
    if "leaf" not in proof:
        result["leaf_withheld"] = "the node shows the leaf only to the transaction's parties: add --key (e.g. the patient's key)"
    emit(as_json, result, lambda: "\n".join([f"{k:>20}: {'ok' if v else 'FAILED'}" for k, v in checks.items()] +
                                             [f"{'verdict':>20}: {'VERIFIED' if ok else 'NOT VERIFIED'}"] +
                                             ([f"{'note':>20}: {result['leaf_withheld']}"] if "leaf_withheld" in result else [])))
    if not ok:
        sys.exit(EXIT_REFUSED)


@main.group(context_settings=CONTEXT)
def patient() -> None:
    """A patient's own settings: guardian and break-glass choice."""


@patient.command("guardian", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The patient's key.")
@click.option("--guardian", "guardian_id", default=None, help="The guardian's identity id.")
@click.option("--clear", is_flag=True, help="Remove the guardian.")
@node_option
@passphrase_env_option
@json_option
def patient_guardian(key_file: str, guardian_id: str | None, clear: bool, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Name (or clear) a guardian who may grant, revoke and erase on the patient's behalf.

    \b
    Example:
      medledger patient guardian --key minor.key --guardian <parent id>
    """
    if clear == bool(guardian_id):
        fail("give either --guardian ID or --clear", EXIT_USAGE)
    body: dict[str, Any] = {"guardian": None if clear else identity_arg(str(guardian_id), "--guardian")}
    ident = load_identity(key_file, passphrase_env)
    result = _transact(node_url, ident, "patient.set_guardian", body)
    _report_tx(result, as_json, "guardian cleared" if clear else f"guardian set to {guardian_id}")


@patient.command("breakglass", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The patient's (or guardian's) key.")
@click.option("--opt-out/--opt-in", "opt_out", required=True, help="Refuse (or allow again) emergency access without consent.")
@for_option
@node_option
@passphrase_env_option
@json_option
def patient_breakglass(key_file: str, opt_out: bool, for_patient: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Opt out of (or back into) break-glass emergency access.

    \b
    Example:
      medledger patient breakglass --key alice.key --opt-out
    """

    ident = load_identity(key_file, passphrase_env)
    body: dict[str, Any] = {"opt_out": opt_out}
    result = _transact(node_url, ident, "consent.breakglass", body, for_patient)
    _report_tx(result, as_json, "opted out of break-glass access" if opt_out else "break-glass access allowed again")


@audit.command("breakglass", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The institution's key.")
@node_option
@passphrase_env_option
@json_option
def audit_breakglass(key_file: str, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Break-glass accesses to the institution's records awaiting review.

    \b
    Example:
      medledger audit breakglass --key devnet/node0/institution.key
    """
    inst = load_identity(key_file, passphrase_env)
    doc = run_client(lambda: HealthClient(node_url).breakglass_pending(inst))
    emit(as_json, doc, lambda: "\n".join(
        f"{p.get('tx', p.get('access', ''))}  h{p.get('height', '?')} by {str(p.get('requester', p.get('actor', '')))[:16]} reason: {p.get('reason', '')}"
        for p in doc["pending"]) or "nothing awaits review")


@audit.command("review", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The custodian institution's key.")
@click.option("--access", "access_tx", required=True, help="The break-glass access request's transaction hash.")
@click.option("--outcome", required=True, type=click.Choice(["justified", "unjustified"]), help="The review's finding.")
@click.option("--note", default="", help="Your note: it stays OFF the chain (keep it); only its salted SHA-256 goes on the chain.")
@click.option("--suspend", is_flag=True, help="With --outcome unjustified: suspend the practitioner from break-glass "
              "(30 days) and revoke every open break-glass grant it holds.")
@node_option
@passphrase_env_option
@json_option
def audit_review(key_file: str, access_tx: str, outcome: str, note: str, suspend: bool, node_url: str,
                 passphrase_env: str | None, as_json: bool) -> None:
    """Record the review of a break-glass access (it then leaves the review queue).

    An unjustified finding revokes the grant (and the practitioner's other open break-glass
    grants on this patient's records here): the custodian stops serving them, and the patient's
    audit trail says so.

    \b
    Example:
      medledger audit review --key devnet/node0/institution.key --access <tx hash> --outcome justified
      medledger audit review --key devnet/node0/institution.key --access <tx hash> --outcome unjustified --suspend
    """
    from node.app.notes import commit_note

    access = tx_hash_arg(access_tx, "--access")
    inst = load_identity(key_file, passphrase_env)
    if suspend and outcome != "unjustified":
        fail("--suspend goes with --outcome unjustified", EXIT_USAGE)
    body: dict[str, Any] = {"access": access, "outcome": outcome}
    note_salt = None
    if note:
        note_salt, body["note_hash"] = commit_note(note)
    if suspend:
        body["suspend"] = True
    result = _transact(node_url, inst, "breakglass.review", body)
    if note_salt is not None:
        result["note_salt"] = note_salt.hex()
    kept = f"; keep your note with its salt {note_salt.hex()}" if note_salt is not None else ""
    _report_tx(result, as_json, f"review recorded: {outcome}{' (practitioner suspended)' if suspend else ''}{kept}")


@main.group(context_settings=CONTEXT)
def institution() -> None:
    """Admit new institutions by a vote of the validators."""


@institution.command("admit", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="A validator's institution key.")
@click.option("--institution", "candidate", required=True, help="The new institution's identity id.")
@click.option("--name", required=True, help="The new institution's name (every approval must give the same).")
@node_option
@passphrase_env_option
@json_option
def institution_admit(key_file: str, candidate: str, name: str, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Approve an institution's admission; it is admitted once a quorum of validators approved.

    \b
    Example (run by enough validators):
      medledger institution admit --key devnet/node0/institution.key --institution <id> --name "St Mary"
    """
    from node.client import HealthClient

    cid = identity_arg(candidate, "--institution")
    ident = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    result = run_client(lambda: client.transact(ident, "governance.admit_institution", {"institution": cid, "name": name}))
    if result.get("status") == "committed":
        try:
            result["admission"] = client.get(f"/v1/identities/{candidate}")
        except ApiError:
            result["admission"] = None
    _report_tx(result, as_json, f"approval recorded (tx {result.get('tx_hash')})" +
               (f"; {candidate[:16]} is now an institution" if result.get("admission") else "; more approvals needed"))


# -- research -----------------------------------------------------------------------------------
@main.command("demo-data", context_settings=CONTEXT)
@click.option("--patients", default=40, show_default=True, type=click.IntRange(1, 100_000), help="How many synthetic patients.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory to create (must be empty).")
@click.option("--institutions", default=None, type=click.IntRange(1, 50),
              help="Spread patients over this many institutions (default 3; with --load, every node of the devnet).")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same data.")
@click.option("--load", is_flag=True, help="Also put the data on the devnet (--devnet): register the people, write the records.")
@click.option("--devnet", "devnet_dir", default="devnet", show_default=True, type=click.Path(file_okay=False),
              help="With --load: the devnet's node homes (site institution-<n> is written at node<n>).")
@click.option("--types", default="", help="With --load: only these resource types (comma-separated; default all).")
@click.option("--consent-to", "consent_to", default=None, metavar="study:ID",
              help="With --load: every patient consents to this study (purpose research) for the loaded types.")
@click.option("--until", "until", default="2099-12-31", show_default=True, help="With --consent-to: last day of the consents.")
@json_option
def demo_data(patients: int, out_dir: str, institutions: int | None, seed: int, load: bool, devnet_dir: str, types: str,
              consent_to: str | None, until: str, as_json: bool) -> None:
    """Generate realistic synthetic FHIR R4 data (every kind of identifier included) for demos and tests.

    Writes DIR/institution-<n>/<Type>-<id>.json (site n is the devnet's node<n>) and
    DIR/persons.json (who is who across sites). Nothing here is about a real person.

    With --load it then puts the data on a running devnet, as the sites would: a practitioner
    per site (key DIR/keys/practitioner-<n>.key, attested by devnet/node<n>/institution.key), a
    patient identity per person (key DIR/keys/person-<nnnn>.key), each site's records encrypted
    and written at its node, and with --consent-to each patient's consent to a study.

    \b
    Examples:
      medledger demo-data --patients 40 --out ./demo --seed 7
      medledger demo-data --patients 40 --out ./demo --load --types Patient,Observation,Condition \\
          --consent-to study:DIAB-2027 --until 2027-12-31
    """
    from node.research.synthetic import write_demo

    if (consent_to or types) and not load:
        fail("--types and --consent-to go with --load", EXIT_USAGE)
    if consent_to is not None and not consent_to.startswith("study:"):
        fail(f"--consent-to: give study:ID (e.g. study:DIAB-2027), not {consent_to!r}", EXIT_USAGE)
    check_types(types, "--types", allow_any=False)
    until_ms = _date_ms(until, "--until", end_of_day=True)
    if institutions is None:
        institutions = 3
        if load:
            from node.devtools.cluster import Cluster, ClusterError

            try:
                institutions = len(Cluster.open(Path(devnet_dir)).nodes)
            except ClusterError as exc:
                fail(f"--devnet: {exc} (start one with `medledger devnet up`)", EXIT_USAGE)
    try:
        paths = write_demo(Path(out_dir), patients, seed, institutions=institutions)
    except (FileExistsError, ValueError, OSError) as exc:
        fail(str(exc), EXIT_USAGE)
    result: dict[str, Any] = {"out": out_dir, "files": len(paths), "patients": patients, "institutions": institutions, "seed": seed}
    text = f"wrote {len(paths)} files for {patients} patients at {institutions} institutions to {out_dir}"
    if load:
        from node.devtools.demo_load import DemoLoadError, load_demo
        from node.client import RecordError

        say = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
        say(text)
        try:
            report = run_client(lambda: load_demo(Path(out_dir), Path(devnet_dir), types=_split(types) or None,
                                                  consent_study=consent_to[len("study:"):] if consent_to else None,
                                                  consent_until_ms=until_ms, progress=say))
        except DemoLoadError as exc:
            fail(str(exc), EXIT_REFUSED)
        except RecordError as exc:
            fail(explain(exc.code, exc.message), EXIT_REFUSED)
        result["loaded"] = report.to_dict()
        text = (f"loaded {report.records} records of {report.patients} patients on {devnet_dir}"
                + (f"; {report.consents} consents to {consent_to}" if report.consents else "") + f"; keys in {report.keys_dir}")
    emit(as_json, result, text)


@main.group(context_settings=CONTEXT)
def study() -> None:
    """Register research studies and their researchers (institutions)."""


@study.command("register", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The institution's key.")
@click.option("--id", "study_id", required=True, help="Study id (letters, digits, - and _).")
@click.option("--title", required=True, help="Study title.")
@click.option("--approval", required=True, help="Ethics-board approval reference.")
@click.option("--until", "until", required=True, help="Last day of the study (YYYY-MM-DD, UTC); nothing is released after it.")
@click.option("--k-min", "k_min", default=K_FLOOR, show_default=True, type=click.IntRange(K_FLOOR, K_MAX),
              help=f"The study's minimum k-anonymity, fixed for its life (the network floor is {K_FLOOR}); a researcher may only raise it.")
@node_option
@passphrase_env_option
@json_option
def study_register(key_file: str, study_id: str, title: str, approval: str, until: str, k_min: int, node_url: str,
                   passphrase_env: str | None, as_json: bool) -> None:
    """Register a study under the institution's ethics approval.

    \b
    Example:
      medledger study register --key devnet/node0/institution.key --id DIAB-2027 \\
          --title "Type 2 diabetes outcomes" --approval IRB-2026-114 --until 2027-12-31 --k-min 5
    """

    inst = load_identity(key_file, passphrase_env)
    body = {"study": study_id, "title": title, "ethics_ref": approval, "until_ms": _date_ms(until, "--until", end_of_day=True),
            "min_k": k_min}
    result = _transact(node_url, inst, "study.register", body)
    _report_tx(result, as_json, f"study {study_id} registered (tx {result.get('tx_hash')})")


@study.command("add-researcher", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The study's institution's key.")
@click.option("--study", "study_id", required=True, help="Study id.")
@click.option("--researcher", required=True, help="The researcher's identity id.")
@node_option
@passphrase_env_option
@json_option
def study_add_researcher(key_file: str, study_id: str, researcher: str, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Put a registered researcher on a study.

    \b
    Example:
      medledger study add-researcher --key devnet/node0/institution.key --study DIAB-2027 --researcher <id>
    """
    rid = identity_arg(researcher, "--researcher")
    inst = load_identity(key_file, passphrase_env)
    result = _transact(node_url, inst, "study.add_researcher", {"study": study_id, "researcher": rid})
    _report_tx(result, as_json, f"researcher added to {study_id} (tx {result.get('tx_hash')})")


@main.group(context_settings=CONTEXT)
def research() -> None:
    """De-identified research extracts of consenting patients."""


@research.command("extract", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The researcher's key.")
@click.option("--study", "study_id", required=True, help="Study id.")
@click.option("--types", required=True, help="Resource types, comma-separated (must include Patient).")
@click.option("--k", "k", default=K_FLOOR, show_default=True, type=click.IntRange(1, K_MAX),
              help="k-anonymity: smallest group released; the study's minimum (study register --k-min) applies if larger.")
@click.option("--coordinator", "coordinator", default=None,
              help="The institution id that coordinates the extract (the study's institution or a custodian of its "
                   "patients' records); default: the institution of the node given by --node.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="New or empty directory for the extract.")
@node_option
@passphrase_env_option
@json_option
def research_extract(key_file: str, study_id: str, types: str, k: int, coordinator: str | None, out_dir: str, node_url: str,
                     passphrase_env: str | None, as_json: bool) -> None:
    """Gather a de-identified extract from every custodian of consenting patients.

    Custodians de-identify by HIPAA Safe Harbor before anything leaves them; k-anonymity is
    applied across all of them; each release is recorded on the ledger and in every included
    patient's audit trail. Writes <ResourceType>.ndjson files and report.json into --out.

    \b
    Example:
      medledger research extract --key ana.key --study DIAB-2027 --types Patient,Observation,Condition \\
          --k 5 --out ./extract --node http://127.0.0.1:8700
    """
    import time as _time

    from node.core.encoding import canonical
    from node.research.service import ExtractRequest

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        fail(f"{out_dir} is not empty", EXIT_USAGE)
    from node.core.crypto import parse_id

    researcher = load_identity(key_file, passphrase_env)
    client = Client(node_url, timeout=300)
    status = run_client(lambda: client.status())
    try:
        # the request names its coordinator: no other institution can have it prepared or recorded
        coordinator_id = parse_id(coordinator if coordinator else str(status["node_id"]))
    except ValueError as exc:
        fail(f"--coordinator: {exc}", EXIT_USAGE)
    req = ExtractRequest.create(researcher, chain_id=str(status["chain_id"]), study=study_id, types=_split(types), k=k,
                                coordinator=coordinator_id, timestamp_ms=_time.time_ns() // 1_000_000)
    from node.client import HealthClient

    hc = HealthClient(node_url, timeout=300)
    raw = run_client(lambda: hc._post_msgpack("/v1/research/extract", canonical(req.to_dict())))
    doc = json.loads(raw)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in doc["files"].items():
        if "/" in name or not name.endswith(".ndjson"):
            fail(f"the node sent an unexpected file name {name!r}", EXIT_REFUSED)
        (out / name).write_text(text)
    (out / "report.json").write_text(json.dumps(doc["report"], indent=2, sort_keys=True) + "\n")
    r = doc["report"]
    emit(as_json, r, f"released {r['patients_included']} patients ({r['resources_released']} resources), "
                     f"k reached {r['k_reached']}, suppressed {r['patients_suppressed_count']}; written to {out_dir}")


# -- devnet ---------------------------------------------------------------------------------------
@main.group(context_settings=CONTEXT)
def devnet() -> None:
    """Run a local network of institutions on this machine."""


@devnet.command("init", context_settings=CONTEXT)
@click.option("--nodes", default=DEFAULT_DEVNET_NODES, show_default=True, type=click.IntRange(1, 31), help="Number of institutions (validators).")
@click.option("--dir", "directory", default="devnet", show_default=True, type=click.Path(file_okay=False), help="Where the node homes go (DIR/node0 ...).")
@click.option("--base-port", default=8700, show_default=True, type=click.IntRange(1024, 65000), help="API port of node0; node i uses base+i, its peer port base+100+i.")
@click.option("--chain-id", default="medledger-devnet", show_default=True, help="Name of the network.")
@click.option("--tls", is_flag=True, help="Make a local CA (DIR/ca.pem) and a certificate per node: https API, TLS peer links.")
@json_option
def devnet_init(nodes: int, directory: str, base_port: int, chain_id: str, tls: bool, as_json: bool) -> None:
    """Write one node home per institution, a shared genesis and each institution's key.

    \b
    Examples:
      medledger devnet init --nodes 4 --dir ./devnet
      medledger node run --home ./devnet/node0
      medledger devnet init --nodes 4 --dir ./devnet --tls
      medledger --ca ./devnet/ca.pem status --node https://127.0.0.1:8700
    """
    from node.devtools.cluster import Cluster

    try:
        cluster = Cluster.create(Path(directory), nodes, base_port=base_port, chain_id=chain_id, tls=tls)
    except (HomeExists, KeyFileError) as exc:
        fail(str(exc), EXIT_USAGE)
    data = [{"node": f"node{n.index}", "home": str(n.home), "node_id": n.node_id, "api_url": n.api_url,
             "key": str(n.home / "institution.key")} for n in cluster.nodes]
    emit(as_json, {"dir": directory, "nodes": data, "ca": str(cluster.ca_file) if cluster.ca_file else None},
         lambda: "\n".join(f"{d['node']}  {d['api_url']}  {d['node_id'][:16]}...  key {d['key']}" for d in data))


@devnet.command("up", context_settings=CONTEXT)
@click.option("--nodes", default=DEFAULT_DEVNET_NODES, show_default=True, type=click.IntRange(1, 31), help="Number of institutions, when initialising.")
@click.option("--dir", "directory", default="devnet", show_default=True, type=click.Path(file_okay=False), help="Node homes (initialised if missing).")
@click.option("--base-port", default=8700, show_default=True, type=click.IntRange(1024, 65000), help="API port of node0, when initialising.")
@click.option("--duration", default=0.0, help="Stop after this many seconds (0: run until Ctrl-C).")
@click.option("--tls", is_flag=True, help="When initialising: a local CA and https/TLS for every node (as devnet init --tls).")
@click.option("--restart/--no-restart", "restart", default=True, show_default=True,
              help="Start a node that exited again after a back-off (or leave it down; the others keep running either way).")
@click.option("--restart-delay", default=2.0, show_default=True, type=click.FloatRange(0.1, 600),
              help="First back-off before a restart, in seconds; it doubles with each exit in a row, up to 30 s.")
def devnet_up(nodes: int, directory: str, base_port: int, duration: float, tls: bool, restart: bool, restart_delay: float) -> None:
    """Start a local network (initialising it if needed) and show a live status table.

    Each node runs as a child process logging to DIR/node<i>/node.log, its pid in
    DIR/node<i>/node.pid. When a node exits (a crash, a kill, or a clean stop) the others keep
    running and committing; the table shows it down with its exit code, and it is started again
    after a back-off (--no-restart leaves it down). Ctrl-C stops them all.

    \b
    Examples:
      medledger devnet up
      medledger devnet up --nodes 4 --dir ./devnet
      medledger devnet stop --node 2          # in another terminal: node2 goes down, the rest goes on
      medledger devnet up --no-restart        # a node that exits stays down
    """
    import signal as _signal
    import time as _time

    from node.devtools.cluster import Cluster, ClusterError, Supervisor

    root = Path(directory)
    try:
        if (root / "node0" / "config.toml").exists():
            cluster = Cluster.open(root)
            click.echo(f"using the existing network in {root} ({len(cluster.nodes)} nodes)", err=True)
        else:
            cluster = Cluster.create(root, nodes, base_port=base_port, tls=tls)
            click.echo(f"initialised {nodes} node(s) in {root}", err=True)
    except (HomeExists, KeyFileError, ClusterError) as exc:
        fail(str(exc), EXIT_USAGE)
    stopping = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stopping["now"] = True

    _signal.signal(_signal.SIGINT, on_signal)
    _signal.signal(_signal.SIGTERM, on_signal)
    with cluster:
        cluster.start()
        try:
            cluster.wait_ready(timeout=30)
        except ClusterError as exc:
            fail(str(exc), EXIT_REFUSED)
        supervisor = Supervisor(cluster, restart=restart, backoff_s=restart_delay)
        for n in cluster.nodes:
            click.echo(f"node{n.index}: {n.api_url}  (log {n.home / 'node.log'}, key {n.home / 'institution.key'})", err=True)
        click.echo(f"dashboard: {cluster.nodes[0].api_url}/ui/", err=True)
        click.echo("press Ctrl-C to stop", err=True)
        deadline = _time.monotonic() + duration if duration > 0 else None
        from rich.console import Console
        from rich.live import Live

        console = Console(stderr=False)
        live = Live(_devnet_table(cluster, supervisor), console=console, refresh_per_second=2, transient=False) if console.is_terminal else None
        last_line = 0.0
        try:
            if live:
                live.start()
            while not stopping["now"] and (deadline is None or _time.monotonic() < deadline):
                for event in supervisor.poll():
                    (live.console.print if live else lambda m: click.echo(m, err=True))(event)
                if live:
                    live.update(_devnet_table(cluster, supervisor))
                elif _time.monotonic() - last_line >= 5:
                    last_line = _time.monotonic()
                    click.echo("  ".join(f"node{n.index}: " + (f"h={h}" if h is not None else supervisor.describe(n.index))
                                         for n, h in zip(cluster.nodes, cluster.heights(), strict=True)))
                _time.sleep(0.5)  # the refresh period of the table, not a synchronisation
        finally:
            if live:
                live.stop()
            click.echo("stopping all nodes...", err=True)
    click.echo("stopped", err=True)


@devnet.command("stop", context_settings=CONTEXT)
@click.option("--node", "index", required=True, type=click.IntRange(0, 30), help="Which node (node<N>) to stop.")
@click.option("--dir", "directory", default="devnet", show_default=True, type=click.Path(file_okay=False), help="The devnet's node homes.")
@click.option("--kill", "hard", is_flag=True, help="SIGKILL (a crash) instead of SIGTERM (a clean stop).")
def devnet_stop(index: int, directory: str, hard: bool) -> None:
    """Stop one node of a running `devnet up` (it restarts it after its back-off, unless --no-restart).

    \b
    Examples:
      medledger devnet stop --node 2
      medledger devnet stop --node 2 --kill
    """
    import signal as _signal

    from node.devtools.cluster import running_pid

    home = Path(directory) / f"node{index}"
    if not (home / "config.toml").exists():
        fail(f"--node: {home} is not a node home (see `medledger devnet init`)", EXIT_USAGE)
    pid = running_pid(home)
    if pid is None:
        fail(f"node{index} is not running (no live process in {home / 'node.pid'})", EXIT_REFUSED)
    try:
        os.kill(pid, _signal.SIGKILL if hard else _signal.SIGTERM)
    except OSError as exc:
        fail(f"cannot signal node{index} (pid {pid}): {exc.strerror}", EXIT_REFUSED)
    click.echo(f"sent {'SIGKILL' if hard else 'SIGTERM'} to node{index} (pid {pid})")


def _devnet_table(cluster: Any, supervisor: Any = None) -> Any:
    from rich.table import Table

    table = Table(title="MedLedger devnet", expand=False)
    for col in ("node", "API port", "state", "pid", "exit", "restarts", "height", "view", "peers", "mempool", "sync", "state root"):
        table.add_column(col)
    for n in cluster.nodes:
        s = n.status(timeout=0.5) if n.running else None
        port = n.api_url.rsplit(":", 1)[-1]
        w = supervisor.watch[n.index] if supervisor is not None else None
        state = supervisor.describe(n.index) if supervisor is not None else ("up" if n.running else "down")
        if n.running and s is None:
            state = "starting"
        elif not n.running and state == "up":
            state = "down"  # exited since the supervisor's last look
        pid = str(n.process.pid) if n.running and n.process is not None else "-"
        exit_code = str(w.exit_code) if w is not None and w.exit_code is not None else "-"
        restarts = str(w.restarts) if w is not None else "-"
        if s is None:
            table.add_row(f"node{n.index}", port, state, pid, exit_code, restarts, "-", "-", "-", "-", "-", "-")
        else:
            table.add_row(f"node{n.index}", port, state, pid, exit_code, restarts, str(s["height"]), str(s.get("view", 0)),
                          str(len(s.get("peers", []))), str(s["mempool_size"]), "yes" if s.get("syncing") else "no",
                          s["state_root"][:12] + "...")
    return table



# -- sim ----------------------------------------------------------------------------------------
def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a seed or a range like 0-999", param_hint="--seeds") from None
    if not seeds:
        raise click.BadParameter("no seeds given", param_hint="--seeds")
    return seeds


@main.command(context_settings=CONTEXT)
@click.option("--validators", default=4, show_default=True, type=click.IntRange(1, 64), help="Validators in the simulated network.")
@click.option("--byzantine", default=0, show_default=True, type=click.IntRange(0, 64), help="How many of them misbehave.")
@click.option("--behaviour", "behaviours", default="",
              help="Comma-separated Byzantine behaviours, or 'all' (the default); see consensus/simulation/byzantine.py.")
@click.option("--drop", default=0.0, show_default=True, type=click.FloatRange(0.0, 0.9), help="Probability that a message is lost.")
@click.option("--partition/--no-partition", default=False, show_default=True, help="Partition the network for a while, then heal it.")
@click.option("--seeds", "seeds_text", default="0-99", show_default=True, help="Seeds to run: 7, 0-999 or 1,5,9.")
@click.option("--heights", default=None, type=click.IntRange(1, 10_000), help="Heights each run aims for.")
@json_option
def sim(validators: int, byzantine: int, behaviours: str, drop: float, partition: bool, seeds_text: str, heights: int | None, as_json: bool) -> None:
    """Run the seeded consensus simulator and check safety and liveness in every run.

    Each seed is one deterministic run: the same seed gives the same result and the same
    final block hashes. Failing seeds are listed so each can be replayed alone.

    \b
    Examples:
      medledger sim --validators 4 --byzantine 1 --drop 0.2 --partition --seeds 0-999 --json
      medledger sim --validators 7 --byzantine 2 --behaviour equivocate,double-vote --seeds 42
      medledger sim --validators 4 --byzantine 1 --behaviour relabel-new-view,withhold --drop 0.3 --partition
      medledger sim --validators 4 --byzantine 2 --seeds 0-199   # above f: violations appear
    """
    from consensus.simulation.byzantine import BEHAVIOURS
    from consensus.simulation.runner import run_sim

    seeds = _parse_seeds(seeds_text)
    chosen = [b.strip() for b in behaviours.split(",") if b.strip()]
    if not chosen or "all" in chosen:
        chosen = list(BEHAVIOURS)
    unknown = [b for b in chosen if b not in BEHAVIOURS]
    if unknown:
        fail(f"unknown behaviour {', '.join(unknown)}; choose from {', '.join(BEHAVIOURS)}", EXIT_USAGE)
    if byzantine > validators:
        fail("--byzantine cannot exceed --validators", EXIT_USAGE)
    kwargs: dict[str, Any] = {}
    if heights is not None:
        kwargs["heights"] = heights
    from rich.progress import Progress

    with Progress(transient=True, disable=as_json or len(seeds) < 20) as bar:
        task = bar.add_task("simulating", total=len(seeds))
        report = run_sim(validators=validators, byzantine=byzantine, behaviours=chosen, drop=drop, partition=partition,
                         seeds=seeds, progress=lambda n: bar.update(task, advance=n), **kwargs)

    def text() -> str:
        lines = [f"{k:>18}: {v}" for k, v in report.items() if k != "failing_seeds"]
        fs = report.get("failing_seeds", [])
        lines.append(f"{'failing_seeds':>18}: {fs[:50]}{' ...' if len(fs) > 50 else ''}")
        return "\n".join(lines)

    emit(as_json, report, text)


# -- chaos ---------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT)
@click.option("--nodes", default=4, show_default=True, type=click.IntRange(1, 31), help="Validators in the local network.")
@click.option("--duration", default=60.0, show_default=True, type=click.FloatRange(5, 86_400), help="Seconds of faults and load.")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the fault schedule, the keys and the Byzantine behaviour.")
@click.option("--faults", default="kill,pause,partition,lag", show_default=True,
              help="Comma-separated fault types: kill, pause, partition, lag, byzantine.")
@click.option("--byzantine", "byzantine_count", default=0, show_default=True, type=click.IntRange(0, 10),
              help="Byzantine validators (at most f; with 'byzantine' in --faults the default is f).")
@click.option("--byzantine-mode", default="mixed", show_default=True,
              help="mixed (a different mode per Byzantine validator) or one of: equivocate, double-vote, garbage, "
                   "replay, withhold, invalid-block, impersonate, relabel.")
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(1, 5000), help="Offered load in tx/s.")
@click.option("--dir", "root", default=None, type=click.Path(file_okay=False), help="Keep the node homes and logs here (default: a scratch directory).")
@json_option
def chaos(nodes: int, duration: float, seed: int, faults: str, byzantine_count: int, byzantine_mode: str, rate: float,
          root: str | None, as_json: bool) -> None:
    """Run a local network under load and a seeded schedule of faults; check nothing was lost.

    Faults hit one honest validator at a time (SIGKILL and restart, SIGSTOP/SIGCONT, partitions
    that heal, a validator kept down until it is far behind); Byzantine validators lie for the
    whole run. At the end every honest node must hold identical blocks and state roots, and
    every transaction acknowledged as committed must be in the chain exactly once. Exits 1 if
    anything was lost or duplicated or safety was violated. See docs/reliability.md.

    \b
    Examples:
      medledger chaos --nodes 4 --duration 120 --seed 7 --json
      medledger chaos --nodes 7 --duration 120 --faults kill,pause,partition,lag,byzantine --byzantine 2
    """
    from node.devtools.chaos import ChaosConfig, ChaosError, run_chaos

    cfg = ChaosConfig(nodes=nodes, duration_s=duration, seed=seed, rate=rate,
                      faults=tuple(x.strip() for x in faults.split(",") if x.strip()),
                      byzantine=byzantine_count, byzantine_mode=byzantine_mode,
                      root=Path(root) if root else None)
    try:
        report = run_chaos(cfg, progress=None if as_json else lambda msg: click.echo(msg, err=True))
    except ChaosError as exc:
        fail(str(exc), EXIT_USAGE)
    if as_json:
        emit(True, report, "")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"chaos: {nodes} validators, {duration:g} s, seed {seed}")
        for col in ("fault", "node", "start s", "healed s", "recovery s", "detail"):
            table.add_column(col)
        for f in report["faults"]:
            table.add_row(f["type"], str(f["target"]), str(f["started_s"]), str(f["healed_s"] or "-"),
                          str(f["recovery_s"] if f["recovery_s"] is not None else "-"), f["detail"])
        console = Console()
        console.print(table)
        for key in ("faults_injected", "submitted", "acknowledged", "lost", "duplicated", "safety_violations",
                    "max_recovery_s", "unrecovered", "final_height", "evidence"):
            console.print(f"{key:>18}: {report[key]}")
    if report["lost"] or report["duplicated"] or report["safety_violations"]:
        sys.exit(EXIT_REFUSED)


# -- bench ---------------------------------------------------------------------------------------
def measure_catch_up(cluster: Any, lagging: int, from_height: int, timeout: float) -> dict[str, Any]:
    """Restart the stopped node `lagging` (stopped at `from_height`) and time it until it holds
    the others' height: from the restart, so the process's start-up counts against the rate."""
    import time

    from node.devtools.bench import BenchError
    from node.devtools.cluster import http_json

    others = [i for i in range(len(cluster.nodes)) if i != lagging]
    target = max(h or 0 for h in (cluster.heights()[i] for i in others))
    ready = time.perf_counter()
    cluster.start(lagging)
    cluster.wait_ready(60, lagging)
    deadline = ready + timeout
    status: dict[str, Any] = {}
    while time.perf_counter() < deadline:
        status = http_json(cluster.nodes[lagging].api_url + "/v1/status")
        if status["height"] >= target:
            break
        time.sleep(0.02)
    else:
        raise BenchError(f"the restarted node reached height {status.get('height')} of {target} in {timeout:.0f} s")
    seconds = time.perf_counter() - ready
    synced_txs, since = 0, from_height + 1
    while since <= target:
        blocks = http_json(f"{cluster.nodes[others[0]].api_url}/v1/commits?since={since}&limit=1000", timeout=30)["blocks"]
        if not blocks:
            break
        synced_txs += sum(len(b["txs"]) for b in blocks if b["height"] <= target)
        since = blocks[-1]["height"] + 1
    return {"catchup_blocks": target - from_height, "catchup_txs": synced_txs, "catchup_s": round(seconds, 2),
            "catchup_tx_per_s": round(synced_txs / seconds, 1) if seconds > 0 else 0.0,
            "catchup_rss_mb": int(status.get("peak_rss_mb", 0)),
            "catchup_rss_anon_mb": int(status.get("peak_rss_anon_mb", 0))}


@main.command(context_settings=CONTEXT)
@click.option("--nodes", "own_nodes", type=click.IntRange(1, 31), default=None, help="Start a local network of this many validators for the run.")
@click.option("--target", "targets", default=None, help="Comma-separated API URLs of running nodes to load (instead of --nodes).")
@click.option("--txs", default=2000, show_default=True, type=click.IntRange(1, 10_000_000), help="Transactions to measure.")
@click.option("--batch", default=None, type=click.IntRange(1, 5000),
              help="Transactions per request (default: 500, or 50 ms of the offered load with --rate).")
@click.option("--rate", default=0.0, show_default=True, help="Offered load in tx/s (0: as fast as accepted).")
@click.option("--mix", is_flag=True, help="Measure a hospital mix (registrations, record writes, consent grants, access "
              "requests: 10/30/20/40) instead of identity registrations only.")
@click.option("--tx-bytes", default=0, type=click.IntRange(0, 4096),
              help="No longer supported (0 only): access requests carry no free-text reason to pad them with.")
@click.option("--institution-key", type=click.Path(dir_okay=False), default=None,
              help="With --mix and --target: the key file of an institution that attests the practitioners.")
@click.option("--seed", default=None, help="Seed for the generated keys (default: random; a seed makes a run repeatable on a fresh network).")
@click.option("--sweep", is_flag=True, help="Run a series of offered loads (--sweep-rates), write a latency-versus-"
              "throughput plot (--plot) and the table behind it (same name, .csv).")
@click.option("--sweep-rates", default="500,1000,2000,3000,4000,6000", show_default=True, help="Offered loads for --sweep, tx/s.")
@click.option("--sweep-seconds", default=8.0, show_default=True, type=click.FloatRange(1, 600), help="Seconds of load per --sweep step.")
@click.option("--plot", "plot_path", default="bench-sweep.png", show_default=True, type=click.Path(dir_okay=False),
              help="Where --sweep writes its PNG plot.")
@click.option("--preload-records", default=0, type=click.IntRange(0, 10_000_000),
              help="Before measuring, commit this many record.add transactions so the state holds that many records.")
@click.option("--catch-up", "catch_up", is_flag=True, help="With --nodes (at least 4): stop the last node, measure on the "
              "others, then restart it and report how fast it catches up (catchup_tx_per_s).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for every commit.")
@json_option
def bench(own_nodes: int | None, targets: str | None, txs: int, batch: int | None, rate: float, mix: bool, tx_bytes: int,
          institution_key: str | None, seed: str | None, sweep: bool, sweep_rates: str, sweep_seconds: float, plot_path: str,
          preload_records: int, catch_up: bool, timeout: float, as_json: bool) -> None:
    """Measure committed throughput and latency against this machine's limit.

    Keys and signatures are prepared before the clock starts (and, with --mix, the
    practitioners, patients and records the measured transactions need are committed first);
    latency runs from sending a transaction's batch to its commit being visible at the node it
    was sent to. In the same run it measures this machine's Ed25519 verification rate and
    reports the ceiling limit_tx_per_s = cores x verify_per_s / nodes (every node verifies every
    transaction once) and ratio = tx_per_s / limit_tx_per_s.

    \b
    Examples:
      medledger bench --nodes 4 --txs 20000 --json
      medledger bench --nodes 4 --txs 20000 --mix
      medledger bench --target http://127.0.0.1:8700,http://127.0.0.1:8701 --txs 2000 --rate 1000
      medledger bench --nodes 4 --sweep --sweep-rates 1000,2000,4000 --plot sweep.png
      medledger bench --nodes 4 --txs 20000 --preload-records 1000000 --json
      medledger bench --nodes 4 --txs 100000 --catch-up --json
    """
    import asyncio
    import hashlib
    import tempfile
    import time

    from node.devtools.bench import (
        BenchConfig, BenchError, add_ceiling, chain_status, commit_setup, measure_verify_rate, node_peak_rss, run_bench,
        sweep_rates as parse_rates, write_sweep,
    )
    from node.devtools.cluster import Cluster, ClusterError
    from node.devtools.workload import mix_workload, preload_phases, register_workload

    if (own_nodes is None) == (targets is None):
        fail("give either --nodes N (a local network for the run) or --target URL,...", EXIT_USAGE)
    if sweep:
        require_extra("matplotlib", "bench --sweep (its plot)")
    if tx_bytes:
        fail("--tx-bytes is no longer supported: transactions carry no free text (a break-glass reason is a code), "
             "so there is nothing to pad them with; leave it out", EXIT_USAGE)
    if (mix or preload_records) and targets is not None and institution_key is None:
        fail("--mix and --preload-records with --target need --institution-key (an institution attests the practitioners)",
             EXIT_USAGE)
    if catch_up and (own_nodes is None or own_nodes < 4 or sweep):
        fail("--catch-up needs --nodes 4 or more (the others keep committing while one is down) and no --sweep", EXIT_USAGE)
    try:
        rates = parse_rates(sweep_rates) if sweep else []
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    cores = os.cpu_count() or 1
    verify_per_s = measure_verify_rate()
    base_seed = seed.encode() if seed is not None else os.urandom(16)
    scratch = tempfile.TemporaryDirectory(prefix="medledger-bench-") if own_nodes else None
    cluster = None

    def institution() -> Identity:
        if cluster is not None:
            return load_key_file(cluster.nodes[0].home / "institution.key")
        return load_identity(str(institution_key), None)

    def workload(urls: tuple[str, ...], count: int, step: int) -> tuple[list, Any]:
        status = asyncio.run(chain_status(urls[0]))
        step_seed = hashlib.sha256(base_seed + step.to_bytes(4, "big")).digest()
        if not mix:
            return [], register_workload(status["chain_id"], count, seed=step_seed)
        w = mix_workload(status["chain_id"], count, seed=step_seed, institution=institution(), now_ms=time.time_ns() // 1_000_000,
                         tx_bytes=tx_bytes)
        return list(w.setup), w

    def measure(urls: tuple[str, ...], count: int, offered: float, step: int, show: bool) -> dict[str, Any]:
        setup, w = workload(urls, count, step)
        if setup:
            asyncio.run(commit_setup(urls, setup, timeout_s=max(timeout, 300.0)))
        size = batch if batch is not None else (500 if offered <= 0 else max(1, min(500, int(offered / 20))))
        cfg = BenchConfig(targets=urls, txs=len(w.measured), batch=size, timeout_s=timeout, rate=offered)
        from rich.progress import Progress

        with Progress(transient=True, disable=not show) as bar:
            task = bar.add_task("committed", total=len(w.measured))
            result = asyncio.run(run_bench(cfg, progress=lambda done, total: bar.update(task, completed=done), txs=w.measured))
        result["workload"] = w.name
        result["tx_bytes"] = w.mean_tx_bytes
        if w.name == "mix":
            result["mix"] = w.counts
        return result

    try:
        if own_nodes:
            assert scratch is not None
            cluster = Cluster.create(Path(scratch.name), own_nodes)
            cluster.start()
            try:
                cluster.wait_ready(60)
            except ClusterError as exc:
                fail(str(exc), EXIT_REFUSED)
            urls = tuple(n.api_url for n in cluster.nodes)
        else:
            urls = tuple(t.strip() for t in str(targets).split(",") if t.strip())
        try:
            preload_s = None
            if preload_records:
                status = asyncio.run(chain_status(urls[0]))
                phases = preload_phases(status["chain_id"], preload_records, seed=base_seed, institution=institution())
                from rich.progress import Progress

                with Progress(transient=True, disable=as_json) as bar:
                    task = bar.add_task("preloading records", total=preload_records + 2 * min(10_000, preload_records))
                    started = time.perf_counter()
                    asyncio.run(commit_setup(urls, phases, timeout_s=max(timeout, 300.0),
                                             progress=lambda n: bar.update(task, completed=n)))
                    preload_s = round(time.perf_counter() - started, 1)
            lagging = None
            if catch_up:
                assert cluster is not None
                lagging = len(cluster.nodes) - 1
                stopped_at = cluster.heights()[lagging] or 0
                cluster.stop(lagging)
                urls = urls[:lagging]
            if sweep:
                rows = []
                for step, offered in enumerate(rates, start=1):
                    count = max(500, int(offered * sweep_seconds))
                    row = add_ceiling(measure(urls, count, float(offered), step, not as_json), verify_per_s, cores)
                    row["offered_tx_per_s"] = offered
                    rows.append(row)
                    if not as_json:
                        click.echo(f"offered {offered:>6,} tx/s: committed {row['tx_per_s']:>8,.1f} tx/s, "
                                   f"p50 {row['latency_ms_p50']:,.0f} ms, p99 {row['latency_ms_p99']:,.0f} ms", err=True)
                csv_path = str(Path(plot_path).with_suffix(".csv"))
                write_sweep(rows, csv_path, plot_path, f"medledger bench --sweep: {len(urls)} validators, {cores} cores, "
                            f"{'mix' if mix else 'identity.register'}")
                result = {"nodes": len(urls), "sweep": rows, "plot": plot_path, "table": csv_path,
                          "verify_per_s": verify_per_s, "cores": cores}
            else:
                result = add_ceiling(measure(urls, txs, rate, 0, not as_json), verify_per_s, cores)
            if preload_records:
                result["preload_records"] = preload_records
                result["preload_s"] = preload_s
            if lagging is not None:
                assert cluster is not None
                result["validators"] = len(cluster.nodes)
                result.update(measure_catch_up(cluster, lagging, stopped_at, timeout))
                urls = tuple(n.api_url for n in cluster.nodes)
        except BenchError as exc:
            fail(str(exc), EXIT_REFUSED)
        except OSError as exc:
            fail(f"cannot reach the targets: {exc}", EXIT_UNREACHABLE)
        result["peak_rss_mb"], result["peak_rss_anon_mb"] = asyncio.run(node_peak_rss(urls))
    finally:
        if cluster is not None:
            cluster.stop_all()
        if scratch is not None:
            scratch.cleanup()
    if as_json:
        emit(True, result, "")
    else:
        from rich.console import Console
        from rich.table import Table

        if sweep:
            table = Table(title=f"medledger bench --sweep: {result['nodes']} node(s); plot {plot_path}")
            for name in ("offered tx/s", "committed tx/s", "p50 ms", "p95 ms", "p99 ms", "ratio"):
                table.add_column(name, justify="right")
            for row in result["sweep"]:
                table.add_row(*(f"{row[k]:,}" for k in ("offered_tx_per_s", "tx_per_s", "latency_ms_p50", "latency_ms_p95",
                                                         "latency_ms_p99", "ratio")))
        else:
            table = Table(title=f"medledger bench: {result['nodes']} node(s), {result['submitted']} transactions")
            table.add_column("measure")
            table.add_column("value", justify="right")
            for key, value in result.items():
                table.add_row(key, f"{value:,}" if isinstance(value, (int, float)) else str(value))
        Console().print(table)
    rows_done = result["sweep"] if sweep else [result]
    if any(r["committed"] < r["submitted"] for r in rows_done):
        sys.exit(EXIT_REFUSED)


# -- fuzz ----------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT)
@click.option("--target", "targets", required=True, help="Comma-separated API URLs of running nodes to fuzz.")
@click.option("--cases", default=1000, show_default=True, type=click.IntRange(1, 10_000_000), help="Cases per endpoint.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every case (same seed, same cases).")
@click.option("--endpoints", default="", help="Comma-separated endpoint names, or parts of names, to fuzz (default: all), e.g. 'txs,p2p'.")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Cases per endpoint between two health checks (status + a committed transaction).")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 256), help="Cases in flight per target.")
@click.option("--peer-key", "peer_key", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Key file of a peer the targets admit (an observer's): adds the 'p2p frames' endpoint.")
@passphrase_env_option
@json_option
def fuzz(targets: str, cases: int, seed: int, endpoints: str, batch: int, concurrency: int, peer_key: str | None,
         passphrase_env: str | None, as_json: bool) -> None:
    """Send seeded hostile input to every API endpoint and the peer port; check the nodes survive.

    A case passes when the node answers it as a client mistake (HTTP below 500, or a refused or
    closed peer handshake; with --peer-key, garbage frames from an admitted peer discarded or the
    link closed). Between batches every node must answer /v1/status and commit a new transaction.
    Exits non-zero on any failure; each failure carries its endpoint, seed and case index to replay it.

    \b
    Examples:
      medledger fuzz --target http://127.0.0.1:8700 --cases 200
      medledger fuzz --target http://127.0.0.1:8700,http://127.0.0.1:8701 --cases 10000 --seed 7 --json
      medledger fuzz --target http://127.0.0.1:8700 --endpoints "POST /v1/txs,p2p" --cases 500
      medledger fuzz --target http://127.0.0.1:8700 --endpoints "p2p frames" --peer-key ./observer/institution.key
    """
    import asyncio
    import tempfile

    require_extra("hypothesis", "medledger fuzz (its values are drawn from hypothesis strategies)")
    from node.devtools.fuzz import FuzzConfig, FuzzError, passed, run_fuzz

    scratch = tempfile.TemporaryDirectory(prefix="medledger-fuzz-")  # hypothesis's cache, not a .hypothesis/ here
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", scratch.name)

    cfg = FuzzConfig(targets=tuple(t.strip().rstrip("/") for t in targets.split(",") if t.strip()), cases=cases, seed=seed,
                     endpoints=tuple(e.strip() for e in endpoints.split(",") if e.strip()), batch=batch, concurrency=concurrency,
                     peer_key=load_identity(peer_key, passphrase_env) if peer_key else None)
    from rich.progress import Progress

    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("fuzzing", total=None)
        try:
            result = asyncio.run(run_fuzz(cfg, progress=lambda name, done, total: bar.update(task, description=f"{name} {done}/{total}")))
        except FuzzError as exc:
            fail(str(exc), EXIT_USAGE if "endpoint" in str(exc) else EXIT_UNREACHABLE)

    def text() -> str:
        lines = [f"{name:<40} {r['cases']:>7} cases  {r['failures']:>5} failures  {r['outcomes']}" for name, r in result["endpoints"].items()]
        lines += [f"{f['endpoint']} case {f['case']} (seed {f['seed']}, {f['family']}): {f['reason']}" for f in result["failures"][:20]]
        lines.append(f"node_up={result['node_up']} committed_after={result['committed_after']} nodes_agree={result['nodes_agree']} "
                     f"failures={result['failures_total']} rss_mb {result['rss_mb_before']} -> {result['rss_mb_after']} "
                     f"(peak seen {result['rss_mb_peak']}) in {result['duration_s']} s")
        return "\n".join(lines)

    emit(as_json, result, text)
    if not passed(result):
        sys.exit(EXIT_REFUSED)


if __name__ == "__main__":
    main(prog_name="medledger")
