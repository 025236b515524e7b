"""Phase-coherent three-band Linkwitz-Riley crossover, rendered zero-phase.

A Linkwitz-Riley (LR4, 24 dB/octave) band has the magnitude of a 2nd-order Butterworth
filter squared. Rendering is offline, so each band is the Butterworth filter run
forward and then backward over the signal (``filtfilt``): its magnitude is exactly
``|H|^2`` (the LR4 magnitude, -6 dB at the crossover) and its phase is zero, so the
bands are phase-coherent with each other and with the dry signal. A Butterworth pair
is power-complementary, ``|H_LP|^2 + |H_HP|^2 = 1``, so the high band of a zero-phase LR
split *is* ``x - low``. Computing it that way makes the bands sum to the input exactly:

    low  = ff(LP1, x)        upper = x - low
    mid  = ff(LP2, upper)    high  = upper - mid

With every band at unity gain the sum is the input, sample for sample; equal gains on
all bands are a plain broadband gain. Near the ends of the signal the zero-state
filters have start-up transients (tens of ms at 60 Hz); the bands still sum exactly.
"""

from __future__ import annotations

import math

import torch

from dsp._ops import crossover_split
from dsp.biquad import apply_biquad_cascade, highpass_coefficients, lowpass_coefficients

BUTTERWORTH_Q = 1.0 / math.sqrt(2.0)


def zero_phase(x: torch.Tensor, coefs: torch.Tensor) -> torch.Tensor:
    """Biquads (batch, S, 5) run forward then backward over x (batch, channels, samples)."""
    y = apply_biquad_cascade(x, coefs)
    return apply_biquad_cascade(y.flip(-1), coefs).flip(-1)


def lr_lowpass_coefficients(cutoff_hz: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """(batch, 5) Butterworth low-pass biquad at cutoff_hz (batch,) that, run forward and
    backward, is the LR4 low-pass."""
    q = torch.full_like(cutoff_hz, BUTTERWORTH_Q, dtype=torch.float64)
    return lowpass_coefficients(cutoff_hz, q, sample_rate)


def lr_lowpass(x: torch.Tensor, cutoff_hz: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Zero-phase LR4 low-pass of x (batch, channels, samples) at cutoff_hz (batch,)."""
    return zero_phase(x, lr_lowpass_coefficients(cutoff_hz, sample_rate)[:, None])


def lr_highpass(x: torch.Tensor, cutoff_hz: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Zero-phase LR4 high-pass (filtered, not complementary): for tests and analysis."""
    q = torch.full_like(cutoff_hz, BUTTERWORTH_Q, dtype=torch.float64)
    return zero_phase(x, highpass_coefficients(cutoff_hz, q, sample_rate)[:, None])


def split_bands(x: torch.Tensor, low_hz: torch.Tensor, high_hz: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Split x (batch, channels, samples) at low_hz < high_hz (batch,) into
    (batch, 3, channels, samples): low, mid, high, summing exactly to x.

    low = lr_lowpass(x, low_hz), mid = lr_lowpass(x - low, high_hz), high = x - low - mid,
    computed as one op (:func:`dsp._ops.crossover_split`, the same split with its own
    adjoint; tests/test_dsp_multiband.py compares it with this composition)."""
    return crossover_split(x, lr_lowpass_coefficients(low_hz, sample_rate),
                           lr_lowpass_coefficients(high_hz, sample_rate))
