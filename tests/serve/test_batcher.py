"""Triton's dynamic batcher semantics (serve/batcher.py): rows per batch, queue delay, queue policy, cancellation."""
import asyncio

import pytest

from serve.batcher import DynamicBatcher, QueuePolicy
from serve.errors import Overloaded


class Recorder:
    """A batch function that records each batch's items and takes `seconds` (released by `gate` when given)."""

    def __init__(self, seconds: float = 0.0, gate: asyncio.Event | None = None):
        self.batches, self.seconds, self.gate = [], seconds, gate

    async def __call__(self, items):
        self.batches.append([item for _, item in items])
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.seconds)
        return [f"out-{item}" for _, item in items]


def batcher(run, **kwargs) -> DynamicBatcher:
    options = {"name": "m", "max_batch_size": 4, "max_queue_delay_s": 0.05, "policy": QueuePolicy()} | kwargs
    return DynamicBatcher(run, **options)


def test_requests_fill_a_batch_counted_in_rows():
    async def main():
        run = Recorder()
        b = batcher(run)
        results = await asyncio.gather(b.submit("a", 1), b.submit("b", 2), b.submit("c", 1), b.submit("d", 3))
        return run.batches, results

    batches, results = asyncio.run(main())
    assert results == ["out-a", "out-b", "out-c", "out-d"]
    assert batches == [["a", "b", "c"], ["d"]]  # 1 + 2 + 1 rows fill the batch of 4; 3 more rows start the next


def test_a_lone_request_runs_after_the_queue_delay_not_before():
    async def main():
        b = batcher(Recorder(), max_queue_delay_s=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await b.submit("a", 1)
        return loop.time() - started

    assert 0.15 < asyncio.run(main()) < 2.0


def test_once_every_caller_has_a_request_queued_the_batch_runs_without_waiting_out_the_delay():
    """A rollout model's callers are its rollouts in flight: with two, the first step waits for the second (and only
    for it), then runs at once; a lone rollout's step does not wait at all."""
    async def main():
        run, callers = Recorder(), {"n": 2}
        b = batcher(run, max_queue_delay_s=1.0, callers=lambda: callers["n"])
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.ensure_future(b.submit("a", 1))
        await asyncio.sleep(0.1)
        assert not first.done() and run.batches == []  # one of two callers queued: the batch waits for the other
        await b.submit("b", 1)
        both = loop.time() - started
        callers["n"] = 1
        started = loop.time()
        await b.submit("c", 1)
        return run.batches, both, loop.time() - started

    batches, both, lone = asyncio.run(main())
    assert batches == [["a", "b"], ["c"]]
    assert both < 0.6 and lone < 0.3  # far less than the 1 s delay


def test_with_a_backlog_the_batch_waits_for_it_and_without_one_it_runs_at_once():
    """A handler's requests held up before the queue (waiting for a preprocess thread): the forming batch waits for
    them, up to the delay, and runs as soon as there are none left; a request with no backlog behind it runs at once."""
    async def main():
        run, backlog = Recorder(), {"n": 0}
        b = batcher(run, max_queue_delay_s=5.0, backlog=lambda: backlog["n"])
        loop = asyncio.get_running_loop()
        started = loop.time()
        await b.submit("lone", 1)
        lone = loop.time() - started
        backlog["n"] = 2
        first = asyncio.ensure_future(b.submit("a", 1))
        await asyncio.sleep(0.1)
        assert not first.done() and run.batches == [["lone"]]  # two more are on their way: the batch waits
        backlog["n"] = 1
        second = asyncio.ensure_future(b.submit("b", 1))
        await asyncio.sleep(0.1)
        assert not second.done()  # one is still held up
        backlog["n"] = 0  # ... and its preprocess refused it: nothing is coming, the batch runs without it
        b.backlog_changed()
        await asyncio.wait_for(asyncio.gather(first, second), 2.0)
        return run.batches, lone

    batches, lone = asyncio.run(main())
    assert batches == [["lone"], ["a", "b"]]
    assert lone < 2.0  # not the 5 s delay


def test_a_full_queue_refuses_at_once_and_a_later_step_of_an_accepted_rollout_is_not_refused():
    async def main():
        gate = asyncio.Event()
        run = Recorder(gate=gate)
        b = batcher(run, max_batch_size=1, max_queue_delay_s=0, policy=QueuePolicy(max_queue_size=2))
        first = asyncio.ensure_future(b.submit("running", 1))
        await asyncio.sleep(0.01)  # picked up: it computes (held by the gate) and leaves the queue
        queued = [asyncio.ensure_future(b.submit(f"q{i}", 1)) for i in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="at capacity"):
            await b.submit("refused", 1)
        admitted = asyncio.ensure_future(b.submit("step", 1, admitted=True))
        gate.set()
        return await asyncio.gather(first, *queued, admitted)

    assert asyncio.run(main()) == ["out-running", "out-q0", "out-q1", "out-step"]


def test_a_request_that_waited_past_its_timeout_is_refused_not_run():
    async def main():
        run = Recorder(seconds=0.2)
        b = batcher(run, max_batch_size=1, max_queue_delay_s=0, policy=QueuePolicy(timeout_s=0.05))
        results = await asyncio.gather(b.submit("a", 1), b.submit("b", 1), return_exceptions=True)
        return run.batches, results

    batches, results = asyncio.run(main())
    assert results[0] == "out-a" and isinstance(results[1], Overloaded)
    assert "past its timeout of 50 ms" in results[1].message
    assert batches == [["a"]]  # "b" was never computed


@pytest.mark.parametrize("allow, refused", [(True, True), (False, False)])
def test_the_request_timeout_overrides_the_default_only_when_the_policy_allows(allow, refused):
    async def main():
        b = batcher(Recorder(seconds=0.2), max_batch_size=1, max_queue_delay_s=0, policy=QueuePolicy(allow_timeout_override=allow))
        return await asyncio.gather(b.submit("a", 1), b.submit("b", 1, timeout_s=0.05), return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[1], Overloaded) == refused


def test_a_cancelled_request_is_dropped_without_being_computed():
    async def main():
        gate = asyncio.Event()
        run = Recorder(gate=gate)
        b = batcher(run, max_batch_size=1, max_queue_delay_s=0)
        first = asyncio.ensure_future(b.submit("a", 1))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(b.submit("gone", 1))
        await asyncio.sleep(0.01)
        gone.cancel()
        gate.set()
        await first
        assert await b.submit("c", 1) == "out-c"
        return run.batches

    assert asyncio.run(main()) == [["a"], ["c"]]


@pytest.mark.parametrize("instances", [1, 2])
def test_instance_count_batches_run_at_once(instances):
    async def main():
        running, most = 0, 0

        async def run(items):
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.05)
            running -= 1
            return [item for _, item in items]

        b = batcher(run, max_batch_size=1, max_queue_delay_s=0, instance_count=instances)
        await asyncio.gather(*(b.submit(i, 1) for i in range(4)))
        return most

    assert asyncio.run(main()) == instances


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    async def main():
        calls = []

        async def run(items):
            calls.append(len(items))
            if len(calls) == 1:
                raise ValueError("boom")
            return [item for _, item in items]

        b = batcher(run, max_queue_delay_s=0)
        with pytest.raises(ValueError, match="boom"):
            await b.submit("a", 1)
        return await b.submit("b", 1)

    assert asyncio.run(main()) == "b"
