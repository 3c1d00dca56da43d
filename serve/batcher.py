"""Triton's dynamic batcher for one model version, on the event loop of whatever process hosts it.

Several model versions share one process (the ingress replica), so each needs a queue of its own;
`@serve.batch` keeps one queue per decorated function, shared by every instance in the process, and has no
notion of Triton's queue policy. This is the part of Triton's scheduler the platform needs:

- a batch is counted in rows, not requests (a [3, 16] request fills three of `max_batch_size` slots);
- once a batch slot is free, the batcher takes what is queued; short of `max_batch_size` rows it waits until
  the oldest request has waited `max_queue_delay_microseconds`, then runs what it has;
- `instance_count` batches run at once (Triton's instance_group count), each in a worker thread, so requests
  keep arriving while one computes;
- `default_queue_policy`: `max_queue_size` requests may wait (one more is refused at once, 503 /
  RESOURCE_EXHAUSTED); a request that waited past `default_timeout_microseconds` (or its own `timeout`
  parameter when `allow_timeout_override` is set) is refused instead of run;
- a request whose caller went away (cancelled) is dropped from the queue without being computed;
- `callers`, when given, counts the requests that may be submitted at all (a rollout model's steps in flight, one per
  ensemble piece): once each is queued, no one else can join the batch and it runs without waiting out the delay. A lone streamed
  rollout does not pay `max_queue_delay_microseconds` at every step.
- `backlog`, when given, counts the requests held up on their way into the queue (waiting for a thread of a
  handler's per-request preprocess: decoding, features). While there are some, every preprocess thread is busy, so
  the forming batch waits for them up to the delay without leaving a core idle, and grows; while there are none, it
  runs at once. Triton waits out the delay whatever comes: there a lone request pays it, and so does a closed loop of a
  few clients, whose requests are all in the batch being formed.
"""
import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from .errors import Overloaded


@dataclass
class QueuePolicy:
    """Triton's `ModelQueuePolicy` as the batcher applies it; 0 means unbounded / no timeout."""

    max_queue_size: int = 0
    timeout_s: float = 0.0
    allow_timeout_override: bool = False


