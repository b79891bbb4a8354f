"""The story `medledger demo` plays on a fresh five-institution devnet, as a list of steps.

The devnet's institutions are named by kind (node0 hospital, node1 clinic, node2 pharmacy,
node3 insurer, node4 research centre: `vocabulary.devnet_kinds`). Each step is a `Step`: a name,
a sentence of narration, a function of the shared `DemoContext` that returns a line of detail
(or raises: the step is then not ok, its detail the error), and the names of the steps it
`needs`. `run_steps` plays them in order; a step whose needs did not all succeed is not run and
is reported not ok with the detail "skipped: <step> failed".

The story, in `STORY`:

1. network_started: the five nodes run and answer;
2. patients_registered: three patients register at the hospital (its attestation is the
   treatment relationship its staff need to write their records), keys in DIR/keys/;
3. practitioners_registered: a physician at the hospital and one at the clinic, a pharmacist at
   the pharmacy, a claims officer at the insurer (each attested with their profession by their
   institution) and a researcher at the research centre;
4. records_written: the hospital physician writes an Encounter, an Observation (HbA1c, LOINC),
   a Procedure and a Condition (SNOMED CT) for patient A: encrypted on this side, stored at the
   hospital, announced on the ledger;
5. access_refused: the clinic physician asks for the Observation without consent: denied,
   no_consent;
6. access_allowed: patient A grants the clinic a consent (Observation, treatment); the clinic
   physician's read succeeds and the decrypted JSON is byte for byte what was written;
7. breakglass_read: the clinic physician opens the Condition (outside the consent) in an
   emergency, reason code `unconscious`;
8. breakglass_reviewed: the hospital, the record's custodian, reviews it (justified) and it
   leaves the review queue;
9. research_extract: the research centre registers a study and puts the researcher on it; six
   synthetic participants register at the hospital, which writes their Patient and Condition
   records, and consent to the study; the researcher's extract (k = 5) is released;
10. record_erased: patient A erases the Procedure; a read of it afterwards is refused `erased`.

After access_allowed come the care workflows (docs/care.md):

a. pharmacy_nominated: patient A nominates the pharmacy (a standing permission);
b. prescription_dispensed: the hospital physician prescribes metformin; the pharmacist reads it
   by the nomination (rule standing_permission) and dispenses it; a second dispense is refused
  `already_dispensed`;
c. agreement_signed: the hospital proposes a payer agreement (a Cedar forbid: payment reads by an
  insurer see Claims, Encounters and Procedures only), the insurer co-signs it, it is in force;
d. claim_paid: A names the insurer; the hospital submits a Claim listing the Encounter and the
   Procedure; the claims officer reads the claim and the Encounter under it, is refused the
   HbA1c Observation (not listed), and pays (ClaimResponse);
e. referral_accepted: the hospital physician refers A to the clinic for 30 days with the
   Encounter; A accepts; the clinic physician reads the referral and the Encounter under it;

then breakglass_read, breakglass_reviewed, research_extract and record_erased as above. A step
is one more `Step(...)` in `STORY` with its `needs`; the command, its --json output and the
tests take the list as it is. Helpers the client lacks live here (`_register_batch`,
`_send_all`, `_extract`).

No real person is in the story: the patients are fresh keys, their data made up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.client import ApiError, HealthClient, RecordError, outcome
from node.core.crypto import Identity
from node.devtools.cluster import Cluster, ClusterError
from node.home.keys import load_key_file, write_key_file

MARKER_FILE = "demo.json"  # in the demo's directory: says the devnet there is a demo's
FOREVER_MS = 4_102_444_800_000  # 2100-01-01: the end of the story's consents
STUDY = "GDM-FOLLOWUP-2027"
STUDY_TYPES = ["Patient", "Condition"]
STUDY_K = 5
COHORT = 6  # research participants: one group of six, over the network's k floor of five
READY_S = 60.0
WAIT_S = 60.0


class StepFailed(Exception):
    """A step's outcome was not what the story expected; the message says what happened."""


