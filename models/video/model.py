"""SSTAM's two learned parts: the block CNN (spatial artifacts) and a compact TimeSformer (temporal ones)."""

import torch
from torch import nn

from .pipeline import MSCN_SIGMA


class BlockCNN(nn.Module):
    r"""Maps a YUV 4:2:0 frame to the intensity of blurring, blocking, bleeding and ringing per 16x16 block.

    Luma enters through a 4x4 stride-4 patchify convolution, chroma (half resolution) through a 2x2
    stride-2 one, so both reach 1/4 resolution cheaply; two stride-2 3x3 convolutions reach the 16x16
    block grid, where a 3x3 convolution mixes neighbouring blocks and a 1x1 head gives sigmoid intensities.
    Fully convolutional: any frame whose sides are multiples of 16.

    With ``luma="mscn"`` luma enters as mean-subtracted contrast-normalised coefficients (MSCN, as in BRISQUE,
    Mittal et al. 2012: (y - mu) / (sigma + 1) over a 7x7 Gaussian window): the picture's own brightness and
    contrast are divided out, so what is left is the local structure the encoder disturbed.

    Args: width (int, default 24): channels at 1/4 resolution; feat (int, default 32): block feature size;
    luma ("raw" | "mscn", default "raw"): how luma enters.
    Shapes: y [N, 1, H, W] and uv [N, 2, H/2, W/2], raw 0..255 floats ->
        intensities [N, 4, H/16, W/16] in [0, 1], features [N, feat, H/16, W/16].
    """

    def __init__(self, width: int = 24, feat: int = 32, luma: str = "raw"):
        super().__init__()
        if luma not in ("raw", "mscn"):
            raise ValueError(f"luma must be 'raw' or 'mscn', got {luma!r}")
        self.width, self.feat, self.luma_input = width, feat, luma
        g = torch.exp(-0.5 * (torch.arange(7.0) - 3) ** 2 / MSCN_SIGMA ** 2)
        # 1x7 Gaussian for two channels (y and y^2), applied both ways
        self.register_buffer("window", (g / g.sum()).expand(2, 1, 1, 7).clone(), persistent=False)
        self.luma = nn.Conv2d(1, width, 4, stride=4)
        self.chroma = nn.Conv2d(2, width // 2, 2, stride=2)
        c = width + width // 2
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, feat, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(feat, feat, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(feat, 4, 1)

    def mscn(self, y):
        # separable Gaussian over y and y^2 at once (two grouped convolutions): this runs at full luma resolution,
        # where ONNX Runtime's one-channel convolutions were the costliest part of the whole network
        x = nn.functional.pad(torch.cat([y, y * y], 1), (3, 3, 3, 3), mode="reflect")
        m = nn.functional.conv2d(nn.functional.conv2d(x, self.window, groups=2), self.window.transpose(-1, -2), groups=2)
        mu, sigma = m[:, :1], (m[:, 1:] - m[:, :1] ** 2).clamp_min(0).sqrt()
        return (y - mu) / (sigma + 1.0)

    def forward(self, y, uv):
        y = self.mscn(y) if self.luma_input == "mscn" else (y - 128.0) / 64.0
        x = torch.cat([self.luma(y), self.chroma((uv - 128.0) / 32.0)], 1)
        f = self.body(x)
        return torch.sigmoid(self.head(f)), f

    def __repr__(self):
        luma = "" if self.luma_input == "raw" else f", luma={self.luma_input!r}"
        return f"{type(self).__name__}(width={self.width}, feat={self.feat}{luma})"


class Attention(nn.Module):
    """Plain multi-head self-attention over the second-to-last axis (written out so ONNX export is simple)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):  # x [B, L, dim]
        B, L, D = x.shape
        q, k, v = self.qkv(x).reshape(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = torch.softmax(q @ k.transpose(-1, -2) * self.scale, -1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, L, D))


class DividedBlock(nn.Module):
    """TimeSformer's divided space-time block: temporal attention (each region across frames), then
    spatial attention (regions within a frame), then an MLP; pre-norm residuals."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.n1, self.time = nn.LayerNorm(dim), Attention(dim, heads)
        self.n2, self.space = nn.LayerNorm(dim), Attention(dim, heads)
        self.n3, self.mlp = nn.LayerNorm(dim), nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):  # [B, T, S, dim]
        B, T, S, D = x.shape
        xt = x.transpose(1, 2).reshape(B * S, T, D)
        x = x + self.time(self.n1(xt)).reshape(B, S, T, D).transpose(1, 2)
        xs = x.reshape(B * T, S, D)
        x = x + self.space(self.n2(xs)).reshape(B, T, S, D)
        return x + self.mlp(self.n3(x))


class TimeSformer(nn.Module):
    r"""A compact TimeSformer (Bertasius et al., ICML 2021, arXiv:2102.05095) with divided space-time
    attention over region tokens of saliency-weighted frames; outputs flickering and floating intensities.

    Args: in_dim: token features; dim (48), heads (4), depth (2), frames (8), tokens (64);
    use_from (0): only token features from this index on are used (the served graph keeps one input layout
    whichever subset validation chose).
    Shapes: tokens [N, frames, tokens, in_dim] -> [N, 2] in [0, 1].
    """

    def __init__(self, in_dim: int, dim: int = 48, heads: int = 4, depth: int = 2, frames: int = 8, tokens: int = 64,
                 use_from: int = 0):
        super().__init__()
        self.in_dim, self.dim, self.depth, self.use_from = in_dim, dim, depth, use_from
        self.norm_in = nn.LayerNorm(in_dim - use_from)
        self.embed = nn.Linear(in_dim - use_from, dim)
        self.pos_t = nn.Parameter(torch.zeros(1, frames, 1, dim))
        self.pos_s = nn.Parameter(torch.zeros(1, 1, tokens, dim))
        self.blocks = nn.ModuleList([DividedBlock(dim, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 2)
        nn.init.trunc_normal_(self.pos_t, std=0.02), nn.init.trunc_normal_(self.pos_s, std=0.02)

    def forward(self, tokens):
        x = self.embed(self.norm_in(tokens[..., self.use_from:])) + self.pos_t + self.pos_s
        for b in self.blocks:
            x = b(x)
        return torch.sigmoid(self.head(self.norm(x).mean((1, 2))))

    def __repr__(self):
        return f"{type(self).__name__}(in_dim={self.in_dim}, dim={self.dim}, depth={self.depth}, use_from={self.use_from})"
