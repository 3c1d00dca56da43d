"""HTTP adapter: the v2 REST routes, JSON tensors and Triton's binary tensor extension.

A request body is either JSON, or (binary extension) a JSON header of `Inference-Header-Content-Length`
bytes followed by the raw data of each input whose `parameters.binary_data_size` says so, in order.
Outputs come back binary when the client asks (per output `binary_data`, or request-level
`binary_data_output`), which is what `tritonclient.http` does by default. An input or output may instead live in a
registered system shared memory region (Triton's extension, routes at the end, serve/shared_memory.py).
"""
import json
import logging
import time
import zlib
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from .classification import parse_count
from .codecs import decode_json, decode_raw, encode_json, encode_raw
from .dataplane import DataPlane
from .datatypes import from_numpy, numpy_dtype
from .errors import InferenceError, InvalidInput
from .shared_memory import Caller, RegionUse, cuda_status, names_shared_memory, offered, refuse_cuda
from .types import InferRequest, InferResponse

logger = logging.getLogger("streamserve.rest")
HEADER_LENGTH = "inference-header-content-length"

app = FastAPI(title="streamserve v2 inference", docs_url=None, redoc_url=None, openapi_url=None)


# -- wire models (the v2 spec's $request_input / $inference_request) --------------------------------
class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestInput(_Wire):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None  # validated by the codec, element by element would be too slow here


class RequestOutput(_Wire):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequestBody(_Wire):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


# The data plane this process serves. A module global, not `app.state`: Ray Serve runs a pickled
# copy of `app` in the replica, while route functions (pickled by reference) see this module.
_plane: DataPlane | None = None


def attach(data_plane: DataPlane) -> None:
    global _plane
    _plane = data_plane


def plane(request: Request) -> DataPlane:
    return _plane


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@app.exception_handler(InferenceError)
async def _inference_error(request: Request, exc: InferenceError):
    response = _error(exc.http_status, exc.message)
    if exc.http_status == 503:  # overloaded or not ready: tell well-behaved clients when to come back
        response.headers["Retry-After"] = "1"
    return response


@app.exception_handler(404)
async def _no_route(request: Request, exc):
    return _error(404, f"no route {request.method} {request.url.path}")


@app.exception_handler(405)
async def _wrong_method(request: Request, exc):
    return _error(405, f"{request.method} is not allowed on {request.url.path}")


@app.exception_handler(Exception)
async def _server_error(request: Request, exc: Exception):
    logger.exception("unhandled error on %s", request.url.path)
    return _error(500, f"internal error ({type(exc).__name__}); see the server log")


def authenticate(request: Request) -> None:
    peer = request.client.host if request.client else None
    plane(request).authenticate(request.headers.get("authorization"), None if peer is None else _peer(peer))


def _peer(host: str) -> str:
    return f"ipv6:[{host}]" if ":" in host else f"ipv4:{host}"


def _caller(request: Request) -> str:
    """Who sent it, as far as HTTP tells: the client's address (sequences are bound to it)."""
    return request.client.host if request.client else ""


# -- health and metadata ------------------------------------------------------------------------------
@app.get("/v2/health/live")
async def live(request: Request):
    return {"live": plane(request).live()}


@app.get("/v2/health/ready")
async def ready(request: Request):
    is_ready = await plane(request).ready()
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@app.get("/v2")
async def server_metadata(request: Request):
    authenticate(request)
    return plane(request).server_metadata()


# Before the model metadata route, which would take "stats" for a model's name (Triton has the same ambiguity).
@app.get("/v2/models/stats")
@app.get("/v2/models/{model}/stats")
@app.get("/v2/models/{model}/versions/{version}/stats")
async def model_statistics(request: Request, model: str | None = None, version: str | None = None):
    """Triton's statistics extension, summed over every replica (serve/statistics.py)."""
    authenticate(request)
    return await plane(request).statistics(model, version)


