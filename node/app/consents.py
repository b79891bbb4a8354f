"""Reading consent rules from state for the transaction types and the queries.

A patient's consents are indexed by grantee (`consent_grantee/<patient><grantee><pos>`), so an
access decision reads only the consents that name the requester, its institution or its studies,
however many other consents the patient has given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from node.app import keys
from node.app.access import Consent, Grantee
from node.app.state import StateReader
from node.app.stored import read
from node.app.studies import load_study


def load_consent(state: StateReader, consent_id: bytes) -> dict[str, Any] | None:
    value = read(state, keys.consent(consent_id))
    return value if isinstance(value, dict) else None


def candidate_consents(state: StateReader, patient: bytes, grantees: Iterable[Grantee]) -> list[Consent]:
    """The patient's consents naming any of `grantees` (revoked and expired included), oldest
    first. A consent to a study ends no later than the study."""
    found: list[tuple[bytes, bytes, int | None]] = []
    for kind, grantee in grantees:
        cap = None
        if kind == "study":
            assert isinstance(grantee, str)
            study = load_study(state, grantee)
            if study is None:
                continue
            cap = study["until_ms"]
        prefix = keys.CONSENT_GRANTEE + patient + keys.grantee_part(kind, grantee)
        for key, consent_id in state.items(prefix):
            found.append((key[-keys.POSITION_SIZE:], consent_id, cap))
    found.sort(key=lambda item: item[0])
    out = []
    for _, consent_id, cap in found:
        value = load_consent(state, consent_id)
        if value is not None:
            out.append(Consent.from_state(consent_id, value, until_cap=cap))
    return out
