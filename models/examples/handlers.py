"""Small python-backend models that prove the handler interface (serve/runtimes/python.py) end to end:

- `byte_length`: per-request preprocessing (an empty element is refused alone), batched `infer`, and
  content telemetry (a histogram of the lengths served);
- `accumulate_sequence`: an accumulator over a sequence: OUTPUT is the running sum of INPUT, carried between
  requests as implicit state by the data plane (Triton's own `simple_sequence`, which does not accumulate, is in
  triton.py with Triton's other example models);
- `countdown_job`: a decoupled job that streams progress, then its result; stopping early closes it;
- `slow_identity`: a batch of 4 takes `delay_s`, one batch may wait behind it (`max_queue_size: 4`): the overload
  tests push it past capacity;
  `slow_identity_dedicated` is the same model outside the ingress, in the jobs pool (the replica-kill tests).
"""
import time

import numpy as np

from pydantic import Field

from serve.sdk import HandlerParams, InvalidInput, ModelHandler


class ByteLengthHandler(ModelHandler):
    placement = "ingress"

    def preprocess(self, inputs):
        data = inputs["DATA"]
        for index, item in enumerate(data.ravel()):
            if not item:
                raise InvalidInput(f"input 'DATA': element {index} is empty; non-empty bytes expected")
        return {"LENGTH_IN": np.array([[len(item)] for item in data.ravel()], dtype=np.int64)}

    def infer(self, inputs):
        return {"LENGTH": inputs["LENGTH_IN"]}


class AccumulateHandler(ModelHandler):
    placement = "ingress"

    def infer(self, inputs):
        previous = inputs["TOTAL_IN"]
        total = (previous if previous.size else np.zeros([1], np.int64)) + inputs["INPUT"].astype(np.int64)
        return {"OUTPUT": total.astype(np.int32), "TOTAL_OUT": total, "STARTED": inputs["START"].astype(np.bool_)}


class DelayParams(HandlerParams):
    delay_s: float = Field(0.05, ge=0, le=10, description="seconds slept per step (countdown) or per batch (identity)")


class CountdownJobHandler(ModelHandler):
    """Counts STEPS down with `delay_s` between steps; `closed` records that a consumer's early stop reached it."""

    pool = "jobs"
    Params = DelayParams

    closed = 0

    def stream(self, inputs):
        steps = int(inputs["STEPS"].ravel()[0])
        if not 1 <= steps <= 100:
            raise InvalidInput(f"input 'STEPS': {steps} is outside 1..100")
        delay = self.params.delay_s
        try:
            for step in range(1, steps + 1):
                time.sleep(delay)
                yield {"PROGRESS": np.array([step / steps], np.float32)}
            yield {"PROGRESS": np.array([1.0], np.float32), "RESULT": np.array([b"done after %d steps" % steps], dtype=object)}
        finally:
            type(self).closed += 1


class SlowIdentityHandler(ModelHandler):
    placement = "ingress"
    Params = DelayParams

    def infer(self, inputs):
        time.sleep(self.params.delay_s)
        return {"Y": inputs["X"]}


BYTE_LENGTH = """
name: "byte_length"
backend: "python"
max_batch_size: 8
input [ { name: "DATA" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "LENGTH" data_type: TYPE_INT64 dims: [ 1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 2000 }
parameters { key: "handler" value { string_value: "models.examples.handlers:ByteLengthHandler" } }
parameters { key: "output_histogram.LENGTH" value { string_value: "1,4,16,64,256,1024" } }
"""

ACCUMULATE_SEQUENCE = """
name: "accumulate_sequence"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [
  { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "STARTED" data_type: TYPE_BOOL dims: [ 1 ] }
]
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ]
  state [ { input_name: "TOTAL_IN" output_name: "TOTAL_OUT" data_type: TYPE_INT64 dims: [ -1 ] } ]
}
parameters { key: "handler" value { string_value: "models.examples.handlers:AccumulateHandler" } }
"""

COUNTDOWN_JOB = """
name: "countdown_job"
backend: "python"
max_batch_size: 0
input [ { name: "STEPS" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [
  { name: "PROGRESS" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "RESULT" data_type: TYPE_STRING dims: [ 1 ] }
]
model_transaction_policy { decoupled: true }
parameters { key: "handler" value { string_value: "models.examples.handlers:CountdownJobHandler" } }
""" + DelayParams().pbtxt()

SLOW_IDENTITY = """
name: "slow_identity"
backend: "python"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 1000 default_queue_policy { max_queue_size: 4 } }
parameters { key: "handler" value { string_value: "models.examples.handlers:SlowIdentityHandler" } }
""" + DelayParams().pbtxt() + "\n"

SLOW_IDENTITY_DEDICATED = SLOW_IDENTITY.replace('"slow_identity"', '"slow_identity_dedicated"') + (
    'parameters { key: "placement" value { string_value: "dedicated" } }\n'
    'parameters { key: "pool" value { string_value: "jobs" } }\n'  # an example needs no process of its own
)

MODELS = {
    "byte_length": BYTE_LENGTH, "accumulate_sequence": ACCUMULATE_SEQUENCE, "countdown_job": COUNTDOWN_JOB, "slow_identity": SLOW_IDENTITY,
    "slow_identity_dedicated": SLOW_IDENTITY_DEDICATED,
}
CARD = """# {name}

A platform example for python-backend handlers (`models/examples/handlers.py`); no training, no data.
Tested in `tests/serve/test_handlers.py` and through tritonclient in `tests/serve/test_server.py`.
"""
