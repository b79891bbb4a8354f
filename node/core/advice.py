"""What to do about a refusal: one sentence per error code the ledger, the API or the client
can return, for the CLI (and any client) to print after the code.

A bare code (`invalid_period`, `role_not_allowed`) tells a new user that something failed, not
how to succeed. `advice(code)` gives the next step. tests/unit/test_advice.py collects every code
the sources can produce and fails when one has no sentence here, so a new code cannot ship
without its advice.
"""

from __future__ import annotations

ADVICE: dict[str, str] = {
    # -- transactions: shape and admission ---------------------------------------------------------
    "malformed_tx": "The transaction could not be decoded; use the medledger CLI or node.client to build it.",
    "malformed_msgpack": "The request body is not valid msgpack; use the medledger CLI or node.client to build it.",
    "malformed_request": "The request is not well formed; use the medledger CLI or node.client to build it.",
    "invalid_body": "A field of the request is missing or of the wrong type; check the options against `--help`.",
    "wrong_chain": "The transaction was signed for another network; point --node at a node of the right network.",
    "unknown_type": "This node does not know that transaction type; upgrade the client or the node.",
    "tx_too_large": "The transaction is over the size limit; send less in one transaction.",
    "too_many_txs": "Too many transactions in one request; send them in smaller batches.",
    "bad_signature": "The signature does not verify; check that the key file is the identity you mean and not damaged.",
    "nonce_replayed": "Another transaction of this key took that nonce; run the command again (it picks a fresh one).",
    "busy": "The node is busy (its mempool or queue is full); retry in a few seconds.",
    "rate_limited": "Too many requests; wait a few seconds and retry.",
    "not_registered": "This key is not registered on the ledger; register it first with `medledger identity register`.",
    # -- identities and roles -------------------------------------------------------------------------
    "already_registered": "This key is already registered; use it as it is (`medledger keys show` prints its id).",
    "invalid_role": "Choose one of the roles listed by `medledger identity register --help`.",
    "role_not_allowed": "This key's role may not do that (e.g. only a patient grants consent, only a practitioner "
                        "writes records); use the key of the right identity.",
    "attestation_required": "Practitioners and researchers need their institution's attestation: add --institution-key "
                            "devnet/node<N>/institution.key.",
    "bad_attestation": "The institution's attestation does not match; pass the key of a registered institution with "
                       "--institution-key.",
    "unknown_institution": "That id is not a registered institution; find one with `medledger keys show "
                           "devnet/node<N>/institution.key` or `medledger status`.",
    "unknown_identity": "No identity with that id is registered; check the id (`medledger keys show KEY`) or register it.",
    "not_a_validator": "Only a validator's institution key may vote on admissions; use devnet/node<N>/institution.key.",
    "already_approved": "This validator already approved that admission; other validators must approve it too.",
    "name_mismatch": "Every approval must give the same --name for the institution; use the name the first approval gave.",
    "kind_mismatch": "Every approval must give the same --kind for the institution; use the kind the first approval "
                     "gave (`medledger devnet ids` or GET /v1/identities/<id> once admitted).",
    "invalid_kind": "An institution's --kind is one of hospital, clinic, pharmacy, insurer, lab, research.",
    "invalid_profession": "A practitioner's --profession is one of physician, nurse, pharmacist, claims-officer, "
                          "lab-technician, administrator (and only practitioners take one).",
    "upgrade_too_soon": "Schedule the upgrade further ahead: at least 5 blocks after the current height, better far "
                        "more, so operators can install the new binary (`medledger status` shows the height).",
    "upgrade_conflict": "Another version is scheduled at or after that height; see `GET /v1/upgrades` and approve that "
                        "schedule or choose another height.",
    "upgrade_not_newer": "The version must be above the one in effect at that height; see `GET /v1/upgrades`.",
    "already_scheduled": "That upgrade is scheduled already; nothing more to approve (`medledger node upgrade-check`).",
    # -- patients, guardians --------------------------------------------------------------------------
    "unknown_patient": "That id is not a registered patient; check --patient (the id `medledger keys show` prints).",
    "unknown_guardian": "The guardian must be a registered identity; register it first.",
    "not_guardian": "This key is not the patient's guardian; use the patient's key or set a guardian with "
                    "`medledger patient guardian`.",
    "no_guardian": "The patient has no guardian to clear.",
    # -- records ---------------------------------------------------------------------------------------
    "unknown_record": "No record with that id; copy the id `medledger record put` printed or `medledger record list` shows.",
    "record_exists": "A record with that id exists already; write it again with `medledger record put` (a fresh id).",
    "not_your_record": "Only the record's patient (or guardian) may do that; use the patient's key.",
    "already_erased": "The record is erased already; nothing more to do.",
    "not_custodian": "This node is not the record's custodian; send the request to the custodian institution's node.",
    "held_elsewhere": "A patient reads its own records at their custodian's node: get a token there and read it there "
                      "(the record's `custodian` on the ledger names the institution).",
    "not_custodian_staff": "Only the custodian institution (or its staff) may do that; use that institution's key.",
    "custodian_unknown": "The record's custodian is not known to this node; ask the custodian's node directly.",
    "custodian_unreachable": "The record's custodian node cannot be reached; retry later or ask it directly with --node.",
    "patient_not_held": "This node holds no data for that patient; use the node of the institution that wrote the record.",
    "invalid_fhir": "The file is not a valid FHIR R4 resource; fix the fields named in the message (see docs/examples/).",
    "invalid_resource_type": "Use a FHIR R4 resource type name (e.g. Observation, Condition), spelt as the message suggests.",
    "record_too_large": "The record is over the custodian's size limit; store a smaller resource.",
    "bad_hash": "The data does not match the hash announced on the ledger; upload it again.",
    "hash_mismatch": "The data does not match the hash on the ledger; do not trust it, and tell the custodian.",
    "bad_answer": "The custodian's answer could not be checked; retry, or ask another node of the network.",
    "cannot_decrypt": "The record's key was not wrapped for this key; read it with the key the access was granted to.",
    "record_not_patients": "Every --records id must be a record of this patient; check them with `medledger record list`.",
    # -- consents, access --------------------------------------------------------------------------------
    "invalid_purpose": "Give purposes from: treatment, payment, operations, research, emergency (a study consent: research).",
    "invalid_period": "Give an --until date in the future (and --from before --until), as YYYY-MM-DD.",
    "empty_scope": "Say what the consent covers: --types (\"*\" for all) or --records.",
    "unknown_grantee": "--to must be a registered practitioner or institution id, or study:ID.",
    "unknown_consent": "No consent with that id; copy it from `medledger consent list`.",
    "not_your_consent": "Only the patient who granted the consent (or the guardian) may revoke it; use that key.",
    "already_revoked": "That consent is revoked already; nothing more to do.",
    "purpose_not_allowed": "Your role may not ask for that purpose (a researcher asks for research only); choose another --purpose.",
    "reason_required": "An emergency access needs --reason (a short code or phrase, no clinical details).",
    "unknown_access": "No access request with that transaction hash; copy it from `medledger audit breakglass`.",
    "unknown_access_request": "No access request with that transaction hash; copy it from the output of `medledger record get`.",
    "not_breakglass": "That access was not a break-glass access; only break-glass accesses are reviewed.",
    "already_reviewed": "That break-glass access was reviewed already.",
    # access decisions (the rule of a denial)
    "erased": "The record was erased by its patient; it cannot be read any more.",
    "no_consent": "The patient has not consented to you; ask the patient to run `medledger consent grant --to <your id "
                  "or your institution's id>`.",
    "out_of_scope": "The patient's consent does not cover this record's type; ask for a consent with that --types.",
    "type_excluded": "The patient's consent excludes this record's type (--deny-types); only the patient can change that.",
    "purpose_not_consented": "The consent is for other purposes; ask with a purpose it covers, or ask the patient for this one.",
    "consent_not_yet_valid": "The consent starts later (--from); ask again once it is valid.",
    "consent_expired": "The consent has expired; ask the patient for a new one.",
    "consent_revoked": "The patient revoked the consent; ask the patient for a new one.",
    "breakglass_not_allowed": "Only a registered practitioner may use purpose emergency.",
    "breakglass_opted_out": "The patient opted out of break-glass access; only a consent of the patient opens this record.",
    # -- studies, research -----------------------------------------------------------------------------
    "unknown_study": "No study with that id; register it with `medledger study register` or check --study.",
    "study_exists": "A study with that id is registered already; choose another --id.",
    "study_ended": "The study has ended (its --until date passed); register a new study.",
    "invalid_study_id": "A study id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
    "not_study_owner": "Only the institution that registered the study may do that; use its key.",
    "not_a_researcher": "That id is not a registered researcher; register it with --role researcher and --institution-key.",
    "already_added": "That researcher is on the study already.",
    "researcher_not_on_study": "Your key is not on that study; ask the study's institution to run `medledger study "
                               "add-researcher`.",
    "patient_not_consenting": "That patient has not consented to the study; only consenting patients can be included.",
    # -- signed reads, HTTP ---------------------------------------------------------------------------
    "signature_required": "This read needs a signature: pass --key with the reader's key file.",
    "stale_request": "The signed request is too old or too far in the future; check this machine's clock and retry.",
    "replayed_request": "That signed request was used already; run the command again (it signs a fresh one).",
    "forbidden": "This key may not read that; use the key of the patient, a guardian, the custodian or a grant holder.",
    "not_found": "No such thing on this node; check the id or the URL (--node).",
    "unknown_snapshot": "This node holds no such snapshot or chunk (it keeps the newest two); list them again "
                        "with GET /v1/snapshots, or join from another node.",
    "bad_index": "The chunk index must be a non-negative integer below the snapshot's chunk count.",
    "unknown_tx": "No transaction with that hash on this node (yet); check the hash, or wait for it to commit.",
    "unknown_block": "No block at that height yet; `medledger status` shows the current height.",
    "method_not_allowed": "That endpoint does not take this method; see docs/api.md.",
    "body_too_large": "The request body is over the node's limit; send less at once.",
    "unreadable_body": "The request body could not be read; send it again.",
    "incomplete_body": "The connection closed before the body arrived; send it again.",
    "unsupported_content_encoding": "Send the body uncompressed (no Content-Encoding).",
    "unsupported_media_type": "Send the body with the Content-Type the endpoint expects (see docs/api.md).",
    "expectation_failed": "The node refused the Expect header; send the request without it.",
    "already_committed": "That transaction is on the chain already; nothing more to do.",
    "mempool_full": "The node's queue of pending transactions is full; retry in a few seconds.",
    "denied": "The ledger denied the access; the rule it gives says why (ask the patient for a consent that covers it).",
    "not_a_practitioner": "Only a registered practitioner may write records; register the key with --role practitioner.",
    "wrong_custodian": "Write the record at the node of the institution you are registered under (--node).",
    "no_grant": "Ask for access first (`medledger record get` does it) and fetch within the grant's window.",
    "key_unavailable": "The custodian cannot open the record's key; tell the custodian institution (see its node.log).",
    "not_an_institution": "This key is not a registered institution's; use devnet/node<N>/institution.key or another "
                          "institution's key.",
    "patient_required": "Include Patient in --types: k-anonymity is computed on it.",
    "research_disabled": "This node has no research secret configured; ask its operator, or use another node.",
    "release_refused": "The ledger refused to record the release, so nothing was released; the message says why.",
    "release_not_recorded": "The release was not committed in time, so nothing was released; retry.",
    "too_few_patients": "Fewer consenting patients than k; wait for more consents or lower --k to the study's minimum.",
    "k_anonymity": "A group of patients would be smaller than k, so nothing was released; wait for more consenting patients "
                   "or ask for fewer --types.",
    "internal_error": "The node failed on this request; its log (node.log) says why. Please report it.",
    "bad_id": "Give a 64-hex-character id (as `medledger keys show` or `medledger record put` print).",
    # -- this round's refusals (issue 15) ---------------------------------------------------------------
    "invalid_min_k": "A study's minimum k must be at least the network floor of 5 (and at most 1000); "
                     "pass a larger --k-min to `medledger study register`.",
    "too_many_uploads": "This author has too many uploads waiting for their record.add; let those commit (or discard "
                        "them) before uploading more.",
    "record_mismatch": "The stored upload does not match the record announced on the ledger; write the record again "
                       "with `medledger record put`.",
    "future_request": "The signed request is dated ahead of the node's clock; check this machine's clock and retry.",
    "not_study_institution": "Only the study's own institution (or a custodian of its patients' records) may coordinate "
                             "it; send the extract to that institution's node.",
    "coordinator_not_named": "The request names another coordinator; send it to the node of the institution it names "
                             "(`research extract --coordinator`).",
    "not_prepared": "The custodian never prepared this release; run `medledger research extract` again.",
    "sender_limit": "This key has too many transactions waiting; wait for some to commit, then retry.",
    "research_extract_only": "A researcher never reads a raw record; ask for a de-identified extract of your study "
                             "with `medledger research extract`.",
    "no_treatment_relationship": "You may add records only for patients you treat: the patient registers at your "
                                 "institution or grants it (or you) consent for treatment first.",
    "breakglass_suspended": "Your break-glass access is suspended after an unjustified review; ask the patient for "
                            "consent.",
    "breakglass_limit_practitioner": "You reached the break-glass limit for 24 hours; ask the patient (or its "
                                     "guardian) for consent, or a colleague who treats the patient.",
    "breakglass_limit_patient": "This patient's records were opened by break-glass too often in 24 hours; the "
                                "custodian must review them first, or the patient consents.",
    "wrong_patient": "The file names another patient than --patient; write the record for the patient it is about.",
    "reason_not_coded": "A break-glass reason is a code (see `medledger record get --help`, --reason); put your own "
                        "account in --note, which stays off the chain.",
    "free_text_off_chain": "Free text never goes on the chain; keep the note yourself (--note records only its salted "
                           "hash).",
    "invalid_reason": "Choose one of the reasons listed by `--help` for this command.",
    "already_contested": "This record is already contested; the custodian and the author see the contest in the chart.",
    # -- validator-set changes (validator add / remove / rotate) ------------------------------------
    "already_validator": "That institution is a validator already (or is scheduled to become one); see `medledger validators`.",
    "unknown_validator": "That id is not in the validator set (or is already scheduled to leave); see `medledger validators`.",
    "proposal_mismatch": "Every approval must repeat the first one's --address and --api; see the pending proposal in "
                         "`medledger validators`.",
    "unknown_proposal": "No validator add or remove proposal for that id; `medledger validators` lists the pending ones.",
    "bad_rotation_proof": "The new key's signature of the rotation does not verify; pass the new key file with --new-key.",
    "validator_change_conflict": "Another validator-set change takes effect at that height; send the approval again "
                                 "after the next block.",
    "validator_set_too_small": "A change may not leave fewer than 4 validators; add a validator before removing one.",
    "validator_quorum_at_risk": "Too few validators of the new set are known to be live (approved the change) to reach "
                                "its quorum; get the approvals of the validators that stay, then send it again.",
    # -- FHIR: SMART Backend Services token endpoint and bearer tokens (docs/fhir.md) -----------------
    "invalid_request": "The token request is incomplete or malformed; medledger_code says which field (docs/fhir.md, "
                       "Authorisation).",
    "invalid_client": "The client assertion was refused; medledger_code says why. Sign a fresh JWT with your "
                      "identity's key (node/fhir/client_assertion.py, docs/fhir.md).",
    "invalid_scope": "Ask for SMART scopes context/Type.perms (e.g. system/Observation.rs, patient/*.read) that your "
                     "role may hold (GET /.well-known/smart-configuration lists them).",
    "unsupported_grant_type": "Use grant_type=client_credentials with a signed client_assertion (SMART Backend Services).",
    "unauthorized_client": "This identity's role is not given FHIR access tokens; use a patient's, practitioner's, "
                           "researcher's or institution's key.",
    "temporarily_unavailable": "The token endpoint is busy; retry after the Retry-After seconds.",
    "form_required": "POST the token request as application/x-www-form-urlencoded.",
    "malformed_form": "Send each form field once, percent-encoded, within the size limits (docs/fhir.md).",
    "unsupported_assertion_type": "Set client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
    "assertion_required": "Send client_assertion: a JWT signed with your identity's Ed25519 key (docs/fhir.md).",
    "malformed_jwt": "The client assertion is not a compact JWS (header.payload.signature, base64url JSON); build it "
                     "with node/fhir/client_assertion.py or as docs/fhir.md shows.",
    "unsupported_alg": "Sign the assertion with Ed25519 and set the header's alg to EdDSA; no other algorithm is accepted.",
    "bad_jwt_signature": "Sign the assertion with the key of the identity its iss names (the key file of that id).",
    "bad_issuer": "Set iss (and sub) to your ledger identity id, the 64 hex characters `medledger keys show` prints.",
    "issuer_subject_mismatch": "Set sub to the same identity id as iss.",
    "wrong_audience": "Set aud to the token endpoint URL exactly as the node publishes it (token_endpoint in "
                      "/.well-known/smart-configuration).",
    "assertion_time_invalid": "Give exp (and nbf, iat if any) as whole seconds since the Unix epoch.",
    "assertion_expired": "The assertion's exp has passed; sign a new one just before asking (check this machine's clock).",
    "assertion_exp_too_far": "Let the assertion expire within 5 minutes (exp at most now + 300 s).",
    "assertion_not_yet_valid": "The assertion is dated ahead of the node's clock; check this machine's clock.",
    "jti_required": "Give the assertion a jti: a fresh random string for every token request.",
    "replayed_assertion": "Each assertion is good for one token; sign a new one with a fresh jti.",
    "client_id_mismatch": "Leave client_id out, or set it to the identity id of the assertion's iss.",
    "key_rotated": "This key was replaced on the ledger; sign with the identity's current key.",
    "unknown_purpose": "Give purpose_of_use as an HL7 v3 code: TREAT, ETREAT, HPAYMT, HOPERAT or HRESCH.",
    "purpose_required": "Give the field purpose_of_use (TREAT, ETREAT, HPAYMT, HOPERAT or HRESCH) your role may use.",
    "purpose_not_allowed": "Your role may not ask for that purpose (a researcher: HRESCH; a patient: TREAT); see "
                           "/.well-known/smart-configuration.",
    "breakglass_reason_required": "purpose_of_use=ETREAT is break-glass: add the field reason with one of the ledger's "
                                  "codes (unconscious, life_threatening, lacks_capacity, guardian_unreachable, "
                                  "imminent_harm).",
    "reason_without_breakglass": "Leave reason out unless purpose_of_use is ETREAT.",
    "scope_not_granted": "None of the scopes may be held by your role (a patient: patient/...; a practitioner: user/ "
                         "or system/; a researcher or institution: system/ read); ask for those.",
    "token_required": "Get an access token from the token endpoint and send it as 'Authorization: Bearer <token>'.",
    "invalid_token": "The access token is unknown or expired (they last minutes and end when the node restarts); get "
                     "a new one from the token endpoint.",
    "insufficient_scope": "The token's scopes do not cover this; ask for a token with a scope that does.",
    # -- FHIR transaction Bundles and research releases (issue 18) ---------------------------------------
    "invalid_bundle": "The Bundle is not a transaction or batch this server accepts; fix what the message names "
                      "(each entry needs resource, request.method POST or PUT and request.url; see docs/fhir.md).",
    "too_large": "A size limit was reached (the message names it and its value); send fewer entries or smaller "
                 "resources per request.",
    "unresolved_reference": "A reference names no entry of the Bundle (an unknown urn:uuid:, or a patient the Bundle "
                            "does not hold); include the entry it points to, or reference the patient as "
                            "Patient/<ledger id>.",
    "patient_unresolved": "Which patient this belongs to cannot be told; name the patient (a Patient/<ledger id> "
                          "reference, or an identifier of system urn:medledger:identity on the Patient).",
    "patient_mismatch": "The Patient's urn:medledger:identity identifier names another patient than the request; "
                        "send each patient's resources under that patient.",
    # -- FHIR search (node/fhir/search.py) --------------------------------------------------------------
    "unsupported_type": "This server does not serve that resource type; see /fhir/R4/metadata.",
    "invalid_search": "A search parameter's value is malformed (dates YYYY[-MM[-DD[Thh:mm[:ss]Z]]] with an optional prefix, tokens system|code); fix it.",
    "unsupported_search_parameter": "That search parameter is not supported; see /fhir/R4/metadata for those that are.",
    "unsupported_format": "This server answers in JSON only; ask for application/fhir+json.",
    # -- an institution acting for its practitioners (docs/ledger.md, "On behalf of a practitioner") --
    "not_our_practitioner": "The institution may act only for practitioners registered under it; use the practitioner's "
                            "own institution (or the practitioner's key).",
    "version_mismatch": "A new version must keep the patient, resource type and custodian of the record it supersedes; "
                        "write a new record instead.",
    "not_latest_version": "Someone superseded that record already; read its latest version and supersede that one.",
    "too_many_items": "Too many records in one request; send them in smaller batches.",
    "commit_timeout": "The ledger did not commit the transaction in time; it may still commit: check it again shortly.",
    # -- FHIR Bulk Data export of a study's release and the delegated extract (docs/research.md) -------
    "respond_async_required": "A bulk export kick-off is asynchronous: send the header 'Prefer: respond-async'.",
    "unsupported_accept": "Send 'Accept: application/fhir+json' with a bulk export kick-off (or no Accept header).",
    "since_not_supported": "Leave out _since: an export is the study's whole release as it stands now.",
    "unsupported_parameter": "A kick-off takes only _type, _outputFormat and k, each once; leave the others out.",
    "unsupported_output_format": "Leave out _outputFormat or give application/fhir+ndjson: only NDJSON is served.",
    "invalid_k": "Give k as a whole number from 1 to 1000; the study's minimum k applies if it is larger.",
    "type_not_exportable": "List in _type only the types a research release holds (docs/research.md, Bulk export).",
    "purpose_not_research": "Ask the token endpoint for a token with purpose_of_use=HRESCH to export a study.",
    "researcher_of_another_institution": "Ask your own institution's node: an institution exports only for the "
                                         "researchers registered under it.",
    "too_many_exports": "Fetch your finished exports' files and DELETE their status URLs (or wait until they expire), "
                        "then start another.",
    "export_capacity": "This node holds as many export jobs as it may; retry in a few minutes.",
    "export_too_large": "Ask for fewer types (_type), or retry once other exports have been fetched and deleted.",
    "export_failed": "The export failed on the node; its operator finds the reason in the node's log.",
    "unknown_export": "No such export job for your identity: it expired or was deleted; start a new export.",
    "unknown_export_file": "Fetch only the URLs listed in the export's manifest (its output).",
    "delegate_not_institution": "Only a registered institution's node may ask for an extract on a researcher's behalf.",
    "delegate_not_coordinator": "A delegated extract is coordinated by the institution that signed it; run it at that "
                                "institution's node.",
    "delegated_request_not_accepted": "Sign the extract request with your own key (`medledger research extract`), or "
                                      "use the FHIR bulk export at your institution's node.",
    "via_not_institution": "A release's via names the institution that asked for the researcher: a registered institution.",
    "researcher_not_delegated": "A release asked for by an institution (via) must be for a researcher registered under "
                                "that institution.",
    # -- FHIR REST routes (node/fhir/routes.py, consent_api.py, audit_api.py) ----------------------------
    "malformed_json": "The request body is not one JSON object; send the FHIR resource as application/fhir+json.",
    "unsupported_interaction": "This server does not offer that interaction on that type; see /fhir/R4/metadata.",
    "search_patient_required": "Name the patient (patient=Patient/<id>) or the ids (_id=) in the search.",
    "type_mismatch": "The body's resourceType must be the type in the URL.",
    "id_mismatch": "The resource's id must be the id in the URL of the PUT.",
    "invalid_if_match": "Send If-Match as the version ETag the server gave, W/\"<version>\".",
    "version_conflict": "The resource changed since you read it: read it again and send the update with its new ETag.",
    "not_committed": "The ledger has not committed it yet; read the resource again in a few seconds.",
    "audit_not_allowed": "Patients search their own audit trail; staff their institution's disclosures: use such a token.",
    "invalid_consent": "The Consent does not map onto a consent.grant; see docs/fhir.md, Consent through FHIR.",
    "patient_only": "Only the patient grants and revokes its consents: use the patient's token and signature.",
    "transaction_required": "Send the patient-signed transaction, base64 of its encoding, in X-MedLedger-Transaction.",
    "malformed_transaction": "X-MedLedger-Transaction must be base64 of the transaction's msgpack encoding.",
    "transaction_mismatch": "Sign exactly the body the message names (node.fhir.consent_map.grant_body of the Consent).",
    "signer_mismatch": "Sign the transaction with the key of the patient the token was issued to.",
    # -- data-sharing policies in Cedar (node/app/policies, docs/policies.md) ----------------------------
    "invalid_policy": "The policy is not valid Cedar; fix the line the message names and run "
                      "`medledger policy check FILE` until it prints ok (docs/policies.md).",
    "policy_type_error": "The policy does not type-check against MedLedger's schema (attribute names, types, "
                         "`has` before an optional attribute); see the schema in docs/policies.md.",
    "policy_template": "Templates (?principal, ?resource) are not supported; name the principal and resource "
                       "in the policy's conditions.",
    "policy_too_large": "The policy is over 8 KiB; split it into smaller policies.",
    "too_many_statements": "A policy holds at most 16 permit/forbid statements; split it into several policies.",
    "too_many_policies": "More policies apply to this request than one decision evaluates; revoke agreements "
                         "that are no longer needed.",
    "too_many_entities": "The decision would need more entities than the limit; this is a ledger bug, report it.",
    "policy_input_invalid": "The facts handed to the policy engine do not fit the schema; this is a ledger bug, "
                            "report it with the request.",
    "policy_engine_mismatch": "Install the exact policy engine the protocol pins (`pip install cedarpy==4.12.2`, "
                              "as pyproject.toml says) and restart the node.",
    "policy_error": "A policy statement failed while deciding, so access was refused (fail closed); the "
                    "institution that proposed the policy should test it with `medledger policy check`.",
    "policy_forbids": "A data-sharing agreement forbids this access; the decision names the policy. Ask the "
                      "institution that holds the agreement.",
    "standing_permission": "Granted by a standing permission the patient opted in to (e.g. a pharmacy nomination); "
                           "the patient withdraws it to stop it.",
    "policy_not_permitted": "The patient's consent covers this, but the agreement in force does not let this "
                            "practitioner use it (wrong profession, resource type or purpose); see the policy.",
    # -- care workflows (docs/care.md) ---------------------------------------------------------------------
    "invalid_workflow": "Workflow fields go with their record types: --payer and --covers on a Claim, --to/--until and "
                        "--summary on a ServiceRequest, --prescription/--order/--claim on the record fulfilling it; see "
                        "`medledger care --help`.",
    "invalid_listed_record": "A Claim or a referral lists records of the same patient that your institution keeps "
                             "(`medledger record list --patient ID`), none erased.",
    "workflow_mismatch": "Fulfil the right order: a MedicationDispense a MedicationRequest, a ClaimResponse a Claim with "
                         "a payer, a DiagnosticReport or Observation a lab order, all of the same patient.",
    "not_nominated_pharmacy": "Only the pharmacy the patient nominated dispenses; the patient nominates with "
                              "`medledger care nominate --pharmacy ID`.",
    "not_the_payer": "Only the insurer the Claim was submitted to answers it; use a claims officer of that insurer.",
    "not_the_recipient": "Only the institution the order is addressed to posts its results.",
    "order_not_accepted": "The patient accepts the order first (`medledger care accept --request ID`, with the patient's key).",
    "already_dispensed": "This prescription was dispensed already; a prescription is dispensed once "
                         "(`medledger care status --record ID`).",
    "already_completed": "This Claim was answered already (`medledger care status --record ID`).",
    "not_an_insurer": "A Claim's --payer is an institution of kind insurer (`medledger devnet ids`).",
    "invalid_recipient": "A referral goes to another clinic or hospital, a lab order to a lab (`medledger devnet ids` "
                         "lists each institution's kind).",
    "referral_needs_until": "Give the referral's end with --until YYYY-MM-DD.",
    "referral_too_long": "A referral lasts at most a year (--until); write a new referral when it ends.",
    "referral_ended": "The referral's period is over; the referring physician writes a new referral.",
    "not_a_request": "Only a referral or a lab order addressed to an institution is accepted (`medledger care inbox`).",
    "already_accepted": "You accepted this request already; nothing more to do.",
    "invalid_permission": "A nomination is --pharmacy ID or --insurer ID.",
    "no_standing_permission": "You have no such nomination; `medledger care standing` shows yours.",
    "under_mismatch": "--under names a Claim with a payer or a referral of the same patient as the record.",
    # -- clinical trials (issue 21) -------------------------------------------------------------------------
    "invalid_criteria": "Write the eligibility criteria in the documented form (node/app/trial_criteria.py: version, "
                        "age, sex, include, exclude) and send their canonical JSON.",
    "invalid_threshold": "The small-count threshold is a whole number from 5 to 1000 (default 10).",
    "investigator_not_at_site": "Name as investigators only practitioners registered at one of the trial's sites.",
    "trial_exists": "A trial with that id is registered already; choose another id.",
    "unknown_trial": "No trial with that id on the ledger; check the id the sponsor registered.",
    "not_the_sponsor": "Only the trial's sponsor institution does this; use its key.",
    "too_many_queries": "A trial asks at most 32 feasibility queries (their counts could otherwise be differenced to "
                        "single out a patient); use the counts already on the ledger.",
    "query_exists": "That feasibility query was asked already; ask again with a fresh query id.",
    "unknown_query": "The sponsor asked no such feasibility query.",
    "already_answered": "This site answered that query already.",
    "count_below_threshold": "Report a count under the trial's threshold as fewer_than: the exact small count stays at the site.",
    "not_a_site": "Only a site of the trial, or one of its investigators, does this.",
    "already_consented": "This participant consented to that protocol version already.",
    "not_your_participant": "This participant takes part through another site.",
    "participant_withdrawn": "The participant withdrew: nothing more is collected from them or released.",
    "not_consented": "This pseudonym has not consented to the trial.",
    "already_enrolled": "The participant is enrolled already.",
    "not_enrolled": "Enrol the participant first (trial enrol).",
    "reconsent_required": "The protocol was amended with re-consent: the participant consents to the current version first.",
    "too_many_submissions": "The trial holds the most submissions a trial may; lock it and register a follow-up trial.",
    "not_invited": "This site has no invitation of yours to that trial; `medledger trial invitations --node <your site>` lists yours.",
    "another_pseudonym": "You accepted this trial under another pseudonym: answer with the same key you accepted with.",
    "not_an_investigator": "Only an investigator of the participant's site submits its trial data.",
    "submission_exists": "A submission with that id is kept already; submit again (a new id is drawn each time).",
    "not_committed": "The node did not see its transaction committed in time; check the network (medledger status) and retry.",
    "trial_locked": "The trial's data set is locked; nothing more changes it.",
    "wrong_version": "Use the version the command names (the next amendment, or the current version for consent).",
    # -- data-sharing agreements (docs/policies.md, "Agreements on the ledger") ----------------------------
    "invalid_agreement_id": "An agreement --id is 1-64 characters of letters, digits and . _ - (e.g. pharmacy-2026).",
    "invalid_version": "An agreement --version is a whole number from 1; `medledger policy show --id ID` shows the latest.",
    "wrong_agreement_version": "Propose version 1 for a new id, else exactly the latest + 1 (`medledger policy show --id ID`).",
    "invalid_parties": "--parties lists 2 to 8 distinct institution ids, yours among them (`medledger devnet ids`).",
    "policy_not_canonical": "The ledger stores a policy in its canonical form; `medledger policy propose --file` "
                            "computes it from your .cedar file.",
    "policy_names_patient": "Write the agreement about kinds of staff and data (profession, institution kind, resource "
                            "type, purpose): naming one patient or record would publish who is in it; a patient's own "
                            "choices are the patient's consents.",
    "policy_widens": "An agreement routes or narrows what the patient consented to, it never grants beyond it: scope "
                     "each permit (profession, institution kind, resource type, treatment/payment/operations), or "
                     "narrow with a forbid; emergency reads are break-glass, research goes by extracts.",
    "policy_free_text": "An agreement's strings must be codes and ids (letters, digits, . _ : @ -), never names or "
                        "notes; remove the text from the policy.",
    "unknown_agreement": "No agreement with that id and version; `medledger policy show --id ID` lists what exists.",
    "not_a_party": "Only the agreement's parties may sign, revoke or propose its next version; use a party's "
                   "institution key.",
    "agreement_revoked": "That version was revoked; propose a new version (`medledger policy propose --version N+1`).",
    "agreement_superseded": "A later version exists; sign or revoke the latest (`medledger policy show --id ID`).",
    "already_signed": "This party already signed that version; the other parties must sign it too.",
    "digest_mismatch": "The digest is not that of this version's policy; check the version with `medledger policy show` "
                       "and sign again (the CLI signs the stored digest).",
    "agreement_expired": "The agreement's period ended before every party signed; propose a new version.",
    "too_many_agreements": "An institution is party to at most 16 agreements in force (ended ones count until "
                           "revoked); revoke one it no longer needs (`medledger policy revoke`).",
}

# Codes made from a parameter's name (the API's `bad_<name>` for ids, heights, times).
PREFIX_ADVICE: dict[str, str] = {
    "bad_": "A parameter is malformed (an id must be 64 hex characters, a height or time a whole number); check it.",
    "http_": "The node answered with an unexpected HTTP error; check --node points at a MedLedger node.",
}

FALLBACK = "See `medledger <command> --help` and docs/ledger.md for what this code means."


def advice(code: str) -> str:
    """The sentence that says what to do about `code` (a generic pointer for an unknown code)."""
    code = code.split(":", 1)[0]  # "release_refused:<ledger code>" speaks of its first part
    if code in ADVICE:
        return ADVICE[code]
    for prefix, text in PREFIX_ADVICE.items():
        if code.startswith(prefix):
            return text
    return FALLBACK


def explain(code: str, message: str = "") -> str:
    """One line: the code, the node's message (if it adds something) and the advice."""
    said = message.strip()
    if said and said[-1] not in ".?!":
        said += "."
    head = f"{code}: {said}" if said and said.rstrip(".") != code else f"{code}."
    return f"{head} {advice(code)}"
