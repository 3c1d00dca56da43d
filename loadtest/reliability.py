"""Overload and fault figures: `python -m loadtest.reliability [--seconds 5]`.

Serves the example models only (fast start) and measures, on `slow_identity` (hosted in the ingress; a batch of
4 takes 50 ms, one batch may wait behind the one computing: `max_queue_size: 4`), so 4 concurrent clients
saturate it:
- unloaded: one client; its p99 is the reference for the overload promise;
- overload, offered as arrivals at 1x, 2x, 4x and 8x the model's capacity (open loop: 80 requests/s is one full
  batch every 50 ms): accepted throughput, p50/p99 of accepted requests, share and latency of 503 refusals, and the
  server's memory (RSS of its process tree) — the queue is bounded, so memory must not grow with the load. The promise
  checked: at 4x, accepted p99 <= 2x the unloaded p99 + the configured queue delay;
- the same with closed-loop clients (1x-8x of 4 clients) that retry 10 ms after a refusal: a retry storm offers far
  more than the factor says, and shows what refusals cost the ingress;
- recovery after overload: latency of the first requests once the burst stops;
- faults under 1x load, each SIGKILL: the replica running `slow_identity_dedicated` (the jobs pool) and the ingress
  replica itself (which also hosts the models placed in it); how requests ended and when the first success came.
Writes loadtest/reports/reliability.json and .md.
"""
import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from models.examples.export import build as build_examples

from .bench import RAY_NICENESS
from serve.testing import start_server, stop_server

