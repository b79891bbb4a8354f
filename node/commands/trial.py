"""`medledger trial`: clinical trials — registration, feasibility without identities, recruitment
of consenting patients, versioned eConsent, tamper-evident trial data.

The sponsor registers and amends the trial, asks the sites for feasibility counts and to invite
matching patients, and locks the data set; a patient lists its invitations at its site and
accepts (under a pseudonym derived for this trial alone) or declines, and may withdraw; a site's
investigators enrol accepted participants and submit their data; an auditor verifies an export
against the lock. Node/research/trial_site.py is the site's side; node/app/types/trial.py the
ledger's rules.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from collections.abc import Callable
from typing import Any

import click

from node.client import HealthClient
from node.commands.args import date_ms, identity_arg, load_identity, split_list
from node.commands.options import client_options, command_group, json_option, node_option, signed_command
from node.commands.output import EXIT_REFUSED, EXIT_USAGE, emit, fail, report_tx, run_client, transact

trial = command_group("trial", "Clinical trials: register, find and invite eligible patients, consent, data, lock, verify.")

SITE_HELP = "A site's API as ID=URL (repeatable), when the ledger does not publish it (a site that is no validator)."


def _read(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"{option}: cannot read {path}: {exc.strerror or exc}", EXIT_USAGE)


def _criteria_text(path: str) -> str:
    from node.app.trial_criteria import canonical, parse

    try:
        doc = json.loads(_read(path, "--criteria"))
        parse(doc)  # CriteriaInvalid is a ValueError: its message says what is wrong
    except ValueError as exc:
        fail(f"--criteria: {exc}", EXIT_USAGE)
    return canonical(doc).decode("ascii")


def _site_urls(client: HealthClient, sites: list[str], given: tuple[str, ...]) -> dict[str, str]:
    """Each site's API: --site ID=URL, else the API the ledger publishes for it (validators)."""
    urls: dict[str, str] = {}
    for entry in run_client(lambda: client.get("/v1/validators")).get("validators", []):
        if entry.get("api"):
            urls[entry["id"]] = entry["api"]
    for pair in given:
        sid, _, url = pair.partition("=")
        if not url:
            fail(f"--site: {pair!r} is not ID=URL", EXIT_USAGE)
        urls[sid.strip().lower()] = url.strip()
    missing = [s for s in sites if s not in urls]
    if missing:
        fail(f"no API known for site {missing[0][:16]}...: give it with --site ID=URL", EXIT_USAGE)
    return {s: urls[s] for s in sites}


def _at(url: str, call: Callable[[HealthClient], Any]) -> Any:
    """`call` on a client of the node at `url` (a site), its errors reported as the CLI's."""
    site = HealthClient(url)
    return run_client(lambda: call(site))


@signed_command(trial, "register", "The sponsor institution's key.")
@click.option("--id", "trial_id", required=True, help="The trial's id on the ledger (1-64 letters, digits, . _ -).")
@click.option("--registry-id", required=True, help="Its public registry id, e.g. NCT01234567.")
@click.option("--ethics", "ethics_ref", required=True, help="The approving ethics board's reference, e.g. IRB-2026-114.")
@click.option("--protocol", "protocol_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The protocol document: its SHA-256 goes on the ledger as version 1.")
@click.option("--sites", required=True, help="The sites' institution ids, comma-separated.")
@click.option("--investigators", default="", help="Investigators (practitioners of the sites), comma-separated ids.")
@click.option("--criteria", "criteria_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The eligibility criteria as JSON (docs/trials.md).")
@click.option("--until", required=True, help="The trial's end (YYYY-MM-DD, UTC).")
@click.option("--threshold", default=10, show_default=True, type=click.IntRange(5, 1000),
              help="Feasibility counts under it are reported as 'fewer than'.")
