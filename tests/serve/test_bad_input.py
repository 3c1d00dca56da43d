"""Every documented client mistake gets its documented status and a message naming the problem; never a
500, and the server answers a valid request right after each one."""
import gzip
import json
import urllib.error
import urllib.request

import grpc as grpclib
import numpy as np
import pytest

from streamserve_proto import service_pb2 as pb, service_pb2_grpc

LIMIT = 1 << 20  # the test server's STREAMSERVE_MAX_REQUEST_BYTES (see conftest)


def simple_json(**overrides):
    body = {"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
    ]}
    body.update(overrides)
    return json.dumps(body).encode()


def with_input(**changes):
    tensor = {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
    tensor.update(changes)
    return json.dumps({"inputs": [tensor, {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}]}).encode()


def binary_body(raw: bytes, declared: int | None = None, header_length_delta: int = 0):
    header = json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": declared if declared is not None else len(raw)}},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
    ]}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header) + header_length_delta)}


RAW16 = np.arange(16, dtype="<i4").tobytes()


def caption(texts, side=16):
    return json.dumps({"inputs": [
        {"name": "image", "shape": [len(texts), 3, side, side], "datatype": "FP32", "data": [0.0] * (len(texts) * 3 * side * side)},
        {"name": "text", "shape": [len(texts), 1], "datatype": "BYTES", "data": texts},
    ]}).encode()


def kno(points=64, value=0.0, steps=2):
    return json.dumps({"inputs": [
        {"name": "WINDOW", "shape": [1, 10, points], "datatype": "FP32", "data": [value] * (10 * points)},
        {"name": "STEPS", "shape": [1, 1], "datatype": "INT32", "data": [steps]},
    ]}).encode()


