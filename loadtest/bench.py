"""Served vs in-process benchmark: `python -m loadtest.bench [--model digits_cnn] [--duration 5]`.

Starts the real server on loopback, drives one model with tritonclient's asyncio clients (HTTP and
gRPC) at concurrency 1, 8 and 32 (closed loop: each of N clients sends its next one-item request when
the previous answer arrives), and runs the same ONNX file in this process with ONNX Runtime at batch
1, 8 and 32, with the replica's thread count. Models: digits_cnn, shortcut_audit, caption_match, simple. Prints throughput and p50/p99 side by side and as ratios
served / in-process, and writes them to loadtest/results/. The client shares the 2 cores with the
server: a ratio, not an absolute number, is what carries over between runs.
"""
import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http.aio as http_aio
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import np_to_triton_dtype

from .server import start_server, stop_server

def workloads() -> dict:
    """model -> (version, batch -> inputs): real test-split data where the model has one."""
    from models.digits.data import load_splits

    digits = np.ascontiguousarray(load_splits()["test"][0][:32])
    rng = np.random.default_rng(0)
    captions = np.array([[b"a small thick red seven slanted left"]] * 32, dtype=object)
    return {
        "digits_cnn": ("2", lambda b: {"image": digits[:b]}),
        "shortcut_audit": ("1", lambda b: {"image": rng.random((b, 3, 8, 8), dtype=np.float32)}),
        "caption_match": ("1", lambda b: {"image": rng.random((b, 3, 16, 16), dtype=np.float32), "text": captions[:b]}),
        "simple": ("1", lambda b: {"INPUT0": np.ones((b, 16), np.int32), "INPUT1": np.ones((b, 16), np.int32)}),
    }
CONCURRENCY = (1, 8, 32)
RESULTS = Path(__file__).parent / "results"


def percentile(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def best_of(fn, repeats=3):
    """(fastest wall time, result) of `repeats` calls: the least-disturbed run on a shared machine."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def summarize(latencies_s, items, wall_s):
    ms = [x * 1000 for x in latencies_s]
    return {"throughput": items / wall_s, "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "requests": len(ms)}


def in_process(model_file: Path, feeds, batch: int, duration_s: float, threads: int) -> dict:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    # ONNX string tensors are str objects; the wire carries bytes.
    x = {k: (v.astype(str).astype(object) if v.dtype == object else v) for k, v in feeds(batch).items()}
    for _ in range(20):
        session.run(None, x)
    latencies, started = [], time.perf_counter()
    while time.perf_counter() - started < duration_s:
        t = time.perf_counter()
        session.run(None, x)
        latencies.append(time.perf_counter() - t)
    return summarize(latencies, batch * len(latencies), time.perf_counter() - started)


async def served(protocol: str, address: str, model: str, version: str, feeds, concurrency: int, duration_s: float) -> dict:
    module = http_aio if protocol == "http" else grpc_aio
    client = module.InferenceServerClient(address)

    def request():
        tensors = []
        for name, array in feeds(1).items():  # a fresh feed per request: workloads may vary what they send
            tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        return tensors

    async def call():
        await client.infer(model, request(), model_version=version)

    for _ in range(10):
        await call()
    latencies, errors = [], 0
    started = time.perf_counter()
    deadline = started + duration_s

    async def worker():
        nonlocal errors
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                await call()
                latencies.append(time.perf_counter() - t)
            except Exception:
                errors += 1

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    wall = time.perf_counter() - started
    await client.close()
    return summarize(latencies, len(latencies), wall) | {"errors": errors}


def batch_totals(server, model: str, version: str) -> tuple[float, float]:
    """(batches, rows) run so far by the benchmarked model version, from the Prometheus scrape.

    Rows come from the buckets (one per size up to 32), not from `_sum`, which Ray's exporter
    approximates by bucket midpoints."""
    cumulative = {}
    for family in text_string_to_metric_families(server.metrics_text()):
        if family.name == "ray_streamserve_batch_size":
            for s in family.samples:
                if s.name.endswith("_bucket") and s.labels.get("model") == model and s.labels.get("version") == version:
                    le = float(s.labels["le"])
                    cumulative[le] = cumulative.get(le, 0.0) + s.value
    bounds = sorted(b for b in cumulative if b <= 32)
    batches = cumulative.get(float("inf"), 0.0)
    rows, previous = 0.0, 0.0
    for bound in bounds:
        rows += bound * (cumulative[bound] - previous)
        previous = cumulative[bound]
    return batches, rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default="digits_cnn", choices=sorted(workloads()))
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    parser.add_argument("--threads", type=int, default=1, help="in-process intra-op threads (the replica's share)")
    parser.add_argument("--proxy", action="store_true", help="serve through Serve's classic proxy instead of direct ingress")
    args = parser.parse_args(argv)
    version, feeds = workloads()[args.model]
    model_file = args.repository / args.model / version / "model.onnx"
    rows = []
    env = {"STREAMSERVE_DIRECT_INGRESS": "0"} if args.proxy else {}
    server = start_server(args.repository.resolve(), Path(tempfile.mkdtemp(prefix="bench-")), env)
    try:
        for concurrency in CONCURRENCY:
            local = in_process(model_file, feeds, concurrency, args.duration, args.threads)
            for protocol, address in (("http", server.http), ("grpc", server.grpc)):
                before = batch_totals(server, args.model, version)
                result = asyncio.run(served(protocol, address, args.model, version, feeds, concurrency, args.duration))
                time.sleep(2.5)  # Ray's metrics agent reports every 2 s
                after = batch_totals(server, args.model, version)
                batches = after[0] - before[0]
                result["mean_batch"] = (after[1] - before[1]) / batches if batches else float("nan")
                rows.append({"protocol": protocol, "concurrency": concurrency, "served": result, "in_process": local})
    finally:
        stop_server(server.process)
    mode = "proxy" if args.proxy else "direct"
    print_table(rows, f"{args.model} v{version}", mode)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bench_{args.model}_{mode}.json").write_text(json.dumps(rows, indent=2))


def print_table(rows, model: str, mode: str) -> None:
    print(f"\n{model}: served ({mode}; 1 item per request, N concurrent clients) vs in-process ONNX Runtime (batch N)")
    header = f"{'proto':5} {'N':>3} | {'served/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6} {'err':>4} | {'local/s':>9} {'p50 ms':>8} {'p99 ms':>8} | {'thru x':>7} {'p50 x':>7} {'p99 x':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        s, l = r["served"], r["in_process"]
        print(
            f"{r['protocol']:5} {r['concurrency']:>3} | {s['throughput']:9.1f} {s['p50_ms']:8.2f} {s['p99_ms']:8.2f} {s['mean_batch']:6.2f} {s['errors']:4d} | "
            f"{l['throughput']:9.1f} {l['p50_ms']:8.2f} {l['p99_ms']:8.2f} | {s['throughput'] / l['throughput']:7.3f} {s['p50_ms'] / l['p50_ms']:7.1f} {s['p99_ms'] / l['p99_ms']:7.1f}"
        )
    print("thru x = served / in-process throughput; p50 x, p99 x = served / in-process latency.")


if __name__ == "__main__":
    main()
