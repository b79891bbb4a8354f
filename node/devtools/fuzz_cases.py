"""Seeded fuzz cases for `medledger fuzz`: what to send to one endpoint, and nothing about sending.

A case is a pure function of (seed, endpoint, case index) and of what the node told us about
itself (chain id, validator ids, its peer HELLO), so a failure is reproduced by running the same
seed and endpoint up to the same index. Values come from three sources mixed by a per-case
`random.Random`: pools of values drawn once per run from hypothesis strategies (seeded, no example
database), raw random bytes, and hand-made hostile shapes (huge declared lengths, deep nesting,
truncated encodings, wrong types in otherwise plausible documents, unsigned or signed-but-absurd
transactions, valid-looking but unsigned handshakes).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import msgpack

from p2p import wire

from node.core.crypto import Identity
from node.chain.tx import Transaction

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/octet-stream")
OVERSIZE_BYTES = 17 * 1024 * 1024  # just over the default api.max_body_bytes (16 MiB)

# Path parameter names the API uses, and the query names each kind of route reads.
QUERY_NAMES = ("wait", "since", "limit", "since_ms", "until_ms", "format")
TX_TYPES = (
    "identity.register", "record.add", "record.erase", "consent.grant", "consent.revoke", "consent.breakglass",
    "access.request", "breakglass.review", "patient.set_guardian", "study.register", "study.add_researcher",
    "research.release", "governance.admit_institution",
)


def _b32(rng: random.Random) -> bytes:
    return rng.randbytes(32)


# Plausible bodies per transaction type: the fuzzer mutates these, so that some cases get past
# the shape checks and reach signature checks and, when signed, execution.
def _tx_body(rng: random.Random, tx_type: str) -> dict[str, Any]:
    now = 1_700_000_000_000 + rng.randrange(10**12)
    bodies: dict[str, dict[str, Any]] = {
        "identity.register": {"role": rng.choice(["patient", "practitioner", "researcher", "institution", "x"])},
        "record.add": {"record": _b32(rng), "patient": _b32(rng), "resource_type": "Observation", "hash": _b32(rng),
                       "custodian": _b32(rng)},
        "record.erase": {"record": _b32(rng)},
        "consent.grant": {"grantee_kind": rng.choice(["practitioner", "institution", "study"]), "grantee": _b32(rng),
                          "purposes": ["treatment"], "valid_until": now, "resource_types": ["Observation"]},
        "consent.revoke": {"consent": _b32(rng)},
        "consent.breakglass": {"opt_out": rng.random() < 0.5},
        "access.request": {"record": _b32(rng), "purpose": rng.choice(["treatment", "emergency", "research"]),
                           "reason": "fuzz"},
        "breakglass.review": {"access": _b32(rng), "outcome": rng.choice(["justified", "unjustified"])},
        "patient.set_guardian": {"guardian": _b32(rng) if rng.random() < 0.7 else None},
        "study.register": {"study": "fuzz-" + str(rng.randrange(1000)), "title": "t", "ethics_ref": "e", "until_ms": now},
        "study.add_researcher": {"study": "fuzz-1", "researcher": _b32(rng)},
        "research.release": {"study": "fuzz-1", "custodian": _b32(rng), "researcher": _b32(rng), "patients": [_b32(rng)],
                             "resources": rng.randrange(100), "release_hash": _b32(rng)},
        "governance.admit_institution": {"institution": _b32(rng), "name": "fuzz"},
    }
    return dict(bodies.get(tx_type, {"x": 1}))


@dataclass(frozen=True, slots=True)
class Pools:
    """Values drawn once per run from hypothesis strategies (seeded)."""

    values: tuple[Any, ...]
    texts: tuple[str, ...]

    def value(self, rng: random.Random) -> Any:
        return self.values[rng.randrange(len(self.values))] if self.values else None

    def text(self, rng: random.Random) -> str:
        return self.texts[rng.randrange(len(self.texts))] if self.texts else ""


def hypothesis_pools(seed: int, count: int = 400) -> Pools:
    """Draw `count` msgpack-able values and texts from hypothesis strategies, seeded."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=True)
               | st.text(max_size=40) | st.binary(max_size=80))
    keys = st.text(max_size=12) | st.binary(max_size=8) | st.integers(-5, 5)
    values_strategy = st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=8) | st.dictionaries(keys, inner, max_size=6), max_leaves=24)
    conf = settings(database=None, max_examples=count, deadline=None, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    values: list[Any] = []
    texts: list[str] = []

    @hseed(seed)
    @conf
    @given(values_strategy)
    def draw_values(v: Any) -> None:
        values.append(v)

    @hseed(seed + 1)
    @conf
    @given(st.text(max_size=120))
    def draw_texts(t: str) -> None:
        texts.append(t)

    draw_values()
    draw_texts()
    return Pools(values=tuple(values), texts=tuple(texts))


# -- hostile msgpack ------------------------------------------------------------------------------
def pack(value: Any) -> bytes:
    """msgpack with bin types (floats, int keys and bytes keys kept: the point is to send them)."""
    return msgpack.packb(value, use_bin_type=True, strict_types=False)


def deep_nesting(rng: random.Random) -> bytes:
    depth = rng.choice([33, 64, 200, 1000, 5000, 100_000])
    opener = rng.choice([b"\x91", b"\x81\xa1k", b"\xdd\x00\x00\x00\x01"])
    return opener * depth + rng.choice([b"\xc0", b"\x01", b"", b"\x91"])


def huge_length(rng: random.Random) -> bytes:
    """A header that declares far more than follows (or than any limit allows)."""
    n = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 1 << 24, 100_001, 65_536])
    n32 = n.to_bytes(4, "big")
    n16 = min(n, 0xFFFF).to_bytes(2, "big")
    header = rng.choice([b"\xdb" + n32, b"\xc6" + n32, b"\xdd" + n32, b"\xdf" + n32, b"\xda" + n16, b"\xc5" + n16,
                         b"\xdc" + n16, b"\xde" + n16, b"\xc9" + n32 + b"\x01", b"\xd9\xff"])
    tail = rng.randbytes(rng.randrange(0, 64))
    prefix = rng.choice([b"", b"\x96", b"\x92\xa5hello", b"\x81\xa4body"])
    return prefix + header + tail


