"""ITU-R BS.1770-4 loudness (K-weighting, gating) and EBU Tech 3342 loudness range, in torch.

``integrated_loudness`` is differentiable with respect to the audio: the gates are
decided without gradient, and the gated mean of block energies carries it, which
makes it usable as a training loss.
"""

from __future__ import annotations

import math

import torch

from dsp._ops import biquad_cascade_rows
from dsp.ranges import check_audio

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
LRA_RELATIVE_GATE_LU = -20.0

# K-weighting prototype (BS.1770-4 Table 1/2 re-derived for any rate)
_SHELF_HZ, _SHELF_DB, _SHELF_Q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
_HP_HZ, _HP_Q = 38.13547087602444, 0.5003270373238773


def k_weighting_coefficients(sample_rate: float) -> torch.Tensor:
    """(2, 5) float64 [b0 b1 b2 a1 a2] of the pre-filter shelf and the RLB high-pass.

    At 48 kHz the shelf reproduces BS.1770-4's table; the high-pass numerator is
    normalised (see below).
    """
    k = math.tan(math.pi * _SHELF_HZ / sample_rate)
    vh = 10.0 ** (_SHELF_DB / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [(vh + vb * k / _SHELF_Q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / _SHELF_Q + k * k) / a0,
             2.0 * (k * k - 1.0) / a0, (1.0 - k / _SHELF_Q + k * k) / a0]
    k = math.tan(math.pi * _HP_HZ / sample_rate)
    a0 = 1.0 + k / _HP_Q + k * k
    # b normalised by a0 too (unity gain at high frequencies); the standard's table prints
    # b = [1, -2, 1], which reads +0.045 LU high on the EBU Tech 3341 signals
    hp = [1.0 / a0, -2.0 / a0, 1.0 / a0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HP_Q + k * k) / a0]
    return torch.tensor([shelf, hp], dtype=torch.float64)


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
    step = max(1, int(round(0.1 * sample_rate)))
    n = (power.shape[-1] // step) * step
    return power[:, :n].reshape(power.shape[0], -1, step).mean(dim=-1)


def _window_energy(sub: torch.Tensor, steps: int) -> torch.Tensor:
    """Mean of ``steps`` consecutive sub-blocks, hop one sub-block: (batch, windows)."""
    if sub.shape[1] < steps:
        return sub.mean(dim=1, keepdim=True) if sub.shape[1] else sub.new_zeros(sub.shape[0], 0)
    return sub.unfold(1, steps, 1).mean(dim=-1)


def _to_lufs(energy: torch.Tensor) -> torch.Tensor:
    return -0.691 + 10.0 * torch.log10(energy.clamp_min(1e-30))


def momentary_loudness(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Momentary loudness (400 ms windows, 100 ms hop), (batch, windows) LUFS."""
    check_audio(x)
    return _to_lufs(_window_energy(_subblock_energy(weighted_power(x, sample_rate), sample_rate), 4))


def short_term_loudness(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Short-term loudness (3 s windows, 100 ms hop), (batch, windows) LUFS."""
    check_audio(x)
    return _to_lufs(_window_energy(_subblock_energy(weighted_power(x, sample_rate), sample_rate), 30))


def gated_mean_energy(energy: torch.Tensor, relative_gate_lu: float) -> torch.Tensor:
    """BS.1770 two-stage gating of block energies (batch, blocks) -> (batch,) mean energy.

    Returns 0 where no block passes (silence), which maps to -inf LUFS.
    """
    with torch.no_grad():
        level = _to_lufs(energy)
        above_abs = (level > ABSOLUTE_GATE_LUFS) & (energy > 0)
        count = above_abs.sum(dim=1).clamp_min(1)
        mean_abs = (energy * above_abs).sum(dim=1) / count
        gate = _to_lufs(mean_abs) + relative_gate_lu
        mask = above_abs & (level > gate[:, None])
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
    with torch.no_grad():
        st = short_term_loudness(x, sample_rate)
        energy = 10.0 ** ((st + 0.691) / 10.0)
        out = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(x.shape[0]):
            e, lv = energy[i], st[i]
            keep = lv > ABSOLUTE_GATE_LUFS
            if keep.sum() < 2:
                continue
            gate = _to_lufs(e[keep].mean()) + LRA_RELATIVE_GATE_LU
            vals = lv[keep & (lv > gate)]
            if vals.numel() < 2:
                continue
            q = torch.quantile(vals.double(), torch.tensor([0.10, 0.95], dtype=torch.float64, device=x.device))
            out[i] = (q[1] - q[0]).to(x.dtype)
        return out


def normalize_loudness(x: torch.Tensor, sample_rate: float, target_lufs: float | torch.Tensor) -> torch.Tensor:
    """Scale each item of x (batch, channels, samples) to ``target_lufs``.

    Silent items (-inf LUFS) are returned unchanged. Differentiable.
    """
    check_audio(x)
    lufs = loudness_from_power(weighted_power(x, sample_rate), sample_rate)
    gain_db = torch.as_tensor(target_lufs, dtype=x.dtype, device=x.device) - lufs
    gain_db = torch.where(torch.isfinite(lufs), gain_db, torch.zeros_like(gain_db))
    return x * torch.pow(10.0, gain_db / 20.0)[:, None, None]
