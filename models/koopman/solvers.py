r"""Batched pseudo-spectral solvers for the data the Koopman models learn from (METHODS.md §5).

Both solvers use the FNO-data scheme: Crank–Nicolson for diffusion, an explicit Heun
(predictor–corrector, second order) step for advection and forcing, and the 2/3 rule on the
nonlinear term. Everything is a batched torch computation in float64, so one call advances
hundreds of trajectories at once on a CPU.

Conventions (METHODS.md §5): the domain is the periodic unit interval / unit torus; array axis 0
of a field is x and axis 1 is y (after the leading batch axis); vorticity is :math:`w = v_x - u_y`
with stream function :math:`-\Delta\psi = w`, :math:`u = \psi_y`, :math:`v = -\psi_x`.
"""
import math

import torch

FORCING_AMPLITUDE = 0.1


def _wavenumbers(n: int, device=None) -> torch.Tensor:
    return torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)  # 0, 1, ..., -1


def _rwavenumbers(n: int, device=None) -> torch.Tensor:
    return torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)


def grid(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float64) / n


# ----------------------------------------------------------------------------------------------- 1-D

def burgers_initial(batch: int, n: int, generator: torch.Generator | None = None, sigma: float = 25.0, tau: float = 5.0) -> torch.Tensor:
    r"""Gaussian random field :math:`u_0 \sim N(0, 625(-\Delta + 25 I)^{-2})` on the periodic unit interval.

    Each mode :math:`k \neq 0` gets a complex normal coefficient with standard deviation
    :math:`\sigma (4\pi^2 k^2 + \tau^2)^{-1}` (the FNO GRF convention, same as the 2-D one below), the
    field is the real part of the inverse FFT scaled by :math:`n`. Returns float64 ``[batch, n]``.
    """
    k = _wavenumbers(n)
    std = sigma * (4 * math.pi**2 * k**2 + tau**2) ** -1.0
    std[0] = 0.0
    coeff = torch.complex(torch.randn(batch, n, dtype=torch.float64, generator=generator),
                          torch.randn(batch, n, dtype=torch.float64, generator=generator)) * std
    return torch.fft.ifft(coeff, dim=-1).real * n


def burgers_solve(u0: torch.Tensor, nu: float, t_end: float, dt: float, record_every: float | None = None) -> torch.Tensor:
    r"""Solve :math:`u_t + (u^2/2)_x = \nu u_{xx}` on the periodic unit interval.

    Args:
        u0: initial states ``[B, n]``.
        nu: viscosity.
        t_end: final time.
        dt: time step (the last step before each snapshot is not shortened: snapshot times must be
            multiples of ``dt``, which is checked).
        record_every: snapshot spacing; ``None`` records only the final state.

    Returns:
        ``[B, S, n]`` snapshots at ``record_every, 2·record_every, …, t_end`` (float64), or ``[B, n]``.
    """
    n = u0.shape[-1]
    k = _rwavenumbers(n, u0.device)
    ik = 2j * math.pi * k
    lap = -(2 * math.pi * k) ** 2
    dealias = (k <= n / 3).to(torch.float64)  # 2/3 rule on the quadratic term
    lhs = 1.0 - 0.5 * dt * nu * lap
    rhs = 1.0 + 0.5 * dt * nu * lap

    def advection(u_h):
        u = torch.fft.irfft(u_h, n=n, dim=-1)
        return -0.5 * ik * torch.fft.rfft(u * u, dim=-1) * dealias

    u_h = torch.fft.rfft(u0.to(torch.float64), dim=-1)
    every = _steps(record_every or t_end, dt)
    total = _steps(t_end, dt)
    frames = []
    for step in range(1, total + 1):
        f0 = advection(u_h)
        tilde = (rhs * u_h + dt * f0) / lhs
        u_h = (rhs * u_h + 0.5 * dt * (f0 + advection(tilde))) / lhs
        if record_every is not None and step % every == 0:
            frames.append(torch.fft.irfft(u_h, n=n, dim=-1))
    if record_every is None:
        return torch.fft.irfft(u_h, n=n, dim=-1)
    return torch.stack(frames, dim=1)


def burgers_cole_hopf(x: torch.Tensor, t: float, nu: float, a: float = 2.0, b: float = 1.0) -> torch.Tensor:
    r"""Exact periodic Burgers solution via Cole–Hopf: :math:`u = -2\nu\,\phi_x/\phi` with
    :math:`\phi = a + b\,e^{-4\pi^2\nu t}\cos 2\pi x` (a heat-equation solution, :math:`a > b > 0`)."""
    decay = b * math.exp(-4 * math.pi**2 * nu * t)
    return 4 * math.pi * nu * decay * torch.sin(2 * math.pi * x) / (a + decay * torch.cos(2 * math.pi * x))


# ----------------------------------------------------------------------------------------------- 2-D

