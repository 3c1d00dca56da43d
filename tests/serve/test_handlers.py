"""Python-backend handlers, sequences and decoupled jobs through the data plane, without Ray."""
import asyncio
import os

import numpy as np
import pytest

from models.examples.export import build as build_examples
from models.examples.handlers import CountdownJobHandler
from serve.dataplane import DataPlane
from serve.errors import InvalidInput, Overloaded, RepositoryError
from serve.replica import ModelWorker
from serve.repository import ModelRepository, load_model
from serve.types import InferRequest


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    root = tmp_path_factory.mktemp("handlers")
    build_examples(root)
    repo = ModelRepository(root)
    backends = {(s.name, v): ModelWorker(str(root), s.name, v) for s in repo for v in s.versions}
    return DataPlane(repo, backends)


def run(coroutine):
    return asyncio.run(coroutine)


def request(model, inputs, **parameters):
    return InferRequest(model, None, inputs, parameters=parameters)


def collect(plane, req):
    async def go():
        return [r async for r in plane.stream(req, "test")]

    return run(go())


def test_preprocess_and_batched_infer(plane):
    data = np.array([[b"abc"], [b"hello world"]], dtype=object)
    response = run(plane.infer(request("byte_length", {"DATA": data}), "test"))
    assert response.outputs["LENGTH"].tolist() == [[3], [11]]


def test_preprocess_error_names_the_field(plane):
    with pytest.raises(InvalidInput, match="'DATA': element 1 is empty"):
        run(plane.infer(request("byte_length", {"DATA": np.array([[b"x"], [b""]], dtype=object)}), "test"))


def test_sequence_accumulates_state_between_requests(plane):
    totals = []
    for i, value in enumerate([5, 7, -2]):
        flags = {"sequence_start": i == 0, "sequence_end": i == 2}
        response = run(plane.infer(request("accumulate_sequence", {"INPUT": np.array([value], np.int32)}, sequence_id=42, **flags), "test"))
        totals.append(int(response.outputs["OUTPUT"][0]))
        assert bool(response.outputs["STARTED"][0]) == (i == 0)
        assert "TOTAL_OUT" not in response.outputs  # state is the platform's, not the client's
    assert totals == [5, 12, 10]
    assert len(plane.sequences) == 0  # sequence_end released it


def test_two_sequences_keep_separate_state(plane):
    def send(sid, value, start=False):
        r = run(plane.infer(request("accumulate_sequence", {"INPUT": np.array([value], np.int32)}, sequence_id=sid, sequence_start=start), "test"))
        return int(r.outputs["OUTPUT"][0])

    assert send("a", 1, start=True) == 1
    assert send("b", 100, start=True) == 100
    assert send("a", 1) == 2
    assert send("b", 1) == 101
    assert send("a", 0, start=True) == 0  # a start on an open sequence restarts it


@pytest.mark.parametrize(
    "parameters, message",
    [({}, "sequence_id"), ({"sequence_id": 0}, "sequence_id"), ({"sequence_id": 999}, "not open")],
)
def test_sequence_errors(plane, parameters, message):
    with pytest.raises(InvalidInput, match=message):
        run(plane.infer(request("accumulate_sequence", {"INPUT": np.array([1], np.int32)}, **parameters), "test"))


def test_sequence_table_is_bounded(plane):
    plane.sequences.live.clear()
    table_limit, plane.sequences.max_live = plane.sequences.max_live, 2
    try:
        for sid in (1001, 1002):
            run(plane.infer(request("accumulate_sequence", {"INPUT": np.array([1], np.int32)}, sequence_id=sid, sequence_start=True), "test"))
        with pytest.raises(Overloaded):
            run(plane.infer(request("accumulate_sequence", {"INPUT": np.array([1], np.int32)}, sequence_id=1003, sequence_start=True), "test"))
    finally:
        plane.sequences.max_live = table_limit
        plane.sequences.live.clear()


