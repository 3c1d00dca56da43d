"""The gRPC floor measurement (loadtest/grpc_floor.py): each of its bare servers answers tritonclient as Triton would,
the lean one and ours from the model, and a cell reports the server's CPU per request."""
import subprocess
import sys

import numpy as np
import psutil
import pytest

from loadtest import grpc_floor
from loadtest.bench import request_inputs
from serve.launcher import free_loopback_port


@pytest.fixture(params=["canned", "ours-canned", "batched", "ours"])
def bare(request, repository, tmp_path):
    port = free_loopback_port()
    log = tmp_path / "server.log"
    process = subprocess.Popen([sys.executable, "-m", "loadtest.grpc_floor", "--serve", request.param, "--port", str(port),
                                "--repository", str(repository)], stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        grpc_floor.wait_for_port(port, process, log)
        yield request.param, f"127.0.0.1:{port}", process
    finally:
        process.kill()
        process.wait()


def test_each_bare_server_answers_and_a_cell_counts_its_cpu(bare, repository):
    import onnxruntime as ort
    import tritonclient.grpc as grpcclient

    kind, address, process = bare
    image = request_inputs(grpc_floor.MODEL)["image"]
    tensor = grpcclient.InferInput("image", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    result = grpcclient.InferenceServerClient(address).infer(grpc_floor.MODEL, [tensor], model_version="2")
    answer = result.as_numpy("probabilities")
    assert answer.shape == (1, 10) and result.as_numpy("label").shape == (1, 1)  # the model's outputs, both
    if kind == "ours":  # the model's own answer, not the prepared one
        session = ort.InferenceSession(str(repository / grpc_floor.MODEL / "2" / "model.onnx"))
        np.testing.assert_allclose(answer, session.run(["probabilities"], {"image": image})[0], rtol=1e-5, atol=1e-6)
    else:
        assert not answer.any()
    cell = grpc_floor.cell(address, 0, psutil.Process(process.pid), clients=2, duration_s=0.5)
    assert cell["errors"] == 0 and cell["requests"] > 0 and cell["server_cpu_us_per_request"] > 0
