"""PMT-IQA: progressive multi-task blind image quality assessment.

Paper: "PMT-IQA: Progressive Multi-task Learning for Blind Image Quality Assessment" (arXiv:2301.01182);
project notes in ../shared/METHODS.md §1.

.. math::
    f = [\\mathrm{MS}_1(s_1), \\mathrm{MS}_2(s_2), \\mathrm{MS}_3(s_3), \\mathrm{MS}_4(s_4)] \\in \\mathbb{R}^{112},\\quad
    h = \\sigma(W_2\\,\\sigma(W_1 f)) \\in \\mathbb{R}^{14},\\quad
    \\hat q = w_q^\\top h,\\quad \\hat p = \\mathrm{softmax}(W_4\\,\\sigma(W_3 h))

    \\mathcal{L}_t = \\lambda_1(t)\\,|\\hat q - q|_1 + \\lambda_2(t)\\,\\mathrm{CE}(\\hat p, \\ell),\\quad
    \\lambda_1 = t/(E-1),\\ \\lambda_2 = 1 - \\lambda_1

with :math:`s_i` the outputs of ResNet stages 1-4, :math:`\\mathrm{MS}_i` a 1×1 convolution to 16/32/64 channels
(stage 4: none), average pooling to the paper's 8×8 / 4×4 / 2×2 / 1×1 grids, and a linear map to 28 each;
:math:`\\sigma` is LeakyReLU, :math:`q` the quality score and :math:`\\ell` its 10-level bin.

Args:
    backbone: "resnet18" or "resnet50" (torchvision's definitions, models/iqa/resnet.py), trained from scratch.
    score_scale: the score head predicts ``score / score_scale`` (10: pseudo-MOS 0-100 regressed on 0-10, so
        the L1 term starts on the same order as the 10-way cross-entropy it is traded against).

Shapes: input (N, 3, H, W) RGB in [0, 1] (ImageNet normalisation is inside the module); outputs
``score`` (N,) on the 0-100 scale and ``level_logits`` (N, 10).

Difference from the paper: the paper pools with a fixed 7×7 / stride-7 window on 224×224 crops; we train on
64×64 crops, so the pool is adaptive to the same output grids (identical to the paper's at 224 input).
"""
import torch
from torch import Tensor, nn

from .resnet import BACKBONES

MS_CHANNELS = (16, 32, 64, None)  # 1x1 conv width per stage; stage 4 is pooled directly
MS_GRID = (8, 4, 2, 1)  # pooled spatial size per stage (the paper's 224 / 4 / 7 ... = 8, 4, 2, 1)
MS_OUT = 28
LEVELS = 10
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class MultiScale(nn.Module):
    """One stage of HyperIQA's local-distortion-aware module: 1×1 conv (optional), average pool, linear → 28."""

    def __init__(self, in_channels: int, conv_channels: int | None, grid: int, out: int = MS_OUT):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, conv_channels, 1) if conv_channels else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.fc = nn.Linear((conv_channels or in_channels) * grid * grid, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


class PMTIQA(nn.Module):
    def __init__(self, backbone: str = "resnet18", width: int = 64, score_scale: float = 10.0):
        super().__init__()
        self.backbone_name, self.width, self.score_scale = backbone, width, score_scale
        self.backbone = BACKBONES[backbone](width=width)
        del self.backbone.fc  # the 1000-way ImageNet head is not used
        self.multiscale = nn.ModuleList(
            MultiScale(c, k, g) for c, k, g in zip(self.backbone.stage_channels, MS_CHANNELS, MS_GRID)
        )
        self.trunk = nn.Sequential(nn.Linear(4 * MS_OUT, 112), nn.LeakyReLU(), nn.Linear(112, 14), nn.LeakyReLU())
        self.score_head = nn.Linear(14, 1)
        self.level_head = nn.Sequential(nn.Linear(14, 14), nn.LeakyReLU(), nn.Linear(14, LEVELS))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x: Tensor) -> Tensor:
        stages = self.backbone.forward_stages((x - self.mean) / self.std)
        return self.trunk(torch.cat([m(s) for m, s in zip(self.multiscale, stages)], dim=1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        return self.score_head(h).squeeze(1) * self.score_scale, self.level_head(h)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"{type(self).__name__}(backbone={self.backbone_name}, width={self.width}, features=112, levels={LEVELS}, params={n:,})"


class ServedIQA(nn.Module):
    """What the ONNX graph computes: per-crop score (N, 1) and level probabilities (N, 10)."""

    def __init__(self, model: PMTIQA):
        super().__init__()
        self.model = model.eval()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        score, logits = self.model(x)
        return score.unsqueeze(1), torch.softmax(logits, dim=1)


def progressive_weights(epoch: int, epochs: int) -> tuple[float, float]:
    """λ1 (regression) = t/(E−1), λ2 (classification) = 1 − λ1: classification first, regression last."""
    lam1 = epoch / (epochs - 1) if epochs > 1 else 1.0
    return lam1, 1.0 - lam1


def loss(score: Tensor, logits: Tensor, target: Tensor, level: Tensor, lam1: float, lam2: float, score_scale: float) -> dict:
    l1 = (score - target).abs().mean() / score_scale
    ce = nn.functional.cross_entropy(logits, level)
    return {"loss": lam1 * l1 + lam2 * ce, "l1": l1.detach(), "ce": ce.detach()}
