"""Triton's example models, under Triton's names and shapes, so that Triton's own example clients run unchanged.

Each model has the name, inputs, outputs, datatypes, dims, batching and sequence controls of the model Triton's
documentation repository (docs/examples/model_repository) or its tests define; the implementations are ours.
What each computes is what Triton's example clients (tritonclient's `src/python/examples`) check:

| model | how | what |
|---|---|---|
| `simple_int8` | ONNX | INT8 [batch,16]: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1 (wrapping, as int8 does) |
| `simple_string` | handler | BYTES [batch,16] of decimal integers: their sum and difference, as decimal strings |
| `simple_identity` | handler | BYTES [batch,-1]: OUTPUT0 = INPUT0, byte for byte (NUL bytes included) |
| `simple_sequence` | ONNX | sequence model (controls START, READY): OUTPUT = (INPUT + START) * READY |
| `simple_dyna_sequence` | ONNX | controls START, END, READY, CORRID (UINT64): OUTPUT = (INPUT + START + END * CORRID) * READY |
| `simple_string_dyna_sequence` | handler | a running sum over the sequence (implicit state), plus the correlation id (TYPE_STRING, decimal) on the last request |
| `repeat_int32` | handler | decoupled: one response per element of IN (OUT = IN[i], IDX = i), each after DELAY[i] ms |
| `custom_identity_int32` | ONNX | INT32 [batch,-1]: OUTPUT0 = INPUT0 (the model of Triton's memory_growth_test client) |

`simple_sequence` and `simple_dyna_sequence` are stateless per request, exactly as Triton's ONNX examples are
(and as its sequence clients expect: 1, 11, 7, ... for the inputs 0, 11, 7, ...); the accumulating sequence
example of this platform is `accumulate_sequence` (handlers.py). `simple_string_dyna_sequence` is what Triton's
tests build from `simple_dyna_sequence` with a string correlation id and its dyna_sequence test backend: it
accumulates. `repeat_int32` accepts WAIT (Triton's repeat backend releases its model instance after WAIT ms); every
request here runs in its own worker, so there is no instance to release and WAIT only has to be in range.

Not offered: `simple` is models/examples/simple.py; the image models of the image clients (densenet_onnx,
inception_graphdef) need pretrained weights.
"""
import re
import time

import numpy as np
import onnx
from onnx import TensorProto, helper

from serve.sdk import InvalidInput, ModelHandler

from . import IR_VERSION

HANDLERS = "models.examples.triton"


def _onnx_model(name: str, nodes, inputs, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


def _value(name: str, elem_type: int, width) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, ["batch", width])


# -- simple_int8 ----------------------------------------------------------------------------------------
SIMPLE_INT8 = """
name: "simple_int8"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT8 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT8 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT8 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_INT8 dims: [ 16 ] }
]
"""


def build_simple_int8() -> onnx.ModelProto:
    """Sum and difference in int32, narrowed back to int8 (so 127 + 1 wraps to -128, as int8 arithmetic does)."""
    widen = [helper.make_node("Cast", [f"INPUT{i}"], [f"wide{i}"], to=TensorProto.INT32) for i in (0, 1)]
    arithmetic = [helper.make_node("Add", ["wide0", "wide1"], ["sum"]), helper.make_node("Sub", ["wide0", "wide1"], ["difference"])]
    narrow = [helper.make_node("Cast", [wide], [f"OUTPUT{i}"], to=TensorProto.INT8) for i, wide in enumerate(("sum", "difference"))]
    return _onnx_model(
        "simple_int8", widen + arithmetic + narrow,
        [_value(f"INPUT{i}", TensorProto.INT8, 16) for i in (0, 1)], [_value(f"OUTPUT{i}", TensorProto.INT8, 16) for i in (0, 1)],
    )


# -- simple_sequence, simple_dyna_sequence ----------------------------------------------------------------
SIMPLE_SEQUENCE = """
name: "simple_sequence"
platform: "onnxruntime_onnx"
max_batch_size: 8
sequence_batching {
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] }
  ]
}
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU } ]
"""

