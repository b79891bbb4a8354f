"""The stronger adversary: Byzantine validators that build their own messages (issue 14).

The behaviours of `byzantine.py` bend what the honest engine of a Byzantine validator sends.
The ones here go further: the colluding Byzantine validators hold their own keys and remember
every message that reached any of them (view changes, prepares and the certificates they make,
proposals and their payloads, commits), and build from that what the protocol would never
send: relabelled and re-embedded genuine signatures, NEW-VIEWs with altered or replayed
contents, lying VIEW-CHANGEs, corrupted inner signatures under a valid outer one. They also
steer the network within its model (targeted delays around view changes, splits chosen from
what each honest validator has done) and serve block sync.

| behaviour           | what the validator does                                                   |
| ------------------- | ------------------------------------------------------------------------- |
| relabel-new-view    | as primary of a view w, answers each honest validator's VIEW-CHANGE with  |
|                     | a NEW-VIEW(w) whose "quorum" of view changes all carry signatures that    |
|                     | validator has already checked (its own, or others' it received)           |
|                     | relabelled to other senders and view w, certificates stripped, with a new |
|                     | block, plus its own PREPARE and COMMIT for that block                     |
| forge-new-view      | as primary, NEW-VIEWs with altered or replayed proof: certificates        |
|                     | stripped or swapped under the original signature, view changes of an      |
|                     | earlier view or height rewritten, one view change short of a quorum, or a |
|                     | genuine quorum with another block than the highest certificate names      |
| lying-view-change   | its VIEW-CHANGEs hide its lock, carry a stale certificate, or one whose    |
|                     | view is rewritten (or rebuilt from prepares of several views), and differ |
|                     | from one peer to the next                                                 |
| lock-hiding-primary | as primary, picks from all the view changes it knows the quorum with the  |
|                     | lowest certificates; re-proposes that quorum's highest (legal) or a new   |
|                     | block anyway (legal only if the quorum holds no certificate)               |
| inner-signature     | valid outer signature over corrupted inner ones: a vote inside the        |
|                     | certificate of its VIEW-CHANGE or DECISION, an enclosed view change or the |
|                     | pre-prepare inside its NEW-VIEW                                           |
| adaptive-split      | splits the honest validators by what they did (those seen committing vs   |
|                     | the rest), sends its own traffic late to one side, and during the fault   |
|                     | window delays honest VIEW-CHANGE, NEW-VIEW and DECISION traffic (and votes |
|                     | of views > 0) between the sides, by at most `MAX_TARGETED_DELAY_MS`       |
| byzantine-sync      | offers block sync to everyone and serves wrong blocks under real          |
|                     | certificates, forged or short certificates, certificates of another       |
|                     | height, PREPARE signatures as a commit certificate, stale heights, or     |
|                     | nothing at all                                                            |

All randomness comes from the simulation's seeded `random.Random`; nothing here does IO.
Whatever the adversary builds goes through the same wire codec and signature check as any
other message, so what it cannot encode or sign it simply does not send.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from consensus.certificate import CommitCertificate, PreparedCertificate
from consensus.messages import M, Commit, Decision, Message, NewView, Prepare, PrePrepare, ViewChange, sign_message
from consensus.validators import ValidatorSet
from consensus.simulation.steering import STEER_VIEW, LockSplitter

if TYPE_CHECKING:
    from consensus.simulation.cluster import Endpoint

FORGER_BEHAVIOURS: tuple[str, ...] = ("relabel-new-view", "forge-new-view", "lying-view-change",
                                      "lock-hiding-primary", "inner-signature", "adaptive-split", "byzantine-sync",
                                      "lock-split")
# New-view builders: a Byzantine validator with one of these answers for the NEW-VIEWs of its views.
_NEW_VIEW_BUILDERS = frozenset({"forge-new-view", "lock-hiding-primary"})
MAX_TARGETED_DELAY_MS = 600
_KEEP_HEIGHTS = 3  # heights of knowledge kept below the highest seen (bounded memory)

Out = list[tuple["Endpoint", Message]]
# A block as block sync serves it: (height, digest, payload, certificate).
SyncedBlock = tuple[int, bytes, bytes, CommitCertificate]
Cert = TypeVar("Cert", PreparedCertificate, CommitCertificate)
K = TypeVar("K")
V = TypeVar("V")


def flip(signature: bytes) -> bytes:
    """The same signature with its first byte inverted: the right length, never valid."""
    sig = bytearray(signature or b"\x00")
    sig[0] ^= 0xFF
    return bytes(sig)


def _replace(msg: M, **changes: object) -> M:
    values = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg) if f.init}
    values.update(changes)
    return type(msg)(**values)


def _corrupt_vote(cert: Cert, rng: random.Random) -> Cert:
    """The certificate with one vote's signature corrupted."""
    votes = list(cert.votes)
    i = rng.randrange(len(votes))
    votes[i] = (votes[i][0], flip(votes[i][1]))
    return type(cert)(height=cert.height, view=cert.view, digest=cert.digest, votes=tuple(votes))


