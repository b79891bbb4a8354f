"""`medledger devnet`: a local network of institutions on this machine (init, up with a live
status table, stop one node, add one more institution). The cluster, its supervisor and the
growing are tools (node/devtools/cluster.py, grow.py), imported inside the commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from node.chain.vocabulary import INSTITUTION_KINDS
from node.commands.options import CONTEXT, command_group, json_option
from node.commands.output import EXIT_REFUSED, EXIT_USAGE, emit, fail
from node.home.keys import KeyFileError
from node.home.layout import HomeExists


DEFAULT_DEVNET_NODES = 4


devnet = command_group("devnet", "Run a local network of institutions on this machine.")


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
    from node.chain.genesis import Genesis

    named = {i.id.hex(): i for i in Genesis.load(cluster.nodes[0].home / "genesis.json").institutions}
    data = [{"node": f"node{n.index}", "home": str(n.home), "node_id": n.node_id, "api_url": n.api_url,
             "key": str(n.home / "institution.key"), "name": named[n.node_id].name, "kind": named[n.node_id].kind}
            for n in cluster.nodes]
    emit(as_json, {"dir": directory, "nodes": data, "ca": str(cluster.ca_file) if cluster.ca_file else None},
         lambda: "\n".join(f"{d['node']}  {d['name']:<10} {d['api_url']}  {d['node_id'][:16]}...  key {d['key']}" for d in data)
         + f"\n(every institution's name, kind and id: medledger devnet ids --dir {directory})")


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

    from node.devtools.cluster import Cluster, ClusterError, Supervisor, remove_supervisor_pid, write_supervisor_pid

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
        write_supervisor_pid(root)  # `devnet add` finds us here and leaves its new home to us
        for n in cluster.nodes:
            click.echo(f"node{n.index}: {n.api_url}  (log {n.home / 'node.log'}, key {n.home / 'institution.key'})", err=True)
        click.echo(f"dashboard: {cluster.nodes[0].api_url}/ui/", err=True)
        click.echo("press Ctrl-C to stop", err=True)
        deadline = _time.monotonic() + duration if duration > 0 else None
        from rich.console import Console
        from rich.live import Live

        console = Console(stderr=False)
        live = Live(devnet_table(cluster, supervisor), console=console, refresh_per_second=2, transient=False) if console.is_terminal else None
        last_line = 0.0
        try:
            if live:
                live.start()
            while not stopping["now"] and (deadline is None or _time.monotonic() < deadline):
                events = supervisor.poll()
                for n in cluster.discover():  # a home `devnet add` made: ours to run from now on
                    cluster.start(n.index)
                    supervisor.adopt(n.index)
                    events.append(f"node{n.index} added: {n.api_url} (log {n.home / 'node.log'})")
                for event in events:
                    (live.console.print if live else lambda m: click.echo(m, err=True))(event)
                if live:
                    live.update(devnet_table(cluster, supervisor))
                elif _time.monotonic() - last_line >= 5:
                    last_line = _time.monotonic()
                    click.echo("  ".join(f"node{n.index}: " + (f"h={h}" if h is not None else supervisor.describe(n.index))
                                         for n, h in zip(cluster.nodes, cluster.heights(), strict=True)))
                _time.sleep(0.5)  # the refresh period of the table, not a synchronisation
        finally:
            remove_supervisor_pid(root)
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


@devnet.command("add", context_settings=CONTEXT)
@click.option("--dir", "directory", default="devnet", show_default=True, type=click.Path(file_okay=False),
              help="The running devnet's node homes; the new one is DIR/node<N> after the last.")
@click.option("--name", default=None, help="The new institution's name (default: its kind, as the devnet names them).")
@click.option("--kind", type=click.Choice(INSTITUTION_KINDS), default=None,
              help="The new institution's kind (default: the next of hospital, clinic, pharmacy, insurer, research, lab).")
@click.option("--validator", is_flag=True, help="Also have the validators vote it into the validator set (validator.add).")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(1, 3600),
              help="How long to wait for the node to start (and, with --validator, to catch up), in seconds.")
@json_option
def devnet_add(directory: str, name: str | None, kind: str | None, validator: bool, timeout: float, as_json: bool) -> None:
    """Add one more institution to a running devnet: make its home on the next API and peer
    ports, have the devnet's validators admit it (their keys DIR/node<i>/institution.key), and
    start its node, which follows the chain as an observer (from the newest snapshot if there
    is one, else from the genesis by block sync) until it is voted in as a validator.

    A running `devnet up --dir DIR` starts the new node itself (and restarts and stops it like
    the others); without one, the node runs as a process of its own (pid in
    DIR/node<N>/node.pid, log in DIR/node<N>/node.log; stop it with `devnet stop --node N`).
    TLS devnets are refused for now (no certificate can be made for the new node).

    \b
    Examples:
      medledger devnet up --dir ./devnet                # in one terminal
      medledger devnet add --dir ./devnet               # in another: node4 follows as an observer
      medledger devnet add --dir ./devnet --validator   # node5, voted in: prints the height it votes from
      medledger validators --node http://127.0.0.1:8700
    """
    from node.devtools.grow import GrowError, add_node

    try:
        added = add_node(Path(directory), name=name, kind=kind, validator=validator, timeout=timeout,
                         say=lambda m: click.echo(m, err=True))
    except (GrowError, HomeExists, KeyFileError) as exc:
        fail(str(exc), EXIT_REFUSED)

    def text() -> str:
        lines = [f"node{added.index}  {added.api_url}  {added.node_id[:16]}...  {added.name} ({added.kind})  "
                 f"(started by {added.started_by}, pid {added.pid})"]
        if added.effective_height is not None:
            lines.append(f"voted in as a validator: it votes from height {added.effective_height}")
        else:
            lines.append("an observer: it follows the chain; make it a validator with `medledger validator add`")
        return "\n".join(lines)

    emit(as_json, added.as_json(), text)


@devnet.command("ids", context_settings=CONTEXT)
@click.option("--dir", "directory", default="devnet", show_default=True, type=click.Path(file_okay=False),
              help="The devnet's node homes (DIR/node0 ...).")
@click.option("--files-only", is_flag=True, help="Read the homes and the genesis only; do not ask a running node.")
@json_option
def devnet_ids(directory: str, files_only: bool, as_json: bool) -> None:
    """Print every institution of a devnet: its name, kind, id, API URL and whether it validates.

    Read from the node homes and the genesis under DIR; when a node answers, the ledger's view
    too (institutions admitted since the genesis, e.g. by `devnet add`, and the current
    validator set). The last line says which it used. With --json: {"institutions": [{"name",
    "kind", "id", "api", "validator", "node", "admitted"}], "source": "ledger"|"files", ...}.

    \b
    Examples:
      medledger devnet init --dir ./devnet
      medledger devnet ids --dir ./devnet
      medledger devnet ids --dir ./devnet --json | jq -r '.institutions[] | select(.kind == "pharmacy") | .id'
    """
    from node.devtools.ids import IdsError, devnet_ids as read_ids

    try:
        found = read_ids(Path(directory), ask=not files_only)
    except IdsError as exc:
        fail(str(exc), EXIT_USAGE)

    def text() -> str:
        rows = [(r.node, r.name, r.kind, r.id, r.api, "validator" if r.validator else ("admitted" if r.admitted else "not admitted"))
                for r in found.institutions]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        if found.source == "ledger":
            lines.append(f"(homes and genesis checked against the ledger at {found.asked})")
        else:
            why = "--files-only" if files_only else "no node answered"
            lines.append(f"(read the homes and the genesis only: {why}; institutions admitted since are not shown as admitted)")
        return "\n".join(lines)

    emit(as_json, found.to_json(), text)


def devnet_table(cluster: Any, supervisor: Any = None) -> Any:
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
