"""The research endpoints of issues 3, 5, 6 and 7 on the real server, through unmodified tritonclient:
image quality, bot detection over the hosted graph, streamed video artifact scores and segment sequences,
and backdoor scans: a planted-trigger model found over the stream, unsafe uploads refused."""
import io
import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException


def tensor(module, name, array, datatype):
    t = module.InferInput(name, list(array.shape), datatype)
    t.set_data_from_numpy(array)
    return t


def stream(server, model, inputs, count, until=None, **kwargs):
    """(result, error) pairs of one streamed request, until `count` arrived, an error did, or a response
    carries the output `until`."""
    client = grpcclient.InferenceServerClient(server.grpc)
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    client.async_stream_infer(model, inputs, **kwargs)
    answers = []
    while len(answers) < count:
        answers.append(got.get(timeout=120))
        result, error = answers[-1]
        if error is not None or (until and result.as_numpy(until) is not None):
            break
    client.stop_stream()
    client.close()
    return answers


# -- iqa ----------------------------------------------------------------------------------------------
def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_iqa_clean_beats_blurred_and_jpeg_and_batching_does_not_change_a_score(http, grpc):
    from models.iqa import data as D

    clean = D.to_uint8(D.tiles(D.load_source("motorcycle_left"))[1])  # a test-split reference
    blurred = D.to_uint8(D.gaussian_blur(clean.astype(np.float32) / 255, 4.0, None))
    jpeg = io.BytesIO()
    Image.fromarray(clean).save(jpeg, "JPEG", quality=3)  # strongly compressed, sent as the JPEG file itself
    both = np.array([[png(clean)], [png(blurred)], [jpeg.getvalue()]], dtype=object)
    scores = http.infer("iqa", [tensor(httpclient, "IMAGE", both, "BYTES")]).as_numpy("SCORE")[:, 0]
    assert scores[0] > scores[1] + 5 and scores[0] > scores[2], scores
    alone = grpc.infer("iqa", [tensor(grpcclient, "IMAGE", both[:1], "BYTES")])
    assert alone.as_numpy("SCORE")[0, 0] == pytest.approx(scores[0], abs=1e-3)
    assert alone.as_numpy("LEVEL_PROBS").sum() == pytest.approx(1.0, abs=1e-4)


def test_iqa_undecodable_image_is_a_client_error(http):
    bad = np.array([[b"definitely not a picture"]], dtype=object)
    with pytest.raises(InferenceServerException, match="not a decodable image"):
        http.infer("iqa", [tensor(httpclient, "IMAGE", bad, "BYTES")])


# -- bot_detector ---------------------------------------------------------------------------------------
def test_bot_detector_answers_known_ids_and_flags_unknown_ones(server, grpc):
    with np.load(server.repository / "bot_detector" / "1" / "graph.npz", allow_pickle=False) as snapshot:
        known = snapshot["account_id"][:2]
    ids = np.array([[known[0]], [42], [known[1]]], np.int64)
    result = grpc.infer("bot_detector", [tensor(grpcclient, "ACCOUNT_IDS", ids, "INT64")])
    assert result.as_numpy("FOUND")[:, 0].tolist() == [True, False, True]
    probability = result.as_numpy("BOT_PROBABILITY")[:, 0]
    assert 0 <= probability[0] <= 1 and 0 <= probability[2] <= 1 and probability[1] == -1
    assert result.as_numpy("STANCE_PROBS")[[0, 2]].sum(axis=1) == pytest.approx([1, 1], abs=1e-4)


def test_bot_detector_subgraph_refuses_an_out_of_range_edge(http):
    inputs = [
        tensor(httpclient, "NODE_FEATURES", np.zeros((4, 788), np.float32), "FP32"),
        tensor(httpclient, "EDGE_INDEX", np.array([[0, 1], [1, 9]], np.int64), "INT64"),
        tensor(httpclient, "EDGE_TYPE", np.array([0, 1], np.int64), "INT64"),
        tensor(httpclient, "TARGETS", np.array([0], np.int64), "INT64"),
    ]
    with pytest.raises(InferenceServerException, match="out of range for 4 nodes"):
        http.infer("bot_detector_subgraph", inputs)


