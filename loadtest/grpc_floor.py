"""What gRPC costs a Python server on this machine, beside ours and Triton: `python -m loadtest.grpc_floor
[--clients 32] [--duration 6] [--rounds 2]`.

`digits_cnn`, one image per request, closed-loop tritonclient asyncio gRPC clients (`loadtest.bench`'s cells), each
server in turn, `--rounds` times in alternation, in one command:
- `grpcio, canned answer`: grpcio's asyncio server (uvloop) answering every ModelInfer with one prepared response: no
  decode, no model. The least a server built on grpcio spends on a call.
- `ours, canned answer`: the ingress's gRPC server (uvicorn's HTTP/2 and serve/grpc_ingress.py) answering with the
  same prepared response: what our protocol layer costs a call, beside grpcio's.
- `grpcio + batcher + ORT`: the same server with a minimal dynamic batcher (the model's 5 ms and 32 rows) running ONNX
  Runtime in a thread, and nothing else (no validation, limits, metrics or statistics).
- `ours, one process`: the ingress's gRPC server, servicer, data plane and batch queue, as the ingress replica hosts
  them, in a plain process without Ray.
- `ours, served`: `python -m serve run` (Ray Serve, the full repository), client at Ray's worker niceness.
- `Triton`: the peer (`../shared/tools/triton-peer/`), when its venv is set up.
Reports requests/s, p50, and the server's CPU per request (its process tree's CPU time over the cell / requests).
Writes loadtest/reports/grpc_floor<tag>.json.
"""
import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from tritonclient.grpc import service_pb2_grpc

from .bench import RAY_NICENESS, ROOT, TRITON_PEER, VERSIONS, run_cell, start_triton, stop_process
from .idle import cpu_seconds, tree

REPORTS = Path(__file__).parent / "reports"
MODEL = "digits_cnn"


# -- the bare servers, each run as `python -m loadtest.grpc_floor --serve KIND --port P` -----------------------------
def canned_response():
    import numpy as np

    from streamserve_proto import service_pb2 as pb

    response = pb.ModelInferResponse(model_name=MODEL, model_version=VERSIONS[MODEL])  # the model's two outputs
    response.outputs.add(name="probabilities", datatype="FP32", shape=[1, 10])
    response.raw_output_contents.append(np.zeros((1, 10), np.float32).tobytes())
    response.outputs.add(name="label", datatype="INT64", shape=[1, 1])
    response.raw_output_contents.append(np.zeros((1, 1), np.int64).tobytes())
    return response


class BareServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """ModelInfer only: the canned answer, at once or after a minimal batcher has run the model on the batch."""

    def __init__(self, repository: Path | None):
        self.answer, self.session, self.queue = canned_response(), None, asyncio.Queue()
        if repository is not None:
            import onnxruntime as ort
            from concurrent.futures import ThreadPoolExecutor

            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(repository / MODEL / VERSIONS[MODEL] / "model.onnx"), options)
            self.threads = ThreadPoolExecutor(1)
            asyncio.get_running_loop().create_task(self._batches())

    async def ModelInfer(self, request, context):
        if self.session is None:
            return self.answer
        waiter = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(waiter)
        return await waiter

    async def _batches(self, max_rows: int = 32, delay_s: float = 0.005):
        import numpy as np

        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + delay_s
            while len(batch) < max_rows and (left := deadline - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            images = np.zeros((len(batch), 1, 8, 8), np.float32)
            await loop.run_in_executor(self.threads, self.session.run, None, {"image": images})
            for waiter in batch:
                waiter.set_result(self.answer)


async def serve(kind: str, port: int, repository: Path) -> None:
    import grpc

    if kind == "ours-canned":
        from serve.grpc_ingress import start_grpc_server

        await start_grpc_server(BareServicer(None), f"127.0.0.1:{port}", timeout_s=60, max_concurrent_rpcs=1000,
                                max_message_bytes=64 << 20)
        await asyncio.Event().wait()
    elif kind == "ours":
        from serve import replica
        from serve.dataplane import DataPlane
        from serve.grpc_ingress import start_grpc_server
        from serve.grpc_servicer import GRPCInferenceServicer
        from serve.repository import ModelRepository

        # Outside Ray a worker would size its runtime to the machine; the served ingress has one thread (its CPU share)
        replica.replica_resources = lambda: (1, "cpu")
        worker = replica.ModelWorker(str(repository), MODEL, int(VERSIONS[MODEL]), instance_count=2)
        servicer = GRPCInferenceServicer()
        servicer.plane = DataPlane(ModelRepository(repository), {(MODEL, int(VERSIONS[MODEL])): worker}, auth_token=None)
        await start_grpc_server(servicer, f"127.0.0.1:{port}", timeout_s=60, max_concurrent_rpcs=1000,
                                max_message_bytes=64 << 20)
        await asyncio.Event().wait()  # served until the command stops this process
    else:
        server = grpc.aio.server()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(BareServicer(repository if kind == "batched" else None), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not listen on {port}; log tail:\n{log.read_text()[-2000:]}")


# -- the command --------------------------------------------------------------------------------------------------
def cell(address: str, niceness: int, root: psutil.Process, clients: int, duration_s: float, version: str = VERSIONS[MODEL]) -> dict:
    """One load cell and the server tree's CPU over it (the cell's own 5 warm-up calls are counted in both)."""
    before = sum(cpu_seconds(tree(root)).values())
    result = run_cell(niceness, protocol="grpc", address=address, model=MODEL, version=version,
                      concurrency=clients, duration_s=duration_s, binary=True)
    cpu = sum(cpu_seconds(tree(root)).values()) - before
    return result | {"server_cpu_us_per_request": round(cpu / (result["requests"] + 5) * 1e6, 1)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per cell")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--triton-venv", type=Path, default=Path("/tmp/triton-peer"))
    parser.add_argument("--tag", default="")
    parser.add_argument("--serve", choices=["canned", "ours-canned", "batched", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repository = args.repository.resolve()
    if args.serve:
        import uvloop

        uvloop.run(serve(args.serve, args.port, repository))
        return

    from serve.launcher import free_loopback_port
    from serve.testing import start_server, stop_server

    rows, workdir = [], Path(tempfile.mkdtemp(prefix="grpc-floor-"))

    def bare(kind: str, label: str):
        port = free_loopback_port()
        process = subprocess.Popen([sys.executable, "-m", "loadtest.grpc_floor", "--serve", kind, "--port", str(port),
                                    "--repository", str(repository)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=(workdir / f"{kind}.log").open("w"), start_new_session=True)
        try:
            wait_for_port(port, process, workdir / f"{kind}.log")
            record(label, cell(f"127.0.0.1:{port}", 0, psutil.Process(process.pid), args.clients, args.duration))
        finally:
            stop_process(process)

    def record(label: str, result: dict):
        rows.append({"server": label, **result})
        print(f"  {label:26} {result['throughput']:7.0f} req/s  p50 {result['p50_ms']:5.1f} ms  "
              f"server {result['server_cpu_us_per_request']:6.1f} µs CPU per request  errors {result['errors']}", flush=True)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    served = start_server(repository, workdir / "ours", timeout_s=600)
    triton = None
    try:
        if (args.triton_venv / "bin" / "python").exists() and TRITON_PEER.exists():
            triton = start_triton(args.triton_venv, repository, MODEL, workdir / "triton")
        time.sleep(5)
        for _ in range(args.rounds):
            bare("canned", "grpcio, canned answer")
            bare("ours-canned", "ours, canned answer")
            bare("batched", "grpcio + batcher + ORT")
            bare("ours", "ours, one process")
            record("ours, served", cell(served.grpc, RAY_NICENESS, psutil.Process(served.process.pid), args.clients, args.duration))
            if triton:
                record("Triton", cell(triton[1], 0, psutil.Process(triton[2].pid), args.clients, args.duration, version="1"))
    finally:
        stop_server(served.process)
        if triton:
            stop_process(triton[2])
    report = {"date": started, "model": MODEL, "clients": args.clients, "duration_s": args.duration, "rows": rows}
    REPORTS.mkdir(exist_ok=True)
    out = REPORTS / f"grpc_floor{args.tag}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
