"""Each model's batch working set: how much a serving process grows while answering the largest request it accepts.

For every model of a repository one legal request as large as the model and the server's request limit allow (the
largest batch; variable axes filled toward the limit; the families' own budgets: iqa's per-request pixels, a 1080p
clip for video_artifacts, a subgraph of the most nodes that fit for bot_detector_subgraph), sent over gRPC to a running
server while a sampler reads the resident memory of every serving process (the ingress and each model replica)
every 10 ms. A model's working set is the largest growth of one process above its level before the request.

A model's own working set is measured apart, in a fresh process without a server: the request decoded beforehand,
then the growth while the data plane runs it (batching, the runtime, rollout steps, the response's arrays). Issue 19's
bound compares the two: no request under the request limit may grow a serving process by more than 4x its size plus
the model's own working set; what the server adds (the message as received, parsed and decoded) must fit in 4x. `tests/loadtest/test_working_set.py` sends the same requests, sized to the
test server's limit, and holds every model to the statement recorded in `loadtest/reports/working_set.json`.

    python -m loadtest.working_set                  # starts `python -m serve run` with the default limits
    python -m loadtest.working_set --protocol http  # the same requests over HTTP, held to the same working sets
    python -m loadtest.working_set --address 127.0.0.1:8001 --pid PID   # a running server
"""
import argparse
import asyncio
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc
import numpy as np
import psutil
from PIL import Image

from serve.datatypes import NUMPY_DTYPES
from serve.launcher import ALLOCATOR_ENVIRONMENT
from serve.repository import ModelRepository, ModelSpec
from streamserve_proto import service_pb2 as pb, service_pb2_grpc

REPORT = Path(__file__).parent / "reports"
MB = 2**20
SAMPLE_S = 0.01
SLACK_MB = 16
"""Growth every process shows whatever it serves (allocator pages, gRPC buffers): allowed above a model's stated
working set when a measurement is compared with the statement."""
UNBOUNDED_HERE = {"backdoor_scan": "the scan runs in a child process of its own under an address-space limit "
                                   "(`memory_mb`, models/backdoor/serving.py), not in a serving process"}


@dataclass
class Largest:
    model: str
    what: str
    request: pb.ModelInferRequest
    streamed: bool
    case: str = ""
    """A second largest request of the same model (an ensemble); its own row and stated working set."""

    @property
    def key(self) -> str:
        return f"{self.model} {self.case}" if self.case else self.model

    @property
    def size(self) -> int:
        return self.request.ByteSize()


def _add(request: pb.ModelInferRequest, name: str, array: np.ndarray, datatype: str) -> None:
    request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
    if datatype == "BYTES":
        request.raw_input_contents.append(b"".join(len(v).to_bytes(4, "little") + v for v in array.reshape(-1)))
    else:
        request.raw_input_contents.append(np.ascontiguousarray(array, NUMPY_DTYPES[datatype]).tobytes())


def _values(datatype: str, shape: tuple[int, ...], rng) -> np.ndarray:
    if datatype == "BYTES":  # a decimal integer: what the examples that take text parse
        return np.full(shape, b"1", dtype=object)
    if datatype == "BOOL":
        return np.zeros(shape, bool)
    if datatype.startswith(("INT", "UINT")):
        return np.ones(shape, NUMPY_DTYPES[datatype])
    return rng.standard_normal(shape).astype(NUMPY_DTYPES[datatype])


def _request(spec: ModelSpec, tensors: dict[str, tuple[np.ndarray, str]]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=spec.name)
    for name, (array, datatype) in tensors.items():
        _add(request, name, array, datatype)
    if spec.sequence:
        request.parameters["sequence_id"].int64_param = 7
        request.parameters["sequence_start"].bool_param = True
        request.parameters["sequence_end"].bool_param = True
    return request


