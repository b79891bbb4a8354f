"""Signed transaction envelopes and their stateless checks.

On the wire a transaction is the msgpack array
``[chain_id, type, sender, nonce, body, signature]``; the signature covers the canonical
encoding of ``["medledger-tx-v1", chain_id, type, sender, nonce, body]``. A transaction's hash is
SHA-256 of its canonical wire encoding, so a client that re-orders map keys still gets the hash
the node reports. Stateless checks (shape, sizes, chain id, known type, body shape, signature)
happen once, at admission; everything that depends on the ledger is checked at execution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from node.core.crypto import KEY_SIZE, SIGNATURE_SIZE, Identity, sha256, verify
from node.core.errors import CodedError
from node.core.encoding import DecodeError, canonical, decode_canonical

TX_DOMAIN = "medledger-tx-v1"
MAX_TX_BYTES = 64 * 1024
MAX_NONCE = (1 << 63) - 1
MAX_TYPE_LEN = 64


_ARRAY6 = b"\x96"  # msgpack fixarray of 6 items: both the envelope and the signed array
_SIG_HEADER = b"\xc4" + bytes([SIGNATURE_SIZE])  # msgpack bin8 header of a signature
_SIG_TAIL = len(_SIG_HEADER) + SIGNATURE_SIZE
_SIGNED_PREFIX = _ARRAY6 + canonical(TX_DOMAIN)


class TxRejected(CodedError, ValueError):
    """A client's transaction fails a stateless check; `code` is the stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    """A decoded transaction envelope. Build with `Transaction.create` or `decode_tx`."""

    chain_id: str
    type: str
    sender: bytes
    nonce: int
    body: dict[str, Any]
    signature: bytes
    encoded: bytes = field(repr=False, compare=False)
    hash: bytes = field(compare=False)

    @staticmethod
    def signing_bytes_of(chain_id: str, type_: str, sender: bytes, nonce: int, body: dict[str, Any]) -> bytes:
        return canonical([TX_DOMAIN, chain_id, type_, sender, nonce, body])

    def signing_bytes(self) -> bytes:
        # The envelope is the signed array with the domain tag dropped and the signature
        # appended, so the signed bytes are cut from `encoded` instead of encoded again.
        e = self.encoded
        if e[:1] == _ARRAY6 and e[-_SIG_TAIL:-SIGNATURE_SIZE] == _SIG_HEADER:
            return _SIGNED_PREFIX + e[1:-_SIG_TAIL]
        return self.signing_bytes_of(self.chain_id, self.type, self.sender, self.nonce, self.body)

    @classmethod
    def create(cls, identity: Identity, *, chain_id: str, type: str, nonce: int, body: dict[str, Any]) -> "Transaction":
        """Sign a new transaction with `identity`."""
        sig = identity.sign(cls.signing_bytes_of(chain_id, type, identity.public_key, nonce, body))
        encoded = canonical([chain_id, type, identity.public_key, nonce, body, sig])
        return cls(
            chain_id=chain_id, type=type, sender=identity.public_key, nonce=nonce, body=body,
            signature=sig, encoded=encoded, hash=sha256(encoded),
        )

    @property
    def hash_hex(self) -> str:
        return self.hash.hex()

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly view (bytes as hex)."""
        return {
            "hash": self.hash.hex(),
            "chain_id": self.chain_id,
            "type": self.type,
            "sender": self.sender.hex(),
            "nonce": self.nonce,
            "body": jsonable(self.body),
            "signature": self.signature.hex(),
        }


def jsonable(value: Any) -> Any:
    """Turn a decoded msgpack value into JSON-friendly data (bytes become hex)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def tx_from_value(value: Any, *, chain_id: str, encoded: bytes | None = None) -> Transaction:
    """Check the shape of a decoded envelope and build the Transaction (signature NOT yet checked)."""
    if not isinstance(value, list) or len(value) != 6:
        raise TxRejected("malformed_tx", "a transaction is an array of 6 fields [chain_id, type, sender, nonce, body, signature]")
    c, t, sender, nonce, body, sig = value
    if not isinstance(c, str):
        raise TxRejected("malformed_tx", "chain_id must be a string")
    if c != chain_id:
        raise TxRejected("wrong_chain", f"transaction is for chain {c[:64]!r}, this node serves {chain_id!r}")
    if not isinstance(t, str) or not 0 < len(t) <= MAX_TYPE_LEN:
        raise TxRejected("malformed_tx", "type must be a non-empty string")
    if not isinstance(sender, bytes) or len(sender) != KEY_SIZE:
        raise TxRejected("malformed_tx", f"sender must be a {KEY_SIZE}-byte public key")
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 < nonce <= MAX_NONCE:
        raise TxRejected("malformed_tx", f"nonce must be an integer from 1 to {MAX_NONCE}")
    if not isinstance(body, dict):
        raise TxRejected("malformed_tx", "body must be a map")
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_SIZE:
        raise TxRejected("malformed_tx", f"signature must be {SIGNATURE_SIZE} bytes")
    if encoded is None:
        encoded = canonical(value)
    if len(encoded) > MAX_TX_BYTES:
        raise TxRejected("tx_too_large", f"transaction of {len(encoded)} bytes exceeds {MAX_TX_BYTES}")
    return Transaction(chain_id=c, type=t, sender=sender, nonce=nonce, body=body, signature=sig,
                       encoded=encoded, hash=sha256(encoded))


def decode_tx(data: bytes, *, chain_id: str) -> Transaction:
    """Decode a transaction's wire bytes and check its shape (signature NOT yet checked)."""
    try:
        value, encoded = decode_canonical(data, max_bytes=MAX_TX_BYTES, max_items=4096)
    except DecodeError as exc:
        raise TxRejected("malformed_msgpack", str(exc)) from None
    return tx_from_value(value, chain_id=chain_id, encoded=encoded)


def signature_holds(tx: Transaction) -> bool:
    """Whether the envelope's signature is valid (safe to call from several threads)."""
    return verify(tx.sender, tx.signing_bytes(), tx.signature)


def check_signature(tx: Transaction) -> None:
    """Raise TxRejected unless the envelope's signature is valid."""
    if not signature_holds(tx):
        raise TxRejected("bad_signature", "the signature does not match the sender and contents")
