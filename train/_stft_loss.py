"""Fused multi-resolution STFT distance with a hand-written gradient.

:func:`train.metrics.mrstft` is the largest part of a training step; built from
``torch.stft`` and autograd it spent most of its time in elementwise passes over the
interleaved complex spectra and in the autograd of ``as_strided`` / c2c FFTs. This
module computes the same values in a few fused passes and the gradient with respect
to ``pred`` in the forward itself (the loss is a per-item scalar, so the backward is a
per-item scale of that saved gradient).

Definition, per item and FFT size ``N`` (hop ``N // 4``, periodic Hann window, frames
centred: the signal is padded with ``N // 2`` zeros on both sides as ``torch.stft``
does with ``center=True, pad_mode="constant"``; inputs shorter than ``N`` are first
zero-padded at the end to ``N``)::

    P = sqrt(re^2 + im^2 + 1e-14)              (pred magnitude, every bin and frame)
    T = the same for target
    sc     = ||T - P||_F / max(||T||_F, 1e-7)
    logmag = mean |log T - log P|
    loss   = mean over N of (sc_weight * sc + logmag_weight * logmag)

Gradient. With g = d loss / d P (elementwise)::

    g = sc_weight (P - T) / (||T - P|| max(||T||, 1e-7)) + logmag_weight sgn(P - T) / (P M)

(M = bins * frames * channels; the first term is 0 when ||T - P|| = 0, as autograd's
norm gives). d P / d (re, im) = (re, im) / P, so the gradient reaching the complex bin
Z is ``G = (g / P) Z``. The adjoint of the onesided rfft X[k] = sum_n x[n] e^{-2 pi i k n / N}
is dL/dx[n] = Re sum_k G[k] e^{2 pi i k n / N}, which is ``N * irfft(w G)`` with w = 1 at
DC and (for even N) Nyquist and 1/2 elsewhere (irfft counts every interior bin twice
and ignores the imaginary parts at DC and Nyquist, where sin vanishes). Then times the
window, overlap-added back onto the padded signal, and the padding dropped.

The target is a constant: it gets no gradient (``mrstft`` falls back to plain autograd
when it requires one). Float64 inputs are computed in float64, everything else in
float32. CPU runs the elementwise passes, framing and overlap-add in numba
(``train/_stft_kernels.py``, imported on first use); other devices use plain torch ops.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import torch

_EPS = 1e-7
_EPS2 = _EPS * _EPS


@functools.lru_cache(maxsize=32)
def _hann(n_fft: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(n_fft, device=device, dtype=dtype)


@functools.lru_cache(maxsize=32)
def _bin_weight(n_fft: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """rfft adjoint weights, times N: N at DC (and Nyquist for even N), N / 2 elsewhere."""
    w = torch.full((n_fft // 2 + 1,), n_fft / 2.0, dtype=dtype, device=device)
    w[0] = n_fft
    if n_fft % 2 == 0:
        w[-1] = n_fft
    return w


def _kernels():
    from train import _stft_kernels

    return _stft_kernels


@contextlib.contextmanager
def _numba_threads_like_torch():
    """Run the kernels on as many threads as torch uses (numba's own default is every
    core; a trainer set to one torch thread next to a data worker would oversubscribe).
    numba's setting is per calling thread, so this is restored on the way out."""
    import numba

    saved = numba.get_num_threads()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(saved)


def _np_scalar(value: float, dtype: torch.dtype):
    import numpy as np

    return np.float64(value) if dtype == torch.float64 else np.float32(value)


