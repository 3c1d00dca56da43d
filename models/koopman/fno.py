r"""FNO baseline for the same rollouts (Li et al., "Fourier neural operator for parametric partial
differential equations", https://arxiv.org/abs/2010.08895), channels-first like :mod:`.kno`.

The FNO "time" variant: the window of ``T_in`` frames plus the grid coordinates is lifted to ``width``
channels, passed through ``layers`` Fourier layers and projected to the next ``step`` frames;
rollouts slide the window (:func:`.kno.rollout`).
"""
import torch
from torch import nn

from .kno import broadcast_mode_mix, real_mode_matrices, served_mode_mix


class SpectralConv(nn.Module):
    r"""Fourier layer kernel :math:`\mathcal{F}^{-1}(R_k\,\mathcal{F}(v)_k)` over the lowest ``modes``
    frequencies, with separate complex weights for the positive and negative first-axis corners in 2-D
    (as in the FNO code). Real and imaginary parts are stored separately for ONNX export.

    Args:
        in_channels (int), out_channels (int), modes (int), dims (int): 1 or 2.

    Shapes:
        - **input:** :math:`(B, C_{in}, X[, Y])` — **output:** :math:`(B, C_{out}, X[, Y])`
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int, dims: int = 2):
        super().__init__()
        self.in_channels, self.out_channels, self.modes, self.dims = in_channels, out_channels, modes, dims
        corners = 1 if dims == 1 else 2
        self.weight = nn.Parameter(torch.empty(corners, 2, in_channels, out_channels, *(modes,) * dims))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.weight, 0.0, 1.0 / (self.in_channels * self.out_channels))

    served_matrices: torch.Tensor | None = None
    """Set while the served step is traced (`kno.trace_one_step`): `serving_matrices()`, a constant of the trace."""

    def serving_matrices(self) -> torch.Tensor:
        """Each corner's modes as real 2c×2c matrices, ``[corners, M, 2c, 2c]`` (`served_mode_mix`)."""
        return torch.stack([real_mode_matrices(self.weight[c, 0], self.weight[c, 1]) for c in range(self.weight.shape[0])])

    def _mix(self, z: torch.Tensor, corner: int) -> torch.Tensor:
        # The same mode mixing as the KNO's: einsum lowers to one tiny GEMM per mode, ~90 % of a CPU step
        wr, wi = self.weight[corner, 0], self.weight[corner, 1]
        if self.served_matrices is not None:
            return served_mode_mix(z, wr, wi, self.served_matrices[corner])
        return broadcast_mode_mix(z, wr, wi)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        m = self.modes
        zeros_like = lambda t: t[:, :1].expand(-1, self.out_channels, *t.shape[2:]) * 0.0  # noqa: E731
        if self.dims == 1:
            n = v.shape[-1]
            v_ft = torch.view_as_real(torch.fft.rfft(v, dim=-1))
            out = torch.cat([self._mix(v_ft[:, :, :m], 0), zeros_like(v_ft[:, :, m:])], dim=2)
            return torch.fft.irfft(torch.view_as_complex(out.contiguous()), n=n, dim=-1)
        nx, ny = v.shape[-2], v.shape[-1]
        v_ft = torch.view_as_real(torch.fft.rfft2(v, dim=(-2, -1)))
        cols = torch.cat([self._mix(v_ft[:, :, :m, :m], 0), zeros_like(v_ft[:, :, m:-m, :m]), self._mix(v_ft[:, :, -m:, :m], 1)], dim=2)
        out = torch.cat([cols, zeros_like(v_ft[:, :, :, m:])], dim=3)
        return torch.fft.irfft2(torch.view_as_complex(out.contiguous()), s=(nx, ny), dim=(-2, -1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, modes={self.modes}, dims={self.dims})"


class FNO(nn.Module):
    r"""FNO rollout baseline:

    .. math::
        v_0 = P(u_{t-T_{in}+1:t}, x), \qquad v_{l+1} = \sigma(\mathcal{K}_l v_l + W_l v_l), \qquad
        \hat u_{t+1:t+step} = Q(v_L),

    with :math:`P` Linear(T_in + dims → width), :math:`\mathcal{K}_l` a :class:`SpectralConv`,
    :math:`W_l` a 1×1 convolution, :math:`\sigma` GELU (none after the last layer) and
    :math:`Q` Linear(width → 128) – GELU – Linear(128 → step), all pointwise.

    Args:
        t_in (int), width (int), modes (int), layers (int), dims (int), step (int): as in :class:`.kno.KNO`.

    Shapes:
        - **input:** window :math:`(B, T_{in}, X[, Y])` — **output:** next frames :math:`(B, step, X[, Y])`
    """

    def __init__(self, t_in: int = 10, width: int = 20, modes: int = 12, layers: int = 4, dims: int = 2, step: int = 1):
        super().__init__()
        self.t_in, self.width, self.modes, self.layers, self.dims, self.step = t_in, width, modes, layers, dims, step
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.lift = conv(t_in + dims, width, 1)
        self.spectral = nn.ModuleList(SpectralConv(width, width, modes, dims) for _ in range(layers))
        self.pointwise = nn.ModuleList(conv(width, width, 1) for _ in range(layers))
        self.project = nn.Sequential(conv(width, 128, 1), nn.GELU(), conv(128, step, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters") and not isinstance(module, (nn.ModuleList, nn.Sequential)):
                module.reset_parameters()

    def _coordinates(self, window: torch.Tensor) -> torch.Tensor:
        b = window.shape[0]
        axes = [torch.arange(n, dtype=window.dtype, device=window.device) / n for n in window.shape[2:]]
        if self.dims == 1:
            return axes[0].expand(b, 1, -1)
        gx, gy = torch.meshgrid(axes[0], axes[1], indexing="ij")
        return torch.stack([gx, gy]).expand(b, -1, -1, -1)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        v = self.lift(torch.cat([window, self._coordinates(window)], dim=1))
        for i, (spectral, pointwise) in enumerate(zip(self.spectral, self.pointwise)):
            v = spectral(v) + pointwise(v)
            if i < self.layers - 1:
                v = nn.functional.gelu(v)
        return self.project(v)

    def predict(self, window: torch.Tensor) -> torch.Tensor:
        return self(window)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(t_in={self.t_in}, width={self.width}, modes={self.modes}, layers={self.layers}, dims={self.dims}, step={self.step})"
