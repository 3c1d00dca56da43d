"""What an idle server costs: `python -m loadtest.idle [--repository model_repository] [--seconds 60]`.

Starts the real server (`python -m serve run`, the full repository), lets it settle, then samples the whole
process tree (launcher, Ray's GCS/raylet/agents, Serve's controller, every replica) for `--seconds` without
sending a request: CPU used (cores, from the processes' own CPU-time counters) and memory (RSS summed over
processes, as `ps` would add it up, and PSS, which counts shared pages once). Prints a table per process kind and
writes `loadtest/reports/idle.json`.
"""
import argparse
import json
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psutil

from serve.testing import start_server, stop_server

REPORTS = Path(__file__).parent / "reports"


def kind(process: psutil.Process) -> str:
    """A short name for what a process is: Ray's process titles for replicas and the controller."""
    try:
        cmdline = " ".join(process.cmdline())
    except psutil.Error:
        return "?"
    match = re.search(r"ServeReplica:[^:]+:(\S+)", cmdline)
    if match:
        return "replica " + match.group(1).split("#")[0]
    for marker in ("ServeController", "gcs_server", "raylet", "dashboard_agent", "runtime_env_agent", "log_monitor",
                   "serve run", "ray::IDLE", "monitor.py"):
        if marker in cmdline:
            return marker
    return process.name()


def tree(root: psutil.Process) -> list[psutil.Process]:
    return [root, *root.children(recursive=True)]


def cpu_seconds(processes) -> dict[int, float]:
    seconds = {}
    for p in processes:
        try:
            t = p.cpu_times()
            seconds[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return seconds


def measure(root_pid: int, seconds: float) -> dict:
    root = psutil.Process(root_pid)
    processes = tree(root)
    kinds = {p.pid: kind(p) for p in processes}
    before = cpu_seconds(processes)
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    after = cpu_seconds(processes)
    per_kind = defaultdict(lambda: {"processes": 0, "cores": 0.0, "rss_mb": 0.0, "pss_mb": 0.0})
    for p in processes:
        if p.pid not in after or p.pid not in before:
            continue
        row = per_kind[kinds[p.pid]]
        row["processes"] += 1
        row["cores"] += (after[p.pid] - before[p.pid]) / wall
        try:
            memory = p.memory_full_info()
            row["rss_mb"] += memory.rss / 2**20
            row["pss_mb"] += getattr(memory, "pss", memory.rss) / 2**20
        except psutil.Error:
            pass
    total = {key: sum(r[key] for r in per_kind.values()) for key in ("processes", "cores", "rss_mb", "pss_mb")}
    return {"seconds": wall, "total": total, "per_kind": dict(sorted(per_kind.items(), key=lambda kv: -kv[1]["cores"]))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after ready before sampling")
    parser.add_argument("--tag", default="", help="suffix of the report file")
    args = parser.parse_args(argv)
    server = start_server(args.repository.resolve(), Path(tempfile.mkdtemp(prefix="idle-")), timeout_s=600)
    try:
        time.sleep(args.settle)
        result = measure(server.process.pid, args.seconds)
    finally:
        stop_server(server.process)
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"idle for {result['seconds']:.0f} s: {result['total']['cores']:.3f} cores, {result['total']['processes']} processes, "
          f"RSS {result['total']['rss_mb']:.0f} MB summed, PSS {result['total']['pss_mb']:.0f} MB")
    print(f"{'process':42} {'n':>3} {'cores':>7} {'RSS MB':>8} {'PSS MB':>8}")
    for name, row in result["per_kind"].items():
        print(f"{name[:42]:42} {row['processes']:3d} {row['cores']:7.3f} {row['rss_mb']:8.0f} {row['pss_mb']:8.0f}")
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / f"idle{args.tag}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
