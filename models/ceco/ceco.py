r"""CeCo: center collapse regularisation for imbalanced semantic segmentation (Zhong et al., CVPR 2023,
"Understanding Imbalanced Semantic Segmentation Through Neural Collapse", arXiv:2301.01100).

Training only; nothing of it is exported. Per image, the feature centre of every class present is the mean
decoder feature over the pixels of that class; centres pass a projection (linear 1x1 -> `proj`, linear ->
`hidden`, ReLU), are L2-normalised and classified by a *fixed* simplex equiangular tight frame

.. math::
    W = \sqrt{K / (K-1)}\, U (I_K - \tfrac{1}{K} 1 1^\top), \qquad U^\top U = I_K,

with logits :math:`s\, W^\top \hat h + \tau \log \pi` (scale s = 5, logit adjustment by the class prior π,
τ = 1). The loss added to the segmentation loss is λ·CE(logits, class). Pulling centres onto the ETF's
vertices pushes pairwise centre cosines toward -1/(K-1), the maximally separated structure that
imbalance otherwise breaks for minor classes.

Choices where the abstract is silent (stated in the model cards): the projection is *trained* with the
network (the classifier is the frozen part); centres come from features at the feature map's resolution
with labels resized by nearest neighbour; an ignore label is skipped.

Args: in_channels, num_classes, class_prior (K frequencies, need not sum to 1), proj (128), hidden (512),
scale (5.0), lam (0.4), ignore_index (-1), seed (0, for U).
Shapes: features [B, C, h, w], labels [B, H, W] (int64) -> scalar loss.
"""
import math

import torch
from torch import nn
import torch.nn.functional as F


def simplex_etf(num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """[dim, K] simplex ETF: unit columns with pairwise cosines exactly -1/(K-1)."""
    K = num_classes
    if dim < K:
        raise ValueError(f"ETF needs dim >= num_classes, got {dim} < {K}")
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(dim, K, generator=g))
    return math.sqrt(K / (K - 1)) * U @ (torch.eye(K) - torch.ones(K, K) / K)


def class_centres(features: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int = -1):
    """Per-image class means: ([M, C] centres, [M] class ids) for every (image, present class)."""
    B, C, h, w = features.shape
    lab = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
    valid = (lab != ignore_index) & (lab >= 0) & (lab < num_classes)
    onehot = F.one_hot(lab.clamp(0, num_classes - 1), num_classes).float() * valid[..., None]  # [B, h, w, K]
    counts = onehot.sum((1, 2))  # [B, K]
    sums = torch.einsum("bchw,bhwk->bkc", features, onehot)
    present = counts > 0
    centres = sums[present] / counts[present][:, None]
    classes = torch.arange(num_classes, device=features.device).expand(B, -1)[present]
    return centres, classes


class CeCo(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, class_prior, proj: int = 128, hidden: int = 512,
                 scale: float = 5.0, lam: float = 0.4, ignore_index: int = -1, seed: int = 0):
        super().__init__()
        self.num_classes, self.scale, self.lam, self.ignore_index = num_classes, scale, lam, ignore_index
        self.projection = nn.Sequential(nn.Linear(in_channels, proj), nn.Linear(proj, hidden), nn.ReLU())
        self.register_buffer("etf", simplex_etf(num_classes, hidden, seed))
        prior = torch.as_tensor(class_prior, dtype=torch.float32).clamp_min(1e-8)
        self.register_buffer("log_prior", torch.log(prior / prior.sum()))

    def logits(self, centres: torch.Tensor) -> torch.Tensor:
        h = F.normalize(self.projection(centres), dim=-1)
        return self.scale * h @ self.etf + self.log_prior

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        centres, classes = class_centres(features, labels, self.num_classes, self.ignore_index)
        if centres.shape[0] == 0:
            return features.sum() * 0.0
        return self.lam * F.cross_entropy(self.logits(centres), classes)

    def __repr__(self):
        return f"{type(self).__name__}(num_classes={self.num_classes}, scale={self.scale}, lam={self.lam})"


def centre_geometry(class_means: torch.Tensor) -> dict:
    """Neural-collapse geometry of K class means [K, C]: centred by their mean, pairwise cosines; the
    simplex ETF has all of them at -1/(K-1)."""
    K = class_means.shape[0]
    m = F.normalize(class_means - class_means.mean(0, keepdim=True), dim=1)
    cos = (m @ m.T)[~torch.eye(K, dtype=torch.bool)]
    target = -1.0 / (K - 1)
    return {"mean_cos": float(cos.mean()), "std_cos": float(cos.std()), "max_cos": float(cos.max()),
            "etf_target": target, "mean_abs_dev": float((cos - target).abs().mean())}
