"""gRPC adapter: `inference.GRPCInferenceService` (KServe v2 in Triton's dialect) over the data plane.

Served by the ingress replica's own gRPC server (serve/grpc_ingress.py) with direct ingress, or called by Ray
Serve's gRPC proxy: each RPC is a method of the same name taking the request message and a `grpc_context`; errors
are reported by setting the status on that context and returning an empty response. Every RPC of the service is
defined, so an unsupported one answers UNIMPLEMENTED instead of Serve's INTERNAL with a traceback.
"""
import logging
import time
from functools import partial

import grpc
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from streamserve_proto import RPC_NAMES, model_config_pb2, service_pb2 as pb

from .classification import parse_count
from .codecs import decode_contents, decode_raw, encode_raw
from .dataplane import DataPlane
from .datatypes import from_numpy, numpy_dtype
from .errors import InferenceError, InvalidInput
from .shared_memory import PARAMETERS, Caller, RegionUse, cuda_status, grpc_address, names_shared_memory, offered, refuse_cuda
from .types import InferRequest, InferResponse

logger = logging.getLogger("streamserve.grpc")


_RAW_FIELD = pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number
_COPIED_BELOW = 64 * 2**10
"""Requests smaller than this are parsed whole by protobuf: copying their tensor bytes costs less than walking the
message in Python."""


