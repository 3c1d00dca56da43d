"""The transport-free core: model lookup, request validation, readiness, authentication and metrics.

The HTTP and gRPC adapters each decode a request once into `InferRequest` and call the same methods
here; a model version is reached through a `ModelBackend` (a Ray Serve handle in production, the
worker object itself in unit tests).
"""
import asyncio
import hmac
import time
from collections import Counter
from contextlib import aclosing
from dataclasses import dataclass
from types import MappingProxyType
from typing import AsyncIterator, Mapping, Protocol

import numpy as np

from . import __version__, metrics
from .classification import classify
from .codecs import element_count, view_raw
from .datatypes import from_numpy
from .ensembles import check_outputs, ensemble_request
from .errors import InferenceError, InvalidInput, ModelNotReady, NotOffered, Overloaded, Unauthenticated
from .repository import ModelKind, ModelRepository, ModelSpec
from .shared_memory import SharedMemoryRegistry
from .sequences import SequenceTable
from .statistics import STATS, model_stat, prometheus_text
from .types import InferRequest, InferResponse

SERVER_NAME = "streamserve"
EXTENSIONS = [
    "binary_tensor_data",  # Triton's binary tensor extension, HTTP (rest.py)
    "classification",  # an output's top k classes as "value:index:label" strings (serve/classification.py)
    "model_configuration",  # GET .../config, gRPC ModelConfig
    "schedule_policy",  # the `timeout` request parameter, where the model's queue policy allows it; `priority` has no
    #                     effect, as in Triton for a model without priority levels (no model here declares any)
    "sequence",  # sequence_id / sequence_start / sequence_end (serve/sequences.py) ...
    "sequence(string_id)",  # ... with string ids too
    "statistics",  # GET .../stats, gRPC ModelStatistics (serve/statistics.py)
    "system_shared_memory",  # register / status / unregister, tensors in /dev/shm regions (serve/shared_memory.py)
]
"""Triton's protocol extensions this server implements, as reported by server metadata, with "model_repository"
(index, load, unload: serve/model_control.py) added where the ingress offers it. Not offered: CUDA
shared memory, trace, logging, generate, parameters (models do not read custom request parameters).
tests/serve/test_extensions_server.py checks each one listed here."""
MODEL_REPOSITORY = "model_repository"
_LOOPBACK_PEERS = ("ipv4:127.", "ipv6:[::1]", "ipv6:%5B::1%5D", "unix:")


class ModelBackend(Protocol):
    async def infer(self, inputs: dict[str, np.ndarray], timeout_s: float | None = None) -> dict[str, np.ndarray]: ...

    def stream(self, inputs: dict[str, np.ndarray]) -> AsyncIterator[dict[str, np.ndarray]]: ...

    async def ready(self) -> bool: ...


