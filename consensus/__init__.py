"""MedLedger's consensus: PBFT agreement on one block per height, as a pure state machine.

The package does no IO (`tests/unit/consensus/test_purity.py`): `consensus.engine.Engine` takes
events (messages whose outer signature the runtime verified, timers, answers about blocks) and
returns actions (persist, send, set a timer, commit a block); the node runtime and the simulator
run those actions. `docs/consensus.md` is the full description and the safety argument.

Theory of operation
-------------------
Heights are decided one after another. At height h the engine runs views 0, 1, 2, ...; the
primary of view v is validator (h + v) mod n. Views start again at 0 at every height, so view
numbers never accumulate across heights, and the view timeout (base * 2^v, capped) is back at
its base value as soon as a height is final.

Normal case, in view v:

1. The primary asks the runtime for a block (`RequestProposal`), signs a PRE-PREPARE for it,
   persists it and broadcasts it. (In a view after 0 the proposal travels inside NEW-VIEW.)
2. A validator that accepts the primary's proposal asks the runtime to validate the block
   (`ValidateBlock`); when told it is good it persists and broadcasts PREPARE(h, v, digest).
   It never prepares two blocks in one view.
3. With a quorum of matching PREPAREs (its own among them) it holds a prepared certificate; it
   persists its COMMIT together with that certificate and broadcasts the COMMIT.
4. A quorum of COMMITs for one digest, in any view of the height, makes the block final: the
   engine emits `CommitBlock` with the commit certificate and moves to height h + 1.

View change:

5. When the view timer fires before the height is final, the validator stops voting in view v,
   persists and broadcasts VIEW-CHANGE(h, v + 1) carrying the highest prepared certificate it
   holds (and that block's payload). From then on it never votes in a view below v + 1.
6. A validator that sees VIEW-CHANGEs for views above its own from f + 1 validators (so from at
   least one honest one) joins: it sends VIEW-CHANGE for the highest view that f + 1 of them
   reached. This pulls in validators that are lagging without letting f Byzantine ones push
   anybody to a new view.
7. The timer of a view change to w is armed only once a quorum has asked for view w or later;
   if NEW-VIEW does not arrive in time the validator asks for w + 1 (timeout doubled). Without
   a reachable quorum the views therefore stop climbing, instead of climbing with the clock.
8. The primary of w, holding a quorum of VIEW-CHANGE(h, w), takes the highest prepared
   certificate among them. If there is one it must re-propose that block; otherwise it asks
   the runtime for a new one. It broadcasts NEW-VIEW(h, w) with the view changes as proof and
   its PRE-PREPARE for w. Validators check the proof and the choice, enter view w, and go on
   as in step 2.

Why this is safe: a block committed in view v has a quorum of COMMITs, so a quorum of
validators prepared it in v. Any quorum of VIEW-CHANGEs for a later view shares an honest
validator with that quorum, and that validator reports a prepared certificate of view >= v,
which (by induction over the views) names the same block; so every later NEW-VIEW must
re-propose it. `docs/consensus.md` gives the whole argument.

Legal transitions of one height
-------------------------------
`consensus.height.TRANSITIONS` lists them as data: (phase, event) -> the phases that may follow,
one row per line of the table in the docstring of `consensus.height`; a test holds the engine to it. Views
only grow within a height; an internal step that would lower one is a bug and raises.

What the engine accepts from a peer
-----------------------------------
Every message gets a `Verdict`: "process", "stash" (for the next height or a later view; kept
in bounded memory and replayed when the engine gets there) or "discard" with a reason. Bad
input from a peer never raises; a contract broken by this node's runtime raises
`LocalProtocolError`. Two signed conflicting votes from one validator become `Evidence`.

A validator that has fallen behind learns of it in two ways: a validator that receives its
message for the height just finalized answers with a DECISION (block and certificate), at most
once per peer per resend interval; and when f + 1 validators are seen two or more heights
ahead, the engine emits `NeedSync` so the runtime fetches the blocks.

Modules
-------
* `engine`: the state machine (events in, actions out); `config`: its tunables.
* `height`: the state of the height being decided (`HeightState`, the `Phase` enum, named
  records, the `TRANSITIONS` table); `votes`: the PREPAREs or COMMITs of one height (`VoteSet`).
* `view_change`: the pure part of a view change (which certificate wins, which quorum a new
  primary encloses, whether a VIEW-CHANGE or a NEW-VIEW is valid).
* `schedule`: the validator set of each coming height; `validators`: one set, its primary of a
  view and its quorum sizes.
* `peers`: how far the other validators are, and when to ask for block sync; `decision`: the
  last final block and the DECISION that tells a validator one height behind; `resend`: the
  votes sent again on the resend timer; `stash`: messages kept for a later height or view.
* `messages`, `certificate`, `encoding`, `wal`: what is signed, sent and persisted;
  `actions`, `verdict`, `evidence`, `errors`, `crypto`: the contract with the runtime.
* `simulation/`: the deterministic simulator (`python -m consensus.simulation`).
"""
