"""`medledger fuzz`: hostile input against running nodes, checking that they stay up and keep committing.

Endpoints are discovered from the API's own routes (`node.api.app.make_app`), plus two that are not
routes: "HTTP raw" (whole requests written to the API socket, for the HTTP parser) and
"p2p handshake" (websockets to the peer endpoint carrying hostile handshakes). Cases come from
`node.fuzz_cases`, seeded per (seed, endpoint, case index).

A case passes when the node answers it as a client mistake: an HTTP status below 500 (401, 403,
404, 413, 415 and 429 are all fine) with the connection intact, or, on the peer port, a REFUSE or a
close within a deadline, never an authenticated link. Between batches the fuzzer checks that every
target still answers `/v1/status` and that a freshly signed transaction commits; it records each
node's resident memory (`rss_mb` in the status) before, during and after the run.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.web_urldispatcher import StaticResource
from yarl import URL

from p2p import wire
from p2p.errors import MalformedFrame
from p2p.handshake import Handshake, HandshakeState, Outgoing, Role
from p2p.network import WS_PATH

from node.core.crypto import Ed25519Verifier, Identity
from node.devtools.fuzz_cases import (
    Case,
    Endpoint,
    HttpCase,
    PeerCase,
    Pools,
    RawCase,
    Target,
    frames_case,
    http_case,
    hypothesis_pools,
    peer_case,
    raw_case,
)
from node.chain.tx import Transaction

RAW_ENDPOINT = "HTTP raw"
PEER_ENDPOINT = "p2p handshake"
FRAMES_ENDPOINT = "p2p frames"
MAX_FAILURES_KEPT = 200
HEX_BYTES_KEPT = 256
HTTP_TIMEOUT_S = 45.0  # above the API's longest long-poll (30 s)
PEER_TIMEOUT_S = 20.0  # above the peer handshake timeout (5 s) and a slow machine's margin
RAW_TIMEOUT_S = 15.0
RAW_WAIT_S = 3.0  # how long a raw request may wait for an answer before we end our side
COMMIT_TIMEOUT_S = 60.0


class FuzzError(Exception):
    """The run could not start (no target answered, an unknown endpoint name)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FuzzConfig:
    targets: tuple[str, ...]
    cases: int
    seed: int = 0
    endpoints: tuple[str, ...] = ()  # substrings of endpoint names; empty: all
    batch: int = 1000
    concurrency: int = 8  # cases in flight per target (peer cases: at most 4 per target)
    pool_size: int = 400
    peer_key: Identity | None = None  # a key the targets admit as a peer (an observer's): enables "p2p frames"


@web.middleware
async def _passthrough(request: web.Request, handler: Any) -> web.StreamResponse:
    return await handler(request)


def _stand_in_node() -> Any:
    """Enough of a node for `make_app` to build its routes: the default configuration, no metrics."""
    from types import SimpleNamespace

    from node.home.config import NodeConfig

    return SimpleNamespace(config=NodeConfig(), metrics=SimpleNamespace(middleware=lambda: _passthrough))


_PARAM = re.compile(r"\(\?P<(\w+)>([^)]*)\)")


def api_endpoints() -> list[Endpoint]:
    """Every route of the API (HEAD and test routes aside), from `node.api.app.make_app` itself."""
    from node.api import app as api

    stand_in: Any = object()
    app = api.make_app(_stand_in_node(), custodian=stand_in, research=stand_in)
    out: list[Endpoint] = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        info = route.resource.get_info()
        if isinstance(route.resource, StaticResource):  # files under a prefix: fuzz the file name (traversal)
            template = info["prefix"].rstrip("/") + "/{filename}"
            out.append(Endpoint(name=f"{route.method} {template}", kind="http", method=route.method, template=template,
                                params=(("filename", ()),)))
            continue
        template = info.get("formatter") or info.get("path") or route.resource.canonical
        if template.startswith("/v1/test/"):
            continue
        params: list[tuple[str, tuple[str, ...]]] = []
        pattern = info.get("pattern")
        if pattern is not None:
            for name, regex in _PARAM.findall(pattern.pattern):
                allowed = tuple(regex.split("|")) if re.fullmatch(r"[\w|-]+", regex) else ()
                params.append((name, allowed))
        out.append(Endpoint(name=f"{route.method} {template}", kind="http", method=route.method, template=template,
                            params=tuple(params)))
    return out


