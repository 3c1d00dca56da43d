"""BRISQUE features (Mittal, Moorthy & Bovik, "No-reference image quality assessment in the spatial domain", IEEE TIP
2012): natural-scene statistics of a grey picture, 36 in all, the classical no-reference baseline both quality families
(iqa, video_artifacts) are measured against, each with a regressor trained on its own folds.

Written here with numpy / scipy / OpenCV because no maintained package does it offline in this environment: `piq`
imports torchvision (fails here), `pyiqa` downloads weights, OpenCV's `quality` module is in the contrib build only
(not installed) and needs model files, and the `brisque` wheel (0.2.0) fails on NumPy 2 and needs libsvm-official.
Features per scale (grey at full size, then halved with area averaging):
  - MSCN coefficients (I - mu) / (sigma + 1), mu and sigma the Gaussian-weighted (sigma = 7/6, 7x7) local mean and
    deviation on the 0-255 scale; a generalised Gaussian (GGD) fit gives shape and variance (2 features);
  - the products of each MSCN coefficient with its horizontal, vertical and two diagonal neighbours; an asymmetric
    GGD (AGGD) fit of each gives shape, mean, left and right variance (4 x 4 = 16 features).
18 per scale x 2 scales = 36, in the paper's order. Fits by moment matching over a fine grid of shapes (the reference
MATLAB implementation's estimator).
"""
import math

import numpy as np
from scipy import special

_SHAPES = np.arange(0.2, 10.0, 0.001)
# GGD: E[x^2] / E[|x|]^2 as a function of the shape; AGGD: its inverse (Mittal et al. 2012, eqs. 5-6 and 9-13)
_R_GGD = special.gamma(1 / _SHAPES) * special.gamma(3 / _SHAPES) / special.gamma(2 / _SHAPES) ** 2
_R_AGGD = 1.0 / _R_GGD
GREY = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma
PAIRS = ["horizontal", "vertical", "main_diagonal", "secondary_diagonal"]
FEATURE_NAMES = [f"s{scale}_{name}" for scale in (1, 2) for name in
                 ["mscn_shape", "mscn_var"] + [f"{d}_{p}" for d in PAIRS for p in ("shape", "mean", "var_left", "var_right")]]


def mscn(grey: np.ndarray, sigma: float = 7 / 6, c: float = 1.0) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a grey float32 image on the 0-255 scale: a 7x7 Gaussian
    window (the paper's), borders replicated as the reference MATLAB's imfilter(..., 'replicate') does."""
    import cv2

    k = cv2.getGaussianKernel(7, sigma, cv2.CV_32F)
    mu = cv2.sepFilter2D(grey, cv2.CV_32F, k, k, borderType=cv2.BORDER_REPLICATE)
    sd = cv2.sepFilter2D(cv2.multiply(grey, grey), cv2.CV_32F, k, k, borderType=cv2.BORDER_REPLICATE)
    sd -= mu * mu
    sd = cv2.sqrt(cv2.max(sd, 0.0))  # OpenCV's: a quarter of numpy's maximum + sqrt on these arrays
    sd += c
    out = cv2.subtract(grey, mu)
    out /= sd
    return out


def _as_mat(x: np.ndarray) -> np.ndarray:
    """OpenCV's reductions want a 2-D float array; a 1-D sample becomes one column."""
    x = np.ascontiguousarray(x if x.dtype in (np.float32, np.float64) else x.astype(np.float64))
    return x.reshape(-1, 1) if x.ndim == 1 else x


def _nearest_shape(ratios: np.ndarray, value: float) -> float:
    """The shape whose ratio is nearest `value`: argmin |ratios - value| by bisection (both tables are monotonic)."""
    ascending = ratios[0] < ratios[-1]
    table = ratios if ascending else ratios[::-1]
    i = min(max(int(np.searchsorted(table, value)), 1), len(table) - 1)
    i = i - 1 if abs(value - table[i - 1]) <= abs(value - table[i]) else i
    return float(_SHAPES[i if ascending else len(table) - 1 - i])


def ggd_fit(x: np.ndarray) -> tuple[float, float]:
    """Shape and variance of a zero-mean generalised Gaussian, by moment matching."""
    import cv2

    x = _as_mat(x)
    var, mean_abs = cv2.norm(x, cv2.NORM_L2SQR) / x.size, cv2.norm(x, cv2.NORM_L1) / x.size
    if var <= 0:  # a flat image: no structure to fit; the most Gaussian-like answer
        return 2.0, 0.0
    return _nearest_shape(_R_GGD, var / mean_abs**2), var


# Products this small are zero up to rounding (exactly flat areas, as coarse coding leaves them): their sign is noise,
# so they count half to each side, which is what the reference's random split gives in expectation.
ZERO = 1e-6


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Shape, mean, left and right variance of an asymmetric generalised Gaussian (moment matching); values within ZERO
    of 0 count half to each side. OpenCV's one-pass reductions (masked norms) rather than numpy's masked copies: the
    served video analyser computes these on full frames."""
    import cv2

    x = _as_mat(x)
    n = x.size
    left, right = cv2.compare(x, -ZERO, cv2.CMP_LT), cv2.compare(x, ZERO, cv2.CMP_GT)
    n_left, n_right = cv2.countNonZero(left), cv2.countNonZero(right)
    n_zero = n - n_left - n_right
    left_sq = cv2.norm(x, cv2.NORM_L2SQR, mask=left)
    right_sq = cv2.norm(x, cv2.NORM_L2SQR, mask=right)
    n_left, n_right = n_left + n_zero / 2, n_right + n_zero / 2
    var_l = left_sq / n_left if n_left else 0.0
    var_r = right_sq / n_right if n_right else 0.0
    if var_l <= 0 or var_r <= 0:
        return 2.0, 0.0, var_l, var_r
    g = math.sqrt(var_l / var_r)
    # the squares within ZERO of 0 left out of left_sq + right_sq add under n * ZERO^2 = n * 1e-12
    r_hat = (cv2.norm(x, cv2.NORM_L1) / n) ** 2 / ((left_sq + right_sq) / n)
    r_norm = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    shape = _nearest_shape(_R_AGGD, r_norm)
    g1, g2, g3 = math.gamma(1 / shape), math.gamma(2 / shape), math.gamma(3 / shape)
    mean = (math.sqrt(var_r) - math.sqrt(var_l)) * g2 / g1 * math.sqrt(g1 / g3)
    return shape, mean, var_l, var_r


def _one_scale(grey: np.ndarray) -> list[float]:
    import cv2

    m = mscn(grey)
    out = list(ggd_fit(m))
    # each coefficient times its neighbour (PAIRS order), over the pixels that have that neighbour
    for a, b in ((m[:, :-1], m[:, 1:]), (m[:-1, :], m[1:, :]), (m[:-1, :-1], m[1:, 1:]), (m[1:, :-1], m[:-1, 1:])):
        out += aggd_fit(cv2.multiply(a, b))
    return out


def brisque_features(image: np.ndarray) -> np.ndarray:
    """The 36 features (FEATURE_NAMES) of one uint8 RGB (H, W, 3) or grey (H, W) picture on the 0-255 scale, float64.
    Computed in float32 with OpenCV (~60 ms on a 720p frame on this box, a quarter of scipy's float64 filters; the
    features agree with the float64 computation within 2e-3, tests/models/test_nss.py)."""
    import cv2

    grey = (image.astype(np.float32) @ GREY.astype(np.float32)) if image.ndim == 3 else image.astype(np.float32)
    half = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return np.array(_one_scale(grey) + _one_scale(half))
