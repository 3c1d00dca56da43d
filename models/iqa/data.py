"""A KADID-style graded-distortion benchmark built from the pictures scikit-image bundles.

No IQA dataset can be downloaded here, so we make one whose ground truth we know:

- 19 source pictures from ``skimage.data`` (RGBA composited on white, grey stacked to RGB), each resized so
  its short side is ``SCALE`` = 256 px, then cut into 4 reference tiles of 128×128 at fixed positions.
  Sources (hence references) are split disjointly into train / validation / test (``SPLITS``).
- 13 distortion types × 5 levels (``DISTORTIONS``), each level drawn from its own seeded generator, plus the
  pristine reference itself. Saturation is skipped on grey sources, where it changes nothing.
- Target: **pseudo-MOS** = 100 × SSIM(reference, distorted), clipped to [0, 100]. SSIM is scikit-image's
  ``structural_similarity`` with Wang et al.'s settings (Gaussian window σ = 1.5, population covariance,
  data range 1, averaged over RGB). It is a full-reference *proxy* for human opinion, not a MOS.
  The 10 quality levels are that score binned by tens (level 9 = pseudo-MOS ≥ 90).
- Within one (reference, distortion) group, levels 1-5 are increasingly severe by construction: that
  ordering is ground truth that needs no proxy (``severity`` SRCC in evaluate.py).

Generation is deterministic and cached as one .npz under ``$IQA_CACHE`` (default ~/.cache/streamserve/iqa),
keyed by ``VERSION``; about a minute on one core the first time.
"""
import io
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

VERSION = 1
SCALE = 256  # short side of a source picture, px
TILE = 128  # reference size, px
SEED = 20260126

SOURCES = ["astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "color", "grass", "gravel",
           "hubble_deep_field", "ihc", "logo", "moon", "motorcycle_left", "page", "retina", "rocket", "text"]
# Fixed by hand so each split has colour and grey, photographic and textural pictures; motorcycle_right (the same
# scene as motorcycle_left), clock_motion (already motion-blurred) and the synthetic ones are left out.
SPLITS = {
    "test": ["astronaut", "coins", "gravel", "motorcycle_left"],
    "val": ["chelsea", "moon", "ihc"],
    "train": ["brick", "camera", "cell", "coffee", "color", "grass", "hubble_deep_field", "logo", "page", "retina",
              "rocket", "text"],
}


# ---- distortions: f(image float32 HxWx3 in [0,1], level parameter, rng) -> image -------------------------

def _pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray(to_uint8(x))


