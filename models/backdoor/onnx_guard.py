"""Admission checks for an untrusted ONNX model, run before anything interprets it.

Order: size limit → protobuf parse → no external-data references (in any dense or sparse tensor, of any
graph or subgraph) → no model-local functions, no custom domains → `onnx.checker` → every node's op in
`ALLOWED_OPS` → the graph is an image classifier (one float input [N, C, H, W] with C ∈ {1, 3} and static
8 ≤ H, W ≤ 256; one float output [N, K]). Each failure raises `Refused(kind, message)`; `kind` is one of
`REFUSAL_KINDS`, and the message names what was found and what was expected, so a server can return it as a
400 as is.

`onnx.checker` looks up an external-data location relative to the working directory, so it runs only in the
scan process, whose working directory is empty (jobs.py); the replica calls `check(..., run_checker=False)`.

Why an allow-list and not a deny-list: the scanner interprets the graph with its own PyTorch
implementation of exactly these ops (graph_torch.py), so an op outside the list could not be run anyway,
and a custom-op library or an external-data path could make a runtime open files of the server's choosing.
"""
import onnx

MAX_BYTES = 20 * 1024 * 1024
ALLOWED_OPS = frozenset({
    "Conv", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool",
    "Flatten", "Reshape", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "BatchNormalization", "Softmax",
    "LogSoftmax", "Constant", "Identity", "Dropout", "Transpose", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat",
})
STANDARD_DOMAINS = ("", "ai.onnx")
REFUSAL_KINDS = ("oversize", "malformed", "external_data", "custom_op", "disallowed_op", "not_image_classifier")


class Refused(ValueError):
    def __init__(self, kind: str, message: str):
        assert kind in REFUSAL_KINDS
        super().__init__(message)
        self.kind, self.message = kind, message


def _sparse(sparse: onnx.SparseTensorProto):
    yield sparse.values
    yield sparse.indices


def _tensors(graph: onnx.GraphProto):
    """Every TensorProto of a graph and its subgraphs: initializers, sparse initializers and node attributes
    (a Constant's `value` / `sparse_value`, TENSOR(S) and SPARSE_TENSOR(S) attributes, If / Loop / Scan bodies)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from _sparse(sparse)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield from _sparse(attr.sparse_tensor)
            for sparse in attr.sparse_tensors:
                yield from _sparse(sparse)
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def _graphs(model: onnx.ModelProto):
    yield model.graph
    for info in model.training_info:
        yield info.initialization
        yield info.algorithm


def _dims(value_info) -> list:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def check(data: bytes, max_bytes: int = MAX_BYTES, run_checker: bool = True) -> onnx.ModelProto:
    """Validate ONNX bytes; returns the parsed model or raises `Refused`. `run_checker=False` skips `onnx.checker`
    (for the replica: see the module docstring); the scan process always runs it."""
    if not isinstance(data, (bytes, bytearray)) or len(data) == 0:
        raise Refused("malformed", "MODEL: expected the bytes of an ONNX file, got an empty value")
    if len(data) > max_bytes:
        raise Refused("oversize", f"MODEL: {len(data):,} bytes is over the limit of {max_bytes:,} bytes")
    try:
        model = onnx.load_from_string(bytes(data))
    except Exception as e:  # protobuf's DecodeError and friends
        raise Refused("malformed", f"MODEL: not a parseable ONNX ModelProto ({type(e).__name__}: {e})") from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise Refused("malformed", "MODEL: the ONNX model has no graph nodes")
    # External data first: the checker itself would try to open the referenced path.
    for tensor in (t for g in _graphs(model) for t in _tensors(g)):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            where = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            raise Refused("external_data", f"MODEL: tensor {tensor.name!r} refers to external data at {where!r}; "
                          "only self-contained ONNX files are accepted (save with all tensors inside the file)")
    if len(model.functions):
        raise Refused("custom_op", f"MODEL: model-local functions are not accepted ({model.functions[0].domain}.{model.functions[0].name})")
    for opset in model.opset_import:
        if opset.domain not in STANDARD_DOMAINS:
            raise Refused("custom_op", f"MODEL: operator set domain {opset.domain!r} is not accepted; only the standard ONNX domain is")
    for node in model.graph.node:
        if node.domain not in STANDARD_DOMAINS:
            raise Refused("custom_op", f"MODEL: node {node.name or node.op_type!r} uses custom op {node.domain}.{node.op_type}; custom-op libraries are not accepted")
    if run_checker:
        try:
            onnx.checker.check_model(model)
        except Exception as e:
            raise Refused("malformed", f"MODEL: the ONNX checker rejects the model: {str(e).splitlines()[0][:300]}") from None
    bad = sorted({n.op_type for n in model.graph.node} - ALLOWED_OPS)
    if bad:
        raise Refused("disallowed_op", f"MODEL: operators {bad} are not on the allow-list; allowed: {sorted(ALLOWED_OPS)}")
    image_shape(model)
    return model


def image_shape(model: onnx.ModelProto) -> tuple[int, int, int]:
    """(C, H, W) of a one-input, one-output image classifier, else `Refused('not_image_classifier')`."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    float_types = (onnx.TensorProto.FLOAT,)
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise Refused("not_image_classifier", f"MODEL: expected one image input and one class-score output, found "
                      f"{len(inputs)} inputs and {len(model.graph.output)} outputs")
    dims = _dims(inputs[0])
    if inputs[0].type.tensor_type.elem_type not in float_types or len(dims) != 4:
        raise Refused("not_image_classifier", f"MODEL: input {inputs[0].name!r} must be FP32 [N, C, H, W], found "
                      f"{onnx.TensorProto.DataType.Name(inputs[0].type.tensor_type.elem_type)} {dims}")
    c, h, w = dims[1:]
    if not all(isinstance(d, int) for d in (c, h, w)) or c not in (1, 3) or not (8 <= h <= 256 and 8 <= w <= 256):
        raise Refused("not_image_classifier", f"MODEL: input {inputs[0].name!r} has shape {dims}; expected static "
                      "C ∈ {1, 3} and 8 ≤ H, W ≤ 256 (an image batch [N, C, H, W])")
    out = model.graph.output[0]
    odims = _dims(out)
    if out.type.tensor_type.elem_type not in float_types or len(odims) != 2 or (isinstance(odims[1], int) and odims[1] < 2):
        raise Refused("not_image_classifier", f"MODEL: output {out.name!r} must be FP32 class scores [N, K] with K ≥ 2, found {odims}")
    return int(c), int(h), int(w)
