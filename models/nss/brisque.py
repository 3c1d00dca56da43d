"""BRISQUE features (Mittal, Moorthy, Bovik 2012): 18 statistics of mean-subtracted contrast-normalised (MSCN)
coefficients per scale, at full and half resolution, 36 in all.

Per scale: the generalised Gaussian fit of the MSCN coefficients (shape, variance), and the asymmetric generalised
Gaussian fit of their products with the horizontal, vertical and two diagonal neighbours (shape, mean, left and right
variance each). Fits by moment matching, as in the paper. Written here because the `brisque` package (0.2.0) fails
on NumPy 2 and the other implementations need torchvision or download their weights; a regressor on top is trained
by each family on its own folds.
"""
import numpy as np

_ALPHAS = np.arange(0.2, 10.0, 0.001)


def _gamma_ratio(alpha: np.ndarray) -> np.ndarray:
    """Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)): (E|x|)^2 / E[x^2] of a generalised Gaussian of shape a."""
    from scipy.special import gammaln

    return np.exp(2 * gammaln(2 / alpha) - gammaln(1 / alpha) - gammaln(3 / alpha))


_RATIOS = _gamma_ratio(_ALPHAS)  # increasing in alpha


def _shape(ratio: float) -> float:
    return float(_ALPHAS[np.argmin(np.abs(_RATIOS - ratio))])


def mscn(grey: np.ndarray, sigma: float = 7 / 6, c: float = 1.0) -> np.ndarray:
    """(I - mu) / (sigma_local + c) over a 7x7 Gaussian window; `grey` on a 0-255 scale."""
    import cv2

    x = grey.astype(np.float64)
    mu = cv2.GaussianBlur(x, (7, 7), sigma, borderType=cv2.BORDER_REPLICATE)
    var = cv2.GaussianBlur(x * x, (7, 7), sigma, borderType=cv2.BORDER_REPLICATE) - mu * mu
    return (x - mu) / (np.sqrt(np.abs(var)) + c)


def _ggd(x: np.ndarray) -> tuple[float, float]:
    variance = float(np.mean(x * x))
    return _shape(float(np.mean(np.abs(x))) ** 2 / max(variance, 1e-12)), variance


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    from scipy.special import gamma

    left, right = x[x < 0], x[x >= 0]
    sigma_l = np.sqrt(np.mean(left * left)) if left.size else 1e-6
    sigma_r = np.sqrt(np.mean(right * right)) if right.size else 1e-6
    g = sigma_l / max(sigma_r, 1e-12)
    r = float(np.mean(np.abs(x))) ** 2 / max(float(np.mean(x * x)), 1e-12)
    alpha = _shape(r * (g ** 3 + 1) * (g + 1) / (g * g + 1) ** 2)
    mean = (sigma_r - sigma_l) * gamma(2 / alpha) / gamma(1 / alpha) * np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, float(mean), float(sigma_l ** 2), float(sigma_r ** 2)


def _scale_features(grey: np.ndarray) -> list[float]:
    m = mscn(grey)
    products = (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[:-1, 1:] * m[1:, :-1])
    return [*_ggd(m.ravel()), *(v for p in products for v in _aggd(p.ravel()))]


def brisque_features(grey: np.ndarray) -> np.ndarray:
    """[36] float64 for one grey picture on a 0-255 scale (any size of at least 16 x 16)."""
    import cv2

    half = cv2.resize(grey.astype(np.float64), (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_CUBIC)
    return np.array(_scale_features(grey) + _scale_features(half), np.float64)
