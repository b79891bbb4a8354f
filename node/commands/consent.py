"""`medledger consent` and `patient`: a patient's consents (grant, revoke, list) and own settings
(a guardian, the break-glass choice)."""

from __future__ import annotations

from typing import Any

import click

from node.client import HealthClient
from node.commands.args import (
    check_types, date_ms, identity_arg, load_identity, patient_reader, record_arg, split_list, tx_hash_arg,
)
from node.commands.options import (
    READER_KEY_HELP, client_options, command_group, fhir_option, patient_client_options, patient_option,
    signed_command,
)
from node.commands.output import EXIT_USAGE, emit, fail, report_tx, run_client, transact


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


consent = command_group("consent", "Grant and revoke access to a patient's records.")


@signed_command(consent, "grant", "The patient's (or guardian's) key.")
@click.option("--to", "grantee", required=True, help="A practitioner or institution id, or study:STUDY.")
@click.option("--types", default="", help="Resource types, comma-separated (* for all).")
@click.option("--records", default="", help="Record ids, comma-separated.")
@click.option("--deny-types", default="", help="Resource types excluded even if --types covers them.")
@click.option("--purpose", "purposes", required=True, help="Purpose(s) of use, comma-separated: treatment, payment, operations, research, emergency.")
@click.option("--until", "until", required=True, help="Last day the consent is valid (YYYY-MM-DD, inclusive, UTC), or an instant (2027-12-31T08:00:00Z).")
@click.option("--from", "from_date", default=None, help="First day (or instant) the consent is valid (default: now).")
@patient_client_options
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
    body: dict[str, Any] = {"purposes": split_list(purposes), "valid_until": date_ms(until, "--until", end_of_day=True)}
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
    if split_list(types):
        body["resource_types"] = split_list(types)
    if split_list(records):
        body["record_ids"] = [record_arg(r, "--records") for r in split_list(records)]
    if split_list(deny_types):
        body["deny_types"] = split_list(deny_types)
    if from_date:
        body["valid_from"] = date_ms(from_date, "--from")
    if for_patient:
        body["on_behalf_of"] = identity_arg(for_patient, "--for")
    result = run_client(lambda: client.transact(ident, "consent.grant", body))
    result["consent_id"] = result.get("tx_hash")
    report_tx(result, as_json, str(result["consent_id"]))


@signed_command(consent, "revoke", "The patient's (or guardian's) key.")
@click.option("--consent", "consent_id", required=True, help="The consent id printed by `consent grant`.")
@patient_client_options
def consent_revoke(key_file: str, consent_id: str, for_patient: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Revoke a consent; later access requests that relied on it are denied.

    \b
    Example:
      medledger consent revoke --key alice.key --consent <consent id>
    """

    body: dict[str, Any] = {"consent": tx_hash_arg(consent_id, "--consent")}
    ident = load_identity(key_file, passphrase_env)
    result = transact(node_url, ident, "consent.revoke", body, for_patient)
    report_tx(result, as_json, f"consent {consent_id} revoked")


@signed_command(consent, "list", READER_KEY_HELP)
@patient_option
@fhir_option("Consent")
@client_options
def consent_list(key_file: str, patient: str | None, as_fhir: bool, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """List a patient's consents with their status (active, expired, revoked).

    \b
    Examples:
      medledger consent list --key alice.key
      medledger consent list --key guardian.key --patient <patient id> --fhir
    """
    reader, pid = patient_reader(key_file, patient, passphrase_env)
    doc = run_client(lambda: HealthClient(node_url).consents(reader, pid, fhir=as_fhir))
    if as_fhir:
        emit(True, doc, "")
        return
    emit(as_json, doc, lambda: "\n".join(consent_lines(c) for c in doc["consents"]) or "no consents")


patient = command_group("patient", "A patient's own settings: guardian and break-glass choice.")


@signed_command(patient, "guardian", "The patient's key.")
@click.option("--guardian", "guardian_id", default=None, help="The guardian's identity id.")
@click.option("--clear", is_flag=True, help="Remove the guardian.")
@client_options
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
    result = transact(node_url, ident, "patient.set_guardian", body)
    report_tx(result, as_json, "guardian cleared" if clear else f"guardian set to {guardian_id}")


@signed_command(patient, "breakglass", "The patient's (or guardian's) key.")
@click.option("--opt-out/--opt-in", "opt_out", required=True, help="Refuse (or allow again) emergency access without consent.")
@patient_client_options
def patient_breakglass(key_file: str, opt_out: bool, for_patient: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Opt out of (or back into) break-glass emergency access.

    \b
    Example:
      medledger patient breakglass --key alice.key --opt-out
    """

    ident = load_identity(key_file, passphrase_env)
    body: dict[str, Any] = {"opt_out": opt_out}
    result = transact(node_url, ident, "consent.breakglass", body, for_patient)
    report_tx(result, as_json, "opted out of break-glass access" if opt_out else "break-glass access allowed again")
