"""Load-suite checks: the naive baseline answers like the platform, the scenario table and the suite's
analysis behave, a short locust run against the naive server writes its rows, and (slow, real server)
the suite's --short mode writes its CSVs and Prometheus reads a non-zero request rate back."""
import csv
import os
from pathlib import Path

import numpy as np
import pytest

from loadtest.locust.scenarios import SCENARIOS, available, json_safe, served_name, triton_inputs
from loadtest.suite import by_level, histogram_delta, run_locust, saturation, summarize

ROOT = Path(__file__).resolve().parents[2]
real_server = pytest.mark.skipif(not os.environ.get("STREAMSERVE_LOAD_TESTS"),
                                 reason="starts the real server (~1.5 GB, minutes): set STREAMSERVE_LOAD_TESTS=1")


@pytest.fixture(scope="module")
def REPO(tmp_path_factory) -> Path:
    """digits_cnn (v1, v2) only, built by the project's exporter from committed weights (seconds)."""
    from export.build import main as build

    root = tmp_path_factory.mktemp("load") / "model_repository"
    build(["--repository", str(root), "--only", "digits"])
    return root


@pytest.fixture(scope="module")
def naive(REPO, tmp_path_factory):
    from loadtest.naive_server import start_naive, stop_naive

    log = tmp_path_factory.mktemp("naive") / "naive.log"
    addresses, process = start_naive(REPO, "digits_cnn", "2", log, grpc=True)
    yield addresses
    stop_naive(process)
    assert process.poll() is not None


def test_available_skips_missing_models(tmp_path):
    (tmp_path / "digits_cnn" / "2").mkdir(parents=True)
    (tmp_path / "simple" / "7").mkdir(parents=True)  # wrong version: skipped
    assert available(tmp_path) == ["digits_cnn"]
    with pytest.raises(KeyError):
        available(tmp_path, ["no_such_model"])


def test_every_scenario_request_matches_its_model_config(repository):
    """Names, datatypes and shapes of each scenario's request against the built repository's configs (the
    session repository holds every model), at 1 and 3 rows for the models that batch."""
    from serve.datatypes import from_numpy
    from serve.repository import ModelRepository

    repo = ModelRepository(repository)
    assert set(available(repository)) == set(SCENARIOS)  # every scenario's model and version is built
    for name, sc in SCENARIOS.items():
        spec = repo.get(served_name(name))
        declared = {t.name: t for t in spec.inputs}
        for rows in ((1, 3) if spec.max_batch_size > 0 else (1,)):
            request = sc.factory(rows)
            assert {t.name for t in spec.inputs if not t.optional} <= set(request) <= set(declared), name
            for key, array in request.items():
                t = declared[key]
                assert from_numpy(array.dtype) == t.datatype, (name, key, array.dtype, t.datatype)
                shape = t.shape(spec.max_batch_size)
                assert len(array.shape) == len(shape) and all(d in (-1, a) for d, a in zip(shape, array.shape)), (name, key, array.shape, shape)
                if spec.max_batch_size > 0:
                    assert array.shape[0] == rows, (name, key)


def test_in_process_baselines_run_every_onnx_model_and_skip_the_rest(repository):
    """The suite's in-process baselines over the whole repository: python-backend models (iqa holds a model.onnx
    its handler feeds decoded crops, not the request) and streamed ones are skipped, not crashed on."""
    from loadtest.suite import in_process_baselines
    from serve.repository import ModelRepository

    repo = ModelRepository(repository)
    names = available(repository)
    rows = in_process_baselines(repository, names, duration_s=0.05)
    expected = {n for n in names if repo.get(served_name(n)).platform == "onnxruntime_onnx" and not SCENARIOS[n].decoupled}
    assert {r["model"] for r in rows} == expected and "iqa" not in expected
    assert all(r["throughput"] > 0 for r in rows)


def test_summary_and_saturation():
    rows = [{"time": t / 100, "latency_ms": 10.0 + (t % 10), "code": "OK", "users": 1} for t in range(100)]
    rows += [{"time": 1.0, "latency_ms": 1.0, "code": "503", "users": 1}] * 5
    s = summarize(rows)
    assert s["ok"] == 100 and s["errors"] == {"503": 5} and abs(s["error_rate"] - 5 / 105) < 1e-9
    assert 10 <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= 19
    levels = [{"users": u, "throughput": t, "p99_ms": 10.0} for u, t in ((1, 100), (2, 190), (4, 200), (8, 201))]
    assert saturation(levels)["users"] == 2  # 190 -> 200 is < 10 % growth
    assert saturation(levels[:2]) is None  # still growing at the highest level: not reached
    sweep = [{"time": i * 0.01, "latency_ms": 5.0, "code": "OK", "users": 1 if i < 50 else 4} for i in range(100)]
    assert [lv["users"] for lv in by_level(sweep)] == [1, 4]


def test_histogram_delta_from_cumulative_buckets():
    before = {1.0: 0.0, 2.0: 0.0, 4.0: 0.0, float("inf"): 0.0, "_sum": 5.0, "_count": 3.0}
    after = {1.0: 10.0, 2.0: 10.0, 4.0: 20.0, float("inf"): 20.0, "_sum": 55.0, "_count": 23.0}
    d = histogram_delta(before, after)
    assert d["count"] == 20 and d["p99"] == 4.0 and d["mean"] == 2.5  # the exact _sum, not bucket midpoints


