"""The layout of the application state: every key family, in one place.

Ids are fixed-width bytes (32-byte identity keys, record ids and transaction hashes), so a key
that concatenates them needs no separator. Positions are (height:8, index:4) big-endian, so a
family keyed by position iterates in block order, oldest first. A study id is a short ASCII
string and appears length-prefixed (`study_part`), so one study's keys never prefix another's.
A record's value is the canonical msgpack encoding of a map; an index entry (`-> x` below)
holds the raw 32-byte id it points to.

    nonce/<sender>                                   last nonce used (executor)
    meta/validators                                  [validator ids] of the genesis (governance)
    identity/<id>                                    role, label, institution, attested_by, height
    guardian/<patient>                               the patient's guardian
    guardian_of/<guardian><patient>                  reverse index
    optout/<patient>                                 the patient opted out of break-glass
    record/<record>                                  record metadata (and its erasure)
    patient_record/<patient><pos>                    -> record id
    patient_custodian/<patient><custodian>           the custodian holds (or held) a record of the patient
    version/<first record><version:4>                -> record id of version 2, 3, ... of a logical record
    version_latest/<first record>                    -> record id of its latest version (absent: version 1)
    erasure/<custodian><pos>                         -> record id (the custodian's deletion list)
    consent/<consent>                                a consent rule (id = granting tx hash)
    consent_grantee/<patient><grantee><pos>          -> consent id (access decisions)
    patient_consent/<patient><pos>                   -> consent id (listing)
    study_consent/<study><pos>                       -> consent id (research extracts)
    access/<request tx>                              an access decision
    grant/<requester><record><pos>                   -> request tx (granted decisions)
    breakglass_pending/<institution><pos>            -> request tx awaiting review
    breakglass_by/<practitioner><pos>                a break-glass grant the practitioner got (limits, revocation)
    breakglass_for/<patient><pos>                    a break-glass grant on the patient's records (limits)
    breakglass_suspended/<practitioner>              the practitioner may not use break-glass until a time
    audit/<patient><pos><seq:2>                      a patient's audit entry
    disclosure/<institution><pos><seq:2>             an institution's disclosure entry
    study/<study>                                    a study
    study_researcher/<study><researcher>             researcher on a study
    researcher_study/<researcher><study>             reverse index
    release/<release tx>                             a research release
    meta/validator_sets                              [[effective height, [validator ids]], ...] (validator_sets;
                                                     absent until the first change: the genesis set from height 1)
    validator/<id>                                   a validator's name, address, api, since (and until)
    validator_proposal/<kind:1><target>              a pending validator.add (a) or validator.remove (r) and its approvals
    admission/<candidate>                            a governance admission and its approvals
    upgrade/<height:8>                               the protocol version scheduled from that height on
    upgrade_proposal/<height:8><version:4>           a proposed upgrade and its approvals
    agreement/<agreement><version:4>                 a data-sharing agreement's version (id length-prefixed)
    agreement_latest/<agreement>                     <version:4> of its latest proposal
    agreement_current/<agreement>                    <version:4> of its version in force (absent: none)
    agreement_in_force/<institution><agreement>      <version:4>: the version in force naming the institution
    workflow/<record>                                an order's workflow state: status, acceptance (node/app/care.py)
    inbox/<institution><pos>                         -> record id addressed to the institution (care.py)
    standing/<patient>                               the patient's standing permissions: nominated pharmacy, insurer
    referral_to/<institution><patient><record>       an accepted referral's end (treatment basis "referral")
    screening/<institution><patient>                 the patient lets the institution screen it for trials
    trial/<trial>                                    a clinical trial (node/app/trials.py; id length-prefixed)
    trial_query/<trial><query>                       a feasibility query and the sites' counts
    trial_participant/<trial><pseudonym>             a participant: site, consented versions, enrolled, withdrawn
    trial_submission/<trial><pos>                    a data submission's anchor
"""

from __future__ import annotations

NONCE = b"nonce/"
VALIDATORS = b"meta/validators"
IDENTITY = b"identity/"
GUARDIAN = b"guardian/"
GUARDIAN_OF = b"guardian_of/"
OPTOUT = b"optout/"
RECORD = b"record/"
PATIENT_RECORD = b"patient_record/"
PATIENT_CUSTODIAN = b"patient_custodian/"
ERASURE = b"erasure/"
VERSION = b"version/"
VERSION_LATEST = b"version_latest/"
CONSENT = b"consent/"
CONSENT_GRANTEE = b"consent_grantee/"
PATIENT_CONSENT = b"patient_consent/"
STUDY_CONSENT = b"study_consent/"
ACCESS = b"access/"
GRANT = b"grant/"
BREAKGLASS_PENDING = b"breakglass_pending/"
BREAKGLASS_BY = b"breakglass_by/"
BREAKGLASS_FOR = b"breakglass_for/"
BREAKGLASS_SUSPENDED = b"breakglass_suspended/"
AUDIT = b"audit/"
DISCLOSURE = b"disclosure/"
STUDY = b"study/"
STUDY_RESEARCHER = b"study_researcher/"
RESEARCHER_STUDY = b"researcher_study/"
RELEASE = b"release/"
VALIDATOR_SETS = b"meta/validator_sets"
VALIDATOR = b"validator/"
VALIDATOR_PROPOSAL = b"validator_proposal/"
ADMISSION = b"admission/"
UPGRADE = b"upgrade/"
UPGRADE_PROPOSAL = b"upgrade_proposal/"
AGREEMENT = b"agreement/"
AGREEMENT_LATEST = b"agreement_latest/"
AGREEMENT_CURRENT = b"agreement_current/"
AGREEMENT_IN_FORCE = b"agreement_in_force/"
WORKFLOW = b"workflow/"
INBOX = b"inbox/"
STANDING = b"standing/"
REFERRAL_TO = b"referral_to/"
TRIAL = b"trial/"
SCREENING = b"screening/"
TRIAL_QUERY = b"trial_query/"
TRIAL_PARTICIPANT = b"trial_participant/"
TRIAL_SUBMISSION = b"trial_submission/"

POSITION_SIZE = 12  # height:8 + index:4

GRANTEE_KINDS = {"practitioner": b"p", "institution": b"i", "study": b"s"}


def position(height: int, index: int) -> bytes:
    """A transaction's place in the chain as ordered bytes."""
    return height.to_bytes(8, "big") + index.to_bytes(4, "big")


def study_part(study_id: str) -> bytes:
    """A study id inside a key: one length byte, then its ASCII bytes."""
    raw = study_id.encode("ascii")
    return bytes([len(raw)]) + raw


def grantee_part(kind: str, grantee: bytes | str) -> bytes:
    """A consent's grantee inside a key: a kind byte, then the id (a study's length-prefixed)."""
    tag = GRANTEE_KINDS[kind]
    if kind == "study":
        assert isinstance(grantee, str)
        return tag + study_part(grantee)
    assert isinstance(grantee, bytes)
    return tag + grantee


def identity(ident: bytes) -> bytes:
    return IDENTITY + ident


def record(record_id: bytes) -> bytes:
    return RECORD + record_id


def consent(consent_id: bytes) -> bytes:
    return CONSENT + consent_id


def access(request_tx: bytes) -> bytes:
    return ACCESS + request_tx


def study(study_id: str) -> bytes:
    return STUDY + study_part(study_id)


def agreement(agreement_id: str, version: int) -> bytes:
    """A data-sharing agreement's version: the id length-prefixed (as a study's), then 4 bytes."""
    return AGREEMENT + study_part(agreement_id) + version.to_bytes(4, "big")
