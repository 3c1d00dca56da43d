"""Hostile input against the real server (tritonclient-free: raw HTTP bodies and gRPC messages as an attacker
sends them). For each class: a 4xx / INVALID_ARGUMENT-class answer naming the field, the server still healthy, and
no serving process (the ingress, every model replica) grown by more than 64 MB for a request under 1 MB."""
import json

import grpc
import httpx
import numpy as np
import psutil
import pytest

from streamserve_proto import service_pb2 as pb, service_pb2_grpc

GROWTH_LIMIT_MB = 64


def serving_rss_mb(server) -> dict[int, float]:
    processes = psutil.Process(server.process.pid).children(recursive=True)
    out = {}
    for p in processes:
        try:
            if "ServeReplica:streamserve" in " ".join(p.cmdline()):
                out[p.pid] = p.memory_info().rss / 2**20
        except psutil.Error:
            pass
    return out


@pytest.fixture
def bounded(server):
    """Yields; afterwards asserts no serving process grew past the limit and the server still answers."""
    before = serving_rss_mb(server)
    yield
    after = serving_rss_mb(server)
    grown = {pid: round(after[pid] - before[pid]) for pid in before if pid in after and after[pid] - before[pid] > GROWTH_LIMIT_MB}
    assert not grown, f"serving processes grew (MB): {grown}"
    assert httpx.get(f"http://{server.http}/v2/health/ready", timeout=30).status_code == 200


def post(server, model: str, body: bytes | str, headers=None):
    return httpx.post(f"http://{server.http}/v2/models/{model}/infer", content=body, timeout=60,
                      headers=headers or {"content-type": "application/json"})


def grpc_infer(server, request):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc))
    try:
        stub.ModelInfer(request, timeout=60)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


@pytest.mark.parametrize("shape", [[2**26, 1], [2**36], [0, 2**62, 2**62], [2**63, 0]])
def test_a_bytes_shape_no_data_can_fill_costs_nothing(server, bounded, shape):
    body = json.dumps({"inputs": [{"name": "DATA", "shape": shape, "datatype": "BYTES", "data": ["a"]}]})
    response = post(server, "byte_length", body)
    assert response.status_code == 400 and "'DATA'" in response.json()["error"], response.text
    if max(shape) < 2**63:  # gRPC's int64 dims cannot carry 2**63
        request = pb.ModelInferRequest(model_name="byte_length")
        request.inputs.add(name="DATA", datatype="BYTES", shape=shape)
        request.raw_input_contents.append(b"\0" * 8)
        code, details = grpc_infer(server, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "'DATA'" in details


def test_json_nested_5000_deep_is_a_400(server, bounded):
    body = '{"inputs": [{"name": "DATA", "shape": [1, 1], "datatype": "BYTES", "data": ' + "[" * 5000 + "]" * 5000 + "}]}"
    response = post(server, "byte_length", body)
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]


@pytest.mark.parametrize("sequence_id", [[1, 2], {"id": 1}])
def test_a_sequence_id_that_is_a_list_or_object_is_a_400(server, bounded, sequence_id):
    body = json.dumps({"parameters": {"sequence_id": sequence_id, "sequence_start": True},
                       "inputs": [{"name": "INPUT", "shape": [1], "datatype": "INT32", "data": [1]}]})
    response = post(server, "accumulate_sequence", body)
    assert response.status_code == 400 and "sequence_id" in response.json()["error"]


def test_a_unary_rollout_whose_response_would_pass_the_limit_is_refused_early(server, bounded):
    # ~16 KB of request asking for 1000 steps of 4,096 floats: 16 MB of response, over the server's 4 MiB limit
    width = 4096
    body = json.dumps({"inputs": [{"name": "U", "shape": [1, width], "datatype": "FP32", "data": [0.0] * width},
                                  {"name": "STEPS", "shape": [1, 1], "datatype": "INT32", "data": [1000]}]})
    response = post(server, "heat1d", body)
    assert response.status_code == 400
    assert "over the limit" in response.json()["error"] and "ModelStreamInfer" in response.json()["error"]


