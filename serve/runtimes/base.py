from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class Runtime(ABC):
    """Runs a model file: named input arrays in, named output arrays out, batch dimension included.

    `device` is "cpu" or "cuda" (the replica's assignment from Ray); `num_threads` is the replica's
    CPU share, so replicas packed on one machine do not oversubscribe its cores.
    """

    def __init__(self, model_file: Path, input_names, output_names, num_threads: int, device: str):
        self.model_file = Path(model_file)
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.num_threads = max(1, int(num_threads))
        self.device = device

    @abstractmethod
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def describe(self) -> dict:
        """What this runtime actually runs on, for logs and the benchmark notes."""
        return {"runtime": type(self).__name__, "device": self.device, "threads": self.num_threads}
