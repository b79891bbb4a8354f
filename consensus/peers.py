"""How far the other validators are: the highest height each was seen working on.

A validator that sees f + 1 validators (so at least one honest one) two or more heights ahead
has fallen behind and must fetch blocks (`NeedSync`); vote traffic alone cannot bring it back,
since the others have discarded the heights it is missing. Each target is asked for once.
"""

from __future__ import annotations

from consensus.validators import ValidatorSet


class PeerHeights:
    """The highest height seen from each validator, and the highest sync target asked for."""

    def __init__(self) -> None:
        self._heights: dict[bytes, int] = {}
        self._requested = 0

    def note(self, sender: bytes, height: int, validators: ValidatorSet, deciding: int) -> int | None:
        """Record `sender` at `height`; the height to sync to, if this makes a new one (else None)."""
        if self._heights.get(sender, 0) >= height:
            return None
        self._heights[sender] = height
        target = self.synced_height(validators)
        if target >= deciding + 1 and target > self._requested:
            self._requested = target
            return target
        return None

    def synced_height(self, validators: ValidatorSet) -> int:
        """The highest height below which f + 1 validators (so an honest one) have finalized everything."""
        heights = sorted((v for s, v in self._heights.items() if s in validators), reverse=True)
        weak = validators.weak_quorum
        if len(heights) < weak:
            return 0
        return heights[weak - 1] - 1

    def prune(self, height: int) -> None:
        """Forget validators seen only at heights below `height` (the one now being decided)."""
        self._heights = {s: v for s, v in self._heights.items() if v > height - 1}
