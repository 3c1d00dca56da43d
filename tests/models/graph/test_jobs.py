"""`account_clusters_job` is bounded: closing its stream (the client left) stops the fit within a second, and a
replica runs at most `max_concurrent_jobs` fits. The handler is driven directly, as serve/replica.py does: `stream`
is a generator, `close()` is what a departed client leads to."""
import json
import threading
import time

import numpy as np
import pytest

from models.graph.serving import JOB_THREAD, ClusterJobHandler
from serve.errors import Overloaded, RepositoryError

INPUTS, OUTPUTS = ["NODE_FEATURES", "EDGE_INDEX", "N_CLUSTERS"], ["PROGRESS", "STATUS", "CLUSTER", "CONFIDENCE"]


def handler(tmp_path, **params) -> ClusterJobHandler:
    # far more epochs than a test waits for: a fit that is not stopped would still be running
    return ClusterJobHandler(tmp_path, {"job_epochs": "100000", **params}, INPUTS, OUTPUTS, 1, "cpu")


def job(h: ClusterJobHandler, n: int = 400):
    rng = np.random.default_rng(0)
    inputs = {"NODE_FEATURES": rng.normal(size=(n, 16)).astype(np.float32), "EDGE_INDEX": rng.integers(0, n, (2, 4 * n)),
              "N_CLUSTERS": np.array([4], np.int64)}
    return h.stream(h.preprocess(inputs))


def fit_threads() -> set:
    return {t for t in threading.enumerate() if t.name == JOB_THREAD}


def start(stream) -> threading.Thread:
    """Take the stream's first responses (the job has started and trained an epoch); returns its fit thread."""
    before = fit_threads()
    assert json.loads(next(stream)["STATUS"][0])["state"] == "started"
    (thread,) = fit_threads() - before
    assert json.loads(next(stream)["STATUS"][0])["state"] == "training"
    return thread


def test_closing_the_stream_stops_the_fit_within_a_second(tmp_path):
    h = handler(tmp_path)
    stream = job(h)
    thread = start(stream)
    closed = time.monotonic()
    stream.close()
    assert time.monotonic() - closed < 0.1  # close() itself never waits for the fit
    thread.join(timeout=1.0)
    assert not thread.is_alive(), "the fit was still running 1 s after its stream was closed"
    assert h.job_slots.acquire(blocking=False)  # and its slot is free again
    h.job_slots.release()


def test_a_job_over_the_cap_is_refused_while_the_others_run(tmp_path):
    h = handler(tmp_path, max_concurrent_jobs="2")
    streams = [job(h), job(h)]
    try:
        threads = [start(s) for s in streams]
        with pytest.raises(Overloaded, match="already running 2 clustering job.*max_concurrent_jobs"):
            next(job(h))
        assert all(t.is_alive() for t in threads)  # the refusal touched neither running job
        streams[0].close()
        threads[0].join(timeout=1.0)
        streams.append(job(h))  # a slot freed by a stopped job is taken by the next one
        threads.append(start(streams[-1]))
        assert threads[1].is_alive() and threads[2].is_alive()
    finally:
        for s in streams:
            s.close()


def test_a_finished_job_frees_its_slot(tmp_path):
    h = handler(tmp_path, max_concurrent_jobs="1", job_epochs="12")
    for _ in range(2):  # the second job would be refused if the first had kept its slot
        final = list(job(h, n=60))[-1]
        assert final["CLUSTER"].shape == (60,) and float(final["PROGRESS"][0]) == 1.0


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_cap_is_refused_naming_the_parameter(tmp_path, value):
    with pytest.raises(RepositoryError, match=f"parameter 'max_concurrent_jobs': .*, got '{value}'"):
        handler(tmp_path, max_concurrent_jobs=value)


def test_a_served_kmeans_checks_for_cancellation_between_its_initialisations():
    from models.graph.ccgc import Cancelled, _kmeans

    z = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    checks = []

    def cancel_on_third_check():
        checks.append(1)
        if len(checks) == 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        _kmeans(z, 4, seed=0, check_cancel=cancel_on_third_check)
    assert len(checks) == 3  # two initialisations ran, the third was never started
    served, offline = _kmeans(z, 4, seed=0, check_cancel=lambda: None), _kmeans(z, 4, seed=0)
    assert served.n_clusters == offline.n_clusters == 4 and served.inertia_ <= 1.05 * offline.inertia_  # best of 5 either way
