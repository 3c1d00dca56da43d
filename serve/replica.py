"""One model version: loads its runtime, batches requests dynamically, streams rollouts and handler
responses. The same object serves inside the ingress replica (most CPU models: no hop between processes) and
as a deployment of its own (GPU models, jobs, heavy handlers); `serve.serve_config.placement` decides which.

Triton's dynamic batcher counts rows, not requests (a [3,16] request fills three slots), and applies the
config's queue policy: `serve/batcher.py`. Requests whose non-batch dimensions differ cannot share a tensor:
within a batch they run as separate groups.
"""
import asyncio
import logging
import math
import os
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from pathlib import Path
from typing import AsyncIterator, Iterator

import numpy as np

from . import metrics
from .batcher import DynamicBatcher
from .runtimes.python import ModelHandler
from .ensembles import ensemble_request, ensemble_statistics, perturbed_members
from .errors import ModelNotReady
from .repository import ModelKind, ModelSpec, load_model
from .runtimes import load_runtime
from .statistics import STATS

logger = logging.getLogger("ray.serve")  # Serve's logger: lines land in the replica's log with its id

AHEAD = 2
"""A lone rollout's steps computed in the compute thread and not yet taken by its consumer, at most: the one being
sent and the next."""


def _batch_rows(inputs: dict[str, np.ndarray]) -> int:
    return next(iter(inputs.values())).shape[0]


