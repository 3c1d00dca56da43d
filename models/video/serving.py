"""Serving handlers for SSTAM: ONNX Runtime + numpy + PyAV (no torch, no training code).

- `VideoArtifactsHandler` (model `video_artifacts`, decoupled): one whole encoded file in `VIDEO`
  BYTES [1]; the response stream carries one response per segment (SEGMENT_INDEX, SEGMENT_START_S,
  SEGMENT_END_S, INTENSITIES [6], QUALITY [1]) as soon as that segment is analysed, then one final
  response with SUMMARY (JSON). Frames are decoded one by one (PyAV), never the whole file as frames.
- `VideoSegmentsHandler` (model `video_artifacts_segments`, Triton sequence batching): each request is
  one independently decodable segment (`SEGMENT` BYTES [1], `SEGMENT_INDEX` INT64 [1]) of a sequence;
  the platform passes START / END / STATE_IN and takes STATE_OUT back. The state carries the next
  expected index, running sums for the sequence summary and the last frame's thumbnail (so the change
  feature and motion saliency continue across segment boundaries).

Parameters (config.pbtxt, strings): sample_fps (12.5), max_width (1920), max_height (1088),
max_seconds (600), max_frames (36000 decoded frames), max_pixel_rate (125337600 decoded pixels per second of
video, 1080p60), max_bytes (268435456), saliency (sstam | spectral_residual | uniform; default: the pooling's own),
segment_clips (2: a segment is 2 clips of 8 sampled frames = 1.28 s at 12.5 fps), frame_batch (4),
decode_threads (the replica's threads; > 1 turns on FFmpeg's frame threading).
"""
import json
from contextlib import closing
from typing import Literal

import numpy as np
from pydantic import Field

from serve.sdk import HandlerParams, InvalidInput, JobSlots, ModelHandler, OnnxRuntime, bytes_tensor, json_tensor, one_bytes

from .decode import Limits, VideoError, iter_frames, probe
from .pipeline import ARTIFACTS, Analyzer, Pooling, SegmentResult, mscn, summarize


_LIMITS = Limits()


class VideoParams(HandlerParams):
    """config.pbtxt parameters of `video_artifacts` and `video_artifacts_segments` (models/video/export.py writes
    them from these defaults). The limits bound what one request may make the replica decode."""

    sample_fps: float = Field(12.5, gt=0, le=120, description="frames analysed per second of video")
    max_width: int = Field(_LIMITS.max_width, ge=_LIMITS.min_side)
    max_height: int = Field(_LIMITS.max_height, ge=_LIMITS.min_side)
    max_seconds: float = Field(_LIMITS.max_seconds, gt=0)
    max_frames: int = Field(_LIMITS.max_frames, ge=1, description="decoded frames per request, sampled or not")
    max_pixel_rate: float = Field(_LIMITS.max_pixel_rate, gt=0, description="decoded pixels per second of presentation time")
    max_bytes: int = Field(256 << 20, ge=1, description="encoded bytes per request")
    saliency: Literal["sstam", "uniform", "spectral_residual"] | None = Field(
        None, description="default: the saliency the served pooling was fitted for (sstam.json); another one takes the "
                          "pooling fitted for it")
    segment_clips: int = Field(2, ge=1, le=64, description="clips per reported segment")
    frame_batch: int = Field(4, ge=1, le=64, description="frames per ONNX call")
    decode_threads: int = Field(0, ge=0, le=16, description="decoder threads; 0: the replica's CPU share")
    max_concurrent_streams: int = Field(2, ge=1, le=64, description="videos one replica analyses at once (each up to "
                                        "~600 MB at 1080p, loadtest/reports/working_set.md); one more is refused (503)")


class _Sstam(ModelHandler):
    Params = VideoParams
    pool = "video"  # decoding a video is heavy: outside the ingress, both video models in one replica

    def __init__(self, model_dir, params, input_names, output_names, num_threads, device):
        super().__init__(model_dir, params, input_names, output_names, num_threads, device)
        self.block = OnnxRuntime(self.model_dir / "block_cnn.onnx", ["uv"], ["intensities", "features"], num_threads, device)
        # The luma input's name says what the graph takes: "mscn", the coefficients (models/video/export.py), or "y",
        # raw luma (an MSCN model exported before the handler computed them, or a raw-luma model)
        self.luma_input = "mscn" if "mscn" in self.block.graph_inputs else "y"
        self.temporal = OnnxRuntime(self.model_dir / "timesformer.onnx", ["tokens"], ["scores"], num_threads, device)
        meta = json.loads((self.model_dir / "sstam.json").read_text())
        p = self.params
        self.saliency = p.saliency or meta.get("saliency", "sstam")
        self.pooling = Pooling(**meta["pooling_fit"]["by_saliency"][self.saliency]["pooling"])  # train.run fits one per saliency
        statistics_only = meta["pooling_fit"].get("statistics_only")
        self.rung = Pooling(**statistics_only["pooling"]) if statistics_only else None
        self.sample_fps, self.max_bytes = p.sample_fps, p.max_bytes
        self.segment_clips, self.frame_batch = p.segment_clips, p.frame_batch
        self.decode_threads = p.decode_threads or self.num_threads
        self.limits = Limits(max_width=p.max_width, max_height=p.max_height, max_seconds=p.max_seconds,
                             max_frames=p.max_frames, max_pixel_rate=p.max_pixel_rate)
        self.stream_slots = JobSlots(p.max_concurrent_streams, "video analyses", "max_concurrent_streams")

    def block_fn(self, y, uv):
        # y and uv arrive as uint8: OpenCV's MSCN is twice as fast from bytes as from floats
        luma = np.stack([mscn(frame) for frame in y[:, 0]])[:, None] if self.luma_input == "mscn" else y.astype(np.float32)
        out = self.block.infer({self.luma_input: luma, "uv": uv.astype(np.float32)})
        return out["intensities"], out["features"]

    def temporal_fn(self, tokens):
        return self.temporal.infer({"tokens": tokens})["scores"]

    def analyzer(self, segment_clips=None) -> Analyzer:
        return Analyzer(self.block_fn, self.temporal_fn, self.pooling, self.saliency,
                        seg_clips=segment_clips or self.segment_clips, batch=self.frame_batch)

    def _video_bytes(self, inputs, name) -> bytes:
        return one_bytes(inputs, name, "one encoded video file (mp4/mkv/webm)", self.max_bytes)

    def _check(self, name: str, data: bytes) -> dict:
        try:
            return probe(data, self.limits)
        except VideoError as e:
            raise InvalidInput(f"input '{name}': {e}") from None

    def frames(self, name: str, data: bytes, info: dict):
        try:
            yield from iter_frames(data, self.sample_fps, self.limits, info, threads=self.decode_threads)
        except VideoError as e:
            raise InvalidInput(f"input '{name}': {e}") from None


