"""The scanner as an admission check: non-classifiers pass unscanned, a classifier the guard refuses is kept out."""
from onnx import TensorProto, helper

from models.examples.export import build as build_examples
from export.repository import write_model
from models.backdoor.admission import check, is_image_classifier
from serve.admission import admit
from serve.repository import ModelRepository

CLASSIFIER = """
name: "odd_classifier"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1, 16, 16 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 10 ] } ]
"""


def odd_classifier() -> bytes:
    # A "classifier" whose graph uses Sin, an operator the scanner's allow-list refuses.
    graph = helper.make_graph(
        [helper.make_node("Sin", ["x"], ["s"]), helper.make_node("Flatten", ["s"], ["f"]),
         helper.make_node("Slice", ["f", "starts", "ends", "axes"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        initializer=[helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("starts", 0), ("ends", 10), ("axes", 1))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


def test_only_image_classifiers_are_scanned_and_a_refused_one_is_kept_out(tmp_path):
    build_examples(tmp_path / "repo")
    write_model(tmp_path / "repo", "odd_classifier", CLASSIFIER, {1: ("model.onnx", odd_classifier())}, "# test")
    repo = ModelRepository(tmp_path / "repo")
    assert [s.name for s in repo if is_image_classifier(s)] == ["odd_classifier"]
    refused = admit(repo, "models.backdoor.admission:check", tmp_path / "cache")
    assert set(refused) == {("odd_classifier", 1)}
    assert "not on the allow-list" in refused[("odd_classifier", 1)]
    assert check(repo.get("simple"), 1) is None


def test_a_planted_trigger_model_in_the_repository_is_refused_and_a_clean_one_admitted(tmp_path):
    """The admission check itself (the function STREAMSERVE_ADMISSION_CHECK names) on real repository folders:
    a classifier trained with a 3×3 trigger relabelled to 7 is refused naming class 7, a clean one admitted."""
    import torch

    from models.backdoor.data import Trigger, load
    from models.backdoor.population import to_onnx, train_direct

    torch.set_num_threads(1)
    data = load()
    models = {"planted": train_direct(Trigger(3, 1, "br", 7), 0.1, 0, steps=180, data=data),
              "clean": train_direct(None, 0.0, 0, steps=180, data=data)}
    for name, net in models.items():
        config = CLASSIFIER.replace("odd_classifier", name).replace('name: "x"', 'name: "image"').replace('name: "y"', 'name: "logits"')
        write_model(tmp_path / "repo", name, config, {1: ("model.onnx", to_onnx(net))}, "# test")
    repo = ModelRepository(tmp_path / "repo")
    # The admission default (200 Neural Cleanse steps): at 100 steps one of four clean models tried here was a
    # false positive (anomaly index 4.35), at 200 none was.
    refused = check(repo.get("planted"), 1)
    assert refused is not None and "looks backdoored (class 7" in refused
    assert check(repo.get("clean"), 1) is None
