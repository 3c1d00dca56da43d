"""Metrics counted in the process and handed to Ray once a second (serve/metrics.py): the series handed over are a
Prometheus histogram's, exact, and only for what changed."""
import math

import pytest

from serve import metrics


class Recorder:
    """Stands in for one of Ray's metrics: what was set or added, by tags."""

    def __init__(self):
        self.values, self.calls = {}, 0

    def set(self, value, tags):
        self.calls += 1
        self.values[tuple(sorted(tags.items()))] = value

    def inc(self, value, tags):
        self.calls += 1
        key = tuple(sorted(tags.items()))
        self.values[key] = self.values.get(key, 0) + value


@pytest.fixture
def histogram():
    h = metrics.Histogram("test_latency_ms", "test", boundaries=[10, 1, 5], tag_keys=("model",))
    h._buckets, h._sum, h._count = Recorder(), Recorder(), Recorder()
    return h


def buckets(h, model):
    return {dict(key)["le"]: value for key, value in h._buckets.values.items() if dict(key)["model"] == model}


def test_histogram_adds_cumulative_buckets_count_and_the_true_sum(histogram):
    for value in (0.5, 1.0, 3.0, 7.0, 12.0, 40.0):
        histogram.observe(value, {"model": "a"})
    histogram.observe(2.0, {"model": "b"})
    histogram.publish()
    # Prometheus' le is inclusive: 1.0 counts in le="1.0".
    assert buckets(histogram, "a") == {"1.0": 2, "5.0": 3, "10.0": 4, "+Inf": 6}
    assert buckets(histogram, "b") == {"1.0": 0, "5.0": 1, "10.0": 1, "+Inf": 1}
    assert histogram._count.values[(("model", "a"),)] == 6
    assert histogram._sum.values[(("model", "a"),)] == pytest.approx(63.5)  # not bucket midpoints


def test_histogram_sets_its_series_again_until_they_rest_for_keep_s(histogram, monkeypatch):
    """Ray drops a gauge that is not set again, so live series are set at every publication; a series idle for
    KEEP_S leaves (an idle server spends nothing on it) and comes back with its cumulative counts."""
    clock = [1000.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: clock[0])
    histogram.observe(2.0, {"model": "a"})
    histogram.observe(2.0, {"model": "b"})
    histogram.publish()
    calls = histogram._buckets.calls
    clock[0] += metrics.KEEP_S - 1
    histogram.observe(0.1, {"model": "a"})
    histogram.publish()
    assert histogram._buckets.calls == calls + 8, "both series set again"
    clock[0] += 2  # b rested for KEEP_S + 1
    histogram.publish()
    assert histogram._buckets.calls == calls + 12, "only a's four buckets"
    clock[0] += metrics.KEEP_S + 1
    histogram.publish()
    assert histogram._buckets.calls == calls + 12, "nothing left to set"
    histogram.observe(20.0, {"model": "b"})
    histogram.publish()
    assert buckets(histogram, "b") == {"1.0": 0, "5.0": 1, "10.0": 1, "+Inf": 2}


def test_histogram_sums_negative_values(histogram):
    histogram.observe_many([-3.0, -1.5], {"model": "a"})
    histogram.publish()
    assert histogram._sum.values[(("model", "a"),)] == -4.5
    assert buckets(histogram, "a") == {"1.0": 2, "5.0": 2, "10.0": 2, "+Inf": 2}


def test_histogram_skips_nan_and_tag_order_does_not_split_a_series(histogram):
    histogram.observe_many([math.nan, 3.0], {"model": "a", "label": "x"})
    histogram.observe(3.0, {"label": "x", "model": "a"})
    histogram.publish()
    assert len(histogram._count.values) == 1
    assert list(histogram._count.values.values()) == [2]
    assert list(histogram._sum.values.values()) == [6.0]


def test_counter_adds_its_sum_in_one_step():
    counter = metrics.Counter("test_requests", "test", tag_keys=("model", "outcome"))
    counter._counter = Recorder()
    for _ in range(100):
        counter.inc(tags={"model": "a", "outcome": "success"})
    counter.inc(2, tags={"outcome": "failure", "model": "a"})
    counter.publish()
    counter.publish()
    assert counter._counter.calls == 2
    assert counter._counter.values == {(("model", "a"), ("outcome", "success")): 100,
                                       (("model", "a"), ("outcome", "failure")): 2}
