"""models.nss's BRISQUE features, computed with OpenCV in float32 for speed, against the textbook float64 computation
with scipy's filters (written out here, independently): the served video analyser and both quality families' baselines
use the fast one, so it must be the same features."""
import numpy as np
import pytest
from scipy import ndimage

from models.nss.brisque import _R_AGGD, _R_GGD, _SHAPES, GREY, ZERO, brisque_features
from models import scenes


def _reference_features(image: np.ndarray) -> np.ndarray:
    from scipy import special

    def mscn(g):
        mu = ndimage.gaussian_filter(g, 7 / 6, truncate=2.6, mode="nearest")
        var = ndimage.gaussian_filter(g * g, 7 / 6, truncate=2.6, mode="nearest") - mu * mu
        return (g - mu) / (np.sqrt(np.maximum(var, 0.0)) + 1.0)

    def ggd(x):
        var, mean_abs = np.mean(x * x), np.mean(np.abs(x))
        return [_SHAPES[np.argmin(np.abs(var / mean_abs**2 - _R_GGD))], var]

    def aggd(x):
        left, right, zero = x[x < -ZERO], x[x > ZERO], np.sum(np.abs(x) <= ZERO)  # flat areas: half to each side
        var_l, var_r = np.sum(left * left) / (left.size + zero / 2), np.sum(right * right) / (right.size + zero / 2)
        g = np.sqrt(var_l / var_r)
        r_norm = np.mean(np.abs(x)) ** 2 / np.mean(x * x) * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
        shape = _SHAPES[np.argmin(np.abs(r_norm - _R_AGGD))]
        mean = (np.sqrt(var_r) - np.sqrt(var_l)) * special.gamma(2 / shape) / special.gamma(1 / shape) * \
            np.sqrt(special.gamma(1 / shape) / special.gamma(3 / shape))
        return [shape, mean, var_l, var_r]

    def one(g):
        m = mscn(g)
        return ggd(m) + sum((aggd(p) for p in (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:],
                                                m[1:, :-1] * m[:-1, 1:])), [])

    import cv2

    grey = image.astype(np.float64) @ GREY if image.ndim == 3 else image.astype(np.float64)
    return np.array(one(grey) + one(cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)))


@pytest.mark.parametrize("scene", ["fractal", "text", "checker", "banding"])
def test_fast_brisque_features_are_the_textbook_ones(scene):
    image = getattr(scenes, scene)(3)[:240, :320]
    fast, reference = brisque_features(image), _reference_features(image)
    # shapes come off a grid of step 0.001: float32 may land one step away
    assert fast == pytest.approx(reference, rel=2e-3, abs=2e-3)


def test_flat_and_one_sided_pictures_give_finite_features():
    for image in (np.full((64, 64), 128, np.uint8), np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))):
        assert np.isfinite(brisque_features(image)).all()
