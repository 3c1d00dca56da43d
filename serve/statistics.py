"""Triton's statistics extension (`GET /v2/models[/{m}[/versions/{v}]]/stats`, gRPC `ModelStatistics`) and the
Triton-named Prometheus counters (`nv_inference_*`, `GET /metrics` on the HTTP port), from one set of counters.

Where each number is counted. A request is counted where it happens, in plain integers (no lock: each process
records on its event loop; a few attribute increments per request and per batch):
- per request, in the data plane of the ingress replica that took it (`DataPlane._track`): `success` / `fail`
  (count and duration from the model call to the last response; a failure also by Triton's reason: REJECTED for a
  full queue or a queue timeout, CANCELED for a client gone, BACKEND for a model's error, OTHER for the rest) and
  `last_inference`;
- per execution, in the ModelWorker of the process that runs the model (the same ingress replica for most models,
  a deployment's replica for the others): `execution_count`, `inference_count` (rows), `batch_stats`, and the
  per-request `queue`, `compute_input` (assembling the batch), `compute_infer` (the runtime) and `compute_output`
  (splitting it), each request charged its batch's durations as Triton does.
Each field is counted in one process only, so summing processes counts nothing twice.

How they are gathered. Every process that records (ingress replicas, deployment replicas) publishes its cumulative
counters to Ray's GCS key-value store under its own key (its actor id), at most once a second while they change. A
statistics or /metrics request asks each deployment that serves a requested version to publish now (Serve routes the
call to one of its replicas), publishes its own ingress replica's counters, then reads every entry and sums them.
Entries are cumulative and only grow, so the sum read later is never smaller: a counter scraped through a load
balancer from any ingress replica does not step back. Outside Ray (unit tests, scripts) the process's own counters
are the whole answer.

Limits. Processes not asked directly (other ingress replicas, a deployment's other replicas) are up to a second
behind. A replica that dies keeps its last published entry, so totals do not drop when Serve replaces it, but its
last second of activity is lost. Entries live as long as the Ray cluster (embedded mode: the server; on KubeRay an
application redeployed on a running cluster keeps counting) and one is kept per replica ever started (a few hundred
bytes per model version). Counted are requests that passed validation and reached the model: a request refused as
malformed or for an unknown model is not (Triton counts what reaches its scheduler). A rollout's steps each count
as an inference and an execution share; a decoupled handler's whole stream is one execution. `response_stats`,
`cache_hit` / `cache_miss` and `memory_usage` are reported empty or zero.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time

logger = logging.getLogger("ray.serve")

PUBLISH_S = 1.0
"""How often a process publishes its counters while they change (the staleness of processes not asked directly)."""
_IDLE_ROUNDS = 30
"""Rounds without a change after which the publisher stops (the next record starts it again)."""
NAMESPACE = b"streamserve"
PREFIX = b"statistics/"
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
_FIELDS = ("success_count", "success_s", "fail_count", "fail_s", "last_inference", "inference_count", "execution_count",
           "executed", "queue_s", "input_s", "infer_s", "output_s")


class ModelStats:
    """One model version's counters in one process. Durations are float seconds (exact to the nanosecond for over a
    day of summed time; converted to Triton's integer ns when reported). `executed`: requests that ran (each counted
    in queue and compute_*, with its batch's compute durations); `batches`: batch size -> [count, input s, infer s,
    output s]; `fail_reasons`: Triton's failure reason -> count; `last_inference`: Unix time in seconds."""

    __slots__ = _FIELDS + ("batches", "fail_reasons")

    def __init__(self):
        for name in _FIELDS:
            setattr(self, name, 0)
        self.batches: dict[int, list] = {}
        self.fail_reasons: dict[str, int] = {}

    def as_list(self) -> list:
        return [[getattr(self, name) for name in _FIELDS], self.batches, self.fail_reasons]

    def add(self, entry: list) -> None:
        """Adds a published entry (`as_list`, JSON-decoded: batch sizes come back as strings)."""
        values, batches, reasons = entry
        for name, value in zip(_FIELDS, values):
            setattr(self, name, max(self.last_inference, value) if name == "last_inference" else getattr(self, name) + value)
        for size, counts in batches.items():
            mine = self.batches.setdefault(int(size), [0, 0, 0, 0])
            for i, value in enumerate(counts):
                mine[i] += value
        for reason, count in reasons.items():
            self.fail_reasons[reason] = self.fail_reasons.get(reason, 0) + count


