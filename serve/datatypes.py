"""The tensor datatypes of the v2 protocol, and how each maps to numpy and to Triton's model config.

The v2 protocol names 13 datatypes; numpy has more (and two spellings for some), so the tables map
exactly the protocol's set and everything else is refused by name. BYTES tensors are numpy object
arrays of `bytes`: the protocol gives them no fixed width.
"""
import numpy as np

from .errors import InvalidInput

NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
DATATYPES = tuple(NUMPY_DTYPES)

# Triton's ModelConfig spells datatypes as DataType enum names; BYTES is TYPE_STRING there.
_CONFIG_NAMES = {name: f"TYPE_{name}" for name in DATATYPES} | {"BYTES": "TYPE_STRING"}
_FROM_CONFIG = {config: name for name, config in _CONFIG_NAMES.items()}


def numpy_dtype(datatype: str, tensor: str | None = None) -> np.dtype:
    try:
        return NUMPY_DTYPES[datatype]
    except KeyError:
        where = f"tensor {tensor!r}: " if tensor else ""
        raise InvalidInput(f"{where}unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}") from None


_BY_DTYPE = {dtype: name for name, dtype in NUMPY_DTYPES.items()}


def from_numpy(dtype: np.dtype) -> str:
    """The v2 datatype of a numpy array's dtype (object and bytes/str arrays are BYTES)."""
    name = _BY_DTYPE.get(dtype)  # a dict lookup: this runs for every tensor of every request and response
    if name is not None:
        return name
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return "BYTES"
    if (name := _BY_DTYPE.get(dtype)) is not None:
        return name
    raise TypeError(f"numpy dtype {dtype} has no v2 protocol datatype")


def from_config(config_type: str) -> str:
    """`TYPE_FP32` -> `FP32`; `TYPE_STRING` -> `BYTES`."""
    try:
        return _FROM_CONFIG[config_type]
    except KeyError:
        raise ValueError(f"data type {config_type} has no v2 protocol datatype") from None


def to_config(datatype: str) -> str:
    return _CONFIG_NAMES[datatype]


def itemsize(datatype: str) -> int:
    """Bytes per element in a raw buffer (BYTES elements have none: each is length-prefixed)."""
    return 0 if datatype == "BYTES" else NUMPY_DTYPES[datatype].itemsize
