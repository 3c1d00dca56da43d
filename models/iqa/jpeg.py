"""A JPEG file's own quality setting, read from its quantisation table, and the cap the served score takes from it.

A JPEG file carries the quantisation tables it was coded with; an encoder built on libjpeg (Pillow, ffmpeg's mjpeg,
most cameras' and phones' software) scales the T.81 standard luminance table by its quality setting, so the table
names the setting (``quality_of``). It is read from the header Pillow parses anyway, before any pixel is decoded.
``JpegCap`` is what serving.py applies; models/iqa/cap.py fits it and says why it is a ceiling.
"""
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# ITU-T T.81 Annex K.1 luminance table, natural (row-major) order: what libjpeg scales by the quality setting
STD_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


def ijg_table(quality: int) -> np.ndarray:
    """The luminance table libjpeg writes for a quality setting (jcparam.c: jpeg_quality_scaling, baseline)."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return np.clip((STD_LUMINANCE * scale + 50) // 100, 1, 255)


_TABLES = np.stack([ijg_table(q) for q in range(1, 101)])


def quality_of(im: Image.Image) -> float:
    """Estimated IJG quality (1-100) of an opened image from its luminance quantisation table; NaN when it is not a
    JPEG. The nearest scaled standard table in L1 (ties -> the highest quality: qualities 1-3 saturate at 255 alike);
    a file with tables of its own (some cameras, Photoshop) gets the quality whose table is nearest."""
    tables = getattr(im, "quantization", None) if im.format == "JPEG" else None
    if not tables or 0 not in tables or len(tables[0]) != 64:
        return float("nan")
    distance = np.abs(_TABLES - np.asarray(tables[0], np.int64)[None, :]).sum(1)  # Pillow gives natural order (>= 8.3)
    return float(np.flatnonzero(distance == distance.min())[-1] + 1)


def jpeg_quality(data: bytes) -> float:
    """``quality_of`` an encoded file."""
    return quality_of(Image.open(io.BytesIO(data)))


@dataclass
class JpegCap:
    """caps[q - 1]: the most SCORE a JPEG file of estimated quality q gets (non-decreasing in q)."""
    caps: list
    quantile: float = 0.5  # of the pseudo-MOS at each quality, over the pictures it was fitted on (a record)

    def __post_init__(self):
        caps = np.asarray(self.caps, np.float64)
        if caps.shape != (100,) or np.any(np.diff(caps) < 0):
            found = f"{caps.size} numbers" if caps.shape != (100,) else "100 numbers that fall somewhere"
            raise ValueError(f"a JPEG cap is 100 non-decreasing numbers, one per quality 1-100; got {found}")

    def apply(self, score: np.ndarray, quality: np.ndarray) -> np.ndarray:
        """score (N,), quality (N,) with NaN for an image that did not arrive as a JPEG file -> the capped score."""
        quality = np.asarray(quality, np.float64)
        known = ~np.isnan(quality)
        ceiling = np.full(len(quality), np.inf)
        ceiling[known] = np.asarray(self.caps, np.float64)[np.clip(quality[known].astype(np.int64), 1, 100) - 1]
        return np.minimum(score, ceiling)


def load_cap(path: Path) -> JpegCap:
    return JpegCap(**json.loads(Path(path).read_text())["cap"])
