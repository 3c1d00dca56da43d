"""Model load and unload with two ingress replicas and a token: a server of its own (direct ingress: each replica listens
on its own HTTP port, and both on the one gRPC port, where the kernel hands each new connection to one of them) serving
`simple`. A call to one replica is applied there at once and by the other within its poll of the shared state
(serve/model_control.py); load, unload and the index need the token on both protocols."""
import shutil
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serve.model_control import POLL_S
from serve.testing import start_server, stop_server

TOKEN = "model-control-test-token"



def auth() -> dict:
    """The token header, a new dict per call: tritonclient's HTTP infer adds its own headers to the one it is given."""
    return {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def replicas(repository, tmp_path_factory):
    root = tmp_path_factory.mktemp("control_replicas") / "model_repository"
    shutil.copytree(repository / "simple", root / "simple")
    env = {"STREAMSERVE_INGRESS_REPLICAS": "2", "STREAMSERVE_INGRESS_NUM_CPUS": "0.1", "STREAMSERVE_AUTH_TOKEN": TOKEN}
    try:
        srv = start_server(root, tmp_path_factory.mktemp("control_replicas_server"), env, timeout_s=420)
    except RuntimeError as e:
        pytest.fail(str(e))

    host, port = srv.http.rsplit(":", 1)  # Serve gives each ingress replica an HTTP port of the range
    https = [httpclient.InferenceServerClient(f"{host}:{int(port) + i}") for i in range(2)]
    yield root, https, srv.grpc
    for client in https:
        client.close()
    assert stop_server(srv.process) == 0, srv.log.read_text()[-2000:]


def simple_inputs(module):
    tensors = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in tensors:
        tensor.set_data_from_numpy(np.ones((1, 16), np.int32))
    return tensors


def wait_for(condition, what: str, limit_s: float = 10 * POLL_S + 5) -> float:
    started = time.perf_counter()
    while not condition():
        assert time.perf_counter() - started < limit_s, f"{what}: not within {limit_s:.1f} s"
        time.sleep(0.05)
    return time.perf_counter() - started


def ready(client, model: str) -> bool:
    try:
        return client.is_model_ready(model, headers=auth())
    except InferenceServerException:  # a model this replica does not know yet may be answered NOT_FOUND
        return False


def test_load_unload_and_index_need_the_token_on_both_protocols(replicas):
    _, https, grpc_address = replicas
    for http in https:
        for call in (lambda: http.load_model("simple"), lambda: http.unload_model("simple"), http.get_model_repository_index,
                     lambda: http.unload_model("simple", headers={"authorization": "Bearer wrong"})):
            with pytest.raises(InferenceServerException) as caught:
                call()
            assert caught.value.status() == "401"
        assert http.is_model_ready("simple", headers=auth())
    for _ in range(4):  # a new connection each time: either replica may answer
        grpc = grpcclient.InferenceServerClient(grpc_address)
        for call in (lambda: grpc.load_model("simple"), lambda: grpc.unload_model("simple"), grpc.get_model_repository_index):
            with pytest.raises(InferenceServerException) as caught:
                call()
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
        assert grpc.is_model_ready("simple", headers=auth())
        grpc.close()


def test_every_replica_converges_on_the_last_call(replicas):
    root, (http_a, http_b), grpc_address = replicas
    grpc = grpcclient.InferenceServerClient(grpc_address)  # one connection: one replica, a or b
    shutil.copytree(root / "simple", root / "simple_live")
    config = root / "simple_live" / "config.pbtxt"
    config.write_text(config.read_text().replace('"simple"', '"simple_live"'))
    try:
        http_a.load_model("simple_live", headers=auth())
        assert http_a.is_model_ready("simple_live", headers=auth())  # at once where the call landed
        lag = wait_for(lambda: ready(http_b, "simple_live"), "replica b loads simple_live")
        print(f"\nload seen by the other replica after {lag:.2f} s")
        assert (http_b.infer("simple_live", simple_inputs(httpclient), headers=auth()).as_numpy("OUTPUT0") == 2).all()
        assert (grpc.infer("simple_live", simple_inputs(grpcclient), headers=auth()).as_numpy("OUTPUT0") == 2).all()

        grpc.unload_model("simple_live", headers=auth())
        assert not grpc.is_model_ready("simple_live", headers=auth())  # at once where the call landed
        for name, http in (("a", http_a), ("b", http_b)):
            lag = wait_for(lambda: not http.is_model_ready("simple_live", headers=auth()), f"replica {name} unloads simple_live")
            print(f"unload seen by replica {name} after {lag:.2f} s")
            with pytest.raises(InferenceServerException, match="unloaded") as caught:
                http.infer("simple_live", simple_inputs(httpclient), headers=auth())
            assert caught.value.status() == "503"

        config.write_text(config.read_text().replace("max_batch_size: 8", "max_batch_size: 16"))
        grpc.load_model("simple_live", headers=auth())  # a reload with a changed config
        wait_for(lambda: http_b.is_model_ready("simple_live", headers=auth())
                 and http_b.get_model_config("simple_live", headers=auth())["max_batch_size"] == 16, "replica b reloads")
        wait_for(lambda: http_a.is_model_ready("simple_live", headers=auth())
                 and http_a.get_model_config("simple_live", headers=auth())["max_batch_size"] == 16, "replica a reloads")

        def states(http):
            return [(m["name"], m.get("version"), m["state"]) for m in http.get_model_repository_index(headers=auth())]

        assert states(http_a) == states(http_b) == [("simple", "1", "READY"), ("simple_live", "1", "READY")]
    finally:
        http_a.unload_model("simple_live", headers=auth())
        wait_for(lambda: not http_b.is_model_ready("simple_live", headers=auth()), "replica b unloads simple_live")
        shutil.rmtree(root / "simple_live")
        grpc.close()
