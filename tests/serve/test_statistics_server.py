"""Triton's statistics extension on the real server, read by unmodified tritonclient (HTTP and gRPC, sync and asyncio):
the counts move by exactly what was sent (a batched request, a failed one), models in a deployment are counted in
their replica and summed by the ingress, unknown names are 404 / NOT_FOUND, and Triton's own example clients pass."""
import asyncio
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

EXAMPLES = Path(__file__).with_name("triton_examples")


def inputs(module, rows=1):
    a = np.arange(16 * rows, dtype=np.int32).reshape(rows, 16)
    tensors = [module.InferInput(name, [rows, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in tensors:
        tensor.set_data_from_numpy(a)
    return tensors


def stats(client, model, version=""):
    """The model_stats list as plain JSON whichever client asks (gRPC's as_json gives int64 as strings)."""
    if isinstance(client, httpclient.InferenceServerClient):
        return client.get_inference_statistics(model, version)["model_stats"]
    return [_ints(s) for s in client.get_inference_statistics(model, version, as_json=True).get("model_stats", [])]


def _ints(value):
    if isinstance(value, dict):
        return {k: v if k in ("name", "version") else _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return int(value) if isinstance(value, str) and value.isdigit() else value


def count(stat, *path):
    for key in path:
        stat = stat.get(key, 0) if isinstance(stat, dict) else 0  # proto3 JSON leaves zeros out
    return stat or 0


def batches(stat) -> dict[int, int]:
    return {int(b["batch_size"]): count(b, "compute_infer", "count") for b in stat.get("batch_stats", [])}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_counts_move_by_what_was_sent(http, grpc, protocol):
    """Sequential requests each run alone: 3 of one row and 1 of three rows are 4 requests, 6 inferences and 4
    executions (3 of batch size 1, 1 of batch size 3); a request the model fails is one failure and nothing else."""
    client, module = (http, httpclient) if protocol == "http" else (grpc, grpcclient)
    started_ms = time.time() * 1000
    before = stats(client, "simple")[0]
    for rows in (1, 1, 1, 3):
        client.infer("simple", inputs(module, rows))
    after = stats(client, "simple")[0]
    assert after["name"] == "simple" and after["version"] == "1"
    assert count(after, "inference_stats", "success", "count") - count(before, "inference_stats", "success", "count") == 4
    assert count(after, "inference_count") - count(before, "inference_count") == 6
    assert count(after, "execution_count") - count(before, "execution_count") == 4
    old = batches(before)
    assert {size: n - old.get(size, 0) for size, n in batches(after).items() if n != old.get(size, 0)} == {1: 3, 3: 1}
    for part in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert count(after, "inference_stats", part, "count") - count(before, "inference_stats", part, "count") == 4, part
    assert count(after, "inference_stats", "success", "ns") > count(before, "inference_stats", "success", "ns")
    assert count(after, "inference_stats", "fail", "count") == count(before, "inference_stats", "fail", "count")
    assert started_ms - 1000 <= count(after, "last_inference") <= time.time() * 1000 + 1000

    # byte_length's handler refuses an empty element after the request reached the model: a failure.
    before = stats(client, "byte_length")[0]
    data = module.InferInput("DATA", [1, 1], "BYTES")
    data.set_data_from_numpy(np.array([[b""]], dtype=object))
    with pytest.raises(InferenceServerException, match="empty"):
        client.infer("byte_length", [data])
    after = stats(client, "byte_length")[0]
    assert count(after, "inference_stats", "fail", "count") - count(before, "inference_stats", "fail", "count") == 1
    assert count(after, "inference_stats", "success", "count") == count(before, "inference_stats", "success", "count")
    assert count(after, "execution_count") == count(before, "execution_count")


def test_concurrent_requests_are_batched_and_counted_once_each(server, http):
    before = stats(http, "simple")[0]
    clients, barrier = 8, threading.Barrier(8)

    def send():
        client = httpclient.InferenceServerClient(server.http)
        barrier.wait()
        for _ in range(4):
            client.infer("simple", inputs(httpclient))
        client.close()

    threads = [threading.Thread(target=send) for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    after = stats(http, "simple")[0]
    executions = count(after, "execution_count") - count(before, "execution_count")
    assert count(after, "inference_stats", "success", "count") - count(before, "inference_stats", "success", "count") == 32
    assert count(after, "inference_count") - count(before, "inference_count") == 32
    old = batches(before)
    moved = {size: n - old.get(size, 0) for size, n in batches(after).items()}
    assert sum(moved.values()) == executions and sum(size * n for size, n in moved.items()) == 32
    assert executions < 32, "8 concurrent clients never shared a batch"


def test_a_model_in_a_deployment_is_counted_in_its_replica(http, grpc):
    """slow_identity_dedicated runs in the jobs pool: the ingress counts the requests, the pool's replica the
    executions; the ingress asks the pool to publish before it answers, so both are current."""
    before = stats(grpc, "slow_identity_dedicated")[0]
    for value in (1.0, 2.0, 3.0):
        x = httpclient.InferInput("X", [1, 1], "FP32")
        x.set_data_from_numpy(np.array([[value]], np.float32))
        http.infer("slow_identity_dedicated", [x])
    after = stats(grpc, "slow_identity_dedicated")[0]
    assert count(after, "inference_stats", "success", "count") - count(before, "inference_stats", "success", "count") == 3
    assert count(after, "inference_count") - count(before, "inference_count") == 3
    assert count(after, "execution_count") - count(before, "execution_count") == 3
    assert count(after, "inference_stats", "compute_infer", "ns") - count(before, "inference_stats", "compute_infer", "ns") >= 3 * 40e6  # 50 ms sleeps


def test_selection_follows_triton(http, grpc):
    served = {(m["name"], m["version"]) for m in http.get_model_repository_index() if m.get("state", "READY") == "READY"}
    assert {(s["name"], s["version"]) for s in stats(http, "")} == served
    assert {(s["name"], s["version"]) for s in stats(grpc, "")} == served
    assert [s["version"] for s in stats(http, "digits_cnn")] == ["1", "2"]
    assert [s["version"] for s in stats(grpc, "digits_cnn", "1")] == ["1"]


@pytest.mark.parametrize("model, version, named", [("nope", "", "'nope'"), ("nope", "1", "'nope'"), ("simple", "7", "version 7")])
def test_unknown_model_or_version_is_not_found(server, http, grpc, model, version, named):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/stats"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"http://{server.http}{path}")
    assert caught.value.code == 404 and named in caught.value.read().decode()
    with pytest.raises(InferenceServerException, match=named) as caught:
        grpc.get_inference_statistics(model, version)
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match=named):
        http.get_inference_statistics(model, version)


def test_asyncio_grpc_client_parses_the_answer(server):
    async def read():
        client = grpcaio.InferenceServerClient(server.grpc)
        try:
            await client.infer("simple", inputs(grpcaio))
            return await client.get_inference_statistics("simple")
        finally:
            await client.close()

    answer = asyncio.run(read())
    assert answer.model_stats[0].name == "simple" and answer.model_stats[0].inference_stats.success.count >= 1


@pytest.mark.parametrize("example, port", [("simple_http_infer_client", "http"), ("simple_grpc_infer_client", "grpc"),
                                           ("simple_grpc_aio_infer_client", "grpc")])
def test_triton_example_clients_pass_unchanged(server, example, port):
    """Triton's own example clients (tests/serve/triton_examples/README.md): each infers on `simple` and fails
    unless the statistics name exactly one model version; the HTTP one also checks Triton's unknown-model error."""
    result = subprocess.run([sys.executable, str(EXAMPLES / f"{example}.py"), "-u", getattr(server, port)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "FAILED" not in result.stdout and "model_stats" in result.stdout
