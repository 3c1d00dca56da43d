"""The server's surface for model families: everything `models/` may import from `serve`, and nothing else.

A family's handler subclasses `ModelHandler`, declares its config.pbtxt parameters as a `HandlerParams` subclass,
refuses bad requests with `InvalidInput` (400 / INVALID_ARGUMENT) and a full job queue with `Overloaded`
(503 / RESOURCE_EXHAUSTED) — `JobSlots` caps a handler's concurrent long jobs that way — runs its ONNX graphs through `OnnxRuntime`, and reads and writes tensors with the
shared codecs. The contract is checked by import-linter (`lint-imports`, pyproject.toml; tests/test_architecture.py).
"""
from .errors import InvalidInput, Overloaded, RepositoryError
from .family_codecs import ImageReader, bytes_tensor, json_tensor, one_bytes
from .params import HandlerParams
from .runtimes.onnx import OnnxRuntime
from .runtimes.python import JobSlots, ModelHandler

__all__ = [
    "HandlerParams", "ImageReader", "InvalidInput", "JobSlots", "ModelHandler", "OnnxRuntime", "Overloaded", "RepositoryError",
    "bytes_tensor", "json_tensor", "one_bytes",
]
