"""`medledger bench`: a load generator that measures committed throughput and latency.

Keys and signatures are prepared before the clock starts. Transactions go out in batches
(one POST per batch) spread round-robin over the target nodes; a follower per target
long-polls `/v1/commits`, so a transaction's latency runs from the moment its batch was sent to
the moment its commit is visible at the node it was sent to.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from node.core.crypto import Identity
from node.core.encoding import canonical
from node.chain.tx import Transaction


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig:
    targets: tuple[str, ...]
    txs: int
    batch: int = 500
    in_flight: int = 4
    timeout_s: float = 120.0
    rate: float = 0.0  # offered transactions per second; 0 = as fast as accepted


def prepare(chain_id: str, count: int, seed: bytes | None = None) -> list[Transaction]:
    """Sign `count` identity registrations with fresh keys (done before the clock starts)."""
    base = seed or os.urandom(16)
    out = []
    for i in range(count):
        ident = Identity.from_seed((base + i.to_bytes(16, "big"))[:32].ljust(32, b"\0"))
        out.append(Transaction.create(ident, chain_id=chain_id, type="identity.register", nonce=1, body={"role": "patient"}))
    return out


def _session(timeout_s: float) -> aiohttp.ClientSession:
    """A client session that trusts MEDLEDGER_CA (a devnet's CA, `devnet init --tls`) when set."""
    ca = os.environ.get("MEDLEDGER_CA")
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca)) if ca else None
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s), connector=connector)


def percentile(sorted_values: Sequence[float], p: int) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, (len(sorted_values) * p + 99) // 100 - 1))
    return sorted_values[k]


def measure_verify_rate(seconds: float = 0.3, rounds: int = 4) -> int:
    """Ed25519 verifications per second on one core of this machine, measured now (PyNaCl, as
    the node calls it): the best of a few short rounds, so a passing hiccup does not lower it."""
    import nacl.signing

    key = nacl.signing.SigningKey(b"\x01" * 32)
    signed = key.sign(os.urandom(200))
    verify = key.verify_key.verify
    best = 0
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(200):
                verify(signed)
            count += 200
        best = max(best, int(count / (time.perf_counter() - start)))
    return best


async def node_peak_rss(targets: Sequence[str]) -> tuple[int, int]:
    """The largest peak resident memory (MiB) the target nodes report, and the largest peak of
    their anonymous memory (without LevelDB's table files mapped in; see rss_anon_mb)."""
    peak = peak_anon = 0
    async with _session(10) as session:
        for t in targets:
            try:
                async with session.get(t.rstrip("/") + "/v1/status") as resp:
                    doc = await resp.json()
                peak = max(peak, int(doc.get("peak_rss_mb", 0)))
                peak_anon = max(peak_anon, int(doc.get("peak_rss_anon_mb", 0)))
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                continue
    return peak, peak_anon


def add_ceiling(result: dict[str, Any], verify_per_s: int, cores: int) -> dict[str, Any]:
    """The verification ceiling: every node verifies every transaction once, sharing the cores."""
    limit = cores * verify_per_s / max(1, result["nodes"])
    result["verify_per_s"] = verify_per_s
    result["cores"] = cores
    result["limit_tx_per_s"] = round(limit, 1)
    result["ratio"] = round(result["tx_per_s"] / limit, 3) if limit else 0.0
    return result


async def chain_status(target: str) -> dict[str, Any]:
    """The target's /v1/status (chain id, height, clock)."""
    async with _session(30) as session:
        async with session.get(target.rstrip("/") + "/v1/status") as resp:
            doc: dict[str, Any] = await resp.json()
            return doc