@dataclass
class DemoContext:
    """What the steps share: the devnet, the identities made so far, the records written."""

    root: Path
    cluster: Cluster
    say: Callable[[str], None] = lambda _: None  # narration within a step (off with --json)
    institutions: dict[str, Identity] = field(default_factory=dict)  # by kind
    nodes: dict[str, Any] = field(default_factory=dict)  # ClusterNode by kind
    patients: dict[str, Identity] = field(default_factory=dict)  # "A", "B", "C"
    practitioners: dict[str, Identity] = field(default_factory=dict)  # "hospital-physician" ...
    records: dict[str, str] = field(default_factory=dict)  # resource type -> record id (patient A's)
    written: dict[str, bytes] = field(default_factory=dict)  # record id -> the JSON written
    facts: dict[str, Any] = field(default_factory=dict)  # what later steps (and the report) use

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    def client(self, kind: str) -> HealthClient:
        return HealthClient(self.nodes[kind].api_url, timeout=WAIT_S, ca_file=self.cluster.ca_file)

    def settle(self) -> None:
        """Wait until every node has the blocks the furthest one has: a step that writes at one
        node and reads at another (the custodian, the coordinator) reads the same ledger."""
        top = max((h for h in self.cluster.heights() if h is not None), default=0)
        try:
            self.cluster.wait_for_height(top, WAIT_S)
        except ClusterError as exc:
            raise StepFailed(str(exc)) from None

    def new_key(self, name: str) -> Identity:
        """A fresh identity, its key written to DIR/keys/<name>.key (mode 0600)."""
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        identity = Identity.generate()
        write_key_file(self.keys_dir / f"{name}.key", identity)
        return identity


StepFunction = Callable[[DemoContext], str]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    run: StepFunction
    needs: tuple[str, ...] = ()
    narration: str = ""


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "seconds": round(self.seconds, 3)}


def check_steps(steps: Sequence[Step]) -> None:
    """Raise ValueError unless names are unique and every step needs only steps before it."""
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            raise ValueError(f"two steps are named {step.name!r}")
        unknown = [n for n in step.needs if n not in seen]
        if unknown:
            raise ValueError(f"step {step.name!r} needs {', '.join(unknown)}, which is not a step before it")
        seen.add(step.name)


def run_steps(steps: Sequence[Step], ctx: Any, *, on_start: Callable[[Step], None] = lambda _: None,
              on_done: Callable[[Step, StepResult], None] = lambda _s, _r: None,
              clock: Callable[[], float] = time.monotonic) -> list[StepResult]:
    """Play `steps` in order on `ctx` (module docstring); every step gets a result."""
    check_steps(steps)
    ok: dict[str, bool] = {}
    results = []
    for step in steps:
        failed = next((n for n in step.needs if not ok[n]), None)
        if failed is not None:
            result = StepResult(step.name, False, f"skipped: {failed} failed")
        else:
            on_start(step)
            start = clock()
            try:
                detail = step.run(ctx)
                result = StepResult(step.name, True, str(detail), clock() - start)
            except Exception as exc:  # a step's failure is its result, whatever it was
                text = " ".join(str(exc).split())[:300] or type(exc).__name__
                result = StepResult(step.name, False, f"{type(exc).__name__}: {text}" if not isinstance(exc, StepFailed) else text,
                                    clock() - start)
        ok[step.name] = result.ok
        results.append(result)
        on_done(step, result)
    return results


# -- helpers the client does not have ----------------------------------------------------------
def _committed(out: dict[str, Any], what: str) -> dict[str, Any]:
    if out.get("status") != "committed":
        raise StepFailed(f"{what}: the ledger answered {out.get('status')}" + (f" ({out['message']})" if out.get("message") else ""))
    return out


def _send_all(client: HealthClient, items: list[tuple[Identity, str, dict[str, Any]]], what: str) -> list[dict[str, Any]]:
    """Submit transactions of distinct senders together and wait for them all to commit."""
    txs = [client.make_tx(sender, tx_type, body) for sender, tx_type, body in items]
    if txs:
        client.submit_many(txs)
    outs = []
    for tx in txs:
        outs.append(_committed(outcome(tx.hash_hex, client.wait(tx.hash_hex, WAIT_S)), what))
    return outs


