"""The genesis file: the chain id, the validators, the initial institutions and parameters.

It is JSON so operators can read and diff it. Its hash (SHA-256 of the canonical encoding of
the parsed document) binds peer handshakes to one network. `Genesis.load` refuses a file with a
clear message for each thing that is wrong.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.core.crypto import parse_id, sha256
from node.core.encoding import canonical
from node.chain.vocabulary import INSTITUTION_KINDS, UNSPECIFIED


class GenesisError(ValueError):
    """The genesis file is missing or invalid (the operator's to fix)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorInfo:
    id: bytes
    name: str
    address: str  # host:port of its peer endpoint
    api: str = ""  # base URL of its HTTP API (informational)

    def to_json(self) -> dict[str, str]:
        return {"id": self.id.hex(), "name": self.name, "address": self.address, "api": self.api}


@dataclass(frozen=True, slots=True, kw_only=True)
class InstitutionInfo:
    id: bytes
    name: str
    kind: str = UNSPECIFIED  # one of INSTITUTION_KINDS; a genesis file without one: unspecified

    def to_json(self) -> dict[str, str]:
        # no "kind" when unspecified: a genesis file written before kinds keeps its hash
        out = {"id": self.id.hex(), "name": self.name}
        if self.kind != UNSPECIFIED:
            out["kind"] = self.kind
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    validators: tuple[ValidatorInfo, ...]
    institutions: tuple[InstitutionInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "validators": [v.to_json() for v in self.validators],
            "institutions": [i.to_json() for i in self.institutions],
        }

    def hash(self) -> bytes:
        return sha256(canonical(self.to_json()))

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_json(cls, doc: Any) -> "Genesis":
        if not isinstance(doc, dict):
            raise GenesisError("genesis must be a JSON object")
        chain_id = doc.get("chain_id")
        if not isinstance(chain_id, str) or not chain_id or len(chain_id) > 64:
            raise GenesisError("genesis: chain_id must be a non-empty string of at most 64 characters")
        ts = doc.get("genesis_time_ms")
        if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
            raise GenesisError("genesis: genesis_time_ms must be a non-negative integer")
        raw_validators = doc.get("validators")
        if not isinstance(raw_validators, list) or not raw_validators:
            raise GenesisError("genesis: validators must be a non-empty list")
        validators = []
        for i, v in enumerate(raw_validators):
            if not isinstance(v, dict):
                raise GenesisError(f"genesis: validators[{i}] must be an object")
            try:
                vid = parse_id(str(v.get("id", "")))
            except ValueError as exc:
                raise GenesisError(f"genesis: validators[{i}].id: {exc}") from None
            name, address, api = v.get("name", ""), v.get("address", ""), v.get("api", "")
            if not all(isinstance(x, str) for x in (name, address, api)) or not name:
                raise GenesisError(f"genesis: validators[{i}] needs a name (and string address/api)")
            validators.append(ValidatorInfo(id=vid, name=name, address=address, api=api))
        if len({v.id for v in validators}) != len(validators):
            raise GenesisError("genesis: a validator id is listed twice")
        institutions = []
        for i, inst in enumerate(doc.get("institutions", [])):
            if not isinstance(inst, dict) or not isinstance(inst.get("name"), str):
                raise GenesisError(f"genesis: institutions[{i}] must be an object with id and name")
            try:
                iid = parse_id(str(inst.get("id", "")))
            except ValueError as exc:
                raise GenesisError(f"genesis: institutions[{i}].id: {exc}") from None
            kind = inst.get("kind", UNSPECIFIED)
            if kind not in INSTITUTION_KINDS and "kind" in inst:
                raise GenesisError(f"genesis: institutions[{i}].kind must be one of {', '.join(INSTITUTION_KINDS)}")
            institutions.append(InstitutionInfo(id=iid, name=inst["name"], kind=kind))
        return cls(chain_id=chain_id, genesis_time_ms=ts, validators=tuple(validators), institutions=tuple(institutions))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Genesis":
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise GenesisError(f"genesis file {os.fspath(path)!r} not found") from None
        except ValueError as exc:
            raise GenesisError(f"genesis file {os.fspath(path)!r} is not valid JSON: {exc}") from None
        return cls.from_json(doc)