@client_options
def trial_register(key_file: str, trial_id: str, registry_id: str, ethics_ref: str, protocol_file: str, sites: str,
                   investigators: str, criteria_file: str, until: str, threshold: int, node_url: str,
                   passphrase_env: str | None, as_json: bool) -> None:
    """Register a trial: registry id, ethics approval, protocol hash, sites, investigators, criteria.

    \b
    Example:
      medledger trial register --key devnet/node3/institution.key --id DIAB-RX-2027 --registry-id NCT01234567 \\
          --ethics IRB-2026-114 --protocol protocol-v1.pdf --sites <site>,<site> --criteria criteria.json --until 2028-12-31
    """
    body: dict[str, Any] = {
        "trial": trial_id, "registry_id": registry_id, "ethics_ref": ethics_ref,
        "protocol_hash": hashlib.sha256(_read(protocol_file, "--protocol")).digest(),
        "sites": [identity_arg(s, "--sites") for s in split_list(sites)],
        "investigators": [identity_arg(s, "--investigators") for s in split_list(investigators)],
        "criteria": _criteria_text(criteria_file), "until_ms": date_ms(until, "--until", end_of_day=True),
        "threshold": threshold}
    result = transact(node_url, load_identity(key_file, passphrase_env), "trial.register", body)
    report_tx(result, as_json, f"trial {trial_id} registered (protocol version 1)")


@signed_command(trial, "amend", "The sponsor institution's key.")
@click.option("--id", "trial_id", required=True, help="The trial's id.")
@click.option("--protocol", "protocol_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The amended protocol: its SHA-256 is the next version's.")
@click.option("--reconsent/--no-reconsent", default=False, show_default=True,
              help="Participants must consent to this version before more of their data is collected.")