def _register_batch(client: HealthClient, people: list[Identity], role: str, institution: Identity) -> None:
    """Register several identities of one role under `institution`'s attestation, in one request."""
    from node.app.types.identity import attest

    items = [(p, "identity.register", {"role": role, "institution": institution.public_key,
                                        "attestation": attest(institution, chain_id=client.chain_id, registrant=p.public_key,
                                                              role=role)})
             for p in people]
    _send_all(client, items, f"registering {role}s")


def _ask(client: HealthClient, who: Identity, record_id: str, purpose: str, reason: str = "") -> dict[str, Any]:
    """An access request's outcome: {"status", "rule", "tx_hash"} (status committed = granted)."""
    out = client.request_access(who, record_id, purpose, reason)
    decision = out.get("decision") or {}
    return {"status": out.get("status"), "rule": decision.get("rule") or out.get("status"), "tx_hash": out.get("tx_hash")}


# -- realistic FHIR R4 (made-up people, real code systems) --------------------------------------
def encounter(pid: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
            "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003",
                                  "display": "Encounter for check up"}]}],
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": "2026-11-02T09:10:00Z", "end": "2026-11-02T09:40:00Z"},
            "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "44054006",
                                        "display": "Diabetes mellitus type 2"}]}]}


def observation(pid: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory", "display": "Laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4",
                                 "display": "Hemoglobin A1c/Hemoglobin.total in Blood"}], "text": "HbA1c"},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2026-11-02T09:20:00Z",
            "valueQuantity": {"value": 7.4, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
            "referenceRange": [{"high": {"value": 5.7, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}]}


def procedure(pid: str) -> dict[str, Any]:
    return {"resourceType": "Procedure", "status": "completed",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "36228007",
                                 "display": "Ophthalmic examination and evaluation"}], "text": "Diabetic eye exam"},
            "subject": {"reference": f"Patient/{pid}"},
            "performedDateTime": "2026-11-02T09:30:00Z",
            "outcome": {"text": "No diabetic retinopathy"}}


def condition(pid: str) -> dict[str, Any]:
    return {"resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006",
                                 "display": "Diabetes mellitus type 2"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": "2024-03-15"}


def cohort_patient(pid: str, birth_year: int) -> dict[str, Any]:
    """A research participant's Patient: no name, a made-up address; the ledger id as identifier."""
    return {"resourceType": "Patient",
            "identifier": [{"system": "urn:medledger:identity", "value": pid}],
            "gender": "female", "birthDate": f"{birth_year}-06-01",
            "address": [{"city": "Springfield", "state": "MA", "postalCode": "01103", "country": "US"}]}


def cohort_condition(pid: str) -> dict[str, Any]:
    doc = condition(pid)
    doc["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "11687002",
                               "display": "Gestational diabetes mellitus"}]}
    doc["clinicalStatus"]["coding"][0]["code"] = "resolved"
    doc["onsetDateTime"] = "2021-08-10"
    return doc


def medication_request(pid: str) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975",
                                                      "display": "metformin hydrochloride 500 MG Oral Tablet"}]},
            "subject": {"reference": f"Patient/{pid}"}, "authoredOn": "2026-11-02",
            "dosageInstruction": [{"text": "one tablet twice a day with meals"}],
            "dispenseRequest": {"quantity": {"value": 60, "unit": "tablet"}}}


def medication_dispense(pid: str) -> dict[str, Any]:
    return {"resourceType": "MedicationDispense", "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975",
                                                      "display": "metformin hydrochloride 500 MG Oral Tablet"}]},
            "subject": {"reference": f"Patient/{pid}"}, "quantity": {"value": 60, "unit": "tablet"},
            "whenHandedOver": "2026-11-02T15:10:00Z"}


def claim(pid: str) -> dict[str, Any]:
    return {"resourceType": "Claim", "status": "active", "use": "claim", "created": "2026-11-02",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "patient": {"reference": f"Patient/{pid}"}, "provider": {"display": "the hospital"},
            "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "patient A's coverage"}}],
            "item": [{"sequence": 1, "productOrService": {"coding": [{"system": "http://snomed.info/sct", "code": "36228007",
                                                                      "display": "Ophthalmic examination and evaluation"}]},
                      "net": {"value": 120, "currency": "EUR"}}],
            "total": {"value": 120, "currency": "EUR"}}


