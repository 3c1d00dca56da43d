"""The platform's own request and response: what every transport decodes into and encodes from.

Tensors are numpy arrays whose dtype carries the v2 datatype (BYTES = object arrays of bytes), so no
second description of a tensor travels beside it.
"""
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class InferRequest:
    model: str
    version: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None = None
    """Names of the outputs asked for; None asks for all of them."""
    id: str = ""
    parameters: dict = field(default_factory=dict)
    received: float = field(default_factory=time.perf_counter)
    """When the adapter started on it (perf_counter): the decode stage runs from here to the model call."""
    classification: dict[str, int] = field(default_factory=dict)
    """Outputs asked for as their top classes (Triton's classification extension, serve/classification.py): name -> k."""
    caller: str = ""
    """Who sent it, as the transport tells (the peer's address): a sequence belongs to the caller that started it."""


@dataclass
class InferResponse:
    model: str
    version: str
    outputs: dict[str, np.ndarray]
    id: str = ""
    parameters: dict = field(default_factory=dict)
