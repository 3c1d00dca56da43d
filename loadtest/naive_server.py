"""The baseline a team might write instead of the platform: one process, FastAPI + ONNX Runtime, no batching.

    python -m loadtest.naive_server --repository model_repository --model digits_cnn --version 2 --port 8100

Speaks the same v2 JSON route shape (POST /v2/models/<name>[/versions/<v>]/infer, GET /v2/health/ready),
so tritonclient.http and the same locust users drive both. Each request runs alone through one
InferenceSession (FastAPI's thread pool, one intra-op thread per run): no queue, no batching, no
replicas. Only ONNX models with numeric or string tensors; JSON tensors only (no binary extension).
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


def create_app(model_file: Path, name: str, version: str, threads: int = 1):
    import onnxruntime as ort
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.concurrency import run_in_threadpool

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    app = FastAPI()

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


def start_naive(repository: Path, model: str, version: str, log: Path, timeout_s: float = 60):
    """Runs the naive server as a subprocess on a free loopback port; returns (host:port, process)."""
    from serve.launcher import free_loopback_port

    port = free_loopback_port()
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "loadtest.naive_server", "--repository", str(repository), "--model", model,
           "--version", version, "--port", str(port)]
    process = subprocess.Popen(cmd, cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                               stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).read()
            return f"127.0.0.1:{port}", process
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
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    app = create_app(a.repository / a.model / a.version / "model.onnx", a.model, a.version, a.threads)
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