class Registry:
    """The counters of this process, by (model, version), and their publication (module docstring)."""

    def __init__(self):
        self.models: dict[tuple[str, str], ModelStats] = {}
        self.changes = 0
        self._publisher: asyncio.Task | None = None
        self._published = -1
        self._lock: asyncio.Lock | None = None
        self._store: GcsStore | None | bool = None  # decided on first use: False outside Ray

    def get(self, model: str, version: str) -> ModelStats:
        stats = self.models.get((model, version))
        if stats is None:
            stats = self.models[(model, version)] = ModelStats()
        return stats

    # -- recording (the hot path: a few attribute updates, no allocation) ---------------------------------------
    def request_done(self, stats: ModelStats, seconds: float, reason: str | None) -> None:
        """One request that reached the model: `reason` None for a success, else Triton's failure reason."""
        if reason is None:
            stats.success_count += 1
            stats.success_s += seconds
        else:
            stats.fail_count += 1
            stats.fail_s += seconds
            stats.fail_reasons[reason] = stats.fail_reasons.get(reason, 0) + 1
        stats.last_inference = time.time()
        self.changes += 1
        if self._publisher is None and self._store is not False:
            self._start_publisher()

    def executed(self, stats: ModelStats, rows: int, requests: int, queue_s: float, input_s: float, infer_s: float,
                 output_s: float) -> None:
        """One model execution of `rows` rows for `requests` requests, which waited `queue_s` in total."""
        stats.execution_count += 1
        stats.inference_count += rows
        stats.executed += requests
        stats.queue_s += queue_s
        stats.input_s += requests * input_s
        stats.infer_s += requests * infer_s
        stats.output_s += requests * output_s
        batch = stats.batches.get(rows)
        if batch is None:
            batch = stats.batches[rows] = [0, 0, 0, 0]
        batch[0] += 1
        batch[1] += input_s
        batch[2] += infer_s
        batch[3] += output_s
        self.changes += 1
        if self._publisher is None and self._store is not False:
            self._start_publisher()

    # -- publication ----------------------------------------------------------------------------------------------
    def _start_publisher(self) -> None:
        if self._store is None:
            self._store = GcsStore.connect() or False
            if self._store is False:
                return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # recorded outside an event loop: published with the next record made on one
        self._publisher = loop.create_task(self._publish_while_changing())

    async def _publish_while_changing(self) -> None:
        idle = 0
        try:
            while idle < _IDLE_ROUNDS:
                await asyncio.sleep(PUBLISH_S)
                idle = 0 if self.changes != self._published else idle + 1
                try:
                    await self.publish()
                except Exception as e:  # the GCS busy or restarting: try again next round
                    logger.warning("statistics not published: %s", e)
        finally:
            self._publisher = None

    async def publish(self) -> None:
        """Writes this process's counters to the store now (when changed since the last time)."""
        store = self._store if self._store is not None else (GcsStore.connect() or False)
        self._store = store
        if not store:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one write at a time, so an older snapshot never lands after a newer one
            changes = self.changes
            if changes == self._published:
                return
            payload = json.dumps({f"{m}\n{v}": s.as_list() for (m, v), s in self.models.items()}).encode()
            await store.put(payload)
            self._published = changes

    async def gather(self) -> dict[tuple[str, str], ModelStats]:
        """Every process's counters, summed; call `publish` on the deployments first (DataPlane.statistics)."""
        await self.publish()
        merged: dict[tuple[str, str], ModelStats] = {}
        if not self._store:
            entries = [{f"{m}\n{v}": s.as_list() for (m, v), s in self.models.items()}]
        else:
            entries = [json.loads(value) for value in await self._store.read_all()]
        for entry in entries:
            for key, values in entry.items():
                model, version = key.split("\n", 1)
                merged.setdefault((model, version), ModelStats()).add(values)
        return merged


