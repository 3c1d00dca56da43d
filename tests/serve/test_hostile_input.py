"""Hostile input against the data plane and both adapters (no Ray): every declared size is checked against the
model and the bytes received before anything is allocated, and each refusal is a 4xx / INVALID_ARGUMENT naming the
field. The same classes are sent to the real server by tests/serve/test_hostile_server.py."""
import asyncio
import tracemalloc

import grpc
import pytest
from fastapi.testclient import TestClient

from streamserve_proto import service_pb2 as pb
from serve import rest
from serve.codecs import decode_raw
from serve.dataplane import DataPlane
from serve.errors import InvalidInput
from serve.replica import ModelWorker
from serve.repository import ModelRepository
from tests.serve.test_dataplane import FakeContext, Servicer, simple_grpc_request


@pytest.fixture(scope="module")
def plane(repository):
    repo = ModelRepository(repository)
    backends = {(s.name, v): ModelWorker(str(repository), s.name, v) for s in repo for v in s.versions}
    return DataPlane(repo, backends, auth_token=None, max_request_bytes=1 << 16, max_response_bytes=1 << 16)


def client(plane, host="127.0.0.1"):
    rest.attach(plane)
    return TestClient(rest.served_app, client=(host, 5000), headers={"authorization": "Bearer t0ken"})  # as the ingress serves it


def peak_bytes(call) -> int:
    tracemalloc.start()
    try:
        call()
    except InvalidInput:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_a_bytes_count_the_data_cannot_hold_is_refused_before_allocating():
    # 2**26 declared elements over 8 bytes: each BYTES element needs at least its 4-byte length.
    with pytest.raises(InvalidInput, match="need at least 268435456 bytes, the data has 8"):
        decode_raw(b"\0" * 8, "BYTES", [2**26, 1], "DATA")
    assert peak_bytes(lambda: decode_raw(b"\0" * 8, "BYTES", [2**26, 1], "DATA")) < 1 << 20


@pytest.mark.parametrize("shape", [[0, 2**62, 2**62], [2**63, 0], [2**40], [-1, 3]])
def test_shapes_whose_product_overflows_or_is_absurd_are_client_errors(shape):
    with pytest.raises(InvalidInput, match="'X'"):
        decode_raw(b"", "FP32", shape, "X")


