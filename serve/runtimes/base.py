import logging
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

logger = logging.getLogger("ray.serve")


class Runtime(ABC):
    """Runs a model file: named input arrays in, named output arrays out, batch dimension included.

    `device` is "cpu" or "cuda" (the replica's assignment from Ray); `num_threads` is the replica's
    CPU share, so replicas packed on one machine do not oversubscribe its cores. A GPU share on a node that
    declares a GPU it does not have (a misdeclared node, Ray's simulated cluster, a broken driver) runs on the CPU:
    `device` says "cpu" and `describe()` says why (`device_fallback`), where loading onto CUDA would crash the replica.
    """

    def __init__(self, model_file: Path, input_names, output_names, num_threads: int, device: str):
        self.model_file = Path(model_file)
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.num_threads = max(1, int(num_threads))
        self.device, self.device_fallback = device, None
        if device == "cuda" and not cuda_available():
            self.fall_back_to_cpu("Ray assigned this replica a GPU share, but no CUDA device is visible on its node")

    def fall_back_to_cpu(self, reason: str) -> None:
        """Run on the CPU instead of the assigned GPU, and say so in `describe()` and the replica's log."""
        self.device, self.device_fallback = "cpu", f"{reason}: running on the CPU"
        logger.warning("%s: %s", self.model_file, self.device_fallback)

    @abstractmethod
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def describe(self) -> dict:
        """What this runtime actually runs on, for logs and the benchmark notes."""
        described = {"runtime": type(self).__name__, "device": self.device, "threads": self.num_threads}
        return described | ({"device_fallback": self.device_fallback} if self.device_fallback else {})


def cuda_available() -> bool:
    """Whether this process sees a CUDA device (torch's view: the driver loads and a device is visible)."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()

