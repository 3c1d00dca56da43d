"""Triton's classification extension: an output asked for with `classification: k` (tritonclient's
`InferRequestedOutput(name, class_count=k)`) is answered with its k largest values as BYTES strings
"value:index" or "value:index:label", largest first, per batch row, instead of the raw tensor.

The labels come from the output's `label_filename` in config.pbtxt (ModelSpec.labels). Values are written as C++'s
`std::to_string(float)` writes them (six decimals), which is what Triton's clients parse.
"""
import numpy as np

from .errors import InvalidInput


def classify(array: np.ndarray, count: int, labels: list[str], batched: bool) -> np.ndarray:
    """[batch, k] (or [k] for a model without a batch dimension) object array of bytes; k = min(count, classes)."""
    rows = array.reshape(array.shape[0], -1) if batched else array.reshape(1, -1)
    k = min(count, rows.shape[1])
    # argsort of the negated values, stable: equal scores keep index order, as a sort of (value desc, index asc) does
    top = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    out = np.empty((rows.shape[0], k), dtype=object)
    for r, indices in enumerate(top):
        for j, index in enumerate(indices):
            text = f"{float(rows[r, index]):f}:{index}"
            if index < len(labels):
                text += f":{labels[index]}"
            out[r, j] = text.encode()
    return out if batched else out[0]


def parse_count(value, output: str) -> int:
    """The class count a request asks for; 0 means the raw output."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"output {output!r}: parameter 'classification' must be a non-negative integer, got {value!r}")
    return value
