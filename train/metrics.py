"""Audio-quality metrics shared by validation (train/loop.py) and bench/quality.py.

Every metric compares a processed signal with its reference, item by item, and
returns a ``(batch,)`` float32 tensor (lower is better):

==================  =====  =====================================================
name                unit   definition
==================  =====  =====================================================
mrstft              --     multi-resolution STFT distance: spectral convergence
                           + mean |log magnitude| difference, averaged over FFT
                           sizes 512 / 1024 / 2048 (hop = size / 4, Hann)
mel                 dB     mean |10 log10 mel power| difference, 2048-point FFT,
                           hop 512, 64 mel bands 20 Hz .. min(16 kHz, Nyquist)
centroid            Hz     |spectral centroid difference| of the long-term
                           average power spectrum (channels summed)
crest               dB     |crest factor difference|, crest = sample peak / RMS
rms                 dB     |RMS level difference| (all channels together)
lufs                LU     |integrated loudness difference| (BS.1770-4,
                           ``dsp.integrated_loudness``; silence floors at -70)
==================  =====  =====================================================

Audio is ``(batch, channels, samples)`` float32; both inputs must have the same
shape. The MRSTFT core (:func:`mrstft`, gradient written by hand in
``train/_stft_loss.py``) is differentiable and is reused by the
training loss in ``train/losses.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from train._stft_loss import mrstft_distance

METRIC_NAMES: tuple[str, ...] = ("mrstft", "mel", "centroid", "crest", "rms", "lufs")
METRIC_UNITS: dict[str, str] = {
    "mrstft": "",
    "mel": "dB",
    "centroid": "Hz",
    "crest": "dB",
    "rms": "dB",
    "lufs": "LU",
}
DEFAULT_FFT_SIZES: tuple[int, ...] = (512, 1024, 2048)
_EPS = 1e-7
_LUFS_FLOOR = -70.0


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.dim() != 3 or target.dim() != 3:
        raise ValueError(
            f"expected (batch, channels, samples) tensors, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(target.shape)}")


@functools.lru_cache(maxsize=32)
def _hann(n_fft: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(n_fft, device=device, dtype=dtype)


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int | None = None) -> torch.Tensor:
    """Magnitude STFT of ``x`` (batch, channels, samples) -> (batch, channels, bins, frames).

    Short inputs are zero-padded to one window. The magnitude carries a tiny floor
    inside the square root so its gradient stays finite at exact zeros.
    """
    hop = hop or n_fft // 4
    b, c, t = x.shape
    flat = x.reshape(b * c, t).float()
    if t < n_fft:
        flat = torch.nn.functional.pad(flat, (0, n_fft - t))
    spec = torch.stft(
        flat,
        n_fft=n_fft,
        hop_length=hop,
        window=_hann(n_fft, str(flat.device), flat.dtype),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    mag = torch.sqrt(spec.real.square() + spec.imag.square() + _EPS**2)
    return mag.reshape(b, c, mag.shape[-2], mag.shape[-1])


def mrstft(
    pred: torch.Tensor,
    target: torch.Tensor,
    fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
    sc_weight: float = 1.0,
    logmag_weight: float = 1.0,
) -> torch.Tensor:
    """Multi-resolution STFT distance per item -> (batch,); differentiable.

    Per resolution: spectral convergence ||T - P||_F / ||T||_F plus the mean
    absolute log-magnitude difference; the resolutions are averaged. Zero for
    identical inputs. Computed by the fused :mod:`train._stft_loss` (the values of the
    ``torch.stft`` definition, the gradient with respect to ``pred`` written by hand;
    float64 inputs give a float64 result, others float32). A ``target`` that requires
    a gradient takes the slow ``torch.stft`` + autograd path (float32) instead.
    """
    _check_pair(pred, target)
    if not fft_sizes:
        raise ValueError("fft_sizes must not be empty")
    if target.requires_grad and torch.is_grad_enabled():
        # the fused version treats the target as a constant; keep both gradients here
        return _mrstft_autograd(pred, target, fft_sizes, sc_weight, logmag_weight)
    return mrstft_distance(pred, target, fft_sizes, sc_weight, logmag_weight)


def _mrstft_autograd(
    pred: torch.Tensor,
    target: torch.Tensor,
    fft_sizes: Sequence[int],
    sc_weight: float,
    logmag_weight: float,
) -> torch.Tensor:
    """:func:`mrstft` through ``torch.stft`` and autograd (slow; used when the target
    needs a gradient too)."""
    total = pred.new_zeros(pred.shape[0], dtype=torch.float32)
    for n_fft in fft_sizes:
        p = stft_magnitude(pred, int(n_fft))
        t = stft_magnitude(target, int(n_fft))
        diff = (t - p).flatten(1)
        sc = diff.norm(dim=1) / t.flatten(1).norm(dim=1).clamp_min(_EPS)
        logmag = (torch.log(t) - torch.log(p)).abs().flatten(1).mean(dim=1)
        total = total + sc_weight * sc + logmag_weight * logmag
    return total / len(fft_sizes)


@functools.lru_cache(maxsize=16)
def _mel_fbank(sample_rate: int, n_fft: int, n_mels: int, device: str) -> torch.Tensor:
    """(bins, n_mels) filterbank: the model's own triangular mel bands (rows sum to 1)."""
    from model.features import mel_filterbank

    return mel_filterbank(n_mels, n_fft, sample_rate, 20.0, min(16000.0, sample_rate / 2.0), device=device).T.contiguous()


