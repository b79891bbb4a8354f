"""AuditEvent search: the ledger's audit trail as FHIR, each event naming its transaction.

`GET /fhir/R4/AuditEvent?patient=&date=&agent=`. A patient's token searches its own trail
(`queries.patient_audit`: every grant, revocation, access decision, break-glass, release and
erasure touching it). A practitioner's or an institution's token (with an AuditEvent scope)
searches its institution's accounting of disclosures (`queries.disclosures`: every granted
access to a record the institution holds, every research release it made), optionally for one
patient. Each entry is `node.app.fhir_export.audit_event`: the transaction's hash is an entity
(`what.identifier`, system urn:medledger:tx), with its height and index.

`date` (with the FHIR prefixes) selects by block time; `agent` by an identity that took part
(the actor, the institution it acted through, the custodian, a grantee or a researcher), given
as its ledger id or `<Type>/<id>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from node.app import queries
from node.app.fhir_export import audit_event
from node.app.state import StateReader
from node.fhir.catalog import LEDGER_TYPES
from node.fhir.ledger import ledger_id
from node.fhir.outcome import FhirError
from node.fhir.principal import Principal
from node.fhir.search import DateCondition, parse_plain, patient_id, searchset

JSON = dict[str, Any]
AGENT_FIELDS = ("actor", "via", "custodian", "grantee", "researcher", "requester_institution", "practitioner")
FOREVER_MS = 2**62
MAX_SCAN = 100_000
"""The most audit entries one search looks through (a limit: narrow the search by patient or date)."""


def _agent(text: str) -> str:
    tail = text.rsplit("/", 1)[-1].lower()
    if ledger_id(tail) is None:
        raise FhirError(400, "invalid_search", "agent is an identity's ledger id (64 hex) or <Type>/<that id>")
    return tail


def trail(state: StateReader, principal: Principal, patients: list[str]) -> list[JSON]:
    """The entries the principal may search: its own trail (a patient), or its institution's disclosures."""
    if principal.role == "patient":
        own = principal.identity.hex()
        if any(p != own for p in patients):
            return []
        return queries.patient_audit(state, principal.identity)
    if principal.role not in ("practitioner", "institution") or principal.institution is None:
        raise FhirError(403, "audit_not_allowed", "a patient searches its own audit trail; practitioners and "
                                                  "institutions their institution's disclosures")
    entries = queries.disclosures(state, principal.institution, 0, FOREVER_MS)
    if patients:
        entries = [e for e in entries if e.get("patient") in patients and all(p == patients[0] for p in patients)]
    return entries


def search(state: StateReader, principal: Principal, query: Sequence[tuple[str, str]], base: str, now_ms: int,
           chain_id: str, *, strict: bool) -> JSON:
    found, values = parse_plain(query, LEDGER_TYPES["AuditEvent"], now_ms, strict=strict)
    patients = [patient_id(v, bare=True) for v in values.get("patient", [])]
    dates = [DateCondition.parse(v) for v in values.get("date", [])]
    agents = [_agent(v) for v in values.get("agent", [])]
    entries = trail(state, principal, patients)
    if len(entries) > MAX_SCAN:
        raise FhirError(413, "too_large", f"over {MAX_SCAN} audit entries to search: narrow by patient or date")
    selected = [e for e in entries
                if all(d.holds(e["time_ms"], e["time_ms"], now_ms) for d in dates)
                and all(any(e.get(name) == agent for name in AGENT_FIELDS) for agent in agents)]
    page = selected[found.offset:found.offset + found.count]
    resources = [audit_event(e, chain_id=chain_id) for e in page]
    return searchset(base, found, [(f"{base}/{r['id']}", r) for r in resources], candidates=len(selected))
