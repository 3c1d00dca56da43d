r"""Koopman neural operators (KNO) for 1-D and 2-D rollouts, and a CNN-encoder variant.

Tensors are channels-first: a window of ``T_in`` snapshots is ``[B, T_in, X]`` (1-D) or
``[B, T_in, X, Y]`` (2-D); time is the channel axis, so the encoder "Linear(T_in → o) at each grid
point" of the paper is a 1×1 convolution, and nothing depends on the grid size.

The complex spectral weights are stored as two real tensors and multiplied in real arithmetic
between ``rfft`` and ``irfft``: the ONNX (dynamo) exporter handles the FFTs but not complex
parameters or complex ``einsum`` (see ``models/koopman/export.py``).
"""
import warnings

import torch
from torch import nn


def _conv(dims: int):
    return nn.Conv1d if dims == 1 else nn.Conv2d


def broadcast_mode_mix(z: torch.Tensor, weight_real: torch.Tensor, weight_imag: torch.Tensor) -> torch.Tensor:
    """z: [B, o, *modes, 2] (real, imag) -> the same, times each mode's complex o×o matrix. A broadcast product summed
    over input channels: einsum lowers to one tiny o×o GEMM per mode, ~20× slower on CPU at one or two rows. Its
    intermediate is B·o²·modes floats, which leaves the cache from a few rows on (`served_mode_mix`)."""
    zr = z[..., 0].contiguous().unsqueeze(2)                                         # [B, o_in, 1, *modes]
    zi = z[..., 1].contiguous().unsqueeze(2)
    wr, wi = weight_real.unsqueeze(0), weight_imag.unsqueeze(0)                    # [1, o_in, o_out, *modes]
    real = (zr * wr - zi * wi).sum(1)
    imag = (zr * wi + zi * wr).sum(1)
    return torch.stack([real, imag], dim=-1)


def real_mode_matrices(weight_real: torch.Tensor, weight_imag: torch.Tensor) -> torch.Tensor:
    """Each mode's complex o×o matrix in its real 2o×2o form [[Re, Im], [-Im, Re]], modes first: [M, 2o, 2o]."""
    o = weight_real.shape[0]
    w = torch.cat([torch.cat([weight_real, weight_imag], 1), torch.cat([-weight_imag, weight_real], 1)], 0)
    return w.reshape(2 * o, 2 * o, -1).permute(2, 0, 1).contiguous()


