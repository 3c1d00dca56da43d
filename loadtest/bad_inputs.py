"""A corpus of malformed inference requests for every model in a repository, for both protocols.

Generated from each model's declared signature, so a new endpoint is covered the day it lands: missing,
extra and misnamed inputs, wrong datatypes, ranks, element counts and batch sizes, absurd shapes, unknown
outputs and versions, text where numbers belong, NaN where the model refuses it, and protocol-level damage
(truncated JSON, raw buffers of the wrong length). Hostile sizes too: declared shapes whose product overflows or
that a few bytes cannot hold (BYTES counts of 2**26), JSON nested 5,000 deep, request parameters of the wrong type
(sequence_id as a list or object, a non-integer timeout). Every case must be answered with a 4xx /
INVALID_ARGUMENT-class status, never a 5xx, and the server must stay healthy.

`python -m loadtest.bad_inputs --repository model_repository --http 127.0.0.1:8000 --grpc 127.0.0.1:8001`
sends the whole corpus to a running server and prints a table by status.
"""
import argparse
import json
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

import grpc
import numpy as np

from streamserve_proto import service_pb2 as pb, service_pb2_grpc
from serve.datatypes import NUMPY_DTYPES
from serve.repository import ModelRepository, ModelSpec

# What a well-behaved server may answer to a client's mistake.
CLIENT_HTTP = {400, 401, 403, 404, 405, 409, 413, 415, 422, 429}
CLIENT_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: list = field(default_factory=list)
    """Flat element values (JSON data / typed contents); `raw` overrides them on gRPC."""
    raw: bytes | None = None


@dataclass
class Case:
    id: str
    model: str
    inputs: list[Tensor]
    version: str = ""
    outputs: list[str] = field(default_factory=list)
    http_body: bytes | None = None
    """Set for HTTP-only damage (the body as sent); such cases are not sent over gRPC."""
    grpc_only: bool = False
    http_only: bool = False
    """A value gRPC cannot even encode (a dim of 2**63 in an int64 field)."""
    parameters: dict = field(default_factory=dict)
    """Request parameters; a value gRPC's InferParameter cannot carry (a list, an object) goes over HTTP only."""

    @property
    def over_http(self) -> bool:
        return not self.grpc_only

    @property
    def over_grpc(self) -> bool:
        return self.http_body is None and not self.http_only and all(isinstance(v, (bool, int, float, str)) for v in self.parameters.values())


def _example_shape(spec: ModelSpec, dims: tuple[int, ...], name: str) -> list[int]:
    minimum = spec.min_shapes.get(name)
    shape = [1] if spec.max_batch_size > 0 else []
    for i, d in enumerate(dims):
        position = len(shape)
        shape.append(d if d > 0 else (minimum[position] if minimum and position < len(minimum) else 4))
    return shape


def _values(datatype: str, count: int) -> list:
    if datatype == "BYTES":
        return ["x"] * count
    if datatype == "BOOL":
        return [False] * count
    return [1] * count if datatype.startswith(("INT", "UINT")) else [0.5] * count


def _other_datatype(datatype: str) -> str:
    return {"FP32": "INT32", "BYTES": "FP32"}.get(datatype, "FP32" if datatype != "FP32" else "INT64")


def base_inputs(spec: ModelSpec) -> list[Tensor]:
    tensors = []
    for t in spec.inputs:
        if t.optional:
            continue
        shape = _example_shape(spec, t.dims, t.name)
        tensors.append(Tensor(t.name, t.datatype, shape, _values(t.datatype, int(np.prod(shape)))))
    return tensors


def _replace(tensors: list[Tensor], index: int, **changes) -> list[Tensor]:
    out = [Tensor(t.name, t.datatype, list(t.shape), list(t.values), t.raw) for t in tensors]
    for key, value in changes.items():
        setattr(out[index], key, value)
    return out


