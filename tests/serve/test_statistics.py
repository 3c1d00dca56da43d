"""Triton's statistics without Ray: the counters a request and a batch move, the failure reasons, the sum of several
processes' published entries, the Triton-named Prometheus text, and both adapters' answers (404 / NOT_FOUND)."""
import asyncio
import json

import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families

from streamserve_proto import service_pb2 as pb
from serve import rest
from serve.dataplane import DataPlane
from serve.errors import ModelNotFound, Overloaded
from serve.grpc_servicer import GRPCInferenceServicer
from serve.replica import ModelWorker
from serve.repository import ModelRepository
from serve.statistics import FAILURE_REASONS, METRIC_NAMES, ModelStats, Registry, prometheus_text
from serve.types import InferRequest


class Failing:
    """A backend whose model fails with `error`."""

    def __init__(self, error: Exception):
        self.error = error

    async def infer(self, inputs, timeout_s=None):
        raise self.error

    async def ready(self):
        return True


@pytest.fixture(scope="module")
def plane(repository):
    repo = ModelRepository(repository)
    backends = {("simple", 1): ModelWorker(str(repository), "simple", 1),
                ("digits_cnn", 1): Failing(RuntimeError("the model broke")), ("digits_cnn", 2): Failing(Overloaded("full"))}
    return DataPlane(repo, backends)


def simple(rows=1):
    a = np.ones((rows, 16), np.int32)
    return InferRequest("simple", None, {"INPUT0": a, "INPUT1": a})


def stat(plane, model, version=None):
    return asyncio.run(plane.statistics(model, version))["model_stats"]


def delta(after: dict, before: dict, *path):
    for key in path:
        after, before = after[key], before[key]
    return after - before


def test_requests_and_batches_move_the_counts(plane):
    before = stat(plane, "simple")[0]

    async def send():
        await asyncio.gather(*[plane.infer(simple(), "test") for _ in range(4)])  # queued together: batched
        await plane.infer(simple(3), "test")

    asyncio.run(send())
    after = stat(plane, "simple")[0]
    assert delta(after, before, "inference_stats", "success", "count") == 5
    assert delta(after, before, "inference_count") == 7  # rows: 4 x 1 + 3
    executions = delta(after, before, "execution_count")
    assert 2 <= executions <= 5
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    old = {b["batch_size"]: b["compute_infer"]["count"] for b in before["batch_stats"]}
    moved = {size: count - old.get(size, 0) for size, count in sizes.items() if count != old.get(size, 0)}
    assert sum(moved.values()) == executions and sum(size * count for size, count in moved.items()) == 7
    for part in ("queue", "compute_input", "compute_infer", "compute_output"):  # every executed request, once
        assert delta(after, before, "inference_stats", part, "count") == 5
    assert after["inference_stats"]["success"]["ns"] > before["inference_stats"]["success"]["ns"]
    assert after["last_inference"] >= before["last_inference"] and after["last_inference"] > 1.7e12  # ms since epoch
    assert delta(after, before, "inference_stats", "fail", "count") == 0


@pytest.mark.parametrize("version, reason", [("1", "BACKEND"), ("2", "REJECTED")])
def test_failures_are_counted_with_triton_reasons(plane, version, reason):
    before = stat(plane, "digits_cnn", version)[0]
    image = np.zeros((1, 1, 8, 8), np.float32)
    with pytest.raises(Exception):
        asyncio.run(plane.infer(InferRequest("digits_cnn", version, {"image": image}), "test"))
    after = stat(plane, "digits_cnn", version)[0]
    assert delta(after, before, "inference_stats", "fail", "count") == 1
    assert delta(after, before, "inference_stats", "success", "count") == 0 and delta(after, before, "execution_count") == 0
    metrics = {(s.labels["model"], s.labels["version"], s.labels["reason"]): s.value
               for family in text_string_to_metric_families(asyncio.run(plane.prometheus_metrics()))
               for s in family.samples if family.name == "nv_inference_request_failure"}
    assert metrics[("digits_cnn", version, reason)] >= 1


def test_selection_and_unknown_names(plane):
    everything = asyncio.run(plane.statistics())["model_stats"]
    repo = plane.repository
    assert [(s["name"], s["version"]) for s in everything] == [(spec.name, str(v)) for spec in repo for v in spec.versions]
    assert [s["version"] for s in stat(plane, "digits_cnn")] == ["1", "2"]
    assert [s["version"] for s in stat(plane, "digits_cnn", "2")] == ["2"]
    with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
        stat(plane, "nope")
    with pytest.raises(ModelNotFound, match="does not serve version 9"):
        stat(plane, "simple", "9")


