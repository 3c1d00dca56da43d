"""The real server, called by unmodified tritonclient HTTP and gRPC clients."""
import json
import queue
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

from models.examples.heat1d import reference_step
from models.digits.data import load_splits
from loadtest.stream_latency import step_runtime
from serve.launcher import METRICS_REPORT_INTERVAL_MS


@pytest.fixture(scope="module")
def digits():
    return load_splits()["test"][0][:5]


def in_process(repository, model, version, feeds):
    session = ort.InferenceSession(str(repository / model / str(version) / "model.onnx"))
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def simple_inputs(module, a, b, binary=True):
    inputs = [module.InferInput("INPUT0", list(a.shape), "INT32"), module.InferInput("INPUT1", list(b.shape), "INT32")]
    for tensor, data in zip(inputs, (a, b)):
        if module is httpclient:
            tensor.set_data_from_numpy(data, binary_data=binary)
        else:
            tensor.set_data_from_numpy(data)
    return inputs


# -- health, metadata, config ------------------------------------------------------------------------
def test_the_console_shows_what_serves_processes_print(server):
    """Ray's log monitor copies each actor's output to the server's console (here its log file), new files included,
    from their first line: Serve's controller announces its settings when it starts."""
    deadline = time.monotonic() + 15
    while "(ServeController pid=" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    log = server.log.read_text()
    assert "(ServeController pid=" in log and "Throughput optimized Ray Serve enabled" in log, log[-2000:]


def test_health_and_server_metadata(http, grpc):
    assert http.is_server_live() and http.is_server_ready()
    assert grpc.is_server_live() and grpc.is_server_ready()
    assert http.get_server_metadata()["name"] == "streamserve"
    assert "binary_tensor_data" in grpc.get_server_metadata().extensions


def test_model_metadata_and_config(http, grpc):
    meta = http.get_model_metadata("simple")
    assert meta["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]}
    assert grpc.get_model_metadata("digits_cnn").versions == ["1", "2"]
    config = http.get_model_config("simple")
    assert config["max_batch_size"] == 8 and config["input"][1]["name"] == "INPUT1"
    assert grpc.get_model_config("digits_cnn", model_version="1").config.dynamic_batching.max_queue_delay_microseconds == 5000
    assert http.is_model_ready("digits_cnn", "1") and grpc.is_model_ready("heat1d")
    index = {(m["name"], m["version"]) for m in http.get_model_repository_index()}
    assert ("digits_cnn", "2") in index and ("simple", "1") in index


# -- inference ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("binary", [True, False])
def test_simple_over_http(http, binary):
    a, b = np.arange(32, dtype=np.int32).reshape(2, 16), np.full((2, 16), 3, np.int32)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")]
    result = http.infer("simple", simple_inputs(httpclient, a, b, binary), outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    wire = result.get_response()["outputs"][0]
    assert ("binary_data_size" in wire.get("parameters", {})) == binary and ("data" in wire) != binary


def test_binary_outputs_on_the_wire(server):
    """tritonclient accepts JSON outputs silently, so look at the bytes: binary asked, binary sent."""
    header = json.dumps({
        "inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
                   {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}}],
        "parameters": {"binary_data_output": True},
    }).encode()
    body = header + np.ones(16, "<i4").tobytes()
    request = urllib.request.Request(f"http://{server.http}/v2/models/simple/infer", body, {"Inference-Header-Content-Length": str(len(header))})
    with urllib.request.urlopen(request) as response:
        length = int(response.headers["Inference-Header-Content-Length"])
        raw = response.read()
    document = json.loads(raw[:length])
    assert [o["parameters"]["binary_data_size"] for o in document["outputs"]] == [64, 64]
    np.testing.assert_array_equal(np.frombuffer(raw[length : length + 64], "<i4"), np.arange(16) + 1)


def test_digits_match_in_process_model_over_both_protocols(server, http, grpc, digits):
    expected = in_process(server.repository, "digits_cnn", 2, {"image": digits})
    h = httpclient.InferInput("image", list(digits.shape), "FP32")
    h.set_data_from_numpy(digits)
    g = grpcclient.InferInput("image", list(digits.shape), "FP32")
    g.set_data_from_numpy(digits)
    for result in (http.infer("digits_cnn", [h]), grpc.infer("digits_cnn", [g])):
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])


def test_versions_are_addressable(server, grpc, digits):
    g = grpcclient.InferInput("image", list(digits.shape), "FP32")
    g.set_data_from_numpy(digits)
    latest = grpc.infer("digits_cnn", [g])
    assert latest.get_response().model_version == "2"
    first = grpc.infer("digits_cnn", [g], model_version="1")
    assert first.get_response().model_version == "1"
    expected = in_process(server.repository, "digits_cnn", 1, {"image": digits})
    np.testing.assert_allclose(first.as_numpy("probabilities"), expected["probabilities"], rtol=1e-5, atol=1e-6)