@click.option("--criteria", "criteria_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="New eligibility criteria, if they change.")
@client_options
def trial_amend(key_file: str, trial_id: str, protocol_file: str, reconsent: bool, criteria_file: str | None,
                node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Amend the protocol: a new version with its own hash (and, with --reconsent, new consent).

    \b
    Example:
      medledger trial amend --key devnet/node3/institution.key --id DIAB-RX-2027 --protocol protocol-v2.pdf --reconsent
    """
    found = run_client(lambda: HealthClient(node_url).trial(trial_id))
    version = int(found["versions"][-1]["version"]) + 1
    body: dict[str, Any] = {"trial": trial_id, "version": version, "reconsent": reconsent,
                            "protocol_hash": hashlib.sha256(_read(protocol_file, "--protocol")).digest()}
    if criteria_file:
        body["criteria"] = _criteria_text(criteria_file)
    result = transact(node_url, load_identity(key_file, passphrase_env), "trial.amend", body)
    result["version"] = version
    report_tx(result, as_json, f"trial {trial_id}: protocol version {version}" + (" (re-consent asked)" if reconsent else ""))


@signed_command(trial, "feasibility", "The sponsor institution's key.")
@click.option("--id", "trial_id", required=True, help="The trial's id.")
@click.option("--site", "site_urls", multiple=True, metavar="ID=URL", help=SITE_HELP)
@client_options
def trial_feasibility(key_file: str, trial_id: str, site_urls: tuple[str, ...], node_url: str, passphrase_env: str | None,
                      as_json: bool) -> None:
    """Ask every site how many of its screened patients match the criteria (small counts hidden).

    The query and each site's answer are recorded on the ledger; no identity, pseudonym or
    record leaves a site.

    \b
    Example:
      medledger trial feasibility --key devnet/node3/institution.key --id DIAB-RX-2027
    """
    sponsor = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    found = run_client(lambda: client.trial(trial_id))
    query = os.urandom(32)
    asked = transact(node_url, sponsor, "trial.feasibility", {"trial": trial_id, "query": query})
    if asked.get("status") != "committed":
        report_tx(asked, as_json, "")
    answers = [_at(url, lambda c: c.site_count(sponsor, trial_id, query.hex()))
               for url in _site_urls(client, found["sites"], site_urls).values()]
    exact = sum(a.get("count", 0) for a in answers)
    out = {"trial": trial_id, "query": query.hex(), "sites": answers, "total_at_least": exact,
           "hidden_sites": sum(1 for a in answers if "fewer_than" in a)}
    emit(as_json, out, lambda: "\n".join(
        [f"{a['site'][:16]}...  {a['count'] if 'count' in a else 'fewer than ' + str(a['fewer_than'])}" for a in answers]
        + [f"total: at least {exact}" + (f" (and {out['hidden_sites']} site(s) with fewer than the threshold)"
                                         if out["hidden_sites"] else "")]))


@signed_command(trial, "invite", "The sponsor institution's key.")
@click.option("--id", "trial_id", required=True, help="The trial's id.")
@click.option("--summary", default="", help="What the patient reads in the invitation (kept off the chain, sealed to each patient).")
@click.option("--site", "site_urls", multiple=True, metavar="ID=URL", help=SITE_HELP)
@client_options
def trial_invite(key_file: str, trial_id: str, summary: str, site_urls: tuple[str, ...], node_url: str,
                 passphrase_env: str | None, as_json: bool) -> None:
    """Ask every site to invite its matching, screened patients; you learn only how many.

    \b
    Example:
      medledger trial invite --key devnet/node3/institution.key --id DIAB-RX-2027 --summary "A 12-month study of ..."
    """
    sponsor = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    found = run_client(lambda: client.trial(trial_id))
    answers = [_at(url, lambda c: c.site_invite(sponsor, trial_id, summary))
               for url in _site_urls(client, found["sites"], site_urls).values()]
    out = {"trial": trial_id, "sites": answers, "invited": sum(a["invited"] for a in answers)}
    emit(as_json, out, lambda: "\n".join([f"{a['site'][:16]}...  invited {a['invited']}" for a in answers]
                                         + [f"total invited: {out['invited']}"]))


@trial.command("invitations")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False), help="The patient's key.")
@node_option
@click.option("--passphrase-env", default=None, metavar="VAR", help="Read the key's passphrase from this variable.")
@json_option
def trial_invitations(key_file: str, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """List your trial invitations kept at this node (your site), decrypted here.

    \b
    Example:
      medledger trial invitations --key alice.key --node http://127.0.0.1:8700
    """
    from node.records.envelope import EnvelopeError, decrypt, unwrap_key

    patient = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    doc = run_client(lambda: client.invitations(patient))
    listed = []
    for item in doc["invitations"]:
        try:
            letter = json.loads(decrypt(bytes.fromhex(item["ciphertext"]), unwrap_key(bytes.fromhex(item["wrapped"]), patient)))
        except (EnvelopeError, ValueError):
            continue
        status = item["status"]
        if status == "accepted" and _reconsent_due(client, patient, item["trial"]):
            status = "reconsent_needed"
        listed.append({"trial": item["trial"], "status": status, "site": item["site"],
                       "registry_id": letter["registry_id"], "ethics_ref": letter["ethics_ref"],
                       "protocol_version": letter["protocol_version"], "summary": letter["summary"]})
    emit(as_json, {"invitations": listed}, lambda: "\n".join(
        f"{i['trial']}  ({i['registry_id']}, ethics {i['ethics_ref']}, protocol v{i['protocol_version']})  {i['status']}\n"
        f"    {i['summary']}" + ("\n    the protocol was amended: consent again with `trial respond --accept`"
                                  if i["status"] == "reconsent_needed" else "") for i in listed) or "no invitations")


def _reconsent_due(client: HealthClient, patient: Any, trial_id: str) -> bool:
    """Whether the trial was amended with re-consent past what the patient's pseudonym consented to."""
    from node.client import ApiError, trial_pseudonym

    found = run_client(lambda: client.trial(trial_id))
    needed = max((int(v["version"]) for v in found["versions"] if v.get("reconsent")), default=1)
    try:
        mine = client.trial_participant(trial_id, trial_pseudonym(patient, client.chain_id, trial_id).id)
    except ApiError:
        return False
    return "withdrawn_ms" not in mine and max(mine["versions"]) < needed


@signed_command(trial, "respond", "The patient's key.")
@click.option("--id", "trial_id", required=True, help="The trial's id.")
@click.option("--accept/--decline", required=True, help="Take part (under a pseudonym for this trial only), or not.")
@client_options
def trial_respond(key_file: str, trial_id: str, accept: bool, node_url: str, passphrase_env: str | None,
                  as_json: bool) -> None:
    """Answer an invitation at your site. Accepting consents to the current protocol version under
    your trial pseudonym (run it again after an amendment that asks for re-consent).

    \b
    Example:
      medledger trial respond --key alice.key --id DIAB-RX-2027 --accept --node http://127.0.0.1:8700
    """
    from node.client import trial_pseudonym

    patient = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    answer = run_client(lambda: client.trial_respond(patient, trial_id, accept=accept))
    if accept:
        answer["pseudonym"] = trial_pseudonym(patient, client.chain_id, trial_id).id
    emit(as_json, answer, f"{answer['status']}" + (f" under pseudonym {answer.get('pseudonym')} (protocol version "
                                                   f"{answer.get('version')})" if accept else ""))


@signed_command(trial, "enrol", "The site institution's key, or one of its investigators'.")
@click.option("--id", "trial_id", required=True, help="The trial's id.")
@click.option("--pseudonym", required=True, help="The participant's pseudonym (on the ledger after it accepted).")
@client_options
def trial_enrol(key_file: str, trial_id: str, pseudonym: str, node_url: str, passphrase_env: str | None,
                as_json: bool) -> None:
    """Enrol a participant who accepted at your site.

    \b
    Example:
      medledger trial enrol --key devnet/node0/institution.key --id DIAB-RX-2027 --pseudonym <id>
    """
    body = {"trial": trial_id, "pseudonym": identity_arg(pseudonym, "--pseudonym")}
    result = transact(node_url, load_identity(key_file, passphrase_env), "trial.enrol", body)
    report_tx(result, as_json, f"enrolled {pseudonym}")


@signed_command(trial, "withdraw", "The patient's key.")
@click.option("--id", "trial_id", required=True, help="The trial's id.")
@client_options
def trial_withdraw(key_file: str, trial_id: str, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Withdraw from a trial: no more of your data is collected or released (signed by your pseudonym).

    \b
    Example:
      medledger trial withdraw --key alice.key --id DIAB-RX-2027
    """
    patient = load_identity(key_file, passphrase_env)
    answer = run_client(lambda: HealthClient(node_url).trial_withdraw(patient, trial_id))
    emit(as_json, answer, f"withdrawn from {trial_id} (tx {answer.get('tx')})")


@signed_command(trial, "submit", "An investigator's key (at the participant's site).")
@click.option("--id", "trial_id", required=True, help="The trial's id.")
@click.option("--pseudonym", required=True, help="The participant's pseudonym.")
@click.option("--file", "resource_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The trial observation as FHIR R4 JSON (it names no patient: the pseudonym does).")
@client_options
def trial_submit(key_file: str, trial_id: str, pseudonym: str, resource_file: str, node_url: str,
                 passphrase_env: str | None, as_json: bool) -> None:
    """Submit trial data for an enrolled participant: encrypted for the site and the sponsor, its
    salted hash anchored on the ledger.

    \b
    Example:
      medledger trial submit --key investigator.key --id DIAB-RX-2027 --pseudonym <id> --file hba1c.json
    """
    identity_arg(pseudonym, "--pseudonym")
    try:
        resource = json.loads(_read(resource_file, "--file"))
    except ValueError as exc:
        fail(f"--file: not JSON: {exc}", EXIT_USAGE)
    from node.records.fhir import FhirInvalid, parse_resource

    try:
        parse_resource(_read(resource_file, "--file"))
    except FhirInvalid as exc:
        fail(f"--file: {exc} (a FHIR R4 resource as JSON)", EXIT_USAGE)
    named = [k for k in ("subject", "patient", "beneficiary") if k in resource]
    if named:  # the pseudonym identifies the participant; a reference would link the data to a patient
        fail(f"--file: trial data names no patient (remove {named[0]!r}): the pseudonym is the participant", EXIT_USAGE)
    investigator = load_identity(key_file, passphrase_env)
    result = run_client(lambda: HealthClient(node_url).trial_submit(investigator, trial_id, pseudonym, resource))
    report_tx(result, as_json, f"submission {result.get('submission')}")


@signed_command(trial, "lock", "The sponsor institution's key.")
@click.option("--id", "trial_id", required=True, help="The trial's id.")
@client_options
def trial_lock(key_file: str, trial_id: str, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Lock the trial's data set: the ledger stores the Merkle root of every submission.

    \b
    Example:
      medledger trial lock --key devnet/node3/institution.key --id DIAB-RX-2027
    """
    result = transact(node_url, load_identity(key_file, passphrase_env), "trial.lock", {"trial": trial_id})
    if result.get("status") == "committed":
        result["lock"] = run_client(lambda: HealthClient(node_url).trial(trial_id)).get("lock")
    report_tx(result, as_json, f"locked: {json.dumps(result.get('lock'))}")


@signed_command(trial, "export", "The sponsor institution's key.")
@click.option("--id", "trial_id", required=True, help="The trial's id.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Where to write the data set.")
@click.option("--site", "site_urls", multiple=True, metavar="ID=URL", help=SITE_HELP)
@client_options
def trial_export(key_file: str, trial_id: str, out_dir: str, site_urls: tuple[str, ...], node_url: str,
                 passphrase_env: str | None, as_json: bool) -> None:
    """Fetch every site's submissions, decrypt them with your key, write one JSON file each.

    \b
    Example:
      medledger trial export --key devnet/node3/institution.key --id DIAB-RX-2027 --out dataset
    """
    sponsor = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    found = run_client(lambda: client.trial(trial_id))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for url in _site_urls(client, found["sites"], site_urls).values():
        for entry in _at(url, lambda c: c.trial_export(sponsor, trial_id)):
            (out / f"{entry['submission']}.json").write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
            written += 1
    emit(as_json, {"trial": trial_id, "out": str(out), "submissions": written}, f"{written} submissions written to {out}")


@trial.command("verify")
@click.option("--id", "trial_id", required=True, help="The trial's id.")
@click.option("--export", "export_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="An exported data set (trial export).")
@node_option
@json_option
def trial_verify(trial_id: str, export_dir: str, node_url: str, as_json: bool) -> None:
    """Check an exported data set against the lock, resource by resource.

    Each file's salted hash must be the one its submission anchored on the ledger, every anchored
    submission must be there (but those of participants who withdrew, which no site releases any
    more), and the Merkle root over the anchors must be the lock's.

    \b
    Example:
      medledger trial verify --id DIAB-RX-2027 --export dataset
    """
    from node.app.trials import submission_hash, submission_leaf
    from node.client import resource_bytes
    from node.core.merkle import merkle_root

    client = HealthClient(node_url)
    found = run_client(lambda: client.trial(trial_id))
    lock = found.get("lock")
    anchored = run_client(lambda: client.trial_submissions(trial_id))["submissions"]
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(export_dir).glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            files[str(entry["submission"])] = entry
        except (ValueError, KeyError, TypeError):
            fail(f"{path.name}: not an exported submission", EXIT_USAGE)
    problems, withheld = [], []
    withdrawn: dict[str, bool] = {}
    for item in anchored:
        entry = files.get(item["submission"])
        if entry is None:
            pseud = item["pseudonym"]
            if pseud not in withdrawn:
                withdrawn[pseud] = "withdrawn_ms" in run_client(lambda: client.trial_participant(trial_id, pseud))
            if withdrawn[pseud]:  # a participant who withdrew: the sites release no more of theirs
                withheld.append(item["submission"])
            else:
                problems.append({"submission": item["submission"], "problem": "missing from the export"})
            continue
        digest = submission_hash(bytes.fromhex(entry["salt"]), resource_bytes(entry["resource"]))
        if digest.hex() != item["hash"]:
            problems.append({"submission": item["submission"], "resource_type": item["resource_type"],
                             "problem": "the resource differs from what was submitted (its hash is not the ledger's)"})
    extra = sorted(set(files) - {i["submission"] for i in anchored})
    problems += [{"submission": s, "problem": "not anchored on the ledger"} for s in extra]
    root = merkle_root([submission_leaf(bytes.fromhex(i["submission"]), bytes.fromhex(i["hash"])) for i in anchored]).hex()
    if lock is None:
        problems.append({"problem": "the trial is not locked: nothing to verify against"})
    elif lock["root"] != root or lock["count"] != len(anchored):
        problems.append({"problem": "the ledger's submissions do not give the lock's Merkle root"})
    out = {"trial": trial_id, "ok": not problems, "checked": len(anchored) - len(withheld), "withheld": withheld,
           "lock": lock, "root": root, "problems": problems}
    note = f"; {len(withheld)} of participants who withdrew are withheld (their anchors still count)" if withheld else ""
    emit(as_json, out, lambda: f"ok: {len(anchored) - len(withheld)} submissions match the lock (root {root[:16]}...){note}"
         if not problems
         else "\n".join(f"NOT verified: {p.get('submission', '')[:16]} {p.get('resource_type', '')}: {p['problem']}"
                        for p in problems))
    if problems:
        raise SystemExit(EXIT_REFUSED)