@torch.jit.script
def served_mode_mix(z: torch.Tensor, weight_real: torch.Tensor, weight_imag: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """`broadcast_mode_mix` for up to two rows; from three on, one batched GEMM over the modes with `matrices`
    (`real_mode_matrices`). Scripted, so the traced served step keeps the choice at run time."""
    if z.shape[0] <= 2:
        return broadcast_mode_mix(z, weight_real, weight_imag)
    rows, o = z.shape[0], z.shape[1]
    modes = z.shape[2:-1]
    x = torch.cat([z[..., 0], z[..., 1]], 1).reshape(rows, 2 * o, -1).permute(2, 0, 1).contiguous()  # [M, B, 2o_in]
    y = torch.bmm(x, matrices)                                                                        # [M, B, 2o_out]
    y = y.permute(1, 2, 0).reshape([rows, 2, o] + modes)
    return torch.stack([y[:, 0], y[:, 1]], dim=-1)


def koopman_power(weight_real: torch.Tensor, weight_imag: torch.Tensor, times: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each mode's complex matrix of ``times`` steps z ← z + K z, less the identity, in the weights' [o_in, o_out, *modes]
    layout (computed in float64): one mode mix with it advances a mode's coefficient by all those steps at once."""
    w = torch.complex(weight_real.double(), weight_imag.double())
    dims = w.dim() - 2
    per_mode = w.permute(*range(2, 2 + dims), 1, 0)                       # [*modes, o_out, o_in]
    eye = torch.eye(w.shape[0], dtype=w.dtype)
    power = torch.linalg.matrix_power(eye + per_mode, times) - eye
    layout = power.permute(dims + 1, dims, *range(dims))                  # [o_in, o_out, *modes]
    return layout.real.float().contiguous(), layout.imag.float().contiguous()


def _hermitian_column(y: torch.Tensor) -> torch.Tensor:
    """y: [B, o, nx, 2], a half-spectrum's first column (ky = 0). What an inverse real FFT makes of it, (y_k + conj
    y_-k) / 2: the column of a real field. In 1-D (nx = 1, the mean) the imaginary part dropped."""
    mirrored = torch.roll(torch.flip(y, dims=[2]), shifts=1, dims=2)      # y_{-k}, k modulo nx
    return 0.5 * (y + mirrored * torch.tensor([1.0, -1.0], dtype=y.dtype, device=y.device))


def _corners(x: torch.Tensor, m: int, mix) -> torch.Tensor:
    """x: [B, o, nx, ...] (axis 2 the first 2-D Fourier axis): its lowest ``m`` rows of both signs mixed by ``mix``, the
    rows between them zeros of their dynamic size (so a trace keeps any grid)."""
    return torch.cat([mix(x[:, :, :m]), x[:, :, m:-m] * 0.0, mix(x[:, :, -m:])], dim=2)


class KoopmanOperator(nn.Module):
    r"""One Fourier-space Koopman operator :math:`\mathcal{K}` (Xiong et al., KoopmanLab,
    https://arxiv.org/abs/2301.01104):

    .. math::
        \mathcal{K}(z) = \mathcal{F}^{-1}\big(\,K_k\,\mathcal{F}(z)_k \text{ for } |k_i| < m,\ 0 \text{ otherwise}\big),

    with one complex ``o × o`` matrix :math:`K_k` per retained mode. In 2-D the lowest ``m`` rows of
    both signs of the first axis and the lowest ``m`` columns of the half-spectrum second axis are kept,
    and both corners share the same matrices (as in KoopmanLab, which gives the published 526,026
    parameters of the NS demo).

    Args:
        channels (int): latent width ``o``.
        modes (int): Fourier modes ``m`` kept per axis; the grid needs at least ``2m`` points on the
            first 2-D axis and ``2m - 2`` on the half-spectrum axis.
        dims (int): 1 or 2.

    Shapes:
        - **input / output:** :math:`(B, o, X)` or :math:`(B, o, X, Y)`
    """

    def __init__(self, channels: int, modes: int, dims: int = 2):
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims}")
        self.channels, self.modes, self.dims = channels, modes, dims
        shape = (channels, channels) + (modes,) * dims
        self.weight_real = nn.Parameter(torch.empty(shape))
        self.weight_imag = nn.Parameter(torch.empty(shape))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # KoopmanLab: scale * U(0, 1) with scale = 1 / (o * o), for the real and imaginary parts.
        scale = 1.0 / (self.channels * self.channels)
        nn.init.uniform_(self.weight_real, 0.0, scale)
        nn.init.uniform_(self.weight_imag, 0.0, scale)

    served_matrices: torch.Tensor | None = None
    """Set while the served step is traced (`kno.trace_one_step`): `real_mode_matrices` of the trained weights,
    a constant of the trace, and the mode mixing picks its form by the batch size at run time (`served_mode_mix`)."""

    def serving_matrices(self) -> torch.Tensor:
        return real_mode_matrices(self.weight_real, self.weight_imag)

    def _mix(self, z: torch.Tensor) -> torch.Tensor:
        if self.served_matrices is not None:
            return served_mode_mix(z, self.weight_real, self.weight_imag, self.served_matrices)
        return broadcast_mode_mix(z, self.weight_real, self.weight_imag)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        m = self.modes
        if self.dims == 1:
            n = z.shape[-1]
            z_ft = torch.view_as_real(torch.fft.rfft(z, dim=-1))        # [B, o, n//2+1, 2]
            low = self._mix(z_ft[:, :, :m])
            rest = z_ft[:, :, m:] * 0.0                                  # zeros of the dynamic remaining size
            out = torch.cat([low, rest], dim=2)
            return torch.fft.irfft(torch.view_as_complex(out.contiguous()), n=n, dim=-1)
        nx, ny = z.shape[-2], z.shape[-1]
        z_ft = torch.view_as_real(torch.fft.rfft2(z, dim=(-2, -1)))     # [B, o, nx, ny//2+1, 2]
        cols = _corners(z_ft[:, :, :, :m], m, self._mix)                  # [B, o, nx, m, 2]
        if self.served_matrices is not None:  # irfft2 zero-pads the half-spectrum axis to s itself
            return torch.fft.irfft2(torch.view_as_complex(cols.contiguous()), s=(nx, ny), dim=(-2, -1))
        out = torch.cat([cols, z_ft[:, :, :, m:] * 0.0], dim=3)  # explicit zeros: the ONNX exporter needs them
        return torch.fft.irfft2(torch.view_as_complex(out.contiguous()), s=(nx, ny), dim=(-2, -1))

    def advance(self, z: torch.Tensor, times: int, powers: tuple | None = None) -> torch.Tensor:
        """``z`` after ``times`` steps z ← z + K(z). K is linear and leaves the spectrum outside its modes alone, so
        with ``powers`` (`serving_powers`) the steps are taken at once in Fourier space: one FFT pair instead of
        ``times``, equal to the loop up to float rounding. Only the first column of the half-spectrum (ky = 0) is
        stepped one at a time there, because each inverse real FFT projects it onto the column of a real field."""
        if powers is None:
            for _ in range(times):
                z = z + self(z)
            return z
        power, column = powers
        m = self.modes
        if self.dims == 1:
            z_ft = torch.view_as_real(torch.fft.rfft(z, dim=-1))        # [B, o, n//2+1, 2]
            delta = served_mode_mix(z_ft[:, :, :m], *power)
            first = z_ft[:, :, :1]
        else:
            z_ft = torch.view_as_real(torch.fft.rfft2(z, dim=(-2, -1)))  # [B, o, nx, ny//2+1, 2]
            delta = _corners(z_ft[:, :, :, :m], m, lambda x: served_mode_mix(x, *power))
            first = z_ft[:, :, :, 0]
        def column_mix(x: torch.Tensor) -> torch.Tensor:
            return served_mode_mix(x, *column)

        stepped = first
        for _ in range(times):
            mixed = column_mix(stepped) if self.dims == 1 else _corners(stepped, m, column_mix)
            stepped = stepped + _hermitian_column(mixed)
        if self.dims == 1:
            delta = torch.cat([stepped - first, delta[:, :, 1:]], dim=2)
            return z + torch.fft.irfft(torch.view_as_complex(delta.contiguous()), n=z.shape[-1], dim=-1)
        delta = torch.cat([(stepped - first).unsqueeze(3), delta[:, :, :, 1:]], dim=3)
        return z + torch.fft.irfft2(torch.view_as_complex(delta.contiguous()), s=(z.shape[-2], z.shape[-1]), dim=(-2, -1))

    def serving_powers(self, times: int) -> tuple:
        """The constants of `advance` for ``times`` steps: (the modes' power, the first column's single step), each as
        (real, imaginary, `real_mode_matrices`)."""
        weight_real, weight_imag = self.weight_real.detach(), self.weight_imag.detach()
        power = koopman_power(weight_real, weight_imag, times)
        column = (weight_real[..., :1].contiguous(), weight_imag[..., :1].contiguous()) if self.dims == 1 else \
            (weight_real[..., 0].contiguous(), weight_imag[..., 0].contiguous())
        return (*power, real_mode_matrices(*power)), (*column, real_mode_matrices(*column))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(channels={self.channels}, modes={self.modes}, dims={self.dims})"


class KNO(nn.Module):
    r"""Koopman neural operator (Xiong et al., "Koopman neural operator as a mesh-free solver of
    non-linear partial differential equations", https://arxiv.org/abs/2301.10022; KoopmanLab,
    https://arxiv.org/abs/2301.01104):

    .. math::
        z_0 = \tanh(E\,u_{t-T_{in}+1:t}), \qquad z_{j+1} = z_j + \mathcal{K}(z_j)\ (j < r), \qquad
        \hat u = D\,\tanh(W_0 z_0 + z_r), \qquad \tilde u = D\,z_0,

    where :math:`E` is Linear(T_in → o) and :math:`D` Linear(o → T_in) at every grid point,
    :math:`W_0` a 1×1 convolution and :math:`\mathcal{K}` the :class:`KoopmanOperator`.
    :math:`\hat u` is the window advanced in time; its first ``step`` frames are the prediction
    (the remaining channels are not trained), :math:`\tilde u` the reconstruction of the input window.
    Train with :math:`5\,\mathrm{MSE}(\hat u_{:step}, u_{t+1:t+step}) + 0.5\,\mathrm{MSE}(\tilde u, u_{window})`
    (:func:`kno_loss`).

    Args:
        t_in (int): input window length ``T_in``.
        width (int): latent width ``o`` (32 in the NS demo).
        modes (int): Fourier modes ``m`` (16).
        depth (int): Koopman applications ``r`` (8).
        dims (int): 1 or 2.
        step (int): frames predicted per call (``1 ≤ step ≤ t_in``); rollouts slide the window by ``step``.
        encoder (str): ``"linear"`` (the paper) or ``"cnn"`` (the variant: two 3×3 circular
            convolutions with a GELU between them instead of the pointwise linear map).

    Shapes:
        - **input:** window :math:`(B, T_{in}, X)` or :math:`(B, T_{in}, X, Y)`
        - **output:** (advanced window :math:`\hat u`, reconstruction :math:`\tilde u`), both shaped like the input
    """

    def __init__(self, t_in: int = 10, width: int = 32, modes: int = 16, depth: int = 8, dims: int = 2,
                 step: int = 1, encoder: str = "linear"):
        super().__init__()
        if not 1 <= step <= t_in:
            raise ValueError(f"step must be in [1, t_in={t_in}], got {step}")
        if encoder not in ("linear", "cnn"):
            raise ValueError(f"encoder must be 'linear' or 'cnn', got {encoder!r}")
        self.t_in, self.width, self.modes, self.depth, self.dims, self.step, self.encoder_kind = t_in, width, modes, depth, dims, step, encoder
        conv = _conv(dims)
        if encoder == "linear":
            self.encoder = conv(t_in, width, 1)
        else:
            self.encoder = nn.Sequential(conv(t_in, width, 3, padding=1, padding_mode="circular"), nn.GELU(),
                                         conv(width, width, 3, padding=1, padding_mode="circular"))
        self.decoder = conv(width, t_in, 1)
        self.skip = conv(width, width, 1)  # W_0
        self.koopman = KoopmanOperator(width, modes, dims)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                module.reset_parameters()
        self.koopman.reset_parameters()

    served_matrices: tuple | None = None
    """Set while the served step is traced (`trace_one_step`): the Koopman operator's `serving_powers` for ``depth``
    steps, constants of the trace, so that the served step takes the ``depth`` steps with one FFT pair."""

    def serving_matrices(self) -> tuple:
        return self.koopman.serving_powers(self.depth)

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z0 = torch.tanh(self.encoder(window))
        z = self.koopman.advance(z0, self.depth, self.served_matrices)
        advanced = self.decoder(torch.tanh(self.skip(z0) + z))
        return advanced, self.decoder(z0)

    def predict(self, window: torch.Tensor) -> torch.Tensor:
        """The next ``step`` frames ``[B, step, ...]``."""
        return self(window)[0][:, : self.step]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(t_in={self.t_in}, width={self.width}, modes={self.modes}, depth={self.depth}, "
                f"dims={self.dims}, step={self.step}, encoder={self.encoder_kind!r})")


def kno_loss(model: KNO, window: torch.Tensor, target: torch.Tensor, w_pred: float = 5.0, w_rec: float = 0.5,
             outputs: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """KoopmanLab's loss for one call: 5·MSE(prediction) + 0.5·MSE(reconstruction of the input window).
    ``outputs``: ``model(window)`` when the caller has it already (training also needs the prediction)."""
    advanced, reconstruction = outputs if outputs is not None else model(window)
    pred = advanced[:, : target.shape[1]]
    return w_pred * nn.functional.mse_loss(pred, target) + w_rec * nn.functional.mse_loss(reconstruction, window)


def rollout(model: nn.Module, window: torch.Tensor, frames: int) -> torch.Tensor:
    """Predict ``frames`` snapshots autoregressively: predict ``model.step`` frames, slide the window, repeat.

    Works for any model with ``predict(window) -> [B, step, ...]`` (KNO and the FNO baseline)."""
    out = []
    produced = 0
    while produced < frames:
        new = model.predict(window)
        out.append(new)
        produced += new.shape[1]
        window = torch.cat([window[:, new.shape[1]:], new], dim=1)
    return torch.cat(out, dim=1)[:, :frames]


class OneStep(nn.Module):
    """The served graph: ``WINDOW -> (FRAMES, WINDOW_NEXT)``, one call of ``model.predict``.

    The server feeds ``WINDOW_NEXT`` back as ``WINDOW`` (rollout_state), so a stream of STEPS calls is
    exactly :func:`rollout`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.model.predict(window)
        return frames, torch.cat([window[:, frames.shape[1]:], frames], dim=1)


def trace_one_step(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """``OneStep(model)`` traced once on ``example``'s device, the `serving_matrices()` of each module that has them
    (the FNO's spectral layers; the KNO: its Koopman steps' powers) held as constants of the trace: what the server
    runs (models/koopman/export.py)."""
    operators = [m for m in model.modules() if hasattr(m, "serving_matrices")]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        for operator in operators:
            operator.served_matrices = operator.serving_matrices()
        try:
            return torch.jit.trace(OneStep(model).eval(), (example,), check_trace=False)
        finally:
            for operator in operators:
                operator.served_matrices = None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