def all_endpoints() -> list[Endpoint]:
    return [*api_endpoints(), Endpoint(name=RAW_ENDPOINT, kind="raw"), Endpoint(name=PEER_ENDPOINT, kind="peer"),
            Endpoint(name=FRAMES_ENDPOINT, kind="frames")]


def select_endpoints(wanted: Sequence[str]) -> list[Endpoint]:
    """Endpoints named exactly by one of `wanted`, or else whose name contains it (case-insensitive); all when empty."""
    every = all_endpoints()
    if not wanted:
        return every
    picked: set[str] = set()
    for w in wanted:
        exact = [e.name for e in every if e.name.lower() == w.lower()]
        picked.update(exact or [e.name for e in every if w.lower() in e.name.lower()])
    chosen = [e for e in every if e.name in picked]
    if not chosen:
        raise FuzzError(f"no endpoint matches {', '.join(wanted)}; endpoints are: {'; '.join(e.name for e in every)}")
    return chosen


# -- outcomes -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Outcome:
    label: str  # an HTTP status ("404"), or "refused", "closed", "busy" on the peer port
    failure: str | None = None  # why the case failed, None if it passed
    sent: bytes | None = None  # what went out, when the case alone does not say (peer messages)


async def _send_http(session: aiohttp.ClientSession, target: Target, case: HttpCase) -> Outcome:
    url = URL(target.url + case.path, encoded=True)
    headers = dict(case.headers)
    if case.content_type:
        headers["Content-Type"] = case.content_type
    try:
        async with session.request(case.method, url, data=case.body, headers=headers,
                                   skip_auto_headers=("Content-Type",)) as resp:
            await resp.read()
            status = resp.status
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
        return Outcome("dropped", f"connection dropped: {type(exc).__name__}: {exc}")
    except asyncio.TimeoutError:
        return Outcome("timeout", f"no answer within {HTTP_TIMEOUT_S:.0f} s")
    except aiohttp.ClientError as exc:
        return Outcome("client-error", f"{type(exc).__name__}: {exc}")
    if status >= 500:
        return Outcome(str(status), f"HTTP {status}")
    return Outcome(str(status))


async def _send_raw(target: Target, case: RawCase) -> Outcome:
    url = URL(target.url)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(url.host, url.port), RAW_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError) as exc:
        return Outcome("unreachable", f"cannot connect: {exc}")
    try:
        writer.write(case.data)
        await writer.drain()
        try:
            head = await asyncio.wait_for(reader.read(64), RAW_WAIT_S)
        except asyncio.TimeoutError:
            # The server still waits for bytes the request announced: end our side, then it must answer or close.
            if writer.can_write_eof():
                writer.write_eof()
            head = await asyncio.wait_for(reader.read(64), RAW_TIMEOUT_S)
    except asyncio.TimeoutError:
        return Outcome("timeout", f"connection open without an answer {RAW_TIMEOUT_S:.0f} s after our side ended")
    except OSError:
        head = b""  # the server cut a request it refused before reading all of it
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if match is None:
        return Outcome("closed")
    status = int(match.group(1))
    return Outcome(str(status), f"HTTP {status}" if status >= 500 else None)


