"""Python-backend handlers on the real server: preprocessing errors raised in a replica, Triton's sequence
parameters from tritonclient over both protocols, a decoupled job streamed over gRPC and HTTP, telemetry."""
import json
import queue
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException


def tensor(module, name, array, datatype):
    t = module.InferInput(name, list(array.shape), datatype)
    t.set_data_from_numpy(array)
    return t


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_preprocessing_in_the_replica(http, grpc, protocol):
    client, module = (http, httpclient) if protocol == "http" else (grpc, grpcclient)
    data = np.array([[b"abc"], [b"four"]], dtype=object)
    result = client.infer("byte_length", [tensor(module, "DATA", data, "BYTES")])
    assert result.as_numpy("LENGTH").tolist() == [[3], [4]]
    with pytest.raises(InferenceServerException) as caught:
        client.infer("byte_length", [tensor(module, "DATA", np.array([[b""]], dtype=object), "BYTES")])
    assert "'DATA': element 0 is empty" in str(caught.value)
    assert "400" in str(caught.value.status()) or "INVALID_ARGUMENT" in str(caught.value.status())


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sequence_state_over_unary_calls(http, grpc, protocol):
    client, module = (http, httpclient) if protocol == "http" else (grpc, grpcclient)
    sequence_id = 7 if protocol == "http" else 8
    totals = []
    for i, value in enumerate([3, 4, 5]):
        result = client.infer(
            "accumulate_sequence", [tensor(module, "INPUT", np.array([value], np.int32), "INT32")],
            sequence_id=sequence_id, sequence_start=i == 0, sequence_end=i == 2,
        )
        totals.append(int(result.as_numpy("OUTPUT")[0]))
    assert totals == [3, 7, 12]
    with pytest.raises(InferenceServerException, match="not open"):  # ended with the last request
        client.infer("accumulate_sequence", [tensor(module, "INPUT", np.array([1], np.int32), "INT32")], sequence_id=sequence_id)


def test_sequence_over_one_grpc_stream_is_answered_in_order(server):
    client = grpcclient.InferenceServerClient(server.grpc)
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    for i in range(10):
        client.async_stream_infer(
            "accumulate_sequence", [tensor(grpcclient, "INPUT", np.array([i], np.int32), "INT32")],
            request_id=str(i), sequence_id="clip-1", sequence_start=i == 0, sequence_end=i == 9,
        )
    answers = [got.get(timeout=30) for _ in range(10)]
    client.stop_stream()
    client.close()
    assert all(error is None for _, error in answers)
    assert [r.get_response().id for r, _ in answers] == [str(i) for i in range(10)]
    assert [int(r.as_numpy("OUTPUT")[0]) for r, _ in answers] == list(np.cumsum(range(10)))


def test_job_streams_progress_then_result_over_grpc(server):
    client = grpcclient.InferenceServerClient(server.grpc)
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    client.async_stream_infer("countdown_job", [tensor(grpcclient, "STEPS", np.array([5], np.int32), "INT32")])
    answers = [got.get(timeout=30) for _ in range(6)]
    client.stop_stream()
    client.close()
    assert all(error is None for _, error in answers)
    progress = [float(r.as_numpy("PROGRESS")[0]) for r, _ in answers]
    assert progress == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert answers[-1][0].as_numpy("RESULT")[0] == b"done after 5 steps"
    assert answers[0][0].as_numpy("RESULT") is None  # progress messages carry only PROGRESS


def test_job_over_http_server_sent_events(server):
    body = {"inputs": [{"name": "STEPS", "shape": [1], "datatype": "INT32", "data": [3]}]}
    request = urllib.request.Request(
        f"http://{server.http}/v2/models/countdown_job/generate_stream", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        events = [json.loads(line[5:]) for line in (raw.decode().strip() for raw in response) if line.startswith("data:")]
    assert len(events) == 4
    assert [o["name"] for o in events[-1]["outputs"]] == ["PROGRESS", "RESULT"]
    assert events[-1]["outputs"][1]["data"] == ["done after 3 steps"]


def test_content_telemetry_histogram_is_scraped(server, http):
    data = np.array([[b"x" * 10]], dtype=object)
    http.infer("byte_length", [tensor(httpclient, "DATA", data, "BYTES")])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        buckets = {s.labels["le"]: s.value for family in text_string_to_metric_families(server.metrics_text())
                   for s in family.samples if s.name == "ray_streamserve_output_length_bucket" and s.labels.get("model") == "byte_length"}
        if buckets.get("16.0", 0) > buckets.get("4.0", 0):
            return
        time.sleep(1)
    pytest.fail("no length in the (4, 16] bucket of ray_streamserve_output_length")
