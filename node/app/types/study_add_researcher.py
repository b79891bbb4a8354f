"""`study.add_researcher`: the study's institution adds a registered researcher to it.

A researcher answers for the studies it was added to: its research access requests match
patients' consents to those studies. Researchers of any institution may be added (multi-site
studies); the study must not have ended.
"""

from __future__ import annotations

from node.chain.tx import Transaction

from node.app import keys
from node.app.fields import check_id, check_study_id
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import INSTITUTION, RESEARCHER, role_of, sender_as
from node.app.stored import write
from node.app.studies import load_study, study_active


def _check(tx: Transaction) -> None:
    require_fields(tx.body, {"study": str, "researcher": bytes})
    check_study_id(tx.body["study"])
    check_id(tx.body, "researcher")


def _execute(ctx: ExecContext) -> None:
    study_id, researcher = ctx.tx.body["study"], ctx.tx.body["researcher"]
    sender_as(ctx, INSTITUTION)
    study = load_study(ctx.state, study_id)
    if study is None:
        raise ExecFailed("unknown_study", "no study with this id")
    if study["institution"] != ctx.tx.sender:
        raise ExecFailed("not_study_owner", "only the institution that registered the study adds researchers")
    if not study_active(study, ctx.timestamp_ms):
        raise ExecFailed("study_ended", "the study has ended")
    if role_of(ctx.state, researcher) != RESEARCHER:
        raise ExecFailed("not_a_researcher", "the identity is not a registered researcher")
    key = keys.STUDY_RESEARCHER + keys.study_part(study_id) + researcher
    if ctx.state.get(key) is not None:
        raise ExecFailed("already_added", "the researcher is already on this study")
    write(ctx, key, {"height": ctx.height, "time_ms": ctx.timestamp_ms})
    write(ctx, keys.RESEARCHER_STUDY + researcher + keys.study_part(study_id), {"height": ctx.height})


STUDY_ADD_RESEARCHER = register(
    TxType(name="study.add_researcher", summary="the study's institution adds a researcher to it",
           check_body=_check, execute=_execute)
)
