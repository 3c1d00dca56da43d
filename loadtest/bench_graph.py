"""Benchmark the served BotRGCN in-process: full-graph scoring and per-account queries.

    python -m loadtest.bench_graph [--scales 0.1 1 10] [--queries 300] [--threads 1] [--served]

For each graph size (edge_scale s: users 10,199·max(s,1)... see below) it measures, side by side in one run:
- full-graph scoring: the served path (ONNX encoder + scipy relational layers + ONNX heads) vs PyG eager
  (BotRGCN forward, torch, same thread count), best of 3;
- per-account queries through `HostedGraph.score` (the `bot_detector` handler's path: 2-hop computation
  subgraph; and with the `cache_layer1` parameter, layer 1 of every account computed at load): p50 / p99 of single-id queries (concurrency 1), and of 32-id batches — what the dynamic batcher
  forms when 32 clients wait at once, so the latency each of those 32 clients sees in-process.

Sizes: scale 0.1 is the hosted training-profile graph (10,199 users, 170k edges); 1 is MGTAB's size (10,199
users, 1.7M edges); 10 is ten times larger (101,990 users, 17M edges). Weights from models/graph/weights
(the served ones).

With --served it also builds the graph family into a temp repository, starts the real server
(serve/testing.py) and drives `bot_detector` with single-id requests (a random hosted account each) from 1
and 32 concurrent tritonclient clients over HTTP and gRPC (closed loop): p50 / p99 per request beside the
in-process figures of the hosted (scale 0.1) graph, which is the snapshot the replica serves.
Prints a table last and writes loadtest/results/bench_graph.json.
"""
import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .bench import best_of

RESULTS = Path(__file__).parent / "results" / "bench_graph.json"


def graph_for_scale(scale: float) -> dict:
    from models.graph.synth import GraphConfig, generate

    cfg = GraphConfig(edge_scale=scale) if scale <= 1 else GraphConfig.scaled(scale)
    return generate(cfg)


