"""Overload, faults and deadlines on the real server.

`slow_identity` (models/examples/handlers.py) runs a batch of 4 in 50 ms and queues at most 8 requests
past its 8 in flight, so a burst of 120 concurrent requests is several times what it can hold.
No absolute timings are asserted: rejections are compared with accepted requests of the same run.
"""
import asyncio
import os
import queue
import signal
import statistics
import threading
import time

import grpc as grpclib
import httpx
import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from streamserve_proto import service_pb2 as pb, service_pb2_grpc

BURST = 120
BODY = {"inputs": [{"name": "X", "shape": [1, 1], "datatype": "FP32", "data": [1.5]}]}


async def http_burst(address: str, n: int):
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=60, limits=httpx.Limits(max_connections=n)) as client:
        async def one():
            started = time.perf_counter()
            response = await client.post("/v2/models/slow_identity/infer", json=BODY)
            return response.status_code, response.headers.get("retry-after"), response.json(), time.perf_counter() - started

        return await asyncio.gather(*(one() for _ in range(n)))


def test_http_overload_gets_fast_503s_and_recovers(server):
    results = asyncio.run(http_burst(server.http, BURST))
    accepted = [r for r in results if r[0] == 200]
    rejected = [r for r in results if r[0] == 503]
    assert len(accepted) + len(rejected) == BURST, sorted({r[0] for r in results})
    assert accepted and len(rejected) >= BURST // 4, (len(accepted), len(rejected))
    assert all(r[2]["outputs"][0]["data"] == [1.5] for r in accepted)
    assert all(r[1] is not None and int(r[1]) >= 1 for r in rejected), "503 without Retry-After"
    assert all("at capacity" in r[2]["error"] for r in rejected)
    # Shedding is cheap: a refusal comes back faster than a typical accepted request.
    assert statistics.median(r[3] for r in rejected) < statistics.median(r[3] for r in accepted)
    # Recovery: once the burst is over, requests are accepted again at once.
    again = asyncio.run(http_burst(server.http, 4))
    assert [r[0] for r in again] == [200] * 4


