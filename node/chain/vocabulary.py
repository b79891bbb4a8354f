"""The closed vocabularies of identities: what an institution is and what a practitioner does.

Kept here, below the ledger rules, because the genesis file (node/chain/genesis.py) names
institutions' kinds as well as `governance.admit_institution` and `identity.register`
(node/app/fields.py checks bodies against these lists). UNSPECIFIED is what the ledger shows
for an identity recorded without one (institutions and practitioners of chains older than these
fields); it is never accepted as a value, so later policies can treat it as "no kind".
"""

from __future__ import annotations

INSTITUTION_KINDS = ("hospital", "clinic", "pharmacy", "insurer", "lab", "research")
PROFESSIONS = ("physician", "nurse", "pharmacist", "claims-officer", "lab-technician", "administrator")
UNSPECIFIED = "unspecified"

# the order a local network names its institutions in (devnet: 4 nodes are hospital, clinic,
# pharmacy, insurer; a fifth is the research centre; then a lab, then the kinds again, numbered)
DEVNET_KINDS = ("hospital", "clinic", "pharmacy", "insurer", "research", "lab")


def devnet_kinds(count: int) -> list[str]:
    """The kinds of a local network's `count` institutions, in node order."""
    return [DEVNET_KINDS[i % len(DEVNET_KINDS)] for i in range(count)]


def devnet_names(count: int) -> list[str]:
    """Their names: the kind, then the kind with a number from the second round on (hospital-2 ...)."""
    return [kind if i < len(DEVNET_KINDS) else f"{kind}-{i // len(DEVNET_KINDS) + 1}"
            for i, kind in enumerate(devnet_kinds(count))]
