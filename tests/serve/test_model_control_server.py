"""Triton's model repository extension on the session server (serve/model_control.py), called by tritonclient over HTTP
and gRPC: a folder copied into the running server's repository is listed, loaded, served, unloaded and loaded again;
`simple` is unloaded and loaded while other models serve; a broken config, a config override and uploaded files are
refused; a model that needs a deployment of its own. Every folder a test adds is removed again (other test modules
read the index), and every model it unloads is loaded again."""
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

EXAMPLES = Path(__file__).parent / "triton_examples"


def simple_inputs(module, value=1):
    tensors = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in tensors:
        tensor.set_data_from_numpy(np.full((1, 16), value, np.int32))
    return tensors


def index(http) -> dict:
    return {(m["name"], m.get("version")): (m["state"], m.get("reason", "")) for m in http.get_model_repository_index()}


@pytest.fixture()
def added(server):
    """Copy model folders into the running server's repository; unloaded and removed afterwards."""
    names = []

    def add(source: str, name: str, edit=lambda text: text) -> Path:
        folder = server.repository / name
        shutil.copytree(server.repository / source, folder)
        config = folder / "config.pbtxt"
        config.write_text(edit(config.read_text().replace(f'"{source}"', f'"{name}"')))
        names.append(name)
        return folder

    yield add
    client = httpclient.InferenceServerClient(server.http)
    for name in names:
        client.unload_model(name)
        shutil.rmtree(server.repository / name)
    client.close()


def test_a_folder_added_while_serving_is_listed_loaded_served_unloaded_and_loaded_again(http, grpc, added):
    added("simple", "simple_live")
    state, reason = index(http)[("simple_live", None)]
    assert state == "UNAVAILABLE" and "not loaded" in reason
    assert not http.is_model_ready("simple_live")
    started = time.perf_counter()
    http.load_model("simple_live")
    print(f"load of a simple copy: {time.perf_counter() - started:.2f} s")
    assert http.is_model_ready("simple_live") and grpc.is_model_ready("simple_live")
    assert index(http)[("simple_live", "1")] == ("READY", "")
    for client, module in ((http, httpclient), (grpc, grpcclient)):
        result = client.infer("simple_live", simple_inputs(module, 3))
        assert (result.as_numpy("OUTPUT0") == 6).all()

    grpc.unload_model("simple_live")
    assert not http.is_model_ready("simple_live")
    with pytest.raises(InferenceServerException, match="'simple_live' version 1 is unavailable: unloaded at") as caught:
        http.infer("simple_live", simple_inputs(httpclient))
    assert caught.value.status() == "503"
    with pytest.raises(InferenceServerException, match="unloaded") as caught:
        grpc.infer("simple_live", simple_inputs(grpcclient))
    assert caught.value.status() == "StatusCode.UNAVAILABLE"
    entry = next(m for m in grpc.get_model_repository_index().models if m.name == "simple_live")
    assert entry.state == "UNAVAILABLE" and entry.reason.startswith("unloaded at")

    grpc.load_model("simple_live")
    assert (http.infer("simple_live", simple_inputs(httpclient, 2)).as_numpy("OUTPUT1") == 0).all()


