"""Write the examples into a repository: Triton's `simple`, the `heat1d` rollout, the python-backend examples and
Triton's other example models under their Triton names (triton.py)."""
from pathlib import Path

from export.repository import write_model

from . import handlers, heat1d, simple, triton


def build(root: Path) -> None:
    for example in (simple, heat1d):
        write_model(root, example.NAME, example.CONFIG, {1: ("model.onnx", example.build().SerializeToString())}, example.CARD)
    for name, config in handlers.MODELS.items():  # python-backend examples: the version folder holds no file
        write_model(root, name, config, {1: {}}, handlers.CARD.format(name=name))
    for name, (config, graph) in triton.ONNX_MODELS.items():
        write_model(root, name, config, {1: ("model.onnx", graph().SerializeToString())}, triton.CARD.format(name=name))
    for name, config in triton.HANDLER_MODELS.items():
        write_model(root, name, config, {1: {}}, triton.CARD.format(name=name))
