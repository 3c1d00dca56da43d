"""Triton's sequence batcher, as the data plane runs it: correlated requests and implicit state.

A client sends the requests of one sequence (a video's segments, a live sensor feed) with Triton's
request parameters `sequence_id` (non-zero), `sequence_start` on the first and `sequence_end` on the last.
The model's config declares control inputs (START / END / READY / CORRID) and state pairs; here the
control inputs are filled in, the state a request's response carried is fed to the next request of the
same sequence, and requests of one sequence run one at a time, in arrival order.

State lives in the ingress, so model replicas stay stateless and any replica can take any segment.
Sequences idle past `max_sequence_idle_microseconds` (60 s when unset) are dropped; at most
`MAX_LIVE_SEQUENCES` per model version are held, and at most `MAX_SEQUENCES_PER_CALLER` of them for one caller
(the peer's address), so one client cannot fill the table for everyone; beyond that a new sequence is refused as
overload. A sequence belongs to the caller that started it: another caller naming the same id opens its own.
"""
import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np

from .errors import InvalidInput, Overloaded
from .repository import ModelSpec
from .types import InferRequest

MAX_LIVE_SEQUENCES = 1024
MAX_SEQUENCES_PER_CALLER = 256


@dataclass
class _Live:
    state: dict[str, np.ndarray]
    last_used: float
    idle_s: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def sequence_parameters(request: InferRequest, model: str) -> tuple[int | str, bool, bool]:
    params = request.parameters or {}
    sequence_id = params.get("sequence_id", 0)
    if isinstance(sequence_id, str) and sequence_id.isdigit():
        sequence_id = int(sequence_id)
    for flag in ("sequence_start", "sequence_end"):
        if params.get(flag, False) not in (True, False):  # 1 and 0 compare equal to them and are accepted
            raise InvalidInput(f"request parameter {flag!r}: true or false expected, got {params[flag]!r}")
    if not isinstance(sequence_id, (int, str)) or isinstance(sequence_id, bool) or sequence_id in (0, ""):
        raise InvalidInput(
            f"model {model!r} takes sequences: send the request parameters 'sequence_id' (a non-zero integer or a "
            "string), 'sequence_start': true on the first request and 'sequence_end': true on the last"
        )
    return sequence_id, bool(params.get("sequence_start", False)), bool(params.get("sequence_end", False))


def _correlation_id(model: str, control: str, dtype: np.dtype, sequence_id: int | str):
    """The sequence id as the CORRID control's datatype: a string control takes any id (digits for an integer id), an
    integer control an integer id in its range; anything else is the client's mistake, named as such."""
    if dtype == np.dtype(object):
        return str(sequence_id).encode()
    if isinstance(sequence_id, str):
        raise InvalidInput(f"model {model!r}: control {control!r} takes an integer sequence id ({dtype.name}), got the string {sequence_id!r}")
    if dtype.kind in "iu" and not np.iinfo(dtype).min <= sequence_id <= np.iinfo(dtype).max:
        raise InvalidInput(f"model {model!r}: sequence id {sequence_id} does not fit control {control!r} ({dtype.name})")
    return sequence_id


class SequenceTable:
    def __init__(self, max_live: int = MAX_LIVE_SEQUENCES, max_per_caller: int = MAX_SEQUENCES_PER_CALLER):
        self.max_live = max_live
        self.max_per_caller = max_per_caller
        self.live: dict[tuple[str, int, str, int | str], _Live] = {}
        """(model, version, caller, sequence id) -> the sequence's state"""

    def __len__(self) -> int:
        return len(self.live)

    async def run(
        self, spec: ModelSpec, version: int, request: InferRequest,
        infer: Callable[[dict[str, np.ndarray]], Awaitable[dict[str, np.ndarray]]],
    ) -> dict[str, np.ndarray]:
        sequence = spec.sequence
        sequence_id, start, end = sequence_parameters(request, spec.name)
        if spec.max_batch_size > 0 and any(array.shape[0] != 1 for array in request.inputs.values()):
            # Triton's rule (and its wording): one row per request, so the controls and the state are one row too
            raise InvalidInput(f"inference request to model {spec.name!r} must specify batch-size 1 due to requirements of sequence batcher")
        controls = self._controls(spec, sequence_id, start, end)
        key = (spec.name, version, request.caller, sequence_id)
        self._expire(time.monotonic())
        entry = self.live.get(key)
        if entry is None:
            if not start:
                raise InvalidInput(
                    f"model {spec.name!r}: sequence {sequence_id!r} is not open (never started, already ended, or idle "
                    f"for more than {sequence.idle_s:g} s); send 'sequence_start': true to begin it"
                )
            if sum(1 for k in self.live if k[:3] == key[:3]) >= self.max_per_caller:
                raise Overloaded(f"model {spec.name!r} holds {self.max_per_caller} open sequences of this caller; end some or retry later")
            if sum(1 for k in self.live if k[:2] == key[:2]) >= self.max_live:
                raise Overloaded(f"model {spec.name!r} holds {self.max_live} open sequences; end some or retry later")
            entry = self.live[key] = _Live({}, time.monotonic(), sequence.idle_s)
        async with entry.lock:
            if start:  # a start on an open sequence restarts it, as in Triton; a batching model's state has its batch row
                entry.state = {s.input_name: s.initial[None] if spec.max_batch_size > 0 else s.initial for s in sequence.states}
            inputs = dict(request.inputs) | entry.state | controls
            try:
                outputs = await infer(inputs)
            except BaseException:
                if start:  # a sequence whose first request failed never opened
                    self.live.pop(key, None)
                raise
            entry.state = {s.input_name: np.asarray(outputs[s.output_name]) for s in sequence.states}
            entry.last_used = time.monotonic()
            if end:
                self.live.pop(key, None)
        return outputs

    @staticmethod
    def _controls(spec: ModelSpec, sequence_id, start: bool, end: bool) -> dict[str, np.ndarray]:
        shape = [1, 1] if spec.max_batch_size > 0 else [1]
        flags = {"CONTROL_SEQUENCE_START": start, "CONTROL_SEQUENCE_END": end, "CONTROL_SEQUENCE_READY": True}
        controls = {}
        for name, control in spec.sequence.controls.items():
            if control.kind == "CONTROL_SEQUENCE_CORRID":
                value = _correlation_id(spec.name, name, control.dtype, sequence_id)
            else:
                value = control.true if flags[control.kind] else control.false
            controls[name] = np.full(shape, value, dtype=control.dtype)
        return controls

    def _expire(self, now: float) -> None:
        for key, entry in list(self.live.items()):
            if not entry.lock.locked() and now - entry.last_used > entry.idle_s:
                del self.live[key]
