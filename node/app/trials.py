"""Clinical trials on the ledger: what is stored of a trial, of its participants and of its data,
and the messages a participant's pseudonym signs.

A trial is registered by its sponsor institution (`trial.register`) with its registry id, its
ethics approval, its protocol's SHA-256 and version, its sites and investigators, and its
eligibility criteria (node/app/trial_criteria.py). The chain never names a patient in a trial:
a participant is a **pseudonym**, an Ed25519 key the patient derives for this trial alone, and
what it agrees to it signs itself (`consent_message`, `withdraw_message`); a site relays those
signatures. So the chain shows that pseudonym P consented to version v of trial T through site
S, and nobody but S (which invited the patient) can tell who P is.

    trial/<trial>                          the trial: sponsor, registry id, ethics, sites, investigators,
                                           criteria, threshold, versions [{version, protocol_hash,
                                           reconsent, height}], lock
    trial_query/<trial><query>             a feasibility query and the sites' counts
    trial_participant/<trial><pseudonym>   site, consented versions, enrolled, withdrawn
    trial_submission/<trial><pos>          a data submission: pseudonym, id, hash, resource type, site

A submission's `hash` is SHA-256 over a salt and the resource (the salt kept with the encrypted
data at the site), so the chain holds no guessable digest of a value. `trial.lock` freezes the
data set: the Merkle root over every submission's leaf (`submission_leaf`), in chain order.
"""

from __future__ import annotations

import hashlib
from typing import Any

from node.core.encoding import canonical, decode_stored

from node.app import keys
from node.app.state import StateReader
from node.app.stored import read

CONSENT_DOMAIN = "medledger-trial-consent-v1"
WITHDRAW_DOMAIN = "medledger-trial-withdraw-v1"
DEFAULT_THRESHOLD = 10  # counts below it are reported as "fewer than"
MIN_THRESHOLD, MAX_THRESHOLD = 5, 1000
MAX_SITES = 32
MAX_INVESTIGATORS = 64
MAX_VERSIONS = 64
MAX_SUBMISSIONS = 100_000  # per trial: the lock reads them all once
MAX_QUERIES = 32  # feasibility queries per trial: many counts could be differenced to single out a patient


def trial_key(trial: str) -> bytes:
    return keys.TRIAL + keys.study_part(trial)


def participant_key(trial: str, pseudonym: bytes) -> bytes:
    return keys.TRIAL_PARTICIPANT + keys.study_part(trial) + pseudonym


def query_key(trial: str, query: bytes) -> bytes:
    return keys.TRIAL_QUERY + keys.study_part(trial) + query


def submissions_prefix(trial: str) -> bytes:
    return keys.TRIAL_SUBMISSION + keys.study_part(trial)


def load_trial(state: StateReader, trial: str) -> dict[str, Any] | None:
    found = read(state, trial_key(trial))
    return found if isinstance(found, dict) else None


def load_participant(state: StateReader, trial: str, pseudonym: bytes) -> dict[str, Any] | None:
    found = read(state, participant_key(trial, pseudonym))
    return found if isinstance(found, dict) else None


def current_version(trial: dict[str, Any]) -> int:
    return int(trial["versions"][-1]["version"])


def consent_needed(trial: dict[str, Any]) -> int:
    """The lowest protocol version a participant's consent must be to: the latest version that
    asked for re-consent (1 when none did)."""
    return max((int(v["version"]) for v in trial["versions"] if v.get("reconsent")), default=1)


def consent_message(chain_id: str, trial: str, version: int, pseudonym: bytes) -> bytes:
    """What a participant's pseudonym signs to consent to `version` of `trial`."""
    return canonical([CONSENT_DOMAIN, chain_id, trial, version, pseudonym])


def withdraw_message(chain_id: str, trial: str, pseudonym: bytes) -> bytes:
    """What a participant's pseudonym signs to withdraw from `trial`."""
    return canonical([WITHDRAW_DOMAIN, chain_id, trial, pseudonym])


def submission_leaf(submission: bytes, digest: bytes) -> bytes:
    """The Merkle leaf of one submission: its id and its salted hash."""
    return submission + digest


def submission_hash(salt: bytes, resource: bytes) -> bytes:
    """The hash a site anchors for a resource: SHA-256 over the salt and the resource's bytes."""
    return hashlib.sha256(salt + resource).digest()


def submissions(state: StateReader, trial: str) -> list[dict[str, Any]]:
    """A trial's submissions in chain order (at most MAX_SUBMISSIONS)."""
    return [decode_stored(raw) for _, raw in state.items(submissions_prefix(trial))]
