"""Triton's example models (models/examples/triton.py) through the data plane, without Ray: what each computes, and
the protocol rules Triton's example clients depend on (sequence controls, zero responses, Triton's error wording)."""
import asyncio

import numpy as np
import pytest

from models.examples.export import build as build_examples
from models.examples.triton import decimal_integers
from streamserve_proto import service_pb2 as pb
from serve.dataplane import DataPlane
from serve.errors import InvalidInput, ModelNotFound
from serve.grpc_servicer import decode_infer_request
from serve.replica import ModelWorker
from serve.repository import ModelRepository
from serve.types import InferRequest

VALUES = [11, 7, 5, 3, 2, 0, 1]  # what Triton's sequence clients send after their first value


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton_examples")
    build_examples(root)
    repo = ModelRepository(root)
    return DataPlane(repo, {(s.name, v): ModelWorker(str(root), s.name, v) for s in repo for v in s.versions})


def infer(plane, model, inputs, **parameters):
    return asyncio.run(plane.infer(InferRequest(model, None, inputs, parameters=parameters), "test")).outputs


def stream(plane, model, inputs):
    async def go():
        return [r.outputs async for r in plane.stream(InferRequest(model, None, inputs), "test")]

    return asyncio.run(go())


def strings(values) -> np.ndarray:
    values = np.asarray(values)
    return np.array([str(v).encode() for v in values.ravel()], dtype=object).reshape(values.shape)


def sequence(plane, model, sequence_id, values) -> list[int]:
    outputs = []
    for i, value in enumerate(values):
        out = infer(plane, model, {"INPUT": np.array([[value]], np.int32)},
                    sequence_id=sequence_id, sequence_start=i == 0, sequence_end=i == len(values) - 1)
        assert out["OUTPUT"].shape == (1, 1) and out["OUTPUT"].dtype == np.int32
        outputs.append(int(out["OUTPUT"][0, 0]))
    return outputs


def test_simple_int8_adds_and_subtracts_with_int8_wrap(plane):
    a, b = np.arange(16, dtype=np.int8)[None], np.ones((1, 16), np.int8)
    out = infer(plane, "simple_int8", {"INPUT0": a, "INPUT1": b})
    assert out["OUTPUT0"].dtype == np.int8 and out["OUTPUT0"].tolist() == (a + b).tolist()
    assert out["OUTPUT1"].tolist() == (a - b).tolist()
    edge = infer(plane, "simple_int8", {"INPUT0": np.full((2, 16), 127, np.int8), "INPUT1": np.full((2, 16), -128, np.int8)})
    assert edge["OUTPUT0"][0, 0] == -1 and edge["OUTPUT1"][0, 0] == -1  # 127 - (-128) = 255 wraps to -1


def test_simple_string_adds_decimal_strings(plane):
    a, b = np.arange(16)[None], np.ones((1, 16), int)
    out = infer(plane, "simple_string", {"INPUT0": strings(a), "INPUT1": strings(b)})
    assert out["OUTPUT0"].tolist() == strings(a + b).tolist() and out["OUTPUT1"].tolist() == strings(a - b).tolist()
    extreme = infer(plane, "simple_string", {"INPUT0": strings(np.full((1, 16), 2**31 - 1)), "INPUT1": strings(np.full((1, 16), -(2**31)))})
    assert extreme["OUTPUT0"][0, 0] == b"-1" and extreme["OUTPUT1"][0, 0] == str(2**32 - 1).encode()  # exact, no wrap


@pytest.mark.parametrize("item", [b"x", b"", b"1.5", b"2147483648", b"12345678901", b"\xff"])
def test_simple_string_refuses_what_is_not_an_int32(plane, item):
    data = strings(np.ones((1, 16), int))
    data[0, 3] = item
    with pytest.raises(InvalidInput, match=r"input 'INPUT1': element 3 .* not a decimal INT32"):
        infer(plane, "simple_string", {"INPUT0": strings(np.ones((1, 16), int)), "INPUT1": data})


def test_decimal_integers_accepts_signs_and_spaces():
    assert decimal_integers(np.array([b"-7", b"+3", b" 12 "], dtype=object), "X").tolist() == [-7, 3, 12]


def test_simple_identity_returns_bytes_unchanged(plane):
    data = np.array([[b"he\x00llo", b"\x00\x01\x02\x03", b""]], dtype=object)
    assert infer(plane, "simple_identity", {"INPUT0": data})["OUTPUT0"].tolist() == data.tolist()


def test_custom_identity_int32(plane):
    data = np.arange(48, dtype=np.int32).reshape(3, 16)
    assert infer(plane, "custom_identity_int32", {"INPUT0": data})["OUTPUT0"].tolist() == data.tolist()


def test_simple_sequence_as_triton_clients_expect(plane):
    # (INPUT + START) * READY: the first request gets one more, the rest their own value (no accumulation)
    assert sequence(plane, "simple_sequence", 1000, [0] + VALUES) == [1] + VALUES
    assert sequence(plane, "simple_sequence", "a-uuid-like-id", [20] + [-v for v in VALUES]) == [21] + [-v for v in VALUES]


