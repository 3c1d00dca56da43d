"""Natural-scene statistics (BRISQUE's features): the classical no-reference baseline both quality families are
measured against."""
from .brisque import brisque_features

__all__ = ["brisque_features"]
