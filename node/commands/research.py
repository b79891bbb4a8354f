"""`medledger demo-data`, `study` and `research`: synthetic data for demos, studies and their
researchers, and de-identified research extracts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from node.app.studies import K_FLOOR, K_MAX
from node.client import Client, HealthClient
from node.commands.args import check_types, date_ms, identity_arg, load_identity, split_list
from node.commands.options import CONTEXT, client_options, command_group, json_option, signed_command
from node.commands.output import EXIT_REFUSED, EXIT_USAGE, emit, fail, report_tx, run_client, transact
from node.core.advice import explain


@click.command("demo-data", context_settings=CONTEXT)
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
    until_ms = date_ms(until, "--until", end_of_day=True)
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

        def say(message: str) -> None:
            if not as_json:
                click.echo(message, err=True)

        say(text)
        try:
            report = run_client(lambda: load_demo(Path(out_dir), Path(devnet_dir), types=split_list(types) or None,
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


study = command_group("study", "Register research studies and their researchers (institutions).")


@signed_command(study, "register", "The institution's key.")
@click.option("--id", "study_id", required=True, help="Study id (letters, digits, - and _).")
@click.option("--title", required=True, help="Study title.")
@click.option("--approval", required=True, help="Ethics-board approval reference.")
@click.option("--until", "until", required=True, help="Last day of the study (YYYY-MM-DD, UTC); nothing is released after it.")
@click.option("--k-min", "k_min", default=K_FLOOR, show_default=True, type=click.IntRange(K_FLOOR, K_MAX),
              help=f"The study's minimum k-anonymity, fixed for its life (the network floor is {K_FLOOR}); a researcher may only raise it.")
@client_options
def study_register(key_file: str, study_id: str, title: str, approval: str, until: str, k_min: int, node_url: str,
                   passphrase_env: str | None, as_json: bool) -> None:
    """Register a study under the institution's ethics approval.

    \b
    Example:
      medledger study register --key devnet/node0/institution.key --id DIAB-2027 \\
          --title "Type 2 diabetes outcomes" --approval IRB-2026-114 --until 2027-12-31 --k-min 5
    """

    inst = load_identity(key_file, passphrase_env)
    body = {"study": study_id, "title": title, "ethics_ref": approval, "until_ms": date_ms(until, "--until", end_of_day=True),
            "min_k": k_min}
    result = transact(node_url, inst, "study.register", body)
    report_tx(result, as_json, f"study {study_id} registered (tx {result.get('tx_hash')})")


@signed_command(study, "add-researcher", "The study's institution's key.")
@click.option("--study", "study_id", required=True, help="Study id.")
@click.option("--researcher", required=True, help="The researcher's identity id.")
@client_options
def study_add_researcher(key_file: str, study_id: str, researcher: str, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Put a registered researcher on a study.

    \b
    Example:
      medledger study add-researcher --key devnet/node0/institution.key --study DIAB-2027 --researcher <id>
    """
    rid = identity_arg(researcher, "--researcher")
    inst = load_identity(key_file, passphrase_env)
    result = transact(node_url, inst, "study.add_researcher", {"study": study_id, "researcher": rid})
    report_tx(result, as_json, f"researcher added to {study_id} (tx {result.get('tx_hash')})")


research = command_group("research", "De-identified research extracts of consenting patients.")


@signed_command(research, "extract", "The researcher's key.")
@click.option("--study", "study_id", required=True, help="Study id.")
@click.option("--types", required=True, help="Resource types, comma-separated (must include Patient).")
@click.option("--k", "k", default=K_FLOOR, show_default=True, type=click.IntRange(1, K_MAX),
              help="k-anonymity: smallest group released; the study's minimum (study register --k-min) applies if larger.")
@click.option("--coordinator", "coordinator", default=None,
              help="The institution id that coordinates the extract (the study's institution or a custodian of its "
                   "patients' records); default: the institution of the node given by --node.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="New or empty directory for the extract.")
@client_options
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
    req = ExtractRequest.create(researcher, chain_id=str(status["chain_id"]), study=study_id, types=split_list(types), k=k,
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
