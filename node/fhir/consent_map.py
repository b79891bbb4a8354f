"""FHIR Consent <-> the ledger's `consent.grant` body: the one mapping, both directions.

`node.app.fhir_export.consent_resource` turns a consent on the ledger into a FHIR Consent;
`grant_body(consent)` turns such a Consent back into the body of the `consent.grant` that
makes it, so that `grant_body(consent_resource(c))` is the body that granted `c`. A client
creating a Consent through the API signs exactly `grant_body(its Consent)` (docs/fhir.md,
"Consent through FHIR"); the server refuses a transaction whose body differs in anything.

What the Consent says, and the body field it is:

| Consent                                                    | consent.grant body           |
| ---------------------------------------------------------- | ---------------------------- |
| provision.actor[0].reference: identifier urn:medledger:identity, type Practitioner / Organization | grantee_kind practitioner / institution, grantee (32 bytes) |
| provision.actor[0].reference: identifier urn:medledger:study, type Group | grantee_kind study, grantee (the study id) |
| provision.purpose (v3 ActReason TREAT, HPAYMT, HOPERAT, HRESCH, ETREAT) | purposes (ledger order) |
| a permit provision without `data`: its `class` codes (none: every type) | resource_types (`*`: every type) |
| a permit provision's `data` (identifier urn:medledger:record) | record_ids |
| the permit's nested deny provision's `class` codes          | deny_types                   |
| provision.period.start / end (instants)                     | valid_from / valid_until (ms) |

With both types and records, the base provision denies and nests the two permits (as
consent_resource writes it). Anything else is refused (`invalid_consent`, 422).
"""

from __future__ import annotations

from typing import Any

from node.app.fhir_export import RESOURCE_TYPES, SYS_IDENTITY, SYS_RECORD, SYS_STUDY, V3_ACT_REASON
from node.app.fields import ANY_TYPE, PURPOSES, PURPOSE_CODES
from node.fhir.outcome import FhirError
from node.fhir.search import date_range

JSON = dict[str, Any]
LEDGER_PURPOSE = {code: purpose for purpose, code in PURPOSE_CODES.items()}
KINDS = {(SYS_IDENTITY, "Practitioner"): "practitioner", (SYS_IDENTITY, "Organization"): "institution",
         (SYS_STUDY, "Group"): "study"}


def invalid(message: str) -> FhirError:
    return FhirError(422, "invalid_consent", message)


def _instant_ms(value: Any, name: str) -> int:
    if not isinstance(value, str) or "T" not in value:
        raise invalid(f"provision.period.{name} must be an instant (YYYY-MM-DDThh:mm:ss.sssZ)")
    try:
        return date_range(value)[0]
    except ValueError as exc:
        raise invalid(f"provision.period.{name}: {exc}") from None


def _codes(provision: JSON, field: str) -> list[str]:
    out = []
    for item in provision.get(field) or ():
        if not isinstance(item, dict) or item.get("system") != RESOURCE_TYPES or not isinstance(item.get("code"), str):
            raise invalid(f"provision.{field} codes are resource types (system {RESOURCE_TYPES})")
        out.append(item["code"])
    return out


def _grantee(provision: JSON) -> tuple[str, bytes | str]:
    actors = provision.get("actor")
    if not isinstance(actors, list) or len(actors) != 1 or not isinstance(actors[0], dict):
        raise invalid("provision.actor names exactly one grantee")
    ref = actors[0].get("reference")
    ident = ref.get("identifier") if isinstance(ref, dict) else None
    if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
        raise invalid("the grantee is referenced by identifier (system urn:medledger:identity or urn:medledger:study)")
    kind = KINDS.get((str(ident.get("system")), str(ref.get("type"))))  # type: ignore[union-attr]
    if kind is None:
        raise invalid("the grantee's reference is a Practitioner or an Organization (identifier urn:medledger:identity) "
                      "or the Group of a study's researchers (identifier urn:medledger:study)")
    value = ident["value"]
    if kind == "study":
        return kind, value
    try:
        grantee = bytes.fromhex(value)
    except ValueError:
        grantee = b""
    if len(grantee) != 32:
        raise invalid("the grantee's identifier is its ledger id, 64 hex")
    return kind, grantee


def _purposes(provision: JSON) -> list[str]:
    out = []
    for coding in provision.get("purpose") or ():
        code = coding.get("code") if isinstance(coding, dict) else None
        if not isinstance(coding, dict) or coding.get("system") != V3_ACT_REASON or code not in LEDGER_PURPOSE:
            raise invalid(f"provision.purpose codes are v3 ActReason {', '.join(LEDGER_PURPOSE)}")
        out.append(LEDGER_PURPOSE[code])
    if not out:
        raise invalid("provision.purpose names at least one purpose of use")
    return sorted(set(out), key=PURPOSES.index)


def _permits(provision: JSON) -> list[JSON]:
    if provision.get("type") == "permit":
        return [provision]
    nested = provision.get("provision")
    if provision.get("type") == "deny" and isinstance(nested, list) and len(nested) == 2 \
            and all(isinstance(p, dict) and p.get("type") == "permit" for p in nested):
        return nested
    raise invalid("the provision is a permit, or a deny holding two permits (by type and by record)")


def grant_body(consent: JSON) -> JSON:
    """The `consent.grant` body a FHIR Consent stands for (see the module's docstring)."""
    if not isinstance(consent, dict) or consent.get("resourceType") != "Consent":
        raise invalid("expected a Consent resource")
    if consent.get("status", "active") != "active":
        raise invalid("a Consent is created active")
    provision = consent.get("provision")
    if not isinstance(provision, dict):
        raise invalid("a Consent says what it permits in provision")
    permits = _permits(provision)
    first = permits[0]
    kind, grantee = _grantee(first)
    purposes = _purposes(first)
    period = first.get("period")
    if not isinstance(period, dict) or "end" not in period:
        raise invalid("provision.period.end says when the consent ends")
    resource_types: list[str] = []
    record_ids: list[bytes] = []
    deny_types: list[str] = []
    for permit in permits:
        if (_grantee(permit), _purposes(permit), permit.get("period")) != ((kind, grantee), purposes, period):
            raise invalid("both permits name the same grantee, purposes and period")
        data = permit.get("data")
        if data:
            for item in data:
                ident = item.get("reference", {}).get("identifier", {}) if isinstance(item, dict) else {}
                if item.get("meaning") != "instance" or ident.get("system") != SYS_RECORD:
                    raise invalid(f"provision.data references records by identifier (system {SYS_RECORD})")
                try:
                    record_ids.append(bytes.fromhex(str(ident.get("value"))))
                except ValueError:
                    raise invalid("a record's identifier is its id, 64 hex") from None
        else:
            resource_types = _codes(permit, "class") or [ANY_TYPE]
        for deny in permit.get("provision") or ():
            if not isinstance(deny, dict) or deny.get("type") != "deny":
                raise invalid("a permit's nested provisions are denies by resource type")
            deny_types = sorted(set(deny_types) | set(_codes(deny, "class")))
    body: JSON = {"grantee_kind": kind, "grantee": grantee, "purposes": purposes,
                  "valid_until": _instant_ms(period["end"], "end")}
    if "start" in period:
        body["valid_from"] = _instant_ms(period["start"], "start")
    if resource_types:
        body["resource_types"] = sorted(resource_types)
    if record_ids:
        body["record_ids"] = sorted(record_ids)
    if deny_types:
        body["deny_types"] = deny_types
    return body
