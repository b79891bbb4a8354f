"""`medledger policy`: write and test a data-sharing policy before proposing it: `check` parses
a Cedar file and type-checks it against MedLedger's schema, as the ledger will when it is
submitted; `schema` prints that schema (docs/policies.md). Then agree on it on the ledger:
`propose` stores it (in canonical form) as an agreement's version between institutions, `sign`
co-signs a version by its policy digest, `revoke` ends one, `show` prints one."""

from __future__ import annotations

from pathlib import Path
import json
from typing import Any

import click

from node.commands.options import CONTEXT, client_options, command_group, json_option, node_option, signed_command
from node.commands.output import EXIT_REFUSED, EXIT_USAGE, emit, fail, report_tx, run_client

policy = command_group("policy", "Write and test data-sharing policies (Cedar), then propose, sign, revoke and show "
                                 "agreements on the ledger.")


@policy.command("check", context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def policy_check(file: Path, as_json: bool) -> None:
    """Check a policy FILE: it must parse, have no template slots, stay within the size limits,
    type-check against MedLedger's schema, and be what an agreement may hold (no Patient or
    Record named, no free text, no permit that reads as widening access beyond consent). Prints "ok" (exit 0) or each error with the Cedar
    engine's message (exit 1).

    \b
    Examples:
      medledger policy check docs/examples/policies/pharmacy-nomination.cedar
      medledger policy check my-agreement.cedar --json
    """
    from node.app.policies.bounds import MAX_POLICY_BYTES
    from node.app.policies.check import PolicyError, check_policy, parse_statements
    from node.core.advice import explain

    with file.open("rb") as f:
        raw = f.read(MAX_POLICY_BYTES + 1)  # no further than the limit: the size alone refuses it
    text = ""
    if len(raw) > MAX_POLICY_BYTES:
        errors = [PolicyError("policy_too_large", f"the policy is over the limit of {MAX_POLICY_BYTES} bytes")]
    else:
        try:
            text = raw.decode("utf-8")
            errors = check_policy(text) or _agreement_errors(text)
        except UnicodeDecodeError as exc:
            errors = [PolicyError("invalid_policy", f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})")]
    statements = 0 if errors else len(parse_statements(text)[0])
    data = {"file": str(file), "ok": not errors, "statements": statements, "errors": [e.to_json() for e in errors]}
    lines = [f"ok: {file} ({statements} statement{'s' if statements != 1 else ''})"] if not errors else \
        [f"{file}: {explain(e.code, str(e))}" for e in errors]
    emit(as_json, data, "\n".join(lines))
    if errors:
        raise SystemExit(EXIT_REFUSED)


def _agreement_errors(text: str) -> list[Any]:
    """What `agreement.propose` would refuse of a valid policy besides the engine's checks: a
    Patient or Record named, free text, a permit that reads as widening access."""
    from node.app.agreements import check_not_widening, check_stored_policy
    from node.app.policies.check import PolicyError, PolicyRefused, canonical_form

    try:
        canonical = canonical_form(text)
        check_stored_policy(canonical)
        check_not_widening(json.loads(canonical)["statements"])
    except PolicyRefused as exc:
        return [PolicyError(exc.code, exc.message)]
    return []


@policy.command("schema", context_settings=CONTEXT)
def policy_schema() -> None:
    """Print MedLedger's Cedar schema: the entities, attributes and actions a policy may use.

    \b
    Example:
      medledger policy schema > medledger.cedarschema
    """
    from node.app.policies.schema import SCHEMA_TEXT

    click.echo(SCHEMA_TEXT.strip())


def _read_canonical(file: Path) -> str:
    """The canonical form of the policy in FILE, or exit with the refusal (as `policy check`)."""
    from node.app.policies.bounds import MAX_POLICY_BYTES
    from node.app.policies.check import PolicyRefused, canonical_form
    from node.core.advice import explain

    with file.open("rb") as f:
        raw = f.read(MAX_POLICY_BYTES + 1)
    if len(raw) > MAX_POLICY_BYTES:
        fail(explain("policy_too_large", f"{file} is over {MAX_POLICY_BYTES} bytes"))
    try:
        return canonical_form(raw.decode("utf-8"))
    except UnicodeDecodeError:
        fail(explain("invalid_policy", f"{file} is not UTF-8 text"))
    except PolicyRefused as exc:
        fail(f"{file}: {explain(exc.code, exc.message)}")


def _agreement_lines(a: dict[str, Any]) -> str:
    signed = set(a.get("signatures", []))
    parties = "\n".join(f"    {p}  {'signed' if p in signed else 'not signed'}" for p in a.get("parties", []))
    return (f"{a.get('agreement')} version {a.get('version')}  {a.get('status')}  (policy id {a.get('policy_id')})\n"
            f"  purposes {','.join(a.get('purposes', []))}   digest {a.get('digest')}\n"
            f"  proposed at height {a.get('height')}; in force: version {a.get('in_force_version') or '-'}\n"
            f"  parties:\n{parties}"
            + (f"\n  not in force: it takes effect when {len(a['awaiting'])} more part"
               f"{'y signs' if len(a['awaiting']) == 1 else 'ies sign'} (medledger policy sign)"
               if a.get("awaiting") and a.get("status") == "proposed" else ""))


def _fetch(node_url: str, agreement_id: str, version: int | None) -> dict[str, Any]:
    from node.client import HealthClient

    query = f"?version={version}" if version is not None else ""
    found: dict[str, Any] = run_client(lambda: HealthClient(node_url).get(f"/v1/agreements/{agreement_id}{query}"))
    return found


def _latest_version(node_url: str, agreement_id: str) -> int:
    """The latest version of `agreement_id` on the ledger (0 when it does not exist yet)."""
    from node.client import ApiError, HealthClient

    def latest() -> int:
        try:
            return int(HealthClient(node_url).get(f"/v1/agreements/{agreement_id}")["version"])
        except ApiError as exc:
            if exc.code == "unknown_agreement":
                return 0
            raise

    return int(run_client(latest))


def _transact(node_url: str, key_file: str, passphrase_env: str | None, tx_type: str, body: dict[str, Any]) -> dict[str, Any]:
    from node.client import HealthClient
    from node.commands.args import load_identity

    ident = load_identity(key_file, passphrase_env)
    result: dict[str, Any] = run_client(lambda: HealthClient(node_url).transact(ident, tx_type, body))
    return result


@signed_command(policy, "propose", "The proposing institution's key (one of the parties).")
@click.option("--id", "agreement_id", required=True, help="The agreement's id: 1-64 letters, digits, . _ -.")
@click.option("--parties", required=True, help="The parties' institution ids, comma-separated (yours is added if absent).")
@click.option("--purpose", "purposes", required=True, help="Purpose(s) of use, comma-separated: treatment, payment, ...")
@click.option("--file", "file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The policy, in Cedar (check it first with `medledger policy check`).")
@click.option("--version", type=click.IntRange(min=1), default=None,
              help="The version to propose (default: the latest + 1, or 1 for a new id).")
@click.option("--until", default=None, help="Last day the agreement holds (YYYY-MM-DD, UTC), or an instant.")
@client_options
def policy_propose(key_file: str, agreement_id: str, parties: str, purposes: str, file: Path, version: int | None,
                   until: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Propose FILE's policy as a data-sharing agreement (or its next version) between institutions.
    It comes into force once every other party signed it (`medledger policy sign`).

    \b
    Example:
      medledger policy propose --key devnet/node0/institution.key --id pharmacy-2026 \\
        --parties <hospital id>,<pharmacy id> --purpose treatment --file pharmacy-nomination.cedar
    """
    from node.app.agreements import check_agreement_id, check_stored_policy
    from node.chain.tx import TxRejected
    from node.commands.args import date_ms, identity_arg, load_identity, split_list
    from node.core.advice import explain

    try:
        check_agreement_id(agreement_id)
    except TxRejected as exc:
        fail(explain(exc.code, exc.message), EXIT_USAGE)
    canonical = _read_canonical(file)
    own = load_identity(key_file, passphrase_env).public_key
    ids = {identity_arg(p, "--parties") for p in split_list(parties)} | {own}
    body: dict[str, Any] = {"agreement": agreement_id, "parties": sorted(ids), "purposes": split_list(purposes),
                            "policy": canonical,
                            "version": version if version is not None else _latest_version(node_url, agreement_id) + 1}
    if until:
        body["valid_until_ms"] = date_ms(until, "--until", end_of_day=True)
    result = _transact(node_url, key_file, passphrase_env, "agreement.propose", body)
    result.update(agreement=agreement_id, version=body["version"], digest=check_stored_policy(canonical).hex())
    report_tx(result, as_json, f"proposed {agreement_id} version {body['version']} (digest {result['digest']}); "
                               f"{len(ids) - 1} other part{'y' if len(ids) == 2 else 'ies'} must sign it")


@signed_command(policy, "sign", "A party institution's key.")
@click.option("--id", "agreement_id", required=True, help="The agreement's id.")
@click.option("--version", type=click.IntRange(min=1), required=True, help="The version to sign.")
@click.option("--file", "file", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your copy of the policy: signed only if it is the text stored on the ledger.")
@client_options
def policy_sign(key_file: str, agreement_id: str, version: int, file: Path | None, node_url: str,
                passphrase_env: str | None, as_json: bool) -> None:
    """Co-sign an agreement's version: the signature names the digest of its policy, computed here
    from the policy the node serves (and compared with --file's). Read it first with `policy show`.

    \b
    Example:
      medledger policy sign --key devnet/node2/institution.key --id pharmacy-2026 --version 1
    """
    from node.app.agreements import check_stored_policy
    from node.app.policies.check import PolicyRefused
    from node.core.advice import explain

    found = _fetch(node_url, agreement_id, version)
    try:
        digest = check_stored_policy(found.get("policy"))
    except PolicyRefused as exc:
        fail(explain(exc.code, f"the node serves a policy the ledger would refuse: {exc.message}"))
    if digest.hex() != found.get("digest"):
        fail(explain("digest_mismatch", "the node's digest is not that of the policy it serves"))
    if file is not None and _read_canonical(file) != found["policy"]:
        fail(explain("digest_mismatch", f"{file} is not the policy of {agreement_id} version {version}"))
    body = {"agreement": agreement_id, "version": version, "digest": digest}
    result = _transact(node_url, key_file, passphrase_env, "agreement.sign", body)
    after = _fetch(node_url, agreement_id, version) if result.get("status") == "committed" else {}
    result["agreement"] = after or None
    report_tx(result, as_json, f"signed {agreement_id} version {version}; status {after.get('status')}")


@signed_command(policy, "revoke", "A party institution's key.")
@click.option("--id", "agreement_id", required=True, help="The agreement's id.")
@click.option("--version", type=click.IntRange(min=1), required=True, help="The version to revoke (proposed or in force).")
@client_options
def policy_revoke(key_file: str, agreement_id: str, version: int, node_url: str, passphrase_env: str | None,
                  as_json: bool) -> None:
    """Revoke an agreement's version, proposed or in force; it stays on the ledger, marked revoked.

    \b
    Example:
      medledger policy revoke --key devnet/node0/institution.key --id pharmacy-2026 --version 1
    """
    result = _transact(node_url, key_file, passphrase_env, "agreement.revoke", {"agreement": agreement_id, "version": version})
    report_tx(result, as_json, f"revoked {agreement_id} version {version}")


@policy.command("show", context_settings=CONTEXT)
@click.option("--id", "agreement_id", required=True, help="The agreement's id.")
@click.option("--version", type=click.IntRange(min=1), default=None, help="The version (default: the latest).")
@node_option
@json_option
def policy_show(agreement_id: str, version: int | None, node_url: str, as_json: bool) -> None:
    """Print an agreement's version: status, parties and who signed, purposes, digest (--json adds
    the policy's canonical form).

    \b
    Example:
      medledger policy show --id pharmacy-2026
    """
    found = _fetch(node_url, agreement_id, version)
    emit(as_json, found, lambda: _agreement_lines(found))
