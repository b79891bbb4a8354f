"""Transaction envelopes: signing, hashing and every stateless rejection."""

import msgpack
import pytest
from hypothesis import given, strategies as st

from node.app.registry import check_tx_body
from node.core.crypto import Identity
from node.core.encoding import canonical
from node.chain.tx import MAX_TX_BYTES, Transaction, TxRejected, check_signature, decode_tx

CHAIN = "test-chain"


def make(ident=None, **over):
    ident = ident or Identity.from_seed(b"\x01" * 32)
    fields = dict(chain_id=CHAIN, type="identity.register", nonce=1, body={"role": "patient"})
    fields.update(over)
    return Transaction.create(ident, **fields)


def test_round_trip_and_hash_is_canonical():
    tx = make()
    back = decode_tx(tx.encoded, chain_id=CHAIN)
    assert back == tx and back.hash == tx.hash
    check_signature(back)
    # the same transaction with its body map written in another key order has the same hash
    ident = Identity.from_seed(b"\x02" * 32)
    tx2 = make(ident, body={"role": "practitioner", "label": "Dr Who"})
    body = {"role": "practitioner", "label": "Dr Who"}
    raw = msgpack.packb([CHAIN, tx2.type, tx2.sender, tx2.nonce, body, tx2.signature], use_bin_type=True)
    assert raw != tx2.encoded
    assert decode_tx(raw, chain_id=CHAIN).hash == tx2.hash


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda v: v[:5], "malformed_tx"),
        (lambda v: [7] + v[1:], "malformed_tx"),
        (lambda v: ["other-chain"] + v[1:], "wrong_chain"),
        (lambda v: v[:2] + [b"short"] + v[3:], "malformed_tx"),
        (lambda v: v[:3] + [0] + v[4:], "malformed_tx"),
        (lambda v: v[:3] + [True] + v[4:], "malformed_tx"),
        (lambda v: v[:4] + [[1, 2]] + v[5:], "malformed_tx"),
        (lambda v: v[:5] + [b"x" * 10], "malformed_tx"),
    ],
)
def test_shape_rejections(mutate, code):
    tx = make()
    value = [tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]
    with pytest.raises(TxRejected) as err:
        decode_tx(canonical(mutate(value)), chain_id=CHAIN)
    assert err.value.code == code


def test_garbage_and_oversize():
    with pytest.raises(TxRejected) as err:
        decode_tx(b"\xc1\xc1", chain_id=CHAIN)
    assert err.value.code == "malformed_msgpack"
    big = make(body={"role": "patient", "pad": "x" * (MAX_TX_BYTES + 10)})
    with pytest.raises(TxRejected) as err:
        decode_tx(big.encoded, chain_id=CHAIN)
    assert err.value.code == "malformed_msgpack"  # over the byte bound before it is even parsed


def test_bad_signature():
    tx = make()
    forged = canonical([tx.chain_id, tx.type, tx.sender, tx.nonce, {"role": "institution"}, tx.signature])
    with pytest.raises(TxRejected) as err:
        check_signature(decode_tx(forged, chain_id=CHAIN))
    assert err.value.code == "bad_signature"


@pytest.mark.parametrize(
    "tx_type, body, code",
    [
        ("no.such.type", {}, "unknown_type"),
        ("identity.register", {}, "invalid_body"),
        ("identity.register", {"role": "king"}, "invalid_role"),
        ("identity.register", {"role": 3}, "invalid_body"),
        ("identity.register", {"role": "patient", "label": "Jane Doe"}, "invalid_body"),
        ("identity.register", {"role": "practitioner", "extra": 1}, "invalid_body"),
    ],
)
def test_body_rejections(tx_type, body, code):
    with pytest.raises(TxRejected) as err:
        check_tx_body(make(type=tx_type, body=body))
    assert err.value.code == code


@given(st.text(max_size=40), st.text(min_size=1, max_size=64), st.integers(1, 2**63 - 1),
       st.dictionaries(st.text(max_size=10), st.integers(-5, 2**40) | st.binary(max_size=300) | st.text(max_size=50), max_size=6))
def test_signed_bytes_cut_from_the_envelope_equal_the_encoded_signed_array(chain_id, tx_type, nonce, body):
    ident = Identity.from_seed(b"\x07" * 32)
    tx = Transaction.create(ident, chain_id=chain_id, type=tx_type, nonce=nonce, body=body)
    assert tx.signing_bytes() == Transaction.signing_bytes_of(chain_id, tx_type, ident.public_key, nonce, body)
    check_signature(decode_tx(tx.encoded, chain_id=chain_id))