def many_items(rng: random.Random) -> bytes:
    n = rng.choice([17, 4097, 5001, 65_536, 100_001, 300_000])
    item = rng.choice([b"\xc0", b"\x90", b"\x80", b"\x01"])
    return b"\xdd" + n.to_bytes(4, "big") + item * n


def odd_scalars(rng: random.Random) -> bytes:
    """Encodings our decoder must refuse or handle: floats, ext types, bad UTF-8, int keys, reserved byte."""
    return rng.choice([
        b"\xcb" + rng.randbytes(8), b"\xca" + rng.randbytes(4), b"\xd4\x01\x00", b"\xc7\x05\x02" + rng.randbytes(5),
        b"\xa2\xff\xfe", b"\x81\x01\x02", b"\x81\xc4\x01k\x01", b"\xc1", b"\xd9\x03\xed\xa0\x80",
        b"\xcf" + b"\xff" * 8, b"\xd3\x80" + b"\x00" * 7, b"\x81\x90\x01", b"\x81\x80\x01",
    ])


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Flip, cut, duplicate or splice a few bytes."""
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(5)
        if not buf:
            buf += rng.randbytes(rng.randrange(1, 16))
        elif op == 0:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 1:
            del buf[rng.randrange(len(buf)):]
        elif op == 2:
            i = rng.randrange(len(buf))
            buf[i:i] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3:
            i = rng.randrange(len(buf))
            buf[i:i] = buf[i:i + rng.randrange(1, 32)]
        else:
            i = rng.randrange(len(buf))
            del buf[i:i + rng.randrange(1, 8)]
    return bytes(buf)


def mutate_doc(rng: random.Random, doc: Any, pools: Pools, depth: int = 0) -> Any:
    """Replace, drop or add fields of a map (or items of an array) with hostile values."""
    if isinstance(doc, dict) and doc:
        out = dict(doc)
        for _ in range(rng.randrange(1, 3)):
            op = rng.randrange(5)
            name = rng.choice(list(out)) if out else "x"
            if op == 0:
                out[name] = pools.value(rng)
            elif op == 1:
                out.pop(name, None)
            elif op == 2:
                out[rng.choice([pools.text(rng)[:12] or "extra", name.encode() if isinstance(name, str) else name, 7])] = pools.value(rng)
            elif op == 3:
                out[name] = hostile_scalar(rng)
            elif depth < 3:
                out[name] = mutate_doc(rng, out.get(name), pools, depth + 1)
        return out
    if isinstance(doc, list) and doc:
        out_list = list(doc)
        i = rng.randrange(len(out_list))
        op = rng.randrange(4)
        if op == 0:
            out_list[i] = pools.value(rng)
        elif op == 1:
            del out_list[i]
        elif op == 2:
            out_list.append(pools.value(rng))
        elif depth < 3:
            out_list[i] = mutate_doc(rng, out_list[i], pools, depth + 1)
        else:
            out_list[i] = hostile_scalar(rng)
        return out_list
    return hostile_scalar(rng) if rng.random() < 0.5 else pools.value(rng)


def hostile_scalar(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False, -1, 0, 2**63 - 1, -(2**63), 2**64 - 1, 1.5, float("inf"), "", "x" * rng.choice([65, 300, 70_000]),
        b"", b"\x00" * rng.choice([31, 33, 64, 65, 200_000]), [], {}, [[[[]]]], {"": {"": None}}, "\u0000\ud7ff\U0010ffff",
    ])


# -- cases ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Target:
    """What the fuzzer learned about a node before the run."""

    url: str
    chain_id: str
    node_id: str
    validator_ids: tuple[str, ...]
    p2p_address: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpCase:
    endpoint: str
    index: int
    family: str
    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def payload(self) -> bytes:
        head = f"{self.method} {self.path}\n" + "".join(f"{k}: {v}\n" for k, v in self.headers)
        return head.encode("utf-8", "replace") + (self.body or b"")


@dataclass(frozen=True, slots=True, kw_only=True)
class RawCase:
    """Bytes written straight to the API's TCP socket (the HTTP parser's turn)."""

    endpoint: str
    index: int
    family: str
    data: bytes

    @property
    def payload(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerCase:
    """Websocket messages for the peer endpoint; `build` sees the node's HELLO (None if it sent none)."""

    endpoint: str
    index: int
    family: str
    build: Callable[[wire.Hello | None], list[bytes | str]] = field(repr=False)
    upgrade: bool = True  # False: a plain HTTP request to the peer port, no websocket

    def messages(self, hello: wire.Hello | None) -> list[bytes | str]:
        return self.build(hello)

    @property
    def payload(self) -> bytes:
        return self.family.encode()  # the messages depend on the node's HELLO: the runner records them


