"""Codec tables: every datatype round-trips through each wire encoding; malformed data is refused by name."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from streamserve_proto import service_pb2 as pb
from serve.codecs import CONTENTS_FIELDS, decode_contents, decode_json, decode_raw, encode_json, encode_raw
from serve.datatypes import DATATYPES, from_config, from_numpy, numpy_dtype, to_config
from serve.errors import InvalidInput

SAMPLES = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], np.uint8),
    "UINT16": np.array([[0, 7, 65535]], np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1]], np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1]], np.uint64),
    "INT8": np.array([[-128, 0, 127]], np.int8),
    "INT16": np.array([[-32768, 0, 32767]], np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1]], np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1]], np.int64),
    "FP16": np.array([[-1.5, 0.0, 65504.0]], np.float16),
    "FP32": np.array([[-1.5, 0.25, 3.0e38]], np.float32),
    "FP64": np.array([[-1.5, 0.25, 1.0e300]], np.float64),
    "BYTES": np.array([[b"", b"abc", "h\u00e9".encode()]], dtype=object),
}


def test_every_protocol_datatype_has_a_sample():
    assert set(SAMPLES) == set(DATATYPES)


@pytest.mark.parametrize("datatype", DATATYPES)
def test_raw_round_trip(datatype):
    array = SAMPLES[datatype]
    decoded = decode_raw(encode_raw(array), datatype, list(array.shape), "x")
    assert decoded.dtype == numpy_dtype(datatype) and decoded.shape == array.shape
    assert decoded.tolist() == array.tolist()
    assert from_numpy(decoded.dtype) == datatype


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d not in ("BOOL", "BYTES")])
def test_raw_is_little_endian_row_major_whatever_the_array_s_layout(datatype):
    """Outputs reach the encoder as the model made them: big-endian, transposed or strided arrays travel as the
    protocol's little-endian, row-major bytes."""
    array = np.arange(12).reshape(3, 4).astype(numpy_dtype(datatype))
    expected = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    for layout in (array.astype(array.dtype.newbyteorder(">")), np.asfortranarray(array), array.T.copy().T, array[:, ::-1][:, ::-1]):
        assert encode_raw(layout) == expected
        np.testing.assert_array_equal(decode_raw(encode_raw(layout), datatype, [3, 4], "x"), array)


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "BYTES"])
def test_json_round_trip(datatype):
    array = SAMPLES[datatype]
    data = json.loads(json.dumps(encode_json(array)))
    decoded = decode_json(data, datatype, list(array.shape), "x")
    assert decoded.dtype == numpy_dtype(datatype) and decoded.tolist() == array.tolist()


def test_json_bytes_are_utf8_strings():
    array = SAMPLES["BYTES"]
    assert encode_json(array) == ["", "abc", "h\u00e9"]
    assert decode_json(["", "abc", "h\u00e9"], "BYTES", [1, 3], "x").tolist() == array.tolist()


def test_json_accepts_nested_lists():
    assert decode_json([[1, 2], [3, 4]], "INT32", [2, 2], "x").tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("datatype", sorted(CONTENTS_FIELDS))
def test_typed_contents(datatype):
    array = SAMPLES[datatype]
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype=datatype, shape=list(array.shape))
    getattr(tensor.contents, CONTENTS_FIELDS[datatype]).extend(array.ravel().tolist())
    decoded = decode_contents(tensor.contents, datatype, list(array.shape), "x")
    assert decoded.dtype == numpy_dtype(datatype) and decoded.tolist() == array.tolist()


@pytest.mark.parametrize("datatype", DATATYPES)
def test_config_names_round_trip(datatype):
    assert from_config(to_config(datatype)) == datatype


BAD = [
    # (call, message fragment)
    (lambda: decode_raw(b"\0" * 7, "INT32", [2], "t"), "raw data has 7 bytes, expected 8"),
    (lambda: decode_raw(b"\0" * 8, "INT32", [-2], "t"), "non-negative integers"),
    (lambda: decode_raw(b"\x05\0\0\0ab", "BYTES", [1], "t"), "claims 5 bytes, only 2 remain"),
    (lambda: decode_raw(b"\x01\0\0\0a!", "BYTES", [1], "t"), "1 bytes left over"),
    (lambda: decode_raw(b"\x01\0\0", "BYTES", [1], "t"), "1 BYTES elements need at least 4 bytes, the data has 3"),
    (lambda: decode_raw(b"", "FP8", [1], "t"), "unknown datatype 'FP8'"),
    (lambda: decode_json([1, 2, 3], "INT32", [2], "t"), "has 3 elements, shape [2] needs 2"),
    (lambda: decode_json([1.5, 2], "INT64", [2], "t"), "floating-point values, expected INT64"),
    (lambda: decode_json([1, "a"], "FP32", [2], "t"), "string values, expected FP32"),
    (lambda: decode_json([1, 2], "BOOL", [2], "t"), "integer values, expected BOOL"),
    (lambda: decode_json([300], "UINT8", [1], "t"), "outside the UINT8 range"),
    (lambda: decode_json([-1], "UINT32", [1], "t"), "outside the UINT32 range"),
    (lambda: decode_json("abc", "BYTES", [1], "t"), "'data' must be a list"),
    (lambda: decode_json([[1, 2], [3]], "INT32", [3], "t"), "ragged"),
    (lambda: decode_contents(pb.InferTensorContents(int_contents=[1]), "INT32", [2], "t"), "int_contents has 1 elements"),
    (lambda: decode_contents(pb.InferTensorContents(int_contents=[200]), "INT8", [1], "t"), "outside the INT8 range"),
    (lambda: decode_contents(pb.InferTensorContents(), "FP16", [0], "t"), "FP16 has no typed contents field"),
]


@pytest.mark.parametrize("call,fragment", BAD, ids=[b[1] for b in BAD])
def test_malformed_data_is_refused_by_name(call, fragment):
    with pytest.raises(InvalidInput) as caught:
        call()
    assert fragment in caught.value.message and "'t'" in caught.value.message


# -- fuzzing: decoders raise InvalidInput or succeed, nothing else ------------------------------------
shapes = st.lists(st.integers(min_value=-2, max_value=5), max_size=4)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64), datatype=st.sampled_from(DATATYPES + ("FP8",)), shape=shapes)
def test_fuzz_decode_raw(data, datatype, shape):
    try:
        array = decode_raw(data, datatype, shape, "t")
    except InvalidInput:
        return
    assert list(array.shape) == shape and from_numpy(array.dtype) == datatype


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(data=json_values, datatype=st.sampled_from(DATATYPES), shape=shapes)
def test_fuzz_decode_json(data, datatype, shape):
    try:
        array = decode_json(data, datatype, shape, "t")
    except InvalidInput:
        return
    assert list(array.shape) == shape and from_numpy(array.dtype) == datatype
