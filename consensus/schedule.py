"""The validator sets of coming heights: which set votes at a height, once changes are scheduled.

A validator-set change (a governance transaction, applied by the runtime) takes effect at a
later height; until then the set of the height being decided stays in force. `at(h)` is the set
scheduled with the highest effective height <= h, or the current set if none is. `previous` is
the set of the last final block, whose members may still be answered with a DECISION.
"""

from __future__ import annotations

from consensus.errors import LocalProtocolError
from consensus.validators import ValidatorSet


class ValidatorSchedule:
    """Validator sets by the height they take effect at, pruned as heights become final."""

    def __init__(self, current: ValidatorSet, previous: ValidatorSet | None = None) -> None:
        """`previous` is the set of the last final block (after a restart across a change it differs)."""
        self._current = current
        self._sets: dict[int, ValidatorSet] = {}
        self.previous = current if previous is None else previous

    def add(self, effective_height: int, validators: ValidatorSet, deciding: int) -> None:
        """Use `validators` from `effective_height` on, which must be after the height `deciding`."""
        if type(effective_height) is not int or effective_height <= deciding:
            raise LocalProtocolError(
                f"a validator-set change must take effect after height {deciding}, not at {effective_height}")
        known = self._sets.get(effective_height)
        if known is not None and known != validators:
            raise LocalProtocolError(f"two different validator sets scheduled for height {effective_height}")
        self._sets[effective_height] = validators

    def at(self, height: int) -> ValidatorSet:
        """The validator set of `height`."""
        best = None
        for effective in self._sets:
            if effective <= height and (best is None or effective > best):
                best = effective
        return self._sets[best] if best is not None else self._current

    def advance(self, height: int) -> ValidatorSet:
        """Height `height - 1` is final: remember its set as `previous`; the set of `height`."""
        self.previous = self.at(height - 1)
        self._current = self.at(height)
        self._sets = {k: v for k, v in self._sets.items() if k > height}
        return self._current
