"""Runtimes run one model on arrays; they know nothing of protocols, batching or Ray.

`load_runtime` picks the runtime by the model's platform in config.pbtxt: ONNX Runtime, TorchScript,
or a model family's handler (serve/runtimes/python.py) for `backend: "python"`.
"""
from .base import Runtime


def load_runtime(spec, version: int, input_names, output_names, num_threads: int, device: str) -> Runtime:
    model_file = spec.model_file(version)
    if spec.platform == "onnxruntime_onnx":
        from .onnx import OnnxRuntime

        return OnnxRuntime(model_file, input_names, output_names, num_threads, device)
    if spec.platform == "pytorch_libtorch":
        from .torchscript import TorchScriptRuntime

        return TorchScriptRuntime(model_file, input_names, output_names, num_threads, device)
    if spec.platform == "python":
        from .python import handler_class

        return handler_class(spec.handler)(model_file, spec.params, input_names, output_names, num_threads, device)
    raise ValueError(f"no runtime for platform {spec.platform!r}")


__all__ = ["Runtime", "load_runtime"]