@dataclass
class _Queued:
    item: Any
    rows: int
    arrived: float
    deadline: float  # perf_counter time; inf without a timeout
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    """`await submit(item, rows)` returns `run_batch`'s answer for that item. `run_batch(items)` receives a
    list of (arrival time, item) and returns one result per item, in order; it runs on the event loop and is
    expected to push heavy work to a thread itself."""

    def __init__(
        self, run_batch: Callable[[list], Awaitable[list]], *, name: str, max_batch_size: int, max_queue_delay_s: float,
        policy: QueuePolicy, instance_count: int = 1, loop: asyncio.AbstractEventLoop | None = None,
        callers: Callable[[], int] | None = None, backlog: Callable[[], int] | None = None,
    ):
        self.run_batch = run_batch
        self.name = name
        self.max_rows = max(1, max_batch_size)
        self.delay_s = max_queue_delay_s
        self.policy = policy
        self.instance_count = max(1, instance_count)
        self.loop = loop
        self.callers = callers
        self.backlog = backlog
        self.queue: deque[_Queued] = deque()
        self._rows = 0  # rows in `queue`; a cancelled request's count until it is dropped (a batch may then run early)
        self._waiters: list[asyncio.Future] = []  # the worker tasks waiting for `submit` (`_signalled`)
        self._workers: list[asyncio.Task] = []
        self.closed: Exception | None = None

    def close(self, error: Exception) -> None:
        """Out of service: every request still queued, and any submitted later, fails with `error`; the worker tasks
        stop (the callers of a batch they were running get `error` too)."""
        self.closed = error
        while self.queue:
            q = self._pop()
            if not q.future.done():
                q.future.set_exception(error)
        for task in self._workers:
            task.cancel()

    async def submit(self, item, rows: int, timeout_s: float | None = None, admitted: bool = False):
        """`timeout_s`: the request's own queue timeout; `admitted`: already accepted (a rollout's later step), so
        neither the queue bound nor a timeout applies."""
        if self.closed:
            raise self.closed
        policy = self.policy
        if not admitted and policy.max_queue_size and len(self.queue) >= policy.max_queue_size:
            raise Overloaded(f"model {self.name!r} is at capacity ({len(self.queue)} requests queued); retry later")
        limit = timeout_s if (timeout_s and policy.allow_timeout_override) else policy.timeout_s
        if admitted:
            limit = 0.0
        now = time.perf_counter()
        future = asyncio.get_running_loop().create_future()
        self.queue.append(_Queued(item, rows, now, now + limit if limit else float("inf"), future))
        self._rows += rows
        # A worker is woken only when what it waits for may have changed: the queue was empty (it is idle), or the
        # batch forming is full; not at every arrival, which would cost a task switch and a timer per request.
        if self._waiters and (len(self.queue) == 1 or self._rows >= self.max_rows or self._nobody_coming()):
            self._wake_workers()
        if not self._workers:
            self._workers = [asyncio.create_task(self._work()) for _ in range(self.instance_count)]
        return await future  # cancelled by the caller: the entry stays queued but is skipped when a batch forms

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            try:
                results = await self.run_batch([(q.arrived, q.item) for q in batch])
            except BaseException as e:  # noqa: BLE001 - every waiter gets the batch's failure, the worker lives on
                for q in batch:
                    if not q.future.done():
                        q.future.set_exception(e if isinstance(e, Exception) else self.closed or RuntimeError(repr(e)))
                if not isinstance(e, Exception):
                    raise
                continue
            for q, result in zip(batch, results):
                if not q.future.done():
                    q.future.set_result(result)

    async def _next_batch(self) -> list[_Queued]:
        while not self._live_head():
            await self._signalled()
        # Wait for a full batch until the oldest request has waited the configured delay.
        while self._rows < self.max_rows and self.delay_s > 0 and not self._nobody_coming():
            deadline = self.queue[0].arrived + self.delay_s
            if time.perf_counter() >= deadline:
                break
            await self._signalled(deadline)
            if not self._live_head():
                return []
        batch, rows, now = [], 0, time.perf_counter()
        while self.queue and rows + self.queue[0].rows <= self.max_rows:
            q = self._pop()
            if q.future.done():
                continue
            if now > q.deadline:
                waited = (now - q.arrived) * 1000
                q.future.set_exception(Overloaded(
                    f"model {self.name!r}: the request waited {waited:.0f} ms in the queue, past its timeout of "
                    f"{(q.deadline - q.arrived) * 1000:.0f} ms; retry later"
                ))
                continue
            batch.append(q)
            rows += q.rows
        if not batch and self.queue:  # a request larger than a batch (validation prevents it): run it alone
            batch.append(self._pop())
        return batch

    async def _signalled(self, deadline: float | None = None) -> None:
        """Until `submit` wakes the workers, or until `deadline` (perf_counter time) when given."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        timer = None
        if deadline is not None:
            timer = asyncio.get_running_loop().call_later(max(0.0, deadline - time.perf_counter()), _wake, waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)
            if timer is not None:
                timer.cancel()

    def _pop(self) -> _Queued:
        q = self.queue.popleft()
        self._rows -= q.rows
        return q

    def _live_head(self) -> bool:
        """Drop cancelled requests at the head; True when a live one is queued."""
        while self.queue and self.queue[0].future.done():
            self._pop()
        return bool(self.queue)

    def _nobody_coming(self) -> bool:
        """The forming batch has no one to wait for: every caller has a request queued already (with `callers`), or
        none is held up on its way in (with `backlog`). Unknown otherwise: then the batch waits out the delay."""
        if self.callers is not None:
            return sum(not q.future.done() for q in self.queue) >= self.callers()
        return self.backlog is not None and self.backlog() == 0

    def backlog_changed(self) -> None:
        """A request on its way left without being submitted (its preprocess refused it): the forming batch may have
        no one left to wait for."""
        if self._waiters and self._nobody_coming():
            self._wake_workers()

    def _wake_workers(self) -> None:
        for waiter in self._waiters:
            _wake(waiter)


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
