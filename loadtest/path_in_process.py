"""Our own per-request CPU on the inference path, without a network or a server process:
`python -m loadtest.path_in_process [--paths grpc http fastapi] [--callers 32] [--requests 9600] [--repeats 3]`.

Each path is driven in this process by `--callers` concurrent callers (uvloop), `digits_cnn` one image per request,
binary tensors, through the data plane and a batch queue as the ingress hosts them (`ModelWorker`, ONNX Runtime):
- `grpc`: the servicer's `ModelInfer` on the request's wire bytes (parse, authentication, decode, data plane, batch
  queue, encode), as the ingress's gRPC server calls it;
- `http`: `rest.served_app`, the ASGI app the ingress serves (inference calls straight to their handler);
- `fastapi`: `rest.app`, the same handler behind FastAPI's routing (what Serve's proxies call).
What it leaves out is the transport: grpcio's server, uvicorn's HTTP parsing and the client. Prints microseconds of
wall time per request (one core is busy, so this is our Python's CPU per request) for each repeat, and writes
loadtest/reports/path_in_process<tag>.json.
"""
import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

from models.digits.data import load_splits
from serve import rest
from serve.dataplane import DataPlane
from serve.grpc_servicer import GRPCInferenceServicer
from serve.replica import ModelWorker
from serve.repository import ModelRepository
from streamserve_proto import service_pb2 as pb

REPORTS = Path(__file__).parent / "reports"
MODEL, VERSION = "digits_cnn", "2"


class _Context:
    """What the servicer reads of a grpc.aio context: a loopback caller without a token."""

    def invocation_metadata(self):
        return (("user-agent", "grpc-python"),)

    def peer(self):
        return "ipv4:127.0.0.1:50000"

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details


def grpc_call(plane: DataPlane, image: np.ndarray):
    servicer = GRPCInferenceServicer()
    servicer.plane = plane
    request = pb.ModelInferRequest(model_name=MODEL, model_version=VERSION)
    request.inputs.add(name="image", datatype="FP32", shape=image.shape)
    request.raw_input_contents.append(image.tobytes())
    wire = request.SerializeToString()

    async def call():
        context = _Context()
        response = await servicer.ModelInfer(wire, context)
        if not response.raw_output_contents:
            raise RuntimeError(getattr(context, "details", "no outputs"))
    return call


def http_call(app, image: np.ndarray):
    header = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": list(image.shape),
                                     "parameters": {"binary_data_size": image.nbytes}}],
                         "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    body = header + image.tobytes()
    path = f"/v2/models/{MODEL}/versions/{VERSION}/infer"
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/octet-stream"),
                         (b"inference-header-content-length", str(len(header)).encode()),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def call():
        sent = []

        async def send(message):
            sent.append(message)
        await app(dict(scope), receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"status {sent[0]['status']}: {sent[-1].get('body', b'')[:200]!r}")
    return call


async def per_request_us(call, requests: int, callers: int) -> float:
    async def caller(n):
        for _ in range(n):
            await call()
    each = max(1, requests // callers)
    started = time.perf_counter()
    await asyncio.gather(*(caller(each) for _ in range(callers)))
    return (time.perf_counter() - started) / (each * callers) * 1e6


def main(argv=None) -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--paths", nargs="+", default=["grpc", "http", "fastapi"], choices=["grpc", "http", "fastapi"])
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--requests", type=int, default=9600, help="per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)

    repository = ModelRepository(args.repository)
    worker = ModelWorker(str(args.repository), MODEL, int(VERSION), instance_count=2)
    plane = DataPlane(repository, {(MODEL, int(VERSION)): worker}, auth_token=None)
    rest.attach(plane)
    image = np.ascontiguousarray(load_splits()["test"][0][:1]).astype(np.float32)
    calls = {"grpc": grpc_call(plane, image), "http": http_call(rest.served_app, image), "fastapi": http_call(rest.app, image)}

    async def measure() -> dict:
        results = {}
        for path in args.paths:
            await per_request_us(calls[path], args.requests // 3, args.callers)  # warm-up
            results[path] = [round(await per_request_us(calls[path], args.requests, args.callers), 1) for _ in range(args.repeats)]
            print(f"{path:8} µs per request ({args.callers} callers): {' '.join(map(str, results[path]))}", flush=True)
        return results

    results = uvloop.run(measure())
    REPORTS.mkdir(exist_ok=True)
    out = REPORTS / f"path_in_process{args.tag}.json"
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "model": MODEL,
                               "callers": args.callers, "requests": args.requests, "us_per_request": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
