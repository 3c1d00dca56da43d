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
Servers run one at a time. Each load cell is a subprocess at the niceness of the server under test (Ray starts
its workers at nice 15; Triton and the naive server run at 0), so neither side is starved by the other.
Writes loadtest/reports/bench.json, loadtest/reports/bench.png, and the table between the markers in
loadtest/BENCH.md. Ratios, not absolute numbers, carry over between runs on a shared 2-core machine.
"""
import argparse
import asyncio
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
from pathlib import Path

import numpy as np

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
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--models", nargs="+", default=list(VERSIONS), choices=list(VERSIONS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per cell")
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
    rows = []

    def record(server, model, protocol, concurrency, result):
        rows.append({"server": server, "model": model, "protocol": protocol, "concurrency": concurrency, **result})
        print(f"  {server:10} {model:10} {protocol:5} N={concurrency:<3} {result['throughput']:8.1f}/s  p50 {result['p50_ms']:7.1f} ms"
              f"  p99 {result['p99_ms']:7.1f} ms  errors {result['errors']}", flush=True)

    def drive(server, address_of, niceness, models, protocols, binary=True, version=None, tls_root=None):
        for model in models:
            for protocol in protocols:
                for n in args.concurrency:
                    record(server, model, protocol, n, run_cell(
                        niceness, protocol=protocol, address=address_of[protocol], model=model,
                        version=VERSIONS[model] if version is None else version,
                        concurrency=n, duration_s=args.duration, binary=binary, tls_root=tls_root,
                    ))

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    from serve.testing import self_signed_pair, start_server, stop_server

    if "ours" in args.servers:
        print("[bench] ours: python -m serve run (full repository)", flush=True)
        server = start_server(repository, workdir / "ours", timeout_s=600)
        try:
            time.sleep(5)
            drive("ours", {"http": server.http, "grpc": server.grpc}, RAY_NICENESS, args.models, ("http", "grpc"))
        finally:
            stop_server(server.process)
    if "ours-tls" in args.servers:
        print("[bench] ours-tls: python -m serve run with STREAMSERVE_TLS_CERTFILE/KEYFILE (self-signed)", flush=True)
        certfile, keyfile = self_signed_pair(workdir)
        server = start_server(repository, workdir / "ours-tls", {"STREAMSERVE_TLS_CERTFILE": str(certfile),
                                                                 "STREAMSERVE_TLS_KEYFILE": str(keyfile)}, timeout_s=600)
        try:
            time.sleep(5)
            drive("ours-tls", {"http": server.http, "grpc": server.grpc}, RAY_NICENESS, args.models, ("http", "grpc"),
                  tls_root=str(certfile))
        finally:
            stop_server(server.process)
    from serve.repository import load_model

    onnx_models = [m for m in args.models if load_model(repository / m).platform == "onnxruntime_onnx"]
    if "triton" not in args.servers:
        pass
    elif (args.triton_venv / "bin" / "python").exists() and TRITON_PEER.exists():
        for model in onnx_models:
            print(f"[bench] triton: {model}", flush=True)
            http, grpc, process = start_triton(args.triton_venv, repository, model, workdir / f"triton-{model}")
            try:
                drive("triton", {"http": http, "grpc": grpc}, 0, [model], ("http", "grpc"), version="1")  # the peer's only version
            finally:
                stop_process(process)
    else:
        print(f"[bench] triton: skipped (no peer venv at {args.triton_venv}; `{TRITON_PEER} setup {args.triton_venv}`)")
    from .naive_server import start_naive, stop_naive

    for model in onnx_models if "naive" in args.servers else []:
        print(f"[bench] naive: {model}", flush=True)
        addresses, process = start_naive(repository, model, VERSIONS[model], workdir / f"naive-{model}.log", grpc=True)
        try:
            drive("naive", addresses, 0, [model], ("http", "grpc"), binary=False)
        finally:
            stop_naive(process)
    for model in args.models if "in-process" in args.servers else []:
        print(f"[bench] in-process: {model}", flush=True)
        for n in args.concurrency:
            record("in-process", model, "-", n, in_process(repository, model, n, args.duration))
    shutil.rmtree(workdir, ignore_errors=True)
    report = {"date": started, "duration_s": args.duration, "machine": f"{os.cpu_count()} cores", "rows": rows}
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / f"bench{args.tag}.json").write_text(json.dumps(report, indent=2))
    table = markdown(report, args.models, args.concurrency)
    print("\n" + table)
    if "ours-tls" in args.servers:
        print("\n" + tls_markdown(report, args.models, args.concurrency))
    if not args.tag:
        write_bench_md(table)
        plot(report, args.models, REPORTS / "bench.png")


def _find(rows, server, model, protocol, n):
    return next((r for r in rows if (r["server"], r["model"], r["protocol"], r["concurrency"]) == (server, model, protocol, n)), None)


def markdown(report: dict, models, concurrency) -> str:
    rows = report["rows"]
    lines = [
        f"Run of {report['date']} ({report['machine']}, {report['duration_s']:g} s per cell; closed-loop tritonclient asyncio "
        f"clients, one item per request, client at the server's niceness). Throughput in items/s with p50 / p99 ms; "
        "ratios are ours ÷ peer (> 1: ours faster).",
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
        return f"{a['throughput'] / b['throughput']:.2f}×" if a and b and b["throughput"] else "—"

    for model in models:
        for protocol in ("grpc", "http"):
            for n in concurrency:
                ours = _find(rows, "ours", model, protocol, n)
                triton = _find(rows, "triton", model, protocol, n)
                naive = _find(rows, "naive", model, protocol, n)
                local = _find(rows, "in-process", model, "-", n)
                lines.append(f"| {model} | {protocol} | {n} | {cell(ours)} | {cell(triton)} | {cell(naive)} | {cell(local)} | "
                             f"{ratio(ours, triton)} | {ratio(ours, naive)} | {ratio(ours, local)} |")
    lines += ["", "Units: " + "; ".join(f"`{m}` {UNITS[m]}" for m in models) + ". The naive server speaks HTTP JSON and gRPC "
              "(grpcio's asyncio server, no batching); Triton runs ONNX models only here (no peer for the iqa handler "
              "or the rollout)."]
    return "\n".join(lines)


def tls_markdown(report: dict, models, concurrency) -> str:
    """Our server over TLS beside itself in plaintext, both from this run."""
    rows = report["rows"]
    lines = [f"Run of {report['date']} ({report['machine']}, {report['duration_s']:g} s per cell): our server in plaintext, "
             "then with a self-signed certificate (HTTPS; gRPC over TLS served by the ingress itself).", "",
             "| model | proto | N | plaintext: items/s (p50 / p99 ms) | TLS | TLS ÷ plaintext |", "|---|---|---|---|---|---|"]
    for model in models:
        for protocol in ("grpc", "http"):
            for n in concurrency:
                plain, tls = _find(rows, "ours", model, protocol, n), _find(rows, "ours-tls", model, protocol, n)
                if plain and tls:
                    lines.append(f"| {model} | {protocol} | {n} | {plain['throughput']:.0f} ({plain['p50_ms']:.1f} / "
                                 f"{plain['p99_ms']:.1f}) | {tls['throughput']:.0f} ({tls['p50_ms']:.1f} / {tls['p99_ms']:.1f}) | "
                                 f"{tls['throughput'] / plain['throughput']:.2f}× |")
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

    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for server, protocol, style in (("ours", "grpc", "o-"), ("ours", "http", "o--"), ("triton", "grpc", "s-"),
                                        ("triton", "http", "s--"), ("naive", "grpc", "^-"), ("naive", "http", "^--"),
                                        ("in-process", "-", "k:")):
            points = [r for r in report["rows"] if (r["server"], r["model"], r["protocol"]) == (server, model, protocol)]
            if points:
                ax.plot([r["concurrency"] for r in points], [r["throughput"] for r in points], style,
                        label=f"{server} {protocol}".replace(" -", ""))
        ax.set(title=f"{model}", xlabel="clients (in-process: batch)", ylabel=UNITS[model], xscale="log", yscale="log")
        ax.legend(fontsize=7)
    fig.suptitle(f"make bench, {report['date']}")
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
