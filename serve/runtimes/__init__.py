"""Runtimes run one model file on arrays; they know nothing of protocols, batching or Ray.

`load_runtime` picks the runtime by the model's platform in config.pbtxt.
"""
from pathlib import Path

from .base import Runtime


def load_runtime(platform: str, model_file: Path, input_names, output_names, num_threads: int, device: str) -> Runtime:
    if platform == "onnxruntime_onnx":
        from .onnx import OnnxRuntime

        return OnnxRuntime(model_file, input_names, output_names, num_threads, device)
    if platform == "pytorch_libtorch":
        from .torchscript import TorchScriptRuntime

        return TorchScriptRuntime(model_file, input_names, output_names, num_threads, device)
    raise ValueError(f"no runtime for platform {platform!r}")


__all__ = ["Runtime", "load_runtime"]
