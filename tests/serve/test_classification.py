"""Triton's classification extension without a server: the top classes as strings, labels from the model folder."""
import numpy as np
import pytest

from serve.classification import classify, parse_count
from serve.errors import InvalidInput, RepositoryError
from serve.repository import load_model


def test_top_classes_are_largest_first_with_index_and_label():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], np.float32)
    top = classify(scores, 2, ["cat", "dog", "eel"], batched=True)
    assert top.shape == (2, 2)
    assert top.tolist() == [[b"0.700000:1:dog", b"0.200000:2:eel"], [b"0.500000:0:cat", b"0.250000:1:dog"]]  # ties: lower index first


def test_without_labels_or_batch_and_k_past_the_class_count():
    assert classify(np.array([3, 9, 1], np.int32), 5, [], batched=False).tolist() == [b"9.000000:1", b"3.000000:0", b"1.000000:2"]
    assert classify(np.array([[[0.2], [0.8]]], np.float32), 1, ["a"], batched=True).tolist() == [[b"0.800000:1"]]  # no label for 1


@pytest.mark.parametrize("value", [-1, 1.5, "3", True])
def test_a_class_count_must_be_a_non_negative_integer(value):
    with pytest.raises(InvalidInput, match="output 'probs': parameter 'classification'"):
        parse_count(value, "probs")


def _model(tmp_path, label_filename: str):
    folder = tmp_path / "m"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(b"")
    (folder / "config.pbtxt").write_text(f'''name: "m" platform: "onnxruntime_onnx" max_batch_size: 4
input [{{ name: "x" data_type: TYPE_FP32 dims: [3] }}]
output [{{ name: "y" data_type: TYPE_FP32 dims: [3] label_filename: "{label_filename}" }}]''')
    return folder


def test_labels_load_from_the_model_folder(tmp_path):
    folder = _model(tmp_path, "labels.txt")
    (folder / "labels.txt").write_text("cat\ndog\neel\n")
    assert load_model(folder).labels == {"y": ["cat", "dog", "eel"]}


@pytest.mark.parametrize("name", ["../labels.txt", "missing.txt", "/etc/passwd"])
def test_a_label_file_outside_the_folder_or_missing_refuses_the_model(tmp_path, name):
    (tmp_path / "labels.txt").write_text("outside\n")
    with pytest.raises(RepositoryError, match="label_filename"):
        load_model(_model(tmp_path, name))