def test_grpc_overload_gets_resource_exhausted(server):
    async def burst():
        async with grpclib.aio.insecure_channel(server.grpc) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            request = pb.ModelInferRequest(model_name="slow_identity")
            request.inputs.add(name="X", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(2.5)

            async def one():
                try:
                    await stub.ModelInfer(request, timeout=60)
                    return grpclib.StatusCode.OK
                except grpclib.aio.AioRpcError as e:
                    return e.code()

            return await asyncio.gather(*(one() for _ in range(BURST)))

    codes = asyncio.run(burst())
    assert set(codes) <= {grpclib.StatusCode.OK, grpclib.StatusCode.RESOURCE_EXHAUSTED}, set(codes)
    assert codes.count(grpclib.StatusCode.RESOURCE_EXHAUSTED) >= BURST // 4
    assert codes.count(grpclib.StatusCode.OK) > 0


def test_grpc_client_deadline_is_honoured(server):
    client = grpcclient.InferenceServerClient(server.grpc)
    steps = grpcclient.InferInput("STEPS", [1], "INT32")
    steps.set_data_from_numpy(np.array([100], np.int32))  # 100 x 50 ms
    started = time.perf_counter()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("countdown_job", [steps], client_timeout=0.5)
    assert "Deadline" in str(caught.value) or "DEADLINE" in str(caught.value.status())
    assert time.perf_counter() - started < 5.0 / 2  # well before the job would have finished
    client.close()


def replica_pids(server, deployment: str) -> list[int]:
    tree = psutil.Process(server.process.pid).children(recursive=True)
    return [p.pid for p in tree if f"ServeReplica:streamserve:{deployment}" in " ".join(p.cmdline())]


def kill_under_load(pid: int, loops, stop: threading.Event) -> None:
    """Run the client loops, SIGKILL `pid` two seconds in, stop the clients three seconds later: every call ended."""
    threads = [threading.Thread(target=loop) for loop in loops]
    for t in threads:
        t.start()
    time.sleep(2)
    os.kill(pid, signal.SIGKILL)
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a request hung past its deadline"


def test_killed_replica_mid_load_every_request_ends_and_serving_resumes(server):
    (pid,) = replica_pids(server, "pool_jobs")  # slow_identity_dedicated runs in the jobs pool
    outcomes, stop = [], threading.Event()

    def client_loop():
        client = grpcclient.InferenceServerClient(server.grpc)
        x = grpcclient.InferInput("X", [1, 1], "FP32")
        x.set_data_from_numpy(np.ones((1, 1), np.float32))
        while not stop.is_set():
            started = time.perf_counter()
            try:
                client.infer("slow_identity_dedicated", [x], client_timeout=30)
                outcomes.append(("ok", time.perf_counter() - started))
            except InferenceServerException as e:
                outcomes.append((str(e.status()) + " " + str(e.message()), time.perf_counter() - started))
        client.close()

    kill_under_load(pid, [client_loop] * 6, stop)
    failures = [o for o, _ in outcomes if o != "ok"]
    # In-flight requests on the dead replica end with a clear, retryable error, never a hang or a 500.
    assert all("UNAVAILABLE" in f or "RESOURCE_EXHAUSTED" in f or "DEADLINE" in f for f in failures), failures[:5]
    # Serve replaces the replica; serving resumes.
    client = grpcclient.InferenceServerClient(server.grpc)
    x = grpcclient.InferInput("X", [1, 1], "FP32")
    x.set_data_from_numpy(np.full((1, 1), 4.0, np.float32))
    deadline = time.monotonic() + 180
    while True:
        try:
            assert client.infer("slow_identity_dedicated", [x], client_timeout=30).as_numpy("Y")[0, 0] == 4.0
            break
        except InferenceServerException:
            assert time.monotonic() < deadline, "the model did not come back"
            time.sleep(1)
    client.close()
    assert replica_pids(server, "pool_jobs") != [pid]


def test_stream_cut_by_a_dead_replica_ends_with_an_error(server):
    client = grpcclient.InferenceServerClient(server.grpc)
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    steps = grpcclient.InferInput("STEPS", [1], "INT32")
    steps.set_data_from_numpy(np.array([100], np.int32))  # ~5 s of progress messages
    client.async_stream_infer("countdown_job", [steps])
    for _ in range(3):
        assert got.get(timeout=60)[1] is None
    (pid,) = replica_pids(server, "pool_jobs")  # countdown_job runs in the jobs pool
    os.kill(pid, signal.SIGKILL)
    error = None
    deadline = time.monotonic() + 60
    while error is None and time.monotonic() < deadline:
        result, error = got.get(timeout=60)
        if error is None:
            assert result.as_numpy("RESULT") is None, "the job finished although its replica was killed"
    client.stop_stream()
    assert error is not None and "stream is incomplete" in str(error), error
    deadline = time.monotonic() + 180  # Serve replaces the replica; later tests need a ready server
    while not client.is_server_ready():
        assert time.monotonic() < deadline, "countdown_job did not come back"
        time.sleep(1)
    client.close()


def test_killed_ingress_mid_load_every_request_ends_and_serving_resumes_on_the_same_ports(server):
    """The ingress replica listens on the public ports and hosts the models placed in it: killing it cuts every
    connection at once. Each request must end (never hang), and Serve's replacement must listen on the same ports."""
    (pid,) = replica_pids(server, "Ingress")
    outcomes, stop = [], threading.Event()

    def client_loop():
        client = grpcclient.InferenceServerClient(server.grpc)
        x = grpcclient.InferInput("X", [1, 1], "FP32")
        x.set_data_from_numpy(np.ones((1, 1), np.float32))
        while not stop.is_set():
            try:
                client.infer("slow_identity", [x], client_timeout=30)
                outcomes.append("ok")
            except InferenceServerException as e:
                outcomes.append(str(e.status()) + " " + str(e.message()))
                time.sleep(0.2)
        client.close()

    def http_loop():  # connections open on the HTTP port when the ingress dies: its replacement must still bind it
        with httpx.Client(base_url=f"http://{server.http}", timeout=30) as http:
            while not stop.is_set():
                try:
                    http.post("/v2/models/slow_identity/infer", json=BODY)
                except httpx.HTTPError:
                    time.sleep(0.2)

    kill_under_load(pid, [client_loop] * 4 + [http_loop] * 4, stop)
    assert "ok" in outcomes
    failures = [o for o in outcomes if o != "ok"]
    assert failures and all("UNAVAILABLE" in f or "RESOURCE_EXHAUSTED" in f for f in failures), failures[:5]
    http = httpx.Client(base_url=f"http://{server.http}", timeout=10)
    deadline = time.monotonic() + 240
    while True:  # the same HTTP and gRPC addresses answer again once Serve has replaced the replica
        try:
            if http.get("/v2/health/ready").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the ingress did not come back on its port"
        time.sleep(1)
    client = grpcclient.InferenceServerClient(server.grpc)
    x = grpcclient.InferInput("X", [1, 1], "FP32")
    x.set_data_from_numpy(np.full((1, 1), 3.0, np.float32))
    assert client.infer("slow_identity", [x], client_timeout=30).as_numpy("Y")[0, 0] == 3.0
    client.close()
    assert replica_pids(server, "Ingress") not in ([], [pid])
