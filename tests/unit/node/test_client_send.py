"""`Client.send` when a parallel call with the same key and body signed the very same bytes:
the copy refused as `already_committed` reports the commit, which is its own transaction."""

from __future__ import annotations

from typing import Any

from node.chain.tx import Transaction
from node.client import ApiError, Client
from node.core.crypto import Identity

ALICE = Identity.from_seed(b"alice".ljust(32, b"\0"))


class RacedClient(Client):
    """A client whose node already holds the transaction it is about to submit."""

    def __init__(self, refusal: str) -> None:
        super().__init__("http://127.0.0.1:1")
        self.refusal = refusal
        self.waited: list[str] = []

    def make_tx(self, identity: Identity, tx_type: str, body: dict[str, Any], *, nonce: int | None = None) -> Transaction:
        return Transaction.create(identity, chain_id="c", type=tx_type, nonce=7, body=body)

    def submit(self, tx: Transaction) -> dict[str, Any]:
        raise ApiError(409, self.refusal, "refused", {"hash": tx.hash_hex})

    def wait(self, tx_hash: str, timeout: float) -> dict[str, Any]:
        self.waited.append(tx_hash)
        return {"hash": tx_hash, "status": "committed", "height": 3, "index": 0, "result": "ok"}


def test_the_same_bytes_already_committed_is_this_calls_commit() -> None:
    client = RacedClient("already_committed")
    result = client.send(ALICE, "consent.breakglass", {"opt_out": False})
    tx = client.make_tx(ALICE, "consent.breakglass", {"opt_out": False})
    assert result == {"tx_hash": tx.hash_hex, "status": "committed", "result": "ok", "height": 3, "index": 0}
    assert client.waited == [tx.hash_hex]


def test_other_refusals_are_reported_as_they_are() -> None:
    client = RacedClient("not_registered")
    result = client.send(ALICE, "consent.breakglass", {"opt_out": False})
    assert result["status"] == "not_registered" and client.waited == []
