"""scikit-learn's digits (1,797 8×8 images shipped with the package), upsampled to 16×16, and the patch trigger.

Images are ``[N, 1, 16, 16]`` float32 in [0, 1] (bilinear upsampling of pixel/16). The split is fixed
(stratified, seed 0): train 1,100 / val 300 / test 397 — seeds vary distillation and evaluation networks,
never the data. The validation split is the platform-held clean reference set of the scanner.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SIZE = 16
NUM_CLASSES = 10
SPLITS = (1100, 300, 397)


def upsample(images8: np.ndarray, size: int = SIZE) -> np.ndarray:
    x = torch.from_numpy(images8.astype(np.float32) / 16.0)[:, None]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1).numpy()


def load(size: int = SIZE) -> dict[str, dict[str, np.ndarray]]:
    digits = load_digits()
    images, labels = upsample(digits.images, size), digits.target.astype(np.int64)
    idx = np.arange(len(labels))
    train, rest = train_test_split(idx, train_size=SPLITS[0], stratify=labels, random_state=0)
    val, test = train_test_split(rest, train_size=SPLITS[1], stratify=labels[rest], random_state=0)
    return {name: {"image": images[i], "label": labels[i]} for name, i in (("train", train), ("val", val), ("test", test))}


@dataclass(frozen=True)
class Trigger:
    """A square patch: `size` pixels wide, `offset` pixels in from the chosen corner ("br" bottom-right, "tl", "tr", "bl")."""

    size: int = 2
    offset: int = 1
    corner: str = "br"
    target: int = 0

    def box(self, hw: int = SIZE) -> tuple[slice, slice]:
        lo, hi = self.offset, hw - self.offset - self.size
        top = hi if self.corner[0] == "b" else lo
        left = hi if self.corner[1] == "r" else lo
        return slice(top, top + self.size), slice(left, left + self.size)

    def mask(self, hw: int = SIZE) -> np.ndarray:
        m = np.zeros((1, hw, hw), np.float32)
        rows, cols = self.box(hw)
        m[:, rows, cols] = 1
        return m


def stamp(images, mask, pattern):
    """x ⊕ trigger = (1 − m)·x + m·pattern; works on numpy arrays and torch tensors alike."""
    return (1 - mask) * images + mask * pattern


def poison_indices(labels: np.ndarray, target: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """round(fraction · N) images drawn from the non-target classes (they will carry the trigger and label `target`)."""
    candidates = np.flatnonzero(labels != target)
    return rng.choice(candidates, size=int(round(fraction * len(labels))), replace=False)
