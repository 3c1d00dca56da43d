import numpy as np
import onnxruntime as ort

from ..errors import RepositoryError
from .base import Runtime

# Preferred order when a replica holds a GPU; ORT skips any provider its build lacks.
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRuntime(Runtime):
    """ONNX Runtime; CUDA/TensorRT providers are used when this build offers them and the replica has a GPU."""

    def __init__(self, model_file, input_names, output_names, num_threads, device):
        super().__init__(model_file, input_names, output_names, num_threads, device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        providers = [p for p in GPU_PROVIDERS if p in available] if self.device == "cuda" else []
        if self.device == "cuda" and not providers:
            self.fall_back_to_cpu("this onnxruntime build has no CUDA or TensorRT provider")
        self.session = ort.InferenceSession(str(model_file), options, providers=providers + ["CPUExecutionProvider"])
        # Inputs with a default (an initializer of the same name: ONNX's optional inputs) count too.
        self.graph_inputs = frozenset(i.name for i in [*self.session.get_inputs(), *self.session.get_overridable_initializers()])
        """Every input name the graph takes: a handler whose graphs differ by version can ask which one it holds."""
        graph_outputs = {o.name for o in self.session.get_outputs()}
        if not set(self.input_names) <= self.graph_inputs or not set(self.output_names) <= graph_outputs:
            raise RepositoryError(
                f"{model_file}: config names inputs {self.input_names} / outputs {self.output_names}, "
                f"the graph has {sorted(self.graph_inputs)} / {sorted(graph_outputs)}"
            )

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {name: _onnx_value(array) for name, array in inputs.items()}
        results = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, results))

    def describe(self) -> dict:
        return super().describe() | {"providers": self.session.get_providers()}


def _onnx_value(array: np.ndarray) -> np.ndarray:
    # ONNX string tensors are numpy object arrays of str, not bytes.
    if array.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8", errors="replace") if isinstance(b, bytes) else b, otypes=[object])(array)
    return array
