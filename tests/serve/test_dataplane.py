"""The data plane and both adapters without Ray: the REST app through FastAPI's TestClient and the gRPC
servicer with a stand-in context, over ModelWorkers running in this process, as the ingress hosts them."""
import asyncio

import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient

from streamserve_proto import service_pb2 as pb
from serve import grpc_servicer, rest
from serve.dataplane import DataPlane
from serve.errors import InvalidInput, ModelNotReady, Unauthenticated
from serve.grpc_servicer import GRPCInferenceServicer, decode_infer_request, parse_infer_request
from serve.replica import ModelWorker
from serve.repository import ModelRepository


@pytest.fixture(scope="module")
def plane(repository):
    repo = ModelRepository(repository)
    backends = {(s.name, v): ModelWorker(str(repository), s.name, v) for s in repo for v in s.versions}
    return DataPlane(repo, backends, auth_token=None, max_request_bytes=1 << 16)


@pytest.fixture(params=["served_app", "app"])
def http(plane, request):
    """The app as the ingress serves it (inference calls straight to their handler) and FastAPI's alone (behind
    Serve's proxies)."""
    rest.attach(plane)
    return TestClient(getattr(rest, request.param), client=("127.0.0.1", 5000), raise_server_exceptions=False)


def test_inference_routes_are_recognised_as_the_app_routes_them():
    route = lambda method, path: rest._inference_route({"method": method, "path": path})
    assert route("POST", "/v2/models/simple/infer") == ("simple", None)
    assert route("POST", "/v2/models/digits_cnn/versions/2/infer") == ("digits_cnn", "2")
    for method, path in [("GET", "/v2/models/simple/infer"), ("POST", "/v2/models/simple/infer/"), ("POST", "/v2/models//infer"),
                         ("POST", "/v2/models/simple/versions//infer"), ("POST", "/v2/models/simple/generate_stream"),
                         ("POST", "/v2/models/a/b/infer"), ("POST", "/v2/repository/models/simple/load"), ("POST", "/v1/models/simple/infer")]:
        assert route(method, path) is None, (method, path)


def test_both_apps_answer_inference_errors_alike(plane):
    rest.attach(plane)
    direct = TestClient(rest.served_app, client=("127.0.0.1", 5000), raise_server_exceptions=False)
    routed = TestClient(rest.app, client=("127.0.0.1", 5000), raise_server_exceptions=False)
    cases = [("/v2/models/nope/infer", {"json": simple_body()}), ("/v2/models/simple/versions/9/infer", {"json": simple_body()}),
             ("/v2/models/simple/infer", {"content": b"{not json"}), ("/v2/models/simple/infer", {"json": {"inputs": 3}}),
             ("/v2/models/simple/infer", {"json": simple_body() | {"outputs": [{"name": "NOPE"}]}}),
             ("/v2/models/simple/infer", {"json": simple_body()})]
    for path, body in cases:
        a, b = direct.post(path, **body), routed.post(path, **body)
        assert (a.status_code, a.json()) == (b.status_code, b.json()), path
    assert {direct.post(path, **body).status_code for path, body in cases} == {200, 400, 404}
    remote = {name: TestClient(getattr(rest, name), client=("10.1.2.3", 5000)) for name in ("served_app", "app")}
    answers = [(c.status_code, c.json()) for c in (client.post("/v2/models/simple/infer", json=simple_body()) for client in remote.values())]
    assert answers[0] == answers[1] and answers[0][0] == 401  # another host, no token configured