# -- video_artifacts -------------------------------------------------------------------------------------
def test_video_segments_stream_in_order_then_a_summary(server, clip):
    video = tensor(grpcclient, "VIDEO", np.array([clip], dtype=object), "BYTES")
    answers = stream(server, "video_artifacts", [video], count=50, until="SUMMARY")
    errors = [str(error) for _, error in answers if error is not None]
    assert not errors, errors
    segments = [r for r, _ in answers if r.as_numpy("SEGMENT_INDEX") is not None]
    assert [int(r.as_numpy("SEGMENT_INDEX")[0]) for r in segments] == list(range(len(segments))) and len(segments) >= 2
    assert all(r.as_numpy("INTENSITIES").shape == (6,) for r in segments)
    import json

    summary = json.loads(answers[len(segments)][0].as_numpy("SUMMARY")[0])
    assert summary["segments"] == len(segments)


def test_video_corrupt_input_is_an_error_in_the_stream(server):
    video = tensor(grpcclient, "VIDEO", np.array([b"\x00\x00\x00\x18ftypmp42 truncated"], dtype=object), "BYTES")
    (answer,) = stream(server, "video_artifacts", [video], count=1)
    assert answer[1] is not None and "input 'VIDEO'" in str(answer[1])


def test_video_segment_sequence_refuses_a_segment_out_of_order(grpc, clip):
    def send(index, start=False):
        return grpc.infer(
            "video_artifacts_segments",
            [tensor(grpcclient, "SEGMENT", np.array([clip], dtype=object), "BYTES"),
             tensor(grpcclient, "SEGMENT_INDEX", np.array([index], np.int64), "INT64")],
            sequence_id=77, sequence_start=start,
        )

    first = send(0, start=True)
    assert first.as_numpy("INTENSITIES").shape == (6,)
    with pytest.raises(InferenceServerException, match="out of order"):
        send(2)
    assert send(1).as_numpy("FRAMES")[0] > 0  # the sequence is still usable after the refusal


# -- backdoor_scan ---------------------------------------------------------------------------------------
def test_backdoor_scan_refuses_a_disallowed_operator_in_the_stream(server):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Sin", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 16, 16])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    upload = tensor(grpcclient, "MODEL", np.array([model.SerializeToString()], dtype=object), "BYTES")
    (answer,) = stream(server, "backdoor_scan", [upload], count=1)
    assert answer[1] is not None and "not on the allow-list" in str(answer[1])


def test_backdoor_scan_streams_progress_then_finds_a_planted_trigger(server):
    """A whole scan as a job over one gRPC stream, with the served settings (200 Neural Cleanse steps)."""
    import json

    import torch

    from models.backdoor.data import Trigger
    from models.backdoor.population import to_onnx, train_direct

    torch.set_num_threads(1)
    planted = train_direct(Trigger(3, 1, "br", 7), 0.1, 0, steps=180)  # 10 % carry a 3×3 patch, relabelled 7
    upload = tensor(grpcclient, "MODEL", np.array([to_onnx(planted)], dtype=object), "BYTES")
    answers = stream(server, "backdoor_scan", [upload], count=200, until="VERDICT")
    errors = [str(error) for _, error in answers if error is not None]
    assert not errors, errors
    events = [(r.as_numpy("STAGE")[0].decode(), float(r.as_numpy("PROGRESS")[0])) for r, _ in answers]
    stages = list(dict.fromkeys(stage for stage, _ in events))  # in order of first appearance
    assert len(stages) >= 3 and stages[-1] == "done" and events[-1] == ("done", 1.0), events
    for stage in stages:  # progress is per stage and never goes back
        values = [p for s, p in events if s == stage]
        assert values == sorted(values), (stage, values)
    final = answers[-1][0]
    assert final.as_numpy("VERDICT")[0] == b"backdoored"
    assert int(final.as_numpy("SUSPECTED_TARGET")[0]) == 7 and final.as_numpy("ANOMALY_INDEX").shape == (10,)
    assert final.as_numpy("TRIGGER_MASK_PNG")[0].startswith(b"\x89PNG")
    assert json.loads(final.as_numpy("STRIP")[0])["clean_entropy_mean"] > 0
    report = json.loads(final.as_numpy("REPORT")[0])  # the platform-held images: the zoo-calibrated fused verdict
    assert report["verdict_rule"] == "fused" and report["fused"]["score"] > report["threshold"]


def test_backdoor_scan_refuses_bytes_that_are_not_onnx(http):
    upload = tensor(httpclient, "MODEL", np.array([b"\x80\x04pickle?"], dtype=object), "BYTES")
    with pytest.raises(InferenceServerException, match="malformed"):
        http.infer("backdoor_scan", [upload])
