"""Our server beside its peers, in one command and one window: `make bench` (`python -m loadtest.bench`).

For each model (`digits_cnn`, `iqa`, and the rollout model `kno_ns2d`), closed-loop tritonclient asyncio clients
(N clients, each sending its next one-item request when the previous answer arrives) at N = 1, 8, 32, over
HTTP and gRPC, against:
- **ours**: `python -m serve run` with the full repository (what `make serve` runs);
- **triton**: a real Triton 2.51 (`../shared/tools/triton-peer/`: Python backend + ONNX Runtime, the same
  config.pbtxt batching) — for the ONNX model `digits_cnn`, when the peer's venv exists (`--triton-venv`);
- **naive**: `loadtest/naive_server.py`, FastAPI + ONNX Runtime, no batching (HTTP JSON), and in the same process
  grpcio's asyncio server with tritonclient's generated servicer (gRPC, raw tensor contents); ONNX models only;
- **in-process**: the same runtime in this process at batch N, no server (for `iqa`, the handler: decode,
  crops and ONNX Runtime; for the rollout, the step runtime run STEPS times).
Every server is started before the first cell and stays up to the last; each cell runs `--rounds` times in a row,
every server once per round (the first one rotated), so a ratio compares cells measured seconds apart and is
reported as the median of the rounds' ratios with the lowest and highest. This shared 2-core machine drifts by ±30 %
over minutes; servers measured one after the other, minutes apart, gave ratios that swung with it. What each server
costs while another is measured (its idle CPU) is measured and printed with the table. Each load cell is a
subprocess at the niceness of the server under test (Ray starts its workers at nice 15; Triton and the naive server
run at 0), so neither side is starved by the other. Writes loadtest/reports/bench.json (every round's cell),
loadtest/reports/bench.png, and the table between the markers in loadtest/BENCH.md.
"""
import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
REPORTS = Path(__file__).parent / "reports"
BENCH_MD = Path(__file__).parent / "BENCH.md"
MARKERS = ("<!-- bench:serving:start -->", "<!-- bench:serving:end -->")
TRITON_PEER = ROOT.parent / "shared" / "tools" / "triton-peer" / "triton-peer.sh"
RAY_NICENESS = int(os.environ.get("RAY_worker_niceness", "15"))
ROLLOUT_STEPS = 10


# -- workloads: one request's inputs, and the in-process equivalent at batch N -------------------------------
def request_inputs(model: str) -> dict[str, np.ndarray]:
    if model == "digits_cnn":
        from models.digits.data import load_splits

        return {"image": np.ascontiguousarray(load_splits()["test"][0][:1])}
    if model == "iqa":
        from .bench_iqa import workload

        return {"IMAGE": np.array([[workload()]], dtype=object)}
    if model == "kno_ns2d":
        from .stream_latency import window_for

        return {"WINDOW": window_for(model, 64), "STEPS": np.array([[ROLLOUT_STEPS]], np.int32)}
    raise ValueError(model)


VERSIONS = {"digits_cnn": "2", "iqa": "1", "kno_ns2d": "1"}
UNITS = {"digits_cnn": "req/s", "iqa": "images/s", "kno_ns2d": f"rollouts/s ({ROLLOUT_STEPS} steps)"}


def in_process(repository: Path, model: str, batch: int, duration_s: float) -> dict:
    """The model's own runtime in this process at batch `batch`, one intra-op thread (a replica's share)."""
    one = request_inputs(model)
    if model == "kno_ns2d":
        from .stream_latency import step_runtime

        runtime = step_runtime(repository, model)
        window = np.repeat(one["WINDOW"], batch, axis=0)

        def call():
            state = window
            for _ in range(ROLLOUT_STEPS):
                state = runtime.infer({"WINDOW": state})["WINDOW_NEXT"]
    elif model == "iqa":
        from serve.repository import load_model
        from serve.runtimes import load_runtime

        spec = load_model(repository / model)
        handler = load_runtime(spec, int(VERSIONS[model]), ["IMAGE", "IMAGE_RAW"], ["SCORE", "LEVEL_PROBS"], 1, "cpu")
        images = np.repeat(one["IMAGE"], batch, axis=0)

        def call():  # what the server does per request (decode, crops, features) and per batch (ONNX Runtime, level)
            parts = [handler.preprocess({"IMAGE": images[i : i + 1]}) for i in range(batch)]
            handler.infer({name: np.concatenate([p[name] for p in parts]) for name in parts[0]})
    else:
        return onnx_in_process(repository / model / VERSIONS[model] / "model.onnx", lambda b: {k: np.repeat(v, b, axis=0) for k, v in one.items()},
                               batch, duration_s)
    return timed(call, batch, duration_s)


