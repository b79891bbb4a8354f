"""`medledger status`, `identity`, `tx` and `block`: a node's state, registering identities, and
the explorer reads of transactions (with their Merkle proofs) and blocks."""

from __future__ import annotations

import sys
from typing import Any

import click

from node.client import Client
from node.commands.args import load_identity, reader_identity, tx_hash_arg
from node.commands.options import (
    CONTEXT, command_group, explorer_options, json_option, node_option, passphrase_env_option, signed_command,
)
from node.commands.output import EXIT_REFUSED, EXIT_USAGE, emit, fail, refusal_message, run_client
from node.core.advice import explain
from node.core.crypto import Identity
from node.chain.vocabulary import PROFESSIONS

ROLES = ["patient", "practitioner", "researcher"]


@click.command(context_settings=CONTEXT)
@node_option
@json_option
def status(node_url: str, as_json: bool) -> None:
    """Show a node's chain, height, last block, state root and mempool.

    \b
    Example:
      medledger status --node http://127.0.0.1:8700 --json
    """
    s = run_client(lambda: Client(node_url).status())

    def text() -> str:
        lines = [
            f"chain:       {s['chain_id']}",
            f"node:        {s.get('name', '')} {s['node_id']}",
            f"height:      {s['height']}   view: {s.get('view', 0)}   syncing: {'yes' if s.get('syncing') else 'no'}",
            f"last block:  {s['last_block_hash']}",
            f"state root:  {s['state_root']}",
            f"peers:       {len(s.get('peers', []))} connected" + "".join(f"\n  - {p[:16]}..." for p in s.get("peers", [])),
            f"mempool:     {s['mempool_size']} transactions",
            f"validators:  {s['validators']}" + "".join(f"\n  - {v['name']} {v['id'][:16]}... {v['address']}" for v in s["validator_set"]),
        ]
        return "\n".join(lines)

    emit(as_json, s, text)


def submit_and_report(client: Client, ident: Identity, tx_type: str, body: dict[str, Any], *, wait: bool, timeout: float, as_json: bool) -> None:
    result = run_client(lambda: client.send(ident, tx_type, body, wait=wait, timeout=timeout))
    st = result["status"]
    if st == "committed":
        emit(as_json, result, f"committed at height {result['height']} (tx {result['tx_hash']})")
    elif st == "pending":
        emit(as_json, result, f"pending (tx {result['tx_hash']})")
        if wait:
            sys.exit(EXIT_REFUSED)
    else:
        if as_json:
            emit(True, result, "")
        message = refusal_message(result, "recorded at height ")
        fail(explain(str(st), message), EXIT_REFUSED) if not as_json else sys.exit(EXIT_REFUSED)


identity = command_group("identity", "Register identities on the ledger.")


@signed_command(identity, "register", "Key file of the identity to register.")
@click.option("--role", required=True, type=click.Choice(ROLES), help="The role this identity takes.")
@click.option("--label", default="", help="Display name (institutions, practitioners, researchers; never for patients).")
@node_option
@click.option("--institution-key", type=click.Path(dir_okay=False, exists=True),
              help="Key of the institution that attests this identity (required for practitioners and researchers).")
@click.option("--profession", type=click.Choice(PROFESSIONS),
              help="A practitioner's profession, attested by the institution (without it the ledger shows 'unspecified').")