def model_cases(spec: ModelSpec) -> list[Case]:
    base = base_inputs(spec)
    m = spec.name
    cases = [
        Case(f"{m}: unknown version", m, base, version="999"),
        Case(f"{m}: unknown output", m, base, outputs=["NO_SUCH_OUTPUT"]),
        Case(f"{m}: extra input", m, base + [Tensor("NO_SUCH_INPUT", "FP32", [1], [0.0])]),
        Case(f"{m}: no inputs", m, []),
    ]
    if spec.max_batch_size > 0 and base:
        big = spec.max_batch_size + 1
        cases.append(Case(f"{m}: batch above max", m, [
            Tensor(t.name, t.datatype, [big] + t.shape[1:], _values(t.datatype, big * int(np.prod(t.shape[1:])))) for t in base
        ]))
        cases.append(Case(f"{m}: empty batch", m, [Tensor(t.name, t.datatype, [0] + t.shape[1:], []) for t in base]))
    for i, t in enumerate(base):
        count = int(np.prod(t.shape))
        other = _other_datatype(t.datatype)
        cases += [
            Case(f"{m}/{t.name}: missing", m, base[:i] + base[i + 1 :]),
            Case(f"{m}/{t.name}: wrong datatype {other}", m, _replace(base, i, datatype=other, values=_values(other, count))),
            Case(f"{m}/{t.name}: unknown datatype", m, _replace(base, i, datatype="FP128")),
            Case(f"{m}/{t.name}: rank too high", m, _replace(base, i, shape=t.shape + [1])),
            Case(f"{m}/{t.name}: rank too low", m, _replace(base, i, shape=t.shape[:-1] or [0], values=t.values[:1])),
            Case(f"{m}/{t.name}: too few elements", m, _replace(base, i, values=t.values[:-1])),
            Case(f"{m}/{t.name}: negative dim", m, _replace(base, i, shape=[-3] + t.shape[1:])),
            Case(f"{m}/{t.name}: absurd shape", m, _replace(base, i, shape=t.shape[:-1] + [2**40])),
            Case(f"{m}/{t.name}: misspelt name", m, _replace(base, i, name=t.name.lower() + "_")),
        ]
        if t.datatype != "BYTES":
            cases.append(Case(f"{m}/{t.name}: text for numbers", m, _replace(base, i, values=["abc"] * count)))
            cases.append(Case(f"{m}/{t.name}: raw buffer one byte short", m,
                              _replace(base, i, raw=b"\0" * (count * NUMPY_DTYPES[t.datatype].itemsize - 1)), grpc_only=True))
        else:
            cases.append(Case(f"{m}/{t.name}: numbers for text", m, _replace(base, i, datatype="BYTES", values=[1.5] * count)))
        if t.datatype.startswith("FP") and spec.reject_non_finite:
            cases.append(Case(f"{m}/{t.name}: NaN", m, _replace(base, i, values=[float("nan")] * count)))
        overflow = [0] + [2**62] * max(len(t.shape) - 1, 1)
        cases += [
            Case(f"{m}/{t.name}: shape product overflows", m, _replace(base, i, shape=overflow, values=[])),
            Case(f"{m}/{t.name}: 2**63 dim", m, _replace(base, i, shape=[2**63] + [0] * (len(t.shape) - 1), values=[]), http_only=True),
            Case(f"{m}/{t.name}: 2**26 elements declared, 8 bytes sent", m,
                 _replace(base, i, shape=[2**26] + [1] * (len(t.shape) - 1), raw=b"\0" * 8), grpc_only=True),
        ]
    body = json.dumps({"inputs": [tensor_json(t) for t in base]}).encode()
    deep = json.dumps({"inputs": [tensor_json(t) for t in base[:1]]}).encode().replace(b'"data": [', b'"data": ' + b"[" * 5000, 1)
    deep = deep.replace(b"]}]}", b"]" * 5000 + b"}]}") if base else b"[" * 5000 + b"]" * 5000
    cases += [
        Case(f"{m}: truncated JSON", m, base, http_body=body[: len(body) // 2]),
        Case(f"{m}: JSON array body", m, base, http_body=b"[1, 2, 3]"),
        Case(f"{m}: inputs not a list", m, base, http_body=b'{"inputs": {"name": "x"}}'),
        Case(f"{m}: binary header past the body", m, base, http_body=body),  # with a bad header length, see send_http
        Case(f"{m}: JSON nested 5000 deep", m, base, http_body=deep),
        Case(f"{m}: timeout not an integer", m, base, parameters={"timeout": "soon"}),
    ]
    if spec.sequence:  # elsewhere sequence parameters are ignored, as by Triton
        cases += [
            Case(f"{m}: sequence_id as a list", m, base, parameters={"sequence_id": [1, 2], "sequence_start": True}),
            Case(f"{m}: sequence_id as an object", m, base, parameters={"sequence_id": {"a": 1}, "sequence_start": True}),
        ]
    return cases


def corpus(repository) -> list[Case]:
    return [case for spec in ModelRepository(repository) for case in model_cases(spec)]


# -- encoders and senders ------------------------------------------------------------------------------
def tensor_json(t: Tensor) -> dict:
    return {"name": t.name, "datatype": t.datatype, "shape": t.shape, "data": t.values}


def send_http(address: str, case: Case, timeout_s: float = 30) -> tuple[int, str]:
    version = f"/versions/{case.version}" if case.version else ""
    body = case.http_body
    headers = {"Content-Type": "application/json"}
    if body is None:
        document = {"inputs": [tensor_json(t) for t in case.inputs]}
        if case.parameters:
            document["parameters"] = case.parameters
        if case.outputs:
            document["outputs"] = [{"name": n} for n in case.outputs]
        body = json.dumps(document).encode()
    elif case.id.endswith("binary header past the body"):
        headers = {"Inference-Header-Content-Length": str(len(body) + 100)}
    request = urllib.request.Request(f"http://{address}/v2/models/{case.model}{version}/infer", body, headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def grpc_request(case: Case) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=case.model, model_version=case.version)
    use_raw = any(t.raw is not None for t in case.inputs)
    for t in case.inputs:
        tensor = request.inputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        if use_raw:
            request.raw_input_contents.append(t.raw if t.raw is not None else _raw(t))
        else:
            _typed(tensor.contents, t)
    for name in case.outputs:
        request.outputs.add(name=name)
    for key, value in case.parameters.items():
        if isinstance(value, bool):
            request.parameters[key].bool_param = value
        elif isinstance(value, int):
            request.parameters[key].int64_param = value
        else:
            request.parameters[key].string_param = str(value)
    return request


def _raw(t: Tensor) -> bytes:
    if t.datatype == "BYTES":
        return b"".join(len(v.encode()).to_bytes(4, "little") + v.encode() for v in map(str, t.values))
    try:
        return np.asarray(t.values, dtype=NUMPY_DTYPES.get(t.datatype, np.float32)).tobytes()
    except (TypeError, ValueError):
        return b"garbage"


def _typed(contents, t: Tensor) -> None:
    """The contents field follows the values, not the declared datatype, so a case that puts numbers in a
    BYTES tensor (or text in an INT32 one) reaches the server as exactly that mismatch."""
    values = t.values
    if all(isinstance(v, str) for v in values):
        contents.bytes_contents.extend(v.encode() for v in values)
    elif all(isinstance(v, bool) for v in values):
        contents.bool_contents.extend(values)
    elif all(isinstance(v, int) for v in values):
        field = {"INT64": "int64_contents", "UINT64": "uint64_contents"}.get(
            t.datatype, "uint_contents" if t.datatype.startswith("UINT") else "int_contents"
        )
        getattr(contents, field).extend(abs(v) if field.startswith("uint") else v for v in values)
    else:
        field = "fp64_contents" if t.datatype == "FP64" else "fp32_contents"
        getattr(contents, field).extend(float(v) for v in values)


def send_grpc(stub, case: Case, timeout_s: float = 30) -> tuple[grpc.StatusCode, str]:
    try:
        stub.ModelInfer(grpc_request(case), timeout=timeout_s)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details() or ""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", default="model_repository")
    parser.add_argument("--http", default="127.0.0.1:8000")
    parser.add_argument("--grpc", default="127.0.0.1:8001")
    args = parser.parse_args(argv)
    cases = corpus(args.repository)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(args.grpc))
    tally, bad = Counter(), []
    for case in cases:
        if case.over_http:
            status, text = send_http(args.http, case)
            tally[f"http {status}"] += 1
            if status not in CLIENT_HTTP:
                bad.append((case.id, "http", status, text[:200]))
        if case.over_grpc:
            code, text = send_grpc(stub, case)
            tally[f"grpc {code.name}"] += 1
            if code not in CLIENT_GRPC:
                bad.append((case.id, "grpc", code.name, text[:200]))
    for key, count in sorted(tally.items()):
        print(f"{key:32s} {count}")
    print(f"{sum(tally.values())} requests from {len(cases)} cases; {len(bad)} not answered as a client error")
    for row in bad:
        print("  ", *row)


if __name__ == "__main__":
    main()
