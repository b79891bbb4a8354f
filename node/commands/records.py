"""`medledger record`: write, read, list, erase and contest encrypted health records."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from node.app.access import BREAKGLASS_REASONS
from node.app.types.record_contest import CONTEST_REASONS
from node.client import HealthClient
from node.commands.args import identity_arg, load_identity, patient_reader, record_arg
from node.commands.options import (
    READER_KEY_HELP, client_options, command_group, patient_client_options, patient_option, signed_command,
)
from node.commands.output import EXIT_REFUSED, EXIT_USAGE, emit, fail, report_tx, run_client, transact
from node.core.advice import explain

BREAKGLASS_REASON_CODES = list(BREAKGLASS_REASONS)
CONTEST_REASON_CODES = CONTEST_REASONS


record = command_group("record", "Write, read, list and erase encrypted health records.")


@signed_command(record, "put", "The author's (practitioner's) key.")
@click.option("--patient", required=True, help="The patient's identity id.")
@click.option("--file", "resource_file", required=True, type=click.Path(dir_okay=False, exists=True), help="A FHIR R4 resource as JSON.")
@click.option("--subject", default=None, metavar="Patient/LOCAL-ID",
              help="The local reference your file uses for this patient (your system's id), if it does not use "
              "Patient/<patient id>: references to it are taken as the patient's, any other patient's refused.")
@client_options
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
    put_resource(key_file, patient, resource_file, subject, node_url, passphrase_env, as_json)


def put_resource(key_file: str, patient: str, resource_file: str, subject: str | None, node_url: str,
                 passphrase_env: str | None, as_json: bool, *, workflow: dict[str, Any] | None = None,
                 expect: tuple[str, ...] = ()) -> None:
    """`record put`, and the care commands' writes: validate, encrypt, store, announce, report.
    `expect`: the resource types the command writes (a file of another type is refused);
    `workflow`: the record's workflow fields (node/app/care.py). Prints the record id (the JSON
    answer with --json), so a script can keep it: RID=$(medledger record put ...)."""
    import json as _json

    from node.client import HealthClient, RecordError

    identity_arg(patient, "--patient")
    author = load_identity(key_file, passphrase_env)
    try:
        data = Path(resource_file).read_bytes()
    except OSError as exc:
        fail(f"--file: cannot read {resource_file}: {exc.strerror or exc}", EXIT_USAGE)
    if expect:
        try:
            found = _json.loads(data).get("resourceType")
        except (ValueError, AttributeError):
            found = None
        if found not in expect:
            fail(f"--file: this command writes a {' or '.join(expect)}, the file holds a {found or 'non-FHIR document'}",
                 EXIT_USAGE)

    def put() -> Any:
        # a RecordError is a ClientError: catch it before run_client takes it for an unreachable node
        try:
            return HealthClient(node_url).put_record(author, patient, data, subject=subject, workflow=workflow)
        except RecordError as exc:
            return exc

    result = run_client(put)
    if isinstance(result, RecordError):
        if result.code == "invalid_fhir":
            fail(f"--file: {result.message} (a FHIR R4 resource as JSON; see docs/examples/)", EXIT_USAGE)
        if result.code == "wrong_patient":
            fail(f"--file: {result.message}", EXIT_USAGE)  # the file is the writer's to fix
        fail(explain(result.code, result.message), EXIT_REFUSED)
    report_tx(result, as_json, result.get("record_id", ""))


@signed_command(record, "get", "The reader's key.")
@click.option("--record", "record_id", required=True, help="The record id.")
@click.option("--purpose", required=True, type=click.Choice(["treatment", "payment", "operations", "research", "emergency"]), help="Purpose of use.")
@click.option("--reason", default="", type=click.Choice(["", *BREAKGLASS_REASON_CODES]), metavar="CODE",
              help="Why consent cannot be asked, for purpose emergency (required then): one of "
              + ", ".join(BREAKGLASS_REASON_CODES) + ". It is on the chain; free text goes in --note.")
@click.option("--note", default="", help="Your own account of the emergency: it stays OFF the chain (keep it in your "
              "notes); only its salted SHA-256 goes on the chain, and the salt is printed for the review.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="Where to write the decrypted resource.")
@click.option("--under", default=None, metavar="RECORD",
              help="The Claim (purpose payment) or the referral (purpose treatment) this read is made under: what an "
              "insurer reads of a claim, or a referred clinic of a referral's summary (docs/care.md).")
@client_options
def record_get(key_file: str, record_id: str, purpose: str, reason: str, note: str, out_file: str, under: str | None,
               node_url: str, passphrase_env: str | None, as_json: bool) -> None:
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
    if under:
        record_arg(under, "--under")
    reader = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    note_salt, note_hash = commit_note(note) if note else (None, None)
    result = run_client(lambda: client.request_access(reader, record_id, purpose, reason, note_hash, under))
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


@signed_command(record, "list", READER_KEY_HELP)
@patient_option
@client_options
def record_list(key_file: str, patient: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """List a patient's records (metadata only: id, type, custodian, author, erased).

    \b
    Example:
      medledger record list --key alice.key --node http://127.0.0.1:8700
    """
    reader, pid = patient_reader(key_file, patient, passphrase_env)
    doc = run_client(lambda: HealthClient(node_url).patient_records(reader, pid))
    emit(as_json, doc, lambda: "\n".join(
        f"{r['id']}  {r.get('resource_type', '?'):<18} custodian {str(r.get('custodian', ''))[:16]}...{'  ERASED' if r.get('erased') else ''}{'  CONTESTED' if r.get('contested') else ''}"
        for r in doc["records"]) or "no records")


@signed_command(record, "erase", "The patient's (or guardian's) key.")
@click.option("--record", "record_id", required=True, help="The record to erase.")
@patient_client_options
def record_erase(key_file: str, record_id: str, for_patient: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Erase a record: the custodian deletes the ciphertext and every wrapped key.

    The ledger keeps the ciphertext's hash and the erasure event; later reads fail with "erased".

    \b
    Example:
      medledger record erase --key alice.key --record <record id>
    """
    body: dict[str, Any] = {"record": record_arg(record_id)}
    ident = load_identity(key_file, passphrase_env)
    result = transact(node_url, ident, "record.erase", body, for_patient)
    report_tx(result, as_json, f"record {record_id} erased (tx {result.get('tx_hash')})")


@signed_command(record, "contest", "The patient's (or guardian's) key.")
@click.option("--record", "record_id", required=True, help="The record to contest.")
@click.option("--reason", default="no_treatment", show_default=True, type=click.Choice(list(CONTEST_REASON_CODES)),
              help="Why: " + "; ".join(f"{k}: {v}" for k, v in CONTEST_REASON_CODES.items()) + ".")
@patient_client_options
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
    result = transact(node_url, ident, "record.contest", body, for_patient)
    report_tx(result, as_json, f"record {record_id} contested ({reason}) (tx {result.get('tx_hash')})")