@app.get("/metrics")
async def triton_metrics(request: Request):
    """Triton's `nv_inference_*` counters under their own names, from the same statistics (Ray's exporter on the
    metrics port would prefix `ray_`). Like every metadata route it needs the token when one is set."""
    authenticate(request)
    return PlainTextResponse(await plane(request).prometheus_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")


@app.get("/v2/models/{model}")
@app.get("/v2/models/{model}/versions/{version}")
async def model_metadata(request: Request, model: str, version: str | None = None):
    authenticate(request)
    return plane(request).model_metadata(model, version)


@app.get("/v2/models/{model}/ready")
@app.get("/v2/models/{model}/versions/{version}/ready")
async def model_ready(request: Request, model: str, version: str | None = None):
    authenticate(request)
    is_ready = await plane(request).model_ready(model, version)
    return JSONResponse({"name": model, "ready": is_ready}, status_code=200 if is_ready else 503)


@app.get("/v2/models/{model}/config")
@app.get("/v2/models/{model}/versions/{version}/config")
async def model_config(request: Request, model: str, version: str | None = None):
    authenticate(request)
    spec, _ = plane(request).model(model, version)
    return spec.config_json()


@app.post("/v2/repository/index")
async def repository_index(request: Request):
    authenticate(request)
    body = await _control_body(request, RepositoryIndexRequest)
    return plane(request).repository_index(ready=bool(body.ready))


# -- model repository extension: load / unload (serve/model_control.py) --------------------------------
class RepositoryIndexRequest(BaseModel):
    """Triton's `$repository_index_request`; other fields (a repository name) are ignored, as there is one repository."""

    ready: bool | None = None


class RepositoryControlRequest(_Wire):
    parameters: dict[str, Any] | None = None


CONTROL_BODY_BYTES = 1 << 20
"""Largest body of an index, load or unload request: their bodies hold a few parameters (a load refuses files)."""


async def _control_body(request: Request, model: type[BaseModel]):
    body = await _read_body(request, CONTROL_BODY_BYTES)
    try:
        return model.model_validate(json.loads(body) if body.strip() else {})
    except (ValueError, RecursionError) as e:  # not JSON, or not the request's fields
        raise InvalidInput(f"invalid {request.url.path.rsplit('/', 1)[-1]} request: {e}") from None


@app.post("/v2/repository/models/{model}/load")
async def repository_model_load(request: Request, model: str):
    authenticate(request)
    body = await _control_body(request, RepositoryControlRequest)
    await plane(request).model_control().load(model, body.parameters)
    return Response(status_code=200)


@app.post("/v2/repository/models/{model}/unload")
async def repository_model_unload(request: Request, model: str):
    authenticate(request)
    body = await _control_body(request, RepositoryControlRequest)
    await plane(request).model_control().unload(model, body.parameters)
    return Response(status_code=200)


# -- inference ----------------------------------------------------------------------------------------
@app.post("/v2/models/{model}/infer")
@app.post("/v2/models/{model}/versions/{version}/infer")
async def infer(request: Request, model: str, version: str | None = None):
    received = time.perf_counter()
    authenticate(request)
    data_plane = plane(request)
    spec, _ = data_plane.model(model, version)  # an unknown model is refused before its body is read
    body = await _read_body(request, data_plane.max_request_bytes)
    header_length = request.headers.get(HEADER_LENGTH)
    scope = f"http {model} {version}"  # the URL names the model: a header is planned for the model it was sent to
    planned = _planned(data_plane, scope, body, header_length, received)
    if planned is not None:  # the header was checked before: so are these inputs' names, datatypes and shapes
        plan, infer_request = planned
        wire, regions = plan.adapter, None
        response = await data_plane.infer_planned(plan, infer_request, protocol="http")
    else:
        wire, binary = _split_binary(body, header_length)
        regions = _shared_memory(request, wire)
        infer_request = decode_request(model, version, wire, binary, partial(data_plane.check_header, spec), regions)
        infer_request.received, infer_request.caller = received, _caller(request)
        response = await data_plane.infer(infer_request, protocol="http")
        if binary and regions is None and all(t.data is None for t in wire.inputs):  # every input in the binary part
            data_plane.keep_plan(scope, body[: int(header_length)], infer_request, adapter=wire)
    encoding = time.perf_counter()
    encoded = encode_response(response, wire, data_plane.max_response_bytes, regions)
    data_plane.record_encode(response, time.perf_counter() - encoding, "http")
    return encoded


def _planned(data_plane: DataPlane, scope: str, body: bytes, header_length: str | None, received: float):
    """(plan, request) for a body whose JSON header was planned before (`DataPlane.keep_plan`) and whose binary part
    fits the plan: the request decoded by it. None otherwise (the whole way decodes it, or names the fault)."""
    if not header_length or not header_length.isdigit() or int(header_length) >= len(body):
        return None
    split = int(header_length)
    plan = data_plane.planned(scope, body[:split])
    if plan is None:
        return None
    binary, buffers, offset = memoryview(body)[split:], [], 0
    for *_, size in plan.inputs:
        buffers.append(binary[offset : offset + size])
        offset += size
    infer_request = plan.request(buffers, plan.adapter.id or "", received) if offset == len(binary) else None
    return None if infer_request is None else (plan, infer_request)


def _inference_route(scope) -> tuple[str, str | None] | None:
    """(model, version) when `scope` is `POST /v2/models/{model}[/versions/{version}]/infer`, the routes above; else
    None. A path segment is anything but "/", as the routes' parameters match."""
    if scope["method"] != "POST":
        return None
    parts = scope["path"].split("/")
    if len(parts) == 5 and parts[:3] == ["", "v2", "models"] and parts[3] and parts[4] == "infer":
        return parts[3], None
    if len(parts) == 7 and parts[:3] == ["", "v2", "models"] and parts[3] and parts[4] == "versions" and parts[5] and parts[6] == "infer":
        return parts[3], parts[5]
    return None


async def served_app(scope, receive, send) -> None:
    """The ASGI app the ingress serves: an inference call goes straight to `infer`, with the same error answers as the
    app's exception handlers; every other request goes through FastAPI. FastAPI's routing, dependency solving and
    middleware stack cost more per call than the handler's own decoding of a small request (loadtest/BENCH.md)."""
    route = _inference_route(scope) if scope["type"] == "http" else None
    if route is None:
        await app(scope, receive, send)
        return
    request = Request(scope, receive)
    try:
        response = await infer(request, *route)
    except InferenceError as e:
        response = await _inference_error(request, e)
    except Exception as e:
        response = await _server_error(request, e)
    await response(scope, receive, send)


@app.post("/v2/models/{model}/generate_stream")
@app.post("/v2/models/{model}/versions/{version}/generate_stream")
async def infer_stream(request: Request, model: str, version: str | None = None):
    """Server-sent events: the body is a v2 inference request (JSON tensors); each response (one per
    rollout step, or the single answer of an ordinary model) is sent as one `data:` event the moment it
    is computed. An error after the stream has started arrives as an `event: error`. Closing the
    connection stops the rollout."""
    authenticate(request)
    data_plane = plane(request)
    spec, _ = data_plane.model(model, version)
    body = await _read_body(request, data_plane.max_request_bytes)
    wire, binary = _split_binary(body, request.headers.get(HEADER_LENGTH))
    infer_request = decode_request(model, version, wire, binary, partial(data_plane.check_header, spec))
    infer_request.caller = _caller(request)
    # Checked here, so a client error is a 4xx before the stream's 200 starts.
    responses = data_plane.stream(infer_request, protocol="http")

    async def events():
        try:
            async for response in responses:
                _check_json_size(response.outputs.values(), data_plane.max_response_bytes,
                                 "stream large tensors over gRPC (ModelStreamInfer), whose messages are binary")
                document = _response_document(response, {name: _as_json(array) for name, array in response.outputs.items()})
                document["parameters"] = response.parameters
                yield f"data: {json.dumps(document, separators=(',', ':'))}\n\n"
        except InferenceError as e:
            yield f"event: error\ndata: {json.dumps({'error': e.message})}\n\n"
        except Exception as e:  # the 200 is already sent: report in-band, log the rest
            logger.exception("unhandled error in generate_stream")
            yield f"event: error\ndata: {json.dumps({'error': f'internal error ({type(e).__name__}); see the server log'})}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


JSON_BYTES_PER_BYTE = 7
"""The most a tensor grows written as JSON numbers: an FP32 element's 4 bytes become up to ~26 characters."""


def _check_json_size(arrays, limit: int, advice: str) -> None:
    """Outputs to be written as JSON numbers are refused before they are written when they could pass the response limit."""
    size = sum(array.nbytes for array in arrays)
    if size * JSON_BYTES_PER_BYTE > limit:
        raise InvalidInput(f"outputs of {size} bytes could be {size * JSON_BYTES_PER_BYTE} bytes as JSON, which could pass the "
                           f"response limit of {limit}; {advice}")


def _as_json(array) -> dict:
    return {"datatype": from_numpy(array.dtype), "shape": list(array.shape), "data": encode_json(array)}


def _response_document(response: InferResponse, outputs: dict[str, dict]) -> dict:
    document = {"model_name": response.model, "model_version": response.version,
                "outputs": [{"name": name} | entry for name, entry in outputs.items()]}
    if response.id:
        document["id"] = response.id
    return document


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, up to `limit` bytes. A body somewhat over the limit is read to its end and dropped, so
    the client (still sending) gets the 400 instead of a broken pipe; one far over is not read at all."""
    declared = request.headers.get("content-length")
    too_large = InvalidInput(f"request body of {declared or 'more than ' + str(limit)} bytes exceeds the limit of {limit} bytes")
    if declared and declared.isdigit() and int(declared) > 2 * limit:
        raise too_large
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in _DECOMPRESSORS:
        raise InvalidInput(f"content-encoding {encoding!r} is not supported; send the body as gzip, deflate or uncompressed")
    inflate = _DECOMPRESSORS[encoding]()
    chunks, size, inflated = [], 0, 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > 2 * limit:
            break
        if size > limit:
            continue
        if inflate is None:
            chunks.append(chunk)
            continue
        # Bounded inflation: never more than the limit (plus one byte, to tell "at" from "past") exists decompressed.
        while chunk and inflated <= limit:
            try:
                piece = inflate.decompress(chunk, limit + 1 - inflated)
            except zlib.error as e:
                raise InvalidInput(f"request body is not valid {encoding} data ({e})") from None
            inflated += len(piece)
            chunks.append(piece)
            chunk = inflate.unconsumed_tail
        if inflated > limit:
            raise InvalidInput(f"request body decompresses ({encoding}) to more than the limit of {limit} bytes")
    if size > limit:
        raise too_large
    if inflate is not None and not inflate.eof:
        raise InvalidInput(f"request body is not complete {encoding} data")
    return b"".join(chunks)


_DECOMPRESSORS = {
    "identity": lambda: None,
    "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    "deflate": lambda: zlib.decompressobj(zlib.MAX_WBITS),  # zlib-wrapped, as HTTP's "deflate" and tritonclient send it
}
"""Request `Content-Encoding`s Triton's HTTP clients send (`request_compression_algorithm`)."""


def _split_binary(body: bytes, header_length: str | None) -> tuple[InferenceRequestBody, bytes]:
    if header_length is None:
        json_part, binary = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidInput(f"Inference-Header-Content-Length {header_length!r} must be an integer no larger than the body ({len(body)} bytes)")
        json_part, binary = body[: int(header_length)], body[int(header_length) :]
    try:
        document = json.loads(json_part)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInput(f"request body is not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidInput("request body is JSON nested too deeply") from None
    try:
        return InferenceRequestBody.model_validate(document), binary
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()[:5])
        raise InvalidInput(f"invalid inference request: {problems}") from None


def decode_request(
    model: str, version: str | None, wire: InferenceRequestBody, binary: bytes, check_header=None, regions: RegionUse | None = None,
) -> InferRequest:
    """`check_header(name, datatype, shape)` vets each input as declared before its data is decoded; `regions` reads
    the inputs whose parameters place them in shared memory (serve/shared_memory.py)."""
    inputs, offset = {}, 0
    for tensor in wire.inputs:
        if tensor.name in inputs:
            raise InvalidInput(f"input {tensor.name!r} appears twice")
        numpy_dtype(tensor.datatype, tensor.name)  # unknown datatype: named before anything else
        if check_header:
            check_header(tensor.name, tensor.datatype, tensor.shape)
        size = (tensor.parameters or {}).get("binary_data_size")
        if regions is not None and names_shared_memory(tensor.parameters):
            if tensor.data is not None or size is not None:
                raise InvalidInput(f"input {tensor.name!r}: set only one of 'data', parameters.binary_data_size and parameters.shared_memory_region")
            inputs[tensor.name] = regions.input(tensor.name, tensor.datatype, tensor.shape, tensor.parameters)
        elif size is not None:
            if not isinstance(size, int) or size < 0:
                raise InvalidInput(f"input {tensor.name!r}: binary_data_size must be a non-negative integer")
            if tensor.data is not None:
                raise InvalidInput(f"input {tensor.name!r}: has both 'data' and binary_data_size")
            if offset + size > len(binary):
                raise InvalidInput(f"input {tensor.name!r}: binary_data_size {size} runs past the binary body ({len(binary) - offset} bytes left)")
            inputs[tensor.name] = decode_raw(binary[offset : offset + size], tensor.datatype, tensor.shape, tensor.name)
            offset += size
        elif tensor.data is None:
            raise InvalidInput(f"input {tensor.name!r}: no 'data' and no binary_data_size")
        else:
            inputs[tensor.name] = decode_json(tensor.data, tensor.datatype, tensor.shape, tensor.name)
    if offset != len(binary):
        raise InvalidInput(f"binary body has {len(binary)} bytes but the inputs' binary_data_size add up to {offset}")
    outputs = [o.name for o in wire.outputs] if wire.outputs else None
    if "classification" in (wire.parameters or {}):
        raise InvalidInput("request parameter 'classification': Triton's classification extension is asked per output "
                           '({"name": ..., "parameters": {"classification": k}})')
    classes = {o.name: parse_count(o.parameters["classification"], o.name) for o in wire.outputs or [] if "classification" in (o.parameters or {})}
    return InferRequest(model, version, inputs, outputs, id=wire.id or "", parameters=wire.parameters or {},
                        classification={name: k for name, k in classes.items() if k})


def encode_response(response: InferResponse, wire: InferenceRequestBody, limit: int, regions: RegionUse | None = None) -> Response:
    """An output placed in shared memory is written there and sent without data, as Triton does."""
    binary_default = bool((wire.parameters or {}).get("binary_data_output", False))
    per_output = {o.name: (o.parameters or {}).get("binary_data", binary_default) for o in wire.outputs or []}
    in_regions = {o.name for o in wire.outputs or [] if names_shared_memory(o.parameters or {})}
    _check_json_size([a for name, a in response.outputs.items() if not per_output.get(name, binary_default) and name not in in_regions],
                     limit, "ask for them as binary (the binary_data output parameter, or binary_data_output) or for fewer outputs")
    outputs, buffers = {}, []
    for name, array in response.outputs.items():
        if regions is not None and regions.write_output(name, array):
            outputs[name] = {"datatype": from_numpy(array.dtype), "shape": list(array.shape)}
        elif per_output.get(name, binary_default):
            buffer = encode_raw(array)
            outputs[name] = {"datatype": from_numpy(array.dtype), "shape": list(array.shape), "parameters": {"binary_data_size": len(buffer)}}
            buffers.append(buffer)
        else:
            outputs[name] = _as_json(array)
    document = _response_document(response, outputs)
    header = json.dumps(document, separators=(",", ":")).encode()
    if not buffers:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(buffers), media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(len(header))})