@pytest.mark.parametrize("body, fragment", [
    # the declared shape is checked against the model before the data is read
    ({"inputs": [{"name": "DATA", "shape": [2**26, 1], "datatype": "BYTES", "data": ["a"]}]}, "batch size 67108864"),
    ({"inputs": [{"name": "DATA", "shape": [2, 5], "datatype": "BYTES", "data": ["a"]}]}, "does not match the model's [-1, 1]"),
    ({"inputs": [{"name": "DATA", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}, "datatype FP32 does not match"),
    ({"inputs": [{"name": "NOPE", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}, "unexpected input(s) ['NOPE']"),
    ({"inputs": [{"name": "DATA", "shape": [2**63, 0], "datatype": "BYTES", "data": []}]}, "'DATA'"),
])
def test_declared_shapes_are_checked_against_the_model_first(plane, body, fragment):
    response = client(plane).post("/v2/models/byte_length/infer", json=body)
    assert response.status_code == 400 and fragment in response.json()["error"], response.text


def test_json_nested_thousands_deep_is_a_400(plane):
    deep = "[" * 5000 + "]" * 5000
    body = '{"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": ' + deep + "}]}"
    response = client(plane).post("/v2/models/simple/infer", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]


@pytest.mark.parametrize("sequence_id", [[1, 2], {"a": 1}, 1.5, True])
def test_a_sequence_id_that_is_not_an_integer_or_string_is_a_400(plane, sequence_id):
    body = {"parameters": {"sequence_id": sequence_id, "sequence_start": True},
            "inputs": [{"name": "INPUT", "shape": [1], "datatype": "INT32", "data": [1]}]}
    response = client(plane).post("/v2/models/accumulate_sequence/infer", json=body)
    assert response.status_code == 400 and "sequence_id" in response.json()["error"]


def sequence_request(value, start=False, end=False, sequence_id=42):
    return {"parameters": {"sequence_id": sequence_id, "sequence_start": start, "sequence_end": end},
            "inputs": [{"name": "INPUT", "shape": [1], "datatype": "INT32", "data": [value]}]}


def test_a_sequence_belongs_to_the_caller_that_started_it(plane):
    shared = DataPlane(plane.repository, plane.backends, auth_token="t0ken")  # callers on other hosts carry the token
    alice, mallory = client(shared, "10.0.0.1"), client(shared, "10.0.0.2")
    assert alice.post("/v2/models/accumulate_sequence/infer", json=sequence_request(5, start=True)).status_code == 200
    # another caller can neither continue nor end it: for them the id names no open sequence
    hijack = mallory.post("/v2/models/accumulate_sequence/infer", json=sequence_request(100, end=True))
    assert hijack.status_code == 400 and "is not open" in hijack.json()["error"]
    done = alice.post("/v2/models/accumulate_sequence/infer", json=sequence_request(1, end=True))
    assert done.json()["outputs"][0]["data"] == [6]


def test_one_caller_cannot_fill_the_sequence_table(plane):
    small = DataPlane(plane.repository, plane.backends, auth_token="t0ken")
    small.sequences.max_per_caller = 3
    greedy, other = client(small, "10.0.0.3"), client(small, "10.0.0.4")
    codes = [greedy.post("/v2/models/accumulate_sequence/infer", json=sequence_request(1, start=True, sequence_id=i)).status_code
             for i in range(1, 6)]
    assert codes == [200, 200, 200, 503, 503]
    assert other.post("/v2/models/accumulate_sequence/infer", json=sequence_request(1, start=True)).status_code == 200


def heat_body(steps: int, width: int = 256):
    return {"inputs": [{"name": "U", "shape": [1, width], "datatype": "FP32", "data": [0.0] * width},
                       {"name": "STEPS", "shape": [1, 1], "datatype": "INT32", "data": [steps]}]}


def test_a_unary_rollout_past_the_response_limit_is_refused_and_pointed_at_streaming(plane):
    http = client(plane)
    assert http.post("/v2/models/heat1d/infer", json=heat_body(4)).status_code == 200  # 4 KiB
    response = http.post("/v2/models/heat1d/infer", json=heat_body(1000))  # ~1 MB > 64 KiB
    assert response.status_code == 400
    assert "over the limit of 65536" in response.json()["error"] and "generate_stream" in response.json()["error"]


def test_each_message_of_a_grpc_stream_is_held_to_the_request_limit(plane):
    big = simple_grpc_request()
    big.inputs.add(name="PAD", datatype="BYTES", shape=[1])
    big.raw_input_contents.append(b"x" * (1 << 17))

    async def requests():
        yield big
        yield simple_grpc_request()

    async def collect():
        return [r async for r in Servicer(plane).ModelStreamInfer(requests(), FakeContext())]

    first, second = asyncio.run(collect())
    assert "exceeds the limit of 65536 bytes" in first.error_message
    assert second.infer_response.model_name == "simple"


def test_grpc_declared_shape_is_checked_before_raw_data(plane):
    request = pb.ModelInferRequest(model_name="simple")
    request.inputs.add(name="INPUT0", datatype="INT32", shape=[2**40, 16])
    request.raw_input_contents.append(b"")
    context = FakeContext()
    asyncio.run(Servicer(plane).ModelInfer(request, context))
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "'INPUT0'" in context.details


def test_in_tls_mode_grpc_from_another_host_is_refused_even_with_the_token(plane):
    from serve.errors import Unauthenticated

    tls = DataPlane(plane.repository, plane.backends, auth_token="t0ken")
    tls.grpc_loopback_only = True
    tls.authenticate("Bearer t0ken", "ipv4:127.0.0.1:5000", via_grpc=True)  # through the terminator
    tls.authenticate("Bearer t0ken", "ipv4:10.0.0.9:5000")  # HTTPS is Serve's own TLS: peers are real
    with pytest.raises(Unauthenticated, match="over TLS only"):
        tls.authenticate("Bearer t0ken", "ipv4:10.0.0.9:5000", via_grpc=True)
