"""Replace `bot_detector`'s hosted graph on a running server under load, and measure what clients see.

    python -m loadtest.snapshot_swap [--clients 8] [--settle 5]

Builds the graph family from the committed weights into a temp repository, starts the real server, and drives
`bot_detector` from closed-loop gRPC clients. Each request asks for three accounts: one in both graphs, one only in
the old graph, one only in the new. Meanwhile it installs a new graph of the hosted size (`models.graph.export.add_snapshot`)
and runs `python -m serve reload`. Every answer is classified old (old-only found, new-only not), new (the reverse)
or mixed (a request answered from two snapshots: must never happen). Reports errors, when the new graph started
answering, and latency before / during / after the swap; writes loadtest/results/snapshot_swap.json.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "snapshot_swap.json"


def new_graph(old_ids: np.ndarray, path: Path, n_users: int | None = None, edge_scale: float = 0.1, seed: int = 11) -> np.ndarray:
    """Write a graph (another seed) whose first 100 accounts are also in the old one, the rest new; returns its ids."""
    from models.graph.synth import GraphConfig, generate, save_snapshot

    g = generate(GraphConfig(edge_scale=edge_scale, seed=seed, **({"n_users": n_users} if n_users else {})))
    shared = min(100, len(old_ids) // 2)
    g["account_id"][:shared] = old_ids[:shared]
    g["account_id"][shared:] = np.arange(len(g["x"]) - shared) + 7 * 10**10  # outside the generator's id range
    save_snapshot(g, path)
    return g["account_id"]


def swap_under_load(server, install, ids: tuple[int, int, int], clients: int = 4, settle_s: float = 3.0) -> dict:
    """Drive `bot_detector` with [shared, old-only, new-only] ids from `clients` threads; after `settle_s`, call
    `install()` (puts the new snapshot in the repository) and `python -m serve reload`; stop `settle_s` later."""
    import tritonclient.grpc as grpcclient

    query = np.array([[i] for i in ids], np.int64)
    records: list[tuple[int, float, float, str]] = []  # (client, start, end, "old" | "new" | "mixed" | error)
    stop = threading.Event()

    def client(k: int) -> None:
        c = grpcclient.InferenceServerClient(server.grpc)
        tensor = grpcclient.InferInput("ACCOUNT_IDS", list(query.shape), "INT64")
        tensor.set_data_from_numpy(query)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                found = c.infer("bot_detector", [tensor]).as_numpy("FOUND").ravel().tolist()
                outcome = {(True, True, False): "old", (True, False, True): "new"}.get(tuple(found), f"mixed {found}")
            except Exception as e:
                outcome = f"error: {e}"
            records.append((k, started, time.perf_counter(), outcome))
        c.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    time.sleep(settle_s)
    t_install = time.perf_counter()
    install()
    t_reload = time.perf_counter()
    reload = subprocess.run([sys.executable, "-m", "serve", "reload", "--temp-dir", str(server.temp_dir)],
                            capture_output=True, text=True, timeout=600)
    t_done = time.perf_counter()
    time.sleep(settle_s)
    stop.set()
    for t in threads:
        t.join(60)

    def latencies(rows):
        ms = np.array([(end - start) * 1000 for _, start, end, _ in rows])
        if not len(ms):
            return {"requests": 0}
        return {"requests": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}

    outcomes = [r[3] for r in records]
    per_client = {k: [r[3] for r in sorted(records, key=lambda r: r[1]) if r[0] == k] for k in range(clients)}
    first_new = min((start for _, start, _, o in records if o == "new"), default=None)
    return {
        "clients": clients,
        "requests": len(records),
        "old": outcomes.count("old"),
        "new": outcomes.count("new"),
        "mixed": [o for o in outcomes if o.startswith("mixed")],
        "errors": [o for o in outcomes if o.startswith("error")][:10],
        "error_count": sum(o.startswith("error") for o in outcomes),
        # Once a client has had an answer from the new graph, it never gets one from the old graph again.
        "monotone": all("old" not in seq[seq.index("new"):] for seq in per_client.values() if "new" in seq),
        "old_after_reload_returned": sum(1 for _, start, _, o in records if start > t_done and o != "new"),
        "install_s": t_reload - t_install,
        "reload_s": t_done - t_reload,
        "first_new_after_reload_start_s": None if first_new is None else first_new - t_reload,
        "reload_rc": reload.returncode,
        "reload_output": (reload.stdout + reload.stderr).strip()[-2000:],
        "latency": {
            "before": latencies([r for r in records if r[2] < t_install]),
            "during": latencies([r for r in records if r[2] >= t_install and r[1] <= t_done]),
            "after": latencies([r for r in records if r[1] > t_done]),
        },
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--settle", type=float, default=5.0, help="seconds of load before the install and after the reload")
    a = p.parse_args(argv)
    from models.graph.export import build as build_graph
    from models.graph.export import add_snapshot

    from serve.testing import start_server, stop_server

    workdir = Path(tempfile.mkdtemp(prefix="snapshot-swap-"))
    repository = workdir / "repository"
    build_graph(repository)
    old_ids = np.load(repository / "bot_detector" / "1" / "graph.npz")["account_id"]
    new_ids = new_graph(old_ids, workdir / "new.npz")
    ids = (int(old_ids[0]), int(old_ids[-1]), int(new_ids[-1]))
    server = start_server(repository, workdir)
    try:
        result = swap_under_load(server, lambda: add_snapshot(repository, workdir / "new.npz"), ids, a.clients, a.settle)
    finally:
        stop_server(server.process)
    result["when"] = time.strftime("%Y-%m-%d %H:%M:%S")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