def test_unloading_and_loading_simple_leaves_the_other_models_serving(server, http, grpc):
    """While `simple` goes out of service and comes back, digits_cnn is called over both protocols without a single
    failure, and calls to `simple` either succeed or are refused with UNAVAILABLE naming the unload: none hangs."""
    digits = np.zeros((1, 1, 8, 8), np.float32)
    failures, answered, simple_outcomes, stop = [], [], [], threading.Event()

    def other_models():
        clients = [(httpclient.InferenceServerClient(server.http), httpclient), (grpcclient.InferenceServerClient(server.grpc), grpcclient)]
        while not stop.is_set():
            for client, module in clients:
                tensor = module.InferInput("image", list(digits.shape), "FP32")
                tensor.set_data_from_numpy(digits)
                try:
                    client.infer("digits_cnn", [tensor])
                    answered.append(1)
                except Exception as e:
                    failures.append(repr(e))

    def simple_calls():
        client = httpclient.InferenceServerClient(server.http, network_timeout=30)
        while not stop.is_set():
            try:
                client.infer("simple", simple_inputs(httpclient))
                simple_outcomes.append("ok")
            except InferenceServerException as e:
                simple_outcomes.append(e.status() + (" unloaded" if "unloaded" in e.message() else " " + e.message()))

    threads = [threading.Thread(target=other_models), threading.Thread(target=simple_calls)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        http.unload_model("simple")
        time.sleep(0.5)
        assert not grpc.is_model_ready("simple")
        grpc.load_model("simple")
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        http.load_model("simple")  # serving again whatever happened
    assert not any(thread.is_alive() for thread in threads), "a call hung"
    assert not failures and answered, failures[:3]
    assert set(simple_outcomes) <= {"ok", "503 unloaded"} and "503 unloaded" in simple_outcomes, set(simple_outcomes)
    assert simple_outcomes[-1] == "ok"
    assert http.is_server_ready()


def test_a_broken_config_is_refused_naming_the_file_and_the_field(http, grpc, added):
    added("simple", "broken_live", lambda text: text.replace("max_batch_size: 8", "max_batch_sizes: 8"))
    with pytest.raises(InferenceServerException, match=r"failed to load 'broken_live': .*broken_live/config.pbtxt.*max_batch_sizes") as caught:
        http.load_model("broken_live")
    assert caught.value.status() == "400"
    with pytest.raises(InferenceServerException, match="max_batch_sizes") as caught:
        grpc.load_model("broken_live")
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    state, reason = index(http)[("broken_live", None)]
    assert state == "UNAVAILABLE" and "max_batch_sizes" in reason


def test_a_config_override_beyond_batching_or_uploaded_files_are_refused(server, http, grpc):
    with pytest.raises(InferenceServerException, match=r"config fields \['backend'\] cannot be overridden") as caught:
        http.load_model("simple", config='{"backend": "python", "max_batch_size": 16}')
    assert caught.value.status() == "400"
    with pytest.raises(InferenceServerException, match="parameter 'file:1/model.onnx' is refused") as caught:
        grpc.load_model("simple", config="{}", files={"file:1/model.onnx": b"\x08\x07"})
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    # tritonclient's HTTP client cannot send files (it JSON-encodes bytes): the request it means, by hand
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://{server.http}/v2/repository/models/simple/load",
                                     b'{"parameters": {"file:1/model.onnx": "CAc="}}', {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 400 and b"is refused" in caught.value.read()
    assert http.get_model_config("simple")["max_batch_size"] == 8


def test_a_model_in_its_own_deployment(http, grpc, added):
    """countdown_job runs in the jobs pool: unloaded, it is no longer routed to; loaded, routed to again. A copy of a
    dedicated model would need a deployment that does not exist: refused, naming the restart."""
    added("slow_identity_dedicated", "dedicated_live")
    with pytest.raises(InferenceServerException, match="needs a deployment of its own.*restart"):
        grpc.load_model("dedicated_live")
    steps = grpcclient.InferInput("STEPS", [1], "INT32")
    steps.set_data_from_numpy(np.array([1], np.int32))
    try:
        http.unload_model("countdown_job")
        assert not grpc.is_model_ready("countdown_job")
        with pytest.raises(InferenceServerException, match="unloaded") as caught:
            grpc.infer("countdown_job", [steps])
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
    finally:
        http.load_model("countdown_job")
    assert grpc.is_model_ready("countdown_job")
    assert grpc.infer("countdown_job", [steps]).as_numpy("RESULT")[0] == b"done after 1 steps"


@pytest.mark.parametrize("example, port, output", [
    ("simple_http_model_control", "http", ""),
    ("simple_grpc_model_control", "grpc", "FAILED : Repository Index"),
])
def test_triton_model_control_clients_stop_at_their_repository_size_check(server, example, port, output):
    """Triton's own clients, unchanged (tests/serve/triton_examples/README.md): each first checks that the index lists
    Triton's example repository (7 models for the HTTP one, 8 for gRPC) and exits 1 otherwise; this repository holds
    more. test_the_calls_of_triton_model_control_clients makes the calls that follow."""
    result = subprocess.run([sys.executable, str(EXAMPLES / f"{example}.py"), "-u", getattr(server, port)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout.strip() == output and not result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_calls_of_triton_model_control_clients(http, grpc, protocol):
    """What simple_{http,grpc}_model_control.py do after the size check, with their checks: load, a malformed config
    override refused, a config override that changes max_batch_size from 8 to 16, unload, an unknown model."""
    client = http if protocol == "http" else grpc
    client.load_model("simple")
    assert client.is_model_ready("simple")
    with pytest.raises(InferenceServerException, match="failed to load"):  # the clients' "wrong format" config
        client.load_model("simple", config='"parameters": {"config": {{"max_batch_size": "16"}}}')
    client.load_model("simple", config='{"max_batch_size":"16"}')
    config = client.get_model_config("simple")
    assert (config["max_batch_size"] if protocol == "http" else config.config.max_batch_size) == 16
    rows = np.ones((12, 16), np.int32)  # 12 rows: over the folder's max_batch_size of 8, within the override's 16
    inputs = [(httpclient if protocol == "http" else grpcclient).InferInput(n, [12, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(rows)
    np.testing.assert_array_equal(client.infer("simple", inputs).as_numpy("OUTPUT0"), 2 * rows)
    with pytest.raises(InferenceServerException, match=r"config fields \['parameters'\] cannot be overridden"):
        client.load_model("simple", config='{"parameters": {"handler": {"string_value": "models.x:Y"}}}')
    try:
        client.unload_model("simple")
        assert not client.is_model_ready("simple")
        with pytest.raises(InferenceServerException, match="failed to load"):
            client.load_model("wrong_model_name")
    finally:
        client.load_model("simple")
    assert client.is_model_ready("simple")
