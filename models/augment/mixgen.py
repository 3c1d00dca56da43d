"""MixGen (Hao et al., WACV 2023, https://arxiv.org/abs/2206.08358): joint image–text augmentation for a batch.

For the first M pairs of a batch of B (M = B // 4 in the reference setup, λ = 0.5):

.. math::
    I_i \\leftarrow \\lambda I_i + (1 - \\lambda) I_{i+M}, \\qquad T_i \\leftarrow T_i \\,\\Vert\\, \\text{" "} \\,\\Vert\\, T_{i+M},
    \\qquad i < M,

and every other pair is left as it is, so the batch size does not change. Usable from any training loop that
holds a batch as an image tensor plus a list of caption strings. Like the reference code, pairs i and i + M are
whatever the (already shuffled) batch puts there.
"""
import torch


def mixgen(images: torch.Tensor, texts: list[str], lam: float = 0.5, num: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """Returns a new image tensor ``[B, ...]`` and a new list of B captions; the inputs are not modified.

    Args:
        images: a batch of images ``[B, C, H, W]`` (any trailing shape).
        texts: the B captions, in the same order.
        lam: the image interpolation weight λ. (default: ``0.5``)
        num: M, how many pairs to mix; ``None`` means ``B // 4``. Needs ``2 * M <= B``.
    """
    batch = images.shape[0]
    if len(texts) != batch:
        raise ValueError(f"mixgen: {batch} images but {len(texts)} captions")
    num = batch // 4 if num is None else num
    if not 0 <= 2 * num <= batch:
        raise ValueError(f"mixgen: cannot mix M={num} pairs in a batch of {batch} (needs 0 <= 2M <= B)")
    images = images.clone()
    images[:num] = lam * images[:num] + (1 - lam) * images[num : 2 * num]
    texts = [t + " " + texts[i + num] if i < num else t for i, t in enumerate(texts)]
    return images, texts


class MixGen:
    r"""MixGen as a batch transform: ``images, texts = MixGen()(images, texts)``; see :func:`mixgen`.

    Args:
        lam (float): λ. (default: ``0.5``)
        fraction (float): M as a fraction of the batch. (default: ``0.25``)
    """

    def __init__(self, lam: float = 0.5, fraction: float = 0.25):
        self.lam, self.fraction = lam, fraction

    def __call__(self, images: torch.Tensor, texts: list[str]) -> tuple[torch.Tensor, list[str]]:
        return mixgen(images, texts, self.lam, int(images.shape[0] * self.fraction))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lam={self.lam}, fraction={self.fraction})"
