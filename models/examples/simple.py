"""Triton's classic `simple` model: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1 (INT32, dims [16]).

Built directly as an ONNX graph: two ops need no training, and the exact arithmetic makes it the
reference every client example in Triton's documentation already calls.
"""
import onnx
from . import IR_VERSION
from onnx import TensorProto, helper

NAME = "simple"
CONFIG = """
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
dynamic_batching { max_queue_delay_microseconds: 2000 }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
CARD = """# simple

Triton's `simple` example model, as an ONNX graph of two ops: `OUTPUT0 = INPUT0 + INPUT1`,
`OUTPUT1 = INPUT0 - INPUT1`, INT32 tensors of shape [batch, 16], max_batch_size 8.

- Data / training: none; the graph is written by `models/examples/simple.py` (`make repository`).
- Metric: exact integer arithmetic, checked against numpy in `tests/serve/test_server.py`.
"""


def build() -> onnx.ModelProto:
    def tensor(name):
        return helper.make_tensor_value_info(name, TensorProto.INT32, ["batch", 16])

    graph = helper.make_graph(
        [helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]), helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])],
        NAME,
        [tensor("INPUT0"), tensor("INPUT1")],
        [tensor("OUTPUT0"), tensor("OUTPUT1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model
