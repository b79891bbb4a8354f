"""Reading research studies from state: a study, whether it is active, its minimum k, a
researcher's studies.

`K_FLOOR` is the network-wide floor of k-anonymity for research releases: a study registers its
own minimum k (`min_k`, at least the floor, fixed for the study's life), and a researcher's
extract request may only raise it. Below five patients per group a released record is too close
to one person's (k = 1 releases one patient's data alone); five is the figure commonly used for
small-cell suppression in published health statistics.
"""

from __future__ import annotations

from typing import Any

from node.app import keys
from node.app.state import StateReader
from node.app.stored import read


def load_study(state: StateReader, study_id: str) -> dict[str, Any] | None:
    value = read(state, keys.study(study_id))
    return value if isinstance(value, dict) else None


K_FLOOR = 5
K_MAX = 1000


def study_min_k(study: dict[str, Any]) -> int:
    """The study's minimum k, never below the network floor (a study registered before the
    field existed gets the floor)."""
    value = study.get("min_k")
    return max(value if isinstance(value, int) and not isinstance(value, bool) else K_FLOOR, K_FLOOR)


def study_active(study: dict[str, Any], now_ms: int) -> bool:
    """A study is active from its registration to its `until_ms`, inclusive."""
    until: int = study["until_ms"]
    return now_ms <= until


def researcher_studies(state: StateReader, researcher: bytes) -> list[str]:
    """The ids of the studies a researcher was added to, in key order."""
    prefix = keys.RESEARCHER_STUDY + researcher
    out = []
    for key, _ in state.items(prefix):
        part = key[len(prefix):]
        out.append(part[1:1 + part[0]].decode("ascii"))
    return out