Case = HttpCase | RawCase | PeerCase


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One fuzzed endpoint: an API route (method + path template), the raw HTTP socket or the peer port."""

    name: str
    kind: str  # "http", "raw" or "peer"
    method: str = ""
    template: str = ""
    params: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, allowed values if the route restricts them)


def _param_value(rng: random.Random, name: str, allowed: tuple[str, ...], pools: Pools) -> str:
    """One path parameter, already percent-encoded."""
    roll = rng.random()
    if allowed and roll < 0.6:
        return rng.choice(allowed)
    if roll < 0.35:
        if name == "height":
            return rng.choice(["1", "latest", str(rng.randrange(1, 50)), "0"])
        if name == "filename":
            return rng.choice(["index.html", "style.css", "patient.js", "vendor/README.md", "..%2F..%2Fpyproject.toml",
                               "%2e%2e/%2e%2e/etc/passwd", "..", "....//....//cli.py", "%2F", "index.html%00.js"])
        if name == "study":
            return rng.choice(["fuzz-1", "s" * rng.randrange(1, 80), "study-" + str(rng.randrange(99))])
        return rng.randbytes(32).hex()
    choice = rng.randrange(9)
    if choice == 0:
        return rng.randbytes(rng.choice([0, 1, 16, 31, 33, 64, 300])).hex() or "00"
    if choice == 1:
        return rng.randbytes(32).hex()[: rng.randrange(1, 64)] + rng.choice(["", "z", "g", "0"])
    if choice == 2:
        return rng.choice(["-1", "-0", "0", "+1", "1e9", "0x10", "1.5", "NaN", "inf", "٣", " 1", "1_000"])
    if choice == 3:
        return "9" * rng.choice([19, 20, 30, 400, 4300, 4400])
    if choice == 4:
        return quote(pools.text(rng), safe="") or "%20"
    if choice == 5:
        return rng.choice(["%00", "%ff", "%2F", "%2e%2e", "..", ".", "%25", "%u0041", "%", "%zz"])
    if choice == 6:
        return "a" * rng.choice([255, 256, 1000, 5000, 8000])
    if choice == 7:
        return quote(rng.randbytes(rng.randrange(1, 40)), safe="")
    return "".join(rng.choice(string.printable.strip()) for _ in range(rng.randrange(1, 30))).replace("/", "%2F").replace("?", "%3F").replace("#", "%23")


def _query_value(rng: random.Random, name: str, pools: Pools) -> str:
    if name == "wait":  # real waits are rare, so a run's length stays bounded
        roll = rng.random()
        if roll < 0.003:
            return rng.choice(["9" * 30, "9" * 400, "٣٠"])  # huge: capped by the node at 30 s
        if roll < 0.02:
            return rng.choice(["0", "1"])
        return rng.choice(["-1", "x", "", "1.5", "9" * 5000, "-" + "9" * 40, "1e3", "-٣", "0x1", "inf"])
    if name == "format":
        return rng.choice(["fhir", "json", "", "FHIR", pools.text(rng)])
    return rng.choice([
        "0", "1", "-1", str(rng.randrange(1 << 64)), "9" * rng.choice([20, 40, 400, 4300, 5000]), "", "x", "1.0",
        str(2**63), str(-(2**63) - 1), pools.text(rng)[:40], "0" * 100 + "1",
    ])


def _query(rng: random.Random, pools: Pools) -> str:
    if rng.random() < 0.3:
        return ""
    pairs = []
    for _ in range(rng.randrange(1, 5)):
        name = rng.choice(QUERY_NAMES) if rng.random() < 0.8 else (pools.text(rng)[:20] or "q")
        pairs.append((name, _query_value(rng, name, pools)))
    if rng.random() < 0.1:
        return "?" + rng.choice(["&&&", "=", "a=%zz", "%", "a=b=c", "wait", "since&since=1&since=-1"])
    return "?" + urlencode(pairs)


def _body_doc(rng: random.Random, ep: Endpoint, target: Target, pools: Pools) -> Any:
    """A plausible document for a POST endpoint, before mutation."""
    path = ep.template
    if path == "/v1/txs":
        txs = [_tx_value(rng, target, pools) for _ in range(rng.choice([1, 1, 1, 2, 5, 50]))]
        return txs[0] if len(txs) == 1 and rng.random() < 0.7 else txs
    if path == "/v1/records":
        return {"record_id": _b32(rng), "patient": _b32(rng), "resource_type": "Observation",
                "ciphertext": rng.randbytes(rng.randrange(0, 200)), "wrapped": {"patient": rng.randbytes(80), "custodian": rng.randbytes(80)},
                "author": _b32(rng), "timestamp_ms": 1_700_000_000_000 + rng.randrange(10**12), "signature": rng.randbytes(64)}
    if path.endswith("/fetch"):
        return {"record_id": _b32(rng), "requester": _b32(rng), "timestamp_ms": 1_700_000_000_000 + rng.randrange(10**12),
                "nonce": rng.randbytes(16), "signature": rng.randbytes(64)}
    request = {"study": "fuzz-1", "types": ["Observation"], "k": rng.randrange(0, 1002), "researcher": _b32(rng),
               "coordinator": _b32(rng), "timestamp_ms": 1_700_000_000_000 + rng.randrange(10**12), "nonce": rng.randbytes(16), "signature": rng.randbytes(64)}
    if path == "/v1/research/extract":
        return request
    payload: Any = {"request": request, "included": [_b32(rng).hex()], "resources": rng.randrange(10), "release_hash": _b32(rng)}
    if rng.random() < 0.7:  # a coordinator signs the payload's bytes
        payload = pack(mutate_doc(rng, payload, pools) if rng.random() < 0.5 else payload)
    return {"payload": payload, "coordinator": _b32(rng), "signature": rng.randbytes(64)}


def _tx_value(rng: random.Random, target: Target, pools: Pools) -> Any:
    tx_type = rng.choice(TX_TYPES) if rng.random() < 0.9 else pools.text(rng)[:70]
    body = _tx_body(rng, tx_type)
    if rng.random() < 0.5:
        body = mutate_doc(rng, body, pools)
    chain = target.chain_id if rng.random() < 0.9 else rng.choice(["", "other-chain", pools.text(rng)])
    nonce = rng.choice([1, 1, 2, 0, -1, 2**63, 2**64 - 1, True])
    if rng.random() < 0.35 and isinstance(body, dict) and all(isinstance(k, str) for k in body):
        # Signed by a fresh (seeded) key: passes the signature check if the body's shape passes,
        # so the transaction reaches the block and the state machine.
        ident = Identity.from_seed(rng.randbytes(32))
        try:
            tx = Transaction.create(ident, chain_id=chain if isinstance(chain, str) else "", type=tx_type, nonce=1, body=body)
        except ValueError:  # the mutated body has no canonical form (a float, ...): send it unsigned
            pass
        else:
            return [tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]
    return [chain, tx_type, _b32(rng), nonce, body, rng.randbytes(64)]


SIGNATURE_HEADERS = ("X-MedLedger-Signer", "X-MedLedger-Timestamp", "X-MedLedger-Nonce", "X-MedLedger-Signature")


def _header_text(rng: random.Random) -> str:
    """A header value the HTTP client can send (printable ASCII), hostile to the parser behind it."""
    return rng.choice(["", " ", "0", "-1", "9" * 30, "zz" * 32, "00" * 31, "00" * 33, "0x" + "00" * 32, "%00", "é".encode().hex(),
                       "a" * 5000, "1e3", "\t", "AA" * 64, "Aa" * 16])


def signature_headers(rng: random.Random, target: Target, method: str, path: str, body: bytes, now_ms: int) -> tuple[tuple[str, str], ...]:
    """Request-signing headers: well-formed and signed by a fresh seeded key (fresh, stale or with a
    nonce shared with other cases, so some are replays), with one field broken, or missing fields."""
    import hashlib

    ident = Identity.from_seed(rng.randbytes(32))
    timestamp = rng.choice([now_ms, now_ms, now_ms, now_ms - 10**6, now_ms + 10**6, 0])
    nonce = (hashlib.sha256(f"{rng.randrange(64)}".encode()).digest()[:16] if rng.random() < 0.2 else rng.randbytes(16)).hex()
    message = "\n".join(["medledger-request-v2", target.chain_id, target.node_id, method, path, str(timestamp), nonce,
                         hashlib.sha256(body).hexdigest()]).encode()
    values = {"X-MedLedger-Signer": ident.id, "X-MedLedger-Timestamp": str(timestamp), "X-MedLedger-Nonce": nonce,
              "X-MedLedger-Signature": ident.sign(message).hex()}
    roll = rng.random()
    if roll < 0.4:
        pass  # signed properly: the ledger decides (403 forbidden, 404, or a stale or replayed nonce: 401)
    elif roll < 0.7:
        values[rng.choice(SIGNATURE_HEADERS)] = _header_text(rng)
    elif roll < 0.85:
        values.pop(rng.choice(SIGNATURE_HEADERS))
    else:
        values["X-MedLedger-Signature"] = rng.randbytes(64).hex()  # valid-looking, unsigned
    return tuple(values.items())


def http_case(ep: Endpoint, seed: int, index: int, target: Target, pools: Pools, now_ms: int = 0) -> HttpCase:
    rng = random.Random(f"{seed}:{ep.name}:{index}")
    path = ep.template
    for name, allowed in ep.params:
        path = path.replace("{" + name + "}", _param_value(rng, name, allowed, pools))
    path += _query(rng, pools)
    if ep.method != "POST":
        body = rng.randbytes(rng.randrange(1, 200)) if rng.random() < 0.05 else None
        signed = rng.random() < 0.4
        headers = signature_headers(rng, target, ep.method, path, body or b"", now_ms) if signed else ()
        return HttpCase(endpoint=ep.name, index=index, family="signed-params" if signed else "params", method=ep.method,
                        path=path, body=body, content_type="application/msgpack" if body else None, headers=headers)
    ctype = rng.choice(MSGPACK_TYPES)
    roll = rng.random()
    if roll < 0.15:
        family, body = "random-bytes", rng.randbytes(int(2 ** rng.uniform(0, 16)))
    elif roll < 0.30:
        family, body = "hypothesis-value", pack(pools.value(rng))
    elif roll < 0.62:
        family, body = "structured", pack(mutate_doc(rng, _body_doc(rng, ep, target, pools), pools) if rng.random() < 0.8
                                          else _body_doc(rng, ep, target, pools))
    elif roll < 0.70:
        family, body = "truncated", mutate_bytes(rng, pack(_body_doc(rng, ep, target, pools)))
    elif roll < 0.76:
        family, body = "deep-nesting", deep_nesting(rng)
    elif roll < 0.82:
        family, body = "huge-length", huge_length(rng)
    elif roll < 0.86:
        family, body = "many-items", many_items(rng)
    elif roll < 0.91:
        family, body = "odd-scalars", odd_scalars(rng)
    elif roll < 0.998:
        family = "wrong-content-type"
        body = rng.choice([b'{"a": 1}', b"", pack(_body_doc(rng, ep, target, pools)), rng.randbytes(50)])
        ctype = rng.choice(["application/json", "text/plain", "", "multipart/form-data; boundary=x", "application/msgpack; charset=latin-1"])
    else:
        family, body = "oversized", b"\x00" * OVERSIZE_BYTES
    return HttpCase(endpoint=ep.name, index=index, family=family, method="POST", path=path, body=body,
                    content_type=ctype or None)


def raw_case(ep: Endpoint, seed: int, index: int, routes: Sequence[Endpoint], pools: Pools) -> RawCase:
    """A whole HTTP request as bytes: random, or a real request with its head mangled."""
    rng = random.Random(f"{seed}:{ep.name}:{index}")
    route = rng.choice(routes)
    path = route.template.replace("{", "").replace("}", "")
    body = rng.randbytes(rng.randrange(0, 64))
    lines = [f"{route.method} {path} HTTP/1.1", "Host: fuzz", f"Content-Length: {len(body)}",
             "Content-Type: application/msgpack"]
    roll = rng.random()
    if roll < 0.25:
        family, head = "random-bytes", rng.randbytes(rng.randrange(1, 600))
        return RawCase(endpoint=ep.name, index=index, family=family, data=head.replace(b"\r\n\r\n", b"") + b"\r\n\r\n")
    if roll < 0.45:
        family = "bad-content-length"
        # (the last one makes the server wait for 5 more bytes; the runner closes its side after sending)
        lines[2] = "Content-Length: " + rng.choice(["-1", "abc", "99999999999999999999", "1, 2", "", "0x10", str(len(body) + 5)])
    elif roll < 0.6:
        family = "bad-request-line"
        lines[0] = rng.choice([f"{route.method} {path}", f"{route.method}  HTTP/1.1", f"FUZZ {path} HTTP/1.1",
                               f"{route.method} {path} HTTP/9.9", f"{route.method} {'/a' * 5000} HTTP/1.1",
                               f"{route.method} {path}\x00 HTTP/1.1", f"{route.method} {path} HTTP/1.1 extra"])
    elif roll < 0.75:
        family = "bad-headers"
        lines.insert(1, rng.choice(["X: " + "a" * 9000, "NoColon", ": empty-name", "X-\x00: y", "Transfer-Encoding: chunked",
                                    "Transfer-Encoding: gzip, chunked", "Host: a\r\nHost: b", "Expect: 100-continue",
                                    "Content-Encoding: gzip", "Connection: upgrade\r\nUpgrade: websocket"]))
    elif roll < 0.9:
        family = "chunked"
        lines[2] = "Transfer-Encoding: chunked"
        body = rng.choice([b"5\r\nhello\r\n0\r\n\r\n", b"fffffffffffffffff\r\n", b"zz\r\n", b"3\r\nab", b"-1\r\n\r\n",
                           b"1;ext=" + b"x" * 9000 + b"\r\na\r\n0\r\n\r\n"])
    else:
        family = "many-headers"
        lines[1:1] = [f"X-{i}: {'v' * rng.randrange(1, 50)}" for i in range(rng.choice([100, 200, 1000]))]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body
    return RawCase(endpoint=ep.name, index=index, family=family, data=mutate_bytes(rng, data) if rng.random() < 0.1 else data)


def peer_case(ep: Endpoint, seed: int, index: int, target: Target, pools: Pools) -> PeerCase:
    """Hostile handshakes: garbage, wrong types, truncation, huge lengths, nesting, unsigned AUTH."""
    rng = random.Random(f"{seed}:{ep.name}:{index}")
    roll = rng.random()
    claim = bytes.fromhex(rng.choice(target.validator_ids)) if target.validator_ids and rng.random() < 0.7 else rng.randbytes(32)
    own_nonce = rng.randbytes(32)
    sig = rng.randbytes(64)
    auth = wire.encode(wire.Auth(signature=sig))
    extra = rng.randbytes(rng.randrange(0, 300))

    def hello_of(node: wire.Hello | None, node_id: bytes = claim) -> bytes:
        chain = node.chain_id if node else target.chain_id
        genesis = node.genesis_hash if node else rng.randbytes(32)
        return wire.encode(wire.Hello(version=wire.PROTOCOL_VERSION, chain_id=chain, genesis_hash=genesis,
                                      node_id=node_id, nonce=own_nonce))

    if roll < 0.04:
        return PeerCase(endpoint=ep.name, index=index, family="plain-http", build=lambda h: [], upgrade=False)
    if roll < 0.20:
        return PeerCase(endpoint=ep.name, index=index, family="unsigned-auth", build=lambda h: [hello_of(h), auth])
    if roll < 0.28:
        family = "wrong-signature-length"
        bad = pack([2, rng.randbytes(rng.choice([0, 63, 65, 4000]))])
        return PeerCase(endpoint=ep.name, index=index, family=family, build=lambda h: [hello_of(h), bad])
    if roll < 0.36:
        family = "hello-then-garbage"
        junk = rng.choice([extra, deep_nesting(rng)[:4000], huge_length(rng), pack(pools.value(rng)), odd_scalars(rng)])
        return PeerCase(endpoint=ep.name, index=index, family=family, build=lambda h: [hello_of(h), junk])
    if roll < 0.44:
        family = "wrong-fields"
        fields: list[Any] = [1, wire.PROTOCOL_VERSION, target.chain_id, rng.randbytes(32), claim, own_nonce]
        i = rng.randrange(len(fields))
        fields[i] = hostile_scalar(rng) if rng.random() < 0.5 else pools.value(rng)
        if rng.random() < 0.3:
            fields = fields[: rng.randrange(len(fields))] if rng.random() < 0.5 else fields + [pools.value(rng)]
        try:
            msg = pack(fields)
        except (ValueError, OverflowError, TypeError):
            msg = pack(fields[:2])
        return PeerCase(endpoint=ep.name, index=index, family=family, build=lambda h: [msg])
    if roll < 0.52:
        family = "truncated"
        return PeerCase(endpoint=ep.name, index=index, family=family,
                        build=lambda h: [hello_of(h)[: rng.randrange(1, 60)]])
    if roll < 0.58:
        return PeerCase(endpoint=ep.name, index=index, family="deep-nesting", build=lambda h: [deep_nesting(rng)])
    if roll < 0.64:
        return PeerCase(endpoint=ep.name, index=index, family="huge-length", build=lambda h: [huge_length(rng)])
    if roll < 0.70:
        family = "frames-before-handshake"
        frame = rng.choice([wire.encode(wire.Data(kind=rng.randrange(65536), payload=extra)),
                            wire.encode(wire.Request(request_id=rng.randrange(1 << 64), kind=rng.choice([10, 11]), payload=extra)),
                            wire.encode(wire.Response(request_id=1, payload=extra)), wire.encode(wire.ErrorResponse(request_id=1, reason="x"))])
        return PeerCase(endpoint=ep.name, index=index, family=family, build=lambda h: [frame])
    if roll < 0.76:
        family = "several-frames"
        return PeerCase(endpoint=ep.name, index=index, family=family, build=lambda h: [hello_of(h) + hello_of(h)])
    if roll < 0.80:
        return PeerCase(endpoint=ep.name, index=index, family="text-message", build=lambda h: [pools.text(rng) or "hello"])
    if roll < 0.84:
        family = "oversized-message"
        size = rng.choice([4097, 70_000, 4 * 1024 * 1024 + 1])
        return PeerCase(endpoint=ep.name, index=index, family=family, build=lambda h: [b"\x96" + b"\x00" * size])
    if roll < 0.88:
        family = "wrong-network"
        return PeerCase(endpoint=ep.name, index=index, family=family, build=lambda h: [wire.encode(wire.Hello(
            version=rng.choice([0, 2, 65535, wire.PROTOCOL_VERSION]), chain_id=rng.choice(["other", target.chain_id]),
            genesis_hash=rng.randbytes(rng.choice([1, 32, 64])), node_id=claim, nonce=own_nonce)), auth])
    if roll < 0.92:
        family = "claims-target-id"
        own = bytes.fromhex(target.node_id)
        return PeerCase(endpoint=ep.name, index=index, family=family, build=lambda h: [hello_of(h, own), auth])
    if roll < 0.96:
        family = "refuse-and-more"
        return PeerCase(endpoint=ep.name, index=index, family=family,
                        build=lambda h: [wire.encode(wire.Refuse(reason=wire.short_text(pools.text(rng)))), hello_of(h)])
    return PeerCase(endpoint=ep.name, index=index, family="random-bytes",
                    build=lambda h: [rng.randbytes(rng.randrange(1, 4096))])


FRAME_KINDS = (1, 2)  # node.runtime.runtime's CONSENSUS and TXS
REQUEST_KINDS = (10, 11)  # node.net.gossip's STATUS and BLOCKS


def frames_case(ep: Endpoint, seed: int, index: int, target: Target, pools: Pools) -> PeerCase:
    """Hostile frames from an authenticated peer (the runner does the handshake with a key the node admits)."""
    rng = random.Random(f"{seed}:{ep.name}:{index}")
    roll = rng.random()

    def payload() -> bytes:
        pick = rng.randrange(5)
        if pick == 0:
            return rng.randbytes(rng.randrange(0, 2000))
        if pick == 1:
            return pack(pools.value(rng))
        if pick == 2:  # a batch of "transactions" as the TXS frame carries them
            return pack([rng.randbytes(rng.randrange(0, 300)) if rng.random() < 0.5 else pack(_tx_value(rng, target, pools))
                         for _ in range(rng.randrange(0, 20))])
        if pick == 3:  # consensus-message-like arrays with hostile fields
            return pack([rng.randrange(0, 8), target.chain_id, rng.randrange(1 << 64), rng.randrange(100), rng.randbytes(32),
                         hostile_scalar(rng), rng.randbytes(64)])
        return rng.choice([deep_nesting(rng)[:50_000], huge_length(rng), odd_scalars(rng), many_items(rng)[:100_000]])

    def data(kind: int | None = None) -> bytes:
        return wire.encode(wire.Data(kind=kind if kind is not None else rng.choice(FRAME_KINDS), payload=payload()))

    messages: list[bytes | str]  # binary frames, and one family of text messages
    if roll < 0.35:
        family, messages = "data", [data()]
    elif roll < 0.40:
        family, messages = "unknown-kind", [data(rng.randrange(3, 65536))]
    elif roll < 0.52:
        family = "request"
        kind = rng.choice(REQUEST_KINDS + (0, 12, 65535))
        body = rng.choice([payload(), pack([rng.randrange(-5, 1 << 64), rng.randrange(-5, 1 << 20)]), b""])
        messages = [wire.encode(wire.Request(request_id=rng.randrange(1 << 64), kind=kind, payload=body))]
    elif roll < 0.58:
        family = "stray-response"
        messages = [rng.choice([wire.encode(wire.Response(request_id=rng.randrange(1 << 64), payload=payload())),
                                wire.encode(wire.ErrorResponse(request_id=rng.randrange(1 << 64), reason="x"))])]
    elif roll < 0.64:
        family = "handshake-again"
        messages = [rng.choice([wire.encode(wire.Hello(version=1, chain_id=target.chain_id, genesis_hash=rng.randbytes(32),
                                                       node_id=rng.randbytes(32), nonce=rng.randbytes(32))),
                                wire.encode(wire.Auth(signature=rng.randbytes(64)))])]
    elif roll < 0.70:
        family, messages = "many-frames", [b"".join(data() for _ in range(rng.choice([10, 100, 1000])))[: 3 * 1024 * 1024]]
    elif roll < 0.78:
        family = "truncated"
        frame = data()
        messages = [frame[: rng.randrange(1, max(2, len(frame)))]]
    elif roll < 0.84:
        family, messages = "wrong-types", [pack([rng.choice([16, 17, 18, 19]), *[hostile_scalar(rng) for _ in range(rng.randrange(0, 5))]])]
    elif roll < 0.90:
        family, messages = "garbage", [rng.choice([rng.randbytes(rng.randrange(1, 5000)), deep_nesting(rng), huge_length(rng)])]
    elif roll < 0.94:
        family, messages = "text-message", [pools.text(rng) or "x"]
    elif roll < 0.97:
        family, messages = "oversized-message", [b"\x93\x10\x01\xc6" + (4 * 1024 * 1024).to_bytes(4, "big") + b"\x00" * (4 * 1024 * 1024)]
    else:
        family, messages = "refuse", [wire.encode(wire.Refuse(reason="fuzz"))]
    fixed = list(messages)
    return PeerCase(endpoint=ep.name, index=index, family=family, build=lambda h: fixed)