@passphrase_env_option
@click.option("--no-wait", is_flag=True, help="Return once accepted instead of waiting for the commit.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the commit.")
@json_option
def identity_register(key_file: str, role: str, label: str, institution_key: str | None, profession: str | None, node_url: str,
                      passphrase_env: str | None, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Register KEY's identity with ROLE; waits for the commit and prints the outcome.

    Practitioners and researchers are registered under an institution, which signs an
    attestation with its key (--institution-key); for a practitioner the institution attests
    its --profession too (one of physician, nurse, pharmacist, claims-officer, lab-technician,
    administrator). Patients register with their own key alone.

    \b
    Examples:
      medledger keys new --out alice.key
      medledger identity register --key alice.key --role patient --node http://127.0.0.1:8700
      medledger identity register --key drb.key --role practitioner --label "Dr B" --profession physician \\
          --institution-key devnet/node1/institution.key --node http://127.0.0.1:8701
    """
    if profession is not None and role != "practitioner":
        fail(f"--profession is for practitioners only (not a {role})", EXIT_USAGE)
    if profession is not None and not institution_key:
        fail("--profession needs --institution-key: the institution attests the profession", EXIT_USAGE)
    if role == "practitioner" and profession is None and not as_json:  # --json output stays one document
        click.echo("note: no --profession given; the ledger will show this practitioner's profession as 'unspecified'", err=True)
    ident = load_identity(key_file, passphrase_env)
    body: dict[str, Any] = {"role": role}
    if profession is not None:
        body["profession"] = profession
    if label:
        body["label"] = label
    if institution_key:
        from node.app.types.identity import attest

        inst = load_identity(institution_key, passphrase_env)
        client = Client(node_url)
        body["institution"] = inst.public_key
        body["attestation"] = run_client(lambda: attest(inst, chain_id=client.chain_id, registrant=ident.public_key, role=role,
                                                        profession=profession))
    submit_and_report(Client(node_url), ident, "identity.register", body, wait=not no_wait, timeout=timeout, as_json=as_json)


tx = command_group("tx", "Look up transactions.")


def check_proof(tx_hash: str, p: dict[str, Any], tx_root: bytes) -> dict[str, bool]:
    """The proof's checks: the leaf hashes up to the root; with the leaf (shown to a party), the
    leaf is the transaction (its SHA-256 is the tx hash) and its leaf hash is the one proven."""
    import hashlib

    from node.core.merkle import leaf_hash, verify_inclusion_of_hash

    checks = {"merkle_proof": verify_inclusion_of_hash(bytes.fromhex(p["leaf_hash"]), p["index"], p["size"],
                                                       [bytes.fromhex(x) for x in p["path"]], tx_root)}
    if "leaf" in p:
        leaf = bytes.fromhex(p["leaf"])
        checks["leaf_is_tx"] = hashlib.sha256(leaf).hexdigest() == tx_hash and leaf_hash(leaf).hex() == p["leaf_hash"]
    return checks


@tx.command("show", context_settings=CONTEXT)
@click.argument("tx_hash")
@click.option("--proof", is_flag=True, help="Also fetch and check the Merkle inclusion proof.")
@explorer_options
def tx_show(tx_hash: str, proof: bool, key_file: str | None, passphrase_env: str | None, node_url: str, as_json: bool) -> None:
    """Show a transaction's status: pending, or committed with height, index and result.

    With --proof the Merkle proof is checked from the leaf's hash (public); with --key of one of
    the transaction's parties the leaf is given too, and checked to be the transaction.

    \b
    Example:
      medledger tx show <tx hash> --proof --node http://127.0.0.1:8700
    """
    tx_hash_arg(tx_hash, "TX_HASH")
    client = Client(node_url)
    s = run_client(lambda: client.tx(tx_hash))
    if proof and s.get("status") == "committed":
        reader = reader_identity(key_file, passphrase_env)
        p = run_client(lambda: client.tx_proof(tx_hash, signer=reader))
        checks = check_proof(tx_hash, p, bytes.fromhex(p["tx_root"]))
        s["proof"] = {**p, "checks": checks, "verified": all(checks.values())}
    emit(as_json, s, lambda: " ".join(f"{k}={v}" for k, v in s.items() if k != "proof") + (f" proof={'valid' if s['proof']['verified'] else 'INVALID'}" if "proof" in s else ""))


block = command_group("block", "Look at blocks.")


@block.command("show", context_settings=CONTEXT)
@click.argument("height")
@explorer_options
def block_show(height: str, key_file: str | None, passphrase_env: str | None, node_url: str, as_json: bool) -> None:
    """Show block HEIGHT (a number or `latest`) with its header and transactions.

    A transaction that concerns a patient shows only its hash and result, unless --key is the
    key of one of its parties (its sender, the patient, their guardian, the node's institution).

    \b
    Examples:
      medledger block show latest
      medledger block show 12 --json --key patient.key
    """
    reader = reader_identity(key_file, passphrase_env)
    b = run_client(lambda: Client(node_url).block(height, signer=reader))

    def text() -> str:
        h = b["header"]
        lines = [f"block {b['height']}  {b['hash']}", f"  time {h['timestamp_ms']}  proposer {h['proposer'][:16]}...",
                 f"  state root {h['state_root']}", f"  {len(b['txs'])} transactions"]
        lines += [f"    {t['index']:>4} {t['hash'][:16]}... {t.get('type') or '(withheld)'} -> {t['result']}" for t in b["txs"]]
        return "\n".join(lines)

    emit(as_json, b, text)