def _from_pil(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _encode(x, fmt: str, **kw) -> np.ndarray:
    buf = io.BytesIO()
    _pil(x).save(buf, fmt, **kw)
    return _from_pil(Image.open(io.BytesIO(buf.getvalue())))


def gaussian_blur(x, sigma, rng):
    return ndimage.gaussian_filter(x, (sigma, sigma, 0), mode="reflect")


def motion_blur(x, length, rng):
    kernel = np.ones(int(length), np.float32) / int(length)
    axis = int(rng.integers(0, 2))  # horizontal or vertical streak, drawn per image
    return ndimage.convolve1d(x, kernel, axis=axis, mode="reflect")


def jpeg(x, quality, rng):
    return _encode(x, "JPEG", quality=int(quality))


def jpeg2000(x, ratio, rng):
    return _encode(x, "JPEG2000", quality_mode="rates", quality_layers=[float(ratio)])


def webp(x, quality, rng):
    return _encode(x, "WEBP", quality=int(quality), method=4)


def white_noise(x, sigma, rng):
    return x + rng.normal(0.0, sigma, x.shape).astype(np.float32)


def impulse_noise(x, fraction, rng):
    y = x.copy()
    mask = rng.random(x.shape[:2]) < fraction
    y[mask] = rng.integers(0, 2, (int(mask.sum()), 1)).astype(np.float32)  # salt or pepper, all channels
    return y


def quantise(x, colours, rng):
    return _from_pil(_pil(x).quantize(int(colours), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))


def pixelate(x, factor, rng):
    h, w = x.shape[:2]
    small = _pil(x).resize((max(1, round(w / factor)), max(1, round(h / factor))), Image.BOX)
    return _from_pil(small.resize((w, h), Image.NEAREST))


def contrast(x, alpha, rng):
    return x.mean() + alpha * (x - x.mean())


def brightness(x, gain, rng):
    return x * gain


def saturation(x, alpha, rng):
    grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    return grey + alpha * (x - grey)


def sharpen(x, amount, rng):
    return x + amount * (x - ndimage.gaussian_filter(x, (1.5, 1.5, 0)))


# level parameters, mild -> severe
DISTORTIONS = {
    "gaussian_blur": (gaussian_blur, [0.6, 1.0, 1.6, 2.5, 4.0]),
    "motion_blur": (motion_blur, [3, 5, 9, 13, 19]),
    "jpeg": (jpeg, [50, 25, 12, 6, 2]),
    "jpeg2000": (jpeg2000, [20, 40, 80, 160, 320]),
    "webp": (webp, [50, 20, 8, 3, 0]),
    "white_noise": (white_noise, [0.02, 0.04, 0.07, 0.11, 0.18]),
    "impulse_noise": (impulse_noise, [0.005, 0.015, 0.04, 0.08, 0.16]),
    "quantisation": (quantise, [48, 24, 12, 6, 3]),
    "pixelation": (pixelate, [1.5, 2, 3, 4, 6]),
    "contrast": (contrast, [0.8, 0.6, 0.45, 0.3, 0.18]),
    "brightness": (brightness, [0.8, 0.65, 0.5, 0.35, 0.2]),
    "saturation": (saturation, [0.6, 0.35, 0.15, 0.0, -0.5]),
    "sharpen": (sharpen, [1.0, 2.0, 3.5, 6.0, 10.0]),
}
TYPES = ["pristine", *DISTORTIONS]


def to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def pseudo_mos(reference: np.ndarray, distorted: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    ssim = structural_similarity(reference, distorted, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, channel_axis=2)
    return float(np.clip(100.0 * ssim, 0.0, 100.0))


def level_of(score: np.ndarray) -> np.ndarray:
    return np.minimum((np.asarray(score) // 10).astype(np.int64), 9)


def load_source(name: str) -> np.ndarray:
    """One bundled picture as float32 RGB in [0, 1], short side SCALE."""
    from skimage import data

    im = Image.open(Path(data.data_dir) / {"hubble_deep_field": "hubble_deep_field.jpg", "retina": "retina.jpg",
                                           "rocket": "rocket.jpg"}.get(name, f"{name}.png"))
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    im = im.convert("RGB")
    w, h = im.size
    s = SCALE / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.LANCZOS)
    return np.asarray(im, np.float32) / 255.0


def tiles(image: np.ndarray) -> list[np.ndarray]:
    """4 reference tiles at fixed positions (a 2×2 grid spread over the picture)."""
    h, w = image.shape[:2]
    ys, xs = np.linspace(0, h - TILE, 2).round().astype(int), np.linspace(0, w - TILE, 2).round().astype(int)
    return [image[y : y + TILE, x : x + TILE] for y in ys for x in xs]


def is_grey(x: np.ndarray) -> bool:
    return float(np.abs(x - x.mean(axis=2, keepdims=True)).max()) < 1e-3


def _generate_source(s_i: int, name: str) -> list[tuple]:
    return generate_picture(s_i, load_source(name))


def generate_picture(s_i: int, picture: np.ndarray) -> list[tuple]:
    """Rows (image, ref, type, level, pseudo-MOS, source) of one picture (float32 RGB, short side SCALE) with
    source id ``s_i``; also used for the held-out pictures (models/iqa/holdout.py)."""
    rows = []
    for t_index, tile in enumerate(tiles(picture)):
        ref_id = 4 * s_i + t_index  # every source gives 4 tiles: ids do not depend on the order of work
        tile = to_uint8(tile).astype(np.float32) / 255.0  # the reference is what an 8-bit image can hold
        rows.append((to_uint8(tile), ref_id, 0, 0, 100.0, s_i))
        for t_i, (dname, (fn, params)) in enumerate(DISTORTIONS.items(), start=1):
            if dname == "saturation" and is_grey(tile):
                continue
            for lv, p in enumerate(params, start=1):
                rng = np.random.default_rng([SEED, ref_id, t_i, lv])
                out = to_uint8(fn(tile, p, rng))
                rows.append((out, ref_id, t_i, lv, pseudo_mos(tile, out.astype(np.float32) / 255.0), s_i))
    return rows


def generate(sources=SOURCES, progress: bool = True, workers: int = 1) -> dict[str, np.ndarray]:
    """All references × distortions × levels. Every random draw is seeded by (SEED, reference, type, level),
    so the result is the same whatever `workers` (processes, one source each) is."""
    jobs = list(enumerate(sources))
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_generate_source, *zip(*jobs)))
    else:
        parts = []
        for s_i, name in jobs:
            parts.append(_generate_source(s_i, name))
            if progress:
                print(f"[iqa data] {s_i + 1}/{len(sources)} {name}: {sum(map(len, parts))} images", flush=True)
    rows = [r for part in parts for r in part]
    images, refs, types, levels, scores, sources_out = zip(*rows)
    return {"image": np.stack(images), "ref": np.array(refs), "type": np.array(types), "level": np.array(levels),
            "score": np.array(scores, np.float32), "source": np.array(sources_out)}


def cache_path() -> Path:
    root = Path(os.environ.get("IQA_CACHE", Path.home() / ".cache" / "streamserve" / "iqa"))
    key = zlib.crc32(repr((VERSION, SCALE, TILE, SEED, SOURCES, {k: v[1] for k, v in DISTORTIONS.items()})).encode())
    return root / f"kadid_skimage_v{VERSION}_{key:08x}.npz"


def digest(benchmark: dict) -> dict:
    """Short SHA-256 of each split's images and pseudo-MOS: equal digests mean the same benchmark on two machines."""
    import hashlib

    return {split: {k: hashlib.sha256(np.ascontiguousarray(d[k]).tobytes()).hexdigest()[:12] for k in ("image", "score")}
            for split, d in benchmark.items()}


def make_benchmark(workers: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """{split: {image uint8 (N,128,128,3), ref, type, level, score (pseudo-MOS), source}}, cached."""
    path = cache_path()
    if path.exists():
        with np.load(path) as f:
            full = {k: f[k] for k in f.files}
    else:
        full = generate(workers=workers)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **full)
        tmp.replace(path)
    out = {}
    for split, names in SPLITS.items():
        mask = np.isin(full["source"], [SOURCES.index(n) for n in names])
        out[split] = {k: v[mask] for k, v in full.items()}
    return out