def mel_distance(
    pred: torch.Tensor,
    target: torch.Tensor,
    sample_rate: int,
    n_fft: int = 2048,
    n_mels: int = 64,
) -> torch.Tensor:
    """Mean absolute log-mel power difference in dB per item -> (batch,)."""
    _check_pair(pred, target)
    fb = _mel_fbank(int(sample_rate), n_fft, n_mels, str(pred.device))

    def logmel(x: torch.Tensor) -> torch.Tensor:
        power = stft_magnitude(x, n_fft, n_fft // 4).square()  # (b, c, bins, frames)
        mel = torch.einsum("bcft,fm->bcmt", power, fb)
        return 10.0 * torch.log10(mel + 1e-10)

    return (logmel(pred) - logmel(target)).abs().flatten(1).mean(dim=1)


def spectral_centroid(x: torch.Tensor, sample_rate: int, n_fft: int = 2048) -> torch.Tensor:
    """Centroid in Hz of the long-term average power spectrum -> (batch,)."""
    power = stft_magnitude(x, n_fft).square().sum(dim=(1, 3))  # (b, bins)
    freqs = torch.linspace(0.0, sample_rate / 2.0, power.shape[-1], device=x.device)
    return (power * freqs).sum(-1) / power.sum(-1).clamp_min(_EPS)


def rms_db(x: torch.Tensor) -> torch.Tensor:
    """RMS level in dBFS over all channels -> (batch,)."""
    return 10.0 * torch.log10(x.float().square().flatten(1).mean(dim=1).clamp_min(1e-12))


def peak_db(x: torch.Tensor) -> torch.Tensor:
    """Sample peak in dBFS -> (batch,)."""
    return 20.0 * torch.log10(x.float().abs().flatten(1).amax(dim=1).clamp_min(1e-6))


def crest_factor_db(x: torch.Tensor) -> torch.Tensor:
    """Crest factor (sample peak over RMS) in dB -> (batch,)."""
    return peak_db(x) - rms_db(x)


def loudness_lufs(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Integrated loudness via ``dsp.integrated_loudness``, floored at -70 LUFS -> (batch,)."""
    from dsp.loudness import integrated_loudness

    lufs = integrated_loudness(x.float(), sample_rate)
    floor = torch.full_like(lufs, _LUFS_FLOOR)
    return torch.where(torch.isfinite(lufs), lufs.clamp_min(_LUFS_FLOOR), floor)


@torch.no_grad()
def quality_metrics(
    pred: torch.Tensor, target: torch.Tensor, sample_rate: int
) -> dict[str, torch.Tensor]:
    """All metrics of the table above, each a (batch,) CPU float32 tensor."""
    _check_pair(pred, target)
    pred = pred.float()
    target = target.float()
    out = {
        "mrstft": mrstft(pred, target),
        "mel": mel_distance(pred, target, sample_rate),
        "centroid": (spectral_centroid(pred, sample_rate) - spectral_centroid(target, sample_rate)).abs(),
        "crest": (crest_factor_db(pred) - crest_factor_db(target)).abs(),
        "rms": (rms_db(pred) - rms_db(target)).abs(),
        "lufs": (loudness_lufs(pred, sample_rate) - loudness_lufs(target, sample_rate)).abs(),
    }
    return {k: v.detach().float().cpu() for k, v in out.items()}


def summarize(per_item: dict[str, list[torch.Tensor] | torch.Tensor]) -> dict[str, float]:
    """Mean of each metric over all items (accepts tensors or lists of batch tensors)."""
    out: dict[str, float] = {}
    for name, value in per_item.items():
        t = torch.cat(list(value)) if isinstance(value, list) else value
        out[name] = float(t.mean()) if t.numel() else math.nan
    return out