def test_adapters_answer_statistics_and_404(plane):
    rest.attach(plane)
    http = TestClient(rest.app, client=("127.0.0.1", 5000))
    assert http.get("/v2/models/stats").json()["model_stats"][0].keys() >= {
        "name", "version", "last_inference", "inference_count", "execution_count", "inference_stats", "batch_stats"}
    assert http.get("/v2/models/simple/versions/1/stats").json()["model_stats"][0]["name"] == "simple"
    for path in ("/v2/models/nope/stats", "/v2/models/simple/versions/9/stats"):
        response = http.get(path)
        assert response.status_code == 404 and ("nope" in response.json()["error"] or "9" in response.json()["error"])
    assert http.get("/metrics").headers["content-type"].startswith("text/plain")

    class Context:
        code = details = None

        def peer(self):
            return "ipv4:127.0.0.1:5000"

        def invocation_metadata(self):
            return []

        def set_code(self, code):
            self.code = code

        def set_details(self, details):
            self.details = details

    servicer = GRPCInferenceServicer()
    servicer.plane = plane
    context = Context()
    answer = asyncio.run(servicer.ModelStatistics(pb.ModelStatisticsRequest(name="digits_cnn"), context))
    assert context.code is None and [s.version for s in answer.model_stats] == ["1", "2"]
    asyncio.run(servicer.ModelStatistics(pb.ModelStatisticsRequest(name="nope"), context))
    assert context.code == grpc.StatusCode.NOT_FOUND and "'nope'" in context.details


def test_entries_of_several_processes_add_up():
    """What the ingress does with the entries every replica published: sums, the latest last_inference, batch sizes
    merged (JSON turns their keys into strings)."""
    a, b = Registry(), Registry()
    a._store = b._store = False  # no Ray: nothing published
    sa, sb = a.get("m", "1"), b.get("m", "1")
    a.request_done(sa, 0.002, None)
    a.executed(sa, 4, 2, 0.001, 0.0001, 0.003, 0.0002)
    b.request_done(sb, 0.001, "REJECTED")
    b.executed(sb, 4, 1, 0.0005, 0.0001, 0.002, 0.0001)
    b.executed(sb, 1, 1, 0.0, 0.0, 0.001, 0.0)
    total = ModelStats()
    for registry in (a, b):
        total.add(json.loads(json.dumps(registry.get("m", "1").as_list())))
    assert (total.success_count, total.fail_count, total.execution_count, total.inference_count, total.executed) == (1, 1, 3, 9, 4)
    assert total.batches[4][0] == 2 and total.batches[1][0] == 1
    assert total.infer_s == pytest.approx(2 * 0.003 + 0.002 + 0.001)  # each request charged its batch's duration
    assert total.fail_reasons == {"REJECTED": 1}
    assert total.last_inference == max(sa.last_inference, sb.last_inference)


def test_prometheus_text_has_triton_names_labels_and_units():
    s = ModelStats()
    s.success_count, s.success_s, s.fail_count, s.fail_reasons = 3, 0.5, 1, {"BACKEND": 1}
    s.inference_count, s.execution_count, s.queue_s, s.infer_s = 7, 2, 0.25, 0.125
    families = {f.name: f for f in text_string_to_metric_families(prometheus_text([("m", "1"), ("n", "2")], {("m", "1"): s}))}
    assert set(families) == set(METRIC_NAMES) and all(f.type == "counter" for f in families.values())
    value = {(f.name, tuple(sorted(x.labels.items()))): x.value for f in families.values() for x in f.samples}
    assert value[("nv_inference_request_success", (("model", "m"), ("version", "1")))] == 3
    assert value[("nv_inference_request_duration_us", (("model", "m"), ("version", "1")))] == 500000
    assert value[("nv_inference_compute_infer_duration_us", (("model", "m"), ("version", "1")))] == 125000
    assert value[("nv_inference_count", (("model", "n"), ("version", "2")))] == 0  # served, not yet called
    failures = {x.labels["reason"]: x.value for x in families["nv_inference_request_failure"].samples if x.labels["model"] == "m"}
    assert failures == {reason: (1 if reason == "BACKEND" else 0) for reason in FAILURE_REASONS}


def test_the_json_is_triton_s_message():
    """The HTTP document is exactly the gRPC message's JSON form (the gRPC adapter parses it strictly)."""
    s = ModelStats()
    s.executed, s.queue_s, s.batches = 2, 0.001, {2: [1, 1e-6, 2e-3, 3e-6]}
    from serve.statistics import model_stat

    document = {"model_stats": [model_stat("m", "1", s)]}
    message = json_format.ParseDict(document, pb.ModelStatisticsResponse())
    assert message.model_stats[0].batch_stats[0].compute_infer.ns == 2_000_000
    assert message.model_stats[0].inference_stats.queue.count == 2


def test_statistics_and_metrics_need_the_token_when_one_is_set(plane):
    guarded = DataPlane(plane.repository, plane.backends, auth_token="s3cret")
    rest.attach(guarded)
    try:
        http = TestClient(rest.app, client=("127.0.0.1", 5000))
        for path in ("/v2/models/stats", "/v2/models/simple/stats", "/metrics"):
            assert http.get(path).status_code == 401
            assert http.get(path, headers={"authorization": "Bearer s3cret"}).status_code == 200
    finally:
        rest.attach(plane)