SIMPLE_DYNA_SEQUENCE = """
name: "simple_dyna_sequence"
platform: "onnxruntime_onnx"
max_batch_size: 8
sequence_batching {
  max_sequence_idle_microseconds: 10000000
  oldest { max_candidate_sequences: 1024 max_queue_delay_microseconds: 10000 }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""


def build_simple_sequence() -> onnx.ModelProto:
    """OUTPUT = (INPUT + START) * READY: the request's own value, plus one on the sequence's first request."""
    nodes = [helper.make_node("Add", ["INPUT", "START"], ["started"]), helper.make_node("Mul", ["started", "READY"], ["OUTPUT"])]
    names = ("INPUT", "START", "READY")
    return _onnx_model("simple_sequence", nodes, [_value(n, TensorProto.INT32, 1) for n in names], [_value("OUTPUT", TensorProto.INT32, 1)])


def build_simple_dyna_sequence() -> onnx.ModelProto:
    """OUTPUT = (INPUT + START + END * CORRID) * READY: the last request of a sequence also carries its id."""
    nodes = [
        helper.make_node("Cast", ["CORRID"], ["corrid"], to=TensorProto.INT32),
        helper.make_node("Mul", ["END", "corrid"], ["id_on_end"]),
        helper.make_node("Add", ["INPUT", "START"], ["started"]),
        helper.make_node("Add", ["started", "id_on_end"], ["value"]),
        helper.make_node("Mul", ["value", "READY"], ["OUTPUT"]),
    ]
    inputs = [_value(n, TensorProto.INT32, 1) for n in ("INPUT", "START", "END", "READY")] + [_value("CORRID", TensorProto.UINT64, 1)]
    return _onnx_model("simple_dyna_sequence", nodes, inputs, [_value("OUTPUT", TensorProto.INT32, 1)])


# -- custom_identity_int32 -------------------------------------------------------------------------------
CUSTOM_IDENTITY_INT32 = """
name: "custom_identity_int32"
platform: "onnxruntime_onnx"
max_batch_size: 1024
version_policy: { latest { num_versions: 1 } }
instance_group [ { kind: KIND_CPU } ]
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ -1 ] } ]
"""


def build_custom_identity_int32() -> onnx.ModelProto:
    return _onnx_model(
        "custom_identity_int32", [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        [_value("INPUT0", TensorProto.INT32, "width")], [_value("OUTPUT0", TensorProto.INT32, "width")],
    )


# -- handlers --------------------------------------------------------------------------------------------
_DECIMAL = re.compile(rb"\s*[+-]?\d{1,10}\s*")
INT32 = np.iinfo(np.int32)


def decimal_integers(array: np.ndarray, name: str) -> np.ndarray:
    """BYTES elements written as decimal int32 values -> int64 array of the same shape; anything else is the client's error."""
    values = np.empty(array.shape, np.int64)
    flat = values.reshape(-1)
    for index, item in enumerate(array.ravel()):
        number = int(item) if _DECIMAL.fullmatch(item) else None
        if number is None or not INT32.min <= number <= INT32.max:
            raise InvalidInput(f"input {name!r}: element {index} ({bytes(item[:24])!r}) is not a decimal INT32 integer")
        flat[index] = number
    return values


def decimal_strings(values: np.ndarray) -> np.ndarray:
    return np.array([str(v).encode() for v in values.ravel().tolist()], dtype=object).reshape(values.shape)


class SimpleStringHandler(ModelHandler):
    """Triton's `simple_string`: integers written as strings, added and subtracted. Exact (no int32 wrap): the
    results of two int32 values always fit the decimal string."""

    placement = "ingress"

    def infer(self, inputs):
        a, b = decimal_integers(inputs["INPUT0"], "INPUT0"), decimal_integers(inputs["INPUT1"], "INPUT1")
        return {"OUTPUT0": decimal_strings(a + b), "OUTPUT1": decimal_strings(a - b)}


class IdentityHandler(ModelHandler):
    placement = "ingress"

    def infer(self, inputs):
        return {"OUTPUT0": inputs["INPUT0"]}


class StringDynaSequenceHandler(ModelHandler):
    """An accumulator per sequence (READY=1: START sets it to the sum of INPUT, otherwise INPUT's sum is added; END
    adds the correlation id, which must be a decimal integer); every element of OUTPUT is the accumulator."""

    placement = "ingress"

    def infer(self, inputs):
        value = inputs["INPUT"].astype(np.int64)
        previous = int(inputs["ACCUMULATOR_IN"].ravel()[0]) if inputs["ACCUMULATOR_IN"].size else 0
        if not int(inputs["READY"].ravel()[0]):
            total = previous
        else:
            total = (0 if int(inputs["START"].ravel()[0]) else previous) + int(value.sum())
            if int(inputs["END"].ravel()[0]):
                total += int(decimal_integers(inputs["CORRID"].ravel()[:1], "CORRID (the sequence id)")[0])
        total = int(np.int64(total).astype(np.int32))  # an int32 accumulator wraps, as Triton's does
        return {"OUTPUT": np.full(value.shape, total, np.int32), "ACCUMULATOR_OUT": np.array([[total]], np.int32)}


MAX_REPEATS = 1000
MAX_DELAY_MS = 10_000
MAX_TOTAL_DELAY_MS = 60_000