def test_job_streams_progress_then_result(plane):
    responses = collect(plane, request("countdown_job", {"STEPS": np.array([4], np.int32)}))
    assert [float(r.outputs["PROGRESS"][0]) for r in responses] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert all("RESULT" not in r.outputs for r in responses[:-1])
    assert responses[-1].outputs["RESULT"][0] == b"done after 4 steps"


def test_job_unary_infer_returns_the_final_response(plane):
    response = run(plane.infer(request("countdown_job", {"STEPS": np.array([2], np.int32)}), "test"))
    assert response.outputs["RESULT"][0] == b"done after 2 steps"
    assert response.parameters["responses"] == 3


def test_job_error_from_handler_is_a_client_error(plane):
    with pytest.raises(InvalidInput, match="'STEPS': 500 is outside"):
        collect(plane, request("countdown_job", {"STEPS": np.array([500], np.int32)}))


def test_stopping_a_job_early_closes_the_handler(plane):
    before = CountdownJobHandler.closed

    async def first_then_stop():
        stream = plane.stream(request("countdown_job", {"STEPS": np.array([50], np.int32)}), "test")
        first = await stream.__anext__()
        await stream.aclose()
        return first

    first = run(first_then_stop())
    assert float(first.outputs["PROGRESS"][0]) == pytest.approx(0.02)
    assert CountdownJobHandler.closed == before + 1


@pytest.mark.parametrize(
    "handler, message",
    [("os:system", "models.<family>"), ("models.nope.serving:X", "cannot be imported"), ("models.examples.handlers:DelayParams", "is not a ModelHandler"), ("models.examples.handlers", "models.<family>")],
)
def test_handler_path_is_checked_at_load(tmp_path, handler, message):
    folder = tmp_path / "m"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(
        'name: "m" backend: "python" input [ { name: "A" data_type: TYPE_FP32 dims: [ 1 ] } ] '
        'output [ { name: "B" data_type: TYPE_FP32 dims: [ 1 ] } ] '
        f'parameters {{ key: "handler" value {{ string_value: "{handler}" }} }}'
    )
    with pytest.raises(RepositoryError, match=message):
        load_model(folder)


def test_a_fast_model_runs_while_more_slow_models_compute_than_the_loops_pool_has_threads(tmp_path):
    """Triton runs each model instance on a thread of its own; so does a ModelWorker. With every model's batches on the
    loop's shared pool (min(32, cores + 4) threads), that many slow batches at once would stall every other model's."""
    from models.examples.handlers import SLOW_IDENTITY

    build_examples(tmp_path)
    slow = [f"slow_{i}" for i in range(min(32, (os.cpu_count() or 1) + 4) + 1)]
    for name in slow:
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "config.pbtxt").write_text(
            SLOW_IDENTITY.replace('"slow_identity"', f'"{name}"').replace('string_value: "0.05"', 'string_value: "1.5"'))
    workers = {name: ModelWorker(str(tmp_path), name, 1) for name in slow + ["slow_identity"]}
    one = {"X": np.ones((1, 1), np.float32)}

    async def go():
        slow_batches = [asyncio.create_task(workers[name].infer(one)) for name in slow]
        await asyncio.sleep(0.3)  # every slow batch is computing (each model's queue delay is 1 ms)
        await workers["slow_identity"].infer(one)  # 0.05 s of its own
        return sum(task.done() for task in slow_batches), await asyncio.gather(*slow_batches)

    finished_first, answers = run(go())
    assert finished_first == 0, "the fast model's batch waited for slow models' batches to finish"
    assert all(a["Y"].tolist() == [[1.0]] for a in answers)


def test_a_handlers_preprocess_runs_while_the_loops_pool_is_busy(plane):
    """Each worker preprocesses requests on threads of its own: with the loop's shared pool held by other work (a slow
    model's decode, a repository load), a light model's requests still go through."""
    import threading

    def hold(release):
        release.wait(10)

    async def go():
        loop, release = asyncio.get_running_loop(), threading.Event()
        held = [loop.run_in_executor(None, hold, release) for _ in range(min(32, (os.cpu_count() or 1) + 4) + 1)]
        try:
            data = np.array([[b"abc"]], dtype=object)
            return await asyncio.wait_for(plane.infer(request("byte_length", {"DATA": data}), "test"), 5)
        finally:
            release.set()
            await asyncio.gather(*held)

    assert run(go()).outputs["LENGTH"].tolist() == [[3]]