def test_torchscript_runtime_agrees_with_onnx(grpc, digits):
    g = grpcclient.InferInput("image", list(digits.shape), "FP32")
    g.set_data_from_numpy(digits)
    onnx_result = grpc.infer("digits_cnn", [g], model_version="2")
    ts_result = grpc.infer("digits_cnn_torchscript", [g])
    np.testing.assert_allclose(ts_result.as_numpy("probabilities"), onnx_result.as_numpy("probabilities"), atol=1e-5)


def test_typed_grpc_contents_are_accepted(server):
    """Inputs in `contents.int_contents` instead of raw bytes (other v2 gRPC clients send these)."""
    from streamserve_proto import service_pb2, service_pb2_grpc
    import grpc as grpclib

    request = service_pb2.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        tensor = request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        tensor.contents.int_contents.extend(range(16))
    with grpclib.insecure_channel(server.grpc) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert np.frombuffer(response.raw_output_contents[0], "<i4").tolist() == [2 * i for i in range(16)]


def test_application_metadata_key_is_optional(server):
    with_key = grpcclient.InferenceServerClient(server.grpc)
    a = np.ones((1, 16), np.int32)
    result = with_key.infer("simple", simple_inputs(grpcclient, a, a), headers={"application": "streamserve"})
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * a)
    with_key.close()


# -- streaming ---------------------------------------------------------------------------------------
def collect_stream(server, requests, timeout_s=30.0, expected=None):
    client = grpcclient.InferenceServerClient(server.grpc)
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    for model, inputs, request_id in requests:
        client.async_stream_infer(model, inputs, request_id=request_id)
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        try:
            got.append(results.get(timeout=1))
        except queue.Empty:
            pass
    client.stop_stream()
    client.close()
    return got


def heat_inputs(u, steps, module=grpcclient):
    state = module.InferInput("U", list(u.shape), "FP32")
    state.set_data_from_numpy(u)
    count = module.InferInput("STEPS", [u.shape[0], 1], "INT32")
    count.set_data_from_numpy(np.full((u.shape[0], 1), steps, np.int32))
    return [state, count]


def reference_rollout(u, steps):
    frames = []
    for _ in range(steps):
        u = reference_step(u)
        frames.append(u)
    return np.stack(frames, axis=1)  # [rows, steps, points]


def test_stream_rollout_equals_reference_solver(server):
    u = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    got = collect_stream(server, [("heat1d", heat_inputs(u, 6), "roll")], expected=6)
    assert all(error is None for _, error in got)
    steps = [r.get_response().parameters["rollout_step"].int64_param for r, _ in got]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert got[-1][0].get_response().parameters["triton_final_response"].bool_param
    expected = u
    for result, _ in got:
        expected = reference_step(expected)
        np.testing.assert_allclose(result.as_numpy("U_NEXT"), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[-1][0].as_numpy("U_NEXT").sum(axis=1), u.sum(axis=1), rtol=1e-5)


def ensemble_inputs(u, steps, members, seed=0):
    inputs = heat_inputs(u, steps)
    for name, value, datatype, dtype in (("ENSEMBLE_MEMBERS", members, "INT32", np.int32), ("ENSEMBLE_SEED", seed, "INT64", np.int64)):
        tensor = grpcclient.InferInput(name, [1, 1], datatype)
        tensor.set_data_from_numpy(np.full((1, 1), value, dtype))
        inputs.append(tensor)
    return inputs


def test_ensemble_streams_mean_and_spread_per_step(server):
    u = np.random.default_rng(3).random((1, 32), dtype=np.float32)
    got = collect_stream(server, [("heat1d", ensemble_inputs(u, 5, members=24), "ens")], expected=5)
    assert [e for _, e in got] == [None] * 5
    means = [r.as_numpy("U_NEXT_MEAN") for r, _ in got]
    spreads = [r.as_numpy("U_NEXT_SPREAD") for r, _ in got]
    assert means[0].shape == spreads[0].shape == (1, 32) and got[0][0].as_numpy("U_NEXT") is None
    # The heat equation is linear and conserves mass: the mean conserves it too, and diffusion damps the spread.
    np.testing.assert_allclose([m.sum() for m in means], means[0].sum(), rtol=1e-4)
    assert all(float(a.mean()) > float(b.mean()) > 0 for a, b in zip(spreads, spreads[1:]))