async def commit_setup(targets: Sequence[str], phases: Iterable[Sequence[Transaction]], timeout_s: float = 300.0,
                       progress: Callable[[int], None] | None = None) -> int:
    """Submit each setup phase and wait until all of it is committed before the next one;
    returns how many transactions were committed."""
    total = 0
    for phase in phases:
        if not phase:
            continue
        cfg = BenchConfig(targets=tuple(targets), txs=len(phase), timeout_s=timeout_s)
        result = await run_bench(cfg, txs=phase)
        if result["committed"] < len(phase):
            raise BenchError(f"setup: only {result['committed']} of {len(phase)} transactions committed")
        total += len(phase)
        if progress:
            progress(total)
    return total


class BenchError(RuntimeError):
    """The benchmark could not set up or reach its targets."""


async def run_bench(cfg: BenchConfig, progress: Callable[[int, int], None] | None = None,
                    txs: Sequence[Transaction] | None = None) -> dict[str, Any]:
    """Submit `txs` (default: `cfg.txs` fresh registrations) and measure their commits."""
    targets = [t.rstrip("/") for t in cfg.targets]
    async with _session(60) as session:
        async with session.get(targets[0] + "/v1/status") as resp:
            status = await resp.json()
        chain_id = status["chain_id"]
        if txs is None:
            txs = prepare(chain_id, cfg.txs)
        cfg = BenchConfig(targets=cfg.targets, txs=len(txs), batch=cfg.batch, in_flight=cfg.in_flight,
                          timeout_s=cfg.timeout_s, rate=cfg.rate)
        batches = [txs[i : i + cfg.batch] for i in range(0, len(txs), cfg.batch)]
        sent_at: dict[bytes, float] = {}
        target_of: dict[bytes, int] = {}
        commit_latency: dict[bytes, float] = {}
        type_of = {t.hash: t.type for t in txs}
        outcomes: dict[str, int] = {}  # "type: result" -> committed transactions
        failed = 0
        start_heights = []
        start_views: list[int] = []
        for t in targets:
            async with session.get(t + "/v1/status") as resp:
                doc = await resp.json()
            start_heights.append(doc["height"])
            start_views.append(int(doc.get("view_changes", 0)))
        done = asyncio.Event()
        t0 = time.perf_counter()

        async def follow(ti: int) -> None:
            since = start_heights[ti] + 1
            while not done.is_set():
                try:
                    async with session.get(f"{targets[ti]}/v1/commits",
                                           params={"since": since, "wait": 2, "limit": 200, "results": 1}) as resp:
                        doc = await resp.json()
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    await asyncio.sleep(0.2)
                    continue
                now = time.perf_counter()
                for b in doc["blocks"]:
                    since = b["height"] + 1
                    for hx, res in zip(b["txs"], b.get("results") or [None] * len(b["txs"]), strict=True):
                        h = bytes.fromhex(hx)
                        if target_of.get(h) == ti and h not in commit_latency:
                            commit_latency[h] = now - sent_at[h]
                            key = f"{type_of[h]}: {res}"
                            outcomes[key] = outcomes.get(key, 0) + 1
                if progress:
                    progress(len(commit_latency), cfg.txs)
                if len(commit_latency) + failed >= cfg.txs:
                    done.set()

        followers = [asyncio.create_task(follow(i)) for i in range(len(targets))]
        sem = asyncio.Semaphore(cfg.in_flight * len(targets))
        overloaded = {"retries": 0}  # batches sent again after a 503 with Retry-After

        async def send(bi: int, batch: Sequence[Transaction]) -> None:
            nonlocal failed
            ti = bi % len(targets)
            body = canonical([[t.chain_id, t.type, t.sender, t.nonce, t.body, t.signature] for t in batch])
            async with sem:
                now = time.perf_counter()
                for t in batch:
                    sent_at[t.hash] = now
                    target_of[t.hash] = ti
                pending = list(batch)
                give_up = time.perf_counter() + cfg.timeout_s
                while pending:
                    try:
                        async with session.post(targets[ti] + "/v1/txs", data=body,
                                                headers={"Content-Type": "application/msgpack"}) as resp:
                            doc = await resp.json()
                            retry_after = resp.headers.get("Retry-After") if resp.status == 503 else None
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        failed += len(pending)
                        break
                    if "results" not in doc:
                        failed += len(pending)
                        break
                    full = [t for t, r in zip(pending, doc["results"]) if r.get("error") == "mempool_full"]
                    failed += sum(1 for r in doc["results"] if "error" in r and not r.get("hash")) - len(full)
                    if not full:
                        break
                    if retry_after is None or time.perf_counter() >= give_up:  # refused for good
                        failed += len(full)
                        break
                    # the node is overloaded: wait as it asks, then send the refused ones again
                    overloaded["retries"] += 1
                    await asyncio.sleep(min(60.0, max(0.05, float(retry_after))))
                    pending = full
                    body = canonical([[t.chain_id, t.type, t.sender, t.nonce, t.body, t.signature] for t in pending])

        senders = []
        for bi, batch in enumerate(batches):
            if cfg.rate > 0:
                due = t0 + bi * cfg.batch / cfg.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            senders.append(asyncio.create_task(send(bi, batch)))
        await asyncio.gather(*senders)
        try:
            await asyncio.wait_for(done.wait(), cfg.timeout_s)
        except asyncio.TimeoutError:
            pass
        seconds = time.perf_counter() - t0
        done.set()
        for f in followers:
            f.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        view_changes = 0
        for t, before in zip(targets, start_views, strict=True):
            try:
                async with session.get(t + "/v1/status") as resp:
                    view_changes = max(view_changes, int((await resp.json()).get("view_changes", 0)) - before)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                continue
    lat = sorted(v * 1000 for v in commit_latency.values())
    committed = len(commit_latency)
    return {
        "nodes": len(targets),
        "submitted": cfg.txs,
        "committed": committed,
        "failed": cfg.txs - committed,
        "refused": failed,  # not acknowledged: a node answered with an error, or could not be reached
        "unconfirmed": max(0, cfg.txs - committed - failed),  # acknowledged, not seen committed in time
        "seconds": round(seconds, 3),
        "tx_per_s": round(committed / seconds, 1) if seconds > 0 else 0.0,
        "latency_ms_p50": round(percentile(lat, 50), 1),
        "latency_ms_p95": round(percentile(lat, 95), 1),
        "latency_ms_p99": round(percentile(lat, 99), 1),
        "results": dict(sorted(outcomes.items())),
        "view_changes": view_changes,  # the most any node went through during the run
        "overload_retries": overloaded["retries"],  # batches a full mempool asked to send again (503, Retry-After)
    }


