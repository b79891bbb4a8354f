"""What a validator sends again while a height is not final: its own latest votes.

Messages may be lost; instead of acknowledgements, every validator periodically re-sends what
it signed in the current view (its VIEW-CHANGE, or its proposal to those who have not prepared
and its PREPARE) and its latest COMMIT. Only the next primary needs a view change's block
payload; everyone else gets the small version.
"""

from __future__ import annotations

from consensus.actions import Action, Broadcast, Send
from consensus.height import HeightState
from consensus.messages import Message


def own_votes(h: HeightState, me: bytes) -> list[Action]:
    """The broadcasts and sends that repeat our own votes at height `h`."""
    out: list[Action] = []
    if h.in_view_change:
        vc = h.my_view_change.get(h.view)
        if vc is not None:
            if vc.payload is None:
                out.append(Broadcast(message=vc))
            else:
                primary = h.validators.primary(h.height, h.view)
                light = vc.stripped()
                out += [Send(to=v, message=vc if v == primary else light) for v in h.validators if v != me]
    else:
        proposal: Message | None = h.my_new_view.get(h.view) or h.my_pre_prepare.get(h.view)
        if proposal is not None:
            out += [Send(to=v, message=proposal) for v in h.validators
                    if v != me and not h.prepares.voted(h.view, v)]
        if h.view in h.my_prepare:
            out.append(Broadcast(message=h.my_prepare[h.view]))
    if h.my_commit:
        out.append(Broadcast(message=h.my_commit[max(h.my_commit)]))
    return out
