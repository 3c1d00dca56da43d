"""Baselines a platform would use for blind IQA, on the same benchmark and folds as PMT-IQA (models/iqa/crossval.py).

1. **NSS (BRISQUE-style)**: the 36 natural-scene statistics of `models.nss` (BRISQUE's, shared with
   `video_artifacts`), then a regressor trained on the fold's training pictures (``nss_regressor``).
2. **blur_effect** (scikit-image, Crété-Roffet et al. 2007): higher = blurrier, so quality = −blur. No training.
3. **JPEG quality from the quantisation tables** (JPEG inputs only): the luminance table a file carries is the IJG
   standard table scaled by the quality setting; ``jpeg_quality`` finds the quality whose scaled table is nearest.
   In the benchmark the JPEG distortion is "encode at quality q, decode"; Pillow's encoder is deterministic, so
   ``jpeg_bytes`` re-encodes the reference tile at the same q and gets the bytes whose decoding is the benchmark's
   image (tests check the pixels are identical). Only the JPEG type has such bytes, so this baseline is scored on
   the JPEG subset only.
"""
import io

import numpy as np
from PIL import Image

from models.nss import brisque_features
from models.nss.brisque import GREY

# ---- 1. NSS features ------------------------------------------------------------------------------------------


def nss_matrix(images: np.ndarray) -> np.ndarray:
    return np.stack([brisque_features(x) for x in images])


def nss_regressor(seed: int = 0):
    """SVR (RBF) on standardised NSS features, C / γ / ε chosen by the caller's inner CV (crossval.fit_nss).
    The paper's regressor is an ε-SVR with an RBF kernel."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    return make_pipeline(StandardScaler(), SVR(kernel="rbf", cache_size=1000))  # MB of kernel cache: the fits are the cost


NSS_GRID = {"svr__C": [3.0, 30.0, 300.0], "svr__gamma": [0.01, 0.03, 0.1], "svr__epsilon": [1.0]}


# ---- 2. blur_effect -------------------------------------------------------------------------------------------

def blur_quality(images: np.ndarray) -> np.ndarray:
    """−blur_effect of each image's grey version (higher = sharper = better)."""
    from skimage.measure import blur_effect

    grey = images.astype(np.float32) @ GREY.astype(np.float32) / 255.0
    return -np.array([blur_effect(g) for g in grey])


# ---- 3. JPEG quality from the quantisation table --------------------------------------------------------------

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


def jpeg_quality(data: bytes) -> float:
    """Estimated IJG quality (1-100) of a JPEG file from its luminance quantisation table; NaN if not a JPEG.
    The nearest scaled standard table in L1 (ties -> the highest quality: qualities 1-3 saturate at 255 alike)."""
    im = Image.open(io.BytesIO(data))
    if im.format != "JPEG" or not getattr(im, "quantization", None):
        return float("nan")
    table = np.asarray(im.quantization[0], dtype=np.int64)  # Pillow gives natural order (Pillow >= 8.3)
    distance = np.abs(_TABLES - table[None, :]).sum(1)
    return float(np.flatnonzero(distance == distance.min())[-1] + 1)


def jpeg_bytes(reference: np.ndarray, quality: int) -> bytes:
    """The JPEG file of the benchmark's JPEG distortion of ``reference`` (uint8 RGB) at ``quality``: the same call
    as data.jpeg, so decoding it gives the benchmark's image."""
    buf = io.BytesIO()
    Image.fromarray(reference).save(buf, "JPEG", quality=int(quality))
    return buf.getvalue()


def jpeg_quality_for_benchmark(bench: dict) -> np.ndarray:
    """Estimated quality per image of a benchmark dict (image, ref, type, level); NaN for every non-JPEG image."""
    from .data import DISTORTIONS, TYPES

    t_jpeg, qualities = TYPES.index("jpeg"), DISTORTIONS["jpeg"][1]
    out = np.full(len(bench["type"]), np.nan)
    refs = {int(r): bench["image"][i] for i, r in enumerate(bench["ref"]) if bench["type"][i] == 0}
    for i in np.flatnonzero(bench["type"] == t_jpeg):
        out[i] = jpeg_quality(jpeg_bytes(refs[int(bench["ref"][i])], qualities[bench["level"][i] - 1]))
    return out
