"""`medledger institution`: the validators' vote that admits a new institution."""

from __future__ import annotations

import click

from node.chain.vocabulary import INSTITUTION_KINDS
from node.client import ApiError, HealthClient
from node.commands.args import identity_arg, load_identity
from node.commands.options import client_options, command_group, signed_command
from node.commands.output import report_tx, run_client


institution = command_group("institution", "Admit new institutions by a vote of the validators.")


@signed_command(institution, "admit", "A validator's institution key.")
@click.option("--institution", "candidate", required=True, help="The new institution's identity id.")
@click.option("--name", required=True, help="The new institution's name (every approval must give the same).")
@click.option("--kind", type=click.Choice(INSTITUTION_KINDS), default=None,
              help="What the institution is (every approval must give the same; without it: 'unspecified').")
@client_options
def institution_admit(key_file: str, candidate: str, name: str, kind: str | None, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Approve an institution's admission; it is admitted once a quorum of validators approved.

    \b
    Example (run by enough validators):
      medledger institution admit --key devnet/node0/institution.key --institution <id> --name "St Mary" --kind hospital
    """
    from node.client import HealthClient

    cid = identity_arg(candidate, "--institution")
    ident = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    body = {"institution": cid, "name": name, **({"kind": kind} if kind else {})}
    result = run_client(lambda: client.transact(ident, "governance.admit_institution", body))
    if result.get("status") == "committed":
        try:
            result["admission"] = client.get(f"/v1/identities/{candidate}")
        except ApiError:
            result["admission"] = None
    report_tx(result, as_json, f"approval recorded (tx {result.get('tx_hash')})" +
               (f"; {candidate[:16]} is now an institution" if result.get("admission") else "; more approvals needed"))
