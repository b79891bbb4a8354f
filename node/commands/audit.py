"""`medledger audit`: a patient's audit trail, an institution's accounting of disclosures and its
review of break-glass accesses, and the check of an audit entry against the chain."""

from __future__ import annotations

import sys
from typing import Any

import click

from node.client import ApiError, Client, ClientError, HealthClient
from node.commands.args import date_ms, load_identity, patient_reader, reader_identity, tx_hash_arg
from node.commands.ledger import check_proof
from node.commands.options import (
    CONTEXT, READER_KEY_HELP, client_options, explorer_options, fhir_option, key_option, patient_option,
    signed_command,
)
from node.commands.output import (
    EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, emit, fail, report_tx, run_client, transact,
)
from node.core.advice import explain
from node.core.crypto import Identity


@click.group(context_settings=CONTEXT, invoke_without_command=True)
@key_option(READER_KEY_HELP, required=False)
@patient_option
@fhir_option("AuditEvent")
@client_options
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
    reader, pid = patient_reader(key_file, patient, passphrase_env)
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


@signed_command(audit, "disclosures", "The institution's key.")
@click.option("--since", required=True, help="First day (YYYY-MM-DD, UTC).")
@click.option("--until", "until", default=None, help="Last day (default: now).")
@fhir_option("AuditEvent")
@client_options
def audit_disclosures(key_file: str, since: str, until: str | None, as_fhir: bool, node_url: str, passphrase_env: str | None,
                      as_json: bool) -> None:
    """An institution's accounting of disclosures for a period.

    \b
    Example:
      medledger audit disclosures --key devnet/node0/institution.key --since 2026-01-01 --until 2026-12-31 [--fhir]
    """
    since_ms = date_ms(since, '--since')
    until_ms = date_ms(until, '--until', end_of_day=True) if until else None
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
@explorer_options
def audit_verify(tx_hash: str, key_file: str | None, passphrase_env: str | None, node_url: str, as_json: bool) -> None:
    """Check an audit entry's Merkle inclusion proof and its block's commit certificate.

    The proof ties the transaction to the header's tx_root; the header's hash must be what a
    quorum of the validators of the block's height (GET /v1/validators?height=H; the set
    changes by vote) signed in the block's commit certificate. The node gives the
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
    reader = reader_identity(key_file, passphrase_env)
    proof = run_client(lambda: client.tx_proof(tx_hash, signer=reader))
    block = run_client(lambda: client.block(proof["height"]))
    status = run_client(lambda: client.status())
    h = block["header"]
    header = Header(chain_id=h["chain_id"], height=h["height"], prev_hash=bytes.fromhex(h["prev_hash"]), timestamp_ms=h["timestamp_ms"],
                    proposer=bytes.fromhex(h["proposer"]), tx_root=bytes.fromhex(h["tx_root"]), results_root=bytes.fromhex(h["results_root"]),
                    state_root=bytes.fromhex(h["state_root"]), prev_certificate=bytes.fromhex(h["prev_certificate"]))
    # without the leaf (not a party, or no --key) the proof says that the leaf hash is in the
    # block, not that this tx hash is that leaf: `leaf_is_tx` fails and says so
    proven = check_proof(tx_hash, proof, header.tx_root)
    checks = {"leaf_is_tx": proven.get("leaf_is_tx", False), "merkle_proof": proven["merkle_proof"],
              "header_hash": header.hash().hex() == block["hash"]}
    cert_ok = False
    if block.get("certificate"):
        cert = CommitCertificate.decode(bytes.fromhex(block["certificate"]))
        # the set of the block's height, not the current one: the set changes by vote
        at = run_client(lambda: client.validators(height=header.height))
        validators = ValidatorSet(validators=tuple(bytes.fromhex(v["id"]) for v in at["validators"]))
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


@signed_command(audit, "breakglass", "The institution's key.")
@client_options
def audit_breakglass(key_file: str, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Break-glass accesses to the institution's records awaiting review.

    \b
    Example:
      medledger audit breakglass --key devnet/node0/institution.key
    """
    inst = load_identity(key_file, passphrase_env)
    doc = run_client(lambda: HealthClient(node_url).breakglass_pending(inst))
    emit(as_json, doc, lambda: "\n".join(
        f"{p.get('request_tx', p.get('tx', ''))}  h{p.get('height', '?')} by {str(p.get('requester', p.get('actor', '')))[:16]} reason: {p.get('reason', '')}"
        for p in doc["pending"]) or "nothing awaits review")


@signed_command(audit, "review", "The custodian institution's key.")
@click.option("--access", "access_tx", required=True, help="The break-glass access request's transaction hash.")
@click.option("--outcome", required=True, type=click.Choice(["justified", "unjustified"]), help="The review's finding.")
@click.option("--note", default="", help="Your note: it stays OFF the chain (keep it); only its salted SHA-256 goes on the chain.")
@click.option("--suspend", is_flag=True, help="With --outcome unjustified: suspend the practitioner from break-glass "
              "(30 days) and revoke every open break-glass grant it holds.")
@client_options
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
    result = transact(node_url, inst, "breakglass.review", body)
    if note_salt is not None:
        result["note_salt"] = note_salt.hex()
    kept = f"; keep your note with its salt {note_salt.hex()}" if note_salt is not None else ""
    report_tx(result, as_json, f"review recorded: {outcome}{' (practitioner suspended)' if suspend else ''}{kept}")
