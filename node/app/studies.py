"""Reading research studies from state: a study, whether it is active, a researcher's studies."""

from __future__ import annotations

from typing import Any

from . import keys
from .state import StateReader
from .stored import read


def load_study(state: StateReader, study_id: str) -> dict[str, Any] | None:
    value = read(state, keys.study(study_id))
    return value if isinstance(value, dict) else None


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
