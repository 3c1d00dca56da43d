"""Statistics summed across ingress replicas: a server of its own with two ingress replicas (direct ingress: each
listens on its own HTTP port) serving only `simple`. Requests sent to one replica are counted by the other within the
publication period, and the Triton counters scraped alternately from both never go back."""
import shutil
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient

from serve.statistics import PUBLISH_S
from serve.testing import start_server, stop_server


@pytest.fixture(scope="module")
def replicas(repository, tmp_path_factory):
    root = tmp_path_factory.mktemp("two_ingress") / "model_repository"
    shutil.copytree(repository / "simple", root / "simple")
    env = {"STREAMSERVE_INGRESS_REPLICAS": "2", "STREAMSERVE_INGRESS_NUM_CPUS": "0.1"}
    try:
        srv = start_server(root, tmp_path_factory.mktemp("two_ingress_server"), env, timeout_s=420)
    except RuntimeError as e:
        pytest.fail(str(e))
    host, port = srv.http.rsplit(":", 1)
    addresses = [f"{host}:{int(port) + i}" for i in range(2)]  # Serve gives each ingress replica a port of the range
    yield addresses
    assert stop_server(srv.process) == 0, srv.log.read_text()[-2000:]


def success(address: str) -> int:
    client = httpclient.InferenceServerClient(address)
    try:
        return client.get_inference_statistics("simple")["model_stats"][0]["inference_stats"]["success"]["count"]
    finally:
        client.close()


def triton_success(address: str) -> int:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        line = next(l for l in response.read().decode().splitlines() if l.startswith('nv_inference_request_success{model="simple"'))
    return int(float(line.rsplit(" ", 1)[1]))


def send(address: str, n: int) -> None:
    client = httpclient.InferenceServerClient(address)
    tensors = [httpclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in tensors:
        tensor.set_data_from_numpy(np.ones((1, 16), np.int32))
    for _ in range(n):
        client.infer("simple", tensors)
    client.close()


def test_each_replica_reports_the_requests_of_both(replicas):
    a, b = replicas
    base = success(a)
    send(a, 5)
    assert success(a) == base + 5  # the replica asked counts its own requests at once
    deadline = time.monotonic() + 10 * PUBLISH_S
    while success(b) != base + 5:  # the other within a publication period
        assert time.monotonic() < deadline, f"replica b never saw a's requests: {success(b)} != {base + 5}"
        time.sleep(0.2)
    send(b, 3)
    assert success(b) == base + 8
    time.sleep(2 * PUBLISH_S)
    assert success(a) == success(b) == base + 8


def test_triton_counters_scraped_from_either_replica_never_go_back(replicas):
    a, b = replicas
    seen = []
    for i in range(12):
        send(replicas[i % 2], 2)
        seen.append(triton_success(replicas[(i + 1) % 2]))  # scrape the replica that did not take the requests
    assert seen == sorted(seen), seen
    time.sleep(2 * PUBLISH_S)
    assert triton_success(a) == triton_success(b) >= seen[-1] + 2