def test_a_handlers_blas_threads_are_the_replicas_cpu_share(tmp_path):
    """numpy's BLAS runs on as many threads as the runtime was given (the replica's CPU share), not on every core."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from models.examples.handlers import ByteLengthHandler

    def blas_threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    before = threadpool_limits(2, user_api="blas")  # as OpenBLAS starts on a machine of two cores or more
    try:
        if blas_threads() != {2}:
            pytest.skip(f"numpy's BLAS cannot run two threads here ({blas_threads()})")
        ByteLengthHandler(tmp_path, {}, ["DATA"], ["LENGTH"], num_threads=1, device="cpu")
        assert blas_threads() == {1}
    finally:
        before.restore_original_limits()


def test_a_worker_preprocesses_its_cpu_share_plus_one_requests_at_once(tmp_path, monkeypatch):
    """What a burst of requests holds decoded at once is bounded by the replica's share, not by how many arrive (nor by
    the loop's pool of min(32, cores + 4) threads): a handler's decode memory per request times the share plus one."""
    import threading
    import time

    from serve import replica

    monkeypatch.setattr(replica, "replica_resources", lambda: (1, "cpu"))
    build_examples(tmp_path)
    worker = ModelWorker(str(tmp_path), "byte_length", 1)
    decode, lock, inside = worker.runtime.preprocess, threading.Lock(), [0, 0]  # now, most

    def counted(inputs):
        with lock:
            inside[0] += 1
            inside[1] = max(inside[1], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return decode(inputs)

    worker.runtime.preprocess = counted

    async def burst():
        return await asyncio.gather(*[worker.infer({"DATA": np.array([[b"x" * n]], dtype=object)}) for n in range(1, 9)])

    answers = run(burst())
    assert [a["LENGTH"].tolist() for a in answers] == [[[n]] for n in range(1, 9)]
    assert inside[1] == 2


def test_a_batch_waits_for_the_requests_held_up_in_preprocess_and_no_longer(tmp_path, monkeypatch):
    """Eight requests at once on a worker of two preprocess threads and a long queue delay: the batch waits while some
    still wait for a thread, runs the six queued once none does (the last two are in preprocess), not all eight after
    the delay (Triton's rule); and a lone request does not wait out the delay at all."""
    import time

    from serve import replica

    monkeypatch.setattr(replica, "replica_resources", lambda: (1, "cpu"))
    build_examples(tmp_path)
    config = tmp_path / "byte_length" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_queue_delay_microseconds: 2000", "max_queue_delay_microseconds: 5000000"))
    worker = ModelWorker(str(tmp_path), "byte_length", 1)
    assert worker.spec.max_queue_delay_s == 5.0 and worker.preprocess_thread_count == 2
    decode, compute, batches = worker.runtime.preprocess, worker.runtime.infer, []

    def slow_decode(inputs):
        time.sleep(0.05)
        return decode(inputs)

    def recorded(inputs):
        batches.append(len(inputs["LENGTH_IN"]))
        return compute(inputs)

    worker.runtime.preprocess, worker.runtime.infer = slow_decode, recorded

    async def requests(count):
        return await asyncio.wait_for(
            asyncio.gather(*[worker.infer({"DATA": np.array([[b"x" * n]], dtype=object)}) for n in range(1, count + 1)]), 4.0)

    assert [a["LENGTH"].tolist() for a in run(requests(8))] == [[[n]] for n in range(1, 9)]
    assert batches[0] == 6 and sum(batches) == 8
    assert worker.preprocessing == 0
    batches.clear()
    run(requests(1))
    assert batches == [1]

