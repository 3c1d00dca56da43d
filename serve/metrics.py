"""Per-model Prometheus metrics, exported through Ray's metrics agent beside Ray Serve's own.

Ray aggregates the metrics of every replica and serves them on the node's metrics export port
(`settings.metrics_port`), so one scrape sees the proxy, Serve and these. Names get Ray's `ray_` prefix; Triton's
own counter names (`nv_inference_*`) are served unprefixed by the ingress on the HTTP port (`GET /metrics`), from the
statistics in serve/statistics.py.
Stages are timed where they happen: latency, in-flight and the decode / encode stages in the ingress, queue and
compute time and batch size where the model runs (the ingress or its own replica).

Why the request-path histograms and counters are counted here and published once a second. A Ray histogram costs
each observation twice in Python: in the replica (a few microseconds) and again in Ray's metrics agent, which replays
every observation into OpenTelemetry one by one (`record_histogram_aggregated_batch`). With ~7 observations per
request the agent took 0.15 of a core at 620 requests/s on 2 cores (`loadtest/BENCH.md`). So an observation here is
a bisect and two additions under a lock, and a publisher thread hands Ray, once a second, the series a Prometheus
histogram has: `<name>_bucket{le}` (cumulative), `<name>_sum`, `<name>_count`, set as gauges (Ray has no way to add a
pre-counted histogram, and its Sum is exported as a counter, renamed `..._total`). PromQL reads them as any histogram
(`histogram_quantile(0.99, sum by (le) (rate(ray_<name>_bucket[1m])))`); `_sum` is the true sum, where Ray's own
histogram reports bucket midpoints. Counters are summed here and added to Ray's in one step. A process that dies
loses at most its last second; the WorkerId tag Ray adds keeps each process's series apart, so sums over replicas
count nothing twice. The in-flight gauge is sampled once a second by the data plane.
"""
import bisect
import logging
import re
import threading
import time
from functools import cache

from ray.serve import metrics

logger = logging.getLogger("streamserve.metrics")

PUBLISH_S = 1.0
"""How often counted metrics are handed to Ray (Ray's agent then exports them every couple of seconds)."""
KEEP_S = 600.0
"""How long a histogram's series stays in the scrape after its last observation. Ray keeps a gauge only while it is
set again, and setting every series ever seen once a second would cost an idle server CPU for good; a series comes
back with its cumulative counts at its next observation, so rate() and increase() over it stay right."""


class _Publisher:
    """One daemon thread per process that publishes every counted metric that changed, once per PUBLISH_S."""

    def __init__(self):
        self.metrics: list = []
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, metric) -> None:
        with self.lock:
            self.metrics.append(metric)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="streamserve-metrics", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(PUBLISH_S)
            self.publish()

    def publish(self) -> None:
        with self.lock:
            metrics_now = list(self.metrics)
        for metric in metrics_now:
            try:
                metric.publish()
            except Exception:  # one metric's failure must not stop the others, nor the thread
                logger.exception("publishing a metric to Ray failed")


_PUBLISHER = _Publisher()


class Histogram:
    """A Prometheus histogram counted in this process (see the module's docstring). `observe(value, tags)` as Ray's."""

    def __init__(self, name: str, description: str, boundaries, tag_keys: tuple[str, ...]):
        self.boundaries = sorted(float(b) for b in boundaries)
        self._bounds = [repr(b) for b in self.boundaries] + ["+Inf"]
        self._buckets = metrics.Gauge(f"{name}_bucket", description=f"{description} (cumulative count per bucket)",
                                      tag_keys=(*tag_keys, "le"))
        self._sum = metrics.Gauge(f"{name}_sum", description=f"{description} (sum of observed values)", tag_keys=tag_keys)
        self._count = metrics.Gauge(f"{name}_count", description=f"{description} (observations)", tag_keys=tag_keys)
        self._series: dict[tuple, list] = {}  # sorted tag items -> [count per bucket..., above the last, sum]
        self._changed: dict[tuple, float] = {}  # sorted tag items -> when last observed (monotonic seconds)
        self._lock = threading.Lock()
        _PUBLISHER.add(self)

    def observe(self, value: float, tags: dict[str, str]) -> None:
        self.observe_many((value,), tags)

    def observe_many(self, values, tags: dict[str, str]) -> None:
        self.observe_series(values, series_key(tags))

    def observe_series(self, values, key: tuple) -> None:
        """`observe_many` for a series named by `series_key(tags)`, which a caller observing it per request keeps."""
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0] * (len(self.boundaries) + 1) + [0.0]
            for value in values:
                if value == value:  # NaN belongs in no bucket and would make the sum NaN for good
                    series[bisect.bisect_left(self.boundaries, value)] += 1
                    series[-1] += value
            self._changed[key] = time.monotonic()

    def publish(self) -> None:
        """Sets the series observed in the last KEEP_S seconds (Ray drops a gauge not set for two export intervals)."""
        now = time.monotonic()
        with self._lock:
            live = [(key, list(self._series[key])) for key, when in self._changed.items() if now - when <= KEEP_S]
            self._changed = {key: when for key, when in self._changed.items() if now - when <= KEEP_S}
        for key, series in live:
            tags, cumulative = dict(key), 0
            for bound, count in zip(self._bounds, series[:-1]):
                cumulative += count
                self._buckets.set(cumulative, tags=tags | {"le": bound})
            self._count.set(cumulative, tags=tags)
            self._sum.set(series[-1], tags=tags)


