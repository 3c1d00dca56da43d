"""A GPU share on a node without a CUDA device (Ray's simulated GPU nodes, a misdeclared node): the runtime runs on the
CPU and says why in describe(), where loading onto CUDA would crash the replica."""
import numpy as np
import pytest

from serve.runtimes import base
from serve.runtimes.onnx import OnnxRuntime
from serve.runtimes.torchscript import TorchScriptRuntime


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(base, "cuda_available", lambda: False)


def _digits():
    return {"image": np.zeros((2, 1, 8, 8), np.float32)}


@pytest.mark.usefixtures("no_cuda")
def test_onnx_on_a_declared_but_absent_gpu_runs_on_the_cpu(repository):
    runtime = OnnxRuntime(repository / "digits_cnn" / "1" / "model.onnx", ["image"], ["probabilities", "label"], 1, "cuda")
    described = runtime.describe()
    assert described["device"] == "cpu" and "no CUDA device" in described["device_fallback"]
    assert described["providers"] == ["CPUExecutionProvider"]
    assert runtime.infer(_digits())["probabilities"].shape == (2, 10)


def test_onnx_without_a_gpu_provider_says_so(repository, monkeypatch):
    monkeypatch.setattr(base, "cuda_available", lambda: True)  # a CUDA device, but a CPU-only onnxruntime build
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: ["CPUExecutionProvider"])
    runtime = OnnxRuntime(repository / "digits_cnn" / "1" / "model.onnx", ["image"], ["probabilities", "label"], 1, "cuda")
    assert runtime.device == "cpu" and "no CUDA or TensorRT provider" in runtime.describe()["device_fallback"]


@pytest.mark.usefixtures("no_cuda")
def test_torchscript_on_a_declared_but_absent_gpu_runs_on_the_cpu(repository):
    model = repository / "digits_cnn_torchscript" / "1" / "model.pt"
    runtime = TorchScriptRuntime(model, ["image"], ["probabilities", "label"], 1, "cuda")  # map_location="cuda" would raise
    assert runtime.describe()["device"] == "cpu" and "device_fallback" in runtime.describe()
    assert runtime.infer(_digits())["probabilities"].shape == (2, 10)


def test_a_cpu_replica_has_no_fallback_note(repository):
    runtime = OnnxRuntime(repository / "digits_cnn" / "1" / "model.onnx", ["image"], ["probabilities", "label"], 1, "cpu")
    assert runtime.describe()["device"] == "cpu" and "device_fallback" not in runtime.describe()
