"""A small synchronous client for the MedLedger HTTP API (standard library only).

It is what the CLI uses and what an EHR integration can import:

    from node.client import Client
    from node.keys import load_key_file
    c = Client("http://127.0.0.1:8700")
    me = load_key_file("alice.key")
    outcome = c.submit_and_wait(me, "identity.register", {"role": "patient"})
    print(outcome["status"], outcome["height"])

Errors from the node raise `ApiError` with the node's error code; an unreachable node raises
`NodeUnreachable`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from .core.crypto import Identity
from .core.encoding import canonical
from .tx import Transaction


class ClientError(Exception):
    """Base of the client's errors."""


class NodeUnreachable(ClientError):
    """No answer from the node at that URL."""


class ApiError(ClientError):
    """The node answered with an error: `status` (HTTP), `code`, `message`."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}


class Client:
    """Talk to one node's HTTP API."""

    def __init__(self, base_url: str, *, timeout: float = 40.0) -> None:
        if "://" not in base_url:
            base_url = "http://" + base_url
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._chain_id: str | None = None

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> Any:
        req = urllib.request.Request(self.base_url + path, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {}
            if not isinstance(doc, dict):
                doc = {}
            raise ApiError(exc.code, str(doc.get("error", f"http_{exc.code}")), str(doc.get("message", exc.reason)), doc) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NodeUnreachable(f"cannot reach the node at {self.base_url}: {reason}") from None

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    # -- reads ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self.get("/v1/status")

    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = str(self.status()["chain_id"])
        return self._chain_id

    def account(self, identity_id: str) -> dict[str, Any]:
        return self.get(f"/v1/accounts/{identity_id}")

    def tx(self, tx_hash: str, *, wait_s: int | None = None) -> dict[str, Any]:
        q = f"?wait={wait_s}" if wait_s else ""
        return self.get(f"/v1/txs/{tx_hash}{q}")

    def tx_proof(self, tx_hash: str) -> dict[str, Any]:
        return self.get(f"/v1/txs/{tx_hash}/proof")

    def block(self, height: int | str) -> dict[str, Any]:
        return self.get(f"/v1/blocks/{height}")

    # -- writes ---------------------------------------------------------------------------
    def next_nonce(self, identity: Identity) -> int:
        """A nonce above every one this identity used: the ledger's last, or the clock in ms."""
        last = int(self.account(identity.id)["nonce"])
        return max(last + 1, time.time_ns() // 1_000_000)

    def make_tx(self, identity: Identity, tx_type: str, body: dict[str, Any], *, nonce: int | None = None) -> Transaction:
        return Transaction.create(
            identity, chain_id=self.chain_id, type=tx_type, nonce=nonce or self.next_nonce(identity), body=body
        )

    def submit(self, tx: Transaction) -> dict[str, Any]:
        """Submit one transaction; return {"hash", "status": "pending"} or raise ApiError."""
        return self._request("POST", "/v1/txs", tx.encoded, "application/msgpack")

    def submit_many(self, txs: list[Transaction]) -> dict[str, Any]:
        payload = canonical([_value_of(t) for t in txs])
        return self._request("POST", "/v1/txs", payload, "application/msgpack")

    def wait(self, tx_hash: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the transaction is committed (or the timeout passes); return its status."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            status = self.tx(tx_hash, wait_s=max(1, min(int(left), 30)))
            if status.get("status") == "committed" or time.monotonic() >= deadline:
                return status

    def submit_and_wait(self, identity: Identity, tx_type: str, body: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        """Sign, submit and wait for the commit: {"tx_hash", "status", "height", "result"}."""
        tx = self.make_tx(identity, tx_type, body)
        self.submit(tx)
        status = self.wait(tx.hash_hex, timeout)
        return outcome(tx.hash_hex, status)


def outcome(tx_hash: str, status: dict[str, Any]) -> dict[str, Any]:
    """The CLI's JSON for a submitted transaction: status is committed, pending or an error code."""
    if status.get("status") == "committed":
        result = status.get("result", "ok")
        return {"tx_hash": tx_hash, "status": "committed" if result == "ok" else result,
                "result": result, "height": status.get("height"), "index": status.get("index")}
    return {"tx_hash": tx_hash, "status": status.get("status", "pending"), "result": None, "height": None}


def _value_of(tx: Transaction) -> list[Any]:
    return [tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]
