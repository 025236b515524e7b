"""Audio-EQ-cookbook biquad designs (R. Bristow-Johnson) and their application.

Designs run in float64 whatever the parameter dtype: at low cutoffs ``1 - cos w0``
is ~1e-6 and float32 coefficients would shift the response audibly.
"""

from __future__ import annotations

import math

import torch

from dsp._ops import biquad_cascade_rows

_NYQUIST_GUARD = 0.45  # designs are clamped below this fraction of the sample rate


def _omega(freq_hz: torch.Tensor, sample_rate: float) -> torch.Tensor:
    f = freq_hz.to(torch.float64).clamp(1e-3, _NYQUIST_GUARD * sample_rate)
    return 2.0 * math.pi * f / sample_rate


def _normalize(b0, b1, b2, a0, a1, a2) -> torch.Tensor:
    return torch.stack([b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0], dim=-1)


def peaking_coefficients(center_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Peaking band: (batch,) center, gain and Q -> (batch, 5) float64 [b0 b1 b2 a1 a2]."""
    w0 = _omega(center_hz, sample_rate)
    amp = torch.pow(10.0, gain_db.to(torch.float64) / 40.0)
    alpha = torch.sin(w0) / (2.0 * q.to(torch.float64))
    cw = torch.cos(w0)
    return _normalize(1 + alpha * amp, -2 * cw, 1 - alpha * amp, 1 + alpha / amp, -2 * cw, 1 - alpha / amp)


def _shelf(cutoff_hz, gain_db, q, sample_rate, high: bool) -> torch.Tensor:
    w0 = _omega(cutoff_hz, sample_rate)
    amp = torch.pow(10.0, gain_db.to(torch.float64) / 40.0)
    alpha = torch.sin(w0) / (2.0 * q.to(torch.float64))
    cw = torch.cos(w0)
    s = 2.0 * torch.sqrt(amp) * alpha
    ap1, am1 = amp + 1, amp - 1
    if high:
        return _normalize(
            amp * (ap1 + am1 * cw + s), -2 * amp * (am1 + ap1 * cw), amp * (ap1 + am1 * cw - s),
            ap1 - am1 * cw + s, 2 * (am1 - ap1 * cw), ap1 - am1 * cw - s,
        )
    return _normalize(
        amp * (ap1 - am1 * cw + s), 2 * amp * (am1 - ap1 * cw), amp * (ap1 - am1 * cw - s),
        ap1 + am1 * cw + s, -2 * (am1 + ap1 * cw), ap1 + am1 * cw - s,
    )


def low_shelf_coefficients(cutoff_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Low shelf: (batch,) cutoff, gain, Q -> (batch, 5) float64."""
    return _shelf(cutoff_hz, gain_db, q, sample_rate, high=False)


def high_shelf_coefficients(cutoff_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """High shelf: (batch,) cutoff, gain, Q -> (batch, 5) float64."""
    return _shelf(cutoff_hz, gain_db, q, sample_rate, high=True)


def highpass_coefficients(cutoff_hz: torch.Tensor, q: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """2nd-order high-pass: (batch,) cutoff and Q -> (batch, 5) float64."""
    w0 = _omega(cutoff_hz, sample_rate)
    alpha = torch.sin(w0) / (2.0 * q.to(torch.float64))
    cw = torch.cos(w0)
    return _normalize((1 + cw) / 2, -(1 + cw), (1 + cw) / 2, 1 + alpha, -2 * cw, 1 - alpha)


def highpass_or_identity(cutoff_hz: torch.Tensor, q: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """:func:`highpass_coefficients`, except that a cutoff <= 0 Hz gives exactly the identity
    [1, -2, 1, -2, 1] (the double zero at DC cancels the double pole), so "off" is exact."""
    off = (cutoff_hz.to(torch.float64) <= 0.0)[:, None]
    ident = torch.tensor([1.0, -2.0, 1.0, -2.0, 1.0], dtype=torch.float64, device=cutoff_hz.device)
    c = highpass_coefficients(cutoff_hz, q, sample_rate)
    return torch.where(off, ident.expand_as(c), c)


def lowpass_coefficients(cutoff_hz: torch.Tensor, q: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """2nd-order low-pass: (batch,) cutoff and Q -> (batch, 5) float64."""
    w0 = _omega(cutoff_hz, sample_rate)
    alpha = torch.sin(w0) / (2.0 * q.to(torch.float64))
    cw = torch.cos(w0)
    return _normalize((1 - cw) / 2, 1 - cw, (1 - cw) / 2, 1 + alpha, -2 * cw, 1 - alpha)


def allpass_coefficients(cutoff_hz: torch.Tensor, q: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """2nd-order all-pass (unit magnitude, phase turning through -180 degrees at the cutoff):
    (batch,) cutoff and Q -> (batch, 5) float64."""
    w0 = _omega(cutoff_hz, sample_rate)
    alpha = torch.sin(w0) / (2.0 * q.to(torch.float64))
    cw = torch.cos(w0)
    return _normalize(1 - alpha, -2 * cw, 1 + alpha, 1 + alpha, -2 * cw, 1 - alpha)


def apply_biquad_cascade(x: torch.Tensor, coefs: torch.Tensor) -> torch.Tensor:
    """Filter x (batch, channels, samples) through per-item sections in series, coefs (batch, S, 5)."""
    b, c, n = x.shape
    rows = coefs.to(torch.float64).repeat_interleave(c, dim=0)
    return biquad_cascade_rows(x.reshape(b * c, n), rows).reshape(b, c, n)


def biquad_response_db(coef: torch.Tensor, freq_hz: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Magnitude in dB of (batch, 5) biquads at freq_hz (F,) -> (batch, F).

    Uses the half-angle form, which keeps float32 error near 1e-7.
    """
    c = coef.to(torch.float64)
    w = 2 * math.pi * freq_hz.to(torch.float64) / sample_rate
    s2 = (torch.sin(w / 2) ** 2)[None, :]
    b0, b1, b2, a1, a2 = (c[:, i : i + 1] for i in range(5))
    one = torch.ones_like(a1)
    num = _poly_power(b0, b1, b2, s2)
    den = _poly_power(one, a1, a2, s2)
    return 10 * torch.log10(num / den)


def _poly_power(k0: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """|k0 + k1 e^-jw + k2 e^-2jw|^2 = (k0+k1+k2)^2 - 4 s2 (k0 k1 + 4 k0 k2 + k1 k2) + 16 s2^2 k0 k2,
    with s2 = sin^2(w/2): exact, and free of the cancellation of the naive complex form."""
    return (k0 + k1 + k2) ** 2 - 4 * s2 * (k0 * k1 + 4 * k0 * k2 + k1 * k2) + 16 * s2 * s2 * k0 * k2
