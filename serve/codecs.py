"""Conversions between wire tensors and numpy arrays, one place for every transport.

Three encodings of a tensor's data exist on the wire: a JSON list (HTTP), a raw little-endian buffer
(HTTP's binary tensor extension and gRPC's `raw_*_contents`), and gRPC's typed `contents` fields.
Each decoder checks the element count against the shape and names the tensor when it does not fit,
so the adapters never inspect data themselves.
"""
import math
import struct
import sys

import numpy as np

from .datatypes import NUMPY_DTYPES, itemsize, numpy_dtype
from .errors import InvalidInput

# JSON values a datatype may be written with (numpy's inferred kind of the list): integers may be
# written for floats, nothing else crosses (a float for an INT32 is a client bug, not a rounding job).
_JSON_KINDS = {"BOOL": "b", "BYTES": "U"} | {
    name: ("iu" if name.startswith(("INT", "UINT")) else "iuf") for name in NUMPY_DTYPES if name not in ("BOOL", "BYTES")
}

# gRPC's typed contents field for each datatype; FP16 has none, so FP16 must travel raw.
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_FIELD_DTYPES = {
    "bool_contents": np.bool_, "int_contents": np.int32, "int64_contents": np.int64, "uint_contents": np.uint32,
    "uint64_contents": np.uint64, "fp32_contents": np.float32, "fp64_contents": np.float64,
}


# Raw buffers are little-endian whatever the host: each datatype's dtype read that way, made once (on a
# little-endian host it is the native dtype, so decoding is a view and encoding a copy, nothing more).
_LITTLE_ENDIAN = {name: np.dtype(dtype).newbyteorder("<") for name, dtype in NUMPY_DTYPES.items() if name != "BYTES"}
_BIG_ENDIAN_HOST = sys.byteorder == "big"

# No tensor of a request under the size limit can hold more elements than this (BOOL and UINT8 take one byte,
# a BYTES element four); a declared count past it is refused before anything is allocated.
MAX_ELEMENTS = 2**31


def element_count(shape, name: str) -> int:
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise InvalidInput(f"tensor {name!r}: shape {list(shape)} must be a list of non-negative integers")
    count = math.prod(shape)  # Python integers: no overflow, whatever the client declares
    if count > MAX_ELEMENTS or any(dim > MAX_ELEMENTS for dim in shape):  # numpy refuses [0, 2**62, 2**62] too
        raise InvalidInput(f"tensor {name!r}: shape {list(shape)} declares {count} elements; at most {MAX_ELEMENTS} are accepted")
    return count


def decode_raw(buffer: bytes, datatype: str, shape, name: str) -> np.ndarray:
    """A raw buffer (row-major, little-endian; BYTES as 4-byte length + data per element) -> array."""
    count = element_count(shape, name)
    dtype = numpy_dtype(datatype, name)
    if datatype == "BYTES":
        return _decode_bytes_elements(buffer, count, name).reshape(shape)
    expected = count * itemsize(datatype)
    if len(buffer) != expected:
        raise InvalidInput(
            f"tensor {name!r}: raw data has {len(buffer)} bytes, expected {expected} "
            f"({count} {datatype} elements for shape {list(shape)})"
        )
    return view_raw(buffer, datatype, shape)


def view_raw(buffer, datatype: str, shape) -> np.ndarray:
    """A numeric raw buffer whose size and shape are known to agree, as an array: a view of the received bytes (a copy
    in native byte order on a big-endian host)."""
    array = np.ndarray(shape, _LITTLE_ENDIAN[datatype], buffer)
    return array.astype(array.dtype.newbyteorder("=")) if _BIG_ENDIAN_HOST else array


def _decode_bytes_elements(buffer: bytes, count: int, name: str) -> np.ndarray:
    # Each element carries a 4-byte length: the buffer bounds the count before the array is allocated.
    if count * 4 > len(buffer):
        raise InvalidInput(f"tensor {name!r}: {count} BYTES elements need at least {count * 4} bytes, the data has {len(buffer)}")
    out = np.empty(count, dtype=object)
    view, offset = memoryview(buffer), 0
    for i in range(count):
        if offset + 4 > len(view):
            raise InvalidInput(f"tensor {name!r}: BYTES data ends after {i} of {count} elements")
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidInput(f"tensor {name!r}: BYTES element {i} claims {length} bytes, only {len(view) - offset} remain")
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise InvalidInput(f"tensor {name!r}: {len(view) - offset} bytes left over after {count} BYTES elements")
    return out