def claim_response(pid: str) -> dict[str, Any]:
    return {"resourceType": "ClaimResponse", "status": "active", "use": "claim", "created": "2026-11-03",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "patient": {"reference": f"Patient/{pid}"}, "insurer": {"display": "the insurer"}, "outcome": "complete",
            "payment": {"amount": {"value": 120, "currency": "EUR"}, "date": "2026-11-03",
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ex-paymenttype",
                                             "code": "complete"}]}}}


def referral(pid: str) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}]}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "183515008", "display": "Referral to physician"}]},
            "subject": {"reference": f"Patient/{pid}"}, "authoredOn": "2026-11-02",
            "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "44054006",
                                        "display": "Diabetes mellitus type 2"}]}]}


def _put(ctx: DemoContext, author: Identity, patient: Identity, resource: dict[str, Any], *, at: str = "hospital",
         workflow: dict[str, Any] | None = None) -> str:
    """Write `resource` at the `at` institution's node (its custodian), with its workflow fields."""
    raw = json.dumps(resource, indent=1).encode()
    try:
        out = ctx.client(at).put_record(author, patient.id, raw, workflow=workflow)
    except RecordError as exc:
        raise StepFailed(f"writing a {resource['resourceType']}: {exc}") from None
    _committed(out, f"writing a {resource['resourceType']}")
    ctx.written[out["record_id"]] = raw
    return str(out["record_id"])


# -- the steps ---------------------------------------------------------------------------------
def network_started(ctx: DemoContext) -> str:
    from node.chain.genesis import Genesis

    kinds = {i.id.hex(): i.kind for i in Genesis.load(ctx.cluster.nodes[0].home / "genesis.json").institutions}
    for node in ctx.cluster.nodes:
        kind = kinds.get(node.node_id, f"node{node.index}")
        ctx.nodes[kind] = node
        ctx.institutions[kind] = load_key_file(node.home / "institution.key")
    missing = [k for k in ("hospital", "clinic", "pharmacy", "insurer", "research") if k not in ctx.nodes]
    if missing:
        raise StepFailed(f"the devnet has no {', '.join(missing)}")
    ctx.cluster.start()
    try:
        ctx.cluster.wait_ready(READY_S)
    except ClusterError as exc:
        raise StepFailed(str(exc)) from None
    return f"{len(ctx.cluster.nodes)} institutions answering: " + ", ".join(
        f"{kind} {node.api_url}" for kind, node in ctx.nodes.items())


def patients_registered(ctx: DemoContext) -> str:
    people = {name: ctx.new_key(f"patient-{name.lower()}") for name in ("A", "B", "C")}
    _register_batch(ctx.client("hospital"), list(people.values()), "patient", ctx.institutions["hospital"])
    ctx.patients.update(people)
    return "patients " + ", ".join(f"{n} {p.id[:12]}..." for n, p in people.items()) + f" registered at the hospital; keys in {ctx.keys_dir}"


KIND_NAMES = {"research": "research centre"}
PRACTITIONERS = (  # (name, institution kind, role, profession)
    ("hospital-physician", "hospital", "practitioner", "physician"),
    ("clinic-physician", "clinic", "practitioner", "physician"),
    ("pharmacist", "pharmacy", "practitioner", "pharmacist"),
    ("claims-officer", "insurer", "practitioner", "claims-officer"),
    ("researcher", "research", "researcher", None),
)


def practitioners_registered(ctx: DemoContext) -> str:
    def one(entry: tuple[str, str, str, str | None]) -> tuple[str, Identity]:
        name, kind, role, profession = entry
        ident = ctx.new_key(name)
        out = ctx.client(kind).register(ident, role, institution=ctx.institutions[kind], label=f"Demo {name.replace('-', ' ')}",
                                        profession=profession)
        _committed(out, f"registering the {name}")
        return name, ident

    with ThreadPoolExecutor(len(PRACTITIONERS)) as pool:  # distinct senders: no nonce to share
        ctx.practitioners.update(pool.map(one, PRACTITIONERS))
    return "; ".join(f"{profession or role} at the {KIND_NAMES.get(kind, kind)}" for _, kind, role, profession in PRACTITIONERS)