def _drop_keys(table: dict[K, V], doomed: Callable[[K], bool]) -> None:
    for key in [k for k in table if doomed(k)]:
        del table[key]


class Forger:
    """The colluding Byzantine validators' memory of what they saw, and the messages they build from it."""

    def __init__(self, rng: random.Random, chain_id: str, validators_at: Callable[[int], ValidatorSet],
                 byzantine_ids: frozenset[bytes], honest_split: frozenset[int], fault_window_ms: int,
                 block_payload: Callable[[int, int, int, str], bytes]) -> None:
        self._rng = rng
        self._chain_id = chain_id
        self._validators_at = validators_at
        self._byzantine_ids = byzantine_ids
        self._static_split = honest_split
        self._fault_window_ms = fault_window_ms
        self._block = block_payload
        self._top = 0
        # Genuine view changes (payload stripped), by (height, view) then sender.
        self._vcs: dict[tuple[int, int], dict[bytes, ViewChange]] = {}
        # PREPARE signatures, by (height, view, digest) then sender.
        self._prepares: dict[tuple[int, int, bytes], dict[bytes, bytes]] = {}
        # Genuine prepared certificates, by height then (view, digest).
        self._certs: dict[int, dict[tuple[int, bytes], PreparedCertificate]] = {}
        self._commit_certs: dict[int, CommitCertificate] = {}
        self._payloads: dict[tuple[int, bytes], bytes] = {}
        # Honest endpoints seen sending a COMMIT, by height (the adaptive split's first side).
        self._committed: dict[int, set[int]] = {}
        # What was sent already: (what, height, view, destination) -> times.
        self._sent: dict[tuple[str, int, int, int], int] = {}
        # (height, view) -> endpoints that got a NEW-VIEW built here instead of the engine's.
        self._replaced: dict[tuple[int, int], set[int]] = {}
        self._forged_proposals: dict[tuple[int, int], PrePrepare] = {}
        # How many messages of each kind of forgery were built (for tests and reports).
        self.built: Counter[str] = Counter()
        # lock-split (steering.py): one plan for the colluding validators, and the simulated time.
        self.splitter = LockSplitter(chain_id, validators_at, fault_window_ms)
        self.now = 0

    # -- what the adversary learns ------------------------------------------------------------

    def learn(self, msg: Message, endpoint_of: Callable[[bytes], int | None]) -> None:
        """Remember what `msg` (delivered to, or sent by, a Byzantine validator) tells the adversary."""
        h = msg.height
        if h > self._top:
            self._top = h
            self._prune()
        elif h < self._top - _KEEP_HEIGHTS:
            return
        self.splitter.learn(msg)
        if type(msg) is ViewChange:
            self._vcs.setdefault((h, msg.view), {}).setdefault(msg.sender, msg.stripped())
            if msg.prepared is not None and msg.sender not in self._byzantine_ids:
                self._certs.setdefault(h, {})[(msg.prepared.view, msg.prepared.digest)] = msg.prepared
                if msg.payload is not None:
                    self._payloads[(h, msg.prepared.digest)] = msg.payload
        elif type(msg) is Prepare:
            sigs = self._prepares.setdefault((h, msg.view, msg.digest), {})
            sigs[msg.sender] = msg.signature
            if len(sigs) >= self._validators_at(h).quorum and msg.sender not in self._byzantine_ids:
                cert = PreparedCertificate(height=h, view=msg.view, digest=msg.digest,
                                           votes=tuple(sorted(sigs.items())))
                self._certs.setdefault(h, {})[(msg.view, msg.digest)] = cert
        elif type(msg) is PrePrepare:
            self._payloads[(h, msg.digest)] = msg.payload
        elif type(msg) is NewView:
            self._payloads[(h, msg.pre_prepare.digest)] = msg.pre_prepare.payload
        elif type(msg) is Commit:
            index = endpoint_of(msg.sender)
            if index is not None:
                self._committed.setdefault(h, set()).add(index)
        elif type(msg) is Decision:
            self._commit_certs.setdefault(h, msg.certificate)

    def _prune(self) -> None:
        low = self._top - _KEEP_HEIGHTS
        _drop_keys(self._vcs, lambda k: k[0] < low)
        _drop_keys(self._prepares, lambda k: k[0] < low)
        _drop_keys(self._payloads, lambda k: k[0] < low)
        _drop_keys(self._replaced, lambda k: k[0] < low)
        _drop_keys(self._forged_proposals, lambda k: k[0] < low)
        _drop_keys(self._certs, lambda k: k < low)
        _drop_keys(self._commit_certs, lambda k: k < low)
        _drop_keys(self._committed, lambda k: k < low)
        _drop_keys(self._sent, lambda k: k[1] < low)

    # -- reactions to what a Byzantine validator receives ---------------------------------------

    def react(self, ep: Endpoint, msg: Message, everyone: Sequence[Endpoint]) -> Out:
        """Messages `ep` sends at once because `msg` reached it."""
        b = ep.behaviours
        out: Out = []
        if "lock-split" in b:
            if ep.engine is not None:
                self.splitter.choose(ep, ep.engine.height, self.now)
            if self.splitter.plays(ep) and type(msg) is ViewChange and msg.height == self.splitter.height:
                out += self.splitter.join(ep, msg, everyone)
                if msg.view == STEER_VIEW:
                    out += self.splitter.new_view(ep, everyone)
                    if out:
                        self._replaced.setdefault((msg.height, STEER_VIEW), set()).update(d.index for d, _ in out)
                        self.built["lock-split:new-view"] += 1
        if type(msg) is not ViewChange or msg.height < self._top - _KEEP_HEIGHTS:
            return out
        if "relabel-new-view" in b and msg.sender not in self._byzantine_ids:
            out += self._relabel(ep, msg, everyone)
        if b & _NEW_VIEW_BUILDERS and self._is_primary(ep, msg.height, msg.view):
            out += self._build_new_views(ep, msg.height, msg.view, everyone)
        return out

    def _is_primary(self, ep: Endpoint, height: int, view: int) -> bool:
        return self._validators_at(height).primary(height, view) == ep.signer.public_key

    def _once(self, what: str, height: int, view: int, dest: int, times: int = 1) -> bool:
        key = (what, height, view, dest)
        done = self._sent.get(key, 0)
        if done >= times:
            return False
        self._sent[key] = done + 1
        return True

    def _proposal(self, ep: Endpoint, height: int, view: int, digest: bytes | None, tag: str) -> PrePrepare | None:
        """Our signed PRE-PREPARE of `digest` (whose payload we must know), or of a new block if None.

        The new block is one per (height, view), so that every validator fooled in that view
        prepares the same one and it can gather a quorum."""
        if digest is None:
            known_pp = self._forged_proposals.get((height, view))
            if known_pp is not None:
                return known_pp
            payload = self._block(height, view, ep.validator, f"{tag}-{self._rng.getrandbits(32):08x}")
            digest = hashlib.sha256(payload).digest()
            self._payloads[(height, digest)] = payload
        else:
            known = self._payloads.get((height, digest))
            if known is None:
                return None
            payload = known
        pp = sign_message(PrePrepare(chain_id=self._chain_id, height=height, view=view, sender=ep.signer.public_key,
                                     digest=digest, payload=payload), ep.signer)
        if (height, view) not in self._forged_proposals:
            self._forged_proposals[(height, view)] = pp
        return pp

    def _new_view(self, ep: Endpoint, height: int, view: int, vcs: Sequence[ViewChange],
                  pp: PrePrepare) -> NewView | None:
        try:
            nv = NewView(chain_id=self._chain_id, height=height, view=view, sender=ep.signer.public_key,
                         view_changes=tuple(sorted(vcs, key=lambda vc: vc.sender)), pre_prepare=pp)
        except ValueError:
            return None  # not even well-formed: nobody would decode it
        return sign_message(nv, ep.signer)

    def _votes_for(self, ep: Endpoint, height: int, view: int, digest: bytes) -> list[Message]:
        me = ep.signer.public_key
        return [sign_message(Prepare(chain_id=self._chain_id, height=height, view=view, sender=me, digest=digest),
                             ep.signer),
                sign_message(Commit(chain_id=self._chain_id, height=height, view=view, sender=me, digest=digest),
                             ep.signer)]

    def _relabel(self, ep: Endpoint, vc: ViewChange, everyone: Sequence[Endpoint]) -> Out:
        """The issue-14 attack: one checked signature stands for a quorum, the lock disappears."""
        h = vc.height
        validators = self._validators_at(h)
        me = ep.signer.public_key
        if vc.sender not in validators or me not in validators:
            return []
        view = next((w for w in range(vc.view, vc.view + validators.n) if validators.primary(h, w) == me), None)
        if view is None or view < 1:
            return []
        victims = [d for d in everyone if d.signer.public_key == vc.sender and d.honest]
        if not victims or not self._once("relabel", h, view, victims[0].index, times=2):
            return []
        others = [v for v in validators if v != vc.sender]
        self._rng.shuffle(others)
        senders = [vc.sender] + others[: validators.quorum - 1]
        if self._rng.random() < 0.5:
            # The victim's own signature under every sender.
            signatures = {s: vc.signature for s in senders}
        else:
            # Each sender's own signature from a view change the victim has seen (any view),
            # re-embedded with view w and no certificate; the victim's own where we know no other.
            signatures = {s: vc.signature for s in senders}
            for (height, _), by_sender in self._vcs.items():
                if height == h:
                    for s in senders:
                        if s in by_sender:
                            signatures[s] = by_sender[s].signature
        forged = [ViewChange(chain_id=self._chain_id, height=h, view=view, sender=s, signature=signatures[s])
                  for s in senders]
        pp = self._proposal(ep, h, view, None, "relabel")
        assert pp is not None
        nv = self._new_view(ep, h, view, forged, pp)
        if nv is None:
            return []
        self._replaced.setdefault((h, view), set()).update(v.index for v in victims)
        self.built["relabel-new-view"] += len(victims)
        return [(v, m) for v in victims for m in [nv, *self._votes_for(ep, h, view, pp.digest)]]

    def _build_new_views(self, ep: Endpoint, height: int, view: int, everyone: Sequence[Endpoint]) -> Out:
        """As primary of (height, view): NEW-VIEWs of our own making, one per honest validator."""
        validators = self._validators_at(height)
        quorum = validators.quorum
        known = [vc for s, vc in self._vcs.get((height, view), {}).items() if s in validators]
        if len(known) < quorum - 1:
            return []
        b = ep.behaviours
        modes = []
        if "lock-hiding-primary" in b and len(known) >= quorum:
            modes += ["hide", "hide-and-replace"]
        if "forge-new-view" in b:
            modes += ["short"]
            if len(known) >= quorum:
                modes += ["strip", "swap-cert", "old-view", "wrong-block"]
        if not modes:
            return []
        out: Out = []
        for dest in everyone:
            if not dest.honest or dest.signer.public_key not in validators:
                continue
            if self._sent.get(("new-view", height, view, dest.index), 0) >= 2:
                continue
            mode = self._rng.choice(modes)
            nv = self._forged_new_view(ep, height, view, known, mode)
            if nv is None:
                continue  # nothing to forge from yet: try again with the next view change
            self._once("new-view", height, view, dest.index, times=2)
            self.built[f"new-view:{mode}"] += 1
            self._replaced.setdefault((height, view), set()).add(dest.index)
            out += [(dest, m) for m in [nv, *self._votes_for(ep, height, view, nv.pre_prepare.digest)]]
        return out

    def _forged_new_view(self, ep: Endpoint, height: int, view: int, known: list[ViewChange],
                         mode: str) -> NewView | None:
        rng = self._rng
        quorum = self._validators_at(height).quorum

        def cert_view(vc: ViewChange) -> int:
            return vc.prepared.view if vc.prepared is not None else -1

        if mode in ("hide", "hide-and-replace"):
            # Any quorum is a legal proof; this one honours as few locks as it can.
            chosen = sorted(known, key=lambda vc: (cert_view(vc), vc.sender))[:quorum]
            highest = max(chosen, key=cert_view)
            lock = highest.prepared.digest if highest.prepared is not None and mode == "hide" else None
            pp = self._proposal(ep, height, view, lock, "hide")
            return None if pp is None else self._new_view(ep, height, view, chosen, pp)
        if mode == "short":
            # One short of a quorum, and lock-free: our own view change signed again without a
            # certificate, and honest ones that hold none.
            me = ep.signer.public_key
            free = [vc for vc in known if vc.prepared is None and vc.sender != me]
            if len(free) < quorum - 2:
                return None
            own = sign_message(ViewChange(chain_id=self._chain_id, height=height, view=view, sender=me), ep.signer)
            chosen = [own, *free[:quorum - 2]]
        else:
            chosen = sorted(known, key=lambda vc: (-cert_view(vc), vc.sender))[:quorum]
        digest: bytes | None = None
        if mode == "strip":
            chosen = [_replace(vc, prepared=None) if vc.prepared is not None else vc for vc in chosen]
            if all(vc.prepared is None for vc in known):
                return None  # nothing to strip: this would be a legal NEW-VIEW
        elif mode == "swap-cert":
            certs = list(self._certs.get(height, {}).values())
            certs = [c for c in certs if c.view < view]
            if not certs:
                return None
            i = rng.randrange(len(chosen))
            new = rng.choice(certs)
            if chosen[i].prepared == new:
                return None
            chosen[i] = _replace(chosen[i], prepared=new)
            top = max(chosen, key=cert_view).prepared
            assert top is not None  # chosen[i] now holds one
            digest = top.digest
        elif mode == "old-view":
            earlier = [(v, vcs) for (h, v), vcs in self._vcs.items() if h == height and v < view]
            if not earlier:
                return None
            old_view, vcs = rng.choice(earlier)
            if len(vcs) < quorum:
                return None
            chosen = []
            for vc in list(vcs.values())[:quorum]:
                prepared = vc.prepared if vc.prepared is None or vc.prepared.view < view else None
                chosen.append(_replace(vc, view=view, prepared=prepared))
        elif mode == "wrong-block":
            if all(vc.prepared is None for vc in chosen):
                return None  # a new block would be legal here
        pp = self._proposal(ep, height, view, digest, mode)
        if pp is None:
            return None
        return self._new_view(ep, height, view, chosen, pp)

    # -- rewriting what a Byzantine validator's engine sends ----------------------------------

    def outgoing(self, ep: Endpoint, msg: Message, out: Out) -> Out:
        """Rewrite `out` (the traffic the older behaviours made of `msg`) with the forging behaviours."""
        b = ep.behaviours
        me = ep.signer.public_key
        if msg.sender != me:
            return out
        kind = type(msg)
        if kind is NewView:
            replaced = self._replaced.get((msg.height, msg.view), set())
            if replaced:
                out = [(d, m) for d, m in out if d.index not in replaced]
        if kind is ViewChange and "lying-view-change" in b:
            assert isinstance(msg, ViewChange)
            out = [(d, self._lying_view_change(ep, m) if type(m) is ViewChange and not d.behaviours else m)
                   for d, m in out]
        if kind is ViewChange and "lock-split" in b and msg.height == self.splitter.height and self.splitter.plays(ep):
            out = [(d, self.splitter.own_view_change(ep, m) if type(m) is ViewChange else m)
                   for d, m in out]
        if "inner-signature" in b and kind in (ViewChange, NewView, Decision):
            out = [(d, self.corrupt_inner(ep, m) if self._rng.random() < 0.5 and not d.behaviours else m)
                   for d, m in out]
        return out

    def _lying_view_change(self, ep: Endpoint, vc: Message) -> Message:
        assert isinstance(vc, ViewChange)
        rng = self._rng
        h, w = vc.height, vc.view
        mode = rng.choice(["hide", "stale", "relabel-view", "true"])
        prepared: PreparedCertificate | None = vc.prepared
        if mode == "hide":
            prepared = None
        elif mode == "stale":
            certs = sorted((c for c in self._certs.get(h, {}).values() if c.view < w), key=lambda c: c.view)
            prepared = certs[0] if certs else None
        elif mode == "relabel-view":
            prepared = self._relabelled_certificate(h, w - 1)
            if prepared is None:
                return vc
        else:
            return vc
        if prepared == vc.prepared:
            return vc
        self.built[f"view-change:{mode}"] += 1
        payload = None if prepared is None else self._payloads.get((h, prepared.digest))
        try:
            lie = ViewChange(chain_id=vc.chain_id, height=h, view=w, sender=vc.sender, prepared=prepared,
                             payload=payload)
        except ValueError:
            return vc
        return sign_message(lie, ep.signer)

    def _relabelled_certificate(self, height: int, view: int) -> PreparedCertificate | None:
        """A "prepared certificate" of `view` made of PREPARE signatures of other views (valid only
        to an engine that checks a certificate without its view)."""
        quorum = self._validators_at(height).quorum
        by_digest: dict[bytes, dict[bytes, bytes]] = {}
        for (h, v, digest), sigs in sorted(self._prepares.items(), key=lambda kv: kv[0][1]):
            if h == height and v != view:
                by_digest.setdefault(digest, {}).update(sigs)
        choices = sorted((d for d, sigs in by_digest.items() if len(sigs) >= quorum))
        if not choices or view < 0:
            return None
        digest = self._rng.choice(choices)
        return PreparedCertificate(height=height, view=view, digest=digest, votes=tuple(sorted(by_digest[digest].items())))

    def corrupt_inner(self, ep: Endpoint, msg: Message) -> Message:
        """`msg` with one inner signature corrupted and a valid outer signature."""
        rng = self._rng
        kind = type(msg)
        if kind is ViewChange:
            assert isinstance(msg, ViewChange)
            if msg.prepared is None:
                return msg
            changed: Message = _replace(msg, prepared=_corrupt_vote(msg.prepared, rng), signature=b"")
        elif kind is Decision:
            assert isinstance(msg, Decision)
            changed = _replace(msg, certificate=_corrupt_vote(msg.certificate, rng), signature=b"")
        else:
            assert isinstance(msg, NewView)
            if rng.random() < 0.5:
                pp = _replace(msg.pre_prepare, signature=flip(msg.pre_prepare.signature))
                changed = _replace(msg, pre_prepare=pp, signature=b"")
            else:
                vcs = list(msg.view_changes)
                i = rng.randrange(len(vcs))
                vcs[i] = _replace(vcs[i], signature=flip(vcs[i].signature))
                changed = _replace(msg, view_changes=tuple(vcs), signature=b"")
        self.built[f"inner-signature:{kind.__name__}"] += 1
        return sign_message(changed, ep.signer)

    # -- the network, within its model ----------------------------------------------------------

    def favoured(self, height: int) -> frozenset[int]:
        """The honest side the adversary serves first: those seen committing at `height`, else the static split."""
        committed = self._committed.get(height)
        return frozenset(committed) if committed else self._static_split

    def extra_delay(self, src: Endpoint, dest: Endpoint, msg: Message, now: int) -> int:
        """Milliseconds the adversary adds to this message (0 outside the fault window)."""
        if now >= self._fault_window_ms or dest.behaviours:
            return 0
        side = self.favoured(msg.height)
        if src.behaviours:
            if "adaptive-split" not in src.behaviours or dest.index in side:
                return 0
            self.built["delay:own"] += 1
            return self._rng.randint(MAX_TARGETED_DELAY_MS // 2, MAX_TARGETED_DELAY_MS)
        # View changes, and the DECISIONs that would let a validator skip one.
        around_view_change = type(msg) in (ViewChange, NewView, Decision) or msg.view > 0
        if not around_view_change or (src.index in side) == (dest.index in side):
            return 0
        self.built["delay:honest"] += 1
        return self._rng.randint(0, MAX_TARGETED_DELAY_MS)

    # -- block sync -----------------------------------------------------------------------------

    def serve_sync(self, server: Endpoint, from_height: int) -> list[SyncedBlock] | None:
        """What a Byzantine sync server sends a validator that has everything below `from_height`
        (None: no answer at all)."""
        rng = self._rng
        chain = server.chain
        mode = rng.choice(["withhold", "stale", "wrong-payload", "foreign-cert", "forged-cert", "short-cert",
                           "prepared-as-commit", "honest"])
        self.built[f"sync:{mode}"] += 1
        if mode == "withhold":
            return None
        if mode == "stale":
            return []
        h = from_height
        alt = self._block(h, 0, server.validator, f"sync-{rng.getrandbits(32):08x}")
        alt_digest = hashlib.sha256(alt).digest()
        real = chain[h - 1] if len(chain) >= h else None
        if mode == "honest":
            return [(i + 1, d, p, c) for i, (d, p, c) in enumerate(chain[h - 1:h + 4], start=h - 1)]
        if mode == "wrong-payload" and real is not None:
            return [(h, real[0], alt, real[2])]
        if mode == "foreign-cert" and len(chain) >= 1:
            _, _, cert = chain[rng.randrange(len(chain))]
            if cert.height != h:
                return [(h, cert.digest, alt, cert)]
        if mode == "short-cert" and real is not None:
            cert = real[2]
            return [(h, real[0], real[1], CommitCertificate(height=h, view=cert.view, digest=cert.digest,
                                                            votes=cert.votes[:-1]))]
        if mode == "prepared-as-commit":
            for (view, digest), prepared in sorted(self._certs.get(h, {}).items()):
                payload = self._payloads.get((h, digest))
                if payload is not None:
                    return [(h, digest, payload, CommitCertificate(height=h, view=view, digest=digest,
                                                                   votes=prepared.votes))]
        # forged-cert, or the fallback of a mode that had nothing to work with.
        votes = tuple(sorted((v, rng.randbytes(64)) for v in self._validators_at(h)))
        if real is not None and rng.random() < 0.5:
            return [(h, alt_digest, alt, _corrupt_vote(CommitCertificate(height=h, view=real[2].view,
                                                                         digest=alt_digest, votes=real[2].votes),
                                                       rng))]
        return [(h, alt_digest, alt, CommitCertificate(height=h, view=0, digest=alt_digest, votes=votes))]