class RepeatHandler(ModelHandler):
    """Triton's `repeat_int32`: n responses for an IN of n elements, the i-th after sleeping DELAY[i] ms."""

    pool = "jobs"  # it sleeps between responses: a worker thread of its own, away from the ingress's

    def stream(self, inputs):
        values, delays, wait = inputs["IN"].ravel(), inputs["DELAY"].ravel(), inputs["WAIT"].ravel()
        if delays.shape != values.shape:
            raise InvalidInput(f"input 'DELAY': {delays.size} elements, one per element of 'IN' ({values.size}) expected")
        if values.size > MAX_REPEATS:
            raise InvalidInput(f"input 'IN': {values.size} elements; at most {MAX_REPEATS} responses per request")
        if max(delays.max(initial=0), wait.max(initial=0)) > MAX_DELAY_MS or delays.sum(dtype=np.int64) > MAX_TOTAL_DELAY_MS:
            raise InvalidInput(f"inputs 'DELAY' / 'WAIT': at most {MAX_DELAY_MS} ms each and {MAX_TOTAL_DELAY_MS} ms in all")
        for index, (value, delay) in enumerate(zip(values.tolist(), delays.tolist())):
            time.sleep(delay / 1000)
            yield {"OUT": np.array([value], np.int32), "IDX": np.array([index], np.uint32)}


SIMPLE_STRING = f"""
name: "simple_string"
backend: "python"
max_batch_size: 8
input [
  {{ name: "INPUT0" data_type: TYPE_STRING dims: [ 16 ] }},
  {{ name: "INPUT1" data_type: TYPE_STRING dims: [ 16 ] }}
]
output [
  {{ name: "OUTPUT0" data_type: TYPE_STRING dims: [ 16 ] }},
  {{ name: "OUTPUT1" data_type: TYPE_STRING dims: [ 16 ] }}
]
parameters {{ key: "handler" value {{ string_value: "{HANDLERS}:SimpleStringHandler" }} }}
"""

SIMPLE_IDENTITY = f"""
name: "simple_identity"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_STRING dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_STRING dims: [ -1 ] }} ]
parameters {{ key: "handler" value {{ string_value: "{HANDLERS}:IdentityHandler" }} }}
"""

SIMPLE_STRING_DYNA_SEQUENCE = f"""
name: "simple_string_dyna_sequence"
backend: "python"
max_batch_size: 8
sequence_batching {{
  max_sequence_idle_microseconds: 10000000
  control_input [
    {{ name: "START" control [ {{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "END" control [ {{ kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "READY" control [ {{ kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "CORRID" control [ {{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING }} ] }}
  ]
  state [ {{ input_name: "ACCUMULATOR_IN" output_name: "ACCUMULATOR_OUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
}}
input [ {{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
parameters {{ key: "handler" value {{ string_value: "{HANDLERS}:StringDynaSequenceHandler" }} }}
"""

REPEAT_INT32 = f"""
name: "repeat_int32"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [
  {{ name: "IN" data_type: TYPE_INT32 dims: [ -1 ] }},
  {{ name: "DELAY" data_type: TYPE_UINT32 dims: [ -1 ] }},
  {{ name: "WAIT" data_type: TYPE_UINT32 dims: [ 1 ] }}
]
output [
  {{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "IDX" data_type: TYPE_UINT32 dims: [ 1 ] }}
]
parameters {{ key: "handler" value {{ string_value: "{HANDLERS}:RepeatHandler" }} }}
"""

ONNX_MODELS = {
    "simple_int8": (SIMPLE_INT8, build_simple_int8),
    "simple_sequence": (SIMPLE_SEQUENCE, build_simple_sequence),
    "simple_dyna_sequence": (SIMPLE_DYNA_SEQUENCE, build_simple_dyna_sequence),
    "custom_identity_int32": (CUSTOM_IDENTITY_INT32, build_custom_identity_int32),
}
HANDLER_MODELS = {
    "simple_string": SIMPLE_STRING,
    "simple_identity": SIMPLE_IDENTITY,
    "simple_string_dyna_sequence": SIMPLE_STRING_DYNA_SEQUENCE,
    "repeat_int32": REPEAT_INT32,
}
CARD = """# {name}

Triton's example model `{name}`, with Triton's name, inputs, outputs and sequence controls, so that the example
clients of Triton's client repository (`src/python/examples`) run against this server unchanged. Our own
implementation (an ONNX graph or a python-backend handler): `models/examples/triton.py` says what each computes.

- Data / training: none.
- Checked by `tests/serve/test_triton_examples_server.py` (the calls Triton's clients make, both protocols) and
  `tests/serve/test_triton_examples.py` (the handlers and graphs, without a server).
"""