def onnx_in_process(model_file: Path, feeds, batch: int, duration_s: float, threads: int = 1) -> dict:
    """An ONNX file in this process with ONNX Runtime at batch `batch`: `feeds(batch)` gives the inputs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    # ONNX string tensors are str objects; the wire carries bytes.
    x = {k: (v.astype(str).astype(object) if v.dtype == object else v) for k, v in feeds(batch).items()}
    return timed(lambda: session.run(None, x), batch, duration_s)


def timed(call, items_per_call: int, duration_s: float) -> dict:
    for _ in range(3):
        call()
    latencies, started = [], time.perf_counter()
    while time.perf_counter() - started < duration_s:
        t = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t)
    return summarize(latencies, items_per_call * len(latencies), time.perf_counter() - started) | {"errors": 0}


# -- one load cell: N closed-loop clients, run as a subprocess at the server's niceness ---------------------------
def summarize(latencies_s, items, wall_s) -> dict:
    ms = np.array(latencies_s) * 1000 if latencies_s else np.array([np.nan])
    return {"throughput": items / wall_s, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "requests": len(latencies_s)}


async def served(protocol: str, address: str, model: str, version: str, feeds, concurrency: int, duration_s: float,
                 binary: bool = True, outputs: list[str] | None = None, tls_root: str | None = None) -> dict:
    """N closed-loop tritonclient asyncio clients for `duration_s`; `feeds(1)` gives each request's inputs (called per
    request: a workload may vary what it sends). `binary`: HTTP tensors in Triton's binary extension (the client's
    default) or JSON; `outputs`: the outputs to ask for (all when None); `tls_root`: connect over TLS, trusting this
    certificate file."""
    from tritonclient.utils import np_to_triton_dtype

    if protocol == "http":
        import tritonclient.http.aio as module

        secure = {"ssl": True, "ssl_context": ssl.create_default_context(cafile=tls_root)} if tls_root else {}
    else:
        import tritonclient.grpc.aio as module

        secure = {"ssl": True, "root_certificates": tls_root} if tls_root else {}
    client = module.InferenceServerClient(address, **secure)
    options = {"binary_data": binary} if protocol == "http" else {}

    def tensors():
        built = []
        for name, array in feeds(1).items():
            tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, **options)
            built.append(tensor)
        return built

    wanted = [module.InferRequestedOutput(name, **options) for name in outputs] if outputs else None

    async def call():
        await client.infer(model, tensors(), model_version=version, outputs=wanted)

    for _ in range(5):
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


async def load(protocol: str, address: str, model: str, version: str, concurrency: int, duration_s: float, binary: bool,
               tls_root: str | None = None) -> dict:
    one = request_inputs(model)
    outputs = ["FRAMES"] if model == "kno_ns2d" else None  # the frames, not the state fed back: what a forecast client reads
    return await served(protocol, address, model, version, lambda _: one, concurrency, duration_s, binary, outputs, tls_root)


def best_of(fn, repeats=3):
    """(fastest wall time, result) of `repeats` calls: the least-disturbed run on a shared machine."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def run_cell(niceness: int, **cell) -> dict:
    """`load(**cell)` in a subprocess at `niceness`."""
    cmd = ["nice", "-n", str(niceness), sys.executable, "-m", "loadtest.bench", "--cell", json.dumps(cell)]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=cell["duration_s"] + 120)
    if done.returncode != 0:
        raise RuntimeError(f"load cell failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- peers ------------------------------------------------------------------------------------------------------
def start_triton(venv: Path, repository: Path, model: str, workdir: Path):
    from serve.launcher import free_loopback_port

    peer_repo, source = workdir / "triton-repo", workdir / "triton-source"
    # The peer serves one version: the folder is handed over without its version_policy (the peer's line-based
    # config rewrite drops only a one-line policy).
    from google.protobuf import text_format
    from streamserve_proto import model_config_pb2

    config = text_format.Parse((repository / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config.ClearField("version_policy")
    (source / model / VERSIONS[model]).mkdir(parents=True, exist_ok=True)
    (source / model / "config.pbtxt").write_text(text_format.MessageToString(config))
    shutil.copyfile(repository / model / VERSIONS[model] / "model.onnx", source / model / VERSIONS[model] / "model.onnx")
    subprocess.run(["bash", str(TRITON_PEER), "repo", str(venv), str(source), model, VERSIONS[model], str(peer_repo)],
                   check=True, capture_output=True)
    ports = [free_loopback_port() for _ in range(3)]
    log = workdir / "triton.log"
    process = subprocess.Popen(["bash", str(TRITON_PEER), "serve", str(venv), str(peer_repo), *map(str, ports)],
                               stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}", process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"triton peer did not start; log tail:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# -- the run ----------------------------------------------------------------------------------------------------
@dataclass
class Peer:
    """One running server: where each of its models is reached (protocol -> host:port), the niceness its clients
    run at, the version it serves each model as, and how its clients call it."""
    name: str
    addresses: dict[str, dict[str, str]]
    niceness: int
    process: subprocess.Popen
    versions: dict[str, str] = field(default_factory=dict)
    binary: bool = True
    tls_root: str | None = None


def schedule(models, protocols, concurrency, rounds: int, serving) -> list[tuple[str, str, int, int, str]]:
    """(model, protocol, N, round, server) in the order they run: for each cell, `rounds` rounds back to back, each
    round every server that serves the model (`serving(model)`, "in-process" included once per model and N) with the
    first server rotated from round to round. Servers compared in one ratio are measured seconds apart, so the
    machine's drift over minutes (±30 % on this shared box) lands on every column alike."""
    order = []
    for model in models:
        servers = serving(model)
        for n in concurrency:
            for protocol in protocols:
                for r in range(rounds):
                    turn = servers[r % len(servers):] + servers[: r % len(servers)]
                    order += [(model, protocol, n, r, server) for server in turn
                              if server != "in-process" or protocol == protocols[0]]
    return order


def medians(rows) -> dict[tuple, dict]:
    """Per (server, model, protocol, N): the median over rounds of throughput, p50 and p99; errors summed;
    `by_round` keeps each round's throughput for the ratios."""
    groups = {}
    for row in rows:
        groups.setdefault((row["server"], row["model"], row["protocol"], row["concurrency"]), []).append(row)
    return {
        key: {"throughput": float(np.median([r["throughput"] for r in group])), "p50_ms": float(np.median([r["p50_ms"] for r in group])),
              "p99_ms": float(np.median([r["p99_ms"] for r in group])), "errors": sum(r["errors"] for r in group),
              "by_round": {r["round"]: r["throughput"] for r in group}}
        for key, group in groups.items()
    }


def ratio_by_round(ours: dict | None, peer: dict | None) -> tuple[float, float, float] | None:
    """(median, lowest, highest) over rounds of ours ÷ peer, each round's pair measured seconds apart."""
    if not ours or not peer:
        return None
    ratios = [ours["by_round"][r] / peer["by_round"][r] for r in ours["by_round"] if peer["by_round"].get(r)]
    return (float(np.median(ratios)), min(ratios), max(ratios)) if ratios else None


def idle_cores(peers: list[Peer], seconds: float) -> dict[str, float]:
    """CPU each server's process trees use over the same `seconds` with no request (a peer started once per model
    summed under its name): what it takes from the others."""
    from .idle import cpu_seconds, tree

    trees = [(peer.name, tree(psutil.Process(peer.process.pid))) for peer in peers]
    before = [cpu_seconds(processes) for _, processes in trees]
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    used = {}
    for (name, processes), earlier in zip(trees, before):
        after = cpu_seconds(processes)
        used[name] = used.get(name, 0.0) + sum(after[pid] - earlier[pid] for pid in after if pid in earlier) / wall
    return used


def start_peers(args, repository: Path, workdir: Path, stack: contextlib.ExitStack) -> list[Peer]:
    """Every server of the run, started before the first cell and stopped by `stack`."""
    from serve.repository import load_model
    from serve.testing import self_signed_pair, start_server, stop_server

    from .naive_server import start_naive, stop_naive

    peers = []
    for name in ("ours", "ours-tls"):
        if name not in args.servers:
            continue
        env, tls_root = {}, None
        if name == "ours-tls":
            certfile, keyfile = self_signed_pair(workdir)
            env, tls_root = {"STREAMSERVE_TLS_CERTFILE": str(certfile), "STREAMSERVE_TLS_KEYFILE": str(keyfile)}, str(certfile)
        print(f"[bench] {name}: python -m serve run (full repository){' with a self-signed certificate' if env else ''}", flush=True)
        server = start_server(repository, workdir / name, env, timeout_s=600)
        stack.callback(stop_server, server.process)
        addresses = {"http": server.http, "grpc": server.grpc}
        peers.append(Peer(name, {model: addresses for model in args.models}, RAY_NICENESS, server.process, tls_root=tls_root))
    onnx_models = [m for m in args.models if load_model(repository / m).platform == "onnxruntime_onnx"]
    if "triton" in args.servers and onnx_models:
        if (args.triton_venv / "bin" / "python").exists() and TRITON_PEER.exists():
            for model in onnx_models:
                print(f"[bench] triton: {model}", flush=True)
                http, grpc, process = start_triton(args.triton_venv, repository, model, workdir / f"triton-{model}")
                stack.callback(stop_process, process)
                peers.append(Peer("triton", {model: {"http": http, "grpc": grpc}}, 0, process, versions={model: "1"}))  # its only version
        else:
            print(f"[bench] triton: skipped (no peer venv at {args.triton_venv}; `{TRITON_PEER} setup {args.triton_venv}`)")
    for model in onnx_models if "naive" in args.servers else []:
        print(f"[bench] naive: {model}", flush=True)
        addresses, process = start_naive(repository, model, VERSIONS[model], workdir / f"naive-{model}.log", grpc=True)
        stack.callback(stop_naive, process)
        peers.append(Peer("naive", {model: addresses}, 0, process, binary=False))
    return peers


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--models", nargs="+", default=list(VERSIONS), choices=list(VERSIONS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per cell")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each cell, the servers alternated within each")
    parser.add_argument("--triton-venv", type=Path, default=Path("/tmp/triton-peer"),
                        help="the triton peer's venv (`triton-peer.sh setup VENV`); skipped when missing")
    parser.add_argument("--servers", nargs="+", default=["ours", "triton", "naive", "in-process"],
                        choices=["ours", "ours-tls", "triton", "naive", "in-process"],
                        help="ours-tls: our server again with a self-signed certificate (HTTPS and gRPC over TLS), "
                             "reported against the plaintext run as the cost of TLS")
    parser.add_argument("--tag", default="", help="results/bench<tag>.json; BENCH.md and the plot only for the full run")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(asyncio.run(load(**json.loads(args.cell)))))
        return
    repository = args.repository.resolve()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    rows = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        peers = start_peers(args, repository, workdir, stack)
        time.sleep(5)  # replicas settle after RUNNING
        idle = idle_cores(peers, 10.0)
        print("[bench] idle, every server up: " + ", ".join(f"{name} {cores:.3f} cores" for name, cores in idle.items()), flush=True)
        by_model = {model: {peer.name: peer for peer in peers if model in peer.addresses} for model in args.models}

        def serving(model):
            return [*by_model[model], *(["in-process"] if "in-process" in args.servers else [])]

        for model, protocol, n, r, server in schedule(args.models, ("grpc", "http"), args.concurrency, args.rounds, serving):
            if server == "in-process":
                result, protocol = in_process(repository, model, n, args.duration), "-"
            else:
                peer = by_model[model][server]
                result = run_cell(peer.niceness, protocol=protocol, address=peer.addresses[model][protocol], model=model,
                                  version=peer.versions.get(model, VERSIONS[model]), concurrency=n, duration_s=args.duration,
                                  binary=peer.binary, tls_root=peer.tls_root)
            rows.append({"server": server, "model": model, "protocol": protocol, "concurrency": n, "round": r, **result})
            print(f"  {server:10} {model:10} {protocol:5} N={n:<3} round {r}  {result['throughput']:8.1f}/s  "
                  f"p50 {result['p50_ms']:7.1f} ms  p99 {result['p99_ms']:7.1f} ms  errors {result['errors']}", flush=True)
    report = {"date": started, "duration_s": args.duration, "rounds": args.rounds, "machine": f"{os.cpu_count()} cores",
              "idle_cores": idle, "rows": rows}
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / f"bench{args.tag}.json").write_text(json.dumps(report, indent=2))
    table = markdown(report, args.models, args.concurrency)
    print("\n" + table)
    if "ours-tls" in args.servers:
        print("\n" + tls_markdown(report, args.models, args.concurrency))
    if not args.tag:
        write_bench_md(table)
        plot(report, args.models, REPORTS / "bench.png")


