"""`medledger demo`: one command that starts a fresh five-institution devnet, plays the story of
node/devtools/demo_story.py on it with narration, says where to look, and keeps the network up
until Ctrl-C (or stops it with --exit). The tools are imported inside the command."""

from __future__ import annotations

import datetime as _dt
import json
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import click

from node.commands.options import CONTEXT, json_option
from node.commands.output import EXIT_REFUSED, EXIT_USAGE, fail

DEMO_NODES = 5  # hospital, clinic, pharmacy, insurer, research centre


def refuse_existing(root: Path) -> None:
    """A demo starts on a fresh directory: say what is in the way and what to do."""
    from node.devtools.demo_story import MARKER_FILE

    if not root.exists():
        return
    if not root.is_dir():
        fail(f"--dir: {root} is a file; pick another --dir", EXIT_USAGE)
    if (root / MARKER_FILE).exists():
        fail(f"--dir: {root} holds a previous demo; remove it (rm -r {root}) or pick another --dir", EXIT_USAGE)
    if (root / "node0" / "config.toml").exists():
        fail(f"--dir: {root} holds a devnet that is not a demo's; the demo makes its own: pick another --dir", EXIT_USAGE)
    if any(root.iterdir()):
        fail(f"--dir: {root} is not empty; the demo needs a new or empty directory: pick another --dir", EXIT_USAGE)


def busy_ports(ports: list[int]) -> list[int]:
    """The ports of `ports` something on this machine listens on now."""
    taken = []
    for port in ports:
        with socket.socket() as s:
            # as a server binds (aiohttp sets SO_REUSEADDR): a port left in TIME_WAIT by the last run is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                taken.append(port)
    return taken


def where_to_look(root: Path, nodes: list[dict[str, Any]], observation: str | None,
                  prescription: str | None = None) -> list[str]:
    """The pages and commands that show what the story did."""
    by_kind = {n["kind"]: n for n in nodes}
    hospital, clinic = by_kind.get("hospital", nodes[0]), by_kind.get("clinic", nodes[0])
    pharmacy = by_kind.get("pharmacy", nodes[0])
    today = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    keys, hospital_key = root / "keys", root / hospital["node"] / "institution.key"
    return [
        f"dashboard: {hospital['api']}/ui/ (every node serves it: " + ", ".join(f"{n['kind']} {n['api']}/ui/" for n in nodes) + ")",
        f"medledger devnet ids --dir {root}",
        f"medledger audit --key {keys / 'patient-a.key'} --node {hospital['api']}",
        f"medledger record list --key {keys / 'patient-a.key'} --node {hospital['api']}",
        f"medledger audit disclosures --key {hospital_key} --since {today} --node {hospital['api']}",
        f"medledger audit breakglass --key {hospital_key} --node {hospital['api']}",
        f"medledger record get --key {keys / 'clinic-physician.key'} --record {observation or '<record id>'} "
        f"--purpose treatment --out observation.json --node {clinic['api']}   (under patient A's consent)",
        f"medledger care inbox --key {keys / 'pharmacist.key'} --node {pharmacy['api']}   (the prescriptions addressed to the pharmacy)",
        f"medledger care status --key {keys / 'hospital-physician.key'} --record {prescription or '<record id>'} "
        f"--node {hospital['api']}   (the prescription: completed, by which dispense)",
        f"medledger policy show --id payer-minimum-2027 --node {hospital['api']}   (the payer agreement in force)",
        f"the research extract: {root / 'extract'} (report.json and one .ndjson per type)",
    ]


@click.command("demo", context_settings=CONTEXT)
@click.option("--dir", "directory", default="demo", show_default=True, type=click.Path(file_okay=False),
              help="A new (or empty) directory for the demo's devnet, keys and extract.")
@click.option("--base-port", default=8800, show_default=True, type=click.IntRange(1024, 65000),
              help="API port of node0 (node i: base+i; peer ports base+100+i); away from `devnet up`'s 8700.")
