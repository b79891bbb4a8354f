"""The validator set of each height as this node's committed state records it.

The ledger keeps the history of validator sets (node/app/validator_sets.py); a change decided in
block h takes effect at h + 2. `Membership` turns that into what the runtime needs: the
`ValidatorSet` of a height (for a proposal's proposer, a commit certificate, the integrity check
at start), the sets scheduled after a height (to seed the engine's schedule), the sets a block
just made (to schedule them), and the peer addresses of the validators (for the network).
The committed state answers for every height up to its own height + 2, which covers every
block this node checks: a proposal or synced block is at most one height past the store.
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.validators import ValidatorSet

from node.app import validator_sets
from node.app.state import StateReader
from node.chain.genesis import Genesis


class Membership:
    """Validator sets by height, read from the committed state of one node."""

    def __init__(self, genesis: Genesis, state: Callable[[], StateReader]) -> None:
        self.genesis = genesis
        self._state = state
        self._cache: dict[tuple[bytes, ...], ValidatorSet] = {}

    def _set(self, ids: list[bytes]) -> ValidatorSet:
        key = tuple(ids)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = ValidatorSet(validators=key)
        return found

    def at(self, height: int) -> ValidatorSet:
        """The validators that decide block `height`."""
        return self._set(validator_sets.validator_ids_at(self._state(), height))

    def scheduled_after(self, height: int) -> list[tuple[int, ValidatorSet]]:
        """The sets taking effect after `height`, by effective height."""
        return [(effective, self._set(ids)) for effective, ids in validator_sets.scheduled_after(self._state(), height)]

    def made_by(self, height: int) -> ValidatorSet | None:
        """The set that block `height` scheduled (effective at height + 2), if it changed one."""
        for effective, ids in validator_sets.history(self._state()):
            if effective == height + validator_sets.CHANGE_DELAY:
                return self._set(ids)
        return None

    def epoch(self, height: int) -> tuple[int, int]:
        """(number of set changes in force at `height`, the height its set took effect at)."""
        return validator_sets.epoch_at(self._state(), height)

    def known_ids(self) -> set[bytes]:
        """Every id that was, is or will be a validator (the genesis ones included)."""
        ids = {v.id for v in self.genesis.validators}
        for _, members in validator_sets.history(self._state()):
            ids.update(members)
        return ids

    def addresses(self) -> dict[bytes, str]:
        """Peer addresses of the validators of the last scheduled set (from their records, or
        the genesis file for a genesis validator); those without an address are left out. A key
        rotated out or a validator removed is not listed (its address may now be another key's)."""
        state = self._state()
        found = {}
        for vid in validator_sets.latest_ids(state):
            address = validator_sets.describe(state, vid, self.genesis.validators).get("address")
            if isinstance(address, str) and address:
                found[vid] = address
        return found

    def describe(self, validator_id: bytes) -> dict[str, object]:
        return validator_sets.describe(self._state(), validator_id, self.genesis.validators)
