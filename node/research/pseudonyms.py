"""Study pseudonyms: the ids that replace resource ids and references in a research release.

A pseudonym is HMAC-SHA256(study key, message), truncated to 128 bits and hex-encoded (32
characters, a valid FHIR id). Within a study the same original always gives the same pseudonym,
so an Observation still points at its Patient; another study has another key, so the two
releases cannot be joined on ids. Without the key a pseudonym cannot be recomputed from a guessed
id, which is why the study key is held by custodians only and never given to a researcher: a
researcher holding it could hash every patient id published on the ledger and undo the pseudonyms.

The message is domain-separated so two kinds of original can never collide:

- a patient known across custodians (by the id the ledger knows the patient under):
  ``b"person\\0" + person_key``; the same person gets one pseudonym at every custodian, so the
  merged extract counts them once (counting them twice would inflate k-anonymity groups);
- any other resource: ``b"ref\\0" + namespace + b"\\0" + b"<ResourceType>/<id>"``, where the
  namespace is the custodian's name, because local ids (``Observation/1``) repeat between
  institutions.

Two implementations of the same interface: `KeyedPseudonyms` (the custodian's side, which makes
pseudonyms) and `ExistingPseudonyms` (the researcher's side, which re-checks a release and keeps
only ids that already are pseudonyms).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Protocol

PSEUDONYM_HEX_CHARS = 32
PSEUDONYM_RE = re.compile(r"[0-9a-f]{32}")
MIN_STUDY_KEY_BYTES = 16


class Pseudonyms(Protocol):
    """Maps an original resource (type and local id) to the id it is released under."""

    def pseudonym(self, resource_type: str, resource_id: str) -> str | None:
        """The released id, or None when this resource cannot be referred to."""
        ...


def derive_study_key(secret: bytes, study_id: str) -> bytes:
    """Derive a study's pseudonym key from a secret the custodians share (never the researcher)."""
    if len(secret) < MIN_STUDY_KEY_BYTES:
        raise ValueError(f"the shared secret must have at least {MIN_STUDY_KEY_BYTES} bytes")
    if not study_id:
        raise ValueError("a study id is required")
    return hmac.new(secret, b"medledger-study-key\0" + study_id.encode(), hashlib.sha256).digest()


class KeyedPseudonyms:
    """Pseudonyms made with a study key, for one custodian (namespace)."""

    __slots__ = ("_key", "_namespace", "_persons")

    def __init__(self, study_key: bytes, *, namespace: str = "", persons: Mapping[str, str] | None = None) -> None:
        if not isinstance(study_key, bytes) or len(study_key) < MIN_STUDY_KEY_BYTES:
            raise ValueError(f"a study key is bytes of at least {MIN_STUDY_KEY_BYTES} bytes")
        if "\0" in namespace:
            raise ValueError("a namespace cannot contain NUL")
        self._key = study_key
        self._namespace = namespace.encode()
        # local Patient id -> the person key the ledger knows the patient under
        self._persons = dict(persons or {})

    def pseudonym(self, resource_type: str, resource_id: str) -> str:
        """HMAC-SHA256 of the domain-separated original, first 128 bits in hex."""
        person = self._persons.get(resource_id) if resource_type == "Patient" else None
        if person is not None:
            message = b"person\0" + person.encode()
        else:
            message = b"ref\0" + self._namespace + b"\0" + f"{resource_type}/{resource_id}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]

    def person(self, person_key: str) -> str:
        """The pseudonym of a patient known by their ledger person key."""
        return hmac.new(self._key, b"person\0" + person_key.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]


class ExistingPseudonyms:
    """Keeps ids that already have the shape of a pseudonym; refuses anything else."""

    __slots__ = ()

    def pseudonym(self, resource_type: str, resource_id: str) -> str | None:
        """The id itself if it looks like a pseudonym, else None."""
        return resource_id if PSEUDONYM_RE.fullmatch(resource_id) else None