class DataPlane:
    def __init__(
        self,
        repository: ModelRepository,
        backends: dict[tuple[str, int], ModelBackend],
        auth_token: str | None = None,
        max_request_bytes: int = 64 * 2**20,
        refused: dict[tuple[str, int], str] | None = None,
        max_response_bytes: int = 64 * 2**20,
    ):
        self.repository = repository
        self.backends = backends
        self.refused = refused or {}
        """(model, version) -> why admission refused it (serve/admission.py): listed, never served."""
        self.unloaded: dict[str, str] = {}
        """model -> why it is out of service (unloaded through the repository extension, serve/model_control.py): its
        versions stay listed, and are refused like those refused at admission."""
        self.auth_token = auth_token
        self.max_request_bytes = max_request_bytes
        self.max_response_bytes = max_response_bytes
        self.sequences = SequenceTable()
        self._in_flight: Counter = Counter()
        self._series: dict[tuple[str, str, str], _RequestSeries] = {}  # (model, version, protocol) -> its series
        self._plans = RequestPlans()  # `keep_plan`, `planned`
        self._sampler: asyncio.Task | None = None

    # -- access ---------------------------------------------------------------------------------
    grpc_loopback_only = False
    """TLS mode without direct ingress: every legitimate gRPC call arrives through the TLS terminator on loopback, so a
    peer from another host reached Serve's plaintext gRPC port (Serve binds it on every interface) and is refused even
    with a token. (With direct ingress the ingress's own gRPC server does TLS and sees each caller's address.)"""

    shared_memory: SharedMemoryRegistry | None = None
    """Triton's system shared memory regions registered with this process (serve/shared_memory.py): the ingress sets
    it; without it the extension's calls answer that it is not offered."""

    def authenticate(self, authorization: str | None, peer: str | None = None, via_grpc: bool = False) -> None:
        """Bearer-token check when a token is configured; otherwise only loopback peers (gRPC passes its peer)."""
        if via_grpc and self.grpc_loopback_only and not (peer or "").startswith(_LOOPBACK_PEERS):
            raise Unauthenticated("gRPC is served over TLS only: connect to the server's TLS port")
        if self.auth_token:
            scheme, _, token = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.auth_token.encode()):
                raise Unauthenticated("missing or invalid bearer token (send 'authorization: Bearer <token>')")
        elif peer is not None and not peer.startswith(_LOOPBACK_PEERS):
            raise Unauthenticated("calls from other hosts need a token: start the server with STREAMSERVE_AUTH_TOKEN set")

    # -- health and metadata -------------------------------------------------------------------
    def live(self) -> bool:
        return True

    async def ready(self) -> bool:
        """Every served version answers; versions refused at admission or unloaded are not served, so they do not count."""
        checks = [self.model_ready(spec.name, v) for spec in self.repository for v in spec.versions if not self.unavailable(spec.name, v)]
        return all(await asyncio.gather(*checks))

    async def model_ready(self, name: str, version: str | int | None = None) -> bool:
        spec, number = self.model(name, version)  # unknown model or version: NOT_FOUND, not "not ready"
        if self.unavailable(name, number):
            return False
        try:
            return bool(await asyncio.wait_for(self.backends[(name, number)].ready(), timeout=5))
        except Exception:  # a replica that cannot answer in time is not ready
            return False

    def server_metadata(self) -> dict:
        return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS + [MODEL_REPOSITORY] * bool(self.control)}

    def model(self, name: str, version: str | int | None = None) -> tuple[ModelSpec, int]:
        spec = self.repository.get(name)
        return spec, spec.resolve(version)

    def model_metadata(self, name: str, version: str | int | None = None) -> dict:
        spec, _ = self.model(name, version)

        def tensors(specs):
            return [{"name": t.name, "datatype": t.datatype, "shape": t.shape(spec.max_batch_size)} for t in specs]

        return {
            "name": spec.name,
            "versions": [str(v) for v in spec.versions],
            "platform": spec.platform,
            "inputs": tensors(spec.inputs),
            "outputs": tensors(spec.outputs),
        }

    # -- statistics -----------------------------------------------------------------------------
    def _served_versions(self, name: str | None = None, version: str | None = None) -> list[tuple[str, int]]:
        """Triton's selection: every served version of every model, every version of one model, or one version
        (an unknown model or version is NOT_FOUND, naming it). A version refused at admission is left out of the
        lists, and so is an unloaded one; named explicitly, it answers with zeros."""
        if not name:
            return [(s.name, v) for s in self.repository for v in s.versions if not self.unavailable(s.name, v)]
        spec = self.repository.get(name)
        if version in (None, ""):
            return [(spec.name, v) for v in spec.versions if not self.unavailable(spec.name, v)]
        return [(spec.name, spec.resolve(version))]

    async def _gathered(self, versions: list[tuple[str, int]]):
        """Every process's counters (serve/statistics.py): the deployments serving these versions publish first."""
        asks = {}
        for key in versions:
            backend = self.backends.get(key)
            publish = getattr(backend, "publish_statistics", None)
            if publish is not None:
                asks.setdefault(getattr(backend, "deployment", key), publish)
        if asks:  # a deployment that does not answer in time counts with what it last published
            await asyncio.wait([asyncio.ensure_future(_quietly(publish)) for publish in asks.values()], timeout=2)
        return await STATS.gather()

    async def statistics(self, name: str | None = None, version: str | None = None) -> dict:
        """Triton's `$stats_model_response`, summed over every replica (serve/statistics.py)."""
        versions = self._served_versions(name, version)
        merged = await self._gathered(versions)
        return {"model_stats": [model_stat(n, str(v), merged.get((n, str(v)))) for n, v in versions]}

    async def prometheus_metrics(self) -> str:
        """Triton's `nv_inference_*` counters for every served version, from the same statistics."""
        versions = self._served_versions()
        merged = await self._gathered(versions)
        return prometheus_text([(n, str(v)) for n, v in versions], merged)

    # -- inference ------------------------------------------------------------------------------
    async def infer(self, request: InferRequest, protocol: str) -> InferResponse:
        """One response. For a rollout model, the whole rollout: each output gains a step axis (after the
        batch dimension when the model batches, first otherwise). For another decoupled model (a job, a
        video's segments), its final response: the verdict or summary, without the progress before it."""
        spec, version = self._checked(request)
        if spec.kind is ModelKind.DECOUPLED:
            final, count = None, 0
            async for final in self._decoupled(spec, version, request, protocol):
                count += 1
            if not count:  # a decoupled model may answer a request with no response at all (Triton's repeat_int32, IN [0])
                raise InvalidInput(f"model {spec.name!r} sent no response to this request; a unary call needs at least one")
            final.parameters["responses"] = count
            return final
        if spec.kind is ModelKind.ROLLOUT:
            steps = await self._whole_rollout(spec, version, request, protocol)
            axis = 1 if spec.max_batch_size > 0 else 0
            outputs = {name: np.stack([r.outputs[name] for r in steps], axis=axis) for name in steps[0].outputs}
            return InferResponse(spec.name, str(version), outputs, id=request.id, parameters={"rollout_steps": len(steps)})
        return await self._infer_once(spec, version, request, protocol)

    async def _whole_rollout(self, spec: ModelSpec, version: int, request: InferRequest, protocol: str) -> list[InferResponse]:
        """Every step of a rollout for one unary response, refused once the first step shows that the whole would
        pass `max_response_bytes`: such a rollout is what the streaming calls are for."""
        wanted = int(request.inputs[spec.rollout.steps_input].ravel()[0])
        steps = []
        async with aclosing(self._rollout(spec, version, request, protocol)) as responses:
            async for response in responses:
                if not steps:
                    projected = wanted * sum(array.nbytes for array in response.outputs.values())
                    if projected > self.max_response_bytes:
                        raise InvalidInput(
                            f"input {spec.rollout.steps_input!r}: {wanted} steps would make a response of about {projected} "
                            f"bytes, over the limit of {self.max_response_bytes}; ask for fewer steps or outputs, or stream "
                            "the rollout (gRPC ModelStreamInfer, or POST .../generate_stream)"
                        )
                steps.append(response)
        return steps

    def stream(self, request: InferRequest, protocol: str) -> AsyncIterator[InferResponse]:
        """Responses for one request: one for an ordinary model, one per step, as computed, for a rollout.
        The request is checked before this returns, so a client error is raised before anything streams."""
        spec, version = self._checked(request)
        if spec.kind is ModelKind.ROLLOUT:
            return self._rollout(spec, version, request, protocol)
        if spec.kind is ModelKind.DECOUPLED:
            return self._decoupled(spec, version, request, protocol)
        return self._once_as_stream(spec, version, request, protocol)

    def index(self) -> list[dict]:
        """Triton's repository index of the models this plane knows: every version, READY or UNAVAILABLE with the
        reason (refused at admission, unloaded). `repository_index` adds the repository's other folders."""
        return [
            {"name": spec.name, "version": str(v)}
            | ({"state": "UNAVAILABLE", "reason": reason} if (reason := self.unavailable(spec.name, v)) else {"state": "READY"})
            for spec in self.repository for v in spec.versions
        ]

    def unavailable(self, name: str, version: int) -> str | None:
        """Why a listed version is not served (unloaded, or the admission check's verdict); None when it is."""
        return self.unloaded.get(name) or self.refused.get((name, version))

    # -- model repository extension (serve/model_control.py) -------------------------------------
    control = None
    """The ingress's `ModelControl`: load and unload, and the index of every folder of the repository. None where the
    extension is not offered (STREAMSERVE_MODEL_CONTROL=0, or a plane outside the ingress)."""

    def model_control(self):
        if self.control is None:
            raise NotOffered("model load and unload are not offered by this server (STREAMSERVE_MODEL_CONTROL=0)")
        return self.control

    def repository_index(self, ready: bool = False) -> list[dict]:
        """Triton's index: with the extension, every folder of the repository (those not loaded too); `ready`: only
        the versions ready for inference."""
        entries = self.control.index() if self.control else self.index()
        return [entry for entry in entries if entry["state"] == "READY"] if ready else entries

    def _checked(self, request: InferRequest) -> tuple[ModelSpec, int]:
        spec, version = self.model(request.model, request.version)
        if reason := self.unavailable(spec.name, version):
            why = "is unavailable" if spec.name in self.unloaded else "was refused at admission"
            raise ModelNotReady(f"model {spec.name!r} version {version} {why}: {reason}")
        self.validate(spec, request)
        _queue_timeout_s(request)  # a malformed `timeout` parameter is refused whatever the model's kind
        return spec, version

    async def _infer_once(self, spec: ModelSpec, version: int, request: InferRequest, protocol: str) -> InferResponse:
        backend = self.backends[(spec.name, version)]
        with self._track(spec.name, version, protocol, request):
            if spec.kind is ModelKind.SEQUENCE:
                outputs = await self.sequences.run(spec, version, request, backend.infer)
            else:
                outputs = await backend.infer(request.inputs, _queue_timeout_s(request))
        return self._response(spec, version, request, outputs)

    async def _decoupled(self, spec: ModelSpec, version: int, request: InferRequest, protocol: str) -> AsyncIterator[InferResponse]:
        # Each response is sent as soon as the handler yields it (no look-ahead to mark the last one final:
        # progress must not lag); the final response is the one carrying the result outputs. Zero responses are
        # allowed, as in Triton's decoupled models.
        with self._track(spec.name, version, protocol, request):
            async with aclosing(self.backends[(spec.name, version)].stream(request.inputs)) as responses:
                async for outputs in responses:
                    yield self._response(spec, version, request, outputs)

    async def _once_as_stream(self, spec: ModelSpec, version: int, request: InferRequest, protocol: str) -> AsyncIterator[InferResponse]:
        yield await self._infer_once(spec, version, request, protocol)

    async def _rollout(self, spec: ModelSpec, version: int, request: InferRequest, protocol: str) -> AsyncIterator[InferResponse]:
        steps = int(request.inputs[spec.rollout.steps_input].ravel()[0])
        with self._track(spec.name, version, protocol, request):
            step = 0
            # Leaving this loop early (client gone, stream cancelled) closes the backend's generator,
            # which stops the rollout in the model replica.
            async with aclosing(self.backends[(spec.name, version)].stream(request.inputs)) as responses:
                async for outputs in responses:
                    step += 1
                    response = self._response(spec, version, request, outputs)
                    response.parameters.update(rollout_step=step, rollout_steps=steps)
                    if step == steps:
                        response.parameters["triton_final_response"] = True
                    yield response

    def check_header(self, spec: ModelSpec, name: str, datatype: str, shape) -> None:
        """An input as the request declares it (name, datatype, shape), checked against the model before its data is
        decoded, so no allocation follows a declared shape the model would refuse anyway."""
        declared = spec.input_by_name
        tensor = declared.get(name)
        if tensor is None:
            raise InvalidInput(f"model {spec.name!r}: unexpected input(s) [{name!r}]; expected {list(declared)}")
        if datatype != tensor.datatype:
            raise InvalidInput(f"input {name!r}: datatype {datatype} does not match the model's {tensor.datatype}")
        element_count(shape, name)  # non-negative integers, a bounded product
        expected = spec.input_shapes[name]
        if not _fits(shape, expected):
            raise InvalidInput(f"input {name!r}: shape {list(shape)} does not match the model's {expected} (-1 = any)")
        if spec.max_batch_size > 0 and not 1 <= shape[0] <= spec.max_batch_size:
            raise InvalidInput(f"input {name!r}: batch size {shape[0]} must be between 1 and max_batch_size {spec.max_batch_size}")

    def validate(self, spec: ModelSpec, request: InferRequest) -> None:
        declared = spec.input_by_name
        missing = [n for n, t in declared.items() if n not in request.inputs and not t.optional]
        unexpected = [n for n in request.inputs if n not in declared]
        if missing or unexpected:
            problems = [f"missing input(s) {missing}"] * bool(missing) + [f"unexpected input(s) {unexpected}"] * bool(unexpected)
            raise InvalidInput(f"model {spec.name!r}: {'; '.join(problems)}; expected {list(declared)}")
        batch_sizes, max_batch_size = set(), spec.max_batch_size
        for name, array in request.inputs.items():
            tensor = declared[name]
            datatype = from_numpy(array.dtype)
            if datatype != tensor.datatype:
                raise InvalidInput(f"input {name!r}: datatype {datatype} does not match the model's {tensor.datatype}")
            expected = spec.input_shapes[name]
            if not _fits(array.shape, expected):
                raise InvalidInput(f"input {name!r}: shape {list(array.shape)} does not match the model's {expected} (-1 = any)")
            minimum = spec.min_shapes.get(name)
            if minimum and any(a < m for a, m in zip(array.shape, minimum)):
                raise InvalidInput(f"input {name!r}: shape {list(array.shape)} is below the model's minimum {list(minimum)}")
            check_values(spec, name, array)
            if max_batch_size > 0:
                if not 1 <= array.shape[0] <= max_batch_size:
                    raise InvalidInput(f"input {name!r}: batch size {array.shape[0]} must be between 1 and max_batch_size {max_batch_size}")
                batch_sizes.add(array.shape[0])
        if len(batch_sizes) > 1:
            raise InvalidInput(f"model {spec.name!r}: inputs disagree on the batch size: {sorted(batch_sizes)}")
        declared = spec.output_datatypes
        for name in request.outputs or []:
            if name not in declared:
                raise InvalidInput(f"model {spec.name!r}: unknown output {name!r}; outputs are {list(declared)}")
        for name in request.classification:
            if declared.get(name) in ("BYTES", "BOOL", None):
                raise InvalidInput(f"output {name!r}: classification needs a numeric output; the model's outputs are {declared}")
        if spec.kind is ModelKind.ROLLOUT:
            steps = np.unique(request.inputs[spec.rollout.steps_input])
            if steps.size != 1 or not 1 <= int(steps[0]) <= spec.rollout.max_steps:
                raise InvalidInput(
                    f"input {spec.rollout.steps_input!r}: one step count between 1 and {spec.rollout.max_steps} expected "
                    f"(every row the same), got {steps.tolist()}"
                )
            check_outputs(spec.rollout, request.outputs, ensemble_request(spec.rollout, request.inputs))

    def keep_plan(self, scope: str, header: bytes, request: InferRequest, adapter=None) -> None:
        """After `request` was answered: what its header settled (model, version, the inputs' names, datatypes and
        shapes, outputs, parameters, classification), kept against that header: an adapter's key for everything a
        request asks but its tensor data (gRPC: the message without its raw contents and id), within `scope` (the
        adapter, and what its URL names). A later request with the same header is checked only where its data can
        differ (`planned`, `infer_planned`). `adapter`: what the adapter made of the header for its own use (HTTP: the
        JSON, which also says how outputs are encoded). Not kept for BYTES inputs (element sizes are data) nor for a
        model that streams or keeps state."""
        spec, version = self.model(request.model, request.version)
        if spec.kind is not ModelKind.UNARY or any(array.dtype == object for array in request.inputs.values()):
            return
        inputs = tuple((name, from_numpy(array.dtype), array.shape, array.nbytes) for name, array in request.inputs.items())
        plan = RequestPlan(spec, version, inputs, request.outputs, MappingProxyType(dict(request.parameters)),
                           MappingProxyType(dict(request.classification)), adapter)
        self._plans.keep((scope, header), plan)

    def planned(self, scope: str, header: bytes) -> "RequestPlan | None":
        """The plan kept for `header` in `scope`, while its model version is served as it was planned (not reloaded,
        unloaded or refused since: such a request goes the whole way, which names what changed, and is planned anew)."""
        plan = self._plans.get((scope, header))
        if plan is not None and (self.repository.models.get(plan.spec.name) is not plan.spec or self.unavailable(plan.spec.name, plan.version)):
            self._plans.drop((scope, header))
            return None
        return plan

    async def infer_planned(self, plan: "RequestPlan", request: InferRequest, protocol: str) -> InferResponse:
        """`infer` for a request decoded by `plan` (its inputs are those the plan's header declared): only their values
        are checked."""
        for name, array in request.inputs.items():
            check_values(plan.spec, name, array)
        return await self._infer_once(plan.spec, plan.version, request, protocol)

    def _response(self, spec: ModelSpec, version: int, request: InferRequest, outputs: dict) -> InferResponse:
        declared = spec.output_datatypes
        wanted = request.outputs or declared
        if spec.kind in (ModelKind.DECOUPLED, ModelKind.ROLLOUT):  # progress responses, ensembles: a subset of the outputs
            wanted = [name for name in wanted if name in outputs]
        for name in wanted:  # the runtime must honour the config: a mismatch is ours, not the client's
            if from_numpy(outputs[name].dtype) != declared[name]:
                raise RuntimeError(f"model {spec.name} output {name} is {outputs[name].dtype}, config says {declared[name]}")
        size = sum(outputs[n].nbytes for n in wanted if n not in request.classification)
        if size > self.max_response_bytes:  # every response, a stream's messages too: never encoded past the limit
            raise InvalidInput(f"model {spec.name!r}: the response holds {size} bytes of outputs, over the limit of "
                               f"{self.max_response_bytes}; ask for fewer outputs or a smaller input")
        batched = spec.max_batch_size > 0
        return InferResponse(spec.name, str(version), {
            n: classify(outputs[n], request.classification[n], spec.labels.get(n, []), batched) if n in request.classification else outputs[n]
            for n in wanted
        }, id=request.id or "")

    def _track(self, model: str, version: int, protocol: str, request: InferRequest | None = None):
        return _Tracked(self, self._request_series(model, str(version), protocol), request.received if request else None)

    def _request_series(self, model: str, version: str, protocol: str) -> "_RequestSeries":
        key = (model, version, protocol)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = _RequestSeries.of(model, version, protocol)
        return found

    def record_encode(self, response: InferResponse, seconds: float, protocol: str) -> None:
        """The adapter's encode stage for one response (called by the adapter, which does the encoding)."""
        series = self._request_series(response.model, response.version, protocol)
        metrics.stage_time_ms().observe_series((seconds * 1000,), series.encode)

    def _sample_in_flight(self) -> None:
        """Keeps a task that copies the in-flight counts into their gauge once a second while requests come in."""
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.get_running_loop().create_task(self._report_in_flight())

    async def _report_in_flight(self) -> None:
        reported: dict = {}
        while True:
            for (model, version), count in list(self._in_flight.items()):
                if reported.get((model, version)) != count:
                    metrics.in_flight().set(count, tags={"model": model, "version": version})
                    reported[(model, version)] = count
            if not any(self._in_flight.values()):
                return  # idle: the next request starts a new sampler
            await asyncio.sleep(1.0)


