"""Baselines a platform would use for blind IQA, on the same benchmark and folds as PMT-IQA (models/iqa/crossval.py).

1. **NSS (BRISQUE-style)**: natural-scene statistics of the grey image (Mittal, Moorthy & Bovik, "No-reference image
   quality assessment in the spatial domain", IEEE TIP 2012), 36 features, then a regressor trained on the fold's
   training pictures (``nss_regressor``). Written here with numpy / scipy / OpenCV because no maintained package does
   it offline in this environment: `piq` imports torchvision (fails here), `pyiqa` downloads weights, OpenCV's
   `quality` module is in the contrib build only (not installed) and needs model files, and the `brisque` wheel
   (0.2.0) needs libsvm-official plus its own pretrained SVM and uses a non-standard local-variance approximation.
   Features per scale (grey at full size, then halved with area averaging):
     - MSCN coefficients  (I − μ) / (σ + 1), μ and σ the Gaussian-weighted (σ = 7/6, 7×7) local mean / deviation on
       the 0-255 scale; a generalised Gaussian (GGD) fit gives shape α and variance (2 features);
     - the products of each MSCN coefficient with its horizontal, vertical and two diagonal neighbours; an
       asymmetric GGD (AGGD) fit of each gives shape, mean, left and right variance (4 × 4 = 16 features).
   18 per scale × 2 scales = 36, in the paper's order. Fits by moment matching over a fine grid of shapes (the
   reference MATLAB implementation's estimator).
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
from scipy import ndimage, special

# ---- 1. NSS features ------------------------------------------------------------------------------------------

_SHAPES = np.arange(0.2, 10.0, 0.001)
# GGD: E[x²] / E[|x|]² as a function of the shape; AGGD: its inverse (Mittal et al. 2012, eqs. 5-6 and 9-13)
_R_GGD = special.gamma(1 / _SHAPES) * special.gamma(3 / _SHAPES) / special.gamma(2 / _SHAPES) ** 2
_R_AGGD = 1.0 / _R_GGD
GREY = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as the rest of the family uses
PAIRS = ["horizontal", "vertical", "main_diagonal", "secondary_diagonal"]
FEATURE_NAMES = [f"s{scale}_{name}" for scale in (1, 2) for name in
                 ["mscn_shape", "mscn_var"] + [f"{d}_{p}" for d in PAIRS for p in ("shape", "mean", "var_left", "var_right")]]


def mscn(grey: np.ndarray, sigma: float = 7 / 6, c: float = 1.0) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a grey image on the 0-255 scale. truncate=2.6 makes
    scipy's window 7×7, the paper's."""
    mu = ndimage.gaussian_filter(grey, sigma, truncate=2.6, mode="nearest")
    var = ndimage.gaussian_filter(grey * grey, sigma, truncate=2.6, mode="nearest") - mu * mu
    return (grey - mu) / (np.sqrt(np.maximum(var, 0.0)) + c)


def ggd_fit(x: np.ndarray) -> tuple[float, float]:
    """Shape α and variance of a zero-mean generalised Gaussian, by moment matching."""
    var = float(np.mean(x * x))
    mean_abs = float(np.mean(np.abs(x)))
    if var <= 0:  # a flat image: no structure to fit; the most Gaussian-like answer
        return 2.0, 0.0
    rho = var / mean_abs**2
    return float(_SHAPES[np.argmin(np.abs(rho - _R_GGD))]), var


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Shape, mean, left and right variance of an asymmetric generalised Gaussian (moment matching)."""
    left, right = x[x < 0], x[x > 0]
    var_l = float(np.mean(left * left)) if left.size else 0.0
    var_r = float(np.mean(right * right)) if right.size else 0.0
    if var_l <= 0 or var_r <= 0:
        return 2.0, 0.0, var_l, var_r
    g = np.sqrt(var_l / var_r)
    r_hat = float(np.mean(np.abs(x))) ** 2 / float(np.mean(x * x))
    r_norm = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    shape = float(_SHAPES[np.argmin(np.abs(r_norm - _R_AGGD))])
    mean = (np.sqrt(var_r) - np.sqrt(var_l)) * special.gamma(2 / shape) / special.gamma(1 / shape) * \
        np.sqrt(special.gamma(1 / shape) / special.gamma(3 / shape))
    return shape, float(mean), var_l, var_r


def _one_scale(grey: np.ndarray) -> list[float]:
    m = mscn(grey)
    out = list(ggd_fit(m))
    # each coefficient times its neighbour (PAIRS order), over the pixels that have that neighbour
    for product in (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]):
        out += aggd_fit(product)
    return out


def nss_features(image: np.ndarray) -> np.ndarray:
    """36 BRISQUE features of one uint8 RGB (H, W, 3) or grey (H, W) image (FEATURE_NAMES)."""
    import cv2

    grey = image.astype(np.float64) @ GREY if image.ndim == 3 else image.astype(np.float64)
    half = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return np.array(_one_scale(grey) + _one_scale(half))


def nss_matrix(images: np.ndarray) -> np.ndarray:
    return np.stack([nss_features(x) for x in images])


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
