import numpy as np
import torch

from .base import Runtime


class TorchScriptRuntime(Runtime):
    """A TorchScript module: inputs passed positionally in config order, outputs read in config order.

    That is Triton's libtorch convention when names are not `INPUT__0`-style; one or several outputs
    (a tuple) are both accepted.
    """

    def __init__(self, model_file, input_names, output_names, num_threads, device):
        super().__init__(model_file, input_names, output_names, num_threads, device)
        torch.set_num_threads(self.num_threads)
        # A TorchScript archive from the platform's own repository; uploads are ONNX only.
        self.module = torch.jit.load(str(model_file), map_location=self.device).eval()

    @torch.inference_mode()
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device) for name in self.input_names]
        result = self.module(*args)
        results = result if isinstance(result, (tuple, list)) else (result,)
        return {name: tensor.detach().cpu().numpy() for name, tensor in zip(self.output_names, results)}
