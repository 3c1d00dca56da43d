"""The load-test suite, one command: `python -m loadtest.suite [--short] [--models digits_cnn simple ...]`.

Starts the real server (serve/testing.py), then for every endpoint in loadtest/locust/scenarios.py that
the repository holds, runs headless locust scenarios (HTTP users via tritonclient.http, gRPC users via
tritonclient.grpc, decoupled models over gRPC streams; all to 127.0.0.1):

  steady  fixed users for the whole scenario
  sweep   a concurrency sweep (closed-loop users 1, 2, 4, ...), finding the saturation point
  step    four equal steps up to the peak          (digits_cnn, both protocols)
  spike   base, sudden spike to the peak, base      (digits_cnn, both protocols)

In the same run, the baselines: the same ONNX graphs in this process (ONNX Runtime, batch 1 and 8, one
thread, as a replica gets), and a naive single-process FastAPI + ONNX Runtime server without batching
(loadtest/naive_server.py) driven by the same locust HTTP users. Around every platform scenario the
platform's own Prometheus metrics are scraped (ray_streamserve_batch_size, ray_streamserve_queue_time_ms)
for the mean batch size and queue time the scenario caused.

Writes to loadtest/reports/suite/ (or --out): scenarios.csv, sweep.csv, errors.csv, timeseries.csv,
baselines.csv, summary.md, sweep.png, timeline.png, ratios.png. Full mode takes ~20 min on 2 cores;
--short (~2 min plus server start) runs digits_cnn only with ~6 s scenarios. The load generator shares
the machine with the server: ratios carry over between machines, absolute numbers do not.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from tqdm import tqdm

from serve.launcher import METRICS_REPORT_INTERVAL_MS

from .locust.scenarios import SCENARIOS, available, served_name

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).parent / "locust" / "locustfile.py"
REPORTS = Path(__file__).parent / "reports" / "suite"


@dataclass
class Plan:
    models: list
    steady_s: float
    steady_users: int
    sweep_levels: list
    sweep_s: float
    shaped_models: list  # models that also get step and spike
    step_s: float
    step_users: int
    spike_s: float
    spike_users: int
    sweep_protocols: tuple = ("http", "grpc")
    local_s: float = 5.0


FULL = Plan(models=[], steady_s=20, steady_users=8, sweep_levels=[1, 2, 4, 8, 16, 32, 64], sweep_s=6,
            shaped_models=["digits_cnn"], step_s=40, step_users=32, spike_s=30, spike_users=64)
SHORT = Plan(models=["digits_cnn"], steady_s=6, steady_users=8, sweep_levels=[1, 4, 16], sweep_s=3,
             shaped_models=["digits_cnn"], step_s=0, step_users=16, spike_s=8, spike_users=32,
             sweep_protocols=("grpc",), local_s=2)


# ---------------------------------------------------------------- locust runs

def run_locust(workdir: Path, tag: str, model: str, protocol: str, shape: str, users: int, duration: float,
               http: str, grpc: str, levels=(), timeout_s: float = 30) -> list[dict]:
    """One headless locust run; returns its per-request rows (time, protocol, model, latency_ms, code, users)."""
    raw = workdir / f"{tag}.raw.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LT_MODEL": model, "LT_SHAPE": shape, "LT_USERS": str(users),
           "LT_DURATION": str(duration), "LT_LEVELS": ",".join(map(str, levels)), "LT_GRPC": grpc,
           "LT_RAW": str(raw), "LT_TIMEOUT_S": str(timeout_s)}
    user = "HttpTritonUser" if protocol == "http" else "GrpcTritonUser"
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
           "--loglevel", "WARNING", "--csv", str(workdir / tag), "--host", f"http://{http}", user]
    bound = duration * max(1, len(levels)) + timeout_s + 60
    with (workdir / f"{tag}.log").open("w") as log:
        try:
            subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=bound)
        except subprocess.TimeoutExpired:
            # Seen once in CI: locust printed its summary and wrote its rows, then hung in interpreter shutdown
            # (gRPC under gevent). subprocess.run has killed it; the rows are complete (written atomically at
            # quit), so a hang at exit is not a failed run. A run that never got to quit has no rows: raised below.
            log.write(f"\n[suite] locust still running {bound:.0f} s after start: killed\n")
    if not raw.exists():
        raise RuntimeError(f"locust wrote no rows for {tag}; log:\n{(workdir / f'{tag}.log').read_text()[-2000:]}")
    with raw.open() as f:
        rows = [{**r, "time": float(r["time"]), "latency_ms": float(r["latency_ms"]), "users": int(r["users"])}
                for r in csv.DictReader(f)]
    if not rows:  # every user failed before its first request (building it): a scenario that never ran is no result
        raise RuntimeError(f"locust sent no request for {tag}; log:\n{(workdir / f'{tag}.log').read_text()[-2000:]}")
    return rows


def summarize(rows: list[dict], wall_s: float | None = None) -> dict:
    ok = [r["latency_ms"] for r in rows if r["code"] == "OK"]
    if wall_s is None:
        wall_s = (max(r["time"] for r in rows) - min(r["time"] for r in rows)) if len(rows) > 1 else float("nan")
    pct = (lambda q: float(np.percentile(ok, q))) if ok else (lambda q: float("nan"))
    codes = Counter(r["code"] for r in rows if r["code"] != "OK")
    return {"requests": len(rows), "ok": len(ok), "throughput": len(ok) / wall_s if wall_s else float("nan"),
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "error_rate": (len(rows) - len(ok)) / len(rows) if rows else float("nan"), "errors": dict(codes)}


def by_level(rows: list[dict]) -> list[dict]:
    """Sweep rows grouped by the users active when each request finished (one level per sweep step)."""
    out = []
    for users in sorted({r["users"] for r in rows}):
        level = [r for r in rows if r["users"] == users]
        if len(level) > 5:
            out.append({"users": users, **summarize(level)})
    return out


def saturation(levels: list[dict]) -> dict | None:
    """The knee: the last level before throughput grows < 10 % (or p99 grows more than 3x faster than the
    user count). None when throughput still grows at the highest level swept (saturation not reached)."""
    for prev, cur in zip(levels, levels[1:]):
        if cur["throughput"] < 1.1 * prev["throughput"] or cur["p99_ms"] > 3 * prev["p99_ms"] * cur["users"] / prev["users"]:
            return prev
    return None


def per_second(rows: list[dict]) -> list[dict]:
    if not rows:
        return []
    t0 = min(r["time"] for r in rows)
    buckets: dict[int, list] = {}
    for r in rows:
        buckets.setdefault(int(r["time"] - t0), []).append(r)
    seconds = sorted(buckets)[:-1] or sorted(buckets)  # the last second is partial
    return [{"second": s, "users": max(r["users"] for r in buckets[s]), **summarize(buckets[s], 1.0)} for s in seconds]


# ---------------------------------------------------------------- platform metrics

def histogram(text: str, name: str, model: str, version: str) -> dict:
    """Cumulative buckets {le: count} plus '_sum' and '_count', summed over label sets of one model version."""
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name not in (f"{name}_bucket", f"{name}_sum", f"{name}_count"):
                continue
            if s.labels.get("model") != model or s.labels.get("version") != version:
                continue
            key = float(s.labels["le"]) if s.name.endswith("_bucket") else s.name[len(name):]
            out[key] = out.get(key, 0.0) + s.value
    return out


def histogram_delta(before: dict, after: dict) -> dict:
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    bounds = sorted(k for k in delta if isinstance(k, float))
    count = delta.get(float("inf"), 0.0)
    if not count:
        return {"count": 0, "mean": float("nan"), "p99": float("nan")}
    finite = [b for b in bounds if b != float("inf")]
    p99 = next((b for b in finite if delta[b] >= 0.99 * count), float("inf"))
    return {"count": count, "mean": delta.get("_sum", float("nan")) / count, "p99": p99}


def platform_snapshot(server, model: str, version: str) -> dict:
    text = server.metrics_text()
    return {m: histogram(text, f"ray_streamserve_{m}", model, version) for m in ("batch_size", "queue_time_ms")}


def batch_mean(before: dict, after: dict) -> float:
    """Rows per executed batch between two snapshots (the histogram's exact `_sum` over its `_count`)."""
    batches = after.get("_count", 0.0) - before.get("_count", 0.0)
    return (after.get("_sum", 0.0) - before.get("_sum", 0.0)) / batches if batches else float("nan")


# ---------------------------------------------------------------- baselines

def in_process_baselines(repository: Path, models: list[str], duration_s: float) -> list[dict]:
    from .bench import onnx_in_process

    from serve.repository import load_model

    out = []
    for name in models:
        sc = SCENARIOS[name]
        model_file = repository / served_name(name) / sc.version / "model.onnx"
        # Only models served as the ONNX file itself: a python-backend model (iqa) may hold a model.onnx whose
        # inputs are not the request's (the handler decodes the request first).
        if sc.decoupled or not model_file.exists() or load_model(repository / served_name(name)).platform != "onnxruntime_onnx":
            continue
        for batch in (1, 8):
            r = onnx_in_process(model_file, sc.factory, batch, duration_s)
            out.append({"model": name, "kind": "in_process", "batch": batch, "throughput": r["throughput"],
                        "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]})
    return out


# ---------------------------------------------------------------- the run

def run(plan: Plan, repository: Path, out: Path, workdir: Path) -> dict:
    from .naive_server import start_naive, stop_naive
    from serve.testing import start_server, stop_server

    models = available(repository, plan.models or None)
    skipped = [m for m in (plan.models or SCENARIOS) if m not in models]
    scenarios, sweeps, timelines = [], [], []

    def record(target, model, protocol, shape, users, duration, rows, extra=None):
        s = summarize(rows)
        row = {"target": target, "model": model, "protocol": protocol, "shape": shape, "users": users,
               "duration_s": duration, **s, **(extra or {})}
        scenarios.append(row)
        print(f"{target:8} {model:22} {protocol:4} {shape:6} u={users:<3} {s['throughput']:8.1f}/s "
              f"p50 {s['p50_ms']:7.1f} p99 {s['p99_ms']:7.1f} ms err {s['error_rate']:.3f} {s['errors']}", flush=True)
        return row

    server = start_server(repository, workdir / "server")
    try:
        for name in tqdm(models, desc="load suite", unit="endpoint", disable=None):  # a bar on a terminal only
            sc = SCENARIOS[name]
            protocols = [p for p in ("http", "grpc") if p == "grpc" or sc.http]
            shapes = [("steady", plan.steady_users, plan.steady_s)]
            if name in plan.shaped_models:
                shapes += [(s, u, d) for s, u, d in (("step", plan.step_users, plan.step_s),
                                                     ("spike", plan.spike_users, plan.spike_s)) if d]
            for protocol in protocols:
                for shape, users, duration in shapes + ([("sweep", 0, plan.sweep_s)] if protocol in plan.sweep_protocols else []):
                    before = platform_snapshot(server, served_name(name), sc.version)
                    tag = f"platform_{name}_{protocol}_{shape}"
                    rows = run_locust(workdir, tag, name, protocol, shape, users, duration, server.http, server.grpc,
                                      plan.sweep_levels if shape == "sweep" else ())
                    time.sleep(METRICS_REPORT_INTERVAL_MS / 1000 + 0.5)  # the cell's last metrics reach the agent
                    after = platform_snapshot(server, served_name(name), sc.version)
                    q = histogram_delta(before["queue_time_ms"], after["queue_time_ms"])
                    extra = {"mean_batch": batch_mean(before["batch_size"], after["batch_size"]),
                             "queue_ms_mean": q["mean"], "queue_ms_p99_bucket": q["p99"]}
                    users_label = max(plan.sweep_levels) if shape == "sweep" else users
                    record("platform", name, protocol, shape, users_label, duration, rows, extra)
                    if shape == "sweep":
                        levels = by_level(rows)
                        knee = saturation(levels)
                        sweeps += [{"target": "platform", "model": name, "protocol": protocol, **lv,
                                    "saturation": lv is knee} for lv in levels]
                    if shape in ("step", "spike"):
                        timelines += [{"scenario": tag, **s} for s in per_second(rows)]
        (workdir / "metrics.txt").write_text(server.metrics_text())
    finally:
        code = stop_server(server.process)
        print(f"server stopped (exit {code})", flush=True)

    # Baselines in the same run, after the platform has released the cores.
    naive_models = [m for m in ("digits_cnn",) if m in models]
    for name in naive_models:
        sc = SCENARIOS[name]
        address, process = start_naive(repository, served_name(name), sc.version, workdir / "naive.log")
        try:
            for shape, users, duration in [("steady", plan.steady_users, plan.steady_s), ("sweep", 0, plan.sweep_s),
                                           ("spike", plan.spike_users, plan.spike_s)]:
                if not duration:
                    continue
                tag = f"naive_{name}_http_{shape}"
                rows = run_locust(workdir, tag, name, "http", shape, users, duration, address, "127.0.0.1:1",
                                  plan.sweep_levels if shape == "sweep" else ())
                record("naive", name, "http", shape, max(plan.sweep_levels) if shape == "sweep" else users, duration, rows)
                if shape == "sweep":
                    levels = by_level(rows)
                    knee = saturation(levels)
                    sweeps += [{"target": "naive", "model": name, "protocol": "http", **lv, "saturation": lv is knee}
                               for lv in levels]
                if shape == "spike":
                    timelines += [{"scenario": tag, **s} for s in per_second(rows)]
        finally:
            stop_naive(process)
    baselines = in_process_baselines(repository, models, plan.local_s)
    result = {"models": models, "skipped": skipped, "scenarios": scenarios, "sweeps": sweeps,
              "timelines": timelines, "baselines": baselines}
    write_reports(result, out)
    return result


# ---------------------------------------------------------------- reports

def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()})


def ratios(result: dict) -> list[dict]:
    """Platform steady throughput / p99 over the naive server's and over in-process batch 1."""
    out = []
    steady = {(r["target"], r["model"], r["protocol"]): r for r in result["scenarios"] if r["shape"] == "steady"}
    local = {(b["model"], b["batch"]): b for b in result["baselines"]}
    for (target, model, protocol), r in steady.items():
        if target != "platform":
            continue
        naive = steady.get(("naive", model, "http"))
        if naive and naive["throughput"]:
            out.append({"model": model, "protocol": protocol, "versus": "naive FastAPI+ORT (same users)",
                        "throughput_x": r["throughput"] / naive["throughput"], "p99_x": r["p99_ms"] / naive["p99_ms"]})
        if (model, 1) in local:
            lb = local[(model, 1)]
            out.append({"model": model, "protocol": protocol, "versus": "in-process ORT batch 1",
                        "throughput_x": r["throughput"] / lb["throughput"], "p99_x": r["p99_ms"] / lb["p99_ms"]})
    return out


def write_reports(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "scenarios.csv", result["scenarios"])
    _write_csv(out / "sweep.csv", result["sweeps"])
    _write_csv(out / "timeseries.csv", result["timelines"])
    _write_csv(out / "baselines.csv", result["baselines"])
    _write_csv(out / "ratios.csv", ratios(result))
    _write_csv(out / "errors.csv", [{"target": r["target"], "model": r["model"], "protocol": r["protocol"],
                                     "shape": r["shape"], "code": c, "count": n}
                                    for r in result["scenarios"] for c, n in r["errors"].items()])
    plots(result, out)
    (out / "summary.md").write_text(markdown(result))


def plots(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    keys = sorted({(s["target"], s["model"], s["protocol"]) for s in result["sweeps"]})
    for key in keys:
        lv = [s for s in result["sweeps"] if (s["target"], s["model"], s["protocol"]) == key]
        label = "/".join(key)
        a.plot([s["users"] for s in lv], [s["throughput"] for s in lv], marker="o", label=label)
        b.plot([s["users"] for s in lv], [s["p99_ms"] for s in lv], marker="o", label=label)
        knee = [s for s in lv if s["saturation"]]
        if knee:
            a.plot([knee[0]["users"]], [knee[0]["throughput"]], "k*", markersize=12)
    for ax, y in ((a, "requests/s (OK)"), (b, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent closed-loop users")
        ax.set_ylabel(y)
    b.set_yscale("log")
    a.set_title("Concurrency sweep (* = saturation)")
    a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=110)
    plt.close(fig)

    scen = sorted({t["scenario"] for t in result["timelines"]})
    fig, axes = plt.subplots(max(1, len(scen)), 1, figsize=(9, 2.6 * max(1, len(scen))), squeeze=False)
    for ax, name in zip(axes[:, 0], scen):
        ts = [t for t in result["timelines"] if t["scenario"] == name]
        x = [t["second"] for t in ts]
        ax.plot(x, [t["throughput"] for t in ts], label="OK req/s")
        ax.set_ylabel("req/s")
        ax2 = ax.twinx()
        ax2.plot(x, [t["p99_ms"] for t in ts], "r--", label="p99 ms")
        ax2.set_ylabel("p99 ms", color="r")
        ax.set_title(f"{name}  (users: {', '.join(str(u) for u in dict.fromkeys(t['users'] for t in ts))})", fontsize=9)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=110)
    plt.close(fig)

    rs = ratios(result)
    fig, ax = plt.subplots(figsize=(9, 0.4 * max(3, len(rs)) + 1))
    ax.barh([f"{r['model']}/{r['protocol']} vs {r['versus'].split(' (')[0]}" for r in rs], [r["throughput_x"] for r in rs])
    ax.axvline(1, color="k", lw=0.8)
    ax.set_xlabel("throughput ratio, platform / baseline (steady load)")
    fig.tight_layout()
    fig.savefig(out / "ratios.png", dpi=110)
    plt.close(fig)


def markdown(result: dict) -> str:
    f = lambda v: "nan" if v != v else f"{v:.1f}"  # noqa: E731
    lines = ["# Load-test suite", "", f"Models: {', '.join(result['models'])}; skipped (not in repository): "
             f"{', '.join(result['skipped']) or 'none'}.", "",
             "| target | model | proto | shape | users | req/s | p50 ms | p90 ms | p99 ms | error rate | errors | mean batch | queue ms (mean) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["scenarios"]:
        lines.append(f"| {r['target']} | {r['model']} | {r['protocol']} | {r['shape']} | {r['users']} | {f(r['throughput'])} | "
                     f"{f(r['p50_ms'])} | {f(r['p90_ms'])} | {f(r['p99_ms'])} | {r['error_rate']:.3f} | "
                     f"{json.dumps(r['errors']) if r['errors'] else '-'} | {f(r.get('mean_batch', float('nan')))} | "
                     f"{f(r.get('queue_ms_mean', float('nan')))} |")
    lines += ["", "## Saturation (concurrency sweep)", "", "| target | model | proto | saturation users | req/s there | p99 ms there | max req/s |",
              "|---|---|---|---|---|---|---|"]
    for key in sorted({(s["target"], s["model"], s["protocol"]) for s in result["sweeps"]}):
        lv = [s for s in result["sweeps"] if (s["target"], s["model"], s["protocol"]) == key]
        knee = next((s for s in lv if s["saturation"]), None)
        where = (f"{knee['users']} | {f(knee['throughput'])} | {f(knee['p99_ms'])}" if knee
                 else f"not reached by {lv[-1]['users']} | - | -")
        lines.append(f"| {' | '.join(key)} | {where} | {f(max(s['throughput'] for s in lv))} |")
    lines += ["", "## Ratios (steady load)", "", "| model | proto | versus | throughput x | p99 x |", "|---|---|---|---|---|"]
    for r in ratios(result):
        lines.append(f"| {r['model']} | {r['protocol']} | {r['versus']} | {r['throughput_x']:.2f} | {r['p99_x']:.2f} |")
    lines += ["", "## In-process baselines (ONNX Runtime, 1 thread)", "", "| model | batch | items/s | p50 ms | p99 ms |",
              "|---|---|---|---|---|"]
    for b in result["baselines"]:
        lines.append(f"| {b['model']} | {b['batch']} | {f(b['throughput'])} | {b['p50_ms']:.2f} | {b['p99_ms']:.2f} |")
    lines += ["", "Load generator, server and baselines share the same cores; compare ratios, not absolute numbers.",
              "Plots: sweep.png, timeline.png, ratios.png.", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="digits_cnn only, ~6 s scenarios (CI)")
    p.add_argument("--models", nargs="*", help=f"subset of {sorted(SCENARIOS)}")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    p.add_argument("--out", type=Path, default=REPORTS)
    a = p.parse_args(argv)
    plan = SHORT if a.short else FULL
    if a.models:
        plan = Plan(**{**plan.__dict__, "models": a.models})
    workdir = Path(tempfile.mkdtemp(prefix="loadsuite-"))
    run(plan, a.repository.resolve(), a.out, workdir)
    print(f"reports in {a.out}; raw locust output in {workdir}")


if __name__ == "__main__":
    main()
