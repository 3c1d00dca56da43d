"""Shortcut benchmarks built from scikit-learn's digits (1,797 8×8 images bundled with the package).

Core label: ``digit < 5``, then 25 % of the labels flipped (so the digit predicts the label at 75 % at best).
Shortcut attribute: agrees with the *noisy* label in exactly 90 % of train and validation images and in
exactly 10 % of test images (the Coloured-MNIST protocol of Arjovsky et al., 2019, on 8×8 digits).
Two kinds of shortcut, each an image ``[3, 8, 8]`` in ``[0, 1]``:

- ``"colour"``: the digit is drawn in red (attribute 0) or green (attribute 1); the blue channel is empty.
- ``"patch"``: the digit is grey (all three channels equal) and a bright 2×2 patch sits in the top-left
  corner when the attribute is 1 — a local, colour-free shortcut.

Rates are exact (a seeded permutation picks which images flip), so tests can check them to the image.
The validation split is drawn like train (90 % agreement): it selects hyper-parameters, test is scored once.
Groups for worst-group accuracy are (noisy label, attribute): 4 groups.
"""
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

LABEL_NOISE = 0.25
AGREEMENT = {"train": 0.9, "val": 0.9, "test": 0.1}
FRACTIONS = (0.5, 0.2, 0.3)  # train / val / test
KINDS = ("colour", "patch")


def _flip_exactly(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask with exactly round(fraction * n) True entries at seeded positions."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(fraction * n))]] = True
    return mask


def render(gray: np.ndarray, attribute: np.ndarray, kind: str) -> np.ndarray:
    """Grey digits ``[N, 8, 8]`` in [0, 1] and attributes ``[N]`` in {0, 1} -> images ``[N, 3, 8, 8]`` float32."""
    n = len(gray)
    images = np.zeros((n, 3, 8, 8), dtype=np.float32)
    if kind == "colour":
        images[np.arange(n), attribute.astype(np.int64)] = gray  # red (0) or green (1) channel
    elif kind == "patch":
        images[:] = gray[:, None]
        images[attribute.astype(bool), :, :2, :2] = 1.0
    else:
        raise ValueError(f"unknown shortcut kind {kind!r}; choose one of {KINDS}")
    return images


def make_benchmark(kind: str = "colour", seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Returns ``{split: {"image" [N,3,8,8], "label" [N] noisy, "clean" [N], "attribute" [N], "group" [N]}}``.

    ``seed`` fixes the split, the label noise and which images carry the disagreeing attribute.
    """
    digits = load_digits()
    gray = (digits.images / 16.0).astype(np.float32)
    index = np.arange(len(gray))
    train, rest = train_test_split(index, train_size=FRACTIONS[0], stratify=digits.target, random_state=seed)
    val, test = train_test_split(rest, train_size=FRACTIONS[1] / (1 - FRACTIONS[0]), stratify=digits.target[rest], random_state=seed)
    rng = np.random.default_rng(seed)
    out = {}
    for name, idx in (("train", train), ("val", val), ("test", test)):
        clean = (digits.target[idx] < 5).astype(np.int64)
        label = np.where(_flip_exactly(len(idx), LABEL_NOISE, rng), 1 - clean, clean)
        attribute = np.where(_flip_exactly(len(idx), 1 - AGREEMENT[name], rng), 1 - label, label)
        out[name] = {
            "image": render(gray[idx], attribute, kind), "label": label, "clean": clean,
            "attribute": attribute, "group": 2 * label + attribute, "digit": digits.target[idx],
        }
    return out


def group_accuracies(pred: np.ndarray, label: np.ndarray, group: np.ndarray) -> dict[str, float]:
    """Average accuracy and worst-group accuracy over the four (label, attribute) groups."""
    correct = pred.astype(np.int64) == label
    per_group = [correct[group == g].mean() for g in np.unique(group)]
    return {"average": float(correct.mean()), "worst_group": float(min(per_group))}