def encode_raw(array: np.ndarray) -> bytes:
    if array.dtype.kind in "OSU":
        parts = []
        for item in array.ravel():
            data = item.encode() if isinstance(item, str) else bytes(item)
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    if array.dtype.byteorder == ">" or (_BIG_ENDIAN_HOST and array.dtype.byteorder == "="):
        array = array.astype(array.dtype.newbyteorder("<"))
    return array.tobytes()  # row-major whatever the array's own layout


def decode_json(data, datatype: str, shape, name: str) -> np.ndarray:
    """A JSON `data` list (flat row-major, or nested) -> array of the declared datatype and shape."""
    count = element_count(shape, name)
    dtype = numpy_dtype(datatype, name)
    if not isinstance(data, list):
        raise InvalidInput(f"tensor {name!r}: 'data' must be a list, got {type(data).__name__}")
    try:
        values = np.asarray(data).reshape(-1)
    except (ValueError, RecursionError):
        raise InvalidInput(f"tensor {name!r}: 'data' is a ragged or too deeply nested list") from None
    if values.size != count:
        raise InvalidInput(f"tensor {name!r}: 'data' has {values.size} elements, shape {list(shape)} needs {count}")
    if dtype.kind in "iu" and values.dtype.kind in "fO":
        # numpy falls back to float (losing digits) or object for integers beyond int64: redo exactly.
        exact = _flatten(data)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in exact):
            values = np.array(exact, dtype=object)
            _check_range(values, dtype, datatype, name)
            return values.astype(dtype).reshape(shape)
    if values.size and values.dtype.kind not in _JSON_KINDS[datatype]:
        raise InvalidInput(f"tensor {name!r}: 'data' holds {_json_kind_name(values)} values, expected {datatype}")
    if datatype == "BYTES":
        return np.array([v.encode() for v in values.tolist()] or [], dtype=object).reshape(shape)
    if values.dtype.kind in "iu" and dtype.kind in "iu":
        _check_range(values, dtype, datatype, name)
    return values.astype(dtype).reshape(shape)


def _flatten(data) -> list:
    out = []
    for item in data:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _check_range(values: np.ndarray, dtype: np.dtype, datatype: str, name: str) -> None:
    info = np.iinfo(dtype)
    if values.size and (values.min() < info.min or values.max() > info.max):
        raise InvalidInput(f"tensor {name!r}: values outside the {datatype} range [{info.min}, {info.max}]")


def _json_kind_name(values: np.ndarray) -> str:
    return {"b": "boolean", "i": "integer", "u": "integer", "f": "floating-point", "U": "string"}.get(
        values.dtype.kind, "mixed-type"
    )


def encode_json(array: np.ndarray) -> list:
    if array.dtype.kind in "OS":
        return [item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item) for item in array.ravel()]
    return array.ravel().tolist()


def decode_contents(contents, datatype: str, shape, name: str) -> np.ndarray:
    """gRPC `InferTensorContents` (the typed repeated field of the datatype) -> array."""
    count = element_count(shape, name)
    numpy_dtype(datatype, name)
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise InvalidInput(f"tensor {name!r}: {datatype} has no typed contents field; send it in raw_input_contents")
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(f"tensor {name!r}: {field} has {len(values)} elements, shape {list(shape)} needs {count}")
    dtype = numpy_dtype(datatype, name)
    if datatype == "BYTES":
        return np.array(list(values), dtype=object).reshape(shape)
    array = np.array(values, dtype=_FIELD_DTYPES[field])  # the field's own width; narrower types checked below
    if dtype.kind in "iu":
        _check_range(array, dtype, datatype, name)
    return array.astype(dtype).reshape(shape)
