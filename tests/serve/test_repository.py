"""The repository reader: Triton's layout and ModelConfig schema, version policies, and clear refusals."""
from pathlib import Path

import pytest

from models.examples import simple
from serve.errors import ModelNotFound, RepositoryError
from serve.repository import ModelRepository, load_model

GOOD = simple.CONFIG


def make_model(root: Path, config: str, versions=(1,), name="simple", filename="model.onnx") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.pbtxt").write_text(config)
    for v in versions:
        (folder / str(v)).mkdir()
        (folder / str(v) / filename).write_bytes(simple.build().SerializeToString())
    return folder


def test_reads_a_triton_folder(tmp_path):
    make_model(tmp_path, GOOD)
    spec = ModelRepository(tmp_path).get("simple")
    assert spec.max_batch_size == 8 and spec.dynamic_batching and spec.max_queue_delay_s == 0.002
    assert [t.name for t in spec.inputs] == ["INPUT0", "INPUT1"] and spec.inputs[0].datatype == "INT32"
    assert spec.inputs[0].shape(spec.max_batch_size) == [-1, 16]
    assert spec.config_json()["input"][0]["data_type"] == "TYPE_INT32"


@pytest.mark.parametrize("policy,on_disk,served,default", [
    ("", (1, 2, 3), (3,), 3),
    ("version_policy { latest { num_versions: 2 } }", (1, 2, 3), (2, 3), 3),
    ("version_policy { all { } }", (1, 3), (1, 3), 3),
    ("version_policy { specific { versions: [1] } }", (1, 2), (1,), 1),
])
def test_version_policy(tmp_path, policy, on_disk, served, default):
    spec = load_model(make_model(tmp_path, GOOD + policy, versions=on_disk))
    assert spec.versions == served and spec.resolve(None) == default
    assert spec.resolve(str(served[0])) == served[0]


def test_unserved_version_is_not_found(tmp_path):
    spec = load_model(make_model(tmp_path, GOOD, versions=(1, 2)))
    with pytest.raises(ModelNotFound, match=r"does not serve version 1; served: \[2\]"):
        spec.resolve("1")
    with pytest.raises(ModelNotFound, match="unknown model 'other'"):
        ModelRepository(tmp_path).get("other")


BAD_CONFIGS = [
    ("name differs", GOOD.replace('name: "simple"', 'name: "other"'), "differs from its folder"),
    ("unknown field", GOOD + "\nbatch_size_max: 3", 'no field named "batch_size_max"'),
    ("misspelt enum", GOOD.replace("TYPE_INT32", "TYPE_INT31", 1), "TYPE_INT31"),
    ("unserved platform", GOOD.replace("onnxruntime_onnx", "tensorflow_savedmodel"), "platform 'tensorflow_savedmodel' is not served"),
    ("zero dim", GOOD.replace("dims: [ 16 ]", "dims: [ 0 ]", 1), "each must be -1 or positive"),
    ("duplicate input", GOOD.replace('"INPUT1"', '"INPUT0"', 1), "names must be non-empty and unique"),
    ("batching without batch", GOOD.replace("max_batch_size: 8", "max_batch_size: 0"), "dynamic_batching needs max_batch_size > 0"),
    ("decoupled without rollout", GOOD + "\nmodel_transaction_policy { decoupled: true }", "decoupled model needs rollout"),
    ("specific version missing", GOOD + "\nversion_policy { specific { versions: [4] } }", "names versions [4] with no folder"),
]


@pytest.mark.parametrize("config,fragment", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_invalid_configs_are_refused_at_load(tmp_path, config, fragment):
    make_model(tmp_path, config)
    with pytest.raises(RepositoryError, match="config.pbtxt") as caught:
        ModelRepository(tmp_path)
    assert fragment in str(caught.value)


HANDLER_MODEL = """name: "hosted" backend: "python" max_batch_size: 0
input [ { name: "ACCOUNT_IDS" data_type: TYPE_INT64 dims: [ 1 ] } ]
output [ { name: "FOUND" data_type: TYPE_BOOL dims: [ 1 ] } ]
parameters { key: "handler" value { string_value: "models.graph.serving:BotDetectorHandler" } }
"""


@pytest.mark.parametrize("value,fragment", [
    ("graph.npz", None),
    ("other.npz", "missing snapshot file other.npz"),
    ("../graph.npz", "must name a file in the version folder"),
    (".hidden.npz", "must name a file in the version folder"),
])
def test_snapshot_parameter(tmp_path, value, fragment):
    config = HANDLER_MODEL + f'parameters {{ key: "snapshot" value {{ string_value: "{value}" }} }}'
    folder = make_model(tmp_path, config, name="hosted", filename="graph.npz")
    if fragment is None:
        assert load_model(folder).snapshot_state() == {"snapshot": "graph.npz"}
        return
    with pytest.raises(RepositoryError, match="snapshot") as caught:
        load_model(folder)
    assert fragment in str(caught.value)


def test_snapshot_parameter_is_for_python_models(tmp_path):
    make_model(tmp_path, GOOD + '\nparameters { key: "snapshot" value { string_value: "model.onnx" } }')
    with pytest.raises(RepositoryError, match="'snapshot' is for python-backend models"):
        ModelRepository(tmp_path)


def test_missing_model_file_is_refused(tmp_path):
    make_model(tmp_path, GOOD, filename="other.onnx")
    with pytest.raises(RepositoryError, match="missing model file model.onnx"):
        ModelRepository(tmp_path)


def test_empty_or_missing_repository(tmp_path):
    with pytest.raises(RepositoryError, match="does not exist"):
        ModelRepository(tmp_path / "nope")
    with pytest.raises(RepositoryError, match="holds no model folders"):
        ModelRepository(tmp_path)


def test_each_model_of_the_built_repository_has_one_kind(repository):
    from serve.repository import ModelKind

    kinds = {spec.name: spec.kind for spec in ModelRepository(repository)}
    assert kinds["simple"] is ModelKind.UNARY and kinds["iqa"] is ModelKind.UNARY
    assert kinds["heat1d"] is ModelKind.ROLLOUT and kinds["kno_ns2d"] is ModelKind.ROLLOUT
    assert kinds["backdoor_scan"] is ModelKind.DECOUPLED and kinds["video_artifacts"] is ModelKind.DECOUPLED
    assert kinds["video_artifacts_segments"] is ModelKind.SEQUENCE