def _generic(spec: ModelSpec, budget: int, rng) -> Largest:
    """The declared signature at the largest batch that fits the budget; variable axes at their minimum (or 4)."""
    def shapes(batch):
        out = {}
        for t in spec.inputs:
            if t.optional:
                continue
            minimum = spec.min_shapes.get(t.name)
            lead = [batch] if spec.max_batch_size > 0 else []
            dims = [d if d > 0 else (minimum[len(lead) + i] if minimum else 4) for i, d in enumerate(t.dims)]
            out[t.name] = (tuple(lead + dims), t.datatype)
        return out

    batch = 1 if spec.sequence else max(spec.max_batch_size, 1)  # a sequence's request is one step of it
    while batch > 1 and sum(np.prod(s) * _itemsize(d) for s, d in shapes(batch).values()) > budget:
        batch //= 2
    tensors = {name: (_values(d, s, rng), d) for name, (s, d) in shapes(batch).items()}
    return Largest(spec.name, f"batch {batch} of the declared shapes", _request(spec, tensors), spec.decoupled)


def _itemsize(datatype: str) -> int:
    return 8 if datatype == "BYTES" else NUMPY_DTYPES[datatype].itemsize


def _smooth_png(side: int) -> bytes:
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[None, ::-1]), axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def _clip(seconds: int = 4) -> bytes:
    from models.video.data import ffmpeg_exe

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", f"testsrc2=s=1920x1080:r=25:d={seconds}", "-c:v", "libx264", "-crf", "40",
                        "-pix_fmt", "yuv420p", str(path)], check=True)
        return path.read_bytes()