async def _send_peer(session: aiohttp.ClientSession, target: Target, case: PeerCase) -> Outcome:
    assert target.p2p_address is not None
    base = f"http://{target.p2p_address}{WS_PATH}"
    if not case.upgrade:
        try:
            async with session.get(base) as resp:
                await resp.read()
                return Outcome(str(resp.status), f"HTTP {resp.status}" if resp.status >= 500 else None)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return Outcome("dropped", f"{type(exc).__name__}: {exc}")
    try:
        ws = await session.ws_connect(base, autoping=True, heartbeat=None, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 503:
            return Outcome("busy")  # too many handshakes at once: the node protects itself
        return Outcome(f"upgrade-{exc.status}", f"websocket upgrade answered {exc.status}")
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        return Outcome("unreachable", f"cannot connect: {type(exc).__name__}: {exc}")
    label, failure, sent = "closed", None, b""
    try:
        async with asyncio.timeout(PEER_TIMEOUT_S):
            first = await ws.receive()
            hello = None
            if first.type is aiohttp.WSMsgType.BINARY:
                try:
                    frame = wire.decode_one(first.data, max_frame_bytes=4096)
                    hello = frame if isinstance(frame, wire.Hello) else None
                except MalformedFrame:
                    hello = None
            if hello is None:
                return Outcome("no-hello", "the node did not open with a HELLO")
            messages = case.messages(hello)
            sent = b"".join(m.encode("utf-8", "replace") if isinstance(m, str) else m for m in messages)
            for message in messages:
                if ws.closed:
                    break
                try:
                    if isinstance(message, str):
                        await ws.send_str(message)
                    else:
                        await ws.send_bytes(message)
                except (aiohttp.ClientError, ConnectionError, RuntimeError):
                    break
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.BINARY:
                    try:
                        frame = wire.decode_one(msg.data, max_frame_bytes=4096)
                    except MalformedFrame:
                        return Outcome("garbage", "the node sent an undecodable frame", sent)
                    if isinstance(frame, wire.Refuse):
                        label = "refused"
                    elif not isinstance(frame, wire.Auth):
                        return Outcome("frame", f"unexpected {type(frame).__name__} during the handshake", sent)
                    continue
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.ERROR):
                    break
    except TimeoutError:
        label, failure = "open", f"connection still open {PEER_TIMEOUT_S:.0f} s after the hostile handshake"
    except (aiohttp.ClientError, OSError):
        label = "closed"
    finally:
        await ws.close()
    return Outcome(label, failure, sent)