def _fits(shape, expected: list[int]) -> bool:
    """A shape against a declared one, where -1 matches any size (a loop, not a generator: it runs per input)."""
    if len(shape) != len(expected):
        return False
    for want, got in zip(expected, shape):
        if want != -1 and want != got:
            return False
    return True


@dataclass(frozen=True)
class RequestPlan:
    """What a checked request header settled (`DataPlane.keep_plan`)."""

    spec: ModelSpec
    version: int
    inputs: tuple[tuple[str, str, tuple[int, ...], int], ...]
    """(name, datatype, shape, bytes) of each input, in the request's order."""
    outputs: list[str] | None
    parameters: Mapping
    classification: Mapping
    adapter: object = None

    def request(self, buffers: list, request_id: str, received: float) -> InferRequest | None:
        """The request of this header with these raw buffers (one per input, in the plan's order); None when they do not
        fit the plan (the whole way names the fault)."""
        if len(buffers) != len(self.inputs):
            return None
        inputs = {}
        for (name, datatype, shape, size), buffer in zip(self.inputs, buffers):
            if len(buffer) != size:
                return None
            inputs[name] = view_raw(buffer, datatype, shape)
        return InferRequest(self.spec.name, str(self.version), inputs, self.outputs, request_id, self.parameters, received,
                            self.classification)