def _pieces(inputs: dict[str, np.ndarray], rows: int) -> list[dict[str, np.ndarray]]:
    """`inputs` in pieces of at most `rows` batch rows (views); whole when it fits or the model does not batch."""
    if rows <= 0 or not inputs or _batch_rows(inputs) <= rows:
        return [inputs]
    return [{name: value[i : i + rows] for name, value in inputs.items()} for i in range(0, _batch_rows(inputs), rows)]


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return parts[0] if len(parts) == 1 else {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def replica_resources() -> tuple[int, str]:
    """(threads, device) from what Ray assigned this replica; the whole machine outside Ray."""
    import ray

    if not ray.is_initialized():  # asking the runtime context would start a local Ray instance
        return os.cpu_count() or 1, "cpu"
    try:
        assigned = ray.get_runtime_context().get_assigned_resources()
        cpus = assigned.get("CPU", 1.0)
        gpus = assigned.get("GPU", 0.0)
    except Exception:
        cpus, gpus = os.cpu_count() or 1, 0.0
    return max(1, math.ceil(cpus)), ("cuda" if gpus > 0 else "cpu")


class ModelWorker:
    """A `ModelBackend` itself: the ingress holds it directly, Serve wraps it in a deployment, tests call it.
    `instance_count` batches may run at once (Triton's instance_group count, for a model hosted in the ingress;
    a deployment scales replicas instead)."""

    def __init__(self, repository: str, model: str, version: int, instance_count: int = 1, spec: ModelSpec | None = None):
        self.spec = spec or load_model(Path(repository) / model)  # `spec`: already read (a live load, serve/model_control.py)
        self.version = int(version)
        self.tags = {"model": model, "version": str(version)}
        self.stats = STATS.get(model, str(version))  # Triton's statistics, per execution (serve/statistics.py)
        threads, device = replica_resources()
        control = self.spec.rollout.control_inputs if self.spec.kind is ModelKind.ROLLOUT else set()
        derived = self.spec.rollout.derived_outputs if self.spec.kind is ModelKind.ROLLOUT else set()
        inputs = [t.name for t in self.spec.inputs if t.name not in control]
        outputs = [t.name for t in self.spec.outputs if t.name not in derived]
        if self.spec.kind is ModelKind.SEQUENCE:  # the data plane feeds these; the runtime sees them as ordinary tensors
            inputs += [*self.spec.sequence.controls, *(s.input_name for s in self.spec.sequence.states)]
            outputs += [s.output_name for s in self.spec.sequence.states]
        self.runtime = load_runtime(self.spec, self.version, inputs, outputs, threads, device)
        self.preprocesses = isinstance(self.runtime, ModelHandler) and type(self.runtime).preprocess is not ModelHandler.preprocess
        self.histograms = self.spec.output_histograms
        self.snapshot = self.spec.snapshot_state()  # what the handler loaded; Serve's user_config names the wanted one
        if self.snapshot:
            metrics.snapshot_info().set(1, tags=self.tags | {"snapshot": self.snapshot["snapshot"]})
        self.instance_count = instance_count
        # Batches run on this worker's own threads, one per instance (Triton's model-instance thread), not on the
        # loop's shared pool of min(32, cores + 4) threads: there, the ingress's slow models (a 300 ms rollout step)
        # could hold every pool thread and stall the fast ones' batches.
        self.compute_threads = ThreadPoolExecutor(max(1, instance_count), thread_name_prefix=f"{model}-{version}")
        # A handler's per-request preprocess (decode, features) runs on threads of its own too: one per core of the
        # replica's share plus one, so one long decode does not hold the rest. Not the loop's shared pool, which other
        # work can hold (a repository load, another model's decodes) and whose min(32, cores + 4) threads, on a share
        # of one or two cores, mostly pass the GIL back and forth.
        self.preprocess_thread_count = threads + 1
        self.preprocess_threads = ThreadPoolExecutor(self.preprocess_thread_count, thread_name_prefix=f"{model}-{version}-pre")
        self.batcher: DynamicBatcher | None = None  # made on first use, on the loop that serves this worker
        self.active = 0
        """Requests inside this worker now (`retire` waits for them)."""
        self.preprocessing = 0
        """Requests in this worker's preprocess threads or waiting for one (`preprocess_backlog`)."""
        self.rollouts = 0
        """Requests that the rollouts in flight queue at each step (an ensemble's pieces count one each): for a rollout
        model, the only callers that can add to a forming batch."""

    async def reconfigure(self, user_config: dict) -> None:
        """Serve calls this when the replica starts and whenever the deployment's `user_config` changes: here, a
        new data snapshot file (`ModelSpec.snapshot_state`). It is Serve's lightweight update: the replica is not
        restarted and keeps receiving requests, so the new snapshot is built in a thread while the old one answers,
        then swapped in. Serve reports the deployment updated once every replica has returned from here."""
        wanted = {"snapshot": user_config.get("snapshot")}
        if not wanted["snapshot"] or wanted == self.snapshot:
            return
        started = time.perf_counter()
        await asyncio.to_thread(self.runtime.use_snapshot, wanted["snapshot"])
        if self.snapshot and self.snapshot["snapshot"] != wanted["snapshot"]:
            metrics.snapshot_info().set(0, tags=self.tags | {"snapshot": self.snapshot["snapshot"]})
        metrics.snapshot_info().set(1, tags=self.tags | {"snapshot": wanted["snapshot"]})
        self.snapshot = wanted
        logger.info("%s/%s: snapshot %s in service after %.2f s", self.spec.name, self.version, wanted["snapshot"],
                    time.perf_counter() - started)

    def describe(self) -> dict:
        return {"model": self.spec.name, "version": self.version, "pid": os.getpid()} | self.runtime.describe()

    async def infer(self, inputs: dict[str, np.ndarray], timeout_s: float | None = None) -> dict[str, np.ndarray]:
        """One request through the batch queue; `timeout_s` is the request's own queue timeout (Triton's `timeout`
        parameter), honoured when the config's queue policy allows overriding it."""
        self.active += 1
        try:
            return await self._infer(inputs, timeout_s)
        finally:
            self.active -= 1

    async def retire(self, reason: str, grace_s: float) -> None:
        """Out of service (unloaded, or replaced by a reload; serve/model_control.py): no new request reaches this
        worker, those already inside finish within `grace_s`. Past it, what still waits or runs fails with UNAVAILABLE
        naming `reason`, and the batch queue's tasks stop (a batch computing in a thread finishes there, unheard)."""
        deadline = time.monotonic() + grace_s
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.batcher is not None:
            self.batcher.close(ModelNotReady(reason))
        self.compute_threads.shutdown(wait=False)
        self.preprocess_threads.shutdown(wait=False)

    async def _preprocess(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return await asyncio.get_running_loop().run_in_executor(self.preprocess_threads, self.runtime.preprocess, inputs)

    async def _infer(self, inputs: dict[str, np.ndarray], timeout_s: float | None = None, admitted: bool = False):
        """`admitted`: a later step of a rollout already accepted, which the queue policy must not refuse halfway."""
        batcher = self._batcher()
        if self.preprocesses:  # per request, so one undecodable input fails alone, not the batch it joins
            self.preprocessing += 1
            try:
                inputs = await self._preprocess(inputs)
            except BaseException:  # refused or cancelled: it will not join the batch that may be waiting for it
                self.preprocessing -= 1
                batcher.backlog_changed()
                raise
            self.preprocessing -= 1
        rows = _batch_rows(inputs) if self.spec.max_batch_size > 0 and inputs else 1
        outputs = await batcher.submit(inputs, rows, timeout_s, admitted)
        self._observe(outputs)
        return outputs

    def _batcher(self) -> DynamicBatcher:
        loop = asyncio.get_running_loop()
        if self.batcher is None or self.batcher.loop is not loop:  # a script may drive the worker from several loops
            spec = self.spec
            self.batcher = DynamicBatcher(
                self._run_batch, name=spec.name, max_batch_size=spec.max_batch_size if spec.dynamic_batching else 1,
                max_queue_delay_s=spec.max_queue_delay_s if spec.dynamic_batching else 0.0,
                policy=spec.queue_policy, instance_count=self.instance_count, loop=loop,
                callers=(lambda: self.rollouts) if spec.kind is ModelKind.ROLLOUT else None,
                backlog=self.preprocess_backlog if self.preprocesses and spec.kind is not ModelKind.ROLLOUT else None,
            )
        return self.batcher

    def preprocess_backlog(self) -> int:
        """Requests waiting for a preprocess thread. The batch queue waits for them (`DynamicBatcher`'s `backlog`) only
        while there are some: then every preprocess thread, and so every core of the replica's share, is busy, and a
        larger batch costs less per row; with none, a batch runs at once. Measured on iqa (loadtest/BENCH.md): waiting
        for any request in preprocess, not only a backlog, cost 5–10 % at 8 clients in a closed loop, whose requests
        then mostly sat in the batch being formed while the cores idled."""
        return max(0, self.preprocessing - self.preprocess_thread_count)

    def _observe(self, outputs: dict[str, np.ndarray]) -> None:
        """Content telemetry: the values of outputs named by `output_histogram.<OUTPUT>` parameters."""
        for name, (boundaries, labels) in self.histograms.items():
            if name not in outputs:
                continue
            values = np.asarray(outputs[name], dtype=np.float64)
            histogram = metrics.output_histogram(name, boundaries)
            if labels and values.shape and values.shape[-1] == len(labels):
                for column, label in enumerate(labels):
                    histogram.observe_many(values[..., column].ravel()[:1024].tolist(), tags=self.tags | {"label": label})
            else:
                histogram.observe_many(values.ravel()[:1024].tolist(), tags=self.tags | {"label": ""})

    async def _run_batch(self, items) -> list[dict[str, np.ndarray]]:
        started = time.perf_counter()
        waits = [started - arrived for arrived, _ in items]
        metrics.queue_time_ms().observe_many([wait * 1000 for wait in waits], tags=self.tags)
        groups = defaultdict(list)  # same input names and non-batch shapes -> one concatenated run
        for index, (_, inputs) in enumerate(items):
            groups[tuple([(k, v.shape[1:]) for k, v in inputs.items()])].append(index)
        results: list = [None] * len(items)
        batching = self.spec.max_batch_size > 0
        for indices in groups.values():
            batch = [items[i][1] for i in indices]
            sizes = [_batch_rows(inp) for inp in batch]
            assembling = time.perf_counter()
            inputs = {name: np.concatenate([inp[name] for inp in batch]) for name in batch[0]} if len(batch) > 1 else batch[0]
            computing = time.perf_counter()
            outputs = await self._compute(inputs)
            splitting = time.perf_counter()
            # Each request's rows of every output, as views; the last request's run to the end, as np.split's last piece
            # does (an output not of the batch's rows, as a non-batching model's, goes whole to its one request).
            start, last = 0, len(indices) - 1
            for position, (i, rows) in enumerate(zip(indices, sizes)):
                stop = start + rows if position < last else None
                results[i] = {name: array[start:stop] for name, array in outputs.items()}
                start += rows
            queued = sum(waits) if len(groups) == 1 else sum(waits[i] for i in indices)
            STATS.executed(self.stats, sum(sizes) if batching else len(indices), len(indices), queued,
                           computing - assembling, splitting - computing, time.perf_counter() - splitting)
        return results

    async def _compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # In a thread, so requests keep arriving in the batch queue while this batch computes.
        started = time.perf_counter()
        outputs = await asyncio.get_running_loop().run_in_executor(self.compute_threads, self.runtime.infer, inputs)
        self._record_compute(time.perf_counter() - started, _batch_rows(inputs) if self.spec.max_batch_size > 0 else 1)
        return outputs

    def _record_compute(self, seconds: float, rows: int) -> None:
        metrics.compute_time_ms().observe(seconds * 1000, tags=self.tags)
        if self.spec.max_batch_size > 0:
            metrics.batch_size().observe(rows, tags=self.tags)

    async def stream(self, inputs: dict[str, np.ndarray]) -> AsyncIterator[dict[str, np.ndarray]]:
        """A decoupled model's responses to one request: a rollout's steps, or what the handler yields."""
        self.active += 1
        try:
            async with aclosing(self._stream(inputs)) as responses:
                async for outputs in responses:
                    yield outputs
        finally:
            self.active -= 1

    async def _stream(self, inputs: dict[str, np.ndarray]) -> AsyncIterator[dict[str, np.ndarray]]:
        if self.spec.kind is ModelKind.ROLLOUT:
            async with aclosing(self._rollout(inputs)) as steps:
                async for outputs in steps:
                    yield outputs
            return
        if self.preprocesses:
            inputs = await self._preprocess(inputs)
        started = time.perf_counter()
        # aclosing: a consumer that stops early closes the handler's generator now, not when the loop collects it
        async with aclosing(_in_thread(self.runtime.stream(inputs))) as responses:
            async for outputs in responses:
                self._observe(outputs)
                yield outputs
        # The whole stream is one execution (serve/statistics.py); a stream stopped early is not counted.
        rows = _batch_rows(inputs) if self.spec.max_batch_size > 0 and inputs else 1
        STATS.executed(self.stats, rows, 1, 0.0, 0.0, time.perf_counter() - started, 0.0)

    async def _rollout(self, inputs: dict[str, np.ndarray]) -> AsyncIterator[dict[str, np.ndarray]]:
        """Run the step `steps` times, feeding declared outputs back as inputs. The first step goes through the batch
        queue (its admission), and so does every later step while other rollouts run, so concurrent rollouts are batched
        step by step; a rollout alone on the worker runs its later steps in the compute thread (`_steps_alone`). An
        ensemble request's members are rows of the state, run in pieces of at most max_batch_size rows; each step
        yields the members' mean and spread."""
        rollout = self.spec.rollout
        state = dict(inputs)
        steps = int(np.asarray(state.pop(rollout.steps_input)).ravel()[0])
        ensemble = ensemble_request(rollout, state)  # checked by the data plane already; here it is read
        if ensemble:
            state = perturbed_members(rollout, state, ensemble)
        # The batcher's callers: each step of this rollout queues one request per piece (`_step`), and a forming batch
        # waits for other rollouts' steps only while some are still to come.
        pieces = len(_pieces(state, self.spec.max_batch_size))
        self.rollouts += pieces
        try:
            step = 0
            while step < steps:
                # Admitted through the batch queue, a rollout that is the worker's only one runs its steps back to
                # back in the compute thread (no event-loop round trip between two steps); another rollout arriving,
                # or a consumer falling behind, brings it back to step-level batching.
                alone = step > 0 and self.rollouts == pieces and not self.preprocesses and not self._batcher().closed
                source = self._steps_alone(state, steps - step, pieces) if alone else self._batched_step(state, admitted=step > 0)
                async with aclosing(source) as computed:
                    async for outputs in computed:
                        step += 1
                        state = self._advanced(state, outputs)
                        yield ensemble_statistics(rollout.ensemble, outputs) if ensemble else outputs
        finally:
            self.rollouts -= pieces

    def _advanced(self, state: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The next step's inputs: the declared outputs fed back in place of their state inputs."""
        return state | {state_input: outputs[output] for output, state_input in self.spec.rollout.state.items()}

    async def _batched_step(self, state: dict[str, np.ndarray], admitted: bool) -> AsyncIterator[dict[str, np.ndarray]]:
        yield await self._step(state, admitted)

    async def _steps_alone(self, state: dict[str, np.ndarray], count: int, pieces: int) -> AsyncIterator[dict[str, np.ndarray]]:
        """Up to `count` steps computed one after the other in the compute thread (an ensemble's `pieces` of at most
        max_batch_size rows one after the other), each step handed to the loop as it finishes. The thread stops before a
        step when another rollout has arrived, when the consumer has not taken the steps computed before (never more
        than `AHEAD` untaken: a slow reader holds no more memory, and does not keep the compute thread), or when the
        consumer has left."""
        loop = asyncio.get_running_loop()
        computed: asyncio.Queue = asyncio.Queue()
        credit, stop = threading.Semaphore(AHEAD), threading.Event()
        batcher, rows = self._batcher(), self.spec.max_batch_size

        def one_step(current: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[tuple[int, float]]]:
            parts, executions = [], []  # (batch rows, seconds) of each piece's execution
            for piece in _pieces(current, rows):
                started = time.perf_counter()
                parts.append(self.runtime.infer(piece))
                executions.append((_batch_rows(piece) if rows > 0 else 1, time.perf_counter() - started))
            return _joined(parts), executions

        def run() -> None:
            current, outcome = state, None
            try:
                for _ in range(count):
                    if stop.is_set() or self.rollouts != pieces or batcher.closed or not credit.acquire(blocking=False):
                        break  # the consumer goes on through the batch queue, which also answers a retired worker
                    outputs, executions = one_step(current)
                    loop.call_soon_threadsafe(computed.put_nowait, (outputs, executions))
                    current = self._advanced(current, outputs)
            except Exception as error:  # noqa: BLE001 - the consumer gets the step's failure
                outcome = error
            try:
                loop.call_soon_threadsafe(computed.put_nowait, outcome)
            except RuntimeError:  # the loop has closed (the process is stopping): no consumer is left to tell
                pass

        loop.run_in_executor(self.compute_threads, run)
        try:
            while isinstance(item := await computed.get(), tuple):
                credit.release()
                outputs, executions = item
                for batch_rows, seconds in executions:
                    metrics.queue_time_ms().observe(0.0, tags=self.tags)
                    self._record_compute(seconds, batch_rows)
                    STATS.executed(self.stats, batch_rows, 1, 0.0, 0.0, seconds, 0.0)
                self._observe(outputs)
                yield outputs
            if item is not None:
                raise item
        finally:
            stop.set()  # a step already running in the thread finishes; no further one starts

    async def _step(self, state: dict[str, np.ndarray], admitted: bool) -> dict[str, np.ndarray]:
        pieces = _pieces(state, self.spec.max_batch_size)
        if len(pieces) == 1:
            return await self._infer(state, admitted=admitted)
        async with asyncio.TaskGroup() as group:  # one piece failing cancels the others
            tasks = [group.create_task(self._infer(piece, admitted=admitted)) for piece in pieces]
        return _joined([task.result() for task in tasks])

    async def ready(self) -> bool:
        return True


class ModelPool:
    """The model versions one replica runs, each its own ModelWorker: the ingress's, or a deployment's (one version,
    or a pool of several). Requests name the version as "model/version". `in_ingress`: the ingress is one replica, so
    a model's instance_group count becomes batches run at once; a deployment has that many replicas instead."""

    def __init__(self, repository: str, keys: list[str] | tuple = (), in_ingress: bool = False):
        self.workers: dict[str, ModelWorker] = {}
        for key in keys:
            name, version = key.rsplit("/", 1)
            instances = load_model(Path(repository) / name).instance_count if in_ingress else 1
            self.workers[key] = ModelWorker(repository, name, int(version), instance_count=instances)

    async def infer(self, key: str, inputs: dict[str, np.ndarray], timeout_s: float | None = None) -> dict[str, np.ndarray]:
        return await self.workers[key].infer(inputs, timeout_s)

    async def stream(self, key: str, inputs: dict[str, np.ndarray]) -> AsyncIterator[dict[str, np.ndarray]]:
        async with aclosing(self.workers[key].stream(inputs)) as responses:
            async for outputs in responses:
                yield outputs

    async def ready(self) -> bool:
        return True

    async def publish_statistics(self) -> None:
        """Publish this replica's counters now: the ingress asks before it answers a statistics request."""
        await STATS.publish()

    async def reconfigure(self, user_config: dict) -> None:
        """Serve's `user_config`: {"snapshots": {"model/version": file}}, each swapped in place (ModelWorker.reconfigure)."""
        for key, snapshot in (user_config.get("snapshots") or {}).items():
            if key in self.workers:
                await self.workers[key].reconfigure({"snapshot": snapshot})

    def describe(self) -> dict:
        return {key: worker.describe() for key, worker in self.workers.items()}


async def _in_thread(generator: Iterator) -> AsyncIterator:
    """Drive a blocking generator from a worker thread, one item at a time. When the consumer stops early
    (client gone), the step in progress is allowed to finish and the generator is closed, so a handler's
    `finally` (killing a job's subprocess, closing a decoder) always runs. Both happen in a worker thread: the
    event loop keeps serving other requests (and Serve's health checks) meanwhile."""
    done = object()
    step = None
    try:
        while True:
            step = asyncio.ensure_future(asyncio.to_thread(next, generator, done))
            item = await asyncio.shield(step)
            step = None
            if item is done:
                return
            yield item
    finally:
        if step is not None:
            try:
                await asyncio.shield(step)
            except BaseException:
                pass
        await asyncio.shield(asyncio.to_thread(generator.close))
