"""Bad input at scale: the generated corpus (loadtest/bad_inputs.py) over both protocols, for every model
the repository serves. Zero 5xx / server-side gRPC codes, every answer says what was wrong, and the
server is healthy afterwards."""
import grpc
import numpy as np
import pytest
import tritonclient.http as httpclient

from loadtest.bad_inputs import CLIENT_GRPC, CLIENT_HTTP, corpus, send_grpc, send_http
from streamserve_proto import service_pb2_grpc


@pytest.fixture(scope="module")
def cases(repository):
    return corpus(repository)


def test_corpus_is_large_and_covers_every_model(cases, repository):
    from serve.repository import ModelRepository

    requests = sum(c.over_http + c.over_grpc for c in cases)
    assert requests >= 200, requests
    assert {c.model for c in cases} == {spec.name for spec in ModelRepository(repository)}


def test_every_malformed_request_is_a_client_error(server, cases):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc))
    wrong = []
    for case in cases:
        if case.over_http:
            status, text = send_http(server.http, case)
            if status not in CLIENT_HTTP or "internal error" in text or not text:
                wrong.append((case.id, "http", status, text[:160]))
        if case.over_grpc:
            code, text = send_grpc(stub, case)
            if code not in CLIENT_GRPC or "internal error" in text or not text:
                wrong.append((case.id, "grpc", code.name, text[:160]))
    assert not wrong, "\n".join(map(str, wrong))


def test_server_is_healthy_after_the_corpus(server):
    client = httpclient.InferenceServerClient(server.http)
    assert client.is_server_ready()
    a = np.ones((1, 16), np.int32)
    inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(a)
    assert client.infer("simple", inputs).as_numpy("OUTPUT0").tolist() == (2 * a).tolist()
    client.close()
