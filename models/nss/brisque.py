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
import numpy as np
from scipy import ndimage, special

_SHAPES = np.arange(0.2, 10.0, 0.001)
# GGD: E[x^2] / E[|x|]^2 as a function of the shape; AGGD: its inverse (Mittal et al. 2012, eqs. 5-6 and 9-13)
_R_GGD = special.gamma(1 / _SHAPES) * special.gamma(3 / _SHAPES) / special.gamma(2 / _SHAPES) ** 2
_R_AGGD = 1.0 / _R_GGD
GREY = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma
PAIRS = ["horizontal", "vertical", "main_diagonal", "secondary_diagonal"]
FEATURE_NAMES = [f"s{scale}_{name}" for scale in (1, 2) for name in
                 ["mscn_shape", "mscn_var"] + [f"{d}_{p}" for d in PAIRS for p in ("shape", "mean", "var_left", "var_right")]]


def mscn(grey: np.ndarray, sigma: float = 7 / 6, c: float = 1.0) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a grey image on the 0-255 scale. truncate=2.6 makes
    scipy's window 7x7, the paper's."""
    mu = ndimage.gaussian_filter(grey, sigma, truncate=2.6, mode="nearest")
    var = ndimage.gaussian_filter(grey * grey, sigma, truncate=2.6, mode="nearest") - mu * mu
    return (grey - mu) / (np.sqrt(np.maximum(var, 0.0)) + c)


def ggd_fit(x: np.ndarray) -> tuple[float, float]:
    """Shape and variance of a zero-mean generalised Gaussian, by moment matching."""
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


def brisque_features(image: np.ndarray) -> np.ndarray:
    """The 36 features (FEATURE_NAMES) of one uint8 RGB (H, W, 3) or grey (H, W) picture on the 0-255 scale."""
    import cv2

    grey = image.astype(np.float64) @ GREY if image.ndim == 3 else image.astype(np.float64)
    half = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return np.array(_one_scale(grey) + _one_scale(half))
