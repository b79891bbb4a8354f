"""The validator set of one height: who votes, who leads, and how many votes make a quorum.

Validators are identified by their 32-byte Ed25519 public keys, in the order the genesis file
(or the governance transaction that changed the set) lists them; the order matters because the
primary of height h in view v is `validators[(h + v) % n]`.

Sizes. With n validators the set tolerates f = (n - 1) // 3 Byzantine ones. A quorum is the
smallest number q of validators such that any two quorums share at least f + 1 validators
(so at least one honest one): 2q - n >= f + 1, i.e. q = floor((n + f) / 2) + 1. When
n = 3f + 1 this is the familiar 2f + 1; for other n it is what keeps the intersection argument
true (n = 5, f = 1 needs 4, not 3), and it never exceeds n - f, so the honest validators alone
can always form a quorum. `weak_quorum` = f + 1 is the smallest group sure to contain an honest
validator.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from consensus.encoding import ID_SIZE, MAX_VALIDATORS


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorSet:
    """An ordered, non-empty tuple of distinct 32-byte validator ids."""

    validators: tuple[bytes, ...]
    _index: dict[bytes, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if type(self.validators) is not tuple or not 1 <= len(self.validators) <= MAX_VALIDATORS:
            raise ValueError(f"validators must be a tuple of 1..{MAX_VALIDATORS} ids")
        for v in self.validators:
            if type(v) is not bytes or len(v) != ID_SIZE:
                raise ValueError("each validator id must be 32 bytes")
        index = {v: i for i, v in enumerate(self.validators)}
        if len(index) != len(self.validators):
            raise ValueError("validator ids must be distinct")
        object.__setattr__(self, "_index", index)

    @property
    def n(self) -> int:
        return len(self.validators)

    @property
    def f(self) -> int:
        """How many Byzantine validators the set tolerates."""
        return (len(self.validators) - 1) // 3

    @property
    def quorum(self) -> int:
        """Votes needed for a certificate: any two quorums share an honest validator."""
        return (self.n + self.f) // 2 + 1

    @property
    def weak_quorum(self) -> int:
        """f + 1: the smallest group of validators that surely holds an honest one."""
        return self.f + 1

    def primary(self, height: int, view: int) -> bytes:
        """The validator that proposes at `height` in `view`."""
        return self.validators[(height + view) % self.n]

    def __contains__(self, validator: object) -> bool:
        return validator in self._index

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.validators)

    def __len__(self) -> int:
        return self.n

    def index_of(self, validator: bytes) -> int:
        """Position of `validator` in the set; `KeyError` if it is not a member."""
        return self._index[validator]
