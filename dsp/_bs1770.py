"""The one definition of BS.1770 loudness and true peak that every meter shares.

ITU-R BS.1770-4 (K-weighting, the 400 ms / 100 ms block structure, the two gates), EBU
Tech 3342 (loudness range) and the 4x true-peak interpolator, written in numpy and plain
math so that both the torch processors in ``dsp`` (loudness, true peak, the limiter's
envelope) and the streaming numpy meters in ``automaster.metering`` (the CLI's reports,
which must not wait for torch) use the same numbers. Nothing here imports torch.

:func:`gate_mask` is written with operations that numpy arrays and torch tensors share, so
the gating rule exists once: the torch loss calls it on tensors (on their device, without
gradient), the meters on arrays.
"""

from __future__ import annotations

import math

import numpy as np

# ---------------------------------------------------------------- loudness (BS.1770-4)
LUFS_OFFSET = -0.691  # loudness = LUFS_OFFSET + 10 log10(channel-summed K-weighted mean square)
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0  # integrated loudness
LRA_RELATIVE_GATE_LU = -20.0  # loudness range (EBU Tech 3342)
LRA_PERCENTILES = (10.0, 95.0)
HOP_S = 0.1  # gating blocks and short-term windows advance by 100 ms
MOMENTARY_HOPS = 4  # 400 ms blocks (integrated and momentary loudness)
SHORT_TERM_HOPS = 30  # 3 s windows (short-term loudness, loudness range)

# K-weighting prototype (pre-filter high shelf + RLB high-pass) as analog parameters, so the
# filter can be re-derived at any rate; at 48 kHz the shelf reproduces BS.1770-4's Table 1
_SHELF_HZ, _SHELF_DB, _SHELF_Q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
_SHELF_VB_EXPONENT = 0.4996667741545416
_HP_HZ, _HP_Q = 38.13547087602444, 0.5003270373238773


def hop_samples(sample_rate: float) -> int:
    """Samples per 100 ms hop (at least one)."""
    return max(1, int(round(HOP_S * sample_rate)))


def k_weighting_biquads(sample_rate: float) -> np.ndarray:
    """(2, 5) float64 ``[b0 b1 b2 a1 a2]`` (a0 = 1) of the pre-filter shelf and the RLB high-pass.

    The high-pass numerator is normalised by a0 too (unity gain at high frequencies): the
    standard's table prints b = [1, -2, 1], which reads +0.045 LU high on the EBU Tech 3341
    signals.
    """
    if not sample_rate > 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    k = math.tan(math.pi * _SHELF_HZ / sample_rate)
    vh = 10.0 ** (_SHELF_DB / 20.0)
    vb = vh ** _SHELF_VB_EXPONENT
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [(vh + vb * k / _SHELF_Q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / _SHELF_Q + k * k) / a0,
             2.0 * (k * k - 1.0) / a0, (1.0 - k / _SHELF_Q + k * k) / a0]
    k = math.tan(math.pi * _HP_HZ / sample_rate)
    a0 = 1.0 + k / _HP_Q + k * k
    hp = [1.0 / a0, -2.0 / a0, 1.0 / a0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HP_Q + k * k) / a0]
    return np.array([shelf, hp], dtype=np.float64)


def k_weighting_sos(sample_rate: float) -> np.ndarray:
    """The same filter as (2, 6) second-order sections ``[b0 b1 b2 1 a1 a2]`` (scipy's layout)."""
    c = k_weighting_biquads(sample_rate)
    return np.concatenate([c[:, :3], np.ones((2, 1)), c[:, 3:]], axis=1)


# the absolute gate as a mean square: level > -70 LUFS  <=>  energy > this
ABSOLUTE_GATE_ENERGY = 10.0 ** ((ABSOLUTE_GATE_LUFS - LUFS_OFFSET) / 10.0)