def _family(spec: ModelSpec, budget: int, rng) -> Largest | None:
    """Requests whose size is the family's own budget rather than the declared signature's."""
    name, fit = spec.name, lambda per_item, most: max(1, min(most, budget // per_item))
    if name == "iqa":
        from models.iqa.serving import IqaParams

        params, png = IqaParams(), _smooth_png(4096)
        count = fit(len(png) + 8, params.max_request_pixels // 4096**2)
        images = np.array([[png]] * count, dtype=object)
        return Largest(name, f"{count} PNG of 4096x4096 (the per-request pixel budget)", _request(spec, {"IMAGE": (images, "BYTES")}), spec.decoupled)
    if name == "video_artifacts":
        clip = _clip()
        return Largest(name, f"4 s of 1080p25 H.264 ({len(clip) // 1024} KB)", _request(spec, {"VIDEO": (np.array([clip], object), "BYTES")}), True)
    if name == "video_artifacts_segments":
        clip = _clip()
        tensors = {"SEGMENT": (np.array([clip], object), "BYTES"), "SEGMENT_INDEX": (np.array([0], np.int64), "INT64")}
        return Largest(name, f"a first segment: 4 s of 1080p25 H.264 ({len(clip) // 1024} KB)", _request(spec, tensors), spec.decoupled)
    if name in ("byte_length", "simple_identity"):
        rows = spec.max_batch_size
        element = max(1, budget // rows - 64)
        data = np.array([[b"y" * element]] * rows, dtype=object)
        return Largest(name, f"{rows} elements of {element // 1024} KB", _request(spec, {spec.inputs[0].name: (data, "BYTES")}), spec.decoupled)
    if name == "custom_identity_int32":
        width = max(1, budget // (4 * spec.max_batch_size) - 16)
        return Largest(name, f"[{spec.max_batch_size}, {width}] INT32", _request(spec, {"INPUT0": (np.ones((spec.max_batch_size, width), np.int32), "INT32")}), False)
    if name == "heat1d":
        rows = spec.max_batch_size
        width = max(3, budget // (4 * rows) - 16)
        tensors = {"U": (rng.standard_normal((rows, width)).astype(np.float32), "FP32"), "STEPS": (np.ones((rows, 1), np.int32), "INT32")}
        return Largest(name, f"[{rows}, {width}] FP32, one step", _request(spec, tensors), spec.decoupled)
    if spec.rollout and "WINDOW" in spec.input_by_name:  # the Koopman family's forecasts (models/koopman/export.py)
        grid = (64, 64) if len(spec.input_by_name["WINDOW"].dims) == 3 else (256,)
        rows = fit(10 * int(np.prod(grid)) * 4, spec.max_batch_size)
        window = rng.standard_normal((rows, 10, *grid)).astype(np.float32) * 0.1
        tensors = {"WINDOW": (window, "FP32"), "STEPS": (np.full((rows, 1), 40, np.int32), "INT32")}
        return Largest(name, f"{rows} windows of 10x{'x'.join(map(str, grid))}, 40 steps streamed", _request(spec, tensors), True)
    if name == "bot_detector_subgraph":
        from models.graph.serving import MAX_SUBGRAPH_NODES, N_FEATURES

        nodes = fit(N_FEATURES * 4 + 8 + 4 * 24, MAX_SUBGRAPH_NODES)
        edges = 4 * nodes
        tensors = {"NODE_FEATURES": (rng.standard_normal((nodes, N_FEATURES)).astype(np.float32), "FP32"),
                   "EDGE_INDEX": (rng.integers(0, nodes, (2, edges)), "INT64"), "EDGE_TYPE": (rng.integers(0, 7, edges), "INT64"),
                   "TARGETS": (np.arange(nodes, dtype=np.int64), "INT64")}
        return Largest(name, f"{nodes} nodes x {N_FEATURES} features, {edges} edges", _request(spec, tensors), spec.decoupled)
    if name == "account_clusters_job":
        from models.graph.serving import MAX_JOB_CLUSTERS, MAX_JOB_NODES

        width = 256
        nodes = fit(width * 4 + 16 * 4, MAX_JOB_NODES)
        tensors = {"NODE_FEATURES": (rng.standard_normal((nodes, width)).astype(np.float32), "FP32"),
                   "EDGE_INDEX": (rng.integers(0, nodes, (2, 4 * nodes)), "INT64"),
                   "N_CLUSTERS": (np.array([MAX_JOB_CLUSTERS], np.int64), "INT64")}
        return Largest(name, f"fit of {nodes} nodes x {width} features into {MAX_JOB_CLUSTERS} clusters", _request(spec, tensors), True)
    return None


def largest_requests(repository: str | Path, request_limit: int, seed: int = 0) -> list[Largest]:
    """One request per model (except those in UNBOUNDED_HERE), each under `request_limit` bytes on the wire."""
    rng = np.random.default_rng(seed)
    budget = int(request_limit * 0.9) - 4096
    out = []
    for spec in ModelRepository(repository):
        if spec.name not in UNBOUNDED_HERE:
            out.append(_family(spec, budget, rng) or _generic(spec, budget, rng))
            if spec.rollout and spec.rollout.ensemble:
                out.append(_ensemble(spec, budget, rng))
    return out


def _ensemble(spec: ModelSpec, budget: int, rng) -> Largest:
    """The most members of the largest state the model's ensemble limit allows, two steps (the state is at its
    largest from the first step on)."""
    from serve.repository import ENSEMBLE_MEMBERS

    ensemble = spec.rollout.ensemble
    members, per_member = ensemble.max_members, min(budget, ensemble.max_bytes // ensemble.max_members) - 1024
    (state,) = spec.rollout.state.values()
    dims = spec.input_by_name[state].dims
    free = [i for i, d in enumerate(dims) if d == -1]
    fixed = int(np.prod([d for d in dims if d != -1]))
    side = int((per_member // (4 * fixed)) ** (1 / len(free)))
    shape = [1] + [side if d == -1 else d for d in dims]
    tensors = {state: (rng.standard_normal(shape).astype(np.float32) * 0.1, "FP32"),
               spec.rollout.steps_input: (np.full((1, 1), 2, np.int32), "INT32"),
               ENSEMBLE_MEMBERS: (np.full((1, 1), members, np.int32), "INT32")}
    return Largest(spec.name, f"{members} members of {'x'.join(map(str, shape[1:]))}, 2 steps streamed",
                   _request(spec, tensors), True, case="ensemble")


class MemorySampler:
    """Peak resident memory of every serving process (Ray Serve replicas of the streamserve application)."""

    def __init__(self, server_pid: int):
        self.root = psutil.Process(server_pid)
        self.processes: dict[int, tuple[psutil.Process, str]] = {}
        self._stop = threading.Event()
        self.peak: dict[int, int] = {}

    def refresh(self) -> None:
        for p in self.root.children(recursive=True):
            try:
                title = " ".join(p.cmdline())
            except psutil.Error:
                continue
            if "ServeReplica:streamserve" in title and p.pid not in self.processes:
                self.processes[p.pid] = (p, title.split("ServeReplica:streamserve:")[-1].split()[0])

    def rss(self) -> dict[int, int]:
        out = {}
        for pid, (p, _) in self.processes.items():
            try:
                out[pid] = p.memory_info().rss
            except psutil.Error:
                pass
        return out

    def measure(self, call) -> tuple[dict[int, int], dict[int, int], object]:
        """(before, peak) RSS per process around `call()`, and what it returned."""
        before = self.rss()
        self.peak = dict(before)
        self._stop.clear()

        def sample():
            while not self._stop.is_set():
                for pid, value in self.rss().items():
                    self.peak[pid] = max(self.peak.get(pid, 0), value)
                time.sleep(SAMPLE_S)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            result = call()
        finally:
            time.sleep(5 * SAMPLE_S)
            self._stop.set()
            thread.join()
        return before, dict(self.peak), result

    def label(self, pid: int) -> str:
        return self.processes[pid][1]


def send(stub, item: Largest, timeout_s: float = 300) -> tuple[str, int]:
    """('' when the model answered, else the error it gave; the size of its largest response message)."""
    largest = 0
    try:
        if item.streamed:
            for response in stub.ModelStreamInfer(iter([item.request]), timeout=timeout_s):
                if response.error_message:
                    return response.error_message, largest
                largest = max(largest, response.ByteSize())
        else:
            largest = stub.ModelInfer(item.request, timeout=timeout_s).ByteSize()
        return "", largest
    except grpc.RpcError as e:
        return f"{e.code().name}: {e.details()}", largest


RESPONSE_REFUSALS = ("over the limit of", "could pass the response limit", "stream large tensors over gRPC")
"""How the server refuses a response past `max_response_bytes` (as JSON, for HTTP): a correct answer to a legal request,
measured like any other."""


def http_body(request: pb.ModelInferRequest) -> tuple[bytes, dict]:
    """The same request as Triton's binary tensor extension sends it over HTTP: a JSON header, then the raw inputs;
    outputs asked for as binary too."""
    raws = list(request.raw_input_contents)
    inputs = [{"name": t.name, "shape": list(t.shape), "datatype": t.datatype, "parameters": {"binary_data_size": len(raw)}}
              for t, raw in zip(request.inputs, raws)]
    parameters = {key: getattr(value, value.WhichOneof("parameter_choice")) for key, value in request.parameters.items()}
    header = json.dumps({"inputs": inputs, "parameters": parameters | {"binary_data_output": True}}).encode()
    return header + b"".join(raws), {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}


def send_http(address: str, item: Largest, timeout_s: float = 300) -> tuple[str, int]:
    """('' when the model answered, else the error it gave; the size of its largest response). A streamed request goes
    to `generate_stream` (server-sent events, one per response), the others to `infer`."""
    body, headers = http_body(item.request)
    route = "generate_stream" if item.streamed else "infer"
    request = urllib.request.Request(f"http://{address}/v2/models/{item.model}/{route}", body, headers)
    del body
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            if not item.streamed:
                return "", len(response.read())
            largest = 0
            for line in response:  # "data: {...}" per response, "event: error" then its data on failure
                if line.startswith(b"event: error"):
                    return next(response, b"").decode(errors="replace")[:300], largest
                largest = max(largest, len(line))
            return "", largest
    except urllib.error.HTTPError as e:
        return f"{e.code}: {e.read()[:300].decode(errors='replace')}", 0


def channel_options(request_limit: int) -> list:
    return [("grpc.max_send_message_length", request_limit + MB), ("grpc.max_receive_message_length", 256 * MB)]


def measure(server_pid: int, address: str, items: list[Largest], protocol: str = "grpc") -> list[dict]:
    """`address`: the server's gRPC address, or its HTTP address when `protocol` is "http"."""
    sampler = MemorySampler(server_pid)
    sampler.refresh()
    if protocol == "grpc":
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address, options=channel_options(max(i.size for i in items))))
        call = partial(send, stub)
    else:
        call = partial(send_http, address)
    rows = []
    for item in items:
        before, peak, (error, response_size) = sampler.measure(lambda: call(item))
        growth = {pid: peak[pid] - before[pid] for pid in before if pid in peak}
        pid = max(growth, key=growth.get)
        if any(marker in error for marker in RESPONSE_REFUSALS):  # the request was legal, its answer too large to send
            error, response_size = "", 0
        rows.append({"model": item.key, "request": item.what, "request_mb": round(item.size / MB, 2),
                     "response_mb": round(response_size / MB, 2), "growth_mb": round(growth[pid] / MB, 1),
                     "process": sampler.label(pid), "error": error})
        print(f"{item.key:28s} {rows[-1]['request_mb']:8.2f} MB sent  +{rows[-1]['growth_mb']:7.1f} MB in {rows[-1]['process']}"
              + (f"  ERROR {error[:120]}" if error else ""), flush=True)
    return rows


def own_working_set(repository: str | Path, model: str, request_limit: int) -> float:
    """MB this process grows while the data plane, without a server, answers the model's largest request (decoded first)."""
    from serve.dataplane import DataPlane
    from serve.grpc_servicer import decode_infer_request
    from serve.replica import ModelWorker
    from serve.repository import ModelKind

    item = next(i for i in largest_requests(repository, request_limit) if i.key == model)
    request, model = decode_infer_request(item.request), item.model
    repo = ModelRepository(repository)
    spec = repo.get(model)
    plane = DataPlane(repo, {(model, v): ModelWorker(str(repository), model, v) for v in spec.versions},
                      max_request_bytes=request_limit)
    del item

    async def run():
        if spec.kind in (ModelKind.ROLLOUT, ModelKind.DECOUPLED):
            async for _ in plane.stream(request, "grpc"):
                pass
        else:
            await plane.infer(request, "grpc")

    sampler = MemorySampler(os.getpid())
    sampler.processes = {os.getpid(): (psutil.Process(), "in-process")}
    before, peak, _ = sampler.measure(lambda: asyncio.run(run()))
    return (peak[os.getpid()] - before[os.getpid()]) / MB


OWN_REPEATS = 3
"""Fresh processes measured per model: the same request's growth varies between them (`kno_ns2d`: 71-107 MB over
three), and a model is stated at the largest."""


def own_working_sets(repository: str | Path, models: list[str], request_limit: int) -> dict[str, float]:
    """`own_working_set` of each model, the largest of OWN_REPEATS fresh interpreters (one model's memory is never
    another's baseline)."""
    return {model: max(_own_once(repository, model, request_limit) for _ in range(OWN_REPEATS)) for model in models}


def _own_once(repository: str | Path, model: str, request_limit: int) -> float:
    result = subprocess.run([sys.executable, "-m", "loadtest.working_set", "--repository", str(repository),
                             "--request-limit-mb", str(request_limit / MB), "--own", model],
                            capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1],
                            env=ALLOCATOR_ENVIRONMENT | dict(os.environ))  # the allocator the replicas run with
    lines = result.stdout.strip().splitlines()
    if result.returncode or not lines:
        print(f"{model}: in-process measurement failed: {result.stderr[-400:]}", flush=True)
        return float("nan")
    return float(lines[-1])


def stated_mb(own_mb: float) -> int:
    """The working set a model is held to: its measured one with 50 % headroom, rounded up to 8 MB. The measurement is a
    fresh process; a server that has answered other requests holds freed blocks in its allocator's heaps, which a large
    request may not fit into: over four passes of every model's largest request on one server (1 MiB request limit),
    the 64-member ensembles grew the ingress 50-116 MB (`fno_ns2d_nu1e5`), 35-104 (`kno_burgers`) and 12-131
    (`kno_ns2d`) against 169, 177 and 186 in fresh processes (`loadtest/reports/working_set.json`), with the allocator
    `serve/launcher.py` sets; before it, the FNO's grew up to 462."""
    return 8 * math.ceil(1.5 * own_mb / 8)


def bound_mb(row: dict, own_mb: float) -> float:
    """Issue 19's bound: 4x the message's size plus the model's own working set (and SLACK_MB). The message is the
    request and the largest response message together: an identity model's response is as large as its request and
    is encoded and serialized like it."""
    return 4 * (row["request_mb"] + row["response_mb"]) + own_mb + SLACK_MB


def write_report(rows: list[dict], request_limit: int, protocol: str = "grpc") -> None:
    REPORT.mkdir(exist_ok=True)
    name = "working_set" if protocol == "grpc" else f"working_set_{protocol}"
    (REPORT / f"{name}.json").write_text(json.dumps(
        {"request_limit_mb": request_limit / MB, "slack_mb": SLACK_MB,
         "stated_working_set_mb": {r["model"]: stated_mb(r["own_mb"]) for r in rows}, "rows": rows}, indent=1) + "\n")
    command = "python -m loadtest.working_set" + (f" --protocol {protocol}" if protocol != "grpc" else "")
    lines = [f"# Batch working set per model over {protocol.upper()} (`{command}`, request limit {request_limit / MB:.0f} MiB)", "",
             f"*sent*: the largest request the model accepts, as sent over {protocol.upper()}"
             + (" (the binary tensor extension)" if protocol == "http" else "") + "; *answer*: its largest response message. "
             "*own working set*: growth of a fresh process running that request through the data plane without a server "
             f"(decoded beforehand), the largest of {OWN_REPEATS} processes; *stated*: the model is held to it with 50 % headroom, rounded up to 8 MB. *served "
             "growth*: the largest growth of one serving process while the server answers it. "
             f"Bound: 4 x (sent + answer) + stated + {SLACK_MB} MB.", "",
             "| model | largest request | sent (MB) | answer (MB) | own working set (MB) | stated (MB) | served growth (MB), process | bound (MB) | within |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bound = bound_mb(r, stated_mb(r["own_mb"]))
        served = f"error: {r['error'][:80]}" if r["error"] else f"{r['growth_mb']}, {r['process']}"
        lines.append(f"| {r['model']} | {r['request']} | {r['request_mb']} | {r['response_mb']} | {r['own_mb']} | {stated_mb(r['own_mb'])} | "
                     f"{served} | {bound:.0f} | {'yes' if r['growth_mb'] <= bound and not r['error'] else '**no**'} |")
    lines += [f"| {m} | — | — | — | — | — | {why} | — | — |" for m, why in UNBOUNDED_HERE.items()]
    (REPORT / f"{name}.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", default="model_repository")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc",
                        help="how the requests are sent; http reuses the own working sets measured for grpc")
    parser.add_argument("--address", help="a running server's address for --protocol (with --pid); default: start one")
    parser.add_argument("--pid", type=int, help="the running server's process id")
    parser.add_argument("--request-limit-mb", type=float, default=64)
    parser.add_argument("--only", nargs="+", metavar="CASE",
                        help="measure these rows only (a model, or e.g. 'heat1d ensemble') and update them in the report")
    parser.add_argument("--own", metavar="MODEL", help=argparse.SUPPRESS)  # one model's own working set, printed
    args = parser.parse_args(argv)
    limit = int(args.request_limit_mb * MB)
    if args.own:
        print(round(own_working_set(args.repository, args.own, limit), 1))
        return
    items = largest_requests(args.repository, limit)
    if args.only:
        items = [i for i in items if i.key in args.only]
        if not items:
            parser.error(f"--only: none of {args.only} is a row here")
    if args.address:
        rows = measure(args.pid, args.address, items, args.protocol)
    else:
        from serve.testing import start_server, stop_server

        server = start_server(Path(args.repository).resolve(), Path(tempfile.mkdtemp(prefix="working-set-")),
                              {"STREAMSERVE_MAX_REQUEST_BYTES": str(limit)}, timeout_s=600)
        try:
            rows = measure(server.process.pid, getattr(server, args.protocol), items, args.protocol)
        finally:
            stop_server(server.process)
    if args.protocol == "grpc":
        own = own_working_sets(args.repository, [r["model"] for r in rows], limit)
    else:
        own = {r["model"]: r["own_mb"] for r in json.loads((REPORT / "working_set.json").read_text())["rows"]}
    for row in rows:
        row["own_mb"] = own[row["model"]]
    if args.only:  # the other rows as the last full run measured them
        name = "working_set" if args.protocol == "grpc" else f"working_set_{args.protocol}"
        measured = {r["model"]: r for r in rows}
        kept = json.loads((REPORT / f"{name}.json").read_text())["rows"]
        rows = [measured.pop(r["model"], r) for r in kept] + list(measured.values())
    write_report(rows, limit, args.protocol)
    print(f"wrote the report to {REPORT}")


if __name__ == "__main__":
    main()
