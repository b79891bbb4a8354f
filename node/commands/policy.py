"""`medledger policy`: write and test a data-sharing policy before proposing it: `check` parses
a Cedar file and type-checks it against MedLedger's schema, as the ledger will when it is
submitted; `schema` prints that schema (docs/policies.md)."""

from __future__ import annotations

from pathlib import Path

import click

from node.commands.options import CONTEXT, command_group, json_option
from node.commands.output import EXIT_REFUSED, emit

policy = command_group("policy", "Write and test data-sharing policies (Cedar) before proposing them.")


@policy.command("check", context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def policy_check(file: Path, as_json: bool) -> None:
    """Check a policy FILE: it must parse, have no template slots, stay within the size limits and
    type-check against MedLedger's schema. Prints "ok" (exit 0) or each error with the Cedar
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
            errors = check_policy(text)
        except UnicodeDecodeError as exc:
            errors = [PolicyError("invalid_policy", f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})")]
    statements = 0 if errors else len(parse_statements(text)[0])
    data = {"file": str(file), "ok": not errors, "statements": statements, "errors": [e.to_json() for e in errors]}
    lines = [f"ok: {file} ({statements} statement{'s' if statements != 1 else ''})"] if not errors else \
        [f"{file}: {explain(e.code, str(e))}" for e in errors]
    emit(as_json, data, "\n".join(lines))
    if errors:
        raise SystemExit(EXIT_REFUSED)


@policy.command("schema", context_settings=CONTEXT)
def policy_schema() -> None:
    """Print MedLedger's Cedar schema: the entities, attributes and actions a policy may use.

    \b
    Example:
      medledger policy schema > medledger.cedarschema
    """
    from node.app.policies.schema import SCHEMA_TEXT

    click.echo(SCHEMA_TEXT.strip())
