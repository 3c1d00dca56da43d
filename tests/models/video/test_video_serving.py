"""The served models through ModelWorker (no Ray): streamed segments in order, the summary equal to the
in-process pipeline, codecs/containers, bad input, and the segment sequence with its state."""
import asyncio
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from models.video.export import NAME, SEQ_NAME, _export, build
from models.video.data import ffmpeg_exe
from models.video.decode import iter_frames
from models.video.pipeline import Analyzer, Pooling
from models.video.serving import VideoArtifactsHandler
from models.video.train import WEIGHTS, load, torch_fns
from serve.errors import InvalidInput, Overloaded
from serve.replica import ModelWorker

torch.set_num_threads(1)


def make_clip(path, size="160x96", seconds=2, codec=("-c:v", "libx264", "-qp", "30"), rate=25):
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=s={size}:r={rate}:d={seconds}", *codec, "-pix_fmt", "yuv420p", str(path)], check=True)
    return path.read_bytes()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_repo")
    build(root)
    return root


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {"mp4": make_clip(d / "a.mp4"),
            "mkv_hevc": make_clip(d / "b.mkv", codec=("-c:v", "libx265", "-x265-params", "qp=34:log-level=error")),
            "webm_vp9": make_clip(d / "c.webm", seconds=1, codec=("-c:v", "libvpx-vp9", "-crf", "40", "-b:v", "0", "-deadline", "realtime")),
            "big": make_clip(d / "d.mp4", size="320x64", seconds=0.2),
            "zero": make_clip(d / "e.mkv", seconds=1, codec=("-frames:v", "0", "-c:v", "libx264"))}


def collect(worker, inputs):
    async def go():
        return [r async for r in worker.stream(inputs)]
    return asyncio.run(go())


def video(b):
    return {"VIDEO": np.array([b], dtype=object)}


def test_the_rung_score_orders_encodes_of_one_source_by_their_quantiser(repo, tmp_path):
    """The summary's rung_score (the detail statistics' own rank fit) falls as the same clip is coded coarser: a
    camera panning over a photograph, as the training sources are made (ffmpeg's testsrc2 pattern, flat colours and
    sharp text, is ordered by neither score)."""
    import skimage.data

    from models.video.data import _rgb_to_yuv420, pan_zoom

    frames = pan_zoom(skimage.data.astronaut(), (1.0, 0.5, 0.0))
    source = tmp_path / "source.yuv"
    source.write_bytes(b"".join(_rgb_to_yuv420(f).tobytes() for f in frames))
    w = ModelWorker(str(repo), NAME, 1)
    scores = []
    for qp in (18, 32, 46):
        path = tmp_path / f"q{qp}.mp4"
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
                        "-s", f"{frames.shape[2]}x{frames.shape[1]}", "-r", "25", "-i", str(source), "-c:v", "libx264",
                        "-qp", str(qp), "-pix_fmt", "yuv420p", str(path)], check=True)
        summary = json.loads(collect(w, video(path.read_bytes()))[-1]["SUMMARY"][0])
        assert 0 < summary["rung_score"] < 1
        scores.append(summary["rung_score"])
    assert scores[0] > scores[1] > scores[2], scores


def test_stream_in_order_and_summary_matches_in_process(repo, clips):
    w = ModelWorker(str(repo), NAME, 1)
    out = collect(w, video(clips["mp4"]))
    segs, final = out[:-1], out[-1]
    assert set(final) == {"SUMMARY"} and all("INTENSITIES" in s for s in segs)
    assert [int(s["SEGMENT_INDEX"][0]) for s in segs] == list(range(len(segs))) == [0, 1]  # 25 sampled frames: 16 + 9
    assert segs[0]["SEGMENT_START_S"][0] < segs[1]["SEGMENT_START_S"][0]
    for s in segs:
        assert s["INTENSITIES"].shape == (6,) and s["INTENSITIES"].dtype == np.float32
        assert s["QUALITY"].shape == (1,) and 0 <= s["QUALITY"][0] <= 1
    summary = json.loads(final["SUMMARY"][0])
    assert summary["segments"] == 2 and summary["frames_analysed"] == 25 and summary["video"]["codec"] == "h264"
    # the same pipeline in-process with the PyTorch weights (the ONNX graphs are exports of these)
    cnn, tsf, pooling, meta = load(WEIGHTS)
    an = Analyzer(*torch_fns(cnn, tsf), pooling, saliency_method=meta["saliency"])  # the server's default
    ref = []
    for f in iter_frames(clips["mp4"]):
        ref += an.push(f)
    ref += an.finish()
    for got, exp in zip(summary["per_segment"], ref):
        assert got["frames"] == exp.frames
        np.testing.assert_allclose([got[k] for k in ("blurring", "blocking", "bleeding", "ringing", "flickering", "floating")],
                                   exp.intensities, atol=2e-4)
        assert abs(got["quality"] - exp.quality) < 2e-4
    np.testing.assert_allclose(segs[0]["INTENSITIES"], ref[0].intensities, atol=2e-4)


