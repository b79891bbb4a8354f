"""Changing a local devnet's validator set from the outside, as its operators would.

`medledger chaos --reconfigure` uses these while its load runs (node/devtools/chaos.py): an
institution joins and is voted in (`grow.add_node`), a validator is voted out by the others'
keys, and a validator rotates its key and restarts with the new one once the block before the
switch height is committed (docs/operations.md, "Rotating a validator's key").

`membership_plan` is the seeded order of those steps; it never removes a validator while the set
has fewer than five, and never lets the Byzantine members reach a third of the set.
"""

from __future__ import annotations

import random
from pathlib import Path

from node.client import ApiError, ClientError, HealthClient as Client
from node.core.crypto import Identity
from node.devtools.cluster import Cluster, home_config
from node.devtools.grow import GrowError, _vote, _voters
from node.home.keys import load_key_file, write_key_file

STEPS = ("join", "leave", "rotate")
DEFAULT_PLAN = ("join", "join", "leave", "rotate")  # the acceptance run


def membership_plan(rng: random.Random, validators: int, byzantine: int,
                    steps: tuple[str, ...] = DEFAULT_PLAN) -> list[str]:
    """`steps` in a seeded order in which every `leave` keeps at least four validators and the
    Byzantine ones below a third of the set (3 * byzantine < size): a leave waits for a join."""
    pending = list(steps)
    rng.shuffle(pending)
    out: list[str] = []
    size = validators
    while pending:
        for k, step in enumerate(pending):
            if step != "leave" or (size - 1 >= 4 and 3 * byzantine < size - 1):
                break
        else:
            raise ValueError(f"no order of {', '.join(steps)} keeps {validators} validators at four or more")
        step = pending.pop(k)
        size += {"join": 1, "leave": -1}.get(step, 0)
        out.append(step)
    return out


def _key_path(home: Path) -> Path:
    return home / str((home_config(home) or {}).get("node", {}).get("key_file", "institution.key"))


def remove_validator(root: Path, client: Client, target_id: str) -> int:
    """Have every other validator of the devnet at `root` approve removing `target_id`, until
    the removal is decided; returns the height it takes effect at. Raises GrowError."""
    voters = [v for v in _voters(Cluster.open(root), client) if v.id != target_id]
    reached: dict[str, int] = {}

    def decided() -> bool:
        try:
            proposal = client.validator_proposal("remove", target_id)
        except ApiError:
            return False
        if "effective_height" in proposal:
            reached["height"] = int(proposal["effective_height"])
        return "height" in reached

    _vote(client, voters, "validator.remove", {"validator": bytes.fromhex(target_id)}, decided, "validator.remove")
    return reached["height"]


def rotate_validator(home: Path, client: Client, new: Identity) -> int:
    """Send the rotation of the key in `home` to `new` (signed by both); returns the switch
    height. The key file is not replaced yet: see `install_key`. Raises GrowError."""
    from node.app.types.validator_rotate import rotation_message

    old = load_key_file(_key_path(home))
    try:
        proof = new.sign(rotation_message(client.chain_id, old.public_key, new.public_key))
        result = client.transact(old, "validator.rotate", {"new_key": new.public_key, "proof": proof})
    except (ApiError, ClientError) as exc:
        raise GrowError(f"validator.rotate of {old.id[:16]}... refused: {exc}") from None
    if result.get("status") != "committed":
        raise GrowError(f"validator.rotate of {old.id[:16]}... ended as {result.get('status')}: {result.get('message')}")
    return int(result["height"]) + 2


def install_key(home: Path, identity: Identity) -> Path:
    """Put `identity` in place of the home's key file (the node must be stopped); the old key is
    kept beside it as `<key file>.rotated` (its evidence may still be needed). Returns that path."""
    path = _key_path(home)
    kept = path.with_name(path.name + ".rotated")
    path.replace(kept)
    write_key_file(path, identity)
    return kept
