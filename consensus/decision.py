"""The last final block, kept to tell a validator one height behind: the DECISION message.

A validator that sends a message for the height this one just finalized has missed the
commits; it is answered with a DECISION (the block and its commit certificate), signed once
and reused. Without the block's payload (a block obtained by sync without one) there is no
answer, and the validator falls back on block sync.
"""

from __future__ import annotations

from consensus.certificate import CommitCertificate
from consensus.crypto import Signer
from consensus.height import LastDecision
from consensus.messages import Decision, sign_message


class LastBlock:
    """The last final block of this engine, and the DECISION made of it (signed on first use)."""

    def __init__(self) -> None:
        self._last: LastDecision | None = None
        self._message: Decision | None = None

    def set(self, *, view: int, digest: bytes, payload: bytes | None, certificate: CommitCertificate) -> None:
        """A new final block: forget the DECISION of the one before."""
        self._last = LastDecision(view=view, digest=digest, payload=payload, certificate=certificate)
        self._message = None

    def decision(self, chain_id: str, height: int, signer: Signer) -> Decision | None:
        """The DECISION for final block `height` signed by `signer`, or None without its payload."""
        last = self._last
        if last is None or last.payload is None:
            return None
        if self._message is None:
            msg = sign_message(Decision(chain_id=chain_id, height=height, view=last.view, sender=signer.public_key,
                                        digest=last.digest, payload=last.payload, certificate=last.certificate),
                               signer)
            assert isinstance(msg, Decision)
            self._message = msg
        return self._message
