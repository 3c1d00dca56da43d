"""What Triton's statistics add to the hot path: `python -m loadtest.statistics_cost [--repository DIR]`.

Times the two functions that count (serve/statistics.py) against their versions before statistics existed (copied
below, unchanged otherwise), side by side in one run, and prints the difference:
- per request, the data plane's tracking around the model call (`DataPlane._track`: enter and exit, which also
  record Serve's metrics, as before);
- per batch, `ModelWorker._run_batch` around a trivial runtime called inline, one request per batch (the worst case
  per request: nothing shared with other requests).
No Ray and no server, only the changed functions; outside Ray nothing is published, as in a replica between its
once-a-second publications. Interleaved rounds, best of each: the machine is shared.
"""
import argparse
import asyncio
import time
from collections import defaultdict

import numpy as np

from serve import dataplane, metrics
from serve.dataplane import DataPlane, _outcome
from serve.replica import ModelWorker, _batch_rows
from serve.repository import ModelRepository


class _TrackedBefore(dataplane._Tracked):
    """`_Tracked` before statistics."""

    def __init__(self, plane, tags, protocol, received=None):
        self.plane, self.tags, self.protocol, self.received = plane, tags, protocol, received

    async def __aexit__(self, exc_type, exc, tb):
        self.plane._in_flight[(self.tags["model"], self.tags["version"])] -= 1
        tags = self.tags | {"protocol": self.protocol}
        metrics.request_latency_ms().observe((time.perf_counter() - self.started) * 1000, tags=tags)
        metrics.requests().inc(tags=tags | {"outcome": _outcome(exc)})
        return False


async def _run_batch_before(self, items):
    """`ModelWorker._run_batch` before statistics."""
    started = time.perf_counter()
    for arrived, _ in items:
        metrics.queue_time_ms().observe((started - arrived) * 1000, tags=self.tags)
    groups = defaultdict(list)
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


async def _track_cycle(plane: DataPlane, tracked, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        async with tracked(plane, {"model": "simple", "version": "1"}, "grpc"):
            pass
    return (time.perf_counter() - started) / n


async def _batch_cycle(worker: ModelWorker, run_batch, n: int) -> float:
    inputs = {"INPUT0": np.ones((1, 16), np.int32), "INPUT1": np.ones((1, 16), np.int32)}
    started = time.perf_counter()
    for _ in range(n):
        await run_batch(worker, [(time.perf_counter(), inputs)])
    return (time.perf_counter() - started) / n


def measure(repository: str, n: int = 20000, rounds: int = 5) -> dict:
    plane = DataPlane(ModelRepository(repository), {})
    worker = ModelWorker(repository, "simple", 1)

    async def compute(inputs):  # the runtime inline, without its thread: only the bookkeeping around it is timed
        return {"OUTPUT0": inputs["INPUT0"], "OUTPUT1": inputs["INPUT1"]}

    worker._compute = compute
    variants = {"track_after": lambda: _track_cycle(plane, dataplane._Tracked, n),
                "track_before": lambda: _track_cycle(plane, _TrackedBefore, n),
                "batch_after": lambda: _batch_cycle(worker, ModelWorker._run_batch, n // 4),
                "batch_before": lambda: _batch_cycle(worker, _run_batch_before, n // 4)}
    times = {key: [] for key in variants}
    for _ in range(rounds):
        for key, cycle in variants.items():
            times[key].append(asyncio.run(cycle()))
    best = {key: min(values) * 1e6 for key, values in times.items()}
    return best | {"per_request_us": best["track_after"] - best["track_before"],
                   "per_batch_us": best["batch_after"] - best["batch_before"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", default="model_repository")
    r = measure(parser.parse_args().repository)
    print(f"DataPlane._track per request: {r['track_before']:.2f} us before, {r['track_after']:.2f} us with statistics "
          f"(+{r['per_request_us']:.2f} us)")
    print(f"ModelWorker._run_batch, one request: {r['batch_before']:.2f} us before, {r['batch_after']:.2f} us with "
          f"statistics (+{r['per_batch_us']:.2f} us)")


if __name__ == "__main__":
    main()
