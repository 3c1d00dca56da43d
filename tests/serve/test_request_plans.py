"""Request plans (serve/dataplane.py `DataPlane.plan`): a gRPC request whose header was checked before is decoded by
the plan kept for that header and checked only where its data can differ. Each test sends what a client would and
asserts the answer is the one the whole path gives: a plan must never let through what the whole path refuses."""
import asyncio
import json
import shutil

import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient

from serve import rest
from serve.dataplane import DataPlane, RequestPlan, RequestPlans
from serve.replica import ModelWorker
from serve.repository import ModelRepository
from streamserve_proto import service_pb2 as pb
from tests.serve.test_dataplane import FakeContext, Servicer, simple_grpc_request


@pytest.fixture
def plane(repository):
    """A plane of its own per test: plans are kept on it."""
    repo = ModelRepository(repository)
    backends = {(name, v): ModelWorker(str(repository), name, v)
                for name in ("simple", "simple_int8", "digits_cnn", "simple_sequence") for v in repo.get(name).versions}
    return DataPlane(repo, backends, auth_token=None, max_request_bytes=1 << 16)


def call(plane, message: pb.ModelInferRequest) -> tuple[pb.ModelInferResponse, FakeContext]:
    """ModelInfer as the ingress's server calls it: on the received bytes."""
    context = FakeContext()
    return asyncio.run(Servicer(plane).ModelInfer(message.SerializeToString(), context)), context


def simple(a: int, b: int, request_id: str = "") -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="simple", id=request_id)
    for name, value in (("INPUT0", a), ("INPUT1", b)):
        message.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        message.raw_input_contents.append(np.full(16, value, "<i4").tobytes())
    return message


def sums(response: pb.ModelInferResponse) -> list[int]:
    return np.frombuffer(response.raw_output_contents[0], "<i4").tolist()


def test_requests_with_a_planned_header_are_answered_on_their_own_data(plane):
    first, _ = call(plane, simple(1, 2, "a"))
    assert sums(first) == [3] * 16 and first.id == "a"
    assert len(plane._plans._by_header) == 1  # the header of the first success is planned
    for a, b, request_id in [(5, 7, "b"), (-4, 4, ""), (100, 1, "c")]:  # same header; other data and ids
        response, context = call(plane, simple(a, b, request_id))
        assert context.code is None and sums(response) == [a + b] * 16 and response.id == request_id
        assert [o.name for o in response.outputs] == ["OUTPUT0", "OUTPUT1"]
        assert np.frombuffer(response.raw_output_contents[1], "<i4").tolist() == [a - b] * 16
    assert len(plane._plans._by_header) == 1  # ids are not part of the header


def test_a_planned_header_with_data_of_another_size_is_refused_as_the_whole_path_refuses_it(plane):
    call(plane, simple(1, 2))
    short = simple(1, 2)
    short.raw_input_contents[1] = short.raw_input_contents[1][:-4]
    _, planned = call(plane, short)
    _, fresh = call(DataPlane(plane.repository, plane.backends), short)
    assert planned.code == fresh.code == grpc.StatusCode.INVALID_ARGUMENT
    assert planned.details == fresh.details and "60 bytes, expected 64" in planned.details
    missing = simple(1, 2)
    del missing.raw_input_contents[1]
    _, context = call(plane, missing)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "raw_input_contents has 1 entries for 2 inputs" in context.details


def test_values_the_model_refuses_are_refused_on_a_planned_header(repository, tmp_path):
    root = tmp_path / "repository"
    shutil.copytree(repository / "digits_cnn", root / "digits_cnn")
    with (root / "digits_cnn" / "config.pbtxt").open("a") as config:
        config.write('parameters { key: "reject_non_finite" value { string_value: "true" } }\n')
    plane = DataPlane(ModelRepository(root), {("digits_cnn", 2): ModelWorker(str(root), "digits_cnn", 2)})

    def digits(value: float) -> pb.ModelInferRequest:
        message = pb.ModelInferRequest(model_name="digits_cnn", model_version="2")
        message.inputs.add(name="image", datatype="FP32", shape=[1, 1, 8, 8])
        message.raw_input_contents.append(np.full(64, value, "<f4").tobytes())
        return message

    response, context = call(plane, digits(0.5))
    assert context.code is None and len(response.outputs) == 2
    _, context = call(plane, digits(np.nan))
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "NaN or infinite" in context.details


def test_a_model_reloaded_or_taken_out_of_service_is_not_reached_through_its_plan(plane, monkeypatch):
    call(plane, simple(1, 2))
    reloaded = ModelRepository(plane.repository.root).get("simple")  # a new spec object, as a reload makes
    monkeypatch.setitem(plane.repository.models, "simple", reloaded)
    response, context = call(plane, simple(2, 2))
    assert context.code is None and sums(response) == [4] * 16
    [plan] = plane._plans._by_header.values()
    assert plan.spec is reloaded  # planned anew, by the whole path
    plane.unloaded["simple"] = "unloaded by the operator"
    _, context = call(plane, simple(1, 2))
    assert context.code == grpc.StatusCode.UNAVAILABLE and "unloaded by the operator" in context.details
    assert not plane._plans._by_header


