"""`wait_for_work`: an idle validator arms no view timer, so an idle network neither makes empty
blocks nor changes views; work, a proposal or a vote for the height arms it."""

from __future__ import annotations

from consensus.actions import CancelTimer, RequestProposal, SetTimer
from consensus.engine import Engine, EngineConfig
from consensus.messages import PrePrepare, sign_message
from consensus.validators import ValidatorSet

from tests.signing import NaclSigner, NaclVerifier


def make(me: int, *, wait: bool) -> tuple[Engine, list[NaclSigner]]:
    signers = [NaclSigner.from_byte(i + 1) for i in range(4)]
    vs = ValidatorSet(validators=tuple(s.public_key for s in signers))
    engine = Engine(chain_id="c", validators=vs, signer=signers[me], verifier=NaclVerifier(),
                    config=EngineConfig(wait_for_work=wait), last_height=0, last_digest=bytes(32))
    return engine, signers


def view_timers(actions) -> list:
    return [a for a in actions if isinstance(a, SetTimer) and a.key[0] == "view"]


def test_idle_validator_arms_no_view_timer_until_work():
    engine, _ = make(2, wait=True)
    assert view_timers(engine.start()) == []
    armed = view_timers(engine.on_work(True))
    assert len(armed) == 1
    cancelled = engine.on_work(False)
    assert any(isinstance(a, CancelTimer) for a in cancelled)


def test_default_arms_at_once():
    engine, _ = make(2, wait=False)
    assert len(view_timers(engine.start())) == 1


def test_a_proposal_arms_the_timer_of_an_idle_validator():
    engine, signers = make(2, wait=True)
    engine.start()
    vs = ValidatorSet(validators=tuple(s.public_key for s in signers))
    primary = vs.primary(1, 0)
    idx = [s.public_key for s in signers].index(primary)
    pp = sign_message(PrePrepare(chain_id="c", height=1, view=0, sender=primary, digest=b"\x01" * 32, payload=b"block"),
                      signers[idx])
    verdict, actions = engine.on_message(pp)
    assert verdict.kind == "process"
    assert len(view_timers(actions)) == 1


def test_the_primary_is_still_asked_for_a_proposal():
    signers = [NaclSigner.from_byte(i + 1) for i in range(4)]
    vs = ValidatorSet(validators=tuple(s.public_key for s in signers))
    me = [s.public_key for s in signers].index(vs.primary(1, 0))
    engine, _ = make(me, wait=True)
    assert any(isinstance(a, RequestProposal) for a in engine.start())