def energy_to_lufs(energy: float) -> float:
    """Loudness (LUFS) of one channel-summed K-weighted mean square; -inf for 0."""
    return LUFS_OFFSET + 10.0 * math.log10(energy) if energy > 0 else -math.inf


def gate_mask(energy, relative_gate_lu: float):
    """BS.1770's two gates on block energies: (batch, blocks) -> bool mask of the same shape.

    A block passes when it is above -70 LUFS and above the mean of those blocks plus
    ``relative_gate_lu`` (-10 LU for integrated loudness, -20 LU for loudness range).
    Both gates are compared as energies (``level > L`` is ``energy > 10^((L + 0.691) / 10)``),
    so ``energy`` may be a numpy array or a torch tensor (then on its own device); the
    caller decides about gradients.
    """
    above = energy > ABSOLUTE_GATE_ENERGY
    count = above.sum(-1)
    mean_above = (energy * above).sum(-1) / count.clip(min=1)
    return above & (energy > mean_above[..., None] * 10.0 ** (relative_gate_lu / 10.0))


def gated_loudness(blocks: np.ndarray, relative_gate_lu: float = RELATIVE_GATE_LU) -> float:
    """Gated loudness (LUFS) of 400 ms block energies (blocks,); -inf when no block passes."""
    blocks = np.asarray(blocks, dtype=np.float64)
    keep = gate_mask(blocks[None], relative_gate_lu)[0]
    return energy_to_lufs(float(blocks[keep].mean())) if keep.any() else -math.inf


def loudness_range(short_term_energy: np.ndarray) -> float:
    """EBU Tech 3342 loudness range (LU) of 3 s window energies (windows,).

    The spread from the 10th to the 95th percentile (linear interpolation) of the
    short-term loudness of windows that pass the -70 LUFS and -20 LU gates; NaN when fewer
    than two windows pass.
    """
    e = np.asarray(short_term_energy, dtype=np.float64)
    keep = gate_mask(e[None], LRA_RELATIVE_GATE_LU)[0]
    if int(keep.sum()) < 2:
        return math.nan
    lufs = LUFS_OFFSET + 10.0 * np.log10(e[keep])
    lo, hi = np.percentile(lufs, LRA_PERCENTILES)
    return float(hi - lo)


# ---------------------------------------------------------------- true peak (BS.1770-4 Annex 2)
OVERSAMPLING = 4
TAPS_PER_PHASE = 24  # 96-tap prototype
KAISER_BETA = 5.0  # a sharp transition at fs/2: near-Nyquist peaks are not under-read
TP_BEFORE = TAPS_PER_PHASE // 2 - 1  # input samples before n used for x(n + p/4): 11
TP_AFTER = TAPS_PER_PHASE // 2  # ... and after it: 12


def interpolation_kernel() -> np.ndarray:
    """(3, TAPS_PER_PHASE) float64 taps: row p-1 gives x(n + p/4), p = 1..3, from x[n-11 .. n+12].

    Phase 0 is the sample itself. Each phase is a Kaiser-windowed sinc (beta 5) normalised to
    unit DC gain. A limiter that holds every estimated peak at the ceiling exposes the
    estimator's worst case over thousands of peaks; with 24 taps per phase and beta 5,
    limited white and near-Nyquist noise measures at most +0.06 dB over the ceiling with
    scipy's resample_poly (tests/test_dsp_dynamics.py), where 16 taps (beta 8) gave +0.4 dB.
    """
    half = TAPS_PER_PHASE // 2
    k = np.arange(-TP_BEFORE, TP_AFTER + 1)  # input offsets
    taps = np.empty((OVERSAMPLING - 1, TAPS_PER_PHASE))
    for p in range(1, OVERSAMPLING):
        t = p / OVERSAMPLING - k  # distance from each input sample to the target point
        win = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (t / half) ** 2, 0, None))) / np.i0(KAISER_BETA)
        h = np.sinc(t) * win
        taps[p - 1] = h / h.sum()
    return taps