def test_an_unexpected_error_in_the_handler_is_a_500_that_names_no_internals(plane, monkeypatch):
    rest.attach(plane)

    def broken(*args, **kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(rest, "decode_request", broken)
    response = TestClient(rest.served_app, client=("127.0.0.1", 5000), raise_server_exceptions=False).post(
        "/v2/models/simple/infer", json=simple_body())
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (RuntimeError); see the server log"}


def simple_body(a=1):
    return {"inputs": [{"name": n, "shape": [1, 16], "datatype": "INT32", "data": [a] * 16} for n in ("INPUT0", "INPUT1")]}


def test_rest_infer_json(http):
    response = http.post("/v2/models/simple/infer", json=simple_body(3))
    assert response.status_code == 200
    assert response.json()["outputs"][0] == {"name": "OUTPUT0", "datatype": "INT32", "shape": [1, 16], "data": [6] * 16}


def test_rest_metadata_routes(http):
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").status_code == 200
    assert http.get("/v2/models/digits_cnn/versions/1").json()["versions"] == ["1", "2"]
    assert http.get("/v2/models/digits_cnn/versions/3/ready").status_code == 404
    assert http.get("/v2/models/heat1d/config").json()["model_transaction_policy"] == {"decoupled": True}


class FakeContext:
    def __init__(self, peer="ipv4:127.0.0.1:5000", metadata=()):
        self._peer, self._metadata, self.code, self.details = peer, metadata, None, None

    def peer(self):
        return self._peer

    def invocation_metadata(self):
        return list(self._metadata)

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details


class Servicer(GRPCInferenceServicer):
    def __init__(self, plane):
        self.plane = plane


def simple_grpc_request():
    request = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        request.raw_input_contents.append(np.full(16, 2, "<i4").tobytes())
    return request


def test_grpc_servicer_infer_and_errors(plane):
    servicer = Servicer(plane)
    context = FakeContext()
    response = asyncio.run(servicer.ModelInfer(simple_grpc_request(), context))
    assert context.code is None and np.frombuffer(response.raw_output_contents[0], "<i4").tolist() == [4] * 16
    context = FakeContext()
    asyncio.run(servicer.ModelReady(pb.ModelReadyRequest(name="simple", version="9"), context))
    assert context.code == grpc.StatusCode.NOT_FOUND and "version 9" in context.details


@pytest.fixture
def walked(monkeypatch):
    """Every received request walked as a large one is (`parse_infer_request`), whatever its size."""
    monkeypatch.setattr(grpc_servicer, "_COPIED_BELOW", 0)


@pytest.mark.usefixtures("walked")
def test_received_bytes_are_decoded_in_place(plane):
    """The server hands ModelInfer the received bytes (streamserve_proto.RECEIVED_AS_BYTES): the answer is the one a
    parsed message gets, and a large request's tensor data is read where it arrived, not copied by protobuf's parser."""
    message = simple_grpc_request()
    message.id, message.parameters["priority"].int64_param = "r1", 3
    wire = message.SerializeToString()
    parsed, raw = parse_infer_request(wire)
    assert parsed.id == "r1" and parsed.parameters["priority"].int64_param == 3 and not parsed.raw_input_contents
    decoded = decode_infer_request(parsed, raw=raw)
    received = np.frombuffer(wire, np.uint8)
    assert all(np.shares_memory(array, received) for array in decoded.inputs.values())  # views of the received bytes
    np.testing.assert_array_equal(decoded.inputs["INPUT0"], decode_infer_request(message).inputs["INPUT0"])
    servicer = Servicer(plane)
    from_bytes = asyncio.run(servicer.ModelInfer(wire, FakeContext()))
    from_message = asyncio.run(servicer.ModelInfer(message, FakeContext()))
    assert from_bytes == from_message and from_bytes.id == "r1"


@pytest.mark.parametrize("wire,fragment", [
    (simple_grpc_request().SerializeToString()[:-3], "ends inside a field"),
    (b"\xff" * 12, "varint runs past"),
    (simple_grpc_request().SerializeToString() + b"\x0b", "wire type 3"),
    (b"\x0a\x02\xff\xfe", "malformed ModelInferRequest"),  # model_name that is not UTF-8: protobuf's own refusal
])
def test_malformed_received_requests_are_invalid_argument(plane, wire, fragment, monkeypatch):
    context = FakeContext()
    asyncio.run(Servicer(plane).ModelInfer(wire, context))  # small: protobuf parses it whole
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "malformed ModelInferRequest" in context.details
    monkeypatch.setattr(grpc_servicer, "_COPIED_BELOW", 0)
    context = FakeContext()
    asyncio.run(Servicer(plane).ModelInfer(wire, context))  # large: walked, the tensor data left in place
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and fragment in context.details


def test_small_received_requests_match_walked_ones(plane, monkeypatch):
    """Parsed whole by protobuf or walked, a request gets the same answer."""
    message = simple_grpc_request()
    message.id = "r2"
    wire = message.SerializeToString()
    parsed, raw = grpc_servicer.parse_infer_request(wire)
    assert not parsed.raw_input_contents and raw == list(message.raw_input_contents) and parsed.id == "r2"
    small = asyncio.run(Servicer(plane).ModelInfer(wire, FakeContext()))
    monkeypatch.setattr(grpc_servicer, "_COPIED_BELOW", 0)
    assert asyncio.run(Servicer(plane).ModelInfer(wire, FakeContext())) == small and small.raw_output_contents


def test_grpc_stream_keeps_going_after_an_error(plane):
    servicer = Servicer(plane)
    heat = pb.ModelInferRequest(model_name="heat1d", id="h")
    heat.inputs.add(name="U", datatype="FP32", shape=[1, 4])
    heat.raw_input_contents.append(np.array([1, 0, 0, 0], "<f4").tobytes())
    heat.inputs.add(name="STEPS", datatype="INT32", shape=[1, 1])
    heat.raw_input_contents.append(np.array([3], "<i4").tobytes())

    async def requests():
        for request in (pb.ModelInferRequest(model_name="nope", id="x"), heat, simple_grpc_request()):
            yield request

    async def collect():
        return [r async for r in servicer.ModelStreamInfer(requests(), FakeContext())]

    responses = asyncio.run(collect())
    assert "unknown model 'nope'" in responses[0].error_message and responses[0].infer_response.id == "x"
    steps = [r.infer_response.parameters["rollout_step"].int64_param for r in responses[1:4]]
    assert steps == [1, 2, 3] and responses[4].infer_response.model_name == "simple"
    assert np.isclose(np.frombuffer(responses[3].infer_response.raw_output_contents[0], "<f4").sum(), 1.0)


@pytest.mark.parametrize("token,authorization,peer,allowed", [
    (None, None, "ipv4:127.0.0.1:4000", True),
    (None, None, "ipv6:[::1]:4000", True),
    (None, None, "ipv4:10.1.2.3:4000", False),  # the gRPC port exposed (STREAMSERVE_HTTP_HOST): other hosts need a token
    (None, None, None, True),  # HTTP behind its loopback bind
    ("s3cret", "Bearer s3cret", "ipv4:10.1.2.3:4000", True),
    ("s3cret", "bearer s3cret", "ipv4:127.0.0.1:4000", True),
    ("s3cret", None, "ipv4:127.0.0.1:4000", False),
    ("s3cret", "Bearer wrong", "ipv4:127.0.0.1:4000", False),
    ("s3cret", "s3cret", "ipv4:127.0.0.1:4000", False),
])
def test_authentication_rules(plane, token, authorization, peer, allowed):
    gate = DataPlane(plane.repository, plane.backends, auth_token=token)
    if allowed:
        gate.authenticate(authorization, peer)
    else:
        with pytest.raises(Unauthenticated):
            gate.authenticate(authorization, peer)


def test_token_is_enforced_on_both_adapters_but_not_on_health(plane):
    gate = DataPlane(plane.repository, plane.backends, auth_token="s3cret")
    rest.attach(gate)
    client = TestClient(rest.app, client=("127.0.0.1", 5000))
    assert client.get("/v2/health/ready").status_code == 200
    assert client.post("/v2/models/simple/infer", json=simple_body()).status_code == 401
    assert client.get("/v2/models/simple").status_code == 401
    ok = client.post("/v2/models/simple/infer", json=simple_body(), headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    context = FakeContext()
    asyncio.run(Servicer(gate).ModelInfer(simple_grpc_request(), context))
    assert context.code == grpc.StatusCode.UNAUTHENTICATED
    context = FakeContext(metadata=[("authorization", "Bearer s3cret")])
    assert asyncio.run(Servicer(gate).ModelInfer(simple_grpc_request(), context)).model_name == "simple"


def test_overload_is_a_503_with_retry_after(plane):
    from serve.errors import Overloaded

    class Full:
        async def infer(self, inputs, timeout_s=None):
            raise Overloaded("model 'simple' is at capacity; retry later")

    rest.attach(DataPlane(plane.repository, plane.backends | {("simple", 1): Full()}))
    response = TestClient(rest.app, client=("127.0.0.1", 5000)).post("/v2/models/simple/infer", json=simple_body())
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert "at capacity" in response.json()["error"]


@pytest.mark.parametrize(
    "exc, outcome",
    [(None, "success"), (asyncio.CancelledError(), "cancelled"), (InvalidInput("x"), "client_error"),
     (ModelNotReady("x"), "failure"), (RuntimeError("x"), "failure")],
)
def test_request_outcomes_separate_clients_leaving_from_our_failures(exc, outcome):
    from serve.dataplane import _outcome

    assert _outcome(exc) == outcome


def test_inference_routes_are_matched_first_and_no_request_changes_route():
    """Starlette and Serve try routes in order: inference comes first, and every route still answers its own paths."""
    from serve.rest import app

    routes = [r for r in app.router.routes if hasattr(r, "path")]
    assert routes[0].path == "/v2/models/{model}/infer"
    for route in routes:
        path = route.path.replace("{model}", "m").replace("{version}", "1").replace("{name}", "r")
        for method in route.methods or ():
            scope = {"type": "http", "path": path, "method": method}
            first = next(r for r in routes if r.matches(scope)[0].name == "FULL")
            assert first.endpoint is route.endpoint, f"{method} {path} now goes to {first.path}"