def parse_infer_request(wire: bytes) -> tuple[pb.ModelInferRequest, list]:
    """A received ModelInferRequest: the message without its `raw_input_contents`, and those apart (views of `wire`
    for a large request).

    protobuf's parser copies every bytes field, and these hold the tensor data (up to the request limit): read in
    place, a large request's numeric tensors alias the received message and BYTES elements are copied once. Only the
    top level of the message is walked; the rest (inputs, outputs, parameters: a few hundred bytes) is parsed by
    protobuf."""
    if len(wire) < _COPIED_BELOW:
        try:
            message = pb.ModelInferRequest.FromString(wire)
        except DecodeError as e:
            raise InvalidInput(f"malformed ModelInferRequest: {e}") from None
        raw = list(message.raw_input_contents)
        message.ClearField("raw_input_contents")
        return message, raw
    view, position, kept, raw = memoryview(wire), 0, [], []
    while position < len(view):
        start = position
        key, position = _varint(view, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, position = _varint(view, position)
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        elif wire_type == 2:
            length, position = _varint(view, position)
            position += length
            if position <= len(view) and field == _RAW_FIELD:
                raw.append(view[position - length : position])
                continue
        else:
            raise InvalidInput(f"malformed ModelInferRequest: field {field} has wire type {wire_type}")
        if position > len(view):
            raise InvalidInput("malformed ModelInferRequest: the message ends inside a field")
        kept.append(view[start:position])
    try:
        return pb.ModelInferRequest.FromString(b"".join(kept)), raw
    except DecodeError as e:
        raise InvalidInput(f"malformed ModelInferRequest: {e}") from None


def _varint(view: memoryview, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while position < len(view) and shift < 64:
        byte = view[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    raise InvalidInput("malformed ModelInferRequest: a varint runs past the message")


def decode_infer_request(request: pb.ModelInferRequest, check_header=None, regions: RegionUse | None = None,
                         raw: list | None = None) -> InferRequest:
    """`check_header(name, datatype, shape)` vets each input as declared before its data is decoded; `regions` reads
    the inputs whose parameters place them in shared memory (serve/shared_memory.py); `raw`: the raw contents read
    apart from the message (`parse_infer_request`), else the message's own."""
    request, placed = _shared_memory_inputs(request, check_header, regions)

    raw = request.raw_input_contents if raw is None else raw
    for tensor in request.inputs if raw else ():
        if tensor.HasField("contents"):  # Triton's wording, which clients match on
            raise InvalidInput(f"contents field must not be specified when using raw_input_contents for {tensor.name!r} "
                               f"for model {request.model_name!r}")
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; use raw for all inputs or none")
    inputs = dict(placed)
    for i, tensor in enumerate(request.inputs):
        if tensor.name in inputs:
            raise InvalidInput(f"input {tensor.name!r} appears twice")
        shape = list(tensor.shape)
        if check_header:
            numpy_dtype(tensor.datatype, tensor.name)
            check_header(tensor.name, tensor.datatype, shape)
        if raw:
            inputs[tensor.name] = decode_raw(raw[i], tensor.datatype, shape, tensor.name)
        else:
            inputs[tensor.name] = decode_contents(tensor.contents, tensor.datatype, shape, tensor.name)
    classes = {o.name: parse_count(_parameter_value(o.parameters["classification"]), o.name)
               for o in request.outputs if "classification" in o.parameters}
    return InferRequest(
        request.model_name, request.model_version or None, inputs,
        [o.name for o in request.outputs] or None, id=request.id,
        parameters={key: _parameter_value(value) for key, value in request.parameters.items()},
        classification={name: k for name, k in classes.items() if k},
    )


def _shared_memory_inputs(request: pb.ModelInferRequest, check_header, regions: RegionUse | None):
    """The inputs placed in shared memory, read from their regions, and the request without them: Triton counts
    `raw_input_contents` for the other inputs only."""
    placed, others = {}, []
    if regions is None:
        return request, placed
    for tensor in request.inputs:
        if not names_shared_memory(tensor.parameters):
            others.append(tensor)
            continue
        if tensor.name in placed:
            raise InvalidInput(f"input {tensor.name!r} appears twice")
        if tensor.HasField("contents"):
            raise InvalidInput(f"input {tensor.name!r}: has contents and a shared memory region; send one of them")
        shape = list(tensor.shape)
        numpy_dtype(tensor.datatype, tensor.name)
        if check_header:
            check_header(tensor.name, tensor.datatype, shape)
        placed[tensor.name] = regions.input(tensor.name, tensor.datatype, shape, _shared_memory_parameters(tensor.parameters))
    if not placed:
        return request, placed
    rest = pb.ModelInferRequest()
    rest.CopyFrom(request)
    del rest.inputs[:]
    rest.inputs.extend(others)
    return rest, placed


def _shared_memory_parameters(parameters) -> dict:
    return {key: _parameter_value(parameters[key]) for key in PARAMETERS if key in parameters}


def _header(request: pb.ModelInferRequest) -> bytes:
    """What a request asks, apart from its tensor data and id (a message parsed without its raw contents): requests
    with the same header differ only in their data."""
    request_id = request.id
    if not request_id:
        return request.SerializeToString()
    request.ClearField("id")
    header = request.SerializeToString()
    request.id = request_id
    return header


def _peer_host(peer: str) -> str:
    """'ipv4:10.0.0.7:51234' -> '10.0.0.7', 'ipv6:[::1]:51234' -> '::1': the caller without its port."""
    address = peer.partition(":")[2]
    if address.startswith("["):
        return address[1:].partition("]")[0]
    return address.rpartition(":")[0] or address


def _parameter_value(parameter: pb.InferParameter):
    """Triton's request parameters (sequence_id, sequence_start, ...) as plain Python values."""
    kind = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, kind) if kind else None


def encode_infer_response(response: InferResponse, regions: RegionUse | None = None) -> pb.ModelInferResponse:
    """Outputs always travel raw: tritonclient's `as_numpy` reads only `raw_output_contents`. An output placed in shared
    memory is written there and its raw contents left empty, as Triton does."""
    message = pb.ModelInferResponse(model_name=response.model, model_version=response.version, id=response.id)
    for name, array in response.outputs.items():
        message.outputs.add(name=name, datatype=from_numpy(array.dtype), shape=array.shape)
        placed = regions is not None and regions.write_output(name, array)
        message.raw_output_contents.append(b"" if placed else encode_raw(np.asarray(array)))
    for key, value in response.parameters.items():
        parameter = message.parameters[key]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int):
            parameter.int64_param = value
        else:
            parameter.string_param = str(value)
    return message


def _failed(context, error: Exception, empty):
    """A unary call's answer to `error`: the client's mistake as its status and message, anything else INTERNAL."""
    if isinstance(error, InferenceError):
        return _fail(context, error.grpc_code, error.message, empty)
    logger.error("unhandled error in gRPC call", exc_info=error)
    return _fail(context, grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); see the server log", empty)


def _fail(context, code: grpc.StatusCode, message: str, empty):
    context.set_code(code)
    context.set_details(message)
    return empty


class GRPCInferenceServicer:
    """Mixed into the Ray Serve ingress, which sets `self.plane`."""

    plane: DataPlane

    def _authenticate(self, context) -> None:
        # The metadata is read only where a token is configured: gathering it costs every call.
        authorization = dict(context.invocation_metadata()).get("authorization") if self.plane.auth_token else None
        self.plane.authenticate(authorization, context.peer(), via_grpc=True)

    def _received(self, request: bytes | pb.ModelInferRequest) -> tuple[pb.ModelInferRequest, list | None]:
        """The request as the server receives it (bytes: streamserve_proto.RECEIVED_AS_BYTES), or a message (a caller
        in this process): its size checked before anything is parsed."""
        size = len(request) if isinstance(request, bytes) else request.ByteSize()
        if size > self.plane.max_request_bytes:
            raise InvalidInput(f"request of {size} bytes exceeds the limit of {self.plane.max_request_bytes} bytes")
        return parse_infer_request(request) if isinstance(request, bytes) else (request, None)

    def _decode(self, request: pb.ModelInferRequest, context, regions: RegionUse | None = None, raw: list | None = None) -> InferRequest:
        """Model and declared shapes are checked before any tensor data is decoded (unary and streamed calls)."""
        spec, _ = self.plane.model(request.model_name, request.model_version or None)
        decoded = decode_infer_request(request, partial(self.plane.check_header, spec), regions, raw)
        decoded.caller = _peer_host(context.peer())
        return decoded

    async def _unary(self, context, empty, call, authenticate=True):
        try:
            if authenticate:
                self._authenticate(context)
            return await call()
        except Exception as e:
            return _failed(context, e, empty)

    async def ServerLive(self, request, grpc_context):
        async def call():
            return pb.ServerLiveResponse(live=self.plane.live())

        return await self._unary(grpc_context, pb.ServerLiveResponse(), call, authenticate=False)

    async def ServerReady(self, request, grpc_context):
        async def call():
            return pb.ServerReadyResponse(ready=await self.plane.ready())

        return await self._unary(grpc_context, pb.ServerReadyResponse(), call, authenticate=False)

    async def ModelReady(self, request, grpc_context):
        async def call():
            return pb.ModelReadyResponse(ready=await self.plane.model_ready(request.name, request.version or None))

        return await self._unary(grpc_context, pb.ModelReadyResponse(), call)

    async def ServerMetadata(self, request, grpc_context):
        async def call():
            return pb.ServerMetadataResponse(**self.plane.server_metadata())

        return await self._unary(grpc_context, pb.ServerMetadataResponse(), call)

    async def ModelMetadata(self, request, grpc_context):
        async def call():
            meta = self.plane.model_metadata(request.name, request.version or None)
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                inputs=[tensor(**t) for t in meta["inputs"]], outputs=[tensor(**t) for t in meta["outputs"]],
            )

        return await self._unary(grpc_context, pb.ModelMetadataResponse(), call)

    async def ModelConfig(self, request, grpc_context):
        async def call():
            spec, _ = self.plane.model(request.name, request.version or None)
            return pb.ModelConfigResponse(config=model_config_pb2.ModelConfig.FromString(spec.config.SerializeToString()))

        return await self._unary(grpc_context, pb.ModelConfigResponse(), call)

    async def RepositoryIndex(self, request, grpc_context):
        async def call():
            index = pb.RepositoryIndexResponse.ModelIndex
            return pb.RepositoryIndexResponse(models=[index(**entry) for entry in self.plane.repository_index(request.ready)])

        return await self._unary(grpc_context, pb.RepositoryIndexResponse(), call)

    async def RepositoryModelLoad(self, request, grpc_context):
        """Triton's model repository extension (serve/model_control.py)."""
        return await self._model_control(request, grpc_context, "load", pb.RepositoryModelLoadResponse())

    async def RepositoryModelUnload(self, request, grpc_context):
        return await self._model_control(request, grpc_context, "unload", pb.RepositoryModelUnloadResponse())

    async def _model_control(self, request, grpc_context, action: str, answer):
        async def call():
            parameters = {key: _parameter_value(value) for key, value in request.parameters.items()}
            await getattr(self.plane.model_control(), action)(request.model_name, parameters)
            return answer

        return await self._unary(grpc_context, answer, call)

    async def ModelStatistics(self, request, grpc_context):
        async def call():
            document = await self.plane.statistics(request.name or None, request.version or None)
            return json_format.ParseDict(document, pb.ModelStatisticsResponse())

        return await self._unary(grpc_context, pb.ModelStatisticsResponse(), call)

    async def ModelInfer(self, request, grpc_context):
        received = time.perf_counter()
        try:  # `_unary`'s work written out: this runs for every inference call
            self._authenticate(grpc_context)
            parsed, raw = self._received(request)
            header = _header(parsed) if raw else None  # raw tensors received apart from their message: it can be planned
            plan = self.plane.planned("grpc", header) if header else None
            infer_request = plan.request(raw, parsed.id, received) if plan else None
            if infer_request is not None:  # the header was checked before: so are these inputs' names, datatypes and shapes
                regions = None
                response = await self.plane.infer_planned(plan, infer_request, protocol="grpc")
            else:
                regions = self._shared_memory(parsed, grpc_context)
                infer_request = self._decode(parsed, grpc_context, regions, raw)
                infer_request.received = received
                response = await self.plane.infer(infer_request, protocol="grpc")
                if header and regions is None:
                    self.plane.keep_plan("grpc", header, infer_request)
            encoding = time.perf_counter()
            message = encode_infer_response(response, regions)
            self.plane.record_encode(response, time.perf_counter() - encoding, "grpc")
            return message
        except Exception as e:
            return _failed(grpc_context, e, pb.ModelInferResponse())

    async def ModelStreamInfer(self, request_iterator, grpc_context):
        """Bidirectional: each request gets its response(s); a bad request gets an error message in the
        stream, which stays open (Triton's behaviour). The call ends when the client half-closes."""
        try:
            self._authenticate(grpc_context)
        except InferenceError as e:
            grpc_context.set_code(e.grpc_code)
            grpc_context.set_details(e.message)
            return
        async for received in request_iterator:
            request = pb.ModelInferRequest()
            try:
                request, raw = self._received(received)
                regions = self._shared_memory(request, grpc_context)
                async for response in self.plane.stream(self._decode(request, grpc_context, regions, raw), protocol="grpc"):
                    yield pb.ModelStreamInferResponse(infer_response=encode_infer_response(response, regions))
            except InferenceError as e:
                yield pb.ModelStreamInferResponse(error_message=e.message, infer_response=pb.ModelInferResponse(id=request.id))
            except Exception as e:
                logger.exception("unhandled error in ModelStreamInfer")
                yield pb.ModelStreamInferResponse(error_message=f"internal error ({type(e).__name__}); see the server log")

    # -- system shared memory (Triton's extension, serve/shared_memory.py) -------------------------------------------
    def _shared_memory_caller(self, context):
        """Behind the TLS terminator (TLS without direct ingress) every gRPC call comes from loopback: its real address
        is unknown."""
        host, port = (None, None) if self.plane.grpc_loopback_only else grpc_address(context.peer())
        return Caller.of(self.plane.auth_token, dict(context.invocation_metadata()).get("authorization"), host, port)

    def _shared_memory(self, request: pb.ModelInferRequest, context) -> RegionUse | None:
        """The caller's regions, when a tensor of the request is placed in shared memory: outputs' places are checked
        here, before the model runs."""
        if not any(names_shared_memory(t.parameters) for t in [*request.inputs, *request.outputs]):
            return None
        regions = offered(self.plane.shared_memory).use(self._shared_memory_caller(context))
        for output in request.outputs:
            if names_shared_memory(output.parameters):
                regions.place_output(output.name, _shared_memory_parameters(output.parameters))
        return regions

    async def SystemSharedMemoryStatus(self, request, grpc_context):
        async def call():
            found = offered(self.plane.shared_memory).status(self._shared_memory_caller(grpc_context), request.name)
            status = pb.SystemSharedMemoryStatusResponse
            return status(regions={region["name"]: status.RegionStatus(**region) for region in found})

        return await self._unary(grpc_context, pb.SystemSharedMemoryStatusResponse(), call)

    async def SystemSharedMemoryRegister(self, request, grpc_context):
        async def call():
            offered(self.plane.shared_memory).register(
                self._shared_memory_caller(grpc_context), request.name, request.key, request.offset, request.byte_size
            )
            return pb.SystemSharedMemoryRegisterResponse()

        return await self._unary(grpc_context, pb.SystemSharedMemoryRegisterResponse(), call)

    async def SystemSharedMemoryUnregister(self, request, grpc_context):
        async def call():
            offered(self.plane.shared_memory).unregister(self._shared_memory_caller(grpc_context), request.name)
            return pb.SystemSharedMemoryUnregisterResponse()

        return await self._unary(grpc_context, pb.SystemSharedMemoryUnregisterResponse(), call)

    async def CudaSharedMemoryStatus(self, request, grpc_context):
        """CUDA shared memory is not offered: nothing is registered (Triton's example clients unregister both kinds
        before they start, so unregistering succeeds)."""
        async def call():
            cuda_status(request.name)  # NOT_FOUND for a name
            return pb.CudaSharedMemoryStatusResponse()

        return await self._unary(grpc_context, pb.CudaSharedMemoryStatusResponse(), call)

    async def CudaSharedMemoryRegister(self, request, grpc_context):
        async def call():
            refuse_cuda(request.name)

        return await self._unary(grpc_context, pb.CudaSharedMemoryRegisterResponse(), call)

    async def CudaSharedMemoryUnregister(self, request, grpc_context):
        async def call():
            return pb.CudaSharedMemoryUnregisterResponse()

        return await self._unary(grpc_context, pb.CudaSharedMemoryUnregisterResponse(), call)


def _unimplemented(rpc: str):
    response_type = getattr(pb, pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name[rpc].output_type.name)

    async def method(self, request, grpc_context):
        return _fail(grpc_context, grpc.StatusCode.UNIMPLEMENTED, f"{rpc} is not supported by this server", response_type())

    method.__name__ = rpc
    return method


# The rest of the service (shared memory, tracing, logging).
for _rpc in RPC_NAMES:
    if not hasattr(GRPCInferenceServicer, _rpc):
        setattr(GRPCInferenceServicer, _rpc, _unimplemented(_rpc))
