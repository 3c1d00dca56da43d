"""Baselines a platform would use for blind IQA, on the same benchmark and folds as PMT-IQA (models/iqa/crossval.py).

1. **NSS (BRISQUE-style)**: the 36 natural-scene statistics of `models.nss` (BRISQUE's, shared with
   `video_artifacts`), then a regressor trained on the fold's training pictures (``nss_regressor``).
2. **blur_effect** (scikit-image, Crété-Roffet et al. 2007): higher = blurrier, so quality = −blur. No training.
3. **JPEG quality from the quantisation tables** (JPEG inputs only): the luminance table a file carries is the IJG
   standard table scaled by the quality setting; ``jpeg.jpeg_quality`` finds the quality whose scaled table is nearest.
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

from .jpeg import jpeg_quality

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
