"""The model repository: Triton's folder layout, read and validated against Triton's own ModelConfig.

    <root>/<model>/config.pbtxt            ModelConfig in protobuf text format
    <root>/<model>/<version>/model.onnx    or model.pt (TorchScript), or `default_model_filename`;
                                           for `backend: "python"`, whatever files the model's handler reads
    <root>/<model>/card.md                 how it was trained, on what, measured how

A folder that loads here loads in a Triton server too: parsing goes through tritonclient's compiled
`model_config.proto`, so an unknown field or a misspelt enum fails here exactly as it would there.
Everything is checked when the repository is read, so a bad folder fails at startup, naming the file
and the field, instead of on the first request.
"""
import json
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Iterable

import numpy as np

from google.protobuf import json_format, text_format

from streamserve_proto import model_config_pb2

from .batcher import QueuePolicy
from .datatypes import from_config, numpy_dtype
from .errors import ModelNotFound, RepositoryError
from .params import SERVER_KEYS, SERVER_PREFIXES, ServerParams, is_server_key, parse, parse_server

MC = model_config_pb2.ModelConfig

# platform -> (backend, default model file); Triton accepts either `platform` or `backend`.
RUNTIMES = {
    "onnxruntime_onnx": ("onnxruntime", "model.onnx"),
    "pytorch_libtorch": ("pytorch", "model.pt"),
    "python": ("python", ""),  # a handler from `models.` (serve/runtimes/python.py); the version folder holds its data
}
_PLATFORM_OF_BACKEND = {backend: platform for platform, (backend, _) in RUNTIMES.items()}
CARD_FILES = ("card.md", "card.json")


