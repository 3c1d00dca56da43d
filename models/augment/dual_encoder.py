"""A tiny CLIP-style dual encoder (Radford et al., 2021) for the MixGen check and the `caption_match` endpoint."""
import math

import torch
from torch import nn


class DualEncoder(nn.Module):
    r"""Image and text towers trained with the symmetric InfoNCE loss of
    `"Learning Transferable Visual Models From Natural Language Supervision" <https://arxiv.org/abs/2103.00020>`_:

    .. math::
        \mathcal{L} = \tfrac12\big[\mathrm{CE}(s\,U V^\top, I) + \mathrm{CE}(s\,V U^\top, I)\big],
        \quad U = \frac{f(\text{images})}{\|f(\cdot)\|},\; V = \frac{g(\text{ids})}{\|g(\cdot)\|},

    with a learnt temperature :math:`s = e^{t}` (clamped at 100). The image tower is a three-block CNN; the text
    tower embeds word ids, averages over the non-pad positions (id 0) and applies a two-layer MLP.

    Args:
        vocab_size (int): number of word ids, including pad (0) and unknown (1).
        max_len (int): token positions the text tower reads. (default: ``32``)
        dim (int): joint embedding size. (default: ``64``)
        width (int): channels of the first conv block. (default: ``32``)

    Shapes:
        - **input:** image :math:`(N, 3, 16, 16)` in [0, 1], ids :math:`(N, \text{max\_len})` int64
        - **output:** cosine similarity of each image with its own text :math:`(N, 1)`
    """

    def __init__(self, vocab_size: int, max_len: int = 32, dim: int = 64, width: int = 32):
        super().__init__()
        self.vocab_size, self.max_len, self.dim, self.width = vocab_size, max_len, dim, width
        self.image_tower = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, dim),
        )
        self.embedding = nn.Embedding(vocab_size, 64, padding_idx=0)
        self.text_mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.image_tower(image), dim=-1)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(ids)
        mask = (ids > 0).unsqueeze(-1).to(embedded.dtype)  # the model's dtype, so fp16 / bf16 run end to end
        pooled = (embedded * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return nn.functional.normalize(self.text_mlp(pooled), dim=-1)

    def forward(self, image: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return (self.encode_image(image) * self.encode_text(ids)).sum(-1, keepdim=True)

    def loss(self, image: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        logits = self.log_scale.exp().clamp(max=100.0) * self.encode_image(image) @ self.encode_text(ids).T
        target = torch.arange(len(image))
        return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, max_len={self.max_len}, dim={self.dim}, width={self.width})"