def _use_numba(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and _NUMBA_ON_CPU


_NUMBA_ON_CPU = True  # tests switch it off to exercise the pure-torch path on CPU


def _geometry(n_samples: int, n_fft: int, hop: int) -> tuple[int, int, int]:
    """(valid samples, frames, centre pad) as torch.stft(center=True) after the
    short-input zero padding to one window."""
    n_valid = max(n_samples, n_fft)
    pad = n_fft // 2
    n_frames = 1 + (n_valid + 2 * pad - n_fft) // hop
    return n_valid, n_frames, pad


def _workspace(rows: int, n_samples: int, fft_sizes: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """One flat CPU buffer, reused at every FFT size of a call for the frames of pred,
    then of target, then the magnitude ratios: a fresh 30 MB tensor costs about as much
    in page faults as the pass that fills it. (The FFTs allocate their own outputs:
    their ``out=`` variants compute into a temporary and copy, which is slower.)"""
    size = 0
    for n_fft in fft_sizes:
        _, n_frames, _ = _geometry(n_samples, n_fft, n_fft // 4)
        size = max(size, rows * n_frames * n_fft, rows * n_frames * (n_fft // 2 + 1))
    return torch.empty(size, dtype=dtype)


def _resolution_numba(
    p: torch.Tensor,
    t: torch.Tensor,
    batch: int,
    n_fft: int,
    coefs: tuple[float, float, float],
    grad: torch.Tensor | None,
    work: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """CPU version of :func:`_resolution_torch`: framing, the elementwise passes and the
    overlap-add in numba kernels, frames and ratios in ``work`` (see :func:`_workspace`)."""
    k = _kernels()
    rows, n = p.shape
    hop = n_fft // 4
    _, n_frames, pad = _geometry(n, n_fft, hop)
    n_bins = n_fft // 2 + 1
    window = _hann(n_fft, "cpu", p.dtype)
    eps2 = _np_scalar(_EPS2, p.dtype)
    frames = work[: rows * n_frames * n_fft].view(rows, n_frames, n_fft)
    k.frame_window(p.numpy(), n, window.numpy(), hop, pad, frames.numpy())
    zp = torch.fft.rfft(frames, dim=-1)
    k.frame_window(t.numpy(), n, window.numpy(), hop, pad, frames.numpy())
    zt = torch.fft.rfft(frames, dim=-1)
    zp_f = torch.view_as_real(zp).view(rows, n_frames, 2 * n_bins)
    zt_f = torch.view_as_real(zt).view(rows, n_frames, 2 * n_bins)
    ratio = work[: rows * n_frames * n_bins].view(rows, -1)
    sums = torch.empty(rows, 2, dtype=torch.float64)
    k.magnitude_stats(zp_f.view(rows, -1).numpy(), zt_f.view(rows, -1).numpy(), eps2, ratio.numpy(), sums.numpy())
    sums = sums.view(batch, -1, 2).sum(1)
    logsum = ratio.log_().view(batch, -1).sum(1).double()
    dd, tt = sums[:, 0].sqrt(), sums[:, 1].sqrt().clamp_min(_EPS)
    if grad is not None:
        count = rows // batch * n_frames * n_bins
        sc_coef, norm, log_coef = _grad_coefs(dd, tt, coefs, count, rows // batch, p.dtype)
        k.spectrum_gradient(
            zp_f.numpy(), zt_f.numpy(), eps2, sc_coef.numpy(), norm.numpy(), log_coef.numpy(),
            _bin_weight(n_fft, "cpu", p.dtype).numpy(),
        )
        del zt, zt_f  # frees 30 MB before the irfft allocates
        frames_grad = torch.fft.irfft(zp, n=n_fft, dim=-1)
        k.overlap_add(frames_grad.numpy(), window.numpy(), hop, pad, grad.numpy())
    return dd, tt, logsum, rows // batch * n_frames * n_bins


def _grad_coefs(
    dd: torch.Tensor, tt: torch.Tensor, coefs: tuple[float, float, float], count: int, per_item: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row factors of d loss / d P = sc_coef (P - T) / norm + log_coef sgn(P - T) / P.

    The sc part is applied as the unit vector (P - T) / ||T - P|| times sc_coef =
    weight / max(||T||, 1e-7), so no factor grows without bound. Where ||T - P|| = 0
    the part is 0 (as autograd's norm gives) and norm is 1."""
    sc_weight, logmag_weight, scale = coefs
    zero = dd == 0
    sc_coef = torch.where(zero, torch.zeros_like(tt), sc_weight * scale / tt)
    norm = torch.where(zero, torch.ones_like(dd), dd)
    log_coef = torch.full_like(dd, logmag_weight * scale / count)
    return tuple(v.repeat_interleave(per_item).to(dtype) for v in (sc_coef, norm, log_coef))


def _frames_torch(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Windowed frames (rows, frames, n_fft) of x (rows, samples)."""
    n = x.shape[-1]
    n_valid, _, pad = _geometry(n, n_fft, hop)
    xp = torch.nn.functional.pad(x, (pad, pad + n_valid - n))
    return xp.unfold(-1, n_fft, hop) * window


def _overlap_add_torch(g: torch.Tensor, window: torch.Tensor, hop: int, out: torch.Tensor) -> None:
    """out (rows, samples) += adjoint of :func:`_frames_torch` applied to g (rows, frames, n_fft)."""
    rows, n_frames, n_fft = g.shape
    pad = n_fft // 2
    g = g * window
    length = (n_frames - 1) * hop + n_fft
    if n_fft % hop == 0:
        q = n_fft // hop
        acc = g.new_zeros(rows, n_frames + q - 1, hop)
        gv = g.view(rows, n_frames, q, hop)
        for j in range(q):
            acc[:, j: j + n_frames] += gv[:, :, j]
        full = acc.view(rows, length)
    else:
        full = torch.nn.functional.fold(g.transpose(1, 2), (1, length), (1, n_fft), stride=(1, hop)).view(rows, length)
    seg = full[:, pad: pad + out.shape[1]]
    out[:, : seg.shape[1]] += seg


def _magnitude(z: torch.Tensor) -> torch.Tensor:
    r = torch.view_as_real(z)
    return torch.addcmul(r[..., 0] * r[..., 0], r[..., 1], r[..., 1]).add_(_EPS2).sqrt_()


def _resolution_torch(
    p: torch.Tensor,
    t: torch.Tensor,
    batch: int,
    n_fft: int,
    coefs: tuple[float, float, float],
    grad: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """One FFT size: per item ||T - P||, max(||T||, eps), sum |log T - log P| and the bin
    count; when grad (rows, samples) is given, adds the gradient of
    ``scale * (sc_weight * sc + logmag_weight * logmag)`` with respect to p to it."""
    rows = p.shape[0]
    hop = n_fft // 4
    window = _hann(n_fft, str(p.device), p.dtype)
    zp = torch.fft.rfft(_frames_torch(p, n_fft, hop, window), dim=-1)
    zt = torch.fft.rfft(_frames_torch(t, n_fft, hop, window), dim=-1)
    mp = _magnitude(zp)
    mt = _magnitude(zt)
    dd = torch.linalg.vector_norm((mt - mp).view(batch, -1), dim=1)
    tt = torch.linalg.vector_norm(mt.view(batch, -1), dim=1).clamp_min(_EPS)
    logsum = (torch.log(mt) - torch.log(mp)).abs_().view(batch, -1).sum(1)
    count = mp[0].numel() * (rows // batch)
    if grad is not None:
        coef = _grad_coefs(dd, tt, coefs, count, rows // batch, p.dtype)
        sc_coef, norm, log_coef = (v.view(rows, 1, 1) for v in coef)
        d = mp - mt
        s = (sc_coef * (d / norm) + log_coef * torch.sign(d) / mp) / mp
        frames_grad = torch.fft.irfft(zp * (s * _bin_weight(n_fft, str(p.device), p.dtype)), n=n_fft, dim=-1)
        _overlap_add_torch(frames_grad, window, hop, grad)
    return dd, tt, logsum, count


class _MRSTFTDistance(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pred, target, fft_sizes, sc_weight, logmag_weight, need_grad):
        dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
        b, c, n = pred.shape
        p = pred.detach().reshape(b * c, n).to(dtype).contiguous()
        t = target.detach().reshape(b * c, n).to(dtype).contiguous()
        grad = torch.zeros_like(p) if need_grad else None
        total = torch.zeros(b, dtype=torch.float64, device=p.device)
        coefs = (sc_weight, logmag_weight, 1.0 / len(fft_sizes))
        numba = _use_numba(p)
        work = _workspace(b * c, n, fft_sizes, dtype) if numba else None
        with _numba_threads_like_torch() if numba else contextlib.nullcontext():
            for n_fft in fft_sizes:
                if work is not None:
                    dd, tt, logsum, count = _resolution_numba(p, t, b, n_fft, coefs, grad, work)
                else:
                    dd, tt, logsum, count = _resolution_torch(p, t, b, n_fft, coefs, grad)
                total += (sc_weight * (dd / tt) + logmag_weight * (logsum / count)).double()
        total *= coefs[2]
        if grad is not None:
            ctx.save_for_backward(grad.view(b, c, n).to(pred.dtype))
        return total.to(dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        if not ctx.saved_tensors:
            return None, None, None, None, None, None
        (grad,) = ctx.saved_tensors
        return grad * g.to(grad.dtype).view(-1, 1, 1), None, None, None, None, None


def mrstft_distance(
    pred: torch.Tensor,
    target: torch.Tensor,
    fft_sizes: Sequence[int],
    sc_weight: float = 1.0,
    logmag_weight: float = 1.0,
) -> torch.Tensor:
    """Per-item MRSTFT distance (batch,) of (batch, channels, samples) inputs, as defined
    in the module docstring; differentiable with respect to ``pred`` only."""
    if min(fft_sizes) < 4:
        raise ValueError(f"FFT sizes must be at least 4 (hop = size // 4), got {tuple(fft_sizes)}")
    need_grad = torch.is_grad_enabled() and pred.requires_grad
    return _MRSTFTDistance.apply(
        pred, target, tuple(int(n) for n in fft_sizes), float(sc_weight), float(logmag_weight), need_grad
    )