# -- system shared memory (Triton's extension, serve/shared_memory.py) ---------------------------------------------------
class RegisterBody(_Wire):
    """Triton's `$system_shared_memory_register_request`."""

    model_config = ConfigDict(extra="forbid", strict=True)
    key: str
    offset: int = 0
    byte_size: int


def _shared_memory_caller(request: Request):
    client = request.client
    return Caller.of(plane(request).auth_token, request.headers.get("authorization"), client.host if client else None, client.port if client else None)


def _shared_memory(request: Request, wire: InferenceRequestBody) -> RegionUse | None:
    """The caller's regions, when a tensor of the request is placed in shared memory: outputs' places are checked here,
    before the model runs."""
    if not any(names_shared_memory(t.parameters) for t in [*wire.inputs, *(wire.outputs or [])]):
        return None
    regions = offered(plane(request).shared_memory).use(_shared_memory_caller(request))
    for output in wire.outputs or []:
        if names_shared_memory(output.parameters):
            if output.parameters.get("binary_data"):
                raise InvalidInput(f"output {output.name!r}: set either parameters.shared_memory_region or binary_data, not both")
            regions.place_output(output.name, output.parameters)
    return regions


@app.get("/v2/systemsharedmemory/status")
@app.get("/v2/systemsharedmemory/region/{name}/status")
async def shared_memory_status(request: Request, name: str = ""):
    authenticate(request)
    return offered(plane(request).shared_memory).status(_shared_memory_caller(request), name)