class RequestPlans:
    """Request plans (`DataPlane.keep_plan`) by (scope, header), the latest `size` of them: a client's requests repeat
    one header, and headers that never repeat only ever replace the oldest."""

    def __init__(self, size: int = 256, max_header_bytes: int = 4096):
        self.size, self.max_header_bytes = size, max_header_bytes
        self._by_header: dict[tuple[str, bytes], RequestPlan] = {}

    def get(self, key: tuple[str, bytes]) -> RequestPlan | None:
        return self._by_header.get(key)

    def drop(self, key: tuple[str, bytes]) -> None:
        self._by_header.pop(key, None)

    def keep(self, key: tuple[str, bytes], plan: RequestPlan) -> None:
        if len(key[1]) > self.max_header_bytes:
            return
        if len(self._by_header) >= self.size:
            del self._by_header[next(iter(self._by_header))]
        self._by_header[key] = plan


def check_values(spec: ModelSpec, name: str, array: np.ndarray) -> None:
    """What the model refuses in an input's values, beyond its declared datatype and shape."""
    if spec.reject_non_finite and array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(f"input {name!r}: holds NaN or infinite values")
    if name in spec.text_limits:
        _check_text(name, array, *spec.text_limits[name])


def _queue_timeout_s(request: InferRequest) -> float | None:
    """Triton's request parameter `timeout` (microseconds in the queue), used where the model's queue policy allows
    overriding its default (`allow_timeout_override`)."""
    value = (request.parameters or {}).get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"request parameter 'timeout': a non-negative integer (microseconds) expected, got {value!r}")
    return value / 1e6 or None


