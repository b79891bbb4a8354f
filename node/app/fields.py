"""Stateless checks of body fields shared by the transaction types, and their vocabularies.

Each check raises `TxRejected` with a stable code, so a client learns at admission what is wrong
with its body. Nothing here reads the ledger.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from node.chain.tx import TxRejected
from node.chain.vocabulary import INSTITUTION_KINDS as INSTITUTION_KINDS
from node.chain.vocabulary import PROFESSIONS as PROFESSIONS
from node.chain.vocabulary import UNSPECIFIED as UNSPECIFIED
from node.app.registry import require_fields

ID_SIZE = 32

# Purpose of use, and its HL7 v3 PurposeOfUse code (system http://terminology.hl7.org/CodeSystem/v3-ActReason).
PURPOSE_CODES = {
    "treatment": "TREAT",
    "payment": "HPAYMT",
    "operations": "HOPERAT",
    "research": "HRESCH",
    "emergency": "ETREAT",
}
PURPOSES = tuple(PURPOSE_CODES)

# What an institution is and what a practitioner does: node/chain/vocabulary.py (the genesis
# file names kinds too); re-exported here beside the other vocabularies of bodies.

MAX_TEXT = 256
MAX_LIST = 64
MAX_RECORD_IDS = 256
ANY_TYPE = "*"

_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_STUDY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_id(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if not isinstance(value, bytes) or len(value) != ID_SIZE:
        raise TxRejected("invalid_body", f"body field {name!r} must be {ID_SIZE} bytes")


def check_text(body: dict[str, Any], name: str, *, limit: int = MAX_TEXT, required: bool = False) -> None:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise TxRejected("invalid_body", f"body field {name!r} must be a string")
    if len(value) > limit:
        raise TxRejected("invalid_body", f"body field {name!r} is longer than {limit} characters")
    if required and not value.strip():
        raise TxRejected("invalid_body", f"body field {name!r} must not be empty")


def check_time(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise TxRejected("invalid_body", f"body field {name!r} must be a time in ms since the epoch")


def check_purpose(value: Any) -> None:
    if value not in PURPOSE_CODES:
        raise TxRejected("invalid_purpose", f"purpose must be one of {', '.join(PURPOSES)}")


def check_kind(value: Any) -> None:
    if value not in INSTITUTION_KINDS:
        raise TxRejected("invalid_kind", f"an institution's kind is one of {', '.join(INSTITUTION_KINDS)}")


def check_profession(value: Any) -> None:
    if value not in PROFESSIONS:
        raise TxRejected("invalid_profession", f"a practitioner's profession is one of {', '.join(PROFESSIONS)}")


def check_resource_type(value: Any, *, allow_any: bool = False) -> None:
    if allow_any and value == ANY_TYPE:
        return
    if not isinstance(value, str) or not _RESOURCE_TYPE.fullmatch(value):
        raise TxRejected("invalid_resource_type", f"{str(value)[:64]!r} is not a FHIR resource type name")


def check_study_id(value: Any) -> None:
    if not isinstance(value, str) or not _STUDY_ID.fullmatch(value):
        raise TxRejected("invalid_study_id", "a study id is 1-64 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)")


def check_unique_list(body: dict[str, Any], name: str, *, limit: int = MAX_LIST) -> list[Any]:
    value = body.get(name, [])
    if not isinstance(value, list):
        raise TxRejected("invalid_body", f"body field {name!r} must be a list")
    if len(value) > limit:
        raise TxRejected("invalid_body", f"body field {name!r} lists more than {limit} items")
    try:
        distinct = len(set(value)) == len(value)
    except TypeError:
        raise TxRejected("invalid_body", f"body field {name!r} must list plain values") from None
    if not distinct:
        raise TxRejected("invalid_body", f"body field {name!r} lists an item twice")
    return value


def check_on_behalf_of(body: dict[str, Any]) -> None:
    if "on_behalf_of" in body:
        check_id(body, "on_behalf_of")


def check_patient_act(body: dict[str, Any], name: str, optional: Mapping[str, type] | None = None) -> None:
    """The body of a patient's act on one of their records or consents: the id `name`, perhaps
    `on_behalf_of` (a guardian acting), and otherwise only the `optional` fields."""
    require_fields(body, {name: bytes}, {**(optional or {}), "on_behalf_of": bytes})
    check_id(body, name)
    check_on_behalf_of(body)
