"""ITU-R BS.1770-4 loudness (K-weighting, gating) and EBU Tech 3342 loudness range, in torch.

``integrated_loudness`` is differentiable with respect to the audio: the gates are
decided without gradient, and the gated mean of block energies carries it, which
makes it usable as a training loss.
"""

from __future__ import annotations

import math

import torch

from dsp._bs1770 import (  # the gate constants stay importable from here
    ABSOLUTE_GATE_LUFS,  # noqa: F401
    LRA_RELATIVE_GATE_LU,  # noqa: F401
    LUFS_OFFSET,
    MOMENTARY_HOPS,
    RELATIVE_GATE_LU,
    SHORT_TERM_HOPS,
    gate_mask,
    hop_samples,
    k_weighting_biquads,
)
from dsp._bs1770 import loudness_range as _loudness_range_of_energies
from dsp._ops import biquad_cascade_rows
from dsp.ranges import check_audio


def k_weighting_coefficients(sample_rate: float) -> torch.Tensor:
    """(2, 5) float64 [b0 b1 b2 a1 a2] of the pre-filter shelf and the RLB high-pass
    (defined in :func:`dsp._bs1770.k_weighting_biquads`)."""
    return torch.from_numpy(k_weighting_biquads(sample_rate))


def k_weight(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """K-weighted copy of x (batch, channels, samples)."""
    b, c, n = x.shape
    coef = k_weighting_coefficients(sample_rate).to(x.device)
    rows = biquad_cascade_rows(x.reshape(b * c, n), coef.expand(b * c, 2, 5))
    return rows.reshape(b, c, n)


def weighted_power(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Channel-summed K-weighted power per sample: x (batch, channels, samples) -> (batch, samples).

    Channel weights G are 1 for left, right and mono (BS.1770-4 Table 3).
    """
    xk = k_weight(x, sample_rate)
    return (xk * xk).sum(dim=1)


def _subblock_energy(power: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Mean of ``power`` (batch, samples) over 100 ms steps: (batch, steps)."""
    step = hop_samples(sample_rate)
    n = (power.shape[-1] // step) * step
    return power[:, :n].reshape(power.shape[0], -1, step).mean(dim=-1)


def _window_energy(sub: torch.Tensor, steps: int) -> torch.Tensor:
    """Mean of ``steps`` consecutive sub-blocks, hop one sub-block: (batch, windows)."""
    if sub.shape[1] < steps:
        return sub.mean(dim=1, keepdim=True) if sub.shape[1] else sub.new_zeros(sub.shape[0], 0)
    return sub.unfold(1, steps, 1).mean(dim=-1)


def _to_lufs(energy: torch.Tensor) -> torch.Tensor:
    return LUFS_OFFSET + 10.0 * torch.log10(energy.clamp_min(1e-30))


def momentary_loudness(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Momentary loudness (400 ms windows, 100 ms hop), (batch, windows) LUFS."""
    check_audio(x)
    return _to_lufs(_window_energy(_subblock_energy(weighted_power(x, sample_rate), sample_rate), MOMENTARY_HOPS))


def short_term_loudness(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Short-term loudness (3 s windows, 100 ms hop), (batch, windows) LUFS."""
    check_audio(x)
    return _to_lufs(_window_energy(_subblock_energy(weighted_power(x, sample_rate), sample_rate), SHORT_TERM_HOPS))


def gated_mean_energy(energy: torch.Tensor, relative_gate_lu: float) -> torch.Tensor:
    """BS.1770 two-stage gating of block energies (batch, blocks) -> (batch,) mean energy.

    Returns 0 where no block passes (silence), which maps to -inf LUFS.
    """
    with torch.no_grad():
        mask = gate_mask(energy.detach(), relative_gate_lu)
    n = mask.sum(dim=1)
    total = (energy * mask).sum(dim=1)
    return torch.where(n > 0, total / n.clamp_min(1), torch.zeros_like(total))


def loudness_from_power(power: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Gated integrated loudness (batch,) from K-weighted power (batch, samples).

    Signals shorter than one 400 ms block, which BS.1770 leaves undefined, are
    measured as one block over their whole length.
    """
    return loudness_from_subblocks(_subblock_energy(power, sample_rate), power)


def loudness_from_subblocks(sub: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """Gated integrated loudness (batch,) from 100 ms energies (batch, steps); ``power``
    (batch, samples) is only used when there are fewer than four steps."""
    blocks = _window_energy(sub, 4) if sub.shape[1] >= 4 else power.mean(dim=-1, keepdim=True)
    energy = gated_mean_energy(blocks, RELATIVE_GATE_LU)
    lufs = _to_lufs(energy)
    return torch.where(energy > 0, lufs, torch.full_like(lufs, -math.inf))


def integrated_loudness(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Integrated loudness in LUFS (BS.1770-4): x (batch, channels, samples) -> (batch,).

    Silence (no block above the absolute gate) gives -inf. Differentiable in x.
    """
    check_audio(x)
    return loudness_from_power(weighted_power(x, sample_rate), sample_rate)


def loudness_range(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Loudness range in LU (EBU Tech 3342): x (batch, channels, samples) -> (batch,).

    Spread (10th to 95th percentile) of the gated short-term loudness. 0 where fewer
    than two short-term windows pass the gates. Not differentiable.
    """
    return loudness_and_range(x, sample_rate)[1]


@torch.no_grad()
def loudness_and_range(x: torch.Tensor, sample_rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(integrated loudness in LUFS, loudness range in LU), each (batch,), from one
    K-weighting of x (batch, channels, samples): what :func:`integrated_loudness` and
    :func:`loudness_range` give, for half the filtering. Not differentiable."""
    check_audio(x)
    power = weighted_power(x, sample_rate)
    sub = _subblock_energy(power, sample_rate)
    windows = _window_energy(sub, SHORT_TERM_HOPS).double().cpu().numpy()
    values = [_loudness_range_of_energies(e) for e in windows]
    lra = torch.tensor([v if math.isfinite(v) else 0.0 for v in values], dtype=x.dtype, device=x.device)
    return loudness_from_subblocks(sub, power), lra


def normalize_loudness(x: torch.Tensor, sample_rate: float, target_lufs: float | torch.Tensor) -> torch.Tensor:
    """Scale each item of x (batch, channels, samples) to ``target_lufs``.

    Silent items (-inf LUFS) are returned unchanged. Differentiable.
    """
    check_audio(x)
    lufs = loudness_from_power(weighted_power(x, sample_rate), sample_rate)
    gain_db = torch.as_tensor(target_lufs, dtype=x.dtype, device=x.device) - lufs
    gain_db = torch.where(torch.isfinite(lufs), gain_db, torch.zeros_like(gain_db))
    return x * torch.pow(10.0, gain_db / 20.0)[:, None, None]