def test_parameters_and_classification_in_the_header_hold_for_every_planned_request(plane):
    def classified(a: int, b: int) -> pb.ModelInferRequest:
        message = simple(a, b)
        message.parameters["priority"].int64_param = 1
        message.outputs.add(name="OUTPUT0").parameters["classification"].int64_param = 2
        return message

    for a, b in [(1, 2), (3, 4), (10, -3)]:
        response, context = call(plane, classified(a, b))
        assert context.code is None, context.details
        assert [o.name for o in response.outputs] == ["OUTPUT0"] and response.outputs[0].datatype == "BYTES"
        assert f"{a + b:.6f}:0".encode() in response.raw_output_contents[0]  # the top class, as "value:index"
    [plan] = plane._plans._by_header.values()
    assert dict(plan.parameters) == {"priority": 1} and dict(plan.classification) == {"OUTPUT0": 2}


def test_a_planned_timeout_reaches_the_batch_queue(plane, monkeypatch):
    seen = []
    worker = plane.backends[("simple", 1)]
    infer = worker.infer

    async def recording(inputs, timeout_s=None):
        seen.append(timeout_s)
        return await infer(inputs, timeout_s)

    monkeypatch.setattr(worker, "infer", recording)
    for a in (1, 2):
        message = simple(a, a)
        message.parameters["timeout"].int64_param = 250_000
        _, context = call(plane, message)
        assert context.code is None, context.details
    assert seen == [0.25, 0.25] and len(plane._plans._by_header) == 1


def test_requests_of_a_model_that_keeps_state_are_not_planned(plane):
    for start in (True, False):
        sequence = pb.ModelInferRequest(model_name="simple_sequence")
        sequence.inputs.add(name="INPUT", datatype="INT32", shape=[1, 1])
        sequence.raw_input_contents.append(np.array([3], "<i4").tobytes())
        sequence.parameters["sequence_id"].int64_param = 7
        sequence.parameters["sequence_start"].bool_param = start
        _, context = call(plane, sequence)
        assert context.code is None, context.details
    assert not plane._plans._by_header


def test_plans_are_bounded():
    plans = RequestPlans(size=2, max_header_bytes=8)
    plan = RequestPlan(None, 1, (), None, {}, {})
    for header in (b"a", b"b", b"c"):
        plans.keep(("grpc", header), plan)
    assert plans.get(("grpc", b"a")) is None and plans.get(("grpc", b"b")) is plan and plans.get(("grpc", b"c")) is plan
    assert plans.get(("http", b"b")) is None  # each adapter's headers apart
    plans.keep(("grpc", b"x" * 9), plan)  # a header over the limit is not kept
    assert plans.get(("grpc", b"x" * 9)) is None


# -- HTTP: the JSON header of a binary body, for the model its URL names ------------------------------------------------
def post(plane, a: int, b: int, model: str = "simple", cut: int = 0, request_id: str | None = "h"):
    """A binary request as tritonclient.http sends it: JSON header, then the tensors; `cut` bytes short."""
    header = json.dumps({**({"id": request_id} if request_id else {}),
                         "inputs": [{"name": n, "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}}
                                    for n in ("INPUT0", "INPUT1")],
                         "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}).encode()
    body = header + np.full(16, a, "<i4").tobytes() + np.full(16, b, "<i4").tobytes()
    rest.attach(plane)
    client = TestClient(rest.served_app, client=("127.0.0.1", 5000))
    return client.post(f"/v2/models/{model}/infer", content=body[: len(body) - cut],
                       headers={rest.HEADER_LENGTH: str(len(header)), "content-type": "application/octet-stream"})


def binary_output(response) -> list[int]:
    length = int(response.headers[rest.HEADER_LENGTH])
    return np.frombuffer(response.content[length:], "<i4").tolist()


def test_http_binary_requests_with_a_planned_header_are_answered_on_their_own_data(plane):
    for a, b in [(1, 2), (5, 7), (-3, 3)]:
        response = post(plane, a, b)
        assert response.status_code == 200 and binary_output(response) == [a + b] * 16
        assert json.loads(response.content[: int(response.headers[rest.HEADER_LENGTH])])["id"] == "h"
    assert len(plane._plans._by_header) == 1
    short, fresh = post(plane, 1, 2, cut=4), post(DataPlane(plane.repository, plane.backends), 1, 2, cut=4)
    assert short.status_code == fresh.status_code == 400 and short.json() == fresh.json()


def test_http_headers_are_planned_for_the_model_their_url_names(plane):
    assert post(plane, 1, 2).status_code == 200
    other = post(plane, 1, 2, model="simple_int8")  # the same JSON header, sent to a model with INT8 inputs
    assert other.status_code == 400 and "datatype INT32 does not match the model's INT8" in other.json()["error"]


def test_http_json_data_is_not_planned(plane):
    rest.attach(plane)
    client = TestClient(rest.served_app, client=("127.0.0.1", 5000))
    body = {"inputs": [{"name": n, "shape": [1, 16], "datatype": "INT32", "data": [1] * 16} for n in ("INPUT0", "INPUT1")]}
    for _ in range(2):
        assert client.post("/v2/models/simple/infer", json=body).status_code == 200
    assert not plane._plans._by_header