@click.option("--exit", "stop_after", is_flag=True, help="Stop the network when the story is told (default: run until Ctrl-C).")
@json_option
def demo(directory: str, base_port: int, stop_after: bool, as_json: bool) -> None:
    """Start a fresh five-institution network and play the healthcare story on it.

    A hospital, a clinic, a pharmacy, an insurer and a research centre: patients register,
    staff are vouched for, records are written, an access is refused and then allowed by
    consent, a pharmacy is nominated and a prescription dispensed, a claim is paid, a referral
    accepted, a break-glass read is reviewed, a research extract is released, a record is
    erased. Then it prints where to look (the dashboard, audit commands) and keeps the network
    up until Ctrl-C, or stops it with --exit. With --json: one JSON object on stdout
    ({"steps": [{"name", "ok", "detail"}], "ok", "dir", "nodes", ...}), no narration.
    Exit status 0 when every step is ok, 1 otherwise. The story: docs/demo.md.

    \b
    Examples:
      medledger demo
      medledger demo --dir /tmp/demo2 --base-port 8900 --exit
      medledger demo --json --exit | jq '.steps[] | select(.ok | not)'
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    from node.devtools.cluster import Cluster, Supervisor
    from node.devtools.demo_story import MARKER_FILE, STORY, DemoContext, Step, StepResult, run_steps
    from node.devtools.ids import devnet_ids
    from node.home.keys import KeyFileError
    from node.home.layout import HomeExists

    root = Path(directory)
    refuse_existing(root)
    ports = [base_port + i for i in range(DEMO_NODES)] + [base_port + 100 + i for i in range(DEMO_NODES)]
    taken = busy_ports(ports)
    if taken:
        fail(f"--base-port: port(s) {', '.join(map(str, taken))} are in use (the demo needs {base_port}..{base_port + DEMO_NODES - 1} "
             f"and {base_port + 100}..{base_port + 100 + DEMO_NODES - 1}); pick another --base-port", EXIT_USAGE)
    try:
        cluster = Cluster.create(root, DEMO_NODES, base_port=base_port)
    except (HomeExists, KeyFileError) as exc:
        fail(str(exc), EXIT_USAGE)
    (root / MARKER_FILE).write_text(json.dumps({"made_by": "medledger demo", "base_port": base_port}) + "\n")
    nodes = [{"name": r.name, "kind": r.kind, "id": r.id, "api": r.api, "node": r.node}
             for r in devnet_ids(root, ask=False).institutions]

    # narration on stdout; with --json stdout holds the JSON only, and the progress goes to a terminal's stderr
    console = Console(stderr=as_json, highlight=False)
    show = not as_json or console.is_terminal
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        console=console, transient=True, disable=not show)
    task = progress.add_task("starting", total=len(STORY))

    def say(message: str) -> None:
        if not as_json:
            progress.console.print(message)

    def on_start(step: Step) -> None:
        progress.update(task, description=step.name.replace("_", " "))
        if step.narration:
            say(f"[bold]{step.narration}[/bold]")

    def on_done(step: Step, result: StepResult) -> None:
        progress.advance(task)
        mark = "[green]ok[/green]" if result.ok else "[red]FAILED[/red]"
        say(f"  {mark} {step.name}: {result.detail}")

    ctx = DemoContext(root=root, cluster=cluster, say=say)
    stopping = threading.Event()
    # SIGTERM during the story ends it as Ctrl-C does: the nodes (in sessions of their own) are stopped on the way out
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with cluster:
        with progress:
            results = run_steps(STORY, ctx, on_start=on_start, on_done=on_done)
        ok = all(r.ok for r in results)
        look = where_to_look(root, nodes, ctx.records.get("Observation"), ctx.records.get("MedicationRequest"))
        running = not stop_after
        if as_json:
            doc = {"steps": [r.to_json() for r in results], "ok": ok, "dir": str(root), "base_port": base_port,
                   "nodes": [{k: n[k] for k in ("name", "kind", "id", "api")} for n in nodes],
                   "keys": str(root / "keys"),
                   "patients": {name: p.id for name, p in ctx.patients.items()},
                   "records": dict(ctx.records), "extract": str(root / "extract") if "extract" in ctx.facts else None,
                   "dashboard": f"{nodes[0]['api']}/ui/", "look": look, "running": running}
            click.echo(json.dumps(doc, indent=2, sort_keys=True))
        else:
            passed = sum(r.ok for r in results)
            console.print(f"\n[bold]{passed} of {len(results)} steps ok[/bold]" + ("" if ok else " (see the FAILED ones above)"))
            if ctx.patients:
                console.print("patients: " + ", ".join(f"{n} {p.id}" for n, p in ctx.patients.items()))
            console.print("\n[bold]Where to look[/bold]")
            for line in look:
                console.print(f"  {line}", soft_wrap=True)
        sys.stdout.flush()
        if running:
            def on_signal(signum: int, frame: Any) -> None:
                stopping.set()

            signal.signal(signal.SIGINT, on_signal)
            signal.signal(signal.SIGTERM, on_signal)
            click.echo(f"the network runs (logs in {root}/node<i>/node.log); press Ctrl-C to stop it", err=True)
            supervisor = Supervisor(cluster)
            while not stopping.wait(1.0):  # wakes on Ctrl-C; each second, restarts a node that exited
                for event in supervisor.poll():
                    click.echo(event, err=True)
        click.echo("stopping the network...", err=True)
    click.echo(f"stopped; the demo's data stays in {root} (remove it before the next demo, or use another --dir)", err=True)
    if not ok:
        sys.exit(EXIT_REFUSED)