def test_simple_dyna_sequence_adds_the_correlation_id_on_the_last_request(plane):
    assert sequence(plane, "simple_dyna_sequence", 1001, [100] + [-v for v in VALUES]) == [101] + [-v for v in VALUES[:-1]] + [-1 + 1001]


def test_simple_string_dyna_sequence_accumulates_and_adds_its_string_id(plane):
    values = [20] + [-v for v in VALUES]
    expected = list(np.cumsum(values))
    expected[-1] += 1002
    assert sequence(plane, "simple_string_dyna_sequence", "1002", values) == expected
    assert len(plane.sequences) == 0


def test_a_string_id_on_an_integer_corrid_control_is_the_clients_mistake(plane):
    with pytest.raises(InvalidInput, match=r"control 'CORRID' takes an integer sequence id \(uint64\), got the string 'abc'"):
        infer(plane, "simple_dyna_sequence", {"INPUT": np.array([[1]], np.int32)}, sequence_id="abc", sequence_start=True)
    with pytest.raises(InvalidInput, match=r"sequence id -5 does not fit control 'CORRID' \(uint64\)"):
        infer(plane, "simple_dyna_sequence", {"INPUT": np.array([[1]], np.int32)}, sequence_id=-5, sequence_start=True)
    with pytest.raises(InvalidInput, match="CORRID"):  # a non-numeric string id cannot be added on the last request
        infer(plane, "simple_string_dyna_sequence", {"INPUT": np.array([[1]], np.int32)},
              sequence_id="abc", sequence_start=True, sequence_end=True)
    assert len(plane.sequences) == 0  # none of them opened a sequence


def test_a_sequence_request_of_a_batching_model_has_one_row(plane):
    with pytest.raises(InvalidInput, match="must specify batch-size 1 due to requirements of sequence batcher"):
        infer(plane, "simple_sequence", {"INPUT": np.array([[1], [2]], np.int32)}, sequence_id=7, sequence_start=True)


def test_repeat_int32_streams_one_response_per_element(plane):
    inputs = {"IN": np.arange(100, 104, dtype=np.int32), "DELAY": np.full(4, 5, np.uint32), "WAIT": np.array([20], np.uint32)}
    responses = stream(plane, "repeat_int32", inputs)
    assert [(r["OUT"].tolist(), r["IDX"].tolist()) for r in responses] == [([100 + i], [i]) for i in range(4)]
    assert responses[0]["OUT"].dtype == np.int32 and responses[0]["IDX"].dtype == np.uint32
    assert infer(plane, "repeat_int32", inputs)["OUT"].tolist() == [103]  # a unary call gets the last response


def test_repeat_int32_may_answer_with_no_response(plane):
    empty = {"IN": np.zeros(0, np.int32), "DELAY": np.zeros(0, np.uint32), "WAIT": np.array([0], np.uint32)}
    assert stream(plane, "repeat_int32", empty) == []
    with pytest.raises(InvalidInput, match="sent no response to this request"):
        infer(plane, "repeat_int32", empty)


@pytest.mark.parametrize("inputs, fragment", [
    ({"IN": np.arange(3, dtype=np.int32), "DELAY": np.zeros(2, np.uint32), "WAIT": np.zeros(1, np.uint32)}, "one per element of 'IN'"),
    ({"IN": np.arange(2, dtype=np.int32), "DELAY": np.array([0, 20_000], np.uint32), "WAIT": np.zeros(1, np.uint32)}, "at most 10000 ms"),
    ({"IN": np.arange(1, dtype=np.int32), "DELAY": np.zeros(1, np.uint32), "WAIT": np.array([2**32 - 1], np.uint32)}, "at most 10000 ms"),
    ({"IN": np.zeros(1001, np.int32), "DELAY": np.zeros(1001, np.uint32), "WAIT": np.zeros(1, np.uint32)}, "at most 1000 responses"),
])
def test_repeat_int32_refuses_bad_requests_before_the_first_response(plane, inputs, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        stream(plane, "repeat_int32", inputs)


def test_triton_error_wording_that_clients_match(plane):
    with pytest.raises(ModelNotFound, match="^Request for unknown model 'wrong_model_name'"):  # simple_http_infer_client
        plane.model("wrong_model_name")
    with pytest.raises(ModelNotFound, match="failed to get model version from specified version string 'wrong_specification'"):
        plane.model("simple_int8", "wrong_specification")  # grpc_explicit_int8_content_client
    request = pb.ModelInferRequest(model_name="simple")  # grpc_explicit_int_content_client: raw and typed contents mixed
    for name in ("INPUT0", "INPUT1"):
        tensor = request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        tensor.contents.int_contents[:] = range(16)
    request.raw_input_contents.append(np.arange(8).tobytes())
    with pytest.raises(InvalidInput, match="contents field must not be specified when using raw_input_contents for 'INPUT0' for model 'simple'"):
        decode_infer_request(request)
