"""Security on the real server: what listens where, gRPC from other hosts, and a second server with a
bearer token and TLS on both protocols (a self-signed pair made here)."""
import json
import ssl
import urllib.error
import urllib.request

import grpc as grpclib
import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from models.examples.export import build as build_examples
from serve.testing import self_signed_pair, start_server, stop_server
from streamserve_proto import service_pb2 as pb, service_pb2_grpc

LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
TOKEN = "test-token-3f9a"


def listeners(root_pid: int) -> list[tuple[str, int, str]]:
    root = psutil.Process(root_pid)
    names = {p.pid: p.name() for p in [root, *root.children(recursive=True)]}
    return [
        (c.laddr.ip, c.laddr.port, names[c.pid])
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in names
    ]


def non_loopback_address() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family.name == "AF_INET" and not a.address.startswith("127."):
                return a.address
    return None


def test_only_rays_internal_grpc_servers_listen_beyond_loopback(server):
    sockets = listeners(server.process.pid)
    ports = [int(a.rsplit(":", 1)[1]) for a in (server.http, server.metrics, server.grpc)]
    exposed = [(ip, port, name) for ip, port, name in sockets if ip not in LOOPBACK]
    # Each replica's inter-deployment gRPC server binds every interface (Ray offers no host option; its token guards it).
    assert all(name.startswith("ray::") for _, _, name in exposed), exposed
    for port in ports:  # HTTP, metrics, and the public gRPC port that the ingress serves itself: loopback only
        bound = [ip for ip, p, _ in sockets if p == port]
        assert bound and all(ip in LOOPBACK for ip in bound), (port, bound)