SWEEP_FIELDS = ("offered_tx_per_s", "tx_per_s", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "committed", "failed")


def sweep_rates(text: str) -> list[int]:
    """Parse `--sweep-rates` ("500,1000,2000"): positive, strictly increasing offered loads."""
    try:
        rates = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError("--sweep-rates takes whole transactions per second, e.g. 500,1000,2000") from None
    if not rates or any(r <= 0 for r in rates) or rates != sorted(set(rates)):
        raise ValueError("--sweep-rates must list increasing positive rates, e.g. 500,1000,2000")
    return rates


def write_sweep(rows: Sequence[dict[str, Any]], csv_path: str, png_path: str, title: str) -> None:
    """The table behind the sweep (CSV) and its latency-versus-throughput plot (PNG)."""
    import csv

    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(SWEEP_FIELDS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in SWEEP_FIELDS})

    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")  # no display: render straight to the file
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    x = [r["tx_per_s"] for r in rows]
    for key, label, style in (("latency_ms_p50", "p50", "o-"), ("latency_ms_p95", "p95", "s--"), ("latency_ms_p99", "p99", "^:")):
        ax.plot(x, [r[key] for r in rows], style, label=label)
    for r in rows:
        ax.annotate(f"{r['offered_tx_per_s']:,}", (r["tx_per_s"], r["latency_ms_p50"]), textcoords="offset points",
                    xytext=(4, -12), fontsize=7, color="grey")
    ax.set_xlabel("committed transactions per second")
    ax.set_ylabel("commit latency (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="latency")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
