"""Where the request path spends the CPU: `python -m loadtest.profile_path [--model digits_cnn] [--clients 32]
[--seconds 10]`.

Starts the real server (the full repository), drives the model (`loadtest.bench`'s workload for it) with closed-loop
tritonclient gRPC clients at the server's niceness, and while the load runs: samples the ingress replica with py-spy
(`--gil`: only the thread that holds the interpreter, i.e. Python's own CPU time, 200 Hz) and reads the CPU time of
the server's whole process tree.
Prints and writes (loadtest/reports/profile<tag>.json, flame_ingress<tag>.svg) the share of samples by where the
innermost frame lives, the ingress's and the whole server's cores, and CPU milliseconds per request.
"""
import argparse
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from .bench import RAY_NICENESS, VERSIONS, run_cell
from .idle import cpu_seconds, tree
from serve.testing import start_server, stop_server

REPORTS = Path(__file__).parent / "reports"
CATEGORIES = (  # (name, test on (function, file)); the first that matches the innermost frame wins
    ("native: event loop, gRPC core (no Python frame)", lambda fn, path: fn == "Thread.run" and path.endswith("threading.py")),
    ("ONNX Runtime", lambda fn, path: "onnxruntime" in path),
    ("metrics", lambda fn, path: "metrics" in path),
    ("Ray: Serve's request wrapper, router, handles", lambda fn, path: path.startswith("ray/") or "/ray/" in path),
    # before the gRPC test: our serve/grpc_servicer.py and serve/grpc_ingress.py are ours, not grpcio's
    ("ours: adapters, data plane, batcher, worker", lambda fn, path: path.startswith(("serve/", "proto/")) or "/serve/" in path),
    ("gRPC / protobuf (Python)", lambda fn, path: "grpc" in path or "protobuf" in path),
    ("HTTP framework", lambda fn, path: any(k in path for k in ("fastapi", "starlette", "uvicorn", "pydantic"))),
    ("asyncio, stdlib, numpy", lambda fn, path: True),
)


def categorize(raw: str) -> dict[str, float]:
    """Share of samples per category from py-spy's raw (collapsed-stack) output."""
    counts, total = Counter(), 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        match = re.match(r"(.*) \((.*?):\d+\)$", stack.split(";")[-1])
        fn, path = match.groups() if match else (stack, "")
        counts[next(name for name, test in CATEGORIES if test(fn, path))] += int(n)
        total += int(n)
    return {name: round(n / total, 3) for name, n in counts.most_common()} if total else {}


def top_frames(raw: str, count: int = 25) -> dict[str, float]:
    """Share of samples per innermost frame ("function (file)"), the largest `count`: where the categories' time is."""
    counts, total = Counter(), 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            counts[re.sub(r":\d+\)$", ")", stack.split(";")[-1])] += int(n)
            total += int(n)
    return {frame: round(n / total, 3) for frame, n in counts.most_common(count)} if total else {}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default="digits_cnn", choices=[m for m in VERSIONS if m != "kno_ns2d"])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="profile-"))
    server = start_server(args.repository.resolve(), workdir)
    result: dict = {}
    try:
        time.sleep(5)
        processes = tree(psutil.Process(server.process.pid))
        ingress = next(p for p in processes if "ServeReplica:streamserve:Ingress" in " ".join(p.cmdline()))
        cell = {"protocol": "grpc", "address": server.grpc, "model": args.model, "version": VERSIONS[args.model], "concurrency": args.clients,
                "duration_s": args.seconds + 8, "binary": True}
        load: dict = {}
        driver = threading.Thread(target=lambda: load.update(run_cell(RAY_NICENESS, **cell)))
        driver.start()
        time.sleep(4)
        before, started, machine_before = cpu_seconds(processes), time.monotonic(), psutil.cpu_times()
        raw, svg = workdir / "ingress.raw", REPORTS / f"flame_ingress{args.tag}.svg"
        subprocess.run([py_spy, "record", "-p", str(ingress.pid), "-d", str(int(args.seconds)), "-r", "200", "--gil",
                        "--nonblocking", "-f", "raw", "-o", str(raw)], check=True, capture_output=True)
        after, wall, machine_after = cpu_seconds(processes), time.monotonic() - started, psutil.cpu_times()
        subprocess.run([py_spy, "record", "-p", str(ingress.pid), "-d", "3", "-r", "100", "--gil", "--nonblocking",
                        "-o", str(svg)], check=True, capture_output=True)
        driver.join()
        tree_cores = sum(after[p] - before[p] for p in after if p in before) / wall
        ingress_cores = (after[ingress.pid] - before[ingress.pid]) / wall
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "model": args.model, "clients": args.clients, "load": load,
            "ingress_cores": round(ingress_cores, 2), "server_cores": round(tree_cores, 2),
            "server_cpu_ms_per_request": round(1000 * tree_cores / load["throughput"], 2),
            # everything busy on the machine meanwhile: the server, the load client (at the server's niceness), the rest
            "machine_busy_cores": round(sum(getattr(machine_after, f) - getattr(machine_before, f)
                                            for f in ("user", "nice", "system", "irq", "softirq")) / wall, 2),
            "ingress_samples_by_where": categorize(raw.read_text()),
            "ingress_top_frames": top_frames(raw.read_text()),
        }
    finally:
        stop_server(server.process)
        shutil.rmtree(workdir, ignore_errors=True)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / f"profile{args.tag}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