def test_the_grpc_port_is_closed_to_other_hosts_by_default(server):
    """Exposing it is STREAMSERVE_HTTP_HOST's choice; then callers from other hosts need the token
    (tests/serve/test_dataplane.py: test_authentication_rules)."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call from")
    port = server.grpc.rsplit(":", 1)[1]
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpclib.insecure_channel(f"{address}:{port}"))
    with pytest.raises(grpclib.RpcError) as caught:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="simple"), timeout=30)
    assert caught.value.code() == grpclib.StatusCode.UNAVAILABLE


# -- a second server: token + TLS ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secure")
    build_examples(folder / "repo")
    certfile, keyfile = self_signed_pair(folder)
    env = {"STREAMSERVE_AUTH_TOKEN": TOKEN, "STREAMSERVE_TLS_CERTFILE": str(certfile), "STREAMSERVE_TLS_KEYFILE": str(keyfile)}
    try:
        srv = start_server(folder / "repo", folder / "server", env, timeout_s=600)
    except RuntimeError as e:
        pytest.fail(str(e))
    srv.certfile = certfile
    yield srv
    assert stop_server(srv.process) == 0


def https(secure, path, body=None, token=None):
    context = ssl.create_default_context(cafile=str(secure.certfile))
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(f"https://{secure.http}{path}", body, headers)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


SIMPLE = json.dumps({"inputs": [{"name": n, "shape": [1, 16], "datatype": "INT32", "data": [2] * 16} for n in ("INPUT0", "INPUT1")]}).encode()


def test_https_needs_the_token_for_inference_and_metadata(secure):
    assert https(secure, "/v2/health/ready")[0] == 200  # probes stay open
    for path, body in (("/v2/models/simple", None), ("/v2/models/simple/infer", SIMPLE)):
        status, text = https(secure, path, body)
        assert status == 401 and b"bearer token" in text
        assert https(secure, path, body, token="wrong")[0] == 401
    status, text = https(secure, "/v2/models/simple/infer", SIMPLE, token=TOKEN)
    assert status == 200 and json.loads(text)["outputs"][0]["data"] == [4] * 16


def test_plain_http_is_not_served_on_the_tls_port(secure):
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://{secure.http}/v2/health/ready", timeout=10).read()


def simple_inputs():
    inputs = [grpcclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.full((1, 16), 3, np.int32))
    return inputs


def test_grpc_over_tls_with_the_token(secure):
    client = grpcclient.InferenceServerClient(secure.grpc.replace("127.0.0.1", "localhost"), ssl=True, root_certificates=str(secure.certfile))
    with pytest.raises(InferenceServerException, match="bearer token"):
        client.infer("simple", simple_inputs())
    result = client.infer("simple", simple_inputs(), headers={"authorization": f"Bearer {TOKEN}"})
    assert result.as_numpy("OUTPUT0").tolist() == [[6] * 16]
    client.close()


def test_grpc_stream_over_tls(secure):
    import queue

    client = grpcclient.InferenceServerClient(secure.grpc.replace("127.0.0.1", "localhost"), ssl=True, root_certificates=str(secure.certfile))
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)), headers={"authorization": f"Bearer {TOKEN}"})
    steps = grpcclient.InferInput("STEPS", [1], "INT32")
    steps.set_data_from_numpy(np.array([3], np.int32))
    client.async_stream_infer("countdown_job", [steps])
    answers = [got.get(timeout=30) for _ in range(4)]
    client.stop_stream()
    client.close()
    assert all(error is None for _, error in answers)
    assert answers[-1][0].as_numpy("RESULT")[0] == b"done after 3 steps"


def test_plaintext_grpc_is_refused_on_the_tls_port(secure):
    client = grpcclient.InferenceServerClient(secure.grpc)
    with pytest.raises(InferenceServerException):
        client.infer("simple", simple_inputs(), headers={"authorization": f"Bearer {TOKEN}"}, client_timeout=10)
    client.close()


def test_shared_memory_with_the_token(secure):
    """System shared memory over HTTPS and gRPC over TLS from this host with the token (the regions are the token's):
    the ingress's own gRPC server does TLS itself, so it sees that the caller is local."""
    import tritonclient.utils.shared_memory as shm

    key = f"/ss-secure-{secure.http.rsplit(':', 1)[1]}"
    handle = shm.create_shared_memory_region(key, key, 128)
    shm.set_shared_memory_region(handle, [np.full(16, 2, np.int32), np.full(16, 5, np.int32)])
    register = json.dumps({"key": key, "byte_size": 128}).encode()
    placed = {"inputs": [{"name": n, "shape": [1, 16], "datatype": "INT32",
                          "parameters": {"shared_memory_region": "in", "shared_memory_byte_size": 64, "shared_memory_offset": 64 * i}}
                         for i, n in enumerate(("INPUT0", "INPUT1"))]}
    try:
        assert https(secure, "/v2/systemsharedmemory/region/in/register", register)[0] == 401
        assert https(secure, "/v2/systemsharedmemory/region/in/register", register, token=TOKEN)[0] == 200
        status, text = https(secure, "/v2/models/simple/infer", json.dumps(placed).encode(), token=TOKEN)
        assert status == 200 and json.loads(text)["outputs"][0]["data"] == [7] * 16
        status, text = https(secure, "/v2/systemsharedmemory/status", token=TOKEN)
        assert status == 200 and json.loads(text) == [{"name": "in", "key": key, "offset": 0, "byte_size": 128}]
        client = grpcclient.InferenceServerClient(secure.grpc.replace("127.0.0.1", "localhost"), ssl=True, root_certificates=str(secure.certfile))
        status = client.get_system_shared_memory_status(headers={"authorization": f"Bearer {TOKEN}"}, as_json=True)
        assert [(r["name"], r["key"]) for r in status["regions"].values()] == [("in", key)]
        inputs = simple_inputs()
        for i, tensor in enumerate(inputs):
            tensor.set_shared_memory("in", 64, offset=64 * i)
        result = client.infer("simple", inputs, headers={"authorization": f"Bearer {TOKEN}"})
        assert result.as_numpy("OUTPUT0").tolist() == [[7] * 16]
        client.close()
        assert https(secure, "/v2/systemsharedmemory/unregister", b"", token=TOKEN)[0] == 200
        assert json.loads(https(secure, "/v2/systemsharedmemory/status", token=TOKEN)[1]) == []
    finally:
        shm.destroy_shared_memory_region(handle)