def test_a_streamed_message_over_the_request_limit_is_refused_and_the_stream_goes_on(server, bounded):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc, options=[
        ("grpc.max_send_message_length", 8 << 20)]))

    def simple(pad: int = 0):
        request = pb.ModelInferRequest(model_name="simple")
        for name in ("INPUT0", "INPUT1"):
            request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
            request.raw_input_contents.append(np.ones(16, "<i4").tobytes())
        if pad:
            request.parameters["padding"].string_param = "x" * pad
        return request

    responses = list(stub.ModelStreamInfer(iter([simple(3 << 19), simple()]), timeout=60))  # 1.5 MiB: over our 1 MiB, under gRPC's 2 MiB cut
    assert "exceeds the limit" in responses[0].error_message
    assert responses[1].infer_response.model_name == "simple" and not responses[1].error_message


def bytes_body(name: str, items: list[bytes]) -> tuple[bytes, dict]:
    """Triton's binary tensor extension: a JSON header, then each element as 4-byte length + bytes."""
    raw = b"".join(len(item).to_bytes(4, "little") + item for item in items)
    header = json.dumps({"inputs": [{"name": name, "shape": [len(items), 1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return header + raw, {"inference-header-content-length": str(len(header))}


def test_iqa_pixel_bombs_are_refused_from_the_headers(server, bounded):
    from tests.models.iqa.test_iqa import one_bit_png, png_declaring

    # four 1-bit 4096² PNGs (a few kB) would decode to 268 MB of RGB: over the per-request pixel budget
    body, headers = bytes_body("IMAGE", [one_bit_png()] * 4)
    response = post(server, "iqa", body, headers)
    assert response.status_code == 400 and "per-request limit" in response.json()["error"], response.text
    # a header declaring 20000² pixels (Pillow's decompression bomb) names the element, never a 500
    body, headers = bytes_body("IMAGE", [png_declaring(20000, 20000)])
    response = post(server, "iqa", body, headers)
    assert response.status_code == 400 and "element 0" in response.json()["error"], response.text


def test_a_video_whose_frames_grow_after_the_first_is_refused_before_analysis(server, bounded):
    from tests.models.video.test_video_hostile import jpeg, mjpeg_mkv

    video = mjpeg_mkv([(jpeg(64, 64), 0)] + [(jpeg(1920, 1080, i), i) for i in range(1, 6)])
    request = pb.ModelInferRequest(model_name="video_artifacts")
    request.inputs.add(name="VIDEO", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(len(video).to_bytes(4, "little") + video)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc))
    responses = list(stub.ModelStreamInfer(iter([request]), timeout=120))
    assert any("1920x1080" in r.error_message for r in responses), [r.error_message for r in responses]


def test_responses_that_would_pass_the_limit_as_json_are_refused_before_they_are_written(server, bounded):
    # 200,000 floats (800 KB, under the 1 MiB request limit) come back as up to ~5 MB of JSON: over the 4 MiB limit
    width = 200_000
    header = json.dumps({"inputs": [{"name": "U", "shape": [1, width], "datatype": "FP32", "parameters": {"binary_data_size": 4 * width}},
                                    {"name": "STEPS", "shape": [1, 1], "datatype": "INT32", "data": [1]}]}).encode()
    body = header + np.zeros(width, np.float32).tobytes()
    headers = {"Inference-Header-Content-Length": str(len(header)), "content-type": "application/octet-stream"}
    response = httpx.post(f"http://{server.http}/v2/models/heat1d/generate_stream", content=body, headers=headers, timeout=60)
    assert response.status_code == 200 and "event: error" in response.text and "stream large tensors over gRPC" in response.text
    assert len(response.content) < 4096  # the refusal, not the data
    response = httpx.post(f"http://{server.http}/v2/models/heat1d/infer", content=body, headers=headers, timeout=60)
    assert response.status_code == 400 and "ask for them as binary" in response.json()["error"]
    binary = json.dumps({**json.loads(header), "parameters": {"binary_data_output": True}}).encode()
    response = httpx.post(f"http://{server.http}/v2/models/heat1d/infer", content=binary + np.zeros(width, np.float32).tobytes(),
                          headers={**headers, "Inference-Header-Content-Length": str(len(binary))}, timeout=60)
    assert response.status_code == 200  # the same answer as binary is 800 KB
