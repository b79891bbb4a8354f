"""Who may link to a node, over a committed state: a named peer (validator, configured observer
or peer), or any key the state registers with the role institution (an admitted institution
follows the chain as an observer without every validator listing it). A patient, a practitioner
or an unknown key may not, nor the node's own key."""

from __future__ import annotations

from node.app import keys
from node.app.state import EmptyState, Overlay
from node.core.crypto import Identity
from node.core.encoding import canonical
from node.daemon import admits_peer

OWN, VALIDATOR, OBSERVER, ADMITTED, PATIENT, DOCTOR, STRANGER = (
    Identity.from_seed(bytes([40 + i]) * 32).public_key for i in range(7))


def state() -> Overlay:
    s = Overlay(EmptyState())
    s.put(keys.identity(OWN), canonical({"role": "institution", "label": "own", "height": 0}))
    s.put(keys.identity(ADMITTED), canonical({"role": "institution", "label": "St Mary", "height": 7}))
    s.put(keys.identity(PATIENT), canonical({"role": "patient", "height": 3}))
    s.put(keys.identity(DOCTOR), canonical({"role": "practitioner", "institution": OWN, "height": 4}))
    return s


def allowed(peer: bytes, named: set[bytes] | None = None) -> bool:
    return admits_peer(peer, named={VALIDATOR, OBSERVER} if named is None else named, state=state(), own_id=OWN)


def test_named_peers_and_admitted_institutions_may_link() -> None:
    assert allowed(VALIDATOR) and allowed(OBSERVER)  # the explicit lists keep working
    assert allowed(ADMITTED)  # on the chain as an institution: no observers entry needed
    assert allowed(ADMITTED, named=set())


def test_patients_staff_unknown_keys_and_the_own_key_may_not() -> None:
    assert not allowed(PATIENT) and not allowed(DOCTOR) and not allowed(STRANGER)
    assert not allowed(OWN) and not allowed(OWN, named={OWN})


def test_an_institution_not_yet_admitted_is_refused_until_its_registration_commits() -> None:
    before = Overlay(EmptyState())
    assert not admits_peer(ADMITTED, named=set(), state=before, own_id=OWN)
    before.put(keys.identity(ADMITTED), canonical({"role": "institution", "label": "St Mary", "height": 9}))
    assert admits_peer(ADMITTED, named=set(), state=before, own_id=OWN)
