"""`study.register`: an institution registers a research study under its ethics approval.

A study has an id (1-64 characters, unique on the chain), a title, the reference of its ethics
approval, an end (`until_ms`, inclusive) and its minimum k (`min_k`, optional, default and
floor `K_FLOOR` = 5, at most 1000): no research release of the study has a quasi-identifier
group smaller than that, whatever k the researcher asks for. Patients consent to it with the
grantee kind "study" and the purpose "research"; such consents end with the study.
"""

from __future__ import annotations

from node.chain.tx import Transaction, TxRejected

from node.app import keys
from node.app.fields import check_study_id, check_text, check_time
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import INSTITUTION, sender_as
from node.app.stored import write
from node.app.studies import K_FLOOR, K_MAX, load_study

MAX_TITLE = 128


def _check(tx: Transaction) -> None:
    body = tx.body
    require_fields(body, {"study": str, "title": str, "ethics_ref": str, "until_ms": int}, {"min_k": int})
    check_study_id(body["study"])
    min_k = body.get("min_k", K_FLOOR)
    if isinstance(min_k, bool) or not K_FLOOR <= min_k <= K_MAX:
        raise TxRejected("invalid_min_k", f"min_k must be between the network floor {K_FLOOR} and {K_MAX}")
    check_text(body, "title", limit=MAX_TITLE, required=True)
    check_text(body, "ethics_ref", limit=MAX_TITLE, required=True)
    check_time(body, "until_ms")


def _execute(ctx: ExecContext) -> None:
    body = ctx.tx.body
    sender_as(ctx, INSTITUTION)
    if load_study(ctx.state, body["study"]) is not None:
        raise ExecFailed("study_exists", "a study with this id is already registered")
    if body["until_ms"] <= ctx.timestamp_ms:
        raise ExecFailed("invalid_period", "the study would already have ended")
    write(ctx, keys.study(body["study"]), {
        "institution": ctx.tx.sender, "title": body["title"], "ethics_ref": body["ethics_ref"],
        "until_ms": body["until_ms"], "min_k": body.get("min_k", K_FLOOR), "tx": ctx.tx.hash, "height": ctx.height, "time_ms": ctx.timestamp_ms,
    })


STUDY_REGISTER = register(
    TxType(name="study.register", summary="an institution registers a research study", check_body=_check, execute=_execute)
)