def _check_text(name: str, array: np.ndarray, max_bytes: int | None, max_words: int | None) -> None:
    for index, item in enumerate(array.ravel()):
        if not item.strip():
            raise InvalidInput(f"input {name!r}: element {index} is empty; text expected")
        if max_bytes is not None and len(item) > max_bytes:
            raise InvalidInput(f"input {name!r}: element {index} has {len(item)} bytes, the limit is {max_bytes}")
        if max_words is not None and len(item.split()) > max_words:
            raise InvalidInput(f"input {name!r}: element {index} has {len(item.split())} words, the limit is {max_words}")


async def _quietly(call) -> None:
    try:
        await call()
    except Exception:
        pass


def _failure_reason(exc: BaseException) -> str:
    """Triton's failure reasons (docs/user_guide/metrics.md)."""
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "CANCELED"
    if isinstance(exc, Overloaded):  # queue full or waited past its timeout
        return "REJECTED"
    return "OTHER" if isinstance(exc, InferenceError) else "BACKEND"


def _outcome(exc: BaseException | None) -> str:
    """success / client_error (4xx-class) / cancelled (the client left) / failure (ours)."""
    if exc is None:
        return "success"
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    return "client_error" if isinstance(exc, InferenceError) and exc.http_status < 500 else "failure"


