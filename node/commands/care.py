"""`medledger care`: care across institutions — prescriptions, claims, referrals, lab orders.

Each write is a FHIR R4 resource encrypted and kept at the writer's institution, as with
`record put`, announced on the ledger with its workflow fields (node/app/care.py); reads go
through `record get` (with `--under` for what a Claim or a referral lists). The patient's side:
`care nominate` (its pharmacy, its insurer: standing permissions) and `care accept` (a referral
or a lab order). docs/care.md walks through every workflow.
"""

from __future__ import annotations

from typing import Any

import click

from node.client import HealthClient
from node.commands.args import date_ms, identity_arg, load_identity, patient_reader, record_arg, split_list
from node.commands.options import client_options, command_group, patient_client_options, patient_option, signed_command
from node.commands.output import EXIT_USAGE, emit, fail, report_tx, run_client, transact
from node.commands.records import put_resource

care = command_group("care", "Care across institutions: prescriptions, claims, referrals, lab orders (docs/care.md).")

FILE_HELP = "The FHIR R4 resource as JSON (docs/examples/ has one of each)."
SUBJECT_HELP = "The local reference your file uses for the patient (as in `record put --subject`)."


def _file_options(f: Any) -> Any:
    f = click.option("--subject", default=None, metavar="Patient/LOCAL-ID", help=SUBJECT_HELP)(f)
    return click.option("--file", "resource_file", required=True, type=click.Path(dir_okay=False, exists=True),
                        help=FILE_HELP)(f)


def _patient_of(node_url: str, key_file: str, passphrase_env: str | None, record_id: str, given: str | None,
                option: str) -> str:
    """The patient of the order `record_id` (from the ledger, when the signer may read its
    metadata), or --patient."""
    if given:
        identity_arg(given, "--patient")
        return given
    reader = load_identity(key_file, passphrase_env)
    meta = run_client(lambda: HealthClient(node_url).record_meta(reader, record_id))
    patient = meta.get("patient") if isinstance(meta, dict) else None
    if not patient:
        fail(f"cannot read the patient of {option} {record_id[:16]}...: read the order first (`medledger record get`) "
             "or give --patient", EXIT_USAGE)
    return str(patient)


