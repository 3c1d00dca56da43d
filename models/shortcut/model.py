"""Chroma-VAE (Yang et al., NeurIPS 2022, https://arxiv.org/abs/2211.15231) and the modules that serve it."""
import torch
from torch import nn


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ChromaVAE(nn.Module):
    r"""A VAE classifier whose label head reads only a small latent subspace, from
    `"Chroma-VAE: Mitigating Shortcut Learning with Generative Classifiers"
    <https://arxiv.org/abs/2211.15231>`_.

    The latent :math:`\mathbf{z} = [\mathbf{z}_1, \mathbf{z}_2]` splits into a ``shortcut_dim``-dimensional
    :math:`\mathbf{z}_1` and the rest. Stage one minimises

    .. math::
        \mathcal{L} = -\mathbb{E}_{q(\mathbf{z}\mid\mathbf{x})}[\log p(\mathbf{x}\mid\mathbf{z})]
        + \beta\,\mathrm{KL}(q(\mathbf{z}\mid\mathbf{x})\,\|\,\mathcal{N}(0, I))
        + \alpha\,\mathrm{CE}(h(\mathbf{z}_1), y),

    so the label is pushed into :math:`\mathbf{z}_1`; a shortcut, needing least information, is what fits
    there. Stage two (``models/shortcut/train.py``) fits a second classifier on :math:`\mathbf{z}_2` only.

    Args:
        in_shape (tuple): image shape ``(C, H, W)``. (default: ``(3, 8, 8)``)
        latent_dim (int): size of :math:`\mathbf{z}`. (default: ``16``)
        shortcut_dim (int): size of :math:`\mathbf{z}_1`, 1 or 2 in the paper. (default: ``1``)
        hidden (int): width of the encoder/decoder MLPs. (default: ``128``)

    Shapes:
        - **input:** image :math:`(N, C, H, W)` in [0, 1]
        - **output:** label logit :math:`(N,)`, reconstruction logits :math:`(N, C, H, W)`,
          posterior mean and log-variance :math:`(N, \text{latent\_dim})`
    """

    def __init__(self, in_shape: tuple[int, int, int] = (3, 8, 8), latent_dim: int = 16, shortcut_dim: int = 1, hidden: int = 128):
        super().__init__()
        self.in_shape, self.latent_dim, self.shortcut_dim, self.hidden = tuple(in_shape), latent_dim, shortcut_dim, hidden
        pixels = in_shape[0] * in_shape[1] * in_shape[2]
        self.encoder = _mlp([pixels, hidden, hidden // 2, 2 * latent_dim])
        self.decoder = _mlp([latent_dim, hidden // 2, hidden, pixels])
        self.head = nn.Linear(shortcut_dim, 1)

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(image.flatten(1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.in_shape)

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z[:, : self.shortcut_dim], z[:, self.shortcut_dim :]

    def forward(self, image: torch.Tensor):
        mu, logvar = self.encode(image)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.head(self.split(z)[0]).squeeze(-1), self.decode(z), mu, logvar

    def loss(self, image: torch.Tensor, label: torch.Tensor, alpha: float, beta: float) -> dict[str, torch.Tensor]:
        logit, recon, mu, logvar = self(image)
        rec = nn.functional.binary_cross_entropy_with_logits(recon, image, reduction="none").flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        ce = nn.functional.binary_cross_entropy_with_logits(logit, label.float())
        return {"loss": rec + beta * kl + alpha * ce, "recon": rec, "kl": kl, "ce": ce}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(in_shape={self.in_shape}, latent_dim={self.latent_dim}, "
                f"shortcut_dim={self.shortcut_dim}, hidden={self.hidden})")


class ConvChromaVAE(ChromaVAE):
    r""":class:`ChromaVAE` with a small convolutional encoder and decoder in place of the MLPs (the paper's
    coloured-MNIST model is convolutional). Same loss, same latent split, same head on :math:`\mathbf{z}_1`.

    Encoder: Conv(C→w, 3) → ReLU → Conv(w→2w, 3, stride 2) → ReLU → Linear(2w·H/2·W/2 → 2·latent).
    Decoder: Linear(latent → 2w·H/2·W/2) → ReLU → ConvTranspose(2w→w, 4, stride 2) → ReLU → Conv(w→C, 3).

    Args:
        in_shape (tuple): image shape ``(C, H, W)``, H and W even. (default: ``(3, 8, 8)``)
        latent_dim (int): size of :math:`\mathbf{z}`. (default: ``16``)
        shortcut_dim (int): size of :math:`\mathbf{z}_1`. (default: ``1``)
        hidden (int): ``w``, the channels of the first convolution. (default: ``16``)
    """

    def __init__(self, in_shape: tuple[int, int, int] = (3, 8, 8), latent_dim: int = 16, shortcut_dim: int = 1, hidden: int = 16):
        super().__init__(in_shape, latent_dim, shortcut_dim, hidden)
        c, h, w = in_shape
        flat = 2 * hidden * (h // 2) * (w // 2)
        self.encoder = nn.Sequential(
            nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, 2 * hidden, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(flat, 2 * latent_dim))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, flat), nn.ReLU(), nn.Unflatten(1, (2 * hidden, h // 2, w // 2)),
            nn.ConvTranspose2d(2 * hidden, hidden, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(hidden, c, 3, padding=1))

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(image).chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 10.0)


ENCODERS = {"mlp": ChromaVAE, "conv": ConvChromaVAE}


class MLPClassifier(nn.Module):
    r"""The ERM baseline: the same encoder trunk as :class:`ChromaVAE`, trained on the labels alone.

    Shapes:
        - **input:** image :math:`(N, C, H, W)`
        - **output:** label logit :math:`(N,)`
    """

    def __init__(self, in_shape: tuple[int, int, int] = (3, 8, 8), hidden: int = 128):
        super().__init__()
        self.in_shape, self.hidden = tuple(in_shape), hidden
        self.net = _mlp([in_shape[0] * in_shape[1] * in_shape[2], hidden, hidden // 2, 1])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image.flatten(1)).squeeze(-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(in_shape={self.in_shape}, hidden={self.hidden})"


class LinearProbe(nn.Module):
    r"""Logistic regression on standardised features: :math:`p = \sigma(w^\top (x - m) / s + b)`.

    Shapes: **input** :math:`(N, D)` → **output** probability :math:`(N, 1)`.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        for name, shape in (("mean", (dim,)), ("scale", (dim,)), ("weight", (dim,)), ("bias", (1,))):
            self.register_buffer(name, torch.zeros(shape))
        self.scale.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(((x - self.mean) / self.scale) @ self.weight.unsqueeze(-1) + self.bias)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


class KNNProbe(nn.Module):
    r"""k-nearest-neighbour vote over a fixed reference set of standardised features:
    :math:`p(x) = \frac{1}{k}\sum_{j \in \mathrm{top}_k(-\|x - r_j\|^2)} y_j` (Euclidean, uniform weights).

    Written with a matmul and ``topk`` so the whole vote exports to ONNX (MatMul, TopK, Gather).

    Shapes: **input** :math:`(N, D)` → **output** probability :math:`(N, 1)`.
    """

    def __init__(self, reference_size: int, dim: int, k: int):
        super().__init__()
        self.reference_size, self.dim, self.k = reference_size, dim, k
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("reference", torch.zeros(reference_size, dim))
        self.register_buffer("labels", torch.zeros(reference_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.scale
        d2 = x.pow(2).sum(1, keepdim=True) - 2 * x @ self.reference.T + self.reference.pow(2).sum(1)
        nearest = torch.topk(-d2, self.k, dim=1).indices
        return self.labels[nearest].mean(1, keepdim=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reference_size={self.reference_size}, dim={self.dim}, k={self.k})"


class ShortcutAudit(nn.Module):
    r"""The served graph: a trained :class:`ChromaVAE` encoder, its :math:`\mathbf{z}_1` head, and the
    stage-two classifier on :math:`\mathbf{z}_2` (posterior means, no sampling).

    Shapes:
        - **input:** image :math:`(N, 3, 8, 8)` in [0, 1]
        - **output:** ``core_probability`` :math:`(N, 1)` (z2 classifier), ``shortcut_probability``
          :math:`(N, 1)` (z1 head), ``disagree`` bool :math:`(N, 1)` (the two sides of 0.5 differ)
    """

    def __init__(self, vae: ChromaVAE, core: nn.Module):
        super().__init__()
        self.vae, self.core = vae, core

    def forward(self, image: torch.Tensor):
        z1, z2 = self.vae.split(self.vae.encode(image)[0])
        shortcut = torch.sigmoid(self.vae.head(z1))
        core = self.core(z2)
        return core, shortcut, (core > 0.5) != (shortcut > 0.5)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vae={self.vae}, core={self.core})"