def markdown(report: dict, models, concurrency) -> str:
    cells = medians(report["rows"])
    idle = ", ".join(f"{name} {cores:.2f}" for name, cores in report.get("idle_cores", {}).items())
    lines = [
        f"Run of {report['date']} ({report['machine']}, {report['duration_s']:g} s per cell, {report['rounds']} rounds; "
        "closed-loop tritonclient asyncio clients, one item per request, client at the server's niceness; every server up "
        f"for the whole run, idle cores while another was measured: {idle}). Throughput in items/s, the median of the "
        "rounds, with p50 / p99 ms; ratios are ours ÷ peer (> 1: ours faster), the median of the rounds' ratios with "
        "the lowest and highest in brackets.",
        "",
        "| model | proto | N | ours | triton | naive | in-process (batch N) | ÷ triton | ÷ naive | ÷ in-process |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(r):
        if not r:
            return "—"
        rate = f"{r['throughput']:.0f}" if r["throughput"] >= 100 else f"{r['throughput']:.1f}"
        return f"{rate} ({r['p50_ms']:.1f} / {r['p99_ms']:.1f})" + (f" err {r['errors']}" if r["errors"] else "")

    def ratio(a, b):
        found = ratio_by_round(a, b)
        return f"{found[0]:.2f}× ({found[1]:.2f}–{found[2]:.2f})" if found else "—"

    for model in models:
        for protocol in ("grpc", "http"):
            for n in concurrency:
                ours = cells.get(("ours", model, protocol, n))
                triton = cells.get(("triton", model, protocol, n))
                naive = cells.get(("naive", model, protocol, n))
                local = cells.get(("in-process", model, "-", n))
                lines.append(f"| {model} | {protocol} | {n} | {cell(ours)} | {cell(triton)} | {cell(naive)} | {cell(local)} | "
                             f"{ratio(ours, triton)} | {ratio(ours, naive)} | {ratio(ours, local)} |")
    lines += ["", "Units: " + "; ".join(f"`{m}` {UNITS[m]}" for m in models) + ". The naive server speaks HTTP JSON and gRPC "
              "(grpcio's asyncio server, no batching); Triton runs ONNX models only here (no peer for the iqa handler "
              "or the rollout)."]
    return "\n".join(lines)


def tls_markdown(report: dict, models, concurrency) -> str:
    """Our server over TLS beside itself in plaintext, both up for the whole run and alternated."""
    cells = medians(report["rows"])
    lines = [f"Run of {report['date']} ({report['machine']}, {report['duration_s']:g} s per cell, {report['rounds']} rounds): "
             "our server in plaintext and with a self-signed certificate (HTTPS; gRPC over TLS served by the ingress "
             "itself), alternated; medians of the rounds, the ratio's lowest and highest round in brackets.", "",
             "| model | proto | N | plaintext: items/s (p50 / p99 ms) | TLS | TLS ÷ plaintext |", "|---|---|---|---|---|---|"]
    for model in models:
        for protocol in ("grpc", "http"):
            for n in concurrency:
                plain, tls = cells.get(("ours", model, protocol, n)), cells.get(("ours-tls", model, protocol, n))
                if found := ratio_by_round(tls, plain):
                    lines.append(f"| {model} | {protocol} | {n} | {plain['throughput']:.0f} ({plain['p50_ms']:.1f} / "
                                 f"{plain['p99_ms']:.1f}) | {tls['throughput']:.0f} ({tls['p50_ms']:.1f} / {tls['p99_ms']:.1f}) | "
                                 f"{found[0]:.2f}× ({found[1]:.2f}–{found[2]:.2f}) |")
    return "\n".join(lines)


def write_bench_md(table: str) -> None:
    text = BENCH_MD.read_text() if BENCH_MD.exists() else ""
    block = f"{MARKERS[0]}\n{table}\n{MARKERS[1]}"
    if MARKERS[0] in text and MARKERS[1] in text:
        head, rest = text.split(MARKERS[0], 1)
        text = head + block + rest.split(MARKERS[1], 1)[1]
    else:
        text = f"{text.rstrip()}\n\n## Serving path beside Triton, a naive server and in-process (`make bench`)\n\n{block}\n"
    BENCH_MD.write_text(text)


def plot(report: dict, models, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = medians(report["rows"])
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for server, protocol, style in (("ours", "grpc", "o-"), ("ours", "http", "o--"), ("triton", "grpc", "s-"),
                                        ("triton", "http", "s--"), ("naive", "grpc", "^-"), ("naive", "http", "^--"),
                                        ("in-process", "-", "k:")):
            points = sorted((key[3], cell["throughput"]) for key, cell in cells.items() if key[:3] == (server, model, protocol))
            if points:
                ax.plot(*zip(*points), style,
                        label=f"{server} {protocol}".replace(" -", ""))
        ax.set(title=f"{model}", xlabel="clients (in-process: batch)", ylabel=UNITS[model], xscale="log", yscale="log")
        ax.legend(fontsize=7)
    fig.suptitle(f"make bench, {report['date']}")
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
