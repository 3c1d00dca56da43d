"""One model version in one replica: loads its runtime, batches requests dynamically, streams rollouts
and handler responses.

Triton's dynamic batcher counts rows, not requests (a [3,16] request fills three slots), so Serve's
batch queue is given `batch_size_fn=_rows` and `max_batch_size` from config.pbtxt. Requests whose
non-batch dimensions differ cannot share a tensor: within a batch they run as separate groups.
"""
import asyncio
import logging
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import AsyncIterator, Iterator

import numpy as np
from ray import serve

from . import metrics
from .handler import ModelHandler
from .repository import load_model
from .runtimes import load_runtime

logger = logging.getLogger("ray.serve")  # Serve's logger: lines land in the replica's log with its id


def _rows(items) -> int:
    return sum(_batch_rows(inputs) for _, inputs in items)


def _batch_rows(inputs: dict[str, np.ndarray]) -> int:
    return next(iter(inputs.values())).shape[0]


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


def _in_serve_replica() -> bool:
    try:
        serve.get_replica_context()
        return True
    except Exception:
        return False


class ModelWorker:
    """A `ModelBackend` itself: Serve wraps it in a deployment, tests and scripts call it directly."""

    def __init__(self, repository: str, model: str, version: int):
        self.spec = load_model(Path(repository) / model)
        self.version = int(version)
        self.tags = {"model": model, "version": str(version)}
        threads, device = replica_resources()
        inputs = [t.name for t in self.spec.inputs if not self._is_control_input(t.name)]
        outputs = [t.name for t in self.spec.outputs]
        if self.spec.sequence:  # the data plane feeds these; the runtime sees them as ordinary tensors
            inputs += [*self.spec.sequence.controls, *(s.input_name for s in self.spec.sequence.states)]
            outputs += [s.output_name for s in self.spec.sequence.states]
        self.runtime = load_runtime(self.spec, self.version, inputs, outputs, threads, device)
        self.preprocesses = isinstance(self.runtime, ModelHandler) and type(self.runtime).preprocess is not ModelHandler.preprocess
        self.histograms = self.spec.output_histograms
        self.snapshot = self.spec.snapshot_state()  # what the handler loaded; Serve's user_config names the wanted one
        if self.snapshot:
            metrics.snapshot_info().set(1, tags=self.tags | {"snapshot": self.snapshot["snapshot"]})
        # Serve's batch queue lives in a replica; elsewhere (tests, scripts) each call is its own batch.
        self.batching = self.spec.dynamic_batching and _in_serve_replica()
        if self.batching:
            self._infer_batched.set_max_batch_size(self.spec.max_batch_size)
            self._infer_batched.set_batch_wait_timeout_s(self.spec.max_queue_delay_s)

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

    def _is_control_input(self, name: str) -> bool:
        return self.spec.rollout is not None and name == self.spec.rollout.steps_input

    def describe(self) -> dict:
        return {"model": self.spec.name, "version": self.version, "pid": os.getpid()} | self.runtime.describe()

    async def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.preprocesses:  # per request, so one undecodable input fails alone, not the batch it joins
            inputs = await asyncio.to_thread(self.runtime.preprocess, inputs)
        if self.batching:
            outputs = await self._infer_batched((time.perf_counter(), inputs))
        else:
            outputs = (await self._run_batch([(time.perf_counter(), inputs)]))[0]
        self._observe(outputs)
        return outputs

    def _observe(self, outputs: dict[str, np.ndarray]) -> None:
        """Content telemetry: the values of outputs named by `output_histogram.<OUTPUT>` parameters."""
        for name, (boundaries, labels) in self.histograms.items():
            if name not in outputs:
                continue
            values = np.asarray(outputs[name], dtype=np.float64)
            histogram = metrics.output_histogram(name, boundaries)
            if labels and values.shape and values.shape[-1] == len(labels):
                for column, label in enumerate(labels):
                    for value in values[..., column].ravel()[:1024]:
                        histogram.observe(float(value), tags=self.tags | {"label": label})
            else:
                for value in values.ravel()[:1024]:
                    histogram.observe(float(value), tags=self.tags | {"label": ""})

    @serve.batch(batch_size_fn=_rows)
    async def _infer_batched(self, items):
        return await self._run_batch(items)

    async def _run_batch(self, items) -> list[dict[str, np.ndarray]]:
        started = time.perf_counter()
        for arrived, _ in items:
            metrics.queue_time_ms().observe((started - arrived) * 1000, tags=self.tags)
        groups = defaultdict(list)  # same non-batch shapes -> one concatenated run
        for index, (_, inputs) in enumerate(items):
            groups[tuple((k, v.shape[1:]) for k, v in sorted(inputs.items()))].append(index)
        results: list = [None] * len(items)
        for indices in groups.values():
            batch = [items[i][1] for i in indices]
            outputs = await self._compute(
                {name: np.concatenate([inp[name] for inp in batch]) for name in batch[0]} if len(batch) > 1 else batch[0]
            )
            bounds = np.cumsum([_batch_rows(inp) for inp in batch])[:-1]
            split = {name: np.split(array, bounds) for name, array in outputs.items()}
            for position, i in enumerate(indices):
                results[i] = {name: parts[position] for name, parts in split.items()}
        return results

    async def _compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # In a thread, so requests keep arriving in the batch queue while this batch computes.
        started = time.perf_counter()
        outputs = await asyncio.to_thread(self.runtime.infer, inputs)
        metrics.compute_time_ms().observe((time.perf_counter() - started) * 1000, tags=self.tags)
        if self.spec.max_batch_size > 0:
            metrics.batch_size().observe(_batch_rows(inputs), tags=self.tags)
        return outputs

    async def stream(self, inputs: dict[str, np.ndarray]) -> AsyncIterator[dict[str, np.ndarray]]:
        """A decoupled model's responses to one request: a rollout's steps, or what the handler yields."""
        if self.spec.rollout:
            async for outputs in self._rollout(inputs):
                yield outputs
            return
        if self.preprocesses:
            inputs = await asyncio.to_thread(self.runtime.preprocess, inputs)
        async for outputs in _in_thread(self.runtime.stream(inputs)):
            self._observe(outputs)
            yield outputs

    async def _rollout(self, inputs: dict[str, np.ndarray]) -> AsyncIterator[dict[str, np.ndarray]]:
        """Run the step `steps` times, feeding declared outputs back as inputs. Each step goes through
        the batch queue, so concurrent rollouts are batched step by step."""
        rollout = self.spec.rollout
        state = dict(inputs)
        steps = int(np.asarray(state.pop(rollout.steps_input)).ravel()[0])
        for _ in range(steps):
            outputs = await self.infer(state)
            yield outputs
            for output, state_input in rollout.state.items():
                state[state_input] = outputs[output]

    async def ready(self) -> bool:
        return True


async def _in_thread(generator: Iterator) -> AsyncIterator:
    """Drive a blocking generator from a worker thread, one item at a time. When the consumer stops early
    (client gone), the step in progress is allowed to finish and the generator is closed, so a handler's
    `finally` (killing a job's subprocess, closing a decoder) always runs."""
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
                await step
            except BaseException:
                pass
        generator.close()
