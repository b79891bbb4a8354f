"""`medledger validator add|remove|rotate` and `medledger validators`: changing the validator set
by a vote of the validators, and showing it.

A change reached in block h takes effect at height h + 2 (docs/operations.md, "Changing the
validator set"). add and remove record one approval each; rotate is the validator's own act,
signed with its old key (--key) and its new key (--new-key).
"""

from __future__ import annotations

from typing import Any

import click

from node.client import ApiError, Client, HealthClient
from node.commands.args import identity_arg, load_identity
from node.commands.options import CONTEXT, client_options, command_group, json_option, node_option, signed_command
from node.commands.output import emit, report_tx, run_client

validator = command_group("validator", "Change the validator set by a vote of the validators.")


def _approval(node_url: str, key_file: str, passphrase_env: str | None, as_json: bool, tx_type: str,
              body: dict[str, Any], kind: str, target: str) -> None:
    ident = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    result = run_client(lambda: client.transact(ident, tx_type, body))
    if result.get("status") == "committed":
        try:
            result["proposal"] = client.validator_proposal(kind, target)
        except ApiError:
            result["proposal"] = None
    proposal = result.get("proposal") or {}

    def text() -> str:
        head = f"approval recorded (tx {result.get('tx_hash')}): {kind} {target[:16]}..."
        if "effective_height" in proposal:
            return f"{head}\nreached: the new validator set takes effect at height {proposal['effective_height']}"
        return f"{head}\napprovals: {proposal.get('counted', '?')} of {proposal.get('needed', '?')} needed"

    report_tx(result, as_json, text())


@signed_command(validator, "add", "The key of a validator's institution (each validator approves once).")
@click.option("--candidate", required=True, help="The admitted institution's identity id to make a validator.")
@click.option("--address", required=True, metavar="HOST:PORT", help="The candidate node's peer address.")
@click.option("--api", "api_url", required=True, metavar="URL", help="The candidate node's API base URL.")
@client_options
def validator_add(key_file: str, candidate: str, address: str, api_url: str, node_url: str,
                  passphrase_env: str | None, as_json: bool) -> None:
    """Approve adding an institution to the validator set; it votes from two blocks after the
    approval that reaches the quorum.

    \b
    Example (run by enough validators):
      medledger validator add --key devnet/node0/institution.key --candidate <id> \\
          --address 127.0.0.1:9704 --api http://127.0.0.1:8704
    """
    cid = identity_arg(candidate, "--candidate")
    _approval(node_url, key_file, passphrase_env, as_json, "validator.add",
              {"candidate": cid, "address": address, "api": api_url}, "add", cid.hex())


@signed_command(validator, "remove", "The key of a validator's institution (each validator approves once).")
@click.option("--validator", "target", required=True, help="The id of the validator to remove.")
@client_options
def validator_remove(key_file: str, target: str, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Approve removing a validator (also an unresponsive one: the others' quorum suffices).

    \b
    Example (run by enough validators):
      medledger validator remove --key devnet/node0/institution.key --validator <id>
    """
    vid = identity_arg(target, "--validator")
    _approval(node_url, key_file, passphrase_env, as_json, "validator.remove", {"validator": vid}, "remove", vid.hex())


@signed_command(validator, "rotate", "The validator's current (old) key.")
@click.option("--new-key", "new_key_file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="The new key file (e.g. from `medledger keys new`); it signs the rotation too.")
@client_options
def validator_rotate(key_file: str, new_key_file: str, node_url: str, passphrase_env: str | None, as_json: bool) -> None:
    """Replace this validator's key: signed with the old and the new key, effective two blocks
    after it commits. Restart the node with the new key once the block after it is committed.

    \b
    Example:
      medledger validator rotate --key devnet/node1/institution.key --new-key node1-new.key
    """
    from node.app.types.validator_rotate import rotation_message

    old = load_identity(key_file, passphrase_env)
    new = load_identity(new_key_file, passphrase_env)
    client = HealthClient(node_url)
    proof = new.sign(rotation_message(run_client(lambda: client.chain_id), old.public_key, new.public_key))
    result = run_client(lambda: client.transact(old, "validator.rotate", {"new_key": new.public_key, "proof": proof}))
    if result.get("status") == "committed":
        result["effective_height"] = int(result["height"]) + 2
    report_tx(result, as_json, f"key rotation recorded (tx {result.get('tx_hash')}): {new.id[:16]}... replaces "
                               f"{old.id[:16]}... from height {result.get('effective_height')}; restart the node with "
                               f"the new key once block {result.get('effective_height', 0) - 1} is committed")


@click.command(context_settings=CONTEXT)
@node_option
@json_option
def validators(node_url: str, as_json: bool) -> None:
    """Show the validator set (ids, names, addresses, since which height), the sets scheduled, the
    pending proposals and the protocol upgrades scheduled. In the JSON, `epoch` is the number of
    validator-set changes in force; `upgrades` is what GET /v1/upgrades says (`protocol_version`
    of the next height, `scheduled`, `pending`).

    \b
    Example:
      medledger validators --node http://127.0.0.1:8700 --json
    """
    client = Client(node_url)
    v = run_client(client.validators)
    u = run_client(client.upgrades)
    v["upgrades"] = {"protocol_version": u.get("protocol_version"), "scheduled": u.get("scheduled", []),
                     "pending": u.get("pending", [])}

    def text() -> str:
        lines = [f"validators: {len(v['validators'])} at height {v['height'] + 1} (epoch {v['epoch']}, since height {v['since']})"]
        lines += [f"  - {x.get('name', '')} {x['id'][:16]}... {x.get('address', '')} {x.get('api', '')} since {x.get('since')}"
                  for x in v["validators"]]
        for s in v.get("scheduled", []):
            lines.append(f"scheduled: {len(s['validators'])} validators from height {s['effective_height']}")
        for p in v.get("pending", []):
            lines.append(f"pending: {p['kind']} {p['target'][:16]}... approvals {p['counted']} of {p['needed']}")
        if not v.get("pending"):
            lines.append("pending: none")
        ups = v["upgrades"]
        lines.append(f"protocol version: {ups['protocol_version']}")
        lines += [f"upgrade scheduled: version {x['version']} from height {x['height']}" for x in ups["scheduled"]]
        return "\n".join(lines)

    emit(as_json, v, text)