def ns_initial(batch: int, n: int, generator: torch.Generator | None = None, alpha: float = 2.5, tau: float = 7.0) -> torch.Tensor:
    r"""Gaussian random field :math:`w_0 \sim N(0, 7^{3/2}(-\Delta + 49 I)^{-2.5})` on the unit torus.

    FNO generator convention (METHODS.md §5): each mode :math:`k \neq 0` gets a complex normal
    coefficient with standard deviation :math:`\sqrt2\,\tau^{1.5}(4\pi^2|k|^2 + \tau^2)^{-\alpha/2}`;
    the field is the real part of the inverse FFT scaled by :math:`n^2` (pointwise RMS ≈ 0.21).
    Returns float64 ``[batch, n, n]`` (axis 1 = x, axis 2 = y).
    """
    k = _wavenumbers(n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    std = math.sqrt(2) * tau**1.5 * (4 * math.pi**2 * k2 + tau**2) ** (-alpha / 2)
    std[0, 0] = 0.0
    coeff = torch.complex(torch.randn(batch, n, n, dtype=torch.float64, generator=generator),
                          torch.randn(batch, n, n, dtype=torch.float64, generator=generator)) * std
    return torch.fft.ifft2(coeff).real * n**2


def fno_forcing(n: int) -> torch.Tensor:
    r""":math:`f(x, y) = 0.1(\sin 2\pi(x+y) + \cos 2\pi(x+y))` on an ``n × n`` grid, float64."""
    x = grid(n)
    s = 2 * math.pi * (x[:, None] + x[None, :])
    return FORCING_AMPLITUDE * (torch.sin(s) + torch.cos(s))


class _Spectral2D:
    """Wavenumber tables for an n × n torus, rfft2 layout (axis 0 full, axis 1 half)."""

    def __init__(self, n: int, device=None):
        self.n = n
        kx = _wavenumbers(n, device)[:, None]
        ky = _rwavenumbers(n, device)[None, :]
        self.ikx, self.iky = 2j * math.pi * kx, 2j * math.pi * ky
        self.lap = -4 * math.pi**2 * (kx**2 + ky**2)  # symbol of Δ
        inv = self.lap.clone()
        inv[0, 0] = 1.0
        self.inv_lap = 1.0 / inv
        self.inv_lap[0, 0] = 0.0
        self.dealias = ((kx.abs() <= n / 3) & (ky <= n / 3)).to(torch.float64)

    def irfft(self, f_h):
        return torch.fft.irfft2(f_h, s=(self.n, self.n))

    def advection(self, w_h: torch.Tensor) -> torch.Tensor:
        r"""Fourier coefficients of :math:`-(u w_x + v w_y)`, dealiased."""
        psi_h = -w_h * self.inv_lap  # -Δψ = w
        u = self.irfft(self.iky * psi_h)
        v = self.irfft(-self.ikx * psi_h)
        wx = self.irfft(self.ikx * w_h)
        wy = self.irfft(self.iky * w_h)
        return -torch.fft.rfft2(u * wx + v * wy) * self.dealias


def ns_solve(w0: torch.Tensor, nu: float, t_end: float, dt: float, record_every: float | None = None,
             forcing: torch.Tensor | None = None) -> torch.Tensor:
    r"""Solve :math:`w_t + u\cdot\nabla w = \nu\Delta w + f` on the unit torus.

    Args:
        w0: initial vorticity ``[B, n, n]``.
        nu: viscosity.
        t_end: final time.
        dt: time step; snapshot times must be multiples of it.
        record_every: snapshot spacing (1.0 in the FNO protocol); ``None`` returns only the final state.
        forcing: ``[n, n]`` forcing; ``None`` means the FNO forcing :func:`fno_forcing`. Pass zeros for unforced flow.

    Returns:
        ``[B, S, n, n]`` snapshots at ``record_every, 2·record_every, …, t_end``, or ``[B, n, n]``.
    """
    n = w0.shape[-1]
    sp = _Spectral2D(n, w0.device)
    f = fno_forcing(n) if forcing is None else forcing.to(torch.float64)
    f_h = torch.fft.rfft2(f.to(w0.device))
    lhs = 1.0 - 0.5 * dt * nu * sp.lap
    rhs = 1.0 + 0.5 * dt * nu * sp.lap
    w_h = torch.fft.rfft2(w0.to(torch.float64))
    every = _steps(record_every or t_end, dt)
    total = _steps(t_end, dt)
    frames = []
    for step in range(1, total + 1):
        a0 = sp.advection(w_h)
        tilde = (rhs * w_h + dt * (a0 + f_h)) / lhs
        w_h = (rhs * w_h + dt * (0.5 * (a0 + sp.advection(tilde)) + f_h)) / lhs
        if record_every is not None and step % every == 0:
            frames.append(sp.irfft(w_h))
    if record_every is None:
        return sp.irfft(w_h)
    return torch.stack(frames, dim=1)


def ns_velocity(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Velocity (u, v) of a vorticity field ``[..., n, n]``."""
    sp = _Spectral2D(w.shape[-1], w.device)
    psi_h = -torch.fft.rfft2(w.to(torch.float64)) * sp.inv_lap
    return sp.irfft(sp.iky * psi_h), sp.irfft(-sp.ikx * psi_h)


def ns_energy(w: torch.Tensor) -> torch.Tensor:
    r"""Kinetic energy :math:`\tfrac12\langle u^2 + v^2\rangle` per field."""
    u, v = ns_velocity(w)
    return 0.5 * (u**2 + v**2).mean(dim=(-2, -1))


def subsample(f: torch.Tensor, n: int, dims: int) -> torch.Tensor:
    """Pointwise subsampling of the last ``dims`` axes from m to n points (m a multiple of n), as the
    FNO data are downsampled (every (m/n)-th grid point)."""
    m = f.shape[-1]
    if m % n:
        raise ValueError(f"cannot subsample {m} points to {n}: {m} is not a multiple of {n}")
    s = m // n
    return f[..., ::s] if dims == 1 else f[..., ::s, ::s]


def _steps(duration: float, dt: float) -> int:
    steps = round(duration / dt)
    if abs(steps * dt - duration) > 1e-9 * max(1.0, duration):
        raise ValueError(f"duration {duration} is not a whole number of steps of dt={dt}")
    return steps
