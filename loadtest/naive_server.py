"""The baseline a team might write instead of the platform: one process, FastAPI + ONNX Runtime, no batching.

    python -m loadtest.naive_server --repository model_repository --model digits_cnn --version 2 --port 8100 [--grpc-port 8101]

Speaks the same v2 JSON route shape (POST /v2/models/<name>[/versions/<v>]/infer, GET /v2/health/ready),
so tritonclient.http and the same locust users drive both. Each request runs alone through one
InferenceSession (FastAPI's thread pool, one intra-op thread per run): no queue, no batching, no
replicas. Only ONNX models with numeric or string tensors; JSON tensors only (no binary extension).

With ``--grpc-port``, the same process also serves ModelInfer in Triton's gRPC dialect (grpcio's asyncio server on
the same event loop, tritonclient's generated servicer, raw tensor contents, the same session and thread pool):
the gRPC server a team would write, and the fastest path a Python gRPC server without batching has here.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_,
          "INT8": np.int8, "UINT8": np.uint8}
V2 = {np.dtype(v): k for k, v in DTYPES.items()}


def create_app(model_file: Path, name: str, version: str, threads: int = 1, grpc_port: int | None = None):
    """The FastAPI app; with `grpc_port`, gRPC ModelInfer is served on the same event loop while the app runs."""
    from contextlib import asynccontextmanager

    import onnxruntime as ort
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.concurrency import run_in_threadpool

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}

    @asynccontextmanager
    async def grpc_alongside(_):  # uvicorn answers the HTTP health check only once this has started
        if grpc_port is None:
            yield
            return
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        server = grpc.aio.server()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(grpc_servicer(session, name, version), server)
        server.add_insecure_port(f"127.0.0.1:{grpc_port}")
        await server.start()
        yield
        await server.stop(1)

    app = FastAPI(lifespan=grpc_alongside)

    from fastapi.responses import JSONResponse

    @app.exception_handler(HTTPException)
    async def v2_error(_, exc: HTTPException):  # v2 error body: {"error": "..."}
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.get("/v2/health/ready")
    @app.get("/v2/health/live")
    def health():
        return {}

    @app.get("/v2/models/{model}")
    def metadata(model: str):
        if model != name:
            raise HTTPException(404, f"unknown model {model!r}")
        return {"name": name, "versions": [version], "platform": "onnxruntime_onnx",
                "inputs": [{"name": i.name, "shape": i.shape} for i in session.get_inputs()],
                "outputs": [{"name": o.name, "shape": o.shape} for o in session.get_outputs()]}

    def infer(model: str, raw: bytes, model_version: str = version):
        if model != name or model_version != version:
            raise HTTPException(404, f"unknown model {model!r} version {model_version!r}")
        feeds = {}
        try:
            for t in json.loads(raw)["inputs"]:
                if t["datatype"] == "BYTES":
                    feeds[t["name"]] = np.array(t["data"], dtype=object).astype(str).reshape(t["shape"])
                else:
                    feeds[t["name"]] = np.array(t["data"], dtype=DTYPES[t["datatype"]]).reshape(t["shape"])
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
            raise HTTPException(400, f"malformed input: {e!r}")
        if set(feeds) != wanted:
            raise HTTPException(400, f"expected inputs {sorted(wanted)}, got {sorted(feeds)}")
        try:
            results = session.run(None, feeds)
        except Exception as e:  # ORT's shape/type errors are the client's
            raise HTTPException(400, str(e))
        outputs = []
        for meta, value in zip(session.get_outputs(), results):
            value = np.asarray(value)
            dtype = "BYTES" if value.dtype == object or value.dtype.kind in "SU" else V2[value.dtype]
            data = value.astype(str).ravel().tolist() if dtype == "BYTES" else value.ravel().tolist()
            outputs.append({"name": meta.name, "datatype": dtype, "shape": list(value.shape), "data": data})
        return {"model_name": name, "model_version": version, "outputs": outputs}

    @app.post("/v2/models/{model}/infer")
    async def infer_latest(model: str, request: Request):
        return await run_in_threadpool(infer, model, await request.body())

    @app.post("/v2/models/{model}/versions/{model_version}/infer")
    async def infer_version(model: str, model_version: str, request: Request):
        return await run_in_threadpool(infer, model, await request.body(), model_version)

    return app


def grpc_servicer(session, name: str, version: str):
    """ModelInfer over `session`, one request per run in the default thread pool; ServerReady for start-up checks."""
    import asyncio

    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    wanted = {i.name for i in session.get_inputs()}
    outputs_meta = session.get_outputs()

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
        async def ServerReady(self, request, context):
            return service_pb2.ServerReadyResponse(ready=True)

        async def ModelInfer(self, request, context):
            if request.model_name != name or request.model_version not in ("", version):
                await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.model_name!r} version {request.model_version!r}")
            try:
                feeds = {t.name: np.frombuffer(raw, dtype=DTYPES[t.datatype]).reshape(tuple(t.shape))
                         for t, raw in zip(request.inputs, request.raw_input_contents, strict=True)}
            except (KeyError, ValueError) as e:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed input: {e!r}")
            if set(feeds) != wanted:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expected inputs {sorted(wanted)}, got {sorted(feeds)}")
            try:
                results = await asyncio.get_running_loop().run_in_executor(None, session.run, None, feeds)
            except Exception as e:  # ORT's shape/type errors are the client's
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            response = service_pb2.ModelInferResponse(model_name=name, model_version=version)
            for meta, value in zip(outputs_meta, results):
                value = np.ascontiguousarray(value)
                response.outputs.add(name=meta.name, datatype=V2[value.dtype], shape=list(value.shape))
                response.raw_output_contents.append(value.tobytes())
            return response

    return Servicer()


def start_naive(repository: Path, model: str, version: str, log: Path, timeout_s: float = 60, grpc: bool = False):
    """Runs the naive server as a subprocess on a free loopback port; returns (host:port, process), or
    ({"http": host:port, "grpc": host:port}, process) with `grpc`."""
    from serve.launcher import free_loopback_port

    port = free_loopback_port()
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "loadtest.naive_server", "--repository", str(repository), "--model", model,
           "--version", version, "--port", str(port)]
    if grpc:
        grpc_port = free_loopback_port()
        cmd += ["--grpc-port", str(grpc_port)]
    process = subprocess.Popen(cmd, cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                               stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).read()
            return ({"http": f"127.0.0.1:{port}", "grpc": f"127.0.0.1:{grpc_port}"} if grpc else f"127.0.0.1:{port}"), process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_naive(process)
                raise RuntimeError(f"naive server did not start; log tail:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)


def stop_naive(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv=None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--model", default="digits_cnn")
    p.add_argument("--version", default="2")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--grpc-port", type=int, default=None, help="also serve gRPC ModelInfer on this loopback port")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    app = create_app(a.repository / a.model / a.version / "model.onnx", a.model, a.version, a.threads, a.grpc_port)
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