class ModelKind(str, Enum):
    """How a model answers a request; the data plane and the replica branch on this one field."""

    UNARY = "unary"
    """one response per request, batched with others (Triton's default)"""
    ROLLOUT = "rollout"
    """a decoupled model that runs its step `steps` times, feeding outputs back as inputs: one response per step"""
    DECOUPLED = "decoupled"
    """a handler that yields any number of responses per request (progress, segments, then the result)"""
    SEQUENCE = "sequence"
    """one response per request, with state carried between the requests of a sequence (Triton's sequence batcher)"""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the model declares it; `dims` exclude the batch dimension."""

    name: str
    datatype: str
    dims: tuple[int, ...]
    optional: bool = False

    def shape(self, max_batch_size: int) -> list[int]:
        """The full shape a client sees: a leading -1 batch dimension when the model batches."""
        return ([-1] if max_batch_size > 0 else []) + list(self.dims)


ENSEMBLE_MEMBERS, ENSEMBLE_PERTURBATION, ENSEMBLE_SEED = "ENSEMBLE_MEMBERS", "ENSEMBLE_PERTURBATION", "ENSEMBLE_SEED"
ENSEMBLE_INPUTS = {ENSEMBLE_MEMBERS: "INT32", ENSEMBLE_PERTURBATION: "FP32", ENSEMBLE_SEED: "INT64"}
"""The optional control inputs of a rollout that offers ensembles, each [1] per row: how many members, the
perturbation's standard deviation relative to the state's, and the seed that makes the members reproducible."""


@dataclass(frozen=True)
class Ensemble:
    """A rollout's ensemble offer: one request asks for N perturbed members of its forecast; every step's response
    carries the mean and spread (sample standard deviation) over the members of each of `outputs`."""

    outputs: tuple[str, ...]
    max_members: int
    max_bytes: int

    @property
    def statistics(self) -> dict[str, tuple[str, str]]:
        """Each ensemble output -> the names of its mean and spread outputs."""
        return {name: (f"{name}_MEAN", f"{name}_SPREAD") for name in self.outputs}


@dataclass(frozen=True)
class Rollout:
    """A decoupled model that streams a rollout: `state` maps each output fed back to the input it becomes."""

    state: dict[str, str]
    steps_input: str
    max_steps: int
    ensemble: Ensemble | None = None

    @property
    def control_inputs(self) -> set[str]:
        """Inputs the server reads and the model never sees."""
        return {self.steps_input} | (set(ENSEMBLE_INPUTS) if self.ensemble else set())

    @property
    def derived_outputs(self) -> set[str]:
        """Outputs the server computes from the model's (an ensemble's statistics)."""
        return {name for pair in self.ensemble.statistics.values() for name in pair} if self.ensemble else set()


@dataclass(frozen=True)
class SequenceState:
    """Triton's implicit state: the output `output_name` of one request is fed to the next request of the same
    sequence as `input_name`; the first request gets `initial` (zeros, with -1 dims as 0)."""

    input_name: str
    output_name: str
    initial: np.ndarray


@dataclass(frozen=True)
class Control:
    """A sequence control input: START / END / READY get `true` or `false`, CORRID the sequence id."""

    kind: str
    dtype: np.dtype
    false: float | int | bool = 0
    true: float | int | bool = 1


@dataclass(frozen=True)
class Sequence:
    """Triton's sequence batcher as the data plane runs it: control inputs by kind, implicit state, idle timeout."""

    controls: dict[str, "Control"]
    """control input name -> what the data plane feeds it"""
    states: tuple[SequenceState, ...]
    idle_s: float


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path
    config: MC = field(repr=False)
    versions: tuple[int, ...]
    """Versions served under the version policy, ascending."""

    @property
    def platform(self) -> str:
        return self.config.platform

    @property
    def handler(self) -> str | None:
        """`models.<family>.<module>:<Class>` for a python-backend model."""
        return self.server_params.handler if self.platform == "python" else None

    @property
    def max_batch_size(self) -> int:
        return self.config.max_batch_size

    @property
    def decoupled(self) -> bool:
        return self.config.model_transaction_policy.decoupled

    @cached_property
    def kind(self) -> ModelKind:
        """What the config declares, checked at load (`load_model`): a rollout is decoupled and has rollout
        parameters, any other decoupled model a handler; a sequence model is not decoupled."""
        if self.rollout:
            return ModelKind.ROLLOUT
        if self.decoupled:
            return ModelKind.DECOUPLED
        return ModelKind.SEQUENCE if self.sequence else ModelKind.UNARY

    @property
    def dynamic_batching(self) -> bool:
        return self.max_batch_size > 0 and self.config.HasField("dynamic_batching")

    @property
    def max_queue_delay_s(self) -> float:
        return self.config.dynamic_batching.max_queue_delay_microseconds / 1e6

    @property
    def queue_policy(self) -> QueuePolicy:
        """`dynamic_batching.default_queue_policy`. Unlike Triton, whose queue is unbounded unless configured, an
        unset `max_queue_size` holds four full batches (at least 32 requests): past that, overload is refused at once
        (503 / RESOURCE_EXHAUSTED) instead of growing every accepted request's latency. A model that promises a
        latency bound under overload sets it to one batch (`slow_identity`)."""
        policy = self.config.dynamic_batching.default_queue_policy
        return QueuePolicy(
            max_queue_size=policy.max_queue_size or 4 * max(self.max_batch_size, 8),
            timeout_s=policy.default_timeout_microseconds / 1e6,
            allow_timeout_override=policy.allow_timeout_override,
        )

    @property
    def instance_count(self) -> int:
        """Triton's instance_group count: batches run at once in the ingress, replicas for a deployment."""
        groups = list(self.config.instance_group)
        return max(1, sum(g.count or 1 for g in groups)) if groups else 1

    @property
    def on_gpu(self) -> bool:
        return any(g.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU for g in self.config.instance_group)

    @cached_property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(_tensor(t, optional=t.optional) for t in self.config.input)

    @cached_property
    def input_by_name(self) -> dict[str, TensorSpec]:
        return {t.name: t for t in self.inputs}

    @cached_property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return tuple(_tensor(t) for t in self.config.output)

    @cached_property
    def input_shapes(self) -> dict[str, list[int]]:
        """Each input's full shape as a client sees it (`TensorSpec.shape`), made once: every request is checked
        against it (read it, do not change it)."""
        return {t.name: t.shape(self.max_batch_size) for t in self.inputs}

    @cached_property
    def output_datatypes(self) -> dict[str, str]:
        return {t.name: t.datatype for t in self.outputs}

    @cached_property
    def labels(self) -> dict[str, list[str]]:
        """Class labels of each output that names a `label_filename` (one label per line, a file in the model folder):
        Triton's classification extension reports them beside each class index (serve/classification.py)."""
        return {t.name: _read_labels(self.path, t.label_filename) for t in self.config.output if t.label_filename}

    @cached_property
    def params(self) -> dict[str, str]:
        """config.pbtxt's `parameters` as plain strings: where serving options beyond Triton's schema live."""
        return {key: value.string_value for key, value in self.config.parameters.items()}

    @cached_property
    def server_params(self) -> ServerParams:
        """The parameters the server reads, typed (serve/params.py); checked when the model loads."""
        return parse_server(self.params, str(self.path / "config.pbtxt"))

    @property
    def snapshot(self) -> str | None:
        """The data file a python handler answers from (`parameters { key: "snapshot" ... }`, e.g. a hosted
        graph), in each version folder. Pointing it at another file swaps the data into running replicas."""
        return self.server_params.snapshot or None

    def snapshot_state(self) -> dict[str, str] | None:
        """The served snapshot as the deployment's `user_config`: naming another file is a lightweight Serve update
        (ModelWorker.reconfigure), not a restart. Snapshot files are immutable; a new one gets a new name
        (`models.graph.export.add_snapshot` names them by content)."""
        return {"snapshot": self.snapshot} if self.snapshot else None

    @cached_property
    def rollout(self) -> Rollout | None:
        params = self.server_params
        if params.rollout_state is None:
            return None
        state = dict(pair.split("=", 1)[::-1] for pair in params.rollout_state.split(","))
        ensemble = None
        if params.rollout_ensemble_outputs:
            ensemble = Ensemble(tuple(params.rollout_ensemble_outputs.split(",")), params.rollout_ensemble_max_members,
                                params.rollout_ensemble_max_bytes)
        return Rollout(state=state, steps_input=params.rollout_steps_input or "", max_steps=params.rollout_max_steps,
                       ensemble=ensemble)

    @cached_property
    def sequence(self) -> Sequence | None:
        if not self.config.HasField("sequence_batching"):
            return None
        batching = self.config.sequence_batching
        controls = {}
        for control_input in batching.control_input:
            for control in control_input.control:
                kind = model_config_pb2.ModelSequenceBatching.Control.Kind.Name(control.kind)
                if kind == "CONTROL_SEQUENCE_CORRID":
                    controls[control_input.name] = Control(kind, _numpy(control.data_type))
                elif control.int32_false_true:
                    controls[control_input.name] = Control(kind, np.dtype(np.int32), *control.int32_false_true)
                elif control.fp32_false_true:
                    controls[control_input.name] = Control(kind, np.dtype(np.float32), *control.fp32_false_true)
                else:
                    controls[control_input.name] = Control(kind, np.dtype(np.bool_), *control.bool_false_true)
        states = tuple(
            SequenceState(
                s.input_name, s.output_name,
                np.zeros([max(d, 0) for d in s.dims], dtype=_numpy(s.data_type)),
            )
            for s in batching.state
        )
        idle_us = batching.max_sequence_idle_microseconds or 60_000_000  # Triton's 1 s default is too short for clients on a network
        return Sequence(controls, states, idle_us / 1e6)

    @cached_property
    def min_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-input minimum sizes, from `min_shape.<INPUT>` parameters ("1,10,16"): e.g. a spectral model
        needs at least as many grid points as the Fourier modes it keeps."""
        prefix = "min_shape."
        return {
            key[len(prefix):]: tuple(int(v) for v in value.split(","))
            for key, value in self.params.items() if key.startswith(prefix)
        }

    @cached_property
    def text_limits(self) -> dict[str, tuple[int | None, int | None]]:
        """BYTES inputs holding text: (max UTF-8 bytes, max space-separated words) per element, from
        `max_bytes.<INPUT>` / `max_words.<INPUT>` parameters. Such inputs must also not be blank."""
        limits: dict[str, list] = {}
        for key, value in self.params.items():
            kind, _, name = key.partition(".")
            if kind in ("max_bytes", "max_words") and name:
                limits.setdefault(name, [None, None])[kind == "max_words"] = int(value)
        return {name: tuple(pair) for name, pair in limits.items()}

    @cached_property
    def output_histograms(self) -> dict[str, tuple[tuple[float, ...], tuple[str, ...]]]:
        """Content telemetry: `output_histogram.<OUTPUT>` = bucket boundaries ("0,10,...,100") puts the values a
        model returns into a Prometheus histogram; `output_labels.<OUTPUT>` = "a,b,c" labels the last axis."""
        histograms = {}
        for key, value in self.params.items():
            kind, _, name = key.partition(".")
            if kind == "output_histogram" and name:
                labels = self.params.get(f"output_labels.{name}", "")
                histograms[name] = (
                    tuple(float(v) for v in value.split(",")),
                    tuple(label.strip() for label in labels.split(",") if label.strip()),
                )
        return histograms

    @property
    def reject_non_finite(self) -> bool:
        """`reject_non_finite: "true"`: NaN or infinite inputs are a client error, not a model input."""
        return self.server_params.reject_non_finite

    @property
    def latest(self) -> int:
        return self.versions[-1]

    def resolve(self, version: str | int | None) -> int:
        """The served version a request means: the latest when it names none."""
        if version in (None, "", -1):
            return self.latest
        try:
            number = int(version)
        except (TypeError, ValueError):
            # Triton's wording first: clients (and Triton's example clients) match on it
            raise ModelNotFound(f"failed to get model version from specified version string {version!r}: model {self.name!r} "
                                "versions are integers") from None
        if number not in self.versions:
            raise ModelNotFound(f"model {self.name!r} does not serve version {number}; served: {list(self.versions)}")
        return number

    def model_file(self, version: int) -> Path:
        """The file the runtime loads; for a python-backend model, the version folder."""
        filename = self.config.default_model_filename or RUNTIMES[self.platform][1]
        return self.path / str(version) / filename if filename else self.path / str(version)

    @property
    def card(self) -> Path | None:
        return next((self.path / n for n in CARD_FILES if (self.path / n).is_file()), None)

    def config_json(self) -> dict:
        """Triton's `GET .../config` answer: the ModelConfig as JSON with proto field names."""
        return json_format.MessageToDict(self.config, preserving_proto_field_name=True)


