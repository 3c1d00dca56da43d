"""Server metadata advertises exactly the Triton extensions the server implements: each one listed has a check here
that exercises it on the real server, and the extensions it leaves out answer as unsupported."""
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def simple_inputs(module):
    a = np.arange(16, dtype=np.int32)[None]
    tensors = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in tensors:
        tensor.set_data_from_numpy(a)
    return tensors


def post(server, path, body: bytes, headers=None):
    request = urllib.request.Request(f"http://{server.http}{path}", body, headers or {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def binary_tensor_data(server, http, grpc):
    header = json.dumps({"inputs": [{"name": n, "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}}
                                    for n in ("INPUT0", "INPUT1")], "parameters": {"binary_data_output": True}}).encode()
    body = header + np.full(16, 2, "<i4").tobytes() + np.ones(16, "<i4").tobytes()
    status, headers, raw = post(server, "/v2/models/simple/infer", body, {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200
    length = int(headers["Inference-Header-Content-Length"])
    np.testing.assert_array_equal(np.frombuffer(raw[length:length + 64], "<i4"), np.full(16, 3))


def classification(server, http, grpc):
    """Triton's image_client.py against `digits_classifier`: the same checks of metadata and config it makes, then the
    top classes as "value:index:label" (tests/serve/test_classification_server.py has the rest)."""
    from models.digits.data import load_splits

    images, labels = load_splits()["test"][:2]
    for client, module in ((http, httpclient), (grpc, grpcclient)):
        tensor = module.InferInput("image", [4, 1, 8, 8], "FP32")
        tensor.set_data_from_numpy((images[:4] * 255).astype(np.float32))
        result = client.infer("digits_classifier", [tensor], outputs=[module.InferRequestedOutput("probabilities", class_count=3)])
        top = result.as_numpy("probabilities")
        assert top.shape == (4, 3)
        for row, label in zip(top, labels[:4]):
            fields = [entry.decode().split(":") for entry in row]
            values = [float(f[0]) for f in fields]
            assert values == sorted(values, reverse=True) and 0 <= values[-1] <= values[0] <= 1
            assert [f[2] for f in fields] == [f"digit {f[1]}" for f in fields]
        assert [int(row[0].decode().split(":")[1]) for row in top] == labels[:4].tolist()  # a trained model's test digits


def model_configuration(server, http, grpc):
    assert http.get_model_config("simple")["max_batch_size"] == 8
    assert grpc.get_model_config("simple").config.max_batch_size == 8


def schedule_policy(server, http, grpc):
    """`timeout` (µs in the queue) and `priority` are taken by both protocols; a malformed timeout is refused. That a
    timeout is enforced where the queue policy allows overriding is tests/serve/test_batcher.py's (no served model
    allows it); `priority` has no effect, as in Triton for a model without priority levels."""
    for client, module in ((http, httpclient), (grpc, grpcclient)):
        result = client.infer("simple", simple_inputs(module), priority=1, timeout=10_000_000)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * np.arange(16)[None])
    body = json.dumps({"parameters": {"timeout": "soon"}, "inputs": [
        {"name": n, "shape": [1, 16], "datatype": "INT32", "data": [1] * 16} for n in ("INPUT0", "INPUT1")]}).encode()
    status, _, raw = post(server, "/v2/models/simple/infer", body)
    assert status == 400 and b"timeout" in raw


def _sequence(client, module, sequence_id):
    totals = []
    for i, value in enumerate([2, 5, 9]):
        tensor = module.InferInput("INPUT", [1], "INT32")
        tensor.set_data_from_numpy(np.array([value], np.int32))
        result = client.infer("accumulate_sequence", [tensor], sequence_id=sequence_id, sequence_start=i == 0, sequence_end=i == 2)
        totals.append(int(result.as_numpy("OUTPUT")[0]))
    assert totals == [2, 7, 16]


def sequence(server, http, grpc):
    _sequence(grpc, grpcclient, 4242)
    _sequence(http, httpclient, 4243)


def sequence_string_id(server, http, grpc):
    _sequence(http, httpclient, "extensions-http")
    _sequence(grpc, grpcclient, "extensions-grpc")


def statistics(server, http, grpc):
    http.infer("simple", simple_inputs(httpclient))
    assert http.get_inference_statistics("simple")["model_stats"][0]["inference_stats"]["success"]["count"] >= 1
    assert grpc.get_inference_statistics("simple").model_stats[0].inference_count >= 1


def model_repository(server, http, grpc):
    """Index, unload and load (tests/serve/test_model_control_server.py has the rest)."""
    assert ("simple_int8", "1", "READY") in {(m.name, m.version, m.state) for m in grpc.get_model_repository_index().models}
    try:
        http.unload_model("simple_int8")
        assert not grpc.is_model_ready("simple_int8")
        assert next(m for m in http.get_model_repository_index() if m["name"] == "simple_int8")["state"] == "UNAVAILABLE"
    finally:
        grpc.load_model("simple_int8")
    assert http.is_model_ready("simple_int8")


def system_shared_memory(server, http, grpc):
    from tritonclient.utils import shared_memory as shm

    region = shm.create_shared_memory_region("extensions_check", "/extensions_check", 64)
    try:
        for client in (http, grpc):
            client.register_system_shared_memory("extensions_check", "/extensions_check", 64)
            status = client.get_system_shared_memory_status()
            assert "extensions_check" in str(status)
            client.unregister_system_shared_memory("extensions_check")
    finally:
        shm.destroy_shared_memory_region(region)


CHECKS = {
    "binary_tensor_data": binary_tensor_data,
    "classification": classification,
    "model_configuration": model_configuration,
    "model_repository": model_repository,
    "schedule_policy": schedule_policy,
    "sequence": sequence,
    "sequence(string_id)": sequence_string_id,
    "statistics": statistics,
    "system_shared_memory": system_shared_memory,
}


def test_both_protocols_advertise_the_same_extensions_and_each_has_a_check(http, grpc):
    advertised = http.get_server_metadata()["extensions"]
    assert list(grpc.get_server_metadata().extensions) == advertised
    assert sorted(advertised) == sorted(CHECKS), "an advertised extension without a check, or a check for one not advertised"


@pytest.mark.parametrize("extension", sorted(CHECKS))
def test_each_advertised_extension_works(server, http, grpc, extension):
    CHECKS[extension](server, http, grpc)


def test_extensions_not_advertised_answer_unsupported(server, http, grpc):
    with pytest.raises(InferenceServerException, match="not supported"):  # CUDA shared memory
        grpc.register_cuda_shared_memory("gpu_region", b"aGFuZGxl", 0, 64)  # base64 of a handle
    with pytest.raises(InferenceServerException):  # trace, logging
        http.get_trace_settings()
    with pytest.raises(InferenceServerException):
        grpc.get_log_settings()
    status, _, _ = post(server, "/v2/models/simple/generate", b"{}")  # generate (generate_stream takes v2 requests)
    assert status == 404
