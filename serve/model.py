"""One model version in one replica: loads its runtime, batches requests dynamically, streams rollouts.

Triton's dynamic batcher counts rows, not requests (a [3,16] request fills three slots), so Serve's
batch queue is given `batch_size_fn=_rows` and `max_batch_size` from config.pbtxt. Requests whose
non-batch dimensions differ cannot share a tensor: within a batch they run as separate groups.
"""
import asyncio
import math
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from ray import serve

from . import metrics
from .repository import load_model
from .runtimes import load_runtime


def _rows(items) -> int:
    return sum(_batch_rows(inputs) for _, inputs in items)


def _batch_rows(inputs: dict[str, np.ndarray]) -> int:
    return next(iter(inputs.values())).shape[0]


def replica_resources() -> tuple[int, str]:
    """(threads, device) from what Ray assigned this replica; the whole machine outside Ray."""
    try:
        import ray

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
    def __init__(self, repository: str, model: str, version: int):
        self.spec = load_model(Path(repository) / model)
        self.version = int(version)
        self.tags = {"model": model, "version": str(version)}
        threads, device = replica_resources()
        self.runtime = load_runtime(
            self.spec.platform, self.spec.model_file(self.version),
            [t.name for t in self.spec.inputs if not self._is_control_input(t.name)],
            [t.name for t in self.spec.outputs], threads, device,
        )
        # Serve's batch queue lives in a replica; elsewhere (tests, scripts) each call is its own batch.
        self.batching = self.spec.dynamic_batching and _in_serve_replica()
        if self.batching:
            self._infer_batched.set_max_batch_size(self.spec.max_batch_size)
            self._infer_batched.set_batch_wait_timeout_s(self.spec.max_queue_delay_s)

    def _is_control_input(self, name: str) -> bool:
        return self.spec.rollout is not None and name == self.spec.rollout.steps_input

    def describe(self) -> dict:
        return {"model": self.spec.name, "version": self.version, "pid": os.getpid()} | self.runtime.describe()

    async def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.batching:
            return await self._infer_batched((time.perf_counter(), inputs))
        return (await self._run_batch([(time.perf_counter(), inputs)]))[0]

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

    async def stream(self, inputs: dict[str, np.ndarray]):
        """A rollout: run the step `steps` times, feeding declared outputs back as inputs. Each step goes
        through the batch queue, so concurrent rollouts are batched step by step."""
        rollout = self.spec.rollout
        state = dict(inputs)
        steps = int(np.asarray(state.pop(rollout.steps_input)).ravel()[0])
        for _ in range(steps):
            outputs = await self.infer(state)
            yield outputs
            for output, state_input in rollout.state.items():
                state[state_input] = outputs[output]

    def ready(self) -> bool:
        return True