def _fulfil(order: str, option: str, expect: tuple[str, ...], key_file: str, patient: str | None, resource_file: str,
            subject: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Write a record fulfilling `order` (dispense, pay, result): `based_on` it, for its patient."""
    record_arg(order, option)
    pid = _patient_of(node_url, key_file, passphrase_env, order, patient, option)
    put_resource(key_file, pid, resource_file, subject, node_url, passphrase_env, as_json,
                 workflow={"based_on": order}, expect=expect)


@signed_command(care, "prescribe", "The prescribing physician's key.")
@click.option("--patient", required=True, help="The patient's identity id.")
@_file_options
@client_options
def care_prescribe(key_file: str, patient: str, resource_file: str, subject: str | None, node_url: str,
                   passphrase_env: str | None, as_json: bool) -> None:
    """Write a prescription (MedicationRequest); the patient's nominated pharmacy sees it.

    \b
    Example:
      medledger care prescribe --key drA.key --patient <patient id> --file docs/examples/medicationrequest.json --subject Patient/example
    """
    put_resource(key_file, patient, resource_file, subject, node_url, passphrase_env, as_json,
                 expect=("MedicationRequest",))


@signed_command(care, "dispense", "The pharmacist's key (at the pharmacy the patient nominated).")
@click.option("--prescription", required=True, help="The prescription's record id.")
@click.option("--patient", default=None, help="The patient (default: the prescription's, from the ledger).")
@_file_options
@client_options
def care_dispense(key_file: str, prescription: str, patient: str | None, resource_file: str, subject: str | None,
                  node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Dispense a prescription (MedicationDispense); the ledger completes it and refuses a second dispense.

    \b
    Example:
      medledger care dispense --key pharmacist.key --prescription <record id> --file docs/examples/medicationdispense.json --subject Patient/example
    """
    _fulfil(prescription, "--prescription", ("MedicationDispense",), key_file, patient, resource_file, subject, node_url,
            passphrase_env, as_json)


@signed_command(care, "claim", "The key of the hospital's staff member submitting the claim.")
@click.option("--patient", required=True, help="The patient's identity id.")
@click.option("--insurer", required=True, help="The insurer's institution id (`medledger devnet ids`).")
@click.option("--covers", required=True, metavar="RECORD,...",
              help="The records the claim covers (your institution's records of this patient): what the insurer may see with it.")
@_file_options
@client_options
def care_claim(key_file: str, patient: str, insurer: str, covers: str, resource_file: str, subject: str | None,
               node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Submit a Claim to the patient's insurer, listing the records it covers (the minimum necessary).

    \b
    Example:
      medledger care claim --key drA.key --patient <patient id> --insurer <insurer id> --covers <encounter>,<procedure> --file docs/examples/claim.json --subject Patient/example
    """
    identity_arg(insurer, "--insurer")
    listed = split_list(covers)
    for rid in listed:
        record_arg(rid, "--covers")
    put_resource(key_file, patient, resource_file, subject, node_url, passphrase_env, as_json,
                 workflow={"payer": insurer, "lists": listed}, expect=("Claim",))


@signed_command(care, "pay", "The insurer's claims officer's key.")
@click.option("--claim", "claim_id", required=True, help="The Claim's record id.")
@click.option("--patient", default=None, help="The patient (default: the claim's, from the ledger).")
@_file_options
@client_options
def care_pay(key_file: str, claim_id: str, patient: str | None, resource_file: str, subject: str | None, node_url: str,
             passphrase_env: str | None, as_json: bool) -> None:
    """Answer a Claim (ClaimResponse); the ledger completes the claim and refuses a second answer.

    \b
    Example:
      medledger care pay --key officer.key --claim <record id> --file docs/examples/claimresponse.json --subject Patient/example
    """
    _fulfil(claim_id, "--claim", ("ClaimResponse",), key_file, patient, resource_file, subject, node_url, passphrase_env,
            as_json)


@signed_command(care, "refer", "The referring physician's key.")
@click.option("--patient", required=True, help="The patient's identity id.")
@click.option("--to", "recipient", required=True, help="The clinic (or hospital) referred to: its institution id.")
@click.option("--until", required=True, metavar="YYYY-MM-DD", help="The referral's last day (UTC), or an instant "
              "(2027-03-31T17:00:00Z).")
@click.option("--summary", default=None, metavar="RECORD,...", help="The records sent with it (your institution's).")
@_file_options
@client_options
def care_refer(key_file: str, patient: str, recipient: str, until: str, summary: str | None, resource_file: str,
               subject: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Refer a patient (ServiceRequest) to a clinic; its physicians see the referral and its summary
    until --until, once the patient accepted it (`care accept`).

    \b
    Example:
      medledger care refer --key drA.key --patient <patient id> --to <clinic id> --until 2027-03-31 --summary <condition> --file docs/examples/servicerequest-referral.json --subject Patient/example
    """
    identity_arg(recipient, "--to")
    listed = split_list(summary)
    for rid in listed:
        record_arg(rid, "--summary")
    workflow: dict[str, Any] = {"recipient": recipient, "until_ms": date_ms(until, "--until", end_of_day=True)}
    if listed:
        workflow["lists"] = listed
    put_resource(key_file, patient, resource_file, subject, node_url, passphrase_env, as_json,
                 workflow=workflow, expect=("ServiceRequest",))


@signed_command(care, "order", "The ordering physician's key.")
@click.option("--patient", required=True, help="The patient's identity id.")
@click.option("--lab", required=True, help="The lab's institution id.")
@_file_options
@client_options
def care_order(key_file: str, patient: str, lab: str, resource_file: str, subject: str | None, node_url: str,
               passphrase_env: str | None, as_json: bool) -> None:
    """Order a test (ServiceRequest) from a lab; the lab sees it once the patient accepted it, and
    posts the result back to you (`care result`).

    \b
    Example:
      medledger care order --key drA.key --patient <patient id> --lab <lab id> --file docs/examples/servicerequest-lab.json --subject Patient/example
    """
    identity_arg(lab, "--lab")
    put_resource(key_file, patient, resource_file, subject, node_url, passphrase_env, as_json,
                 workflow={"recipient": lab}, expect=("ServiceRequest",))


@signed_command(care, "result", "The lab technician's key.")
@click.option("--order", "order_id", required=True, help="The lab order's record id.")
@click.option("--patient", default=None, help="The patient (default: the order's, from the ledger).")
@_file_options
@client_options
def care_result(key_file: str, order_id: str, patient: str | None, resource_file: str, subject: str | None,
                node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Post a result (DiagnosticReport or Observation) on a lab order; the ordering physician reads it.

    \b
    Example:
      medledger care result --key tech.key --order <record id> --file docs/examples/diagnosticreport.json --subject Patient/example
    """
    _fulfil(order_id, "--order", ("DiagnosticReport", "Observation"), key_file, patient, resource_file, subject, node_url,
            passphrase_env, as_json)


@signed_command(care, "nominate", "The patient's (or guardian's) key.")
@click.option("--pharmacy", default=None, help="Your pharmacy's institution id: its pharmacists see your prescriptions.")
@click.option("--insurer", default=None, help="Your insurer's institution id: its claims officers see claims sent to "
              "it and what they list.")
@click.option("--screening", default=None, help="The institution that may screen your records for clinical trials "
              "(it counts you in feasibility queries and may invite you; docs/trials.md).")
@patient_client_options
def care_nominate(key_file: str, pharmacy: str | None, insurer: str | None, screening: str | None,
                  for_patient: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Nominate your pharmacy, your insurer, or the institution that screens you for trials (a
    standing permission; replaces an earlier one of the same kind).

    \b
    Example:
      medledger care nominate --key alice.key --pharmacy <pharmacy id>
    """
    given = [(name, value) for name, value in (("pharmacy", pharmacy), ("insurer", insurer), ("screening", screening))
             if value is not None]
    if len(given) != 1:
        fail("give one of --pharmacy ID, --insurer ID or --screening ID", EXIT_USAGE)
    permission, institution = given[0]
    body = {"permission": permission, "institution": identity_arg(institution, f"--{permission}")}
    result = transact(node_url, load_identity(key_file, passphrase_env), "standing.grant", body, for_patient)
    report_tx(result, as_json, f"{permission} nominated: {institution}")


@signed_command(care, "withdraw", "The patient's (or guardian's) key.")
@click.option("--pharmacy", "what", flag_value="pharmacy", help="Withdraw your pharmacy's nomination.")
@click.option("--insurer", "what", flag_value="insurer", help="Withdraw your insurer's nomination.")
@click.option("--screening", "what", flag_value="screening", help="Withdraw your trial-screening opt-in.")
@patient_client_options
def care_withdraw(key_file: str, what: str | None, for_patient: str | None, node_url: str, passphrase_env: str | None,
                  as_json: bool) -> None:
    """Withdraw a nomination: the institution's staff stop seeing what it let them see.

    \b
    Example:
      medledger care withdraw --key alice.key --pharmacy
    """
    if what is None:
        fail("give --pharmacy, --insurer or --screening", EXIT_USAGE)
    result = transact(node_url, load_identity(key_file, passphrase_env), "standing.revoke", {"permission": what}, for_patient)
    report_tx(result, as_json, f"{what} nomination withdrawn")


@signed_command(care, "accept", "The patient's (or guardian's) key.")
@click.option("--request", "request_id", required=True, help="The referral's or lab order's record id.")
@patient_client_options
def care_accept(key_file: str, request_id: str, for_patient: str | None, node_url: str, passphrase_env: str | None,
                as_json: bool) -> None:
    """Accept a referral or a lab order: only then does the institution it is addressed to see it.

    \b
    Example:
      medledger care accept --key alice.key --request <record id>
    """
    body = {"record": record_arg(request_id, "--request")}
    patient = load_identity(key_file, passphrase_env)
    result = transact(node_url, patient, "request.accept", body, for_patient)
    meta: dict[str, Any] = {}
    if result.get("status") == "committed":
        found = run_client(lambda: HealthClient(node_url).record_meta(patient, request_id))
        meta = found if isinstance(found, dict) else {}
        result.update({k: meta[k] for k in ("recipient", "until_ms", "lists") if k in meta})
    report_tx(result, as_json, _accepted_text(request_id, meta))


def _accepted_text(request_id: str, meta: dict[str, Any]) -> str:
    """What accepting let happen, in words: who sees what, until when."""
    import datetime as _dt

    who = str(meta.get("recipient", "?"))[:16] + "..."
    if "until_ms" not in meta:
        return f"accepted {request_id}: the lab {who} sees this order and posts its results back"
    until = _dt.datetime.fromtimestamp(int(meta["until_ms"]) / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    listed = len(meta.get("lists", ()))
    return (f"accepted {request_id}: the physicians of {who} see this referral and the {listed} record"
            f"{'' if listed == 1 else 's'} it lists, and may add to your chart, until {until}")


@signed_command(care, "standing", "The patient's (or guardian's) key.")
@patient_option
@client_options
def care_standing(key_file: str, patient: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Show a patient's nominations (its pharmacy, its insurer).

    \b
    Example:
      medledger care standing --key alice.key
    """
    reader, pid = patient_reader(key_file, patient, passphrase_env)
    doc = run_client(lambda: HealthClient(node_url).standing(reader, pid))
    emit(as_json, doc, lambda: "\n".join(f"{name:<9} {entry['institution']}  (since height {entry['height']})"
                                          for name, entry in doc["standing"].items()) or "no nominations")


@signed_command(care, "inbox", "An institution's key, or one of its practitioners'.")
@click.option("--institution", default=None, help="Whose inbox (default: the key's, or the practitioner's institution).")
@click.option("--after-height", default=0, show_default=True, type=click.IntRange(0), help="Only what came after this height.")
@client_options
def care_inbox(key_file: str, institution: str | None, after_height: int, node_url: str, passphrase_env: str | None,
               as_json: bool) -> None:
    """What is addressed to your institution: claims, accepted referrals and lab orders,
    prescriptions for your pharmacy, results and dispenses posted back.

    \b
    Example:
      medledger care inbox --key pharmacist.key
    """
    reader = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    whose = institution or _home_of(client, reader.id)
    identity_arg(whose, "--institution")
    doc = run_client(lambda: client.inbox(reader, whose, after_height=after_height))

    def text() -> str:
        rows = [f"{e['id']}  {e['resource_type']:<18} patient {e['patient'][:16]}...  "
                f"{(e.get('workflow') or {}).get('status', '')}  height {e['height']}" for e in doc["entries"]]
        return "\n".join(rows) or "nothing addressed to this institution"
    emit(as_json, doc, text)


def _home_of(client: HealthClient, ident: str) -> str:
    """A practitioner's institution, or the id itself (an institution's key)."""
    found = run_client(lambda: client.get(f"/v1/identities/{ident}"))
    if isinstance(found, dict) and found.get("role") == "practitioner" and found.get("institution"):
        return str(found["institution"])
    return ident


@signed_command(care, "status", "A key that may read the record's metadata (patient, custodian, author, a grant holder).")
@click.option("--record", "record_id", required=True, help="The order's record id (prescription, claim, referral, lab order).")
@client_options
def care_status(key_file: str, record_id: str, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Show an order's workflow state: active or completed (by which record), accepted or not.

    \b
    Example:
      medledger care status --key drA.key --record <record id>
    """
    record_arg(record_id)
    reader = load_identity(key_file, passphrase_env)
    meta = run_client(lambda: HealthClient(node_url).record_meta(reader, record_id))
    state = meta.get("workflow") or {}
    out = {"record": record_id, "resource_type": meta.get("resource_type"), "status": state.get("status"),
           "accepted": "accepted_ms" in state, "completed_by": state.get("completed_by"), "workflow": state,
           **{k: meta[k] for k in ("payer", "recipient", "until_ms", "lists", "based_on") if k in meta}}
    emit(as_json, out, lambda: f"{out['resource_type']} {record_id}: {out['status'] or 'no workflow'}"
         + (f", completed by {out['completed_by']}" if out["completed_by"] else "")
         + (", accepted by the patient" if out["accepted"] else ""))