async def _send_frames(session: aiohttp.ClientSession, target: Target, case: PeerCase, key: Identity) -> Outcome:
    """Authenticate with `key`, send the case's frames, then ask STATUS: an answer means the node
    discarded the garbage and still serves us; a close means it ended the link (or banned us)."""
    assert target.p2p_address is not None
    try:
        ws = await session.ws_connect(f"http://{target.p2p_address}{WS_PATH}", autoping=True, heartbeat=None, max_msg_size=0,
                                      timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
    except aiohttp.WSServerHandshakeError as exc:
        return Outcome("busy") if exc.status == 503 else Outcome(f"upgrade-{exc.status}", f"websocket upgrade answered {exc.status}")
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        return Outcome("unreachable", f"cannot connect: {type(exc).__name__}: {exc}")
    messages = case.messages(None)
    sent = b"".join(m.encode("utf-8", "replace") if isinstance(m, str) else m for m in messages)
    probe_id = (1 << 64) - 1 - case.index
    try:
        async with asyncio.timeout(PEER_TIMEOUT_S):
            first = await ws.receive()
            if first.type is not aiohttp.WSMsgType.BINARY:
                return Outcome("no-hello", "the node did not open with a HELLO", sent)
            try:
                hello = wire.decode_one(first.data, max_frame_bytes=4096)
            except MalformedFrame:
                return Outcome("no-hello", "the node did not open with a HELLO", sent)
            if not isinstance(hello, wire.Hello):
                return Outcome("no-hello", "the node did not open with a HELLO", sent)
            handshake = Handshake(role=Role.DIALER, signer=key, verifier=Ed25519Verifier(), chain_id=hello.chain_id,
                                  genesis_hash=hello.genesis_hash, nonce=secrets.token_bytes(32), admit=lambda peer: None,
                                  expected_peer=hello.node_id)
            await ws.send_bytes(handshake.hello)
            pending = [first.data]
            while handshake.state not in (HandshakeState.AUTHENTICATED, HandshakeState.REFUSED):
                data = pending.pop() if pending else None
                if data is None:
                    msg = await ws.receive()
                    if msg.type is not aiohttp.WSMsgType.BINARY:
                        return Outcome("refused")  # closed during the handshake: banned, or not admitted
                    data = msg.data
                for event in handshake.receive(data):
                    if isinstance(event, Outgoing):
                        await ws.send_bytes(event.data)
            if handshake.state is HandshakeState.REFUSED:
                return Outcome("refused")
            for message in messages:
                if isinstance(message, str):
                    await ws.send_str(message)
                else:
                    await ws.send_bytes(message)
            await ws.send_bytes(wire.encode(wire.Request(request_id=probe_id, kind=10, payload=b"")))
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    return Outcome("closed")
                try:
                    frames = list(wire.decode_stream(msg.data, max_frame_bytes=8 * 1024 * 1024))
                except MalformedFrame:
                    return Outcome("garbage", "the node sent an undecodable message", sent)
                if any(isinstance(f, (wire.Response, wire.ErrorResponse)) and f.request_id == probe_id for f in frames):
                    return Outcome("discarded")
    except TimeoutError:
        return Outcome("open", f"no answer to STATUS and no close {PEER_TIMEOUT_S:.0f} s after the frames", sent)
    except (aiohttp.ClientError, OSError, RuntimeError):
        return Outcome("closed")
    finally:
        await ws.close()


# -- health: up, committing, memory -------------------------------------------------------------
async def _request_json(session: aiohttp.ClientSession, method: str, url: str, *, deadline: float,
                        **kwargs: Any) -> tuple[int, Any]:
    """One request of the health checks; a 429 or 503 (rate limits, a full mempool) is retried after
    the server's Retry-After (at most 2 s) until `deadline`. Returns (status, JSON or None)."""
    while True:
        async with session.request(method, url, timeout=aiohttp.ClientTimeout(total=20), **kwargs) as resp:
            status = resp.status
            retry_after = resp.headers.get("Retry-After", "")
            try:
                doc = await resp.json(content_type=None)
            except ValueError:
                doc = None
        left = deadline - time.monotonic()
        if status not in (429, 503) or left <= 0:
            return status, doc
        pause = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 0.5
        await asyncio.sleep(min(pause, 2.0, left))  # the server asked us to slow down


async def _status(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        status, doc = await _request_json(session, "GET", url + "/v1/status", deadline=time.monotonic() + 20)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None
    return doc if status == 200 and isinstance(doc, dict) else None


def _rss(status: dict[str, Any] | None) -> int | None:
    if status is None:
        return None
    value = status.get("rss_mb", status.get("peak_rss_mb"))
    return int(value) if isinstance(value, int) else None


async def commit_probe(session: aiohttp.ClientSession, submit_to: str, confirm_at: Sequence[str], chain_id: str,
                       tag: bytes) -> bool:
    """Sign a fresh patient registration, submit it, and wait until every `confirm_at` node has it committed."""
    ident = Identity.from_seed(hashlib.sha256(b"medledger-fuzz-probe" + tag + time.time_ns().to_bytes(8, "big")).digest())
    tx = Transaction.create(ident, chain_id=chain_id, type="identity.register", nonce=1, body={"role": "patient"})
    deadline = time.monotonic() + COMMIT_TIMEOUT_S
    try:
        status, _ = await _request_json(session, "POST", submit_to + "/v1/txs", deadline=deadline, data=tx.encoded,
                                        headers={"Content-Type": "application/msgpack"})
        if status != 202:
            return False
        for url in confirm_at:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                _, doc = await _request_json(session, "GET", f"{url}/v1/txs/{tx.hash_hex}", deadline=deadline,
                                             params={"wait": str(max(1, min(int(left), 10)))})
                if isinstance(doc, dict) and doc.get("status") == "committed":
                    break
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False
    return True


async def agree(session: aiohttp.ClientSession, urls: Sequence[str], statuses: Sequence[dict[str, Any] | None]) -> bool:
    """Every node holds the same block at the highest height they all have."""
    heights: list[int] = [h for s in statuses if s is not None and isinstance(h := s.get("height"), int)]
    if len(heights) != len(urls):  # a node gave no status, or no integer height
        return False
    common = min(heights)
    if common < 1:
        return True
    seen = set()
    try:
        for url in urls:
            async with session.get(f"{url}/v1/blocks/{common}", timeout=aiohttp.ClientTimeout(total=15)) as resp:
                doc = await resp.json()
                seen.add((doc.get("hash"), doc.get("header", {}).get("state_root")))
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, AttributeError):
        return False
    return len(seen) == 1


async def discover(session: aiohttp.ClientSession, url: str) -> tuple[Target, dict[str, Any]]:
    status = await _status(session, url)
    if status is None:
        raise FuzzError(f"{url} does not answer /v1/status")
    node_id = str(status.get("node_id", ""))
    validators = [v for v in status.get("validator_set", []) if isinstance(v, dict)]
    address = next((v.get("address") for v in validators if v.get("id") == node_id and v.get("address")), None)
    target = Target(url=url, chain_id=str(status.get("chain_id", "")), node_id=node_id,
                    validator_ids=tuple(str(v.get("id")) for v in validators), p2p_address=address)
    return target, status


# -- the run ------------------------------------------------------------------------------------
def _build(ep: Endpoint, seed: int, index: int, target: Target, pools: Pools, routes: Sequence[Endpoint],
           now_ms: int = 0) -> Case:
    if ep.kind == "raw":
        return raw_case(ep, seed, index, routes, pools)
    if ep.kind == "peer":
        return peer_case(ep, seed, index, target, pools)
    if ep.kind == "frames":
        return frames_case(ep, seed, index, target, pools)
    return http_case(ep, seed, index, target, pools, now_ms)


def _reproducer(case: Case, seed: int, target: Target, outcome: Outcome) -> dict[str, Any]:
    data = outcome.sent if outcome.sent is not None else case.payload
    return {"endpoint": case.endpoint, "seed": seed, "case": case.index, "family": case.family, "target": target.url,
            "outcome": outcome.label, "reason": outcome.failure, "bytes_len": len(data),
            "bytes_hex": data[:HEX_BYTES_KEPT].hex() + ("..." if len(data) > HEX_BYTES_KEPT else "")}


async def run_fuzz(cfg: FuzzConfig, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Run `cfg.cases` cases per selected endpoint against the targets; the report as a dict."""
    if cfg.cases < 1 or not cfg.targets:
        raise FuzzError("need at least one target and one case")
    endpoints = select_endpoints(cfg.endpoints)
    routes = [e for e in endpoints if e.kind == "http"] or api_endpoints()
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=cfg.concurrency + 4)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)) as session:
        found = [await discover(session, url.rstrip("/")) for url in cfg.targets]
        targets = [t for t, _ in found]
        rss_before = {t.url: _rss(s) for t, s in found}
        rss_peak = dict(rss_before)
        pools = await asyncio.to_thread(hypothesis_pools, cfg.seed, cfg.pool_size)
        peer_targets = [t for t in targets if t.p2p_address]
        report: dict[str, dict[str, Any]] = {}
        failures: list[dict[str, Any]] = []
        failures_total = 0
        probes = probes_ok = 0
        node_up = True
        stopped_early: str | None = None

        last_rss: list[int | None] = [None]

        async def health(tag: str) -> bool:
            nonlocal probes, probes_ok, node_up
            statuses = await asyncio.gather(*(_status(session, t.url) for t in targets))
            last_rss[0] = None
            for t, s in zip(targets, statuses, strict=True):
                rss = _rss(s)
                if rss is not None:
                    rss_peak[t.url] = max(rss_peak.get(t.url) or 0, rss)
                    last_rss[0] = max(last_rss[0] or 0, rss)
            if any(s is None for s in statuses):
                node_up = False
                return False
            probes += 1
            submit = targets[probes % len(targets)]
            ok = await commit_probe(session, submit.url, [t.url for t in targets], submit.chain_id,
                                    f"{cfg.seed}:{tag}".encode())
            probes_ok += ok
            return ok

        for ep in endpoints:
            pool = peer_targets if ep.kind in ("peer", "frames") else targets
            counts: Counter[str] = Counter()
            by_family: dict[str, Counter[str]] = {}
            failed = 0
            report[ep.name] = {"cases": 0, "failures": 0, "outcomes": counts}
            if not pool:
                report[ep.name]["skipped"] = "no target publishes a peer address"
                continue
            if ep.kind == "frames" and cfg.peer_key is None:
                report[ep.name]["skipped"] = "needs a key the targets admit as a peer (--peer-key)"
                continue
            per_target = {"peer": min(cfg.concurrency, 4), "frames": 1}.get(ep.kind, cfg.concurrency)  # one link per peer id
            gates = {t.url: asyncio.Semaphore(per_target) for t in pool}

            async def one(index: int) -> None:
                nonlocal failed, failures_total
                target = pool[index % len(pool)]
                try:
                    case = _build(ep, cfg.seed, index, target, pools, routes, int(time.time() * 1000))
                except Exception as exc:  # the fuzzer's own bug: reported, and the run goes on
                    counts["fuzzer-error"] += 1
                    failed += 1
                    failures_total += 1
                    if len(failures) < MAX_FAILURES_KEPT:
                        failures.append({"endpoint": ep.name, "seed": cfg.seed, "case": index, "family": "?", "target": target.url,
                                         "outcome": "fuzzer-error", "reason": f"cannot build the case: {type(exc).__name__}: {exc}",
                                         "bytes_len": 0, "bytes_hex": ""})
                    return
                async with gates[target.url]:
                    if isinstance(case, HttpCase):
                        outcome = await _send_http(session, target, case)
                    elif isinstance(case, RawCase):
                        outcome = await _send_raw(target, case)
                    elif ep.kind == "frames":
                        assert cfg.peer_key is not None
                        outcome = await _send_frames(session, target, case, cfg.peer_key)
                    else:
                        outcome = await _send_peer(session, target, case)
                counts[outcome.label] += 1
                by_family.setdefault(case.family, Counter())[outcome.label] += 1
                if outcome.failure is not None:
                    failed += 1
                    failures_total += 1
                    if len(failures) < MAX_FAILURES_KEPT:
                        failures.append(_reproducer(case, cfg.seed, target, outcome))

            for start in range(0, cfg.cases, cfg.batch):
                end = min(cfg.cases, start + cfg.batch)
                await asyncio.gather(*(one(i) for i in range(start, end)))
                report[ep.name]["cases"] = end
                if progress is not None:
                    progress(ep.name, end, cfg.cases)
                if not await health(f"{ep.name}:{end}"):
                    stopped_early = f"after case {end} of {ep.name}: " + (
                        "a node stopped answering" if not node_up else "the probe transaction did not commit")
                    break
            report[ep.name]["failures"] = failed
            report[ep.name]["outcomes"] = dict(sorted(counts.items()))
            report[ep.name]["families"] = {f: dict(sorted(c.items())) for f, c in sorted(by_family.items())}
            report[ep.name]["rss_mb_after"] = last_rss[0]  # the largest node's, at this endpoint's last check
            if stopped_early:
                break

        final_statuses = await asyncio.gather(*(_status(session, t.url) for t in targets))
        node_up = node_up and all(s is not None for s in final_statuses)
        committed_after = node_up and await commit_probe(session, targets[0].url, [t.url for t in targets],
                                                         targets[0].chain_id, f"{cfg.seed}:final".encode())
        nodes_agree = await agree(session, [t.url for t in targets], final_statuses)
        rss_after = {t.url: _rss(s) for t, s in zip(targets, final_statuses, strict=True)}
        for url, rss in rss_after.items():
            if rss is not None:
                rss_peak[url] = max(rss_peak.get(url) or 0, rss)

    def top(values: dict[str, int | None]) -> int | None:
        known = [v for v in values.values() if v is not None]
        return max(known) if known else None

    return {
        "targets": [t.url for t in targets],
        "seed": cfg.seed,
        "cases_per_endpoint": cfg.cases,
        "endpoints": report,
        "cases": sum(r["cases"] for r in report.values()),
        "failures_total": failures_total,
        "failures": failures,
        "node_up": node_up,
        "committed_after": bool(committed_after),
        "nodes_agree": nodes_agree,
        "probes": probes,
        "probes_committed": probes_ok,
        "rss_mb_before": top(rss_before),
        "rss_mb_after": top(rss_after),
        "rss_mb_peak": top(rss_peak),
        "nodes": [{"url": t.url, "rss_mb_before": rss_before[t.url], "rss_mb_after": rss_after[t.url],
                   "rss_mb_peak": rss_peak.get(t.url), "up": s is not None}
                  for t, s in zip(targets, final_statuses, strict=True)],
        "stopped_early": stopped_early,
        "duration_s": round(time.monotonic() - started, 1),
    }


def passed(result: dict[str, Any]) -> bool:
    """True when no case failed, every node is up, a transaction committed after the run and the nodes agree."""
    return (result["failures_total"] == 0 and result["node_up"] and result["committed_after"] and result["nodes_agree"]
            and not result["stopped_early"])