class GcsStore:
    """Ray's GCS key-value store, through the worker's GCS client (the store Serve keeps its own state in): entries
    under one prefix, this process's own under `key` (prefix + its actor id, unless named). Also the desired model
    states of serve/model_control.py, under their own prefix."""

    def __init__(self, client, key: bytes, prefix: bytes = PREFIX):
        self.client, self.key, self.prefix = client, key, prefix

    @classmethod
    def connect(cls, prefix: bytes = PREFIX) -> GcsStore | None:
        import ray

        if not ray.is_initialized():
            return None
        from ray.experimental import internal_kv

        client = internal_kv.internal_kv_get_gcs_client()
        if client is None:
            return None
        try:
            process = ray.get_runtime_context().get_actor_id() or f"pid-{os.getpid()}"
        except Exception:
            process = f"pid-{os.getpid()}"
        return cls(client, prefix + process.encode(), prefix)

    async def put(self, payload: bytes, name: str | None = None) -> None:
        """This process's entry, or the entry `name` under the prefix."""
        key = self.key if name is None else self.prefix + name.encode()
        await self.client.async_internal_kv_put(key, payload, True, NAMESPACE, timeout=5)

    async def names(self) -> set[str]:
        """The entries' names (their keys without the prefix): one call, for a poll that reads values only on change."""
        keys = await self.client.async_internal_kv_keys(self.prefix, NAMESPACE, timeout=5)
        return {key[len(self.prefix):].decode() for key in keys or ()}

    async def delete(self, name: str) -> None:
        await self.client.async_internal_kv_del(self.prefix + name.encode(), False, NAMESPACE, timeout=5)

    async def read_all(self) -> list[bytes]:
        keys = await self.client.async_internal_kv_keys(self.prefix, NAMESPACE, timeout=5)
        if not keys:
            return []
        values = await self.client.async_internal_kv_multi_get(keys, NAMESPACE, timeout=5)
        return [value for value in values.values() if value]


STATS = Registry()
"""This process's counters: the data plane's and the workers' in the ingress, the workers' in a deployment."""


# -- Triton's shapes ------------------------------------------------------------------------------------------------
def _duration(count: int, seconds: float) -> dict:
    return {"count": count, "ns": round(seconds * 1e9)}


def model_stat(name: str, version: str, stats: ModelStats | None) -> dict:
    """Triton's `$model_stat` JSON object (docs/protocol/extension_statistics.md)."""
    s = stats or ModelStats()
    inference = {
        "success": _duration(s.success_count, s.success_s), "fail": _duration(s.fail_count, s.fail_s),
        "queue": _duration(s.executed, s.queue_s), "compute_input": _duration(s.executed, s.input_s),
        "compute_infer": _duration(s.executed, s.infer_s), "compute_output": _duration(s.executed, s.output_s),
        "cache_hit": _duration(0, 0), "cache_miss": _duration(0, 0),
    }
    batches = [
        {"batch_size": size, "compute_input": _duration(count, input_s), "compute_infer": _duration(count, infer_s),
         "compute_output": _duration(count, output_s)}
        for size, (count, input_s, infer_s, output_s) in sorted(s.batches.items())
    ]
    return {
        "name": name, "version": version, "last_inference": round(s.last_inference * 1000),
        "inference_count": s.inference_count, "execution_count": s.execution_count, "inference_stats": inference,
        "response_stats": {}, "batch_stats": batches, "memory_usage": [],
    }


def _us(seconds: float) -> int:
    return int(seconds * 1e6)


# Triton's counter families (docs/user_guide/metrics.md): name, help, value from the counters.
_COUNTERS = [
    ("nv_inference_request_success", "Number of successful inference requests, all batch sizes", lambda s: s.success_count),
    ("nv_inference_request_failure", "Number of failed inference requests, all batch sizes", None),
    ("nv_inference_count", "Number of inferences performed (does not include cached requests)", lambda s: s.inference_count),
    ("nv_inference_exec_count", "Number of model executions performed (does not include cached requests)", lambda s: s.execution_count),
    ("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds (includes cached requests)",
     lambda s: _us(s.success_s)),
    ("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds (includes cached requests)",
     lambda s: _us(s.queue_s)),
    ("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds (does not include cached requests)",
     lambda s: _us(s.input_s)),
    ("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds (does not include cached requests)",
     lambda s: _us(s.infer_s)),
    ("nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in microseconds (does not include cached requests)",
     lambda s: _us(s.output_s)),
]
METRIC_NAMES = tuple(name for name, _, _ in _COUNTERS)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(versions: list[tuple[str, str]], merged: dict[tuple[str, str], ModelStats]) -> str:
    """Triton's per-model counters in Prometheus' text format, for every served version (zero before traffic)."""
    lines = []
    for name, help_text, value in _COUNTERS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for model, version in versions:
            s = merged.get((model, version)) or ModelStats()
            labels = f'model="{_label(model)}",version="{_label(version)}"'
            if value is None:  # failures by reason, as Triton labels them
                lines += [f'{name}{{model="{_label(model)}",reason="{reason}",version="{_label(version)}"}} '
                          f"{s.fail_reasons.get(reason, 0)}" for reason in FAILURE_REASONS]
            else:
                lines.append(f"{name}{{{labels}}} {value(s)}")
    return "\n".join(lines) + "\n"