REPORTS = Path(__file__).parent / "reports"
BODY_BYTES = json.dumps({"inputs": [{"name": "X", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}).encode()
JSON = {"Content-Type": "application/json"}
SATURATION = 4
CAPACITY_PER_S = 80.0  # slow_identity: a batch of 4 every 50 ms
QUEUE_DELAY_MS = 1.0  # slow_identity's max_queue_delay_microseconds


def rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def session(address: str, connections: int) -> "aiohttp.ClientSession":
    """The load client. aiohttp, not httpx: on these 2 cores, sharing them with the server at its niceness, httpx's
    client sent 103 of the 320 requests/s planned at 4x and its own queueing showed up as seconds of "latency"
    (2026-12-03); aiohttp's pool sent 316 of them."""
    import aiohttp

    return aiohttp.ClientSession(f"http://{address}", connector=aiohttp.TCPConnector(limit=connections),
                                 timeout=aiohttp.ClientTimeout(total=60))


async def infer(client, model: str) -> tuple[int, float, str]:
    """One request: its status (-1: no answer), seconds, and 200 or the kind of refusal (a full queue, a lost replica,
    the status itself, or the client error)."""
    import aiohttp

    started = time.perf_counter()
    try:
        async with client.post(f"/v2/models/{model}/infer", data=BODY_BYTES, headers=JSON) as response:
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        return -1, time.perf_counter() - started, type(e).__name__
    reason = ("200" if status == 200 else "503 at capacity" if "at capacity" in text
              else "503 replica lost" if "replica" in text else str(status))
    return status, time.perf_counter() - started, reason


async def closed_loop(address: str, clients: int, seconds: float, model: str = "slow_identity") -> list[tuple[int, float, str]]:
    outcomes: list[tuple[int, float, str]] = []
    stop_at = time.perf_counter() + seconds
    async with session(address, clients) as client:
        async def user():
            while time.perf_counter() < stop_at:
                outcomes.append(await infer(client, model))
                if outcomes[-1][0] == 503:
                    await asyncio.sleep(0.01)  # a polite client honours back-off a little

        await asyncio.gather(*(user() for _ in range(clients)))
    return outcomes


async def open_loop(address: str, rate_per_s: float, seconds: float) -> list[tuple[int, float, str]]:
    """Requests sent at a fixed rate whatever the answers (arrivals, not clients): the offered load is the rate."""
    async with session(address, 1024) as client:
        loop, tasks = asyncio.get_running_loop(), []
        began = loop.time()
        for i in range(int(rate_per_s * seconds)):
            await asyncio.sleep(max(0.0, began + i / rate_per_s - loop.time()))
            tasks.append(asyncio.create_task(infer(client, "slow_identity")))
        return list(await asyncio.gather(*tasks))


def summarize(outcomes, seconds) -> dict:
    ok = [t * 1000 for s, t, _ in outcomes if s == 200]
    refused = [t * 1000 for s, t, _ in outcomes if s == 503]
    other = [s for s, _, _ in outcomes if s not in (200, 503)]
    pct = lambda v, q: round(float(np.percentile(v, q)), 1) if v else None  # noqa: E731
    return {
        "accepted_per_s": round(len(ok) / seconds, 1), "accepted_p50_ms": pct(ok, 50), "accepted_p99_ms": pct(ok, 99),
        "refused_share": round(len(refused) / max(len(outcomes), 1), 3), "refused_p50_ms": pct(refused, 50),
        "other_statuses": sorted(set(other)),
    }


def replica_pid(server_pid: int, deployment: str) -> int:
    for p in psutil.Process(server_pid).children(recursive=True):
        if f"ServeReplica:streamserve:{deployment}" in " ".join(p.cmdline()):
            return p.pid
    raise RuntimeError(f"no replica process for {deployment}")


async def fault(address: str, server_pid: int, seconds: float, model: str, deployment: str) -> dict:
    """Kill `deployment`'s replica under 1x load on `model`; how the requests ended, when the first success came."""
    load = asyncio.create_task(closed_loop(address, SATURATION, seconds, model))
    await asyncio.sleep(seconds / 3)
    killed_at = time.perf_counter()
    os.kill(replica_pid(server_pid, deployment), signal.SIGKILL)
    outcomes = await load
    async with session(address, 1) as client:
        while (await infer(client, model))[0] != 200:  # the ingress's port is closed until Serve has replaced it
            await asyncio.sleep(0.2)
    statuses = {}
    for _, _, reason in outcomes:
        statuses[reason] = statuses.get(reason, 0) + 1
    return {
        "killed": deployment, "outcomes_during_load": statuses, "slowest_request_s": round(max(t for _, t, _ in outcomes), 2),
        "first_success_after_kill_s": round(time.perf_counter() - killed_at, 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="reliability-"))
    build_examples(work / "repo")
    server = start_server(work / "repo", work / "server")
    # Ray runs the replicas at nice 15: a load client at nice 0 would take the cores first and its retry storm would
    # be measured as the server's latency. The client runs at the server's niceness, as in loadtest/bench.py.
    os.nice(RAY_NICENESS - os.nice(0))
    results: dict = {"overload": {}, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "conditions": f"{os.cpu_count()} cores, examples repository, HTTP, open and closed loop, client at nice {RAY_NICENESS}"}
    try:
        asyncio.run(closed_loop(server.http, 4, 1.0))  # warm-up
        baseline_rss = rss_mb(server.process.pid)
        unloaded = summarize(asyncio.run(closed_loop(server.http, 1, args.seconds)), args.seconds)
        results["unloaded"] = unloaded
        print(f"unloaded (1 client): {unloaded}", flush=True)
        for factor in (1, 2, 4, 8):
            started = time.perf_counter()
            outcomes = asyncio.run(open_loop(server.http, CAPACITY_PER_S * factor, args.seconds))
            wall = time.perf_counter() - started  # longer than planned when the client cannot send that fast
            row = summarize(outcomes, wall) | {"rss_mb": round(rss_mb(server.process.pid)),
                                               "offered_per_s": round(len(outcomes) / wall, 1)}
            results["overload"][f"{factor}x"] = row
            print(f"{factor}x capacity ({CAPACITY_PER_S * factor:g} requests/s offered): {row}", flush=True)
        results["retry_storm"] = {}
        for factor in (1, 2, 4, 8):
            outcomes = asyncio.run(closed_loop(server.http, SATURATION * factor, args.seconds))
            row = summarize(outcomes, args.seconds) | {"rss_mb": round(rss_mb(server.process.pid))}
            results["retry_storm"][f"{factor}x"] = row
            print(f"{factor}x closed loop ({SATURATION * factor} clients retrying): {row}", flush=True)
        started = time.perf_counter()
        after = asyncio.run(closed_loop(server.http, 1, 1.0))
        results["recovery"] = {"first_request_ms": round(after[0][1] * 1000, 1), "status": after[0][0],
                               "measured_after_s": round(time.perf_counter() - started, 1)}
        results["rss_mb_before"] = round(baseline_rss)
        bound = 2 * unloaded["accepted_p99_ms"] + QUEUE_DELAY_MS
        results["promise"] = {"accepted_p99_at_4x_ms": results["overload"]["4x"]["accepted_p99_ms"], "bound_ms": round(bound, 1),
                              "kept": results["overload"]["4x"]["accepted_p99_ms"] <= bound}
        print("promise:", results["promise"], flush=True)
        results["faults"] = [
            asyncio.run(fault(server.http, server.process.pid, args.seconds * 2, "slow_identity_dedicated", "pool_jobs")),
            asyncio.run(fault(server.http, server.process.pid, args.seconds * 2, "slow_identity", "Ingress")),
        ]
        for outcome in results["faults"]:
            print("fault:", outcome, flush=True)
    finally:
        stop_server(server.process)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "reliability.json").write_text(json.dumps(results, indent=2))
    lines = ["| load | offered | accepted/s | accepted p50 / p99 ms | refused share | refused p50 ms | RSS MB |", "|---|---|---|---|---|---|---|"]
    for factor, row in results["overload"].items():
        lines.append(f"| {factor} capacity | {row['offered_per_s']:g} req/s (open loop, {CAPACITY_PER_S * int(factor[:-1]):g} planned) | {row['accepted_per_s']} | "
                     f"{row['accepted_p50_ms']} / {row['accepted_p99_ms']} | {row['refused_share']} | {row['refused_p50_ms']} | {row['rss_mb']} |")
    for factor, row in results["retry_storm"].items():
        lines.append(f"| {factor} clients | {SATURATION * int(factor[:-1])} closed-loop clients, retry after 10 ms | {row['accepted_per_s']} | "
                     f"{row['accepted_p50_ms']} / {row['accepted_p99_ms']} | {row['refused_share']} | {row['refused_p50_ms']} | {row['rss_mb']} |")
    promise = results["promise"]
    lines += ["", f"Unloaded (1 client): accepted p50 / p99 {results['unloaded']['accepted_p50_ms']} / {results['unloaded']['accepted_p99_ms']} ms. "
              f"Promise at 4x: accepted p99 {promise['accepted_p99_at_4x_ms']} ms vs bound {promise['bound_ms']} ms "
              f"(2x unloaded p99 + {QUEUE_DELAY_MS:g} ms queue delay): {'kept' if promise['kept'] else 'NOT kept'}.",
              f"RSS before the load: {results['rss_mb_before']} MB. Recovery: {results['recovery']}."]
    lines += [f"Killed under 1x load: {outcome}." for outcome in results["faults"]]
    lines += ["", f"Conditions: {results['conditions']}."]
    (REPORTS / "reliability.md").write_text("# Overload and fault figures (`python -m loadtest.reliability`)\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