def records_written(ctx: DemoContext) -> str:
    doctor, patient = ctx.practitioners["hospital-physician"], ctx.patients["A"]
    for make in (encounter, observation, procedure, condition):
        resource = make(patient.id)
        ctx.records[resource["resourceType"]] = _put(ctx, doctor, patient, resource)
    return "for patient A at the hospital: " + ", ".join(f"{t} {rid[:12]}..." for t, rid in ctx.records.items())


def access_refused(ctx: DemoContext) -> str:
    ctx.settle()  # the records were written at the hospital; the clinic asks
    asked = _ask(ctx.client("clinic"), ctx.practitioners["clinic-physician"], ctx.records["Observation"], "treatment")
    if asked["status"] == "committed" or asked["rule"] != "no_consent":
        raise StepFailed(f"expected denied no_consent, got {asked['status']} {asked['rule']}")
    return f"the clinic physician asked for the Observation: denied, {asked['rule']} (tx {asked['tx_hash'][:12]}...)"


def access_allowed(ctx: DemoContext) -> str:
    patient = ctx.patients["A"]
    grant = _committed(ctx.client("hospital").transact(patient, "consent.grant", {
        "grantee_kind": "institution", "grantee": ctx.institutions["clinic"].public_key, "purposes": ["treatment"],
        "resource_types": ["Observation"], "valid_until": FOREVER_MS}), "granting the clinic a consent")
    ctx.facts["consent"] = grant["tx_hash"]
    ctx.settle()
    clinic, doctor, rid = ctx.client("clinic"), ctx.practitioners["clinic-physician"], ctx.records["Observation"]
    asked = _ask(clinic, doctor, rid, "treatment")
    if asked["status"] != "committed":
        raise StepFailed(f"after the consent the request was {asked['status']} {asked['rule']}")
    ctx.settle()  # the custodian serves on the grant it has seen
    plain = clinic.fetch_record(doctor, rid)
    if plain != ctx.written[rid]:
        raise StepFailed("the decrypted Observation differs from what was written")
    return (f"patient A consented (Observation, treatment, consent {grant['tx_hash'][:12]}...); the clinic physician's "
            f"read was granted ({asked['rule']}) and decrypts to the {len(plain)} bytes written")


def pharmacy_nominated(ctx: DemoContext) -> str:
    patient, pharmacy = ctx.patients["A"], ctx.institutions["pharmacy"]
    _committed(ctx.client("hospital").nominate(patient, "pharmacy", pharmacy.id), "nominating the pharmacy")
    return f"patient A nominated the pharmacy ({pharmacy.id[:12]}...): its pharmacists see A's prescriptions, nothing else"


def prescription_dispensed(ctx: DemoContext) -> str:
    patient, doctor, pharmacist = ctx.patients["A"], ctx.practitioners["hospital-physician"], ctx.practitioners["pharmacist"]
    rx = _put(ctx, doctor, patient, medication_request(patient.id))
    ctx.records["MedicationRequest"] = rx
    ctx.settle()
    pharmacy = ctx.client("pharmacy")
    asked = _ask(pharmacy, pharmacist, rx, "treatment")
    if asked["status"] != "committed" or asked["rule"] != "standing_permission":
        raise StepFailed(f"the nominated pharmacy's read was {asked['status']} {asked['rule']}, not granted by the nomination")
    ctx.settle()
    if pharmacy.fetch_record(pharmacist, rx) != ctx.written[rx]:
        raise StepFailed("the pharmacist's copy of the prescription differs from what was written")
    dispense = _put(ctx, pharmacist, patient, medication_dispense(patient.id), at="pharmacy", workflow={"based_on": rx})
    ctx.records["MedicationDispense"] = dispense
    raw = json.dumps(medication_dispense(patient.id)).encode()
    again = pharmacy.put_record(pharmacist, patient.id, raw, workflow={"based_on": rx})
    if again.get("status") != "already_dispensed":
        raise StepFailed(f"a second dispense was {again.get('status')}, not refused already_dispensed")
    return (f"the hospital physician prescribed metformin ({rx[:12]}...); the pharmacist read it by A's nomination "
            f"(standing_permission), dispensed it ({dispense[:12]}...); a second dispense: refused, already_dispensed")


