"""An RBF support-vector regression kept as numbers: how both quality families serve a regressor fitted on BRISQUE's
features (and their own) without pickling a scikit-learn object into the model repository."""
from dataclasses import dataclass

import numpy as np


@dataclass
class KernelLevel:
    """sum_i dual_coef_i exp(-gamma |z - support_vector_i|^2) + intercept, z = (x - mean) / scale: a fitted
    make_pipeline(StandardScaler(), SVR(kernel="rbf")) as lists of floats (JSON in the weights' metadata), evaluated
    with numpy. Only the first `features` values of an input are read."""
    mean: list
    scale: list
    support_vectors: list
    dual_coef: list
    intercept: float
    gamma: float

    def __post_init__(self):
        mean, scale, vectors, coef = (np.asarray(v, np.float64) for v in (self.mean, self.scale, self.support_vectors, self.dual_coef))
        self._arrays = mean, scale, vectors, coef, (vectors * vectors).sum(1)  # |v|^2 once, not per call

    @property
    def features(self) -> int:
        return len(self.mean)

    def predict(self, x: np.ndarray) -> float:
        return float(self.predict_many(np.asarray(x)[None])[0])

    def predict_many(self, x: np.ndarray) -> np.ndarray:
        """(N, >= features) -> (N,)."""
        mean, scale, vectors, coef, squared_norms = self._arrays
        z = (np.asarray(x, np.float64)[:, :len(mean)] - mean) / scale
        distances = (z * z).sum(1)[:, None] - 2 * z @ vectors.T + squared_norms
        np.maximum(distances, 0.0, out=distances)
        distances *= -self.gamma
        return np.exp(distances, out=distances) @ coef + self.intercept

    @classmethod
    def from_sklearn(cls, pipeline, decimals: int | None = None) -> "KernelLevel":
        """From a fitted make_pipeline(StandardScaler(), SVR(kernel="rbf")); ``decimals`` rounds the stored numbers."""
        scaler, svr = pipeline.steps[0][1], pipeline.steps[-1][1]
        def numbers(a):
            return (np.round(a, decimals) if decimals is not None else np.asarray(a)).tolist()
        return cls(mean=numbers(scaler.mean_), scale=numbers(scaler.scale_), support_vectors=numbers(svr.support_vectors_),
                   dual_coef=numbers(svr.dual_coef_.ravel()), intercept=float(svr.intercept_[0]), gamma=float(svr._gamma))
