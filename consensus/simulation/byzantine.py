"""Byzantine validators for the simulator: what they send instead of what the protocol says.

A Byzantine validator runs the honest engine (so it stays in step with the cluster and its
attacks are timely) and the adversary rewrites its outgoing traffic, or adds to it on a
periodic tick. Byzantine validators collude: they share a split of the honest endpoints into
two groups and a table of the alternative blocks they proposed, so that an equivocating
primary and double-voting accomplices show each group a different, consistent story. With at
most f of them no group can gather a quorum on its own (the checks must stay green); with more
than f they can, and the safety check must catch it.

| behaviour      | what the validator does                                                     |
| -------------- | --------------------------------------------------------------------------- |
| silent         | sends nothing at all                                                        |
| equivocate     | as primary, proposes one block to one group and another to the other, and   |
|                | votes for each block toward the group that got it                           |
| double-vote    | every PREPARE/COMMIT goes to one group; a conflicting one goes to the other |
| unknown-block  | votes for digests of blocks that nobody proposed                            |
| bad-signature  | corrupts signatures, forges certificates inside validly signed messages     |
| replay         | re-sends other validators' old messages (old views, old heights)            |
| twin           | two instances run with the same key, each unaware of the other              |
| invalid-block  | as primary, proposes blocks the application rejects; offers validators that |
|                | are behind a real certificate with a junk block                              |
| view-spam      | asks for far-away views and claims far-future heights                       |
| withhold       | shows its proposals and votes to one group only, and its COMMITs to a single|
|                | validator, so that a block is final at some validators and not at others    |

The stronger adversary of `adversary.py` adds behaviours that build messages rather than bend
the engine's (its module table describes each): relabel-new-view, forge-new-view,
lying-view-change, lock-hiding-primary, inner-signature, adaptive-split, byzantine-sync and
lock-split (`steering.py`). They share this class's group split and are reached through it
(`Forger`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from consensus.certificate import CommitCertificate, PreparedCertificate
from consensus.messages import Commit, Decision, Message, NewView, Prepare, PrePrepare, ViewChange, sign_message

from consensus.validators import ValidatorSet
from consensus.simulation.adversary import FORGER_BEHAVIOURS, Forger

if TYPE_CHECKING:
    from consensus.simulation.cluster import Endpoint

BENDING_BEHAVIOURS: tuple[str, ...] = ("silent", "equivocate", "double-vote", "unknown-block", "bad-signature",
                                       "replay", "twin", "invalid-block", "view-spam", "withhold")
BEHAVIOURS: tuple[str, ...] = BENDING_BEHAVIOURS + FORGER_BEHAVIOURS
TICK_BEHAVIOURS = frozenset({"unknown-block", "bad-signature", "replay", "view-spam", "invalid-block",
                             "inner-signature"})


def block_payload(height: int, view: int, proposer: int, tag: str) -> bytes:
    """A valid block of the simulated application."""
    return b"block|%d|%d|%d|%s" % (height, view, proposer, tag.encode())


class Adversary:
    """The colluding Byzantine validators' shared knowledge and their rewriting of traffic."""

    def __init__(self, rng: random.Random, chain_id: str, honest: Sequence[int], *,
                 validators_at: Callable[[int], ValidatorSet] | None = None,
                 byzantine_ids: frozenset[bytes] = frozenset(), fault_window_ms: int = 0) -> None:
        self._rng = rng
        self._chain_id = chain_id
        honest = list(honest)
        rng.shuffle(honest)
        self.group_one = frozenset(honest[: (len(honest) + 1) // 2])
        self.forger: Forger | None = None
        if validators_at is not None:
            self.forger = Forger(rng, chain_id, validators_at, byzantine_ids, self.group_one, fault_window_ms,
                                 block_payload)
        # (height, view) -> (original digest, alternative digest), for equivocated proposals.
        self._alternatives: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        self._replay_buffer: dict[int, list[Message]] = {}

    # -- proposals ----------------------------------------------------------------------------

    def proposal(self, ep: Endpoint, height: int, view: int, payload: bytes) -> bytes:
        if "invalid-block" in ep.behaviours and self._rng.random() < 0.7:
            return b"junk|%d|%d" % (height, view)
        return payload

    # -- outgoing traffic ---------------------------------------------------------------------

    def outgoing(self, ep: Endpoint, msg: Message, dests: Sequence[Endpoint]) -> list[tuple[Endpoint, Message]]:
        b = ep.behaviours
        if "silent" in b:
            return []
        out: list[tuple[Endpoint, Message]] = [(d, msg) for d in dests]
        kind = type(msg)
        if "equivocate" in b and kind in (PrePrepare, NewView) and msg.sender == ep.signer.public_key:
            other = self._alternative_proposal(ep, msg)
            out = [(d, msg if self._first_story(d) else other) for d in dests]
        elif isinstance(msg, (Prepare, Commit)) and msg.sender == ep.signer.public_key:
            pair = self._alternatives.get((msg.height, msg.view))
            if "unknown-block" in b:
                out = [(d, self._vote(ep, msg, self._random_digest())) for d in dests]
            elif pair is not None and msg.digest in pair and ("equivocate" in b or "double-vote" in b):
                other = self._vote(ep, msg, pair[1] if msg.digest == pair[0] else pair[0])
                out = [(d, msg if self._first_story(d) else other) for d in dests]
            elif "double-vote" in b:
                other = self._vote(ep, msg, self._random_digest())
                out = [(d, msg if self._first_story(d) else other) for d in dests]
        if "withhold" in b and msg.sender == ep.signer.public_key:
            if kind is Commit:
                honest = sorted(d.index for d, _ in out if not d.behaviours)
                favourite = honest[msg.height % len(honest)] if honest else -1
                out = [(d, m) for d, m in out if d.behaviours or d.index == favourite]
            elif kind in (PrePrepare, NewView, Prepare):
                out = [(d, m) for d, m in out if self._first_story(d)]
        if self.forger is not None:
            self.forger.learn(msg, self._no_endpoint)
            out = self.forger.outgoing(ep, msg, out)
        if "bad-signature" in b:
            out = [(d, _corrupt(m) if self._rng.random() < 0.3 else m) for d, m in out]
        return out

    def tick(self, ep: Endpoint, everyone: Sequence[Endpoint]) -> list[tuple[Endpoint, Message]]:
        """Unprompted traffic, every few hundred simulated milliseconds."""
        b = ep.behaviours
        if "silent" in b or ep.engine is None:
            return []
        rng = self._rng
        me = ep.signer.public_key
        height, view = ep.engine.height, ep.engine.view
        others = [d for d in everyone if d.signer.public_key != me]
        out: list[tuple[Endpoint, Message]] = []
        if "unknown-block" in b:
            vote = Prepare(chain_id=self._chain_id, height=height, view=view + rng.randint(0, 2), sender=me,
                           digest=self._random_digest())
            out += [(d, sign_message(vote, ep.signer)) for d in others]
        if "bad-signature" in b:
            votes = tuple((key, rng.randbytes(64)) for key in sorted({d.signer.public_key for d in others}))
            digest = self._random_digest()
            if view + 1 <= 2**31 - 1:
                forged = PreparedCertificate(height=height, view=view, digest=digest, votes=votes)
                vc = ViewChange(chain_id=self._chain_id, height=height, view=view + 1, sender=me, prepared=forged)
                out += [(d, sign_message(vc, ep.signer)) for d in others]
            cert = CommitCertificate(height=height, view=view, digest=digest, votes=votes)
            decision = Decision(chain_id=self._chain_id, height=height, view=view, sender=me, digest=digest,
                                payload=block_payload(height, view, 0, "forged"), certificate=cert)
            out += [(d, sign_message(decision, ep.signer)) for d in others]
        if "replay" in b:
            buffer = self._replay_buffer.get(ep.index, [])
            for _ in range(min(3, len(buffer))):
                out.append((rng.choice(others), rng.choice(buffer)))
        if "invalid-block" in b and ep.chain:
            digest, _, cert = ep.chain[-1]
            junk = Decision(chain_id=self._chain_id, height=cert.height, view=cert.view, sender=me, digest=digest,
                            payload=b"junk|%d" % rng.getrandbits(32), certificate=cert)
            out += [(d, sign_message(junk, ep.signer)) for d in others]
        if "view-spam" in b:
            vc = ViewChange(chain_id=self._chain_id, height=height, view=view + rng.randint(2, 40), sender=me)
            far = Prepare(chain_id=self._chain_id, height=height + rng.randint(2, 50), view=0, sender=me,
                          digest=self._random_digest())
            out += [(d, sign_message(m, ep.signer)) for d in others for m in (vc, far)]
        if "inner-signature" in b and ep.chain and self.forger is not None:
            digest, payload, cert = ep.chain[-1]
            decision = Decision(chain_id=self._chain_id, height=cert.height, view=cert.view, sender=me,
                                digest=digest, payload=payload, certificate=cert)
            out += [(d, self.forger.corrupt_inner(ep, decision)) for d in others if not d.behaviours]
        return out

    def observe(self, ep: Endpoint, msg: Message, everyone: Sequence[Endpoint] = ()) -> list[tuple[Endpoint, Message]]:
        """A message reached a Byzantine endpoint: learn from it, keep some for replaying later,
        and return what the adversary sends at once in answer."""
        out: list[tuple[Endpoint, Message]] = []
        if self.forger is not None:
            self.forger.learn(msg, lambda key: self._endpoint_index(everyone, key))
            out = self.forger.react(ep, msg, everyone)
        if "replay" not in ep.behaviours or msg.sender == ep.signer.public_key:
            return out
        buffer = self._replay_buffer.setdefault(ep.index, [])
        if len(buffer) < 200:
            buffer.append(msg)
        else:
            buffer[self._rng.randrange(200)] = msg
        return out

    @staticmethod
    def _no_endpoint(key: bytes) -> int | None:
        return None

    @staticmethod
    def _endpoint_index(everyone: Sequence[Endpoint], key: bytes) -> int | None:
        for d in everyone:
            if d.honest and d.signer.public_key == key:
                return d.index
        return None

    # -- helpers ------------------------------------------------------------------------------

    def _first_story(self, dest: Endpoint) -> bool:
        return bool(dest.behaviours) or dest.index in self.group_one

    def _alternative_proposal(self, ep: Endpoint, msg: Message) -> Message:
        pp = msg.pre_prepare if type(msg) is NewView else msg
        assert type(pp) is PrePrepare
        payload = block_payload(pp.height, pp.view, ep.validator, f"alt-{self._rng.getrandbits(32):08x}")
        digest = hashlib.sha256(payload).digest()
        self._alternatives[(pp.height, pp.view)] = (pp.digest, digest)
        alt_pp = sign_message(PrePrepare(chain_id=pp.chain_id, height=pp.height, view=pp.view, sender=pp.sender,
                                         digest=digest, payload=payload), ep.signer)
        if type(msg) is NewView:
            return sign_message(NewView(chain_id=msg.chain_id, height=msg.height, view=msg.view, sender=msg.sender,
                                        view_changes=msg.view_changes, pre_prepare=alt_pp), ep.signer)
        return alt_pp

    def _vote(self, ep: Endpoint, msg: Prepare | Commit, digest: bytes) -> Prepare | Commit:
        cls = type(msg)
        return sign_message(cls(chain_id=msg.chain_id, height=msg.height, view=msg.view, sender=msg.sender,
                                digest=digest), ep.signer)

    def _random_digest(self) -> bytes:
        return self._rng.randbytes(32)


def _corrupt(msg: Message) -> Message:
    sig = bytearray(msg.signature or b"\x00")
    sig[0] ^= 0xFF
    values = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg) if f.init}
    values["signature"] = bytes(sig)
    return type(msg)(**values)
