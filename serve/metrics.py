"""Per-model Prometheus metrics, exported through Ray's metrics agent beside Ray Serve's own.

Ray aggregates the metrics of every replica and serves them on the node's metrics export port
(`settings.metrics_port`), so one scrape sees the proxy, Serve and these. Names get Ray's `ray_` prefix; Triton's
own counter names (`nv_inference_*`) are served unprefixed by the ingress on the HTTP port (`GET /metrics`), from the
statistics in serve/statistics.py.
Stages are timed where they happen: latency, in-flight and the decode / encode stages in the ingress, queue and
compute time and batch size where the model runs (the ingress or its own replica). Each record costs a few
microseconds of Python; the in-flight gauge, which would be set twice per request, is sampled once a second instead.
"""
import re
from functools import cache

from ray.serve import metrics

_MS_BUCKETS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
# One bucket per size up to 32, so batch sizes can be read back exactly: Ray's exporter reports a
# histogram's _sum from bucket midpoints, not from the observed values.
_BATCH_BUCKETS = list(range(1, 33)) + [48, 64, 96, 128, 256]
_MODEL_TAGS = ("model", "version")


@cache
def requests() -> metrics.Counter:
    return metrics.Counter(
        "streamserve_requests", description="Inference requests by model, version, protocol and outcome.",
        tag_keys=_MODEL_TAGS + ("protocol", "outcome"),
    )


@cache
def request_latency_ms() -> metrics.Histogram:
    return metrics.Histogram(
        "streamserve_request_latency_ms", description="Inference latency in the ingress, decode to encode.",
        boundaries=_MS_BUCKETS, tag_keys=_MODEL_TAGS + ("protocol",),
    )


@cache
def in_flight() -> metrics.Gauge:
    return metrics.Gauge("streamserve_in_flight_requests", description="Inference requests being served.", tag_keys=_MODEL_TAGS)


@cache
def stage_time_ms() -> metrics.Histogram:
    return metrics.Histogram(
        "streamserve_stage_time_ms",
        description="Time per request in the ingress's own stages: decode (body to validated tensors) and encode (outputs "
                    "to the wire). Queue and compute are streamserve_queue_time_ms and streamserve_compute_time_ms.",
        boundaries=[0.05, 0.1, 0.2, 0.5, *_MS_BUCKETS[1:]], tag_keys=_MODEL_TAGS + ("protocol", "stage"),
    )


@cache
def queue_time_ms() -> metrics.Histogram:
    return metrics.Histogram(
        "streamserve_queue_time_ms", description="Time a request waited in the model replica before its batch ran.",
        boundaries=_MS_BUCKETS, tag_keys=_MODEL_TAGS,
    )


@cache
def compute_time_ms() -> metrics.Histogram:
    return metrics.Histogram(
        "streamserve_compute_time_ms", description="Runtime time per executed batch.",
        boundaries=_MS_BUCKETS, tag_keys=_MODEL_TAGS,
    )


@cache
def batch_size() -> metrics.Histogram:
    return metrics.Histogram(
        "streamserve_batch_size", description="Rows per executed batch (requests may carry several rows).",
        boundaries=_BATCH_BUCKETS, tag_keys=_MODEL_TAGS,
    )


@cache
def output_histogram(output: str, boundaries: tuple[float, ...]) -> metrics.Histogram:
    """What a model returns, not how fast: e.g. the quality scores of uploads, per model version.
    Ray accepts only positive boundaries; values at or below the first one land in the first bucket anyway."""
    return metrics.Histogram(
        f"streamserve_output_{re.sub(r'[^a-z0-9_]', '_', output.lower())}",
        description=f"Values of the output {output!r} in served responses (content telemetry).",
        boundaries=[b for b in boundaries if b > 0], tag_keys=_MODEL_TAGS + ("label",),
    )


@cache
def snapshot_info() -> metrics.Gauge:
    return metrics.Gauge(
        "streamserve_snapshot_info", description="1 for the data snapshot a model version's replicas answer from (0 once replaced).",
        tag_keys=_MODEL_TAGS + ("snapshot",),
    )