# the payer agreement the hospital and the insurer sign: payment reads by the insurer's staff see
# Claims, Encounters and Procedures, never anything else (docs/policies.md, "The payer minimum necessary")
PAYER_AGREEMENT = "payer-minimum-2027"
PAYER_POLICY = """
forbid (principal, action == Action::"read", resource)
when { context.purpose == "payment" && principal.institution.kind == "insurer" &&
       !(["Claim", "Encounter", "Procedure"].contains(resource.resource_type)) };
"""


def agreement_signed(ctx: DemoContext) -> str:
    from node.app.policies.check import canonical_form, policy_digest

    hospital, insurer = ctx.institutions["hospital"], ctx.institutions["insurer"]
    policy = canonical_form(PAYER_POLICY)
    _committed(ctx.client("hospital").transact(hospital, "agreement.propose", {
        "agreement": PAYER_AGREEMENT, "version": 1, "parties": sorted([hospital.public_key, insurer.public_key]),
        "purposes": ["payment"], "policy": policy}), "proposing the payer agreement")
    ctx.settle()
    _committed(ctx.client("insurer").transact(insurer, "agreement.sign", {
        "agreement": PAYER_AGREEMENT, "version": 1, "digest": policy_digest(PAYER_POLICY)}), "co-signing it")
    ctx.settle()
    found = ctx.client("hospital").get(f"/v1/agreements/{PAYER_AGREEMENT}")
    if found.get("status") != "in_force":
        raise StepFailed(f"the payer agreement is {found.get('status')}, not in force")
    return (f"the hospital proposed the payer agreement {PAYER_AGREEMENT} (payment reads by the insurer: Claims, "
            f"Encounters, Procedures only); the insurer co-signed; in force (digest {found['digest'][:12]}...)")


def claim_paid(ctx: DemoContext) -> str:
    patient, doctor, officer = ctx.patients["A"], ctx.practitioners["hospital-physician"], ctx.practitioners["claims-officer"]
    insurer = ctx.institutions["insurer"]
    _committed(ctx.client("hospital").nominate(patient, "insurer", insurer.id), "naming the insurer")
    covers = [ctx.records["Encounter"], ctx.records["Procedure"]]
    cid = _put(ctx, doctor, patient, claim(patient.id), workflow={"payer": insurer.id, "lists": covers})
    ctx.records["Claim"] = cid
    ctx.settle()
    client = ctx.client("insurer")
    for rid, under in ((cid, None), (covers[0], cid)):
        out = client.request_access(officer, rid, "payment", under=under)
        if out.get("status") != "committed":
            raise StepFailed(f"the claims officer's read of {rid[:12]}... was {out.get('status')}")
    outside = client.request_access(officer, ctx.records["Observation"], "payment", under=cid)
    if outside.get("status") == "committed":
        raise StepFailed("the insurer read the HbA1c result, which the claim does not list")
    paid = _put(ctx, officer, patient, claim_response(patient.id), at="insurer", workflow={"based_on": cid})
    return (f"the hospital claimed EUR 120 from A's insurer for the eye exam ({cid[:12]}...), listing the Encounter and "
            f"the Procedure; the claims officer read the claim and the Encounter, was refused the HbA1c result "
            f"({(outside.get('decision') or {}).get('rule', outside.get('status'))}), and paid ({paid[:12]}...)")


def referral_accepted(ctx: DemoContext) -> str:
    patient, doctor, clinician = ctx.patients["A"], ctx.practitioners["hospital-physician"], ctx.practitioners["clinic-physician"]
    until = int(time.time() * 1000) + 30 * 24 * 3600 * 1000
    rid = _put(ctx, doctor, patient, referral(patient.id),
               workflow={"recipient": ctx.institutions["clinic"].id, "until_ms": until, "lists": [ctx.records["Encounter"]]})
    ctx.records["ServiceRequest"] = rid
    _committed(ctx.client("hospital").accept_request(patient, rid), "accepting the referral")
    ctx.settle()
    clinic = ctx.client("clinic")
    for record, under in ((rid, None), (ctx.records["Encounter"], rid)):
        asked = clinic.request_access(clinician, record, "treatment", under=under)
        rule = (asked.get("decision") or {}).get("rule")
        if asked.get("status") != "committed" or rule != "standing_permission":
            raise StepFailed(f"the clinic's read under the referral was {asked.get('status')} {rule}")
    return (f"the hospital physician referred A to the clinic for 30 days ({rid[:12]}...) with the visit's Encounter; "
            "A accepted; the clinic physician read the referral and the Encounter under it")