def test_stream_errors_stay_in_the_stream(server, digits):
    image = grpcclient.InferInput("image", list(digits.shape), "FP32")
    image.set_data_from_numpy(digits)
    a = np.ones((1, 16), np.int32)
    got = collect_stream(
        server,
        [("simple", [image], "bad"), ("simple", simple_inputs(grpcclient, a, a), "good"), ("nope", [image], "unknown")],
        expected=3,
    )
    errors = [str(e) for _, e in got if e is not None]
    assert len(got) == 3 and len(errors) == 2
    assert any("unexpected input(s) ['image']" in e for e in errors) and any("unknown model 'nope'" in e for e in errors)
    ok = [r for r, e in got if e is None]
    np.testing.assert_array_equal(ok[0].as_numpy("OUTPUT0"), 2 * a)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unary_call_returns_the_whole_rollout(http, grpc, protocol):
    u = np.random.default_rng(1).random((2, 16), dtype=np.float32)
    client, module = (http, httpclient) if protocol == "http" else (grpc, grpcclient)
    result = client.infer("heat1d", heat_inputs(u, 7, module))
    np.testing.assert_allclose(result.as_numpy("U_NEXT"), reference_rollout(u, 7), rtol=1e-5, atol=1e-6)


def sse_events(server, body: dict, read_timeout=30):
    """(arrival time, event name, payload) for each server-sent event of a generate_stream call."""
    request = urllib.request.Request(f"http://{server.http}/v2/models/heat1d/generate_stream", json.dumps(body).encode(), {"Content-Type": "application/json"})
    events, name, started = [], "message", time.perf_counter()
    with urllib.request.urlopen(request, timeout=read_timeout) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((time.perf_counter() - started, name, json.loads(line[5:])))
                name = "message"
    return events


def heat_body(u, steps):
    return {"inputs": [
        {"name": "U", "shape": list(u.shape), "datatype": "FP32", "data": u.ravel().tolist()},
        {"name": "STEPS", "shape": [u.shape[0], 1], "datatype": "INT32", "data": [steps] * u.shape[0]},
    ]}


def test_http_event_stream_sends_each_step_in_order(server):
    u = np.random.default_rng(2).random((1, 4096), dtype=np.float32)
    events = sse_events(server, heat_body(u, 40))
    assert [e[1] for e in events] == ["message"] * 40
    assert [e[2]["parameters"]["rollout_step"] for e in events] == list(range(1, 41))
    expected = reference_rollout(u, 40)
    for step, (_, _, document) in enumerate(events):
        got = np.array(document["outputs"][0]["data"], np.float32).reshape(document["outputs"][0]["shape"])
        np.testing.assert_allclose(got, expected[:, step], rtol=1e-4, atol=1e-5)
    arrivals = [t for t, _, _ in events]
    assert arrivals[-1] - arrivals[0] > 0.01, "all steps arrived together: not streamed"


def test_http_event_stream_carries_an_ensemble(server):
    u = np.random.default_rng(4).random((1, 64), dtype=np.float32)
    body = heat_body(u, 3)
    body["inputs"].append({"name": "ENSEMBLE_MEMBERS", "shape": [1, 1], "datatype": "INT32", "data": [16]})
    events = sse_events(server, body)
    assert [e[2]["parameters"]["rollout_step"] for e in events] == [1, 2, 3]
    for _, _, document in events:
        assert sorted(o["name"] for o in document["outputs"]) == ["U_NEXT_MEAN", "U_NEXT_SPREAD"]
    spread = {o["name"]: o for o in events[0][2]["outputs"]}["U_NEXT_SPREAD"]
    assert spread["shape"] == [1, 64] and max(spread["data"]) > 0
    body["inputs"][-1]["data"] = [1000]
    request = urllib.request.Request(f"http://{server.http}/v2/models/heat1d/generate_stream", json.dumps(body).encode())
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400 and "ENSEMBLE_MEMBERS" in json.loads(caught.value.read())["error"]


def test_http_event_stream_rejects_bad_input_before_streaming(server):
    body = heat_body(np.zeros((1, 8), np.float32), 0)
    request = urllib.request.Request(f"http://{server.http}/v2/models/heat1d/generate_stream", json.dumps(body).encode())
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400 and "between 1 and 1000" in json.loads(caught.value.read())["error"]


def metric_samples(server, name):
    """The scraped samples named `name` (a histogram's series: `<name>_bucket`, `_sum`, `_count`), whatever their family."""
    return [s for family in text_string_to_metric_families(server.metrics_text()) for s in family.samples if s.name == name]


