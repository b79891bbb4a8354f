"""Data-sharing policies in Cedar (node/app/policies): a policy that does not parse or type-check
is refused with the engine's message, the example policies of docs/policies.md decide as the
page says, evaluation is deterministic whatever the order of its inputs, and no policy grants
what consent refused unless the patient opted in to it as a standing permission."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.app.policies import bounds, engine
from node.app.policies.check import PolicyRefused, check_policy, require_valid
from node.app.policies.combine import Outcome, combine
from node.app.policies.evaluate import Decision, Policy, _policy_set, evaluate
from node.app.policies.inputs import Entity, Ref, Request, institution, patient, practitioner, record

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples" / "policies"
NOMINATION = Policy("pharmacy-nomination@1", (EXAMPLES / "pharmacy-nomination.cedar").read_text())
PAYER = Policy("payer-minimum-necessary@1", (EXAMPLES / "payer-minimum-necessary.cedar").read_text())
REFERRAL = Policy("referral@1", (EXAMPLES / "referral.cedar").read_text())


# -- check_policy: refused with the engine's message ----------------------------------------------------

def test_a_policy_that_does_not_parse_is_refused_with_the_parsers_message():
    errors = check_policy('permit(principal, action == Action::"read", resource) when { principal.profession == ')
    assert [e.code for e in errors] == ["invalid_policy"]
    assert "unexpected end of input" in errors[0].message
    with pytest.raises(PolicyRefused) as refused:
        require_valid("permit(principal, action, resource")
    assert refused.value.code == "invalid_policy" and "unexpected" in refused.value.message


def test_a_policy_that_does_not_type_check_is_refused_with_the_validators_message():
    misspelt = check_policy('permit(principal, action == Action::"read", resource) when { principal.professon == "nurse" };')
    assert [(e.code, e.statement) for e in misspelt] == [("policy_type_error", "policy0")]
    assert "attribute `professon` on entity type `Practitioner` not found" in misspelt[0].message
    assert "not compatible" in check_policy('permit(principal, action, resource) when { principal.profession == 1 };')[0].message
    optional = check_policy('permit(principal, action, resource) when { resource.patient.insurer == principal.institution };')
    assert "optional attribute `insurer`" in optional[0].message  # `has` first, or the access could err
    assert check_policy('permit(principal, action == Action::"delete", resource);')[0].code == "policy_type_error"


def test_templates_empty_oversized_and_crowded_policies_are_refused():
    assert check_policy("permit(?principal, action, resource);")[0].code == "invalid_policy"
    assert check_policy("// nothing\n")[0].code == "invalid_policy"
    assert check_policy(42)[0].code == "invalid_policy"
    big = "permit(principal, action, resource) when { " + " || ".join(['context.purpose == "x"'] * 600) + " };"
    assert check_policy(big)[0].code == "policy_too_large"
    crowded = "\n".join(["forbid(principal, action, resource);"] * (bounds.MAX_STATEMENTS + 1))
    assert check_policy(crowded)[0].code == "too_many_statements"
    assert check_policy("\n".join(["forbid(principal, action, resource);"] * bounds.MAX_STATEMENTS)) == []


def test_the_example_policies_check():
    assert check_policy(NOMINATION.text) == [] and check_policy(PAYER.text) == [] and check_policy(REFERRAL.text) == []


def test_another_engine_version_refuses_to_check(monkeypatch):
    monkeypatch.setattr("node.app.policies.check.installed_version", lambda: None)
    assert [e.code for e in check_policy(NOMINATION.text)] == ["policy_engine_mismatch"]


# -- the example policies decide as docs/policies.md says -----------------------------------------------

HOSPITAL, PHARMACY, OTHER_PHARMACY, INSURER = "a1" * 32, "b2" * 32, "c3" * 32, "d4" * 32
PATIENT = "e5" * 32


def _world(*extra: Entity) -> list[Entity]:
    return [
        institution(HOSPITAL, "hospital"), institution(PHARMACY, "pharmacy"),
        institution(OTHER_PHARMACY, "pharmacy"), institution(INSURER, "insurer"),
        practitioner("pharmacist-1", "pharmacist", PHARMACY), practitioner("pharmacist-2", "pharmacist", OTHER_PHARMACY),
        practitioner("officer-1", "claims-officer", INSURER), practitioner("physician-1", "physician", HOSPITAL),
        patient(PATIENT, nominated_pharmacy=PHARMACY, insurer=INSURER),
        record("rx", "MedicationRequest", PATIENT, HOSPITAL),
        record("obs", "Observation", PATIENT, HOSPITAL),
        record("enc", "Encounter", PATIENT, HOSPITAL), record("proc", "Procedure", PATIENT, HOSPITAL),
        record("enc-other", "Encounter", PATIENT, HOSPITAL),
        record("claim", "Claim", PATIENT, HOSPITAL, payer=INSURER, lists=["enc", "proc", "obs"]),
        *extra,
    ]


def _ask(who: str, what: str, purpose: str = "treatment", claim: str | None = None) -> Request:
    return Request(principal=Ref("Practitioner", who), action="read", resource=Ref("Record", what), purpose=purpose,
                   now_ms=1_700_000_000_000, claim=Ref("Record", claim) if claim else None)


def _standing(decision: Decision, nominated: bool) -> Outcome:
    """The nomination as a standing permission: no consent, the patient opted in (or not: then
    the nomination is at most an agreement, which cannot grant without consent)."""
    if nominated:
        return combine(consent_granted=False, consent_rule="no_consent", standing=decision)
    return combine(consent_granted=False, consent_rule="no_consent", agreements=decision)


def test_the_nominated_pharmacys_pharmacist_reads_the_prescriptions_and_nothing_else():
    allowed = evaluate([NOMINATION], _ask("pharmacist-1", "rx"), _world())
    assert allowed == Decision(allowed=True, routes=True, permits=("pharmacy-nomination@1#0",))
    assert _standing(allowed, nominated=True) == Outcome(granted=True, rule="standing_permission",
                                                         statements=("pharmacy-nomination@1#0",))
    assert _standing(allowed, nominated=False) == Outcome(granted=False, rule="no_consent")  # not opted in
    for request in (_ask("pharmacist-2", "rx"), _ask("pharmacist-1", "obs"), _ask("physician-1", "rx"),
                    _ask("pharmacist-1", "rx", purpose="payment")):
        decision = evaluate([NOMINATION], request, _world())
        assert not decision.allowed and not _standing(decision, nominated=True).granted
    unnominated = [e for e in _world() if e.uid != Ref("Patient", PATIENT)] + [patient(PATIENT)]
    assert not evaluate([NOMINATION], _ask("pharmacist-1", "rx"), unnominated).allowed


def _payment(what: str, claim: str | None = "claim", *, consent: bool = True) -> Outcome:
    decision = evaluate([PAYER], _ask("officer-1", what, purpose="payment", claim=claim), _world())
    return combine(consent_granted=consent, consent_rule="consent" if consent else "no_consent", agreements=decision)


def test_the_claims_officer_reads_only_the_claim_and_the_encounter_and_procedure_it_lists():
    assert _payment("claim") == Outcome(granted=True, rule="consent", statements=("payer-minimum-necessary@1#0",))
    assert _payment("enc").granted and _payment("proc").granted
    assert _payment("obs") == Outcome(granted=False, rule="policy_not_permitted")  # listed, but not Encounter/Procedure
    assert _payment("enc-other") == Outcome(granted=False, rule="policy_forbids",  # an Encounter the claim omits
                                            statements=("payer-minimum-necessary@1#1",))
    assert _payment("rx", claim=None).rule == "policy_forbids"  # no claim: nothing at all
    assert _payment("enc", consent=False) == Outcome(granted=False, rule="no_consent")  # the policy only routes consent
    other_payer = _world(record("claim-2", "Claim", PATIENT, HOSPITAL, payer=HOSPITAL, lists=["enc"]))
    assert not evaluate([PAYER], _ask("officer-1", "enc", "payment", "claim-2"), other_payer).allowed


def test_the_referred_clinics_physicians_read_the_referral_and_its_summary_until_it_ends():
    clinic = "f6" * 32
    world = _world(institution(clinic, "clinic"), practitioner("clinician-1", "physician", clinic),
                   practitioner("nurse-1", "nurse", clinic), record("summary", "Composition", PATIENT, HOSPITAL),
                   record("referral", "ServiceRequest", PATIENT, HOSPITAL, recipient=clinic, until_ms=1_000,
                          lists=["summary"]),
                   record("pending", "ServiceRequest", PATIENT, HOSPITAL, until_ms=1_000, lists=["summary"]))

    def reads(who: str, what: str, referral: str = "referral", at: int = 500) -> bool:
        request = Request(principal=Ref("Practitioner", who), action="read", resource=Ref("Record", what),
                          purpose="treatment", now_ms=at, referral=Ref("Record", referral))
        return evaluate([REFERRAL], request, world).allowed

    assert reads("clinician-1", "summary") and reads("clinician-1", "referral") and reads("clinician-1", "summary", at=1_000)
    assert not reads("clinician-1", "summary", at=1_001)  # the referral ended
    assert not reads("clinician-1", "obs")  # not listed
    assert not reads("nurse-1", "summary") and not reads("physician-1", "summary")  # not a physician of the clinic
    assert not reads("clinician-1", "summary", referral="pending")  # not accepted yet: no recipient


def test_with_no_policy_in_force_consent_alone_decides():
    nothing = evaluate([], _ask("physician-1", "obs"), _world())
    assert nothing == Decision(allowed=False)
    assert combine(consent_granted=True, consent_rule="consent").granted
    assert combine(consent_granted=True, consent_rule="consent", agreements=nothing).granted
    assert not combine(consent_granted=False, consent_rule="no_consent", agreements=nothing, standing=nothing).granted
    # an agreement of forbids only narrows: what it does not forbid, consent still allows
    only_forbids = evaluate([Policy("no-research@1", 'forbid(principal, action, resource) when { context.purpose == "research" };')],
                            _ask("physician-1", "obs"), _world())
    assert not only_forbids.routes
    assert combine(consent_granted=True, consent_rule="consent", agreements=only_forbids).granted
    # an agreement's forbid applies to a standing permission too
    standing = evaluate([NOMINATION], _ask("pharmacist-1", "rx"), _world())
    veto = evaluate([Policy("no-pharmacists@1", 'forbid(principal, action, resource) when { principal.profession == "pharmacist" };')],
                    _ask("pharmacist-1", "rx"), _world())
    assert combine(consent_granted=False, consent_rule="no_consent", agreements=veto, standing=standing) == \
        Outcome(granted=False, rule="policy_forbids", statements=("no-pharmacists@1#0",))


# -- bounded, canonical inputs ------------------------------------------------------------------------------

def test_inputs_over_the_bounds_or_off_the_schema_are_refused():
    request = _ask("pharmacist-1", "rx")
    many = [Policy(f"p{i}", "forbid(principal, action, resource);") for i in range(bounds.MAX_POLICIES + 1)]
    with pytest.raises(PolicyRefused, match="over the limit") as refused:
        evaluate(many, request, _world())
    assert refused.value.code == "too_many_policies"
    crowd = _world(*[record(f"r{i}", "Observation", PATIENT, HOSPITAL) for i in range(bounds.MAX_ENTITIES)])
    with pytest.raises(PolicyRefused) as refused:
        evaluate([NOMINATION], request, crowd)
    assert refused.value.code == "too_many_entities"
    with pytest.raises(PolicyRefused, match="not among the entities"):
        evaluate([NOMINATION], _ask("nobody", "rx"), _world())
    with pytest.raises(PolicyRefused, match="share an id"):
        evaluate([NOMINATION, Policy(NOMINATION.id, PAYER.text)], request, _world())
    with pytest.raises(PolicyRefused, match="type-check|not found|attribute") as refused:
        evaluate([Policy("bad", 'permit(principal, action, resource) when { principal.x == "y" };')], request, _world())
    assert refused.value.code == "policy_type_error"
    with pytest.raises(PolicyRefused, match="no floats"):
        Entity.of(Ref("Institution", "i"), {"kind": 0.5})
    with pytest.raises(PolicyRefused, match="do not fit the schema"):
        evaluate([NOMINATION], request, _world(Entity.of(Ref("Institution", "x"), {"kind": 3})))
    with pytest.raises(PolicyRefused, match="unknown entity type"):
        Ref("Hospital", "x")


def test_another_engine_version_refuses_to_evaluate(monkeypatch):
    monkeypatch.setattr(engine, "installed_version", lambda: "4.8.7")
    with pytest.raises(engine.EngineMismatch) as refused:
        evaluate([NOMINATION], _ask("pharmacist-1", "rx"), _world())
    assert refused.value.code == "policy_engine_mismatch" and "4.12.2" in refused.value.message


def test_the_pinned_engine_is_the_installed_one():
    assert engine.installed_version() == engine.ENGINE_VERSION
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert f'"cedarpy=={engine.ENGINE_VERSION}"' in pyproject


# -- properties: generated policies over generated states ----------------------------------------------------

KINDS = ("hospital", "pharmacy", "insurer")
PROFESSIONS = ("physician", "pharmacist", "claims-officer")
TYPES = ("MedicationRequest", "Encounter", "Claim")
PURPOSES = ("treatment", "payment")
INSTITUTIONS = ("i0", "i1", "i2")

ATOMS = st.one_of(
    st.sampled_from(PROFESSIONS).map(lambda p: f'principal.profession == "{p}"'),
    st.sampled_from(TYPES).map(lambda t: f'resource.resource_type == "{t}"'),
    st.sampled_from(PURPOSES).map(lambda p: f'context.purpose == "{p}"'),
    st.sampled_from(KINDS).map(lambda k: f'principal.institution.kind == "{k}"'),
    st.sampled_from(INSTITUTIONS).map(lambda i: f'principal in Institution::"{i}"'),
    st.just("principal.institution == resource.custodian"),
    st.just("resource.patient has nominated_pharmacy && principal.institution == resource.patient.nominated_pharmacy"),
    st.integers(0, 20).map(lambda n: f"context.now_ms < {n}"),
    st.just("true"),
)
CONDITION = st.recursive(ATOMS, lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from(("&&", "||")), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    inner.map(lambda c: f"!({c})"),
), max_leaves=4)
STATEMENT = st.builds(
    lambda effect, action, condition: f"{effect}(principal, {action}, resource) when {{ {condition} }};",
    st.sampled_from(("permit", "permit", "forbid")),
    st.sampled_from(("action", 'action == Action::"read"', 'action in [Action::"read", Action::"write"]')),
    CONDITION,
)
POLICY_TEXT = st.lists(STATEMENT, min_size=1, max_size=3).map("\n".join)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Policy], Request, list[Entity]]:
    texts = draw(st.lists(POLICY_TEXT, min_size=0, max_size=5))
    policies = [Policy(f"ag{n}@{draw(st.integers(1, 3))}", text) for n, text in enumerate(texts)]
    entities = [institution(i, draw(st.sampled_from(KINDS))) for i in INSTITUTIONS]
    entities += [practitioner(f"pr{n}", draw(st.sampled_from(PROFESSIONS)), draw(st.sampled_from(INSTITUTIONS)))
                 for n in range(3)]
    entities.append(patient("pt", nominated_pharmacy=draw(st.sampled_from((None, *INSTITUTIONS)))))
    entities += [record(f"rec{n}", draw(st.sampled_from(TYPES)), "pt", draw(st.sampled_from(INSTITUTIONS)))
                 for n in range(3)]
    request = Request(principal=Ref("Practitioner", f"pr{draw(st.integers(0, 2))}"),
                      action=draw(st.sampled_from(("read", "write"))),
                      resource=Ref("Record", f"rec{draw(st.integers(0, 2))}"),
                      purpose=draw(st.sampled_from(PURPOSES)), now_ms=draw(st.integers(0, 20)))
    return policies, request, entities


PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(worlds(), st.randoms(use_true_random=False))
def test_two_validators_agree_whatever_the_order_of_policies_and_entities(world, rng):
    policies, request, entities = world
    first = evaluate(policies, request, entities)
    _policy_set.cache_clear()  # the second validator parses the policies afresh
    shuffled_policies, shuffled_entities = list(policies), list(entities)
    rng.shuffle(shuffled_policies)
    rng.shuffle(shuffled_entities)
    assert evaluate(shuffled_policies, request, shuffled_entities) == first
    assert evaluate(policies, request, entities) == first


@PROPERTY
@given(worlds(), POLICY_TEXT, st.booleans(), st.lists(st.integers(0, 4), max_size=3))
def test_adding_a_policy_never_grants_what_consent_refused(world, extra_text, consent, opted):
    policies, request, entities = world
    chosen = {f"ag{n}" for n in opted}
    standing_policies = [p for p in policies if p.id.partition("@")[0] in chosen]  # what the patient opted in to
    agreements = [p for p in policies if p not in standing_policies]
    extra = Policy("extra@1", extra_text)
    standing = evaluate(standing_policies, request, entities) if standing_policies else None

    def outcome(agreement_set: list[Policy]) -> Outcome:
        return combine(consent_granted=consent, consent_rule="consent" if consent else "no_consent",
                       agreements=evaluate(agreement_set, request, entities) if agreement_set else None,
                       standing=standing)

    before, after = outcome(agreements), outcome([*agreements, extra])
    if not consent:
        # only a standing permission the patient opted in to grants without consent; `extra` is not one
        assert not (after.granted and not before.granted)
        assert not combine(consent_granted=False, consent_rule="no_consent",
                           agreements=evaluate([*policies, extra], request, entities)).granted
    if after.granted and after.rule == "standing_permission":
        assert standing is not None and set(after.statements) <= set(standing.permits)
    if after.granted:
        assert consent or after.rule == "standing_permission"


# -- the canonical form: what is stored and hashed ------------------------------------------------------------

def test_the_canonical_form_drops_layout_comments_and_annotations_and_decides_alike():
    from node.app.policies.check import canonical_form, policy_digest

    plain = 'permit(principal,action,resource)when{context.purpose=="treatment"};'
    dressed = '// agreed with the pharmacy\n@id("free text here")\npermit (principal, action, resource)\n' \
              'when { context.purpose == "treatment" };\n'
    assert canonical_form(plain) == canonical_form(dressed) and "free text" not in canonical_form(dressed)
    assert policy_digest(plain) == policy_digest(dressed) != policy_digest(plain.replace("treatment", "payment"))
    stored = Policy(PAYER.id, canonical_form(PAYER.text))
    for what, claim in (("enc", "claim"), ("enc-other", "claim"), ("obs", "claim"), ("rx", None)):
        request = _ask("officer-1", what, "payment", claim)
        assert evaluate([stored], request, _world()) == evaluate([PAYER], request, _world())
    with pytest.raises(PolicyRefused) as refused:
        canonical_form("permit(principal, action, resource) when { principal.nope };")
    assert refused.value.code == "policy_type_error"
    with pytest.raises(PolicyRefused):
        evaluate([Policy("x", '{"statements": [{"effect": "permit"}]}')], _ask("officer-1", "enc"), _world())


# -- two processes, two hash seeds: the same decisions -------------------------------------------------------

SEEDED_WORLDS = '''
import json, random, sys
from node.app.policies.evaluate import Policy, evaluate
from node.app.policies.inputs import Ref, Request, institution, patient, practitioner, record
rng = random.Random(19)
out = []
for n in range(40):
    atoms = ['principal.profession == "pharmacist"', 'resource.resource_type == "Claim"', 'context.purpose == "payment"',
             'principal.institution == resource.custodian', 'principal in Institution::"i1"', "context.now_ms < 10"]
    texts = [f"{rng.choice(['permit', 'forbid'])}(principal, action, resource) when {{ {' && '.join(rng.sample(atoms, 2))} }};"
             for _ in range(rng.randint(1, 6))]
    policies = [Policy(f"ag{k}@1", t) for k, t in enumerate(texts)]
    entities = [institution(i, rng.choice(["hospital", "pharmacy"])) for i in ("i0", "i1")]
    entities += [practitioner(f"p{k}", rng.choice(["pharmacist", "physician"]), rng.choice(["i0", "i1"])) for k in range(2)]
    entities += [patient("pt"), *(record(f"r{k}", rng.choice(["Claim", "Encounter"]), "pt", rng.choice(["i0", "i1"]))
                                  for k in range(2))]
    rng.shuffle(policies)
    rng.shuffle(entities)
    request = Request(principal=Ref("Practitioner", f"p{rng.randint(0, 1)}"), action="read",
                      resource=Ref("Record", f"r{rng.randint(0, 1)}"), purpose=rng.choice(["treatment", "payment"]),
                      now_ms=rng.randint(0, 20))
    out.append(evaluate(policies, request, entities).to_json())
json.dump(out, sys.stdout, sort_keys=True)
'''


def test_two_processes_with_different_hash_seeds_decide_alike():
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", SEEDED_WORLDS], cwd=root, env=env, capture_output=True, text=True,
                              timeout=120, check=True)
        runs.append(done.stdout)
    assert runs[0] == runs[1]
    decisions = __import__("json").loads(runs[0])
    assert len(decisions) == 40 and {d["allowed"] for d in decisions} == {True, False}
