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

from node.client import ApiError, Client, ClientError, outcome
from node.config import ConfigError, NodeHome, dump_toml
from node.core.crypto import Identity
from node.genesis import GenesisError
from node.home import HomeExists, init_network
from node.keys import KeyFileError, is_encrypted, key_file_id, load_key_file, write_key_file

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


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


def run_client(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ApiError as exc:
        fail(f"{exc.code}: {exc.message}", EXIT_REFUSED)
    except ClientError as exc:
        fail(str(exc), EXIT_UNREACHABLE)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="medledger", prog_name="medledger")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="Log verbosity (to stderr).")
def main(log_level: str) -> None:
    """MedLedger: a permissioned blockchain for healthcare.

    \b
    Start a local network, then talk to it:
      medledger devnet up
      medledger keys new --out alice.key
      medledger identity register --key alice.key --role patient
      medledger status
    """
    logging.basicConfig(
        level=getattr(logging, log_level.upper()), stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


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
@click.option("--unsafe-test-switches", is_flag=True, hidden=True, help="Test harness only: enable partition switches.")
def node_run(home: str, passphrase_env: str | None, unsafe_test_switches: bool) -> None:
    """Run the node in the foreground until Ctrl-C or SIGTERM.

    \b
    Example:
      medledger node run --home ./node-home
    """
    from node.daemon import run_node
    from storage.chain import StoreCorrupted
    from storage.kv import StorageError

    try:
        cfg = NodeHome(Path(home)).load_config()
        key_path = NodeHome(Path(home)).path(cfg.node.key_file)
        passphrase = read_passphrase(passphrase_env)
        if passphrase is None and key_path.exists() and is_encrypted(key_path):
            if not sys.stdin.isatty():
                fail(f"{key_path} is encrypted: pass --passphrase-env VAR", EXIT_USAGE)
            passphrase = click.prompt(f"Passphrase for {key_path}", hide_input=True)
        run_node(Path(home), passphrase=passphrase, test_switches=unsafe_test_switches)
    except (ConfigError, GenesisError, KeyFileError, StorageError, StoreCorrupted) as exc:
        fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot start: {exc.strerror or exc}", EXIT_USAGE)


@node.command("config", context_settings=CONTEXT)
@click.option("--home", required=True, type=click.Path(file_okay=False, exists=True), help="The node home.")
@json_option
def node_config(home: str, as_json: bool) -> None:
    """Print the effective configuration (file plus MEDLEDGER_* environment overrides)."""
    try:
        cfg = NodeHome(Path(home)).load_config()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    emit(as_json, cfg.to_dict(), lambda: dump_toml(cfg).rstrip())


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
            f"mempool:     {s['mempool_size']} transactions",
            f"validators:  {len(s['validators'])}" + "".join(f"\n  - {v['name']} {v['id'][:16]}... {v['address']}" for v in s["validators"]),
        ]
        return "\n".join(lines)

    emit(as_json, s, text)


@main.group(context_settings=CONTEXT)
def identity() -> None:
    """Register identities on the ledger."""


DEFAULT_DEVNET_NODES = 4

ROLES = ["patient", "practitioner", "researcher", "institution"]


def submit_and_report(client: Client, ident: Identity, tx_type: str, body: dict[str, Any], *, wait: bool, timeout: float, as_json: bool) -> None:
    def go() -> dict[str, Any]:
        tx = client.make_tx(ident, tx_type, body)
        try:
            client.submit(tx)
        except ApiError as exc:
            return {"tx_hash": exc.body.get("hash", tx.hash_hex), "status": exc.code, "message": exc.message, "height": None}
        if not wait:
            return outcome(tx.hash_hex, {"status": "pending"})
        return outcome(tx.hash_hex, client.wait(tx.hash_hex, timeout))

    result = run_client(go)
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
        message = result.get("message") or f"the ledger refused it (tx {result['tx_hash']}"
        if result.get("height"):
            message += f", recorded at height {result['height']})"
        elif not result.get("message"):
            message += ")"
        fail(f"{st}: {message}", EXIT_REFUSED) if not as_json else sys.exit(EXIT_REFUSED)