def metric_total(server, histogram, model, suffix="_count"):
    return sum(s.value for s in metric_samples(server, histogram + suffix) if s.labels.get("model") == model)


def test_cancelled_stream_stops_the_rollout(server):
    """A client that leaves mid-rollout frees the replica: the step count stops well short of 1000."""
    before = metric_total(server, "ray_streamserve_compute_time_ms", "heat1d")
    client = grpcclient.InferenceServerClient(server.grpc)
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put(error))
    client.async_stream_infer("heat1d", heat_inputs(np.ones((1, 20000), np.float32), 1000))
    for _ in range(5):
        assert got.get(timeout=30) is None
    client.stop_stream(cancel_requests=True)
    client.close()
    # Settled: the count unchanged for longer than Ray's metrics report interval (a step still running would show).
    quiet_s = METRICS_REPORT_INTERVAL_MS / 1000 + 2
    settled, since, deadline = None, time.monotonic(), time.monotonic() + 60
    while time.monotonic() < deadline:
        count = metric_total(server, "ray_streamserve_compute_time_ms", "heat1d")
        if count != settled:
            settled, since = count, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the step count kept changing for 60 s after the client left (last {settled - before})")
    assert settled - before < 900, f"{settled - before} steps ran for a stream cancelled after 5"


def test_concurrent_rollouts_are_batched_step_by_step(server):
    """Four rollouts sent at once share batches. A rollout alone on its model runs its steps back to back, so the four
    start together (a barrier) and are long enough (200 steps, paced by their clients) to overlap on a loaded machine."""
    before = batch_histogram(server, "heat1d")
    u = np.random.default_rng(3).random((1, 64), dtype=np.float32)
    results, start = [], threading.Barrier(4)
    steps = 200

    def one(k):
        start.wait()
        results.append((k, collect_stream(server, [("heat1d", heat_inputs(u + k, steps), f"r{k}")], timeout_s=60, expected=steps)))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for k, got in results:
        assert len(got) == steps and all(e is None for _, e in got)
        np.testing.assert_allclose(got[-1][0].as_numpy("U_NEXT"), reference_rollout(u + k, steps)[:, -1], rtol=1e-4, atol=1e-5)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = batch_histogram(server, "heat1d")
        multi = (after.get(float("inf"), 0) - after.get(1.0, 0)) - (before.get(float("inf"), 0) - before.get(1.0, 0))
        if multi > 0:
            break
        time.sleep(1)
    assert multi > 0, "no step of the four rollouts shared a batch"


# -- batching and metrics ----------------------------------------------------------------------------
def batch_histogram(server, model):
    buckets = {}
    for sample in metric_samples(server, "ray_streamserve_batch_size_bucket"):
        if sample.labels.get("model") == model:
            le = float(sample.labels["le"])
            buckets[le] = buckets.get(le, 0) + sample.value
    return buckets


def test_sixteen_clients_are_batched_and_each_gets_its_own_answer(server):
    clients, per_client, errors = 16, 25, []
    barrier = threading.Barrier(clients)

    def worker(k):
        client = httpclient.InferenceServerClient(server.http)
        barrier.wait()
        for i in range(per_client):
            a = np.full((1, 16), 1000 * k + i, np.int32)
            b = np.arange(16, dtype=np.int32)[None]
            result = client.infer("simple", simple_inputs(httpclient, a, b))
            if not np.array_equal(result.as_numpy("OUTPUT0"), a + b) or not np.array_equal(result.as_numpy("OUTPUT1"), a - b):
                errors.append((k, i))
        client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    deadline = time.monotonic() + 30  # Ray's metrics agent reports every couple of seconds
    while time.monotonic() < deadline:
        buckets = batch_histogram(server, "simple")
        if buckets and buckets[float("inf")] - buckets[1.0] > 0:
            break
        time.sleep(1)
    assert buckets, "no batch-size histogram for 'simple' in the metrics scrape"
    assert buckets[float("inf")] - buckets[1.0] > 0, f"no batch larger than 1: {buckets}"


def test_metrics_scrape_has_our_families_beside_serves(server):
    names = {s.name for family in text_string_to_metric_families(server.metrics_text()) for s in family.samples}
    for histogram in ("ray_streamserve_request_latency_ms", "ray_streamserve_queue_time_ms",
                      "ray_streamserve_compute_time_ms", "ray_streamserve_batch_size", "ray_streamserve_stage_time_ms"):
        for suffix in ("_bucket", "_sum", "_count"):
            assert histogram + suffix in names, histogram + suffix
    for ours in ("ray_streamserve_requests_total", "ray_streamserve_in_flight_requests"):
        assert ours in names, ours
    assert any(name.startswith("ray_serve_") for name in names)


