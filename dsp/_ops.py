"""Autograd operators around the compiled recursions.

Each operator takes rows ``(rows, samples)`` plus per-row coefficients and picks
the CPU (numba) or CUDA (numba.cuda) kernel by the input's device. Their backward
passes are the hand-written adjoints in the kernel modules, so no per-sample Python
loop runs in either direction.
"""

from __future__ import annotations


import numpy as np
import torch



def _cpu():
    from dsp import _cpu_kernels

    return _cpu_kernels


def _cuda():
    try:
        from dsp import _cuda_kernels
    except Exception as exc:  # pragma: no cover - depends on the CUDA toolchain
        raise RuntimeError(
            "CUDA kernels need numba-cuda (pip install 'automaster[cuda]'): " + str(exc)
        ) from exc
    return _cuda_kernels


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _call(kernel: str, *tensors: torch.Tensor) -> None:
    """Run kernel ``kernel`` of the CPU or CUDA module on ``tensors`` (by the first one's device)."""
    if tensors[0].is_cuda:
        getattr(_cuda(), kernel)(*tensors)
    else:
        getattr(_cpu(), kernel)(*(_np(t) for t in tensors))


class _RowRecursion(torch.autograd.Function):
    """y = kernel(x, coef) row by row, with the kernel's hand-written adjoint.

    x: (rows, samples); coef: (rows, k), run in float64. Subclasses name the kernels.
    """

    forward_kernel = ""
    backward_kernel = ""

    @classmethod
    def forward(cls, ctx, x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        c = coef.detach().to(torch.float64).contiguous()
        y = torch.empty_like(x)
        _call(cls.forward_kernel, x, c, y)
        ctx.save_for_backward(x, y, c)
        ctx.coef_dtype = coef.dtype
        return y

    @classmethod
    def backward(cls, ctx, g: torch.Tensor):
        x, y, c = ctx.saved_tensors
        dx = torch.empty_like(x)
        dc = torch.empty_like(c)
        _call(cls.backward_kernel, x, y, c, g.contiguous(), dx, dc)
        return dx, dc.to(ctx.coef_dtype)


class _Biquad(_RowRecursion):
    forward_kernel, backward_kernel = "biquad_forward", "biquad_backward"


class _Smoother(_RowRecursion):
    forward_kernel, backward_kernel = "smoother_forward", "smoother_backward"


def biquad_rows(x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Filter each row of ``x`` (rows, samples) with its biquad ``coef`` (rows, 5).

    ``coef`` holds b0, b1, b2, a1, a2 normalised by a0. Differentiable in both.
    """
    return _Biquad.apply(x, coef)


def smooth_rows(x: torch.Tensor, alpha_rise: torch.Tensor, alpha_fall: torch.Tensor) -> torch.Tensor:
    """Branching one-pole smoothing of each row of ``x`` (rows, samples).

    ``alpha_rise`` / ``alpha_fall`` (rows,) are the pole radii used while the input
    is above / below the smoothed state (e.g. release / attack for a gain in dB).
    Differentiable in ``x`` and both coefficients.
    """
    alpha = torch.stack([alpha_rise, alpha_fall], dim=-1)
    return _Smoother.apply(x, alpha)


class _SlidingMinCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, window: int) -> torch.Tensor:
        x = x.contiguous()
        y = torch.empty_like(x)
        want = bool(ctx.needs_input_grad[0])
        idx = torch.empty(x.shape if want else (1, 1), dtype=torch.int64)
        _cpu().sliding_min_forward(_np(x), int(window), _np(y), idx.numpy(), want)
        ctx.save_for_backward(idx)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (idx,) = ctx.saved_tensors
        dx = torch.zeros_like(g).scatter_add_(1, idx, g.contiguous())
        return dx, None


def _sliding_min_doubling(x: torch.Tensor, window: int) -> torch.Tensor:
    """Look-ahead running minimum by log-doubling, in plain torch ops (any device)."""
    n = x.shape[-1]
    big = torch.finfo(x.dtype).max

    def shift(v: torch.Tensor, s: int) -> torch.Tensor:
        if s >= n:
            return torch.full_like(v, big)
        return torch.nn.functional.pad(v[:, s:], (0, s), value=big)

    result = None
    offset = 0
    block = x  # block[n] = min(x[n .. n + size - 1])
    size = 1
    remaining = window
    while remaining > 0:
        if remaining & 1:
            shifted = shift(block, offset)
            result = shifted if result is None else torch.minimum(result, shifted)
            offset += size
        remaining >>= 1
        if remaining:
            block = torch.minimum(block, shift(block, size))
            size *= 2
    return result


def sliding_max_rows(x: torch.Tensor, window: int) -> torch.Tensor:
    """Maximum of each row over the look-ahead window [n, n + window - 1]; see sliding_min_rows."""
    return -sliding_min_rows(-x, window)


def limiter_pass(hold: torch.Tensor, scale: torch.Tensor, ceiling: torch.Tensor, alpha: torch.Tensor, window: int,
                 power: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused, inference-only limiter gain (batch, samples) and the 100 ms energies
    (batch, samples // step) of ``power`` under the total gain ``scale * gain``."""
    b, n = hold.shape
    gain = torch.empty_like(hold)
    energy = torch.zeros(b, n // step, dtype=torch.float64)
    f64 = lambda t: _np(t.detach().to(torch.float64).contiguous())  # noqa: E731
    _cpu().limiter_pass_forward(_np(hold.detach().contiguous()), f64(scale), f64(ceiling), f64(alpha), int(window),
                                _np(power.detach().contiguous()), int(step), _np(gain), energy.numpy())
    return gain, energy.to(hold.dtype)


def sliding_min_rows(x: torch.Tensor, window: int) -> torch.Tensor:
    """Minimum of each row over the look-ahead window [n, n + window - 1].

    x: (rows, samples). The window is clipped at the end. Differentiable in ``x``
    (the gradient goes to the sample that holds the minimum).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1 sample, got {window}")
    if x.is_cuda:
        return _sliding_min_doubling(x, window)
    return _SlidingMinCPU.apply(x, window)


class _TruePeakEnvelopeCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, floor: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        b, c, n = x.shape
        env = torch.empty(b, n, dtype=x.dtype)
        code = torch.empty(b, n, dtype=torch.int32)
        fl = floor.detach().to(torch.float64).contiguous()
        _cpu().true_peak_envelope_forward(_np(x), _np(taps), _np(fl), _np(env), code.numpy())
        ctx.save_for_backward(code, taps)
        ctx.channels = c
        return env

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        code, taps = ctx.saved_tensors
        b, n = code.shape
        dx = torch.zeros(b, ctx.channels, n, dtype=g.dtype)
        _cpu().true_peak_envelope_backward(_np(g.contiguous()), code.numpy(), _np(taps.to(g.dtype)), ctx.channels, _np(dx))
        return dx, None, None


def true_peak_envelope_linked(x: torch.Tensor, taps: torch.Tensor, floor: torch.Tensor | None = None) -> torch.Tensor:
    """Largest |value| of the 4x-oversampled signal over [n-1, n+1), linked across
    channels: x (batch, channels, samples) -> (batch, samples).

    Where no in-between value can reach ``floor`` (batch,), the CPU kernel keeps the
    sample peaks (a lower bound) to save time; pass None for the exact envelope.
    ``taps`` (3, K) are the interpolator phases. Differentiable in ``x``.
    """
    if floor is None:
        floor = torch.zeros(x.shape[0], dtype=torch.float64)
    if x.is_cuda:
        from dsp.truepeak import peak_envelope

        env = peak_envelope(x).amax(dim=1)
        return torch.maximum(env, torch.nn.functional.pad(env[:, :-1], (1, 0)))
    return _TruePeakEnvelopeCPU.apply(x, floor.cpu(), taps.to(x.dtype).contiguous())


class _BiquadCascadeCPU(torch.autograd.Function):
    """Sections in series in one fused forward pass that keeps each section's output;
    the backward runs the sections' adjoints in reverse order."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        c = coef.detach().to(torch.float64).contiguous()
        ys = torch.empty((c.shape[1],) + tuple(x.shape), dtype=x.dtype)
        y = torch.empty_like(x)
        _cpu().biquad_cascade_forward(_np(x), _np(c), _np(y), ys.numpy(), True)
        ctx.save_for_backward(x, ys, c)
        ctx.coef_dtype = coef.dtype
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, ys, c = ctx.saved_tensors
        dc = torch.empty_like(c)
        g = g.contiguous()
        for k in range(c.shape[1] - 1, -1, -1):
            xin = ys[k - 1] if k > 0 else x
            dx = torch.empty_like(xin)
            dck = torch.empty(c.shape[0], 5, dtype=torch.float64)
            _cpu().biquad_backward(_np(xin), _np(ys[k]), _np(c[:, k].contiguous()), _np(g), _np(dx), dck.numpy())
            dc[:, k] = dck
            g = dx
        return g, dc.to(ctx.coef_dtype)


def biquad_cascade_rows(x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Biquads in series: x (rows, samples), coef (rows, sections, 5) -> (rows, samples).

    On CPU one fused pass (keeping section outputs only when autograd needs them); on
    CUDA one differentiable kernel per section.
    """
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or coef.requires_grad)
    if x.is_cuda:
        for k in range(coef.shape[1]):
            x = biquad_rows(x, coef[:, k])
        return x
    if needs_grad:
        return _BiquadCascadeCPU.apply(x, coef)
    x = x.contiguous()
    y = torch.empty_like(x)
    _cpu().biquad_cascade_forward(_np(x), _np(coef.detach().to(torch.float64).contiguous()), _np(y),
                                  np.empty((1, 1, 1), dtype=_np(x).dtype), False)
    return y


class _MovingAverageCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, window: int) -> torch.Tensor:
        x = x.contiguous()
        y = torch.empty_like(x)
        _cpu().moving_average_forward(_np(x), int(window), _np(y))
        ctx.window = int(window)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        dx = torch.empty_like(g, memory_format=torch.contiguous_format)
        _cpu().moving_average_backward(_np(g.contiguous()), ctx.window, _np(dx))
        return dx, None


def moving_average_rows(x: torch.Tensor, window: int) -> torch.Tensor:
    """Trailing moving average of each row of x (rows, samples) over ``window`` samples,
    with the first sample replicated before the start. Differentiable."""
    if window < 1:
        raise ValueError(f"window must be >= 1 sample, got {window}")
    if x.is_cuda:
        padded = torch.nn.functional.pad(x[:, None, :], (window - 1, 0), mode="replicate")
        return torch.nn.functional.avg_pool1d(padded, window, stride=1)[:, 0, :]
    return _MovingAverageCPU.apply(x, window)


def gain_and_loudness_energy(y: torch.Tensor, gain: torch.Tensor, kcoef: torch.Tensor, step: int
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference only: (y * gain, 100 ms K-weighted energies summed over channels).

    y: (batch, channels, samples); gain: (batch, samples); kcoef: (2, 5) K-weighting
    sections -> out (batch, channels, samples), energy (batch, samples // step).
    """
    b, c, n = y.shape
    out = torch.empty_like(y)
    energy = torch.zeros(b, c, n // step, dtype=torch.float64)
    _cpu().gain_and_kweight_forward(_np(y.contiguous()), _np(gain.detach().contiguous()),
                                    _np(kcoef.to(torch.float64).contiguous()), int(step), _np(out), energy.numpy())
    return out, energy.sum(dim=1).to(y.dtype)
