"""Deterministic crops, shared by evaluation and the served handler (numpy only: serving imports this).

One image always gets the same crops, whatever batch it arrives in, so it always gets the same score.
"""
import numpy as np

CROP = 64  # model input, px


def crop_positions(h: int, w: int, grid: int = 2, size: int = CROP) -> list[tuple[int, int]]:
    """Deterministic crops: centres at (2i+1)/(2·grid) of each side, clamped inside the image. For a 128×128
    image and grid 2 these are its four 64×64 quadrants. Shared by evaluation and the served handler."""
    ys = [min(max(round((2 * i + 1) * h / (2 * grid) - size / 2), 0), h - size) for i in range(grid)]
    xs = [min(max(round((2 * i + 1) * w / (2 * grid) - size / 2), 0), w - size) for i in range(grid)]
    return [(y, x) for y in ys for x in xs]


def fixed_crops(images: np.ndarray, grid: int = 2, size: int = CROP) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N * grid², 3, size, size) float32 in [0, 1], crops of one image contiguous."""
    n, h, w, _ = images.shape
    crops = [images[:, y : y + size, x : x + size] for y, x in crop_positions(h, w, grid, size)]
    stacked = np.stack(crops, axis=1).reshape(n * len(crops), size, size, 3)
    return np.ascontiguousarray(stacked.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