@dataclass(frozen=True)
class _RequestSeries:
    """The metric series a request of one model version over one protocol is counted in, made once per triple
    (`DataPlane._request_series`), not per request."""

    model_version: tuple[str, str]
    stats: object  # serve/statistics.py's counters of the version
    decode: tuple
    encode: tuple
    latency: tuple
    outcomes: dict[str, tuple]

    @classmethod
    def of(cls, model: str, version: str, protocol: str) -> "_RequestSeries":
        tags = {"model": model, "version": version, "protocol": protocol}
        return cls((model, version), STATS.get(model, version), metrics.series_key(tags | {"stage": "decode"}),
                   metrics.series_key(tags | {"stage": "encode"}), metrics.series_key(tags),
                   {outcome: metrics.series_key(tags | {"outcome": outcome})
                    for outcome in ("success", "client_error", "cancelled", "failure")})


class _Tracked:
    """Counts a request in flight and records its decode stage, latency and outcome, whatever happens inside. A plain
    context manager, though it wraps awaits: entering and leaving await nothing, so no coroutine is made for them."""

    def __init__(self, plane: DataPlane, series: _RequestSeries, received: float | None = None):
        self.plane, self.series, self.received = plane, series, received

    def __enter__(self):
        self.started = time.perf_counter()
        self.plane._in_flight[self.series.model_version] += 1
        self.plane._sample_in_flight()
        if self.received is not None:
            metrics.stage_time_ms().observe_series(((self.started - self.received) * 1000,), self.series.decode)

    def __exit__(self, exc_type, exc, tb):
        self.plane._in_flight[self.series.model_version] -= 1
        seconds = time.perf_counter() - self.started
        STATS.request_done(self.series.stats, seconds, None if exc is None else _failure_reason(exc))
        metrics.request_latency_ms().observe_series((seconds * 1000,), self.series.latency)
        metrics.requests().inc_series(1.0, self.series.outcomes[_outcome(exc)])
        return False