@app.post("/v2/systemsharedmemory/region/{name}/register")
async def shared_memory_register(request: Request, name: str):
    authenticate(request)
    body = await _read_body(request, 1 << 16)
    try:
        wire = RegisterBody.model_validate_json(body)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()[:5])
        raise InvalidInput(f"invalid shared memory register request for region {name!r}: {problems}") from None
    offered(plane(request).shared_memory).register(_shared_memory_caller(request), name, wire.key, wire.offset, wire.byte_size)
    return Response(media_type="application/json")


@app.post("/v2/systemsharedmemory/unregister")
@app.post("/v2/systemsharedmemory/region/{name}/unregister")
async def shared_memory_unregister(request: Request, name: str = ""):
    authenticate(request)
    offered(plane(request).shared_memory).unregister(_shared_memory_caller(request), name)
    return Response(media_type="application/json")


@app.get("/v2/cudasharedmemory/status")
@app.get("/v2/cudasharedmemory/region/{name}/status")
async def cuda_shared_memory_status(request: Request, name: str = ""):
    """CUDA shared memory is not offered: nothing is registered, so status is empty and unregistering succeeds
    (Triton's example clients unregister both kinds before they start)."""
    authenticate(request)
    return cuda_status(name)


@app.post("/v2/cudasharedmemory/region/{name}/register")
async def cuda_shared_memory_register(request: Request, name: str):
    authenticate(request)
    refuse_cuda(name)


@app.post("/v2/cudasharedmemory/unregister")
@app.post("/v2/cudasharedmemory/region/{name}/unregister")
async def cuda_shared_memory_unregister(request: Request, name: str = ""):
    authenticate(request)
    return Response(media_type="application/json")


# Starlette, and Serve naming each request's route, try the routes in order until one matches in full: the inference
# routes, which carry nearly every request, come first (one path match per request instead of 18; loadtest/BENCH.md).
# None of the others ends in /infer or /generate_stream, so no request changes route.
def _match_order(route) -> tuple[bool, bool]:
    path = getattr(route, "path", "")
    return not path.endswith(("/infer", "/generate_stream")), "/versions/" in path  # most requests name no version


app.router.routes.sort(key=_match_order)
