"""Routes of clinical trials: the public view of a trial on the ledger, and a site's services
(node/research/trial_site.py), each signed by the party entitled to it.

    GET  /v1/trials/{trial}                         public: the registration, versions, counts, lock
    GET  /v1/trials/{trial}/submissions             public: the anchored submissions (pseudonyms, ids, hashes)
    GET  /v1/trials/{trial}/queries/{query}         public: a feasibility query and the sites' answers
    GET  /v1/trials/{trial}/participants/{pseudonym} public: a pseudonym's consents, enrolment, withdrawal
    POST /v1/trials/{trial}/count?query=Q           the sponsor: this site counts and records its answer
    POST /v1/trials/{trial}/invite                  the sponsor: this site invites its matching patients
    GET  /v1/patients/{id}/invitations              the patient: its invitations kept at this site (sealed)
    POST /v1/trials/{trial}/respond                 the patient: accept (pseudonym, consent signature) or decline
    POST /v1/trials/{trial}/withdraw                a registered identity relays a pseudonym's withdrawal
    POST /v1/trials/{trial}/submissions             an investigator of this site: a submission's ciphertext
    GET  /v1/trials/{trial}/export                  the sponsor: this site's submissions, wrapped for it

Bodies are msgpack (the ids and signatures are bytes); answers are JSON with bytes in hex. Only
numbers and pseudonyms ever reach the sponsor: the site decides everything about patients here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.api.common import CUSTODIAN_KEY, NODE_KEY, ApiError, json_response, msgpack_body, parse_hex32
from node.api.signed import signer_of
from node.app import queries
from node.app.fields import check_study_id
from node.chain.tx import jsonable
from node.research.trial_site import TrialSite

TRIALS_KEY = web.AppKey("trials", TrialSite)
MAX_BODY = 512 * 1024


def _trial_id(request: web.Request) -> str:
    trial = request.match_info["trial"]
    check_study_id(trial)  # a TxRejected answers 400 with its code
    return trial


def _hex_param(request: web.Request, name: str) -> bytes:
    raw = parse_hex32(request.match_info.get(name) or request.query.get(name, ""))
    if raw is None:
        raise ApiError(400, f"bad_{name}", f"{name} is 64 hex characters")
    return raw


def _anyone(request: web.Request, signer: bytes) -> bool:
    """A signer the ledger knows (who asks is then checked by the service, against the trial)."""
    node = request.app[NODE_KEY]
    return queries.identity(node.state_reader(), signer) is not None


def _the_patient(request: web.Request, signer: bytes) -> bool:
    return signer.hex() == request.match_info["id"].lower()


async def get_trial(request: web.Request) -> web.Response:
    found = queries.trial(request.app[NODE_KEY].state_reader(), _trial_id(request))
    if found is None:
        raise ApiError(404, "unknown_trial", "no trial with this id")
    return json_response(found)


async def get_submissions(request: web.Request) -> web.Response:
    trial = _trial_id(request)
    state = request.app[NODE_KEY].state_reader()
    if queries.trial(state, trial) is None:
        raise ApiError(404, "unknown_trial", "no trial with this id")
    return json_response({"trial": trial, "submissions": queries.trial_submissions(state, trial)})


async def get_query(request: web.Request) -> web.Response:
    found = queries.trial_query(request.app[NODE_KEY].state_reader(), _trial_id(request), _hex_param(request, "query"))
    if found is None:
        raise ApiError(404, "unknown_query", "no such feasibility query")
    return json_response(found)


async def get_participant(request: web.Request) -> web.Response:
    found = queries.trial_participant(request.app[NODE_KEY].state_reader(), _trial_id(request),
                                      _hex_param(request, "pseudonym"))
    if found is None:
        raise ApiError(404, "not_consented", "this pseudonym has not consented to the trial")
    return json_response(found)


async def post_count(request: web.Request) -> web.Response:
    trial = _trial_id(request)
    signer = await signer_of(request, _anyone)
    return json_response(await request.app[TRIALS_KEY].count(trial, _hex_param(request, "query"), signer))


async def post_invite(request: web.Request) -> web.Response:
    trial = _trial_id(request)
    signer = await signer_of(request, _anyone)
    doc = await msgpack_body(request, MAX_BODY)
    summary = doc.get("summary", "") if isinstance(doc, dict) else None
    return json_response(await request.app[TRIALS_KEY].invite(trial, summary, signer))  # type: ignore[arg-type]


async def get_invitations(request: web.Request) -> web.Response:
    signer = await signer_of(request, _the_patient)
    found = request.app[TRIALS_KEY].invitations(signer)
    return json_response({"patient": signer.hex(), "invitations": [jsonable(i) for i in found]})


async def post_respond(request: web.Request) -> web.Response:
    trial = _trial_id(request)
    signer = await signer_of(request, _anyone)
    doc = await msgpack_body(request, MAX_BODY)
    return json_response(await request.app[TRIALS_KEY].respond(trial, signer, doc))


async def post_withdraw(request: web.Request) -> web.Response:
    trial = _trial_id(request)
    await signer_of(request, _anyone)
    doc = await msgpack_body(request, MAX_BODY)
    return json_response(await request.app[TRIALS_KEY].relay_withdrawal(trial, doc))


async def post_submission(request: web.Request) -> web.Response:
    trial = _trial_id(request)
    signer = await signer_of(request, _anyone)
    doc = await msgpack_body(request, MAX_BODY)
    return json_response(request.app[TRIALS_KEY].accept_submission(trial, signer, doc))


async def get_export(request: web.Request) -> web.Response:
    trial = _trial_id(request)
    signer = await signer_of(request, _anyone)
    found: list[dict[str, Any]] = request.app[TRIALS_KEY].export(trial, signer)
    return json_response({"trial": trial, "site": request.app[NODE_KEY].identity.id,
                          "submissions": [jsonable(e) for e in found]})


def install_trials(app: web.Application) -> None:
    """The trial routes; a site's services act on the app's custodian store."""
    app[TRIALS_KEY] = TrialSite(app[NODE_KEY], app[CUSTODIAN_KEY].store)
    router = app.router
    router.add_get("/v1/trials/{trial}", get_trial)
    router.add_get("/v1/trials/{trial}/submissions", get_submissions)
    router.add_get("/v1/trials/{trial}/queries/{query}", get_query)
    router.add_get("/v1/trials/{trial}/participants/{pseudonym}", get_participant)
    router.add_post("/v1/trials/{trial}/count", post_count)
    router.add_post("/v1/trials/{trial}/invite", post_invite)
    router.add_get("/v1/patients/{id}/invitations", get_invitations)
    router.add_post("/v1/trials/{trial}/respond", post_respond)
    router.add_post("/v1/trials/{trial}/withdraw", post_withdraw)
    router.add_post("/v1/trials/{trial}/submissions", post_submission)
    router.add_get("/v1/trials/{trial}/export", get_export)