def test_naive_server_answers_like_the_platform_runtime(naive, REPO):
    """The naive server's answer for digits_cnn equals the platform's own ONNX Runtime wrapper on the same file."""
    import tritonclient.http as httpclient

    from serve.runtimes.onnx import OnnxRuntime

    x = SCENARIOS["digits_cnn"].factory(8)["image"]
    client = httpclient.InferenceServerClient(naive["http"])
    tensor = httpclient.InferInput("image", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    got = client.infer("digits_cnn", [tensor], model_version="2")
    runtime = OnnxRuntime(str(REPO / "digits_cnn" / "2" / "model.onnx"), ["image"], ["probabilities", "label"], 1, "cpu")
    want = runtime.infer({"image": x})
    np.testing.assert_allclose(got.as_numpy("probabilities"), want["probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got.as_numpy("label").ravel(), np.asarray(want["label"]).ravel())

    bad = httpclient.InferInput("image", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), np.float32), binary_data=False)
    with pytest.raises(Exception) as e:
        client.infer("digits_cnn", [bad])
    assert e.value.status() == "400"


def test_naive_grpc_side_answers_like_its_http_side(naive):
    """The naive server's gRPC ModelInfer (bench.py's gRPC peer without batching) gives the HTTP side's answer, and a
    client's mistake comes back as INVALID_ARGUMENT, not a crash."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    x = SCENARIOS["digits_cnn"].factory(3)["image"]
    answers = {}
    for module, key in ((grpcclient, "grpc"), (httpclient, "http")):
        client = module.InferenceServerClient(naive[key])
        tensor = module.InferInput("image", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, **({"binary_data": False} if key == "http" else {}))  # the HTTP side reads JSON only
        answers[key] = client.infer("digits_cnn", [tensor], model_version="2").as_numpy("probabilities")
    np.testing.assert_allclose(answers["grpc"], answers["http"], rtol=1e-6)

    client = grpcclient.InferenceServerClient(naive["grpc"])
    bad = grpcclient.InferInput("image", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("digits_cnn", [bad])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_every_scenario_builds_the_request_its_users_send():
    """The users' own tensors for every scenario, on both protocols. An HTTP user sends JSON, which carries BYTES only as
    UTF-8 text: `iqa`'s PNG goes binary, or building its request fails and no HTTP user of it ever sends one."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    for name, sc in SCENARIOS.items():
        one = sc.factory(1)
        assert len(triton_inputs(grpcclient, one)) == len(one), name
        if sc.http:
            assert len(triton_inputs(httpclient, one, json=True)) == len(one), name
    assert not json_safe(SCENARIOS["iqa"].factory(1)["IMAGE"])
    assert json_safe(SCENARIOS["caption_match"].factory(1)["text"])  # a caption is text: JSON carries it
    assert json_safe(np.array([[b"text"]], dtype=object)) and json_safe(np.zeros((1, 2), np.float32))


def test_a_locust_run_that_sent_no_request_is_an_error(tmp_path, monkeypatch):
    """Every user failed while building its request: the rows file is written, empty. That is no measurement."""
    import loadtest.suite as suite

    def locust_whose_users_all_failed(cmd, env, stdout, **_):
        Path(env["LT_RAW"]).write_text("time,protocol,model,latency_ms,code,users\n")
        stdout.write("InferenceServerException: Failed to encode ... using UTF-8\n")

    monkeypatch.setattr(suite.subprocess, "run", locust_whose_users_all_failed)
    with pytest.raises(RuntimeError, match="sent no request for platform_iqa_http_steady(.|\n)*UTF-8"):
        run_locust(tmp_path, "platform_iqa_http_steady", "iqa", "http", "steady", 8, 1, "127.0.0.1:1", "127.0.0.1:1")


def test_locust_spike_against_naive_server(naive, tmp_path):
    """A 3 s spike run writes per-request rows; the user count really changes; no errors on a healthy server."""
    rows = run_locust(tmp_path, "spike", "digits_cnn", "http", "spike", 8, 3, naive["http"], "127.0.0.1:1")
    assert len(rows) > 20
    assert {r["users"] for r in rows} >= {1, 8}
    assert summarize(rows)["error_rate"] == 0
    with (tmp_path / "spike_stats.csv").open() as f:  # locust's own CSV is written too
        assert any(r["Name"] == "digits_cnn" for r in csv.DictReader(f))


@real_server
def test_suite_short_writes_csv(REPO, tmp_path):
    from loadtest.suite import SHORT, Plan, run

    plan = Plan(**{**SHORT.__dict__, "steady_s": 3, "sweep_s": 2, "spike_s": 0, "local_s": 1})
    run(plan, REPO, tmp_path / "out", tmp_path / "work")
    with (tmp_path / "out" / "scenarios.csv").open() as f:
        rows = list(csv.DictReader(f))
    platform = [r for r in rows if r["target"] == "platform" and r["shape"] == "steady"]
    assert {r["protocol"] for r in platform} == {"http", "grpc"}
    assert all(float(r["throughput"]) > 0 and float(r["error_rate"]) == 0 for r in platform)
    assert all(float(r["mean_batch"]) >= 1 for r in platform)
    assert any(r["target"] == "naive" for r in rows)
    for name in ("sweep.csv", "baselines.csv", "ratios.csv", "summary.md", "sweep.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name


@real_server
def test_prometheus_reads_back_nonzero_rate(REPO, tmp_path):
    from loadtest.prometheus import find_prometheus, run

    binary = find_prometheus()
    if not binary:
        pytest.skip("no prometheus binary (apt-get install -y prometheus)")
    result = run(binary, REPO, "digits_cnn", load_s=8, users=4, workdir=tmp_path)
    assert result["request_rate"] > 0, result
    assert result["latency_p99_ms"] > 0 and result["latency_p99_ms"] >= result["latency_p50_ms"], result