@identity.command("register", context_settings=CONTEXT)
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True), help="Key file of the identity to register.")
@click.option("--role", required=True, type=click.Choice(ROLES), help="The role this identity takes.")
@click.option("--label", default="", help="Display name (institutions, practitioners, researchers; never for patients).")
@node_option
@passphrase_env_option
@click.option("--no-wait", is_flag=True, help="Return once accepted instead of waiting for the commit.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the commit.")
@json_option
def identity_register(key_file: str, role: str, label: str, node_url: str, passphrase_env: str | None, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Register KEY's identity with ROLE; waits for the commit and prints the outcome.

    \b
    Example:
      medledger keys new --out alice.key
      medledger identity register --key alice.key --role patient --node http://127.0.0.1:8700
    """
    ident = load_identity(key_file, passphrase_env)
    body: dict[str, Any] = {"role": role}
    if label:
        body["label"] = label
    submit_and_report(Client(node_url), ident, "identity.register", body, wait=not no_wait, timeout=timeout, as_json=as_json)


@main.group(context_settings=CONTEXT)
def tx() -> None:
    """Look up transactions."""


@tx.command("show", context_settings=CONTEXT)
@click.argument("tx_hash")
@click.option("--proof", is_flag=True, help="Also fetch and check the Merkle inclusion proof.")
@node_option
@json_option
def tx_show(tx_hash: str, proof: bool, node_url: str, as_json: bool) -> None:
    """Show a transaction's status: pending, or committed with height, index and result."""
    client = Client(node_url)
    s = run_client(lambda: client.tx(tx_hash))
    if proof and s.get("status") == "committed":
        from node.core.merkle import verify_inclusion

        p = run_client(lambda: client.tx_proof(tx_hash))
        ok = verify_inclusion(bytes.fromhex(p["leaf"]), p["index"], p["size"], [bytes.fromhex(x) for x in p["path"]], bytes.fromhex(p["tx_root"]))
        s["proof"] = {**p, "verified": ok}
    emit(as_json, s, lambda: " ".join(f"{k}={v}" for k, v in s.items() if k != "proof") + (f" proof={'valid' if s['proof']['verified'] else 'INVALID'}" if "proof" in s else ""))


@main.group(context_settings=CONTEXT)
def block() -> None:
    """Look at blocks."""


@block.command("show", context_settings=CONTEXT)
@click.argument("height")
@node_option
@json_option
def block_show(height: str, node_url: str, as_json: bool) -> None:
    """Show block HEIGHT (a number or `latest`) with its header and transactions."""
    b = run_client(lambda: Client(node_url).block(height))

    def text() -> str:
        h = b["header"]
        lines = [f"block {b['height']}  {b['hash']}", f"  time {h['timestamp_ms']}  proposer {h['proposer'][:16]}...",
                 f"  state root {h['state_root']}", f"  {len(b['txs'])} transactions"]
        lines += [f"    {t['index']:>4} {t['hash'][:16]}... {t['type']} -> {t['result']}" for t in b["txs"]]
        return "\n".join(lines)

    emit(as_json, b, text)



# -- devnet ---------------------------------------------------------------------------------------
@main.group(context_settings=CONTEXT)
def devnet() -> None:
    """Run a local network of institutions on this machine."""


@devnet.command("init", context_settings=CONTEXT)
@click.option("--nodes", default=DEFAULT_DEVNET_NODES, show_default=True, type=click.IntRange(1, 31), help="Number of institutions (validators).")
@click.option("--dir", "directory", default="devnet", show_default=True, type=click.Path(file_okay=False), help="Where the node homes go (DIR/node0 ...).")
@click.option("--base-port", default=8700, show_default=True, type=click.IntRange(1024, 65000), help="API port of node0; node i uses base+i, its peer port base+100+i.")
@click.option("--chain-id", default="medledger-devnet", show_default=True, help="Name of the network.")
@json_option
def devnet_init(nodes: int, directory: str, base_port: int, chain_id: str, as_json: bool) -> None:
    """Write one node home per institution, a shared genesis and each institution's key.

    \b
    Example:
      medledger devnet init --nodes 4 --dir ./devnet
      medledger node run --home ./devnet/node0
    """
    from node.cluster import Cluster

    try:
        cluster = Cluster.create(Path(directory), nodes, base_port=base_port, chain_id=chain_id)
    except (HomeExists, KeyFileError) as exc:
        fail(str(exc), EXIT_USAGE)
    data = [{"node": f"node{n.index}", "home": str(n.home), "node_id": n.node_id, "api_url": n.api_url,
             "key": str(n.home / "institution.key")} for n in cluster.nodes]
    emit(as_json, {"dir": directory, "nodes": data},
         lambda: "\n".join(f"{d['node']}  {d['api_url']}  {d['node_id'][:16]}...  key {d['key']}" for d in data))


@devnet.command("up", context_settings=CONTEXT)
@click.option("--nodes", default=DEFAULT_DEVNET_NODES, show_default=True, type=click.IntRange(1, 31), help="Number of institutions, when initialising.")
@click.option("--dir", "directory", default="devnet", show_default=True, type=click.Path(file_okay=False), help="Node homes (initialised if missing).")
@click.option("--base-port", default=8700, show_default=True, type=click.IntRange(1024, 65000), help="API port of node0, when initialising.")
@click.option("--duration", default=0.0, help="Stop after this many seconds (0: run until Ctrl-C).")
def devnet_up(nodes: int, directory: str, base_port: int, duration: float) -> None:
    """Start a local network (initialising it if needed) and show a live status table.

    Each node runs as a child process logging to DIR/node<i>/node.log. Ctrl-C stops them all.

    \b
    Example:
      medledger devnet up
      medledger devnet up --nodes 4 --dir ./devnet
    """
    import signal as _signal
    import time as _time

    from node.cluster import Cluster, ClusterError

    root = Path(directory)
    try:
        if (root / "node0" / "config.toml").exists():
            cluster = Cluster.open(root)
            click.echo(f"using the existing network in {root} ({len(cluster.nodes)} nodes)", err=True)
        else:
            cluster = Cluster.create(root, nodes, base_port=base_port)
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
        for n in cluster.nodes:
            click.echo(f"node{n.index}: {n.api_url}  (log {n.home / 'node.log'}, key {n.home / 'institution.key'})", err=True)
        click.echo("press Ctrl-C to stop", err=True)
        deadline = _time.monotonic() + duration if duration > 0 else None
        from rich.console import Console
        from rich.live import Live

        console = Console(stderr=False)
        live = Live(_devnet_table(cluster), console=console, refresh_per_second=2, transient=False) if console.is_terminal else None
        last_line = 0.0
        try:
            if live:
                live.start()
            while not stopping["now"] and (deadline is None or _time.monotonic() < deadline):
                if live:
                    live.update(_devnet_table(cluster))
                elif _time.monotonic() - last_line >= 5:
                    last_line = _time.monotonic()
                    click.echo("  ".join(f"node{n.index}: h={h}" for n, h in zip(cluster.nodes, cluster.heights(), strict=True)))
                crashed = [n for n in cluster.nodes if n.process is not None and n.process.poll() is not None]
                if crashed:
                    for n in crashed:
                        click.echo(f"error: node{n.index} exited unexpectedly; see {n.home / 'node.log'}", err=True)
                    break
                _time.sleep(0.5)
        finally:
            if live:
                live.stop()
            click.echo("stopping all nodes...", err=True)
    click.echo("stopped", err=True)


def _devnet_table(cluster: Any) -> Any:
    from rich.table import Table

    table = Table(title="MedLedger devnet", expand=False)
    for col in ("node", "API", "height", "view", "peers", "mempool", "state root"):
        table.add_column(col)
    for n in cluster.nodes:
        s = n.status(timeout=0.5) if n.running else None
        if s is None:
            table.add_row(f"node{n.index}", n.api_url, "-", "-", "-", "-", "down" if not n.running else "starting")
        else:
            table.add_row(f"node{n.index}", n.api_url, str(s["height"]), str(s.get("view", 0)),
                          str(len(s.get("peers", []))), str(s["mempool_size"]), s["state_root"][:16] + "...")
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
@click.option("--behaviour", "behaviours", default="", help="Comma-separated Byzantine behaviours (default: all).")
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
      medledger sim --validators 4 --byzantine 2 --seeds 0-199   # above f: violations appear
    """
    from consensus.simulation.byzantine import BEHAVIOURS
    from consensus.simulation.runner import run_sim

    seeds = _parse_seeds(seeds_text)
    chosen = [b.strip() for b in behaviours.split(",") if b.strip()] or list(BEHAVIOURS)
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


# -- bench ---------------------------------------------------------------------------------------
@main.command(context_settings=CONTEXT)
@click.option("--target", "targets", required=True, help="Comma-separated API URLs of the nodes to load.")
@click.option("--txs", default=2000, show_default=True, type=click.IntRange(1, 10_000_000), help="Transactions to submit.")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 5000), help="Transactions per request.")
@click.option("--rate", default=0.0, show_default=True, help="Offered load in tx/s (0: as fast as accepted).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for every commit.")
@json_option
def bench(targets: str, txs: int, batch: int, rate: float, timeout: float, as_json: bool) -> None:
    """Submit signed identity.register transactions and measure commits.

    Keys and signatures are prepared before the clock starts; latency runs from sending a
    transaction's batch to its commit being visible at the node it was sent to.

    \b
    Example:
      medledger bench --target http://127.0.0.1:8700,http://127.0.0.1:8701 --txs 2000 --json
    """
    import asyncio

    from node.bench import BenchConfig, run_bench

    cfg = BenchConfig(targets=tuple(t.strip() for t in targets.split(",") if t.strip()), txs=txs, batch=batch,
                      timeout_s=timeout, rate=rate)
    try:
        result = asyncio.run(run_bench(cfg))
    except OSError as exc:
        fail(f"cannot reach the targets: {exc}", EXIT_UNREACHABLE)
    emit(as_json, result, lambda: "\n".join(f"{k:>16}: {v}" for k, v in result.items()))
    if result["committed"] < result["submitted"]:
        sys.exit(EXIT_REFUSED)


if __name__ == "__main__":
    main(prog_name="medledger")
