"""Image–caption pairs generated deterministically from scikit-learn's digits.

Each pair takes one 8×8 digit, upsamples it to 16×16 and applies seeded attribute transforms; the caption
names every attribute in one of a few word orders:

- digit (10 names), colour (red, green, blue, yellow, cyan, magenta: the grey digit times an RGB colour),
- size (small = scaled to 0.7 about the centre, large = 1.0), stroke (thin = as drawn, thick = 3×3 max-pool
  dilation), slant (left / upright / right = horizontal shear -0.35 / 0 / +0.35).

Source images are split 60/20/20 (seed 0) into train / validation / test pools before any pair is drawn, so no
digit drawing appears in two splits. `make_pairs(split, n, seed)` is a pure function of its arguments.
Two pairs *match* when their attribute tuples are equal (their captions then say the same thing).
"""
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0), "cyan": (0, 1, 1), "magenta": (1, 0, 1)}
SIZES = {"small": 0.7, "large": 1.0}
STROKES = ("thin", "thick")
SLANTS = {"left": -0.35, "upright": 0.0, "right": 0.35}
TEMPLATES = (
    "a {size} {stroke} {colour} {digit} slanted {slant}",
    "{colour} digit {digit} {size} and {stroke} leaning {slant}",
    "the number {digit} in {colour} with a {stroke} stroke {size} slanted {slant}",
)
IMAGE_SIZE = 16
_FIXED_WORDS = "a digit and leaning the number in with stroke slanted".split()
VOCAB = ("<pad>", "<unk>", *sorted(set(_FIXED_WORDS) | set(DIGITS) | set(COLOURS) | set(SIZES) | set(STROKES) | set(SLANTS)))
"""Word ids: 0 pads, 1 is any word outside the vocabulary. Fixed by the generator, not learnt from data."""


def _pools(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    d = load_digits()
    images, labels = (d.images / 16.0).astype(np.float32), d.target
    tr, rest = train_test_split(np.arange(len(labels)), train_size=0.6, stratify=labels, random_state=seed)
    va, te = train_test_split(rest, train_size=0.5, stratify=labels[rest], random_state=seed)
    return {s: (images[i], labels[i]) for s, i in (("train", tr), ("val", va), ("test", te))}


def render(gray8: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """Grey 8×8 digits ``[N, 8, 8]`` and attribute rows ``[N, 5]`` (digit, colour, size, stroke, slant indices)
    -> ``[N, 3, 16, 16]`` float32 images in [0, 1]."""
    x = torch.nn.functional.interpolate(torch.from_numpy(gray8)[:, None], size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    thick = torch.from_numpy(attributes[:, 3] == STROKES.index("thick"))
    x = torch.where(thick[:, None, None, None], torch.nn.functional.max_pool2d(x, 3, stride=1, padding=1), x)
    scale = torch.tensor([list(SIZES.values())[i] for i in attributes[:, 2]], dtype=torch.float32)
    shear = torch.tensor([list(SLANTS.values())[i] for i in attributes[:, 4]], dtype=torch.float32)
    # affine_grid maps output to input coordinates: 1/s shrinks the digit to s, the shear term slants it.
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 1] = 1 / scale, shear / scale, 1 / scale
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, align_corners=False, padding_mode="zeros").clamp(0, 1)
    rgb = torch.tensor([list(COLOURS.values())[i] for i in attributes[:, 1]], dtype=torch.float32)
    return (x * rgb[:, :, None, None]).numpy()


def caption(attributes, template: int) -> str:
    digit, colour, size, stroke, slant = (int(v) for v in attributes)
    return TEMPLATES[template].format(digit=DIGITS[digit], colour=list(COLOURS)[colour], size=list(SIZES)[size],
                                      stroke=STROKES[stroke], slant=list(SLANTS)[slant])


def make_pairs(split: str, n: int, seed: int = 0) -> dict:
    """``n`` pairs from one split: {"image" [n, 3, 16, 16], "caption" [n] str, "attributes" [n, 5] int64}."""
    images, labels = _POOLS[split]
    rng = np.random.default_rng([seed, {"train": 0, "val": 1, "test": 2}[split]])
    source = rng.integers(len(labels), size=n)
    attributes = np.stack([labels[source], rng.integers(len(COLOURS), size=n), rng.integers(len(SIZES), size=n),
                           rng.integers(len(STROKES), size=n), rng.integers(len(SLANTS), size=n)], axis=1).astype(np.int64)
    templates = rng.integers(len(TEMPLATES), size=n)
    return {"image": render(images[source], attributes), "caption": [caption(a, t) for a, t in zip(attributes, templates)],
            "attributes": attributes}


def tokenize(texts: list[str], max_len: int) -> np.ndarray:
    """The Python reference of the in-graph tokeniser (models/augment/export.py): ASCII lower-case, split on runs of
    spaces (only ' '; tabs and newlines stay inside a word), map words to VOCAB ids (unknown -> 1), pad with 0
    and cut to ``max_len``. Returns int64 ``[len(texts), max_len]``."""
    index = {w: i for i, w in enumerate(VOCAB)}
    lower = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    ids = np.zeros((len(texts), max_len), dtype=np.int64)
    for row, text in enumerate(texts):
        words = [index.get(w, 1) for w in text.translate(lower).split(" ") if w][:max_len]
        ids[row, : len(words)] = words
    return ids


_POOLS = _pools()
