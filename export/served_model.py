"""One typed description of a served model, from which its config.pbtxt and its card's signature are written.

A family's export describes each model once (`ServedModel`): tensors with their meaning, batching, the handler
and its typed parameters, the server's own keys. `config_pbtxt()` renders Triton's ModelConfig through its proto
(so a field the schema lacks fails here, not at load), and `signature()` renders the same tensors as the card's
inputs/outputs table, so the config and the card cannot disagree.
"""
from dataclasses import dataclass, field

from google.protobuf import text_format

from streamserve_proto import model_config_pb2
from serve.datatypes import to_config
from serve.params import HandlerParams

MC = model_config_pb2.ModelConfig


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    """the protocol's name: FP32, INT64, BYTES, ..."""
    dims: tuple[int, ...]
    """without the batch dimension when the model batches; -1 = any size"""
    description: str = ""
    optional: bool = False
    format: str = ""
    """an image input's layout for clients that read it (Triton's FORMAT_NCHW / FORMAT_NHWC); "" says nothing"""
    label_filename: str = ""
    """an output's class labels, a file in the model folder (Triton's classification extension reports them)"""


@dataclass(frozen=True)
class ServedModel:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    platform: str = "onnxruntime_onnx"
    """"onnxruntime_onnx", "pytorch_libtorch", or "python" with a `handler`"""
    handler: str | None = None
    """`models.<family>.serving:<Class>` for a python-backend model"""
    params: HandlerParams | None = None
    """the handler's parameters (its `Params()` with any non-default values)"""
    max_batch_size: int = 0
    queue_delay_us: int | None = None
    """dynamic batching with this queue delay; None: no dynamic batching"""
    instances: int = 1
    decoupled: bool = False
    server_params: dict[str, str] = field(default_factory=dict)
    """keys the server reads (serve/params.py): rollout_*, output_histogram.<OUTPUT>, min_shape.<INPUT>, info.<name>, ..."""
    extra: str = ""
    """ModelConfig text for what this description does not model (sequence_batching, version_policy, a queue policy)"""

    def config(self) -> MC:
        config = MC(name=self.name, max_batch_size=self.max_batch_size)
        if self.platform == "python":
            config.backend = "python"
        else:
            config.platform = self.platform
        for tensors, add in ((self.inputs, config.input.add), (self.outputs, config.output.add)):
            for t in tensors:
                entry = add(name=t.name, data_type=model_config_pb2.DataType.Value(to_config(t.datatype)), dims=list(t.dims))
                if t.optional:
                    entry.optional = True
                if t.format:
                    entry.format = model_config_pb2.ModelInput.Format.Value(t.format)
                if t.label_filename:
                    entry.label_filename = t.label_filename
        if self.queue_delay_us is not None:
            config.dynamic_batching.max_queue_delay_microseconds = self.queue_delay_us
        if self.decoupled:
            config.model_transaction_policy.decoupled = True
        config.instance_group.add(count=self.instances, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
        parameters = dict(self.server_params)
        if self.handler:
            parameters["handler"] = self.handler
        if self.params is not None:
            parameters |= self.params.as_strings()
        for key, value in parameters.items():
            config.parameters[key].string_value = value
        if self.extra:
            text_format.Merge(self.extra, config)
        return config

    def config_pbtxt(self) -> str:
        return text_format.MessageToString(self.config(), use_short_repeated_primitives=True)

    def signature(self) -> str:
        """The card's inputs/outputs table, from the same tensors as the config."""
        batch = f"[batch ≤ {self.max_batch_size}] + " if self.max_batch_size else ""
        rows = ["| | tensor | datatype | shape | meaning |", "|---|---|---|---|---|"]
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            for t in tensors:
                shape = batch + "[" + ", ".join("any" if d == -1 else str(d) for d in t.dims) + "]"
                rows.append(f"| {kind}{' (optional)' if t.optional else ''} | `{t.name}` | {t.datatype} | {shape} | {t.description} |")
        return "\n".join(rows)