@pytest.mark.parametrize("kind, codec", [("mkv_hevc", "hevc"), ("webm_vp9", "vp9")])
def test_containers_and_codecs(repo, clips, kind, codec):
    out = collect(ModelWorker(str(repo), NAME, 1), video(clips[kind]))
    summary = json.loads(out[-1]["SUMMARY"][0])
    assert summary["video"]["codec"] == codec and summary["segments"] == len(out) - 1 >= 1


@pytest.mark.parametrize("case, message", [
    ("text", "cannot open"), ("empty", "got an empty element"), ("truncated", "input 'VIDEO'"), ("two", "exactly one element"),
    ("zero", "input 'VIDEO'")])
def test_bad_input_is_invalid_argument(repo, clips, case, message):
    data = {"text": video(b"this is not a video"), "empty": video(b""), "truncated": video(clips["mp4"][: len(clips["mp4"]) // 3]),
            "two": {"VIDEO": np.array([clips["mp4"], clips["mp4"]], dtype=object)}, "zero": video(clips["zero"])}[case]
    with pytest.raises(InvalidInput, match=message):
        collect(ModelWorker(str(repo), NAME, 1), data)


def test_resolution_limit(repo, clips):
    h = VideoArtifactsHandler(repo / NAME / "1", {"max_width": "256"}, ["VIDEO"], [], 1, "cpu")
    with pytest.raises(InvalidInput, match="resolution 320x64 above the limit 256x1088"):
        h.preprocess(video(clips["big"]))


def test_a_video_over_the_concurrent_stream_cap_is_refused_and_a_finished_one_frees_its_slot(repo, clips):
    h = VideoArtifactsHandler(repo / NAME / "1", {"max_concurrent_streams": "1"}, ["VIDEO"], [], 1, "cpu")
    running = h.stream(video(clips["mp4"]))
    next(running)  # the first segment: this analysis holds the replica's only slot
    with pytest.raises(Overloaded, match="already running 1 video analyses.*max_concurrent_streams"):
        next(h.stream(video(clips["mp4"])))
    running.close()  # the client left: its slot is free at once
    assert "SUMMARY" in list(h.stream(video(clips["mp4"])))[-1]


def seg(index, data, start=0, end=0, state=None):
    return {"SEGMENT": np.array([data], dtype=object), "SEGMENT_INDEX": np.array([index], np.int64),
            "START": np.array([start], np.int32), "END": np.array([end], np.int32),
            "STATE_IN": state if state is not None else np.zeros(0, np.float32)}


def test_segment_sequence_keeps_order_and_state(repo, clips):
    w = ModelWorker(str(repo), SEQ_NAME, 1)
    run = lambda inputs: asyncio.run(w.infer(inputs))
    part = clips["webm_vp9"]
    r0 = run(seg(0, part, start=1))
    assert r0["INTENSITIES"].shape == (6,) and int(r0["FRAMES"][0]) > 0
    assert r0["STATE_OUT"][0] == 1 and r0["STATE_OUT"].size > 11  # next index 1, previous thumbnail carried
    with pytest.raises(InvalidInput, match="segment 2 out of order; expected segment 1"):
        run(seg(2, part, state=r0["STATE_OUT"]))
    with pytest.raises(InvalidInput, match="input 'SEGMENT'"):
        run(seg(1, b"garbage", state=r0["STATE_OUT"]))
    r1 = run(seg(1, part, end=1, state=r0["STATE_OUT"]))  # the sequence is still usable after the errors
    s = json.loads(r1["SUMMARY"][0])
    assert s["segment_index"] == 1 and s["sequence"]["segments"] == 2
    assert s["sequence"]["frames_analysed"] == int(r0["FRAMES"][0] + r1["FRAMES"][0])
    # the same bytes as segment 0 again: the carried thumbnail changes the first frame's change feature only
    assert np.isfinite(r1["INTENSITIES"]).all()


@pytest.fixture(scope="module")
def plane(repo):
    from serve.dataplane import DataPlane
    from serve.repository import ModelRepository

    r = ModelRepository(repo)
    return DataPlane(r, {(s.name, v): ModelWorker(str(repo), s.name, v) for s in r for v in s.versions})


def test_dataplane_stream_whole_file(plane, clips):
    from serve.types import InferRequest

    async def go():
        return [r async for r in plane.stream(InferRequest(NAME, None, video(clips["mp4"])), "test")]

    responses = asyncio.run(go())
    idx = [int(r.outputs["SEGMENT_INDEX"][0]) for r in responses if "SEGMENT_INDEX" in r.outputs]
    assert idx == [0, 1] and "SUMMARY" in responses[-1].outputs


def test_dataplane_sequence_with_state_and_out_of_order(plane, clips):
    from serve.types import InferRequest

    def send(i, start=False, end=False):
        inputs = {"SEGMENT": np.array([clips["webm_vp9"]], dtype=object), "SEGMENT_INDEX": np.array([i], np.int64)}
        req = InferRequest(SEQ_NAME, None, inputs, parameters={"sequence_id": 7, "sequence_start": start, "sequence_end": end})
        return asyncio.run(plane.infer(req, "test"))

    send(0, start=True)
    with pytest.raises(InvalidInput, match="out of order; expected segment 1"):
        send(2)
    r1 = send(1, end=True)
    s = json.loads(r1.outputs["SUMMARY"][0])
    assert s["sequence"]["segments"] == 2


def test_the_default_saliency_is_the_poolings_own_and_another_takes_the_pooling_fitted_for_it(repo):
    meta = json.loads((repo / NAME / "1" / "sstam.json").read_text())
    default = VideoArtifactsHandler(repo / NAME / "1", {}, ["VIDEO"], [], 1, "cpu")
    assert default.saliency == meta["saliency"] and default.pooling == Pooling(**meta["pooling"])
    other = next(s for s in ("sstam", "uniform", "spectral_residual") if s != meta["saliency"])
    chosen = VideoArtifactsHandler(repo / NAME / "1", {"saliency": other}, ["VIDEO"], [], 1, "cpu")
    assert chosen.saliency == other
    assert chosen.pooling == Pooling(**meta["pooling_fit"]["by_saliency"][other]["pooling"]) != default.pooling


def test_a_repository_exported_before_the_graph_took_mscn_coefficients_still_serves_the_same_scores(repo, clips, tmp_path):
    """Such a graph takes raw luma ("y") and computes the MSCN itself; the handler reads which from the graph."""
    old = tmp_path / "old"
    shutil.copytree(repo / NAME, old / NAME)
    axes = lambda h, w: {0: "batch", 2: h, 3: w}  # noqa: E731
    graph = _export(load(WEIGHTS)[0], (torch.zeros(1, 1, 128, 128), torch.zeros(1, 2, 64, 64)), ["y", "uv"], ["intensities", "features"],
                    {"y": axes("h", "w"), "uv": axes("h2", "w2"), "intensities": axes("h16", "w16"), "features": axes("h16", "w16")})
    (old / NAME / "1" / "block_cnn.onnx").write_bytes(graph)
    assert VideoArtifactsHandler(old / NAME / "1", {}, ["VIDEO"], [], 1, "cpu").luma_input == "y"
    assert VideoArtifactsHandler(repo / NAME / "1", {}, ["VIDEO"], [], 1, "cpu").luma_input == "mscn"
    summaries = [json.loads(collect(ModelWorker(str(root), NAME, 1), video(clips["mp4"]))[-1]["SUMMARY"][0]) for root in (repo, old)]
    for new, before in zip(*(s["per_segment"] for s in summaries)):
        assert abs(new["quality"] - before["quality"]) < 2e-4
        assert all(abs(new[a] - before[a]) < 2e-4 for a in ("blurring", "blocking", "bleeding", "ringing", "flickering", "floating"))
