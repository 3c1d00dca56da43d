"""A rollout inside its ModelWorker, in this process: a lone rollout's next steps compute in the compute thread while
the consumer handles the current one, never more than AHEAD untaken; a slow consumer falls back to the batch queue; a
consumer that leaves leaves no step running; a step that fails there reaches the consumer. The served path (gRPC and
SSE, a cancelled stream, concurrent rollouts batched step by step) is in test_server.py."""
import asyncio
import time
from contextlib import aclosing

import numpy as np
import pytest

from models.examples.heat1d import reference_step
from serve.replica import AHEAD, ModelWorker


@pytest.fixture
def worker(repository):
    worker = ModelWorker(str(repository), "heat1d", 1)
    computed = []
    infer = worker.runtime.infer

    def counting(inputs):
        computed.append(next(iter(inputs.values())).shape[0])  # the rows of this execution
        return infer(inputs)

    worker.runtime.infer = counting
    worker.computed = computed
    yield worker
    worker.compute_threads.shutdown(wait=True)


def rollout_inputs(u, steps):
    return {"U": u, "STEPS": np.array([[steps]], np.int32)}


def assert_chained(u, seen):
    """Each step starts from the previous step's state: the reference solver's rollout."""
    expected = u
    for got in seen:
        expected = reference_step(expected)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_the_next_steps_compute_while_the_consumer_holds_this_one_and_no_further(worker):
    u = np.random.default_rng(0).random((1, 32), dtype=np.float32)
    counting = worker.runtime.infer

    def a_step_of_20_ms(inputs):  # slower than the consumer's hand-over, as a real model's step is
        time.sleep(0.02)
        return counting(inputs)

    worker.runtime.infer = a_step_of_20_ms

    async def run():
        seen, ahead = [], []
        async with aclosing(worker.stream(rollout_inputs(u, 8))) as steps:
            async for outputs in steps:
                seen.append(outputs["U_NEXT"])
                for _ in range(3):  # the consumer is busy with this step (encoding, sending)
                    await asyncio.sleep(0.03)
                    ahead.append(len(worker.computed) - len(seen))
        return seen, ahead

    seen, ahead = asyncio.run(run())
    assert max(ahead) == AHEAD and min(ahead) >= 0, ahead  # steps computed while the consumer held one; never more
    assert_chained(u, seen)
    assert len(worker.computed) == 8 and worker.rollouts == 0


def test_a_slow_consumer_falls_back_to_the_batch_queue_and_the_steps_still_chain(worker):
    u = np.random.default_rng(2).random((1, 32), dtype=np.float32)

    async def run():
        seen = []
        async for outputs in worker.stream(rollout_inputs(u, 12)):
            seen.append(outputs["U_NEXT"])
            await asyncio.sleep(0.05)  # far slower than a step: the thread runs out of credit and stops
            assert len(worker.computed) - len(seen) <= AHEAD
        return seen

    seen = asyncio.run(run())
    assert len(seen) == 12 and len(worker.computed) == 12
    assert_chained(u, seen)


def test_an_ensemble_alone_runs_its_pieces_in_the_thread_within_max_batch_size(worker):
    u = np.random.default_rng(4).random((1, 32), dtype=np.float32)
    inputs = rollout_inputs(u, 5) | {"ENSEMBLE_MEMBERS": np.array([[20]], np.int32)}
    limit = worker.spec.max_batch_size

    async def run():
        return [outputs async for outputs in worker.stream(inputs)]

    steps = asyncio.run(run())
    pieces = -(-20 // limit)
    assert len(steps) == 5 and pieces > 1
    assert len(worker.computed) == 5 * pieces and max(worker.computed) <= limit and sum(worker.computed) == 5 * 20
    assert worker.rollouts == 0


def test_a_consumer_that_leaves_leaves_no_step_running(worker):
    u = np.random.default_rng(1).random((1, 32), dtype=np.float32)

    async def run():
        loop = asyncio.get_running_loop()
        unhandled = []
        loop.set_exception_handler(lambda _, context: unhandled.append(context))
        async with aclosing(worker.stream(rollout_inputs(u, 1000))) as steps:
            async for _ in steps:
                if len(worker.computed) >= 3:
                    break
        left_at = len(worker.computed)
        await asyncio.sleep(0.5)
        return left_at, len(worker.computed), unhandled

    left_at, after, unhandled = asyncio.run(run())
    assert after - left_at <= 1, f"{after - left_at} steps ran after the consumer left"  # at most the one already running
    assert after < 10 and worker.rollouts == 0 and worker.active == 0 and not unhandled


def test_a_step_that_fails_in_the_thread_reaches_the_consumer(worker):
    u = np.random.default_rng(3).random((1, 32), dtype=np.float32)
    counting = worker.runtime.infer

    def failing_fourth(inputs):
        if len(worker.computed) == 3:
            raise RuntimeError("step four failed")
        return counting(inputs)

    worker.runtime.infer = failing_fourth

    async def run():
        seen = []
        with pytest.raises(RuntimeError, match="step four failed"):
            async for outputs in worker.stream(rollout_inputs(u, 10)):
                seen.append(outputs)
        return seen

    assert len(asyncio.run(run())) == 3 and worker.rollouts == 0
