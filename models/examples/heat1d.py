"""`heat1d`: one explicit step of the periodic 1-D heat equation, served as a streamed rollout.

u_{t+1} = u + r (roll(u, 1) - 2u + roll(u, -1)), with r = 0.25 (stable for r <= 0.5). The graph is
one step; the server runs it STEPS times, feeding `U_NEXT` back as `U` and streaming every step
(a decoupled model, as the Koopman forecast endpoints will be). Mass is conserved exactly and the
explicit scheme is the reference solver the tests compare against.
"""
import numpy as np
import onnx
from . import IR_VERSION
from onnx import TensorProto, helper, numpy_helper

NAME = "heat1d"
DIFFUSION_NUMBER = 0.25
MAX_STEPS = 1000
CONFIG = f"""
name: "heat1d"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {{ name: "U" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "STEPS" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "ENSEMBLE_MEMBERS" data_type: TYPE_INT32 dims: [ 1 ] optional: true }},
  {{ name: "ENSEMBLE_PERTURBATION" data_type: TYPE_FP32 dims: [ 1 ] optional: true }},
  {{ name: "ENSEMBLE_SEED" data_type: TYPE_INT64 dims: [ 1 ] optional: true }}
]
output [
  {{ name: "U_NEXT" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "U_NEXT_MEAN" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "U_NEXT_SPREAD" data_type: TYPE_FP32 dims: [ -1 ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: 1000 }}
instance_group [ {{ count: 2 kind: KIND_CPU }} ]
model_transaction_policy {{ decoupled: true }}
parameters {{ key: "rollout_state" value {{ string_value: "U=U_NEXT" }} }}
parameters {{ key: "rollout_steps_input" value {{ string_value: "STEPS" }} }}
parameters {{ key: "rollout_max_steps" value {{ string_value: "{MAX_STEPS}" }} }}
parameters {{ key: "rollout_ensemble_outputs" value {{ string_value: "U_NEXT" }} }}
parameters {{ key: "rollout_ensemble_max_members" value {{ string_value: "64" }} }}
parameters {{ key: "info.diffusion_number" value {{ string_value: "{DIFFUSION_NUMBER}" }} }}
parameters {{ key: "min_shape.U" value {{ string_value: "1,3" }} }}
parameters {{ key: "reject_non_finite" value {{ string_value: "true" }} }}
"""
CARD = f"""# heat1d

One explicit finite-difference step of the periodic 1-D heat equation (diffusion number r = {DIFFUSION_NUMBER}),
served as a decoupled model: a request carries `U` [rows, points] (at least 3 points, finite) and `STEPS`
[rows, 1]; the server streams one response per step over `ModelStreamInfer` or server-sent events
(`generate_stream`), or returns the whole rollout [rows, steps, points] from a unary `infer`. Concurrent
rollouts are batched step by step (max_batch_size 8 rows). An ensemble request (`ENSEMBLE_MEMBERS` 2..64, optional
`ENSEMBLE_PERTURBATION` and `ENSEMBLE_SEED`, one row of `U`) gets `U_NEXT_MEAN` and `U_NEXT_SPREAD` per step: the mean
and standard deviation over the members, member 0 unperturbed (serve/ensembles.py).

- Data / training: none; the graph is written by `models/examples/heat1d.py` (`make repository`).
- Check: the stream equals `reference_rollout` (numpy) to float32 precision and conserves the sum of U,
  in `tests/serve/test_server.py`.
"""


def reference_step(u: np.ndarray) -> np.ndarray:
    return u + DIFFUSION_NUMBER * (np.roll(u, 1, axis=-1) - 2 * u + np.roll(u, -1, axis=-1))


def build() -> onnx.ModelProto:
    # Periodic padding by one point on the last axis, then a [r, 1-2r, r] stencil as a 1-D convolution.
    weights = numpy_helper.from_array(np.array([[[DIFFUSION_NUMBER, 1 - 2 * DIFFUSION_NUMBER, DIFFUSION_NUMBER]]], np.float32), "stencil")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 1], np.int64), "pads")
    axes = numpy_helper.from_array(np.array([1], np.int64), "channel_axis")
    nodes = [
        helper.make_node("Unsqueeze", ["U", "channel_axis"], ["u3"]),
        helper.make_node("Pad", ["u3", "pads"], ["padded"], mode="wrap"),
        helper.make_node("Conv", ["padded", "stencil"], ["next3"]),
        helper.make_node("Squeeze", ["next3", "channel_axis"], ["U_NEXT"]),
    ]
    graph = helper.make_graph(
        nodes, NAME,
        [helper.make_tensor_value_info("U", TensorProto.FLOAT, ["rows", "points"])],
        [helper.make_tensor_value_info("U_NEXT", TensorProto.FLOAT, ["rows", "points"])],
        initializer=[weights, pads, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model
