"""ValidatorSet: sizes, quorum intersection, primary rotation, membership."""

from __future__ import annotations

import pytest

from consensus.validators import ValidatorSet


def ids(n: int) -> tuple[bytes, ...]:
    return tuple(bytes([i + 1]) * 32 for i in range(n))


@pytest.mark.parametrize("n", range(1, 41))
def test_quorums_intersect_in_an_honest_validator_and_honest_ones_suffice(n: int) -> None:
    vs = ValidatorSet(validators=ids(n))
    assert vs.f == (n - 1) // 3
    assert 2 * vs.quorum - n >= vs.f + 1, "two quorums must share an honest validator"
    assert vs.quorum <= n - vs.f, "the honest validators alone must form a quorum"
    assert 2 * (vs.quorum - 1) - n < vs.f + 1, "the quorum is the smallest that is safe"
    assert vs.weak_quorum == vs.f + 1


@pytest.mark.parametrize(("n", "f", "quorum"), [(1, 0, 1), (4, 1, 3), (5, 1, 4), (7, 2, 5), (10, 3, 7), (31, 10, 21)])
def test_known_sizes(n: int, f: int, quorum: int) -> None:
    vs = ValidatorSet(validators=ids(n))
    assert (vs.n, vs.f, vs.quorum) == (n, f, quorum)


def test_primary_rotates_with_height_and_view() -> None:
    vs = ValidatorSet(validators=ids(4))
    assert vs.primary(1, 0) == ids(4)[1]
    assert vs.primary(1, 1) == ids(4)[2]
    assert vs.primary(2, 0) == ids(4)[2]
    assert vs.primary(3, 5) == ids(4)[0]


def test_membership_and_index() -> None:
    vs = ValidatorSet(validators=ids(3))
    assert ids(3)[2] in vs and bytes(32) not in vs
    assert vs.index_of(ids(3)[2]) == 2
    with pytest.raises(KeyError):
        vs.index_of(bytes(32))


@pytest.mark.parametrize("bad", [(), (b"x" * 31,), (b"a" * 32, b"a" * 32), [b"a" * 32]])
def test_malformed_sets_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        ValidatorSet(validators=bad)  # type: ignore[arg-type]  # wrong on purpose: it must be refused