def breakglass_read(ctx: DemoContext) -> str:
    clinic, doctor, rid = ctx.client("clinic"), ctx.practitioners["clinic-physician"], ctx.records["Condition"]
    asked = _ask(clinic, doctor, rid, "emergency", "unconscious")
    if asked["status"] != "committed" or asked["rule"] != "breakglass":
        raise StepFailed(f"expected a break-glass grant, got {asked['status']} {asked['rule']}")
    ctx.settle()
    clinic.fetch_record(doctor, rid)
    ctx.facts["breakglass_tx"] = asked["tx_hash"]
    return f"the clinic physician opened the Condition in an emergency (reason unconscious, tx {asked['tx_hash'][:12]}...): flagged for review"


def breakglass_reviewed(ctx: DemoContext) -> str:
    hospital, inst, access = ctx.client("hospital"), ctx.institutions["hospital"], str(ctx.facts["breakglass_tx"])

    def pending() -> set[str]:
        return {str(p.get("request_tx", "")) for p in hospital.breakglass_pending(inst)["pending"]}

    ctx.settle()  # the access was asked at the clinic; the hospital reviews
    if access not in pending():
        raise StepFailed("the break-glass access is not in the hospital's review queue")
    _committed(hospital.transact(inst, "breakglass.review", {"access": bytes.fromhex(access), "outcome": "justified"}),
               "the review")
    if access in pending():
        raise StepFailed("the reviewed access is still in the review queue")
    return "the hospital (the record's custodian) reviewed the break-glass access: justified; the queue is empty of it"


def research_extract(ctx: DemoContext) -> str:
    ctx.settle()
    research, centre = ctx.client("research"), ctx.institutions["research"]
    researcher = ctx.practitioners["researcher"]
    _committed(research.transact(centre, "study.register", {
        "study": STUDY, "title": "Outcomes after gestational diabetes", "ethics_ref": "IRB-DEMO-2026-07",
        "until_ms": FOREVER_MS, "min_k": STUDY_K}), "registering the study")
    _committed(research.transact(centre, "study.add_researcher", {"study": STUDY, "researcher": researcher.public_key}),
               "adding the researcher")
    hospital, doctor = ctx.client("hospital"), ctx.practitioners["hospital-physician"]
    cohort = [ctx.new_key(f"participant-{i + 1}") for i in range(COHORT)]
    _register_batch(hospital, cohort, "patient", ctx.institutions["hospital"])
    for i, person in enumerate(cohort):  # one writer, in order: its nonces rise
        _put(ctx, doctor, person, cohort_patient(person.id, 1984 + i % 3))
        _put(ctx, doctor, person, cohort_condition(person.id))
    _send_all(hospital, [(p, "consent.grant", {"grantee_kind": "study", "grantee": STUDY, "purposes": ["research"],
                                               "resource_types": STUDY_TYPES, "valid_until": FOREVER_MS}) for p in cohort],
              "consenting to the study")
    ctx.settle()  # the consents went in at the hospital; the research centre coordinates
    report = _extract(research, researcher, ctx.nodes["research"].node_id, ctx.root / "extract")
    ctx.facts["extract"] = report
    if report.get("patients_included", 0) < STUDY_K:
        raise StepFailed(f"the extract released {report.get('patients_included')} patients, fewer than k={STUDY_K}")
    return (f"study {STUDY} at the research centre; {COHORT} participants consented; extract released "
            f"{report['patients_included']} patients ({report['resources_released']} resources, k {report['k_reached']}) "
            f"to {ctx.root / 'extract'}")


