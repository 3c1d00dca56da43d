"""Natural-scene statistics (BRISQUE's features): the classical no-reference baseline both quality families are
measured against, and the kernel regressor on them (kept as numbers) both serve."""
from .brisque import brisque_features
from .kernel import KernelLevel

__all__ = ["KernelLevel", "brisque_features"]