class Counter:
    """A counter summed in this process and added to Ray's in one step per publication. `inc(value, tags)` as Ray's."""

    def __init__(self, name: str, description: str, tag_keys: tuple[str, ...]):
        self._counter = metrics.Counter(name, description=description, tag_keys=tag_keys)
        self._pending: dict[tuple, float] = {}
        self._lock = threading.Lock()
        _PUBLISHER.add(self)

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.inc_series(value, series_key(tags or {}))

    def inc_series(self, value: float, key: tuple) -> None:
        with self._lock:
            self._pending[key] = self._pending.get(key, 0.0) + value

    def publish(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for key, value in pending.items():
            self._counter.inc(value, tags=dict(key))


def series_key(tags: dict[str, str]) -> tuple:
    """The key of a metric's series: its tags as sorted items."""
    return tuple(sorted(tags.items()))


def publish() -> None:
    """Hands Ray every counted metric now (the publisher thread does it once a second)."""
    _PUBLISHER.publish()


_MS_BUCKETS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
# One bucket per size up to 32, so the distribution of batch sizes can be read back exactly.
_BATCH_BUCKETS = list(range(1, 33)) + [48, 64, 96, 128, 256]
_MODEL_TAGS = ("model", "version")


@cache
def requests() -> Counter:
    return Counter(
        "streamserve_requests", description="Inference requests by model, version, protocol and outcome.",
        tag_keys=_MODEL_TAGS + ("protocol", "outcome"),
    )


@cache
def request_latency_ms() -> Histogram:
    return Histogram(
        "streamserve_request_latency_ms", description="Inference latency in the ingress, decode to encode.",
        boundaries=_MS_BUCKETS, tag_keys=_MODEL_TAGS + ("protocol",),
    )


@cache
def in_flight() -> metrics.Gauge:
    return metrics.Gauge("streamserve_in_flight_requests", description="Inference requests being served.", tag_keys=_MODEL_TAGS)


@cache
def stage_time_ms() -> Histogram:
    return Histogram(
        "streamserve_stage_time_ms",
        description="Time per request in the ingress's own stages: decode (body to validated tensors) and encode (outputs "
                    "to the wire). Queue and compute are streamserve_queue_time_ms and streamserve_compute_time_ms.",
        boundaries=[0.05, 0.1, 0.2, 0.5, *_MS_BUCKETS[1:]], tag_keys=_MODEL_TAGS + ("protocol", "stage"),
    )


@cache
def queue_time_ms() -> Histogram:
    return Histogram(
        "streamserve_queue_time_ms", description="Time a request waited in the model replica before its batch ran.",
        boundaries=_MS_BUCKETS, tag_keys=_MODEL_TAGS,
    )


@cache
def compute_time_ms() -> Histogram:
    return Histogram(
        "streamserve_compute_time_ms", description="Runtime time per executed batch.",
        boundaries=_MS_BUCKETS, tag_keys=_MODEL_TAGS,
    )


@cache
def batch_size() -> Histogram:
    return Histogram(
        "streamserve_batch_size", description="Rows per executed batch (requests may carry several rows).",
        boundaries=_BATCH_BUCKETS, tag_keys=_MODEL_TAGS,
    )


@cache
def output_histogram(output: str, boundaries: tuple[float, ...]) -> Histogram:
    """What a model returns, not how fast: e.g. the quality scores of uploads, per model version."""
    return Histogram(
        f"streamserve_output_{re.sub(r'[^a-z0-9_]', '_', output.lower())}",
        description=f"Values of the output {output!r} in served responses (content telemetry).",
        boundaries=boundaries, tag_keys=_MODEL_TAGS + ("label",),
    )


@cache
def snapshot_info() -> metrics.Gauge:
    return metrics.Gauge(
        "streamserve_snapshot_info", description="1 for the data snapshot a model version's replicas answer from (0 once replaced).",
        tag_keys=_MODEL_TAGS + ("snapshot",),
    )