def served(duration_s: float) -> dict:
    """{protocol: {concurrency: cell}} for `bot_detector` through the real server (hosted snapshot)."""
    from models.graph.export import build as build_graph
    from .bench import served as drive
    from serve.testing import start_server, stop_server

    workdir = Path(tempfile.mkdtemp(prefix="bench-graph-"))
    repository = workdir / "repository"
    build_graph(repository)
    ids = np.load(repository / "bot_detector" / "1" / "graph.npz")["account_id"]
    rng = np.random.default_rng(1)
    server = start_server(repository, workdir)
    out = {}
    try:
        for protocol, address in (("http", server.http), ("grpc", server.grpc)):
            # (ids per request, concurrent clients): one id from 1 and 32 clients, and one client asking 32 at once
            for per_request, n in ((1, 1), (1, 32), (32, 1)):
                feeds = lambda b, k=per_request: {"ACCOUNT_IDS": rng.choice(ids, size=(k, 1)).astype(np.int64)}
                cell = asyncio.run(drive(protocol, address, "bot_detector", "1", feeds, n, duration_s))
                out.setdefault(protocol, {})[f"{per_request}x{n}"] = cell | {"ids_per_request": per_request, "concurrency": n}
                print(f"[bench_graph] served {protocol} {per_request} id(s) x c{n}: {cell['throughput']:.0f} req/s, p50 "
                      f"{cell['p50_ms']:.1f} ms, p99 {cell['p99_ms']:.1f} ms, errors {cell['errors']}", flush=True)
    finally:
        stop_server(server.process)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", type=float, nargs="*", default=[0.1, 1.0, 10.0])
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-pyg-above", type=float, default=1.0, help="PyG eager baseline only up to this scale (memory/time)")
    p.add_argument("--served", action="store_true", help="also measure bot_detector through the real server")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per served cell")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    from models.graph.export import load_trained, model_files
    from models.graph.serving import BotScorer, HostedGraph

    model, _ = load_trained()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        files, _ = model_files(model, rng.normal(size=(64, 788)).astype(np.float32))
        for name, data in files.items():
            (Path(d) / name).write_bytes(data)
        scorer = BotScorer(Path(d), a.threads)
        for scale in a.scales:
            t = time.perf_counter()
            g = graph_for_scale(scale)
            gen_s = time.perf_counter() - t
            n, e = len(g["x"]), g["edge_index"].shape[1]
            print(f"scale {scale}: {n} users, {e} edges (generated in {gen_s:.1f}s)", flush=True)
            served_s, _ = best_of(lambda g=g: scorer.full_graph(g["x"], g["edge_index"], g["edge_type"]))
            pyg_s = float("nan")
            if scale <= a.skip_pyg_above:
                tensors = [torch.from_numpy(g[k]) for k in ("x", "edge_index", "edge_type")]
                with torch.no_grad():
                    pyg_s, _ = best_of(lambda: model(*tensors))
            row = {"scale": scale, "users": n, "edges": e, "full_graph_served_s": served_s, "full_graph_pyg_s": pyg_s}
            for mode, cache in (("", False), ("cached_", True)):  # 2-hop per query; layer 1 cached at load
                t = time.perf_counter()
                hosted = HostedGraph(scorer, g["x"], g["edge_index"], g["edge_type"], g["account_id"], cache_layer1=cache)
                row[f"{mode}replica_load_s"] = time.perf_counter() - t
                single, batch32 = [], []
                for _ in range(a.queries):
                    node = rng.integers(n, size=1)
                    t = time.perf_counter()
                    hosted.score(node)
                    single.append(time.perf_counter() - t)
                for _ in range(max(10, a.queries // 10)):
                    nodes = rng.integers(n, size=32)
                    t = time.perf_counter()
                    hosted.score(nodes)
                    batch32.append(time.perf_counter() - t)
                row |= {f"{mode}query_c1_p50_ms": 1e3 * float(np.percentile(single, 50)), f"{mode}query_c1_p99_ms": 1e3 * float(np.percentile(single, 99)),
                        f"{mode}query_c32_p50_ms": 1e3 * float(np.percentile(batch32, 50)), f"{mode}query_c32_p99_ms": 1e3 * float(np.percentile(batch32, 99))}
            rows.append(row)
            print(json.dumps(row), flush=True)
            del g, hosted
    remote = served(a.duration) if a.served else {}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"threads": a.threads, "rows": rows, "served": remote, "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
    print(f"\nthreads {a.threads}; goal: full 10k graph < 1 s, per-account p99 < 50 ms at concurrency 32")
    print("| scale | users | edges | full graph served s | PyG eager s | ratio | query mode | replica load s | c1 p50 / p99 ms | c32 (batch of 32) p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for mode, label in (("", "2-hop per query"), ("cached_", "layer 1 cached")):
            print(f"| {r['scale']} | {r['users']} | {r['edges']} | {r['full_graph_served_s']:.3f} | {r['full_graph_pyg_s']:.3f} | "
                  f"{r['full_graph_pyg_s'] / r['full_graph_served_s']:.1f}x | {label} | {r[mode + 'replica_load_s']:.2f} | "
                  f"{r[mode + 'query_c1_p50_ms']:.1f} / {r[mode + 'query_c1_p99_ms']:.1f} | {r[mode + 'query_c32_p50_ms']:.1f} / {r[mode + 'query_c32_p99_ms']:.1f} |")

    if remote:
        hosted = next((r for r in rows if r["scale"] == 0.1), None)
        print("\nbot_detector served (hosted snapshot, one random account per request, closed loop):")
        print("| protocol | ids per request | clients | req/s | p50 ms | p99 ms | in-process p50 / p99 ms | errors |")
        print("|---|---|---|---|---|---|---|---|")
        for protocol, cells in remote.items():
            for c in cells.values():
                n = max(c["ids_per_request"], c["concurrency"])  # in-process: one query of 1 id, or one batch of 32
                local = f"{hosted[f'query_c{n}_p50_ms']:.1f} / {hosted[f'query_c{n}_p99_ms']:.1f}" if hosted else "—"
                print(f"| {protocol} | {c['ids_per_request']} | {c['concurrency']} | {c['throughput']:.0f} | {c['p50_ms']:.1f} | "
                      f"{c['p99_ms']:.1f} | {local} | {c['errors']} |")


if __name__ == "__main__":
    main()