def heat(rows=1, steps=(2,), values=(0.0, 1.0, 0.0, 0.0)):
    return json.dumps({"inputs": [
        {"name": "U", "shape": [rows, len(values)], "datatype": "FP32", "data": list(values) * rows},
        {"name": "STEPS", "shape": [rows, 1], "datatype": "INT32", "data": list(steps) * (rows // len(steps))},
    ]}).encode()  # Python's json writes NaN, which the server's parser reads

HTTP_CASES = [
    # (id, path, body, headers, status, message fragment)
    ("unknown model", "/v2/models/nope/infer", simple_json(), {}, 404, "unknown model 'nope'"),
    ("unknown version", "/v2/models/simple/versions/7/infer", simple_json(), {}, 404, "does not serve version 7"),
    ("non-numeric version", "/v2/models/simple/versions/latest/infer", simple_json(), {}, 404, "versions are integers"),
    ("wrong datatype", "/v2/models/simple/infer", with_input(datatype="FP32", data=[0.5] * 16), {}, 400, "datatype FP32 does not match the model's INT32"),
    ("unknown datatype", "/v2/models/simple/infer", with_input(datatype="INT33"), {}, 400, "unknown datatype 'INT33'"),
    ("wrong shape", "/v2/models/simple/infer", with_input(shape=[2, 8]), {}, 400, "shape [2, 8] does not match the model's [-1, 16]"),
    ("wrong rank", "/v2/models/simple/infer", with_input(shape=[16]), {}, 400, "does not match the model's [-1, 16]"),
    ("negative dim", "/v2/models/simple/infer", with_input(shape=[-1, 16]), {}, 400, "non-negative integers"),
    ("too few elements", "/v2/models/simple/infer", with_input(data=list(range(15))), {}, 400, "has 15 elements, shape [1, 16] needs 16"),
    ("float data for INT32", "/v2/models/simple/infer", with_input(data=[0.5] * 16), {}, 400, "floating-point values, expected INT32"),
    ("value out of range", "/v2/models/simple/infer", with_input(data=[2**40] * 16), {}, 400, "outside the INT32 range"),
    ("ragged data", "/v2/models/simple/infer", with_input(data=[[1, 2], [3]]), {}, 400, "ragged"),
    ("batch above max_batch_size", "/v2/models/simple/infer", json.dumps({"inputs": [
        {"name": n, "shape": [9, 16], "datatype": "INT32", "data": [1] * 144} for n in ("INPUT0", "INPUT1")]}).encode(), {}, 400, "max_batch_size 8"),
    ("batch sizes disagree", "/v2/models/simple/infer", json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [2, 16], "datatype": "INT32", "data": [1] * 32},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}]}).encode(), {}, 400, "disagree on the batch size"),
    ("missing input", "/v2/models/simple/infer", json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}]}).encode(), {}, 400, "missing input(s) ['INPUT1']"),
    ("extra input", "/v2/models/simple/infer", json.dumps({"inputs": json.loads(simple_json())["inputs"] + [
        {"name": "INPUT2", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}]}).encode(), {}, 400, "unexpected input(s) ['INPUT2']"),
    ("duplicate input", "/v2/models/simple/infer", json.dumps({"inputs": json.loads(simple_json())["inputs"] * 2}).encode(), {}, 400, "appears twice"),
    ("unknown output", "/v2/models/simple/infer", simple_json(outputs=[{"name": "OUTPUT9"}]), {}, 400, "unknown output 'OUTPUT9'"),
    ("malformed JSON", "/v2/models/simple/infer", b'{"inputs": [', {}, 400, "not valid JSON"),
    ("no inputs field", "/v2/models/simple/infer", b'{"id": "x"}', {}, 400, "inputs: Field required"),
    ("shape not a list", "/v2/models/simple/infer", with_input(shape="16"), {}, 400, "inputs.0.shape"),
    ("unknown field", "/v2/models/simple/infer", simple_json(colour="red"), {}, 400, "colour: Extra inputs are not permitted"),
    ("no data at all", "/v2/models/simple/infer", with_input(data=None), {}, 400, "no 'data' and no binary_data_size"),
    ("raw buffer too short", "/v2/models/simple/infer", *binary_body(RAW16[:60]), 400, "raw data has 60 bytes, expected 64"),
    ("binary size past the body", "/v2/models/simple/infer", *binary_body(RAW16, declared=80), 400, "runs past the binary body"),
    ("binary bytes left over", "/v2/models/simple/infer", *binary_body(RAW16 + b"xx", declared=64), 400, "add up to 64"),
    ("header length past the body", "/v2/models/simple/infer", *binary_body(RAW16, header_length_delta=10_000), 400, "Inference-Header-Content-Length"),
    ("header length not a number", "/v2/models/simple/infer", simple_json(), {"Inference-Header-Content-Length": "abc"}, 400, "must be an integer"),
    ("header length cuts the JSON", "/v2/models/simple/infer", *binary_body(RAW16, header_length_delta=-5), 400, "not valid JSON"),
    ("unsupported content-encoding", "/v2/models/simple/infer", simple_json(), {"Content-Encoding": "br"}, 400, "content-encoding 'br' is not supported"),
    ("gzip header, plain body", "/v2/models/simple/infer", simple_json(), {"Content-Encoding": "gzip"}, 400, "not valid gzip data"),
    ("gzip body cut short", "/v2/models/simple/infer", gzip.compress(simple_json())[:-12], {"Content-Encoding": "gzip"}, 400, "not complete gzip data"),
    ("gzip bomb", "/v2/models/simple/infer", gzip.compress(b" " * (8 * LIMIT)), {"Content-Encoding": "gzip"}, 400, "decompresses (gzip) to more than the limit"),
    ("body above the size limit", "/v2/models/simple/infer", b"x" * (LIMIT + 1), {}, 400, f"exceeds the limit of {LIMIT} bytes"),
    ("classification count negative", "/v2/models/simple/infer", simple_json(outputs=[{"name": "OUTPUT0", "parameters": {"classification": -3}}]), {}, 400, "output 'OUTPUT0': parameter 'classification' must be a non-negative integer"),
    ("classification at request level", "/v2/models/simple/infer", simple_json(parameters={"classification": 3}), {}, 400, "asked per output"),
    ("caption: empty text", "/v2/models/caption_match/infer", caption(["   "]), {}, 400, "element 0 is empty; text expected"),
    ("caption: text above the byte limit", "/v2/models/caption_match/infer", caption(["red " * 70]), {}, 400, "bytes, the limit is 256"),
    ("caption: more words than the model reads", "/v2/models/caption_match/infer", caption(["a " * 40]), {}, 400, "40 words, the limit is 32"),
    ("caption: wrong image size", "/v2/models/caption_match/infer", caption(["a red one"], side=8), {}, 400, "does not match the model's [-1, 3, 16, 16]"),
    ("shortcut_audit: wrong channels", "/v2/models/shortcut_audit/infer", json.dumps({"inputs": [
        {"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]}).encode(), {}, 400, "does not match the model's [-1, 3, 8, 8]"),
    ("kno: grid below the kept modes", "/v2/models/kno_burgers/infer", kno(points=16), {}, 400, "below the model's minimum [1, 10, 32]"),
    ("kno: non-finite window", "/v2/models/kno_burgers/infer", kno(value=float("inf")), {}, 400, "NaN or infinite"),
    ("kno: wrong rank", "/v2/models/kno_ns2d/infer", kno(), {}, 400, "does not match the model's [-1, 10, -1, -1]"),
    ("kno: steps above the limit", "/v2/models/kno_burgers/infer", kno(steps=201), {}, 400, "between 1 and 200"),
    ("rollout: zero steps", "/v2/models/heat1d/infer", heat(steps=[0]), {}, 400, "one step count between 1 and 1000"),
    ("rollout: too many steps", "/v2/models/heat1d/infer", heat(steps=[1001]), {}, 400, "between 1 and 1000"),
    ("rollout: steps differ by row", "/v2/models/heat1d/infer", heat(rows=2, steps=[3, 4]), {}, 400, "every row the same"),
    ("rollout: non-finite state", "/v2/models/heat1d/infer", heat(values=[0.0, float("nan"), 1.0, 0.0]), {}, 400, "NaN or infinite"),
    ("rollout: grid too small", "/v2/models/heat1d/infer", heat(values=[0.0, 1.0]), {}, 400, "below the model's minimum [1, 3]"),
]


def post(server, path, body, headers):
    request = urllib.request.Request(f"http://{server.http}{path}", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_http_bad_input(server, case):
    _, path, body, headers, status, fragment = case
    got_status, document = post(server, path, body, headers)
    assert got_status == status, document
    assert fragment in document["error"], document["error"]
    assert "Traceback" not in document["error"]
    ok_status, ok = post(server, "/v2/models/simple/infer", simple_json(), {})
    assert ok_status == 200 and ok["outputs"][0]["data"][:3] == [1, 2, 3]


def test_http_unknown_route_and_method(server):
    for method, path, status in (("GET", "/v2/nothing", 404), ("GET", "/v2/models/simple/infer", 405), ("GET", "/v2/models/nope", 404)):
        request = urllib.request.Request(f"http://{server.http}{path}", method=method)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == status and "error" in json.loads(caught.value.read())


# -- gRPC --------------------------------------------------------------------------------------------
def grpc_request(model="simple", version="", raw=True, datatype="INT32", shape=(1, 16), names=("INPUT0", "INPUT1"), raw_override=None, count=16):
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    for name in names:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=list(shape))
        if raw:
            request.raw_input_contents.append(np.arange(count, dtype="<i4").tobytes())
        else:
            tensor.contents.int_contents.extend(range(count))
    if raw_override is not None:
        del request.raw_input_contents[:]
        request.raw_input_contents.extend(raw_override)
    return request


GRPC_CASES = [
    ("unknown model", grpc_request(model="nope"), grpclib.StatusCode.NOT_FOUND, "unknown model 'nope'"),
    ("unknown version", grpc_request(version="3"), grpclib.StatusCode.NOT_FOUND, "does not serve version 3"),
    ("wrong datatype", grpc_request(datatype="UINT32"), grpclib.StatusCode.INVALID_ARGUMENT, "datatype UINT32 does not match the model's INT32"),
    ("wrong shape", grpc_request(shape=(2, 8)), grpclib.StatusCode.INVALID_ARGUMENT, "does not match the model's [-1, 16]"),
    ("raw buffer wrong length", grpc_request(raw_override=[b"\0" * 60, b"\0" * 64]), grpclib.StatusCode.INVALID_ARGUMENT, "raw data has 60 bytes, expected 64"),
    ("raw entries for some inputs", grpc_request(raw_override=[b"\0" * 64]), grpclib.StatusCode.INVALID_ARGUMENT, "raw_input_contents has 1 entries for 2 inputs"),
    ("typed contents too short", grpc_request(raw=False, count=15), grpclib.StatusCode.INVALID_ARGUMENT, "int_contents has 15 elements"),
    # the declared datatype is checked against the model before the contents are read
    ("FP16 in typed contents", grpc_request(raw=False, datatype="FP16"), grpclib.StatusCode.INVALID_ARGUMENT, "datatype FP16 does not match the model's INT32"),
    ("missing input", grpc_request(names=("INPUT0",)), grpclib.StatusCode.INVALID_ARGUMENT, "missing input(s) ['INPUT1']"),
    ("extra input", grpc_request(names=("INPUT0", "INPUT1", "INPUT7")), grpclib.StatusCode.INVALID_ARGUMENT, "unexpected input(s) ['INPUT7']"),
    ("unknown datatype", grpc_request(datatype="COMPLEX64"), grpclib.StatusCode.INVALID_ARGUMENT, "unknown datatype 'COMPLEX64'"),
    ("message above the size limit", grpc_request(raw_override=[b"\0" * (LIMIT + 10), b"\0" * 64]), grpclib.StatusCode.INVALID_ARGUMENT, f"exceeds the limit of {LIMIT} bytes"),
]


@pytest.fixture(scope="module")
def stub(server):
    channel = grpclib.insecure_channel(server.grpc)
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


@pytest.mark.parametrize("case", GRPC_CASES, ids=[c[0] for c in GRPC_CASES])
def test_grpc_bad_input(stub, case):
    _, request, code, fragment = case
    with pytest.raises(grpclib.RpcError) as caught:
        stub.ModelInfer(request, timeout=30)
    assert caught.value.code() == code
    assert fragment in caught.value.details() and "Traceback" not in caught.value.details()
    response = stub.ModelInfer(grpc_request(), timeout=30)
    assert np.frombuffer(response.raw_output_contents[0], "<i4")[:3].tolist() == [0, 2, 4]


def test_grpc_message_far_above_the_limit_is_cut_by_the_proxy(stub):
    with pytest.raises(grpclib.RpcError) as caught:
        stub.ModelInfer(grpc_request(raw_override=[b"\0" * (3 * LIMIT), b"\0" * 64]), timeout=30)
    assert caught.value.code() == grpclib.StatusCode.RESOURCE_EXHAUSTED
    assert stub.ModelInfer(grpc_request(), timeout=30).model_name == "simple"


@pytest.mark.parametrize("rpc", ["TraceSetting", "LogSettings"])
def test_unsupported_rpcs_answer_unimplemented(stub, rpc):
    request_type = getattr(pb, pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name[rpc].input_type.name)
    with pytest.raises(grpclib.RpcError) as caught:
        getattr(stub, rpc)(request_type(), timeout=30)
    assert caught.value.code() == grpclib.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("name", ["", "../simple", ".hidden"])
def test_model_load_names_a_folder_of_the_repository(stub, name):
    for rpc, request in (("RepositoryModelLoad", pb.RepositoryModelLoadRequest), ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest)):
        with pytest.raises(grpclib.RpcError) as caught:
            getattr(stub, rpc)(request(model_name=name), timeout=30)
        assert caught.value.code() == grpclib.StatusCode.INVALID_ARGUMENT and "name of a folder" in caught.value.details()