def _extract(client: HealthClient, researcher: Identity, coordinator_hex: str, out: Path) -> dict[str, Any]:
    """The researcher's signed extract request (as `medledger research extract`), written to `out`."""
    from node.core.encoding import canonical
    from node.research.service import ExtractRequest

    req = ExtractRequest.create(researcher, chain_id=client.chain_id, study=STUDY, types=STUDY_TYPES, k=STUDY_K,
                                coordinator=bytes.fromhex(coordinator_hex), timestamp_ms=time.time_ns() // 1_000_000)
    try:
        doc = json.loads(client._post_msgpack("/v1/research/extract", canonical(req.to_dict())))
    except ApiError as exc:
        raise StepFailed(f"the extract was refused: {exc.code}: {exc.message}") from None
    out.mkdir(parents=True, exist_ok=True)
    for name, text in doc["files"].items():
        if "/" in name or not name.endswith(".ndjson"):
            raise StepFailed(f"the node sent an unexpected file name {name!r}")
        (out / name).write_text(text)
    (out / "report.json").write_text(json.dumps(doc["report"], indent=2, sort_keys=True) + "\n")
    return dict(doc["report"])


def record_erased(ctx: DemoContext) -> str:
    ctx.settle()
    rid = ctx.records["Procedure"]
    _committed(ctx.client("hospital").transact(ctx.patients["A"], "record.erase", {"record": bytes.fromhex(rid)}),
               "erasing the Procedure")
    asked = _ask(ctx.client("hospital"), ctx.practitioners["hospital-physician"], rid, "treatment")
    if asked["status"] == "committed" or asked["rule"] != "erased":
        raise StepFailed(f"a read after the erasure was {asked['status']} {asked['rule']}, not refused erased")
    return f"patient A erased the Procedure {rid[:12]}...; the hospital physician's read after it: denied, erased"


STORY: tuple[Step, ...] = (
    Step("network_started", network_started, (),
         "Five institutions start a permissioned network: a hospital, a clinic, a pharmacy, an insurer, a research centre."),
    Step("patients_registered", patients_registered, ("network_started",),
         "Three patients register at the hospital; each holds their own key."),
    Step("practitioners_registered", practitioners_registered, ("network_started",),
         "Each institution vouches for its staff, with their profession."),
    Step("records_written", records_written, ("patients_registered", "practitioners_registered"),
         "The hospital physician writes patient A's visit: encrypted here, only ciphertext leaves."),
    Step("access_refused", access_refused, ("records_written",),
         "The clinic physician asks for the HbA1c result; the patient has not consented."),
    Step("access_allowed", access_allowed, ("access_refused",),
         "Patient A grants the clinic a consent for observations; the clinic asks again."),
    Step("pharmacy_nominated", pharmacy_nominated, ("patients_registered", "network_started"),
         "Patient A names the pharmacy she uses: a standing permission for her prescriptions."),
    Step("prescription_dispensed", prescription_dispensed, ("pharmacy_nominated", "records_written"),
         "The hospital physician prescribes; the nominated pharmacy sees it and dispenses it, once."),
    Step("agreement_signed", agreement_signed, ("network_started",),
         "The hospital and the insurer sign a payer agreement: the minimum necessary, as a Cedar policy on the ledger."),
    Step("claim_paid", claim_paid, ("records_written",),
         "The hospital bills A's insurer; the insurer sees the claim and only what it lists."),
    Step("referral_accepted", referral_accepted, ("records_written",),
         "The hospital physician refers A to the clinic; once A accepts, the clinic sees the referral."),
    Step("breakglass_read", breakglass_read, ("records_written",),
         "Patient A arrives unconscious at the clinic: the physician breaks the glass for the diagnosis."),
    Step("breakglass_reviewed", breakglass_reviewed, ("breakglass_read",),
         "The hospital, custodian of the record, reviews the emergency access."),
    Step("research_extract", research_extract, ("practitioners_registered",),
         "The research centre runs a study; consenting participants' data leaves de-identified, k-anonymous."),
    Step("record_erased", record_erased, ("records_written",),
         "Patient A erases a record: the custodian deletes it, the ledger keeps only the fact."),
)
