"""Autoscaling proof on the embedded cluster: `python -m loadtest.autoscale`.

Starts the real server, then offers no load, a burst of N concurrent gRPC clients on `heat1d` (each a
unary call for a 200-step rollout, so a request stays at the model replica for a while and the model,
not the ingress, is what runs out of room), and no load again, sampling Serve's own metrics every 2 s from the Prometheus endpoint: the autoscaler's
target and the replicas actually serving (`ray_serve_replica_processing_queries` series), beside the
throughput the clients saw. Writes loadtest/results/autoscale.csv and autoscale.png.
"""
import argparse
import asyncio
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as grpc_aio
from prometheus_client.parser import text_string_to_metric_families

from serve.testing import start_server, stop_server

MODEL, DEPLOYMENT = "heat1d", "heat1d_v1"
POINTS, STEPS = 2000, 200
RESULTS = Path(__file__).parent / "results"


def replica_counts(metrics_text: str) -> tuple[float, int]:
    """(the autoscaler's target replicas, replicas reporting as running) for the deployment."""
    target, running = float("nan"), set()
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.labels.get("deployment") != DEPLOYMENT:
                continue
            if s.name == "ray_serve_autoscaling_target_replicas":
                target = s.value
            elif s.name == "ray_serve_replica_processing_queries":
                running.add(s.labels.get("replica"))
    return target, len(running)


async def offer_load(address: str, concurrency: int, stop: asyncio.Event, done: list, errors: list,
                     latencies: list | None = None, timeout_s: float | None = None) -> None:
    """`concurrency` clients, each calling again as soon as it is answered, until `stop`. `done` gets each success's
    time, `latencies` (when given) its (time, seconds), `errors` each failure as "<gRPC status>: <message>"; a call not
    answered within `timeout_s` fails on the client's side (DEADLINE_EXCEEDED), so a hang is counted, not waited on."""
    client = grpc_aio.InferenceServerClient(address)
    state = np.random.default_rng(0).random((1, POINTS), dtype=np.float32)

    async def worker():
        while not stop.is_set():
            u = grpc_aio.InferInput("U", [1, POINTS], "FP32")
            u.set_data_from_numpy(state)
            steps = grpc_aio.InferInput("STEPS", [1, 1], "INT32")
            steps.set_data_from_numpy(np.array([[STEPS]], np.int32))
            started = time.perf_counter()
            try:
                await client.infer(MODEL, [u, steps], client_timeout=timeout_s)
                done.append(time.perf_counter())
                if latencies is not None:
                    latencies.append((done[-1], done[-1] - started))
            except Exception as e:
                status = e.status() if hasattr(e, "status") and callable(e.status) else type(e).__name__
                message = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
                errors.append(f"{status}: {message}"[:300])
                await asyncio.sleep(0.05)

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    await client.close()


async def experiment(server, phases, interval_s: float) -> list[dict]:
    rows, done, errors, started = [], [], [], time.perf_counter()
    last_time, last_done = started, 0
    loop = asyncio.get_running_loop()
    for load, seconds in phases:
        stop = asyncio.Event()
        task = asyncio.create_task(offer_load(server.grpc, load, stop, done, errors)) if load else None
        phase_end = time.perf_counter() + seconds
        while time.perf_counter() < phase_end:
            await asyncio.sleep(interval_s)
            target, running = replica_counts(await loop.run_in_executor(None, server.metrics_text))
            now = time.perf_counter()
            throughput = (len(done) - last_done) / (now - last_time)
            last_time, last_done = now, len(done)
            rows.append({"t_s": round(now - started, 1), "clients": load, "target_replicas": target,
                         "running_replicas": running, "throughput_rps": round(throughput, 1), "completed": len(done), "errors": len(errors)})
            print(rows[-1], flush=True)
        stop.set()
        if task:
            await task
    if errors:
        print(f"{len(errors)} failed requests; first: {errors[0]}")
    return rows


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.step(t, [r["running_replicas"] for r in rows], where="post", label="replicas serving", color="tab:blue", linewidth=2)
    ax.step(t, [r["target_replicas"] for r in rows], where="post", label="autoscaler target", color="tab:orange", linestyle="--")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"replicas of {DEPLOYMENT}")
    ax.set_ylim(0, max(r["running_replicas"] for r in rows) + 1)
    right = ax.twinx()
    right.plot(t, [r["throughput_rps"] for r in rows], color="tab:green", alpha=0.6, label="throughput (req/s)")
    right.fill_between(t, [r["clients"] for r in rows], step="post", color="grey", alpha=0.15, label="concurrent clients")
    right.set_ylabel("req/s  |  clients")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right", fontsize=8)
    ax.set_title("Serve autoscaling on the embedded 2-core cluster")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--idle", type=float, default=20, help="seconds without load, before and after")
    parser.add_argument("--burst", type=float, default=60, help="seconds of load")
    parser.add_argument("--after", type=float, default=70, help="seconds without load after the burst")
    args = parser.parse_args(argv)
    server = start_server(args.repository.resolve(), Path(tempfile.mkdtemp(prefix="autoscale-")))
    try:
        rows = asyncio.run(experiment(server, [(0, args.idle), (args.clients, args.burst), (0, args.after)], 2.0))
    finally:
        stop_server(server.process)
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "autoscale.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, RESULTS / "autoscale.png")
    burst_start, burst_end = args.idle, args.idle + args.burst
    up = next((r["t_s"] for r in rows if r["t_s"] > burst_start and r["running_replicas"] > 1), None)
    down = next((r["t_s"] for r in rows if up and r["t_s"] > max(up, burst_end) and r["running_replicas"] == 1), None)
    up = up and round(up - burst_start, 1)
    down = down and round(down - burst_end, 1)
    print(f"\nmax replicas {max(r['running_replicas'] for r in rows)}; second replica serving {up} s after the burst began; "
          f"back to one {down} s after it ended. Plot: {RESULTS / 'autoscale.png'}")


if __name__ == "__main__":
    main()