# -- research endpoints served by the core ------------------------------------------------------------
def test_shortcut_audit_matches_in_process_model(server, grpc):
    images = np.random.default_rng(4).random((5, 3, 8, 8), dtype=np.float32)
    tensor = grpcclient.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    result = grpc.infer("shortcut_audit", [tensor])
    expected = in_process(server.repository, "shortcut_audit", 1, {"image": images})
    for name in ("core_probability", "shortcut_probability"):
        np.testing.assert_allclose(result.as_numpy(name), expected[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("disagree"), expected["disagree"])
    assert not result.as_numpy("shortcut_only").any()  # no labels sent: nothing can be flagged

    labels = np.array([[0], [1], [0], [1], [1]], np.int64)
    label = grpcclient.InferInput("label", [5, 1], "INT64")
    label.set_data_from_numpy(labels)
    labelled = grpc.infer("shortcut_audit", [tensor, label])
    core_right = (labelled.as_numpy("core_probability") > 0.5) == (labels == 1)
    shortcut_right = (labelled.as_numpy("shortcut_probability") > 0.5) == (labels == 1)
    np.testing.assert_array_equal(labelled.as_numpy("shortcut_only"), ~core_right & shortcut_right)


def test_caption_match_tokenises_text_in_the_graph(server, http):
    images = np.random.default_rng(5).random((2, 3, 16, 16), dtype=np.float32)
    captions = np.array([[b"a small thick red seven slanted left"], [b"a large thin green one upright"]], dtype=object)
    image = httpclient.InferInput("image", list(images.shape), "FP32")
    image.set_data_from_numpy(images)
    text = httpclient.InferInput("text", [2, 1], "BYTES")
    text.set_data_from_numpy(captions)
    result = http.infer("caption_match", [image, text])
    expected = in_process(server.repository, "caption_match", 1, {"image": images, "text": captions.astype(str).astype(object)})
    np.testing.assert_allclose(result.as_numpy("similarity"), expected["similarity"], rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(result.as_numpy("similarity")) <= 1.0001)


def in_process_rollout(repository, model, window, steps):
    """The served model file stepped in this process through its own runtime (TorchScript for kno_*)."""
    runtime = step_runtime(repository, model)
    frames = []
    for _ in range(steps):
        out = runtime.infer({"WINDOW": window})
        frames.append(out["FRAMES"])
        window = out["WINDOW_NEXT"]
    return frames


def test_kno_burgers_streams_the_in_process_rollout(server):
    x = np.linspace(0, 1, 64, endpoint=False, dtype=np.float32)
    window = np.stack([np.sin(2 * np.pi * x) * np.exp(-0.1 * t) for t in range(10)])[None].astype(np.float32)
    state = grpcclient.InferInput("WINDOW", list(window.shape), "FP32")
    state.set_data_from_numpy(window)
    count = grpcclient.InferInput("STEPS", [1, 1], "INT32")
    count.set_data_from_numpy(np.array([[5]], np.int32))
    got = collect_stream(server, [("kno_burgers", [state, count], "kno")], expected=5)
    assert [e for _, e in got] == [None] * 5
    expected = in_process_rollout(server.repository, "kno_burgers", window, 5)
    for (result, _), frames in zip(got, expected):
        np.testing.assert_allclose(result.as_numpy("FRAMES"), frames, rtol=1e-4, atol=1e-5)


def test_kno_ns2d_over_server_sent_events(server):
    window = np.random.default_rng(6).standard_normal((1, 10, 32, 32)).astype(np.float32) * 0.2
    body = {"inputs": [
        {"name": "WINDOW", "shape": list(window.shape), "datatype": "FP32", "data": window.ravel().tolist()},
        {"name": "STEPS", "shape": [1, 1], "datatype": "INT32", "data": [3]},
    ], "outputs": [{"name": "FRAMES"}]}
    request = urllib.request.Request(f"http://{server.http}/v2/models/kno_ns2d/generate_stream", json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        events = [json.loads(line[5:]) for line in (raw.decode() for raw in response) if line.startswith("data:")]
    assert [e["parameters"]["rollout_step"] for e in events] == [1, 2, 3]
    assert [o["name"] for o in events[0]["outputs"]] == ["FRAMES"]
    expected = in_process_rollout(server.repository, "kno_ns2d", window, 3)
    for event, frames in zip(events, expected):
        got = np.array(event["outputs"][0]["data"], np.float32).reshape(event["outputs"][0]["shape"])
        np.testing.assert_allclose(got, frames, rtol=1e-4, atol=1e-5)