def _numpy(data_type: int) -> np.dtype:
    return numpy_dtype(from_config(model_config_pb2.DataType.Name(data_type)))


def _tensor(t, optional: bool = False) -> TensorSpec:
    return TensorSpec(t.name, from_config(model_config_pb2.DataType.Name(t.data_type)), tuple(t.dims), optional)


def model_folders(root: Path) -> list[str]:
    """The names of the model folders under `root` (hidden and `_` folders are not models)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


class ModelRepository:
    """All models under one root folder, validated once at construction; `names`: only these folders (the ingress
    reads the models its application was built with, not folders added since: serve/model_control.py loads those)."""

    def __init__(self, root: str | Path, names: Iterable[str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise RepositoryError(f"model repository {self.root} does not exist; build it with `make repository`")
        self.models: dict[str, ModelSpec] = {}
        for name in model_folders(self.root) if names is None else sorted(set(names)):
            self.models[name] = load_model(self.root / name)
        if not self.models:
            raise RepositoryError(f"model repository {self.root} holds no model folders")

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            # Triton's wording ("Request for unknown model ..."), which Triton's own example clients check for.
            raise ModelNotFound(f"Request for unknown model {name!r}: not found; served models: {sorted(self.models)}") from None

    def __iter__(self):
        return iter(self.models.values())


def parse_config(text: str, source: str = "config.pbtxt") -> MC:
    try:
        return text_format.Parse(text, MC())
    except text_format.ParseError as e:
        raise RepositoryError(f"{source}: {e}") from None


OVERRIDABLE = ("max_batch_size", "dynamic_batching", "instance_group", "version_policy")
"""The config fields a load may override (Triton's `config` load parameter, serve/model_control.py): how the model is
batched, scaled and versioned. Which files are read and which code runs (platform, tensors, parameters) come from the
repository directory only."""


@dataclass(frozen=True)
class ConfigOverride:
    document: dict
    """The JSON as sent, checked to parse as a ModelConfig."""
    fields: tuple[str, ...]
    """The fields the JSON names, zero values included (proto3 cannot tell a 0 it was given from one it was not)."""
    name: str
    """The model's name, when the JSON names it ("" otherwise)."""


def override_config(text: str) -> ConfigOverride:
    """Triton's `config` load parameter: ModelConfig JSON naming only fields of OVERRIDABLE (and the model's name)."""
    try:
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("expected a JSON object")
        name = json_format.ParseDict(document, MC()).name
    except (json_format.ParseError, ValueError, RecursionError) as e:
        raise RepositoryError(f"config is not ModelConfig JSON: {str(e)[:300]}") from None
    names = {f.json_name: f.name for f in MC.DESCRIPTOR.fields} | {f.name: f.name for f in MC.DESCRIPTOR.fields}
    fields = tuple(names[key] for key in document)
    refused = sorted(set(fields) - set(OVERRIDABLE) - {"name"})
    if refused:
        raise RepositoryError(f"config fields {refused} cannot be overridden by a load; it may set {list(OVERRIDABLE)}")
    return ConfigOverride({key: value for key, value in document.items() if names[key] != "name"}, fields, name)


def load_model(folder: Path, override: ConfigOverride | None = None) -> ModelSpec:
    """The model at `folder`, validated; `override` (from `override_config`) replaces the fields it names."""
    config_path = folder / "config.pbtxt"
    if not config_path.is_file():
        raise RepositoryError(f"{folder}: no config.pbtxt")
    config = parse_config(config_path.read_text(), str(config_path))
    where = str(config_path)
    if override is not None:
        if "name" in override.fields and override.name != folder.name:
            raise RepositoryError(f"config names the model {override.name!r}, not {folder.name!r}")
        for name in override.fields:
            if name != "name":
                config.ClearField(name)  # replaced, not merged: a repeated field's entries are the override's alone
        json_format.ParseDict(override.document, config)
        where += " with the load's config override"
    if not config.name:
        config.name = folder.name
    if config.name != folder.name:
        raise RepositoryError(f"{where}: name {config.name!r} differs from its folder {folder.name!r}")
    if not config.platform and config.backend in _PLATFORM_OF_BACKEND:
        config.platform = _PLATFORM_OF_BACKEND[config.backend]
    if config.platform not in RUNTIMES:
        raise RepositoryError(f"{where}: platform {config.platform or config.backend!r} is not served; supported: {sorted(RUNTIMES)}")
    if config.max_batch_size < 0:
        raise RepositoryError(f"{where}: max_batch_size must be >= 0")
    if config.HasField("dynamic_batching") and config.max_batch_size == 0:
        raise RepositoryError(f"{where}: dynamic_batching needs max_batch_size > 0")
    _check_tensors(config.input, "input", where)
    _check_tensors(config.output, "output", where)
    versions = _served_versions(folder, config, where)
    spec = ModelSpec(config.name, folder, config, versions)
    for version in versions:
        if spec.platform != "python" and not spec.model_file(version).is_file():
            raise RepositoryError(f"{folder / str(version)}: missing model file {spec.model_file(version).name}")
    _check_parameters(spec, where)
    try:
        spec.labels
    except (OSError, ValueError) as e:
        raise RepositoryError(f"{where}: label_filename: {e}") from None
    if spec.snapshot:
        _check_snapshot(spec, where)
    if spec.rollout and not spec.decoupled:
        raise RepositoryError(f"{where}: a rollout model must be decoupled (model_transaction_policy {{ decoupled: true }})")
    if spec.decoupled and not (spec.rollout or spec.handler):
        raise RepositoryError(f"{where}: a decoupled model needs rollout_state/rollout_steps_input parameters or a python handler")
    if spec.rollout:
        _check_rollout(spec, where)
    if spec.sequence:
        _check_sequence(spec, where)
    try:
        histograms = spec.output_histograms
    except ValueError:
        raise RepositoryError(f"{where}: output_histogram.<OUTPUT> must be comma-separated numbers") from None
    unknown = set(histograms) - {t.name for t in spec.outputs}
    if unknown:
        raise RepositoryError(f"{where}: output_histogram names outputs {sorted(unknown)} the model does not declare")
    return spec


def _check_parameters(spec: ModelSpec, where: str) -> None:
    """The server's keys, typed; a python model's own keys against its handler's `Params`; any other model may use
    only the server's keys."""
    parse_server(spec.params, where)
    if spec.platform == "python":
        if not spec.handler:
            raise RepositoryError(f"{where}: a python-backend model needs parameters {{ key: \"handler\" value {{ string_value: \"models.<family>.<module>:<Class>\" }} }}")
        from .runtimes.python import handler_class  # a handler module is cheap to import: heavy libraries load lazily

        parse(handler_class(spec.handler).Params, spec.params, where)
        return
    unknown = sorted(key for key in spec.params if not is_server_key(key))
    if unknown:
        raise RepositoryError(f"{where}: unknown parameter(s) {unknown}; a {spec.platform} model takes only the server's "
                              f"{sorted(SERVER_KEYS)} and {list(SERVER_PREFIXES)}<name>")


def _check_snapshot(spec: ModelSpec, where: str) -> None:
    name = spec.snapshot
    if spec.platform != "python":
        raise RepositoryError(f"{where}: parameter 'snapshot' is for python-backend models, whose handler loads it")
    if Path(name).name != name or name.startswith("."):
        raise RepositoryError(f"{where}: parameter 'snapshot' must name a file in the version folder, got {name!r}")
    for version in spec.versions:
        if not (spec.path / str(version) / name).is_file():
            raise RepositoryError(f"{spec.path / str(version)}: missing snapshot file {name} (parameter 'snapshot')")


def _check_sequence(spec: ModelSpec, where: str) -> None:
    declared = {t.name for t in spec.inputs} | {t.name for t in spec.outputs}
    for name in [*spec.sequence.controls, *(s.input_name for s in spec.sequence.states), *(s.output_name for s in spec.sequence.states)]:
        if name in declared:
            raise RepositoryError(f"{where}: sequence control/state tensor {name!r} must not also be declared as an input or output")
    if spec.decoupled:
        raise RepositoryError(f"{where}: a sequence model answers each request once; it cannot also be decoupled")


MAX_LABEL_FILE_BYTES = 1 << 20


def _read_labels(folder: Path, name: str) -> list[str]:
    if Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{name!r} must be a file name in the model folder")
    path = folder / name
    if not path.is_file() or path.is_symlink():
        raise ValueError(f"{name!r} is not a file in {folder}")
    if path.stat().st_size > MAX_LABEL_FILE_BYTES:
        raise ValueError(f"{name!r} is larger than {MAX_LABEL_FILE_BYTES} bytes")
    return path.read_text(encoding="utf-8").splitlines()


def _check_tensors(tensors, kind: str, where: str) -> None:
    if not tensors:
        raise RepositoryError(f"{where}: no {kind} declared")
    seen = set()
    for t in tensors:
        if not t.name or t.name in seen:
            raise RepositoryError(f"{where}: {kind} names must be non-empty and unique (got {t.name!r})")
        seen.add(t.name)
        if t.data_type in (model_config_pb2.TYPE_INVALID, model_config_pb2.TYPE_BF16):
            raise RepositoryError(f"{where}: {kind} {t.name!r} has unsupported data_type {model_config_pb2.DataType.Name(t.data_type)}")
        if any(d == 0 or d < -1 for d in t.dims):
            raise RepositoryError(f"{where}: {kind} {t.name!r} dims {list(t.dims)}: each must be -1 or positive")


def _served_versions(folder: Path, config: MC, where: str) -> tuple[int, ...]:
    on_disk = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    if not on_disk:
        raise RepositoryError(f"{folder}: no numeric version folders")
    policy = config.version_policy.WhichOneof("policy_choice")
    if policy == "all":
        served = on_disk
    elif policy == "specific":
        missing = set(config.version_policy.specific.versions) - set(on_disk)
        if missing:
            raise RepositoryError(f"{where}: version_policy names versions {sorted(missing)} with no folder")
        served = sorted(config.version_policy.specific.versions)
    else:  # Triton's default: the latest one
        count = config.version_policy.latest.num_versions if policy == "latest" else 1
        served = on_disk[-max(count, 1) :]
    return tuple(served)


def _check_rollout(spec: ModelSpec, where: str) -> None:
    inputs = {t.name: t for t in spec.inputs}
    outputs = {t.name for t in spec.outputs}
    rollout = spec.rollout
    if rollout.steps_input not in inputs or inputs[rollout.steps_input].datatype not in ("INT32", "INT64"):
        raise RepositoryError(f"{where}: rollout_steps_input {rollout.steps_input!r} must name an INT32/INT64 input")
    for output, state_input in rollout.state.items():
        if output not in outputs or state_input not in inputs:
            raise RepositoryError(f"{where}: rollout_state pair {state_input}={output} must name an input and an output")
    if rollout.ensemble:
        if spec.max_batch_size <= 0:
            raise RepositoryError(f"{where}: rollout_ensemble_outputs needs a batching model (max_batch_size > 0): members are rows")
        for name, datatype in ENSEMBLE_INPUTS.items():
            tensor = inputs.get(name)
            if tensor is None or tensor.datatype != datatype or tensor.dims != (1,) or not tensor.optional:
                raise RepositoryError(f"{where}: an ensemble rollout declares the optional input {name} ({datatype}, dims [1])")
        declared = {t.name: t for t in spec.outputs}
        for name, statistics in rollout.ensemble.statistics.items():
            if name not in declared or declared[name].datatype not in ("FP32", "FP64"):
                raise RepositoryError(f"{where}: ensemble output {name!r} must be a declared FP32/FP64 output")
            for derived in statistics:
                if derived not in declared or (declared[derived].datatype, declared[derived].dims) != (declared[name].datatype, declared[name].dims):
                    raise RepositoryError(f"{where}: ensemble output {name!r} needs the output {derived} declared like it "
                                          f"({declared[name].datatype}, dims {list(declared[name].dims)})")