def _segment_outputs(r: SegmentResult) -> dict:
    return {"SEGMENT_INDEX": np.array([r.index], np.int64), "SEGMENT_START_S": np.array([r.start_s], np.float32),
            "SEGMENT_END_S": np.array([r.end_s], np.float32), "INTENSITIES": r.intensities.astype(np.float32),
            "QUALITY": np.array([r.quality], np.float32)}


class VideoArtifactsHandler(_Sstam):
    def preprocess(self, inputs):
        data = self._video_bytes(inputs, "VIDEO")
        self._check("VIDEO", data)  # container, codec and limits, before any response is sent
        return {"VIDEO": bytes_tensor(data)}

    def stream(self, inputs):
        with self.stream_slots.held():
            yield from self._analyse(inputs)

    def _analyse(self, inputs):
        data = self._video_bytes(inputs, "VIDEO")
        an, info, segments = self.analyzer(), {}, []
        # closing(): when the consumer closes this stream (client gone), the decoder is closed here and now
        with closing(self.frames("VIDEO", data, info)) as frames:
            for frame in frames:
                for r in an.push(frame):
                    segments.append(r)
                    yield _segment_outputs(r)
        for r in an.finish():
            segments.append(r)
            yield _segment_outputs(r)
        summary = summarize(segments, self.pooling, self.rung)
        summary["video"] = {k: info.get(k) for k in ("codec", "container", "width", "height", "fps", "duration_s", "decoded", "sampled")}
        summary["sample_fps"] = self.sample_fps
        summary["per_segment"] = [s.as_dict() for s in segments]
        yield {"SUMMARY": json_tensor(summary)}


# STATE layout (FP32): [next_index, frames, sum_frames*intensities (6), sum_frames*quality, thumb_h, thumb_w, thumb...]
_HEAD = 9


class VideoSegmentsHandler(_Sstam):
    def infer(self, inputs):
        start = bool(np.asarray(inputs.get("START", [0])).ravel()[0])
        end = bool(np.asarray(inputs.get("END", [0])).ravel()[0])
        state = np.asarray(inputs.get("STATE_IN", np.zeros(0, np.float32)), np.float32).ravel()
        if start or state.size < _HEAD:
            state = np.zeros(_HEAD + 2, np.float32)
        if "SEGMENT_INDEX" not in inputs:
            raise InvalidInput("input 'SEGMENT_INDEX': missing; expected INT64 [1], the segment's position in the sequence (0, 1, ...)")
        index = int(np.asarray(inputs["SEGMENT_INDEX"]).ravel()[0])
        expected = int(state[0])
        if index != expected:
            raise InvalidInput(f"input 'SEGMENT_INDEX': segment {index} out of order; expected segment {expected} of this sequence")
        data = self._video_bytes(inputs, "SEGMENT")
        self._check("SEGMENT", data)
        an = self.analyzer(segment_clips=1 << 30)  # the whole request is one result
        an.load_state(state[_HEAD - 2:])
        info = {}
        for frame in self.frames("SEGMENT", data, info):
            an.push(frame)
        r = an.finish()[0]
        frames = state[1] + r.frames
        sums = state[2:8] + r.intensities * r.frames
        qsum = state[8] + r.quality * r.frames
        new_state = np.concatenate([[index + 1, frames], sums, [qsum], an.state()]).astype(np.float32)
        seg = {"segment_index": index, "frames": r.frames, **{a: round(float(v), 6) for a, v in zip(ARTIFACTS, r.intensities)},
               "quality": round(r.quality, 6), "codec": info.get("codec")}
        if end:
            seg["sequence"] = {"segments": index + 1, "frames_analysed": int(frames),
                               "intensities": {a: round(float(v), 6) for a, v in zip(ARTIFACTS, sums / frames)},
                               "quality": round(float(qsum / frames), 6)}
        return {"INTENSITIES": r.intensities.astype(np.float32), "QUALITY": np.array([r.quality], np.float32),
                "FRAMES": np.array([r.frames], np.int64), "SUMMARY": json_tensor(seg),
                "STATE_OUT": new_state}
