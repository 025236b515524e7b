"""Polarity and low-frequency anti-phase between the two channels; optional mono bass.

Correlation meter: the Pearson correlation of left and right, broadband (full rate) and
below ``LOW_HZ`` (block means of ~32 samples, then a zero-phase low-pass at LOW_HZ; the
block mean's own response is flat to 0.2 dB at 200 Hz), and above it (broadband minus low
energy-weighted). Bass is almost always in phase in a mix, so:

- low-band correlation below ``-ANTI_PHASE`` with the low band carrying at least
  ``MIN_LOW_SHARE_DB`` of the energy -> anti-phase found;
  - and the rest of the spectrum also negatively correlated (< 0) -> one channel is
    inverted: the fix inverts the right channel;
  - otherwise only the low end is anti-phase: the fix replaces both channels' low band
    (zero-phase crossover at LOW_HZ: a 2nd-order Butterworth low-pass run forward and
    backward, i.e. Linkwitz-Riley magnitude, complementary high band = x - low) by
    (low_L - low_R) / 2, in phase.
- ``mono_bass`` (``--mono-bass HZ``): the low band below HZ of both channels becomes
  their mean (the same zero-phase crossover), whether or not anything was found.
"""
from __future__ import annotations

import numpy as np
from scipy import signal

from ._common import Finding, db

LOW_HZ = 200.0
ANTI_PHASE = 0.3
MIN_LOW_SHARE_DB = -30.0


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    den = np.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / den) if den > 0 else 0.0


def lowpass(x: np.ndarray, sample_rate: float, cutoff_hz: float) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth low-pass, forward and backward (LR4 magnitude)."""
    sos = signal.butter(2, cutoff_hz, btype="lowpass", fs=sample_rate, output="sos")
    pad = int(min(x.shape[-1] - 1, 4 * sample_rate / cutoff_hz))
    return signal.sosfiltfilt(sos, x, axis=-1, padtype="odd", padlen=pad)


def measure(x: np.ndarray, sample_rate: int) -> dict:
    L, R = x[0].astype(np.float64), x[1].astype(np.float64)
    broad = _corr(L, R)
    D = max(1, int(sample_rate // 1400))
    M = len(L) // D
    dec = x[:, :M * D].reshape(2, M, D).mean(axis=-1, dtype=np.float64)
    low = lowpass(dec, sample_rate / D, LOW_HZ)
    low_corr = _corr(low[0], low[1])
    # energies per sample so that the decimated low band compares with the full rate
    e_low = float((low * low).sum()) / M
    e_all = float((L * L).sum() + (R * R).sum()) / len(L)
    c_low = float(np.dot(low[0], low[1])) / M
    c_all = float(np.dot(L, R)) / len(L)
    eL_hi = max(float(L @ L) / len(L) - float(low[0] @ low[0]) / M, 1e-30)
    eR_hi = max(float(R @ R) / len(R) - float(low[1] @ low[1]) / M, 1e-30)
    high_corr = (c_all - c_low) / np.sqrt(eL_hi * eR_hi)
    return {"correlation": broad, "low_correlation": low_corr,
            "high_correlation": float(np.clip(high_corr, -1, 1)),
            "low_share_db": db(e_low / max(e_all, 1e-30))}


def fix_polarity(x: np.ndarray, sample_rate: int, apply: bool = True,
                 mono_bass_hz: float | None = None) -> tuple[np.ndarray, Finding]:
    if x.shape[0] != 2:
        return x, Finding("polarity", False, False, "mono: no polarity check",
                          {}, {}, "none")
    m = measure(x, sample_rate)
    anti = m["low_correlation"] < -ANTI_PHASE and m["low_share_db"] >= MIN_LOW_SHARE_DB
    kind = None
    if anti:
        kind = "inverted" if m["high_correlation"] < 0 else "low_anti_phase"
    found = kind is not None
    do = apply and found
    out = x
    actions = []
    if do and kind == "inverted":
        out = np.stack([x[0], -x[1]])
        actions.append("inverted the right channel")
    elif do:
        lows = lowpass(x.astype(np.float64), sample_rate, LOW_HZ)
        mono = (lows[0] - lows[1]) / 2
        out = np.stack([x[0] - lows[0] + mono, x[1] - lows[1] + mono]).astype(x.dtype)
        actions.append(f"low band below {LOW_HZ:g} Hz made mono in phase")
    if mono_bass_hz:
        d = lowpass((out[0] - out[1]).astype(np.float64) / 2, sample_rate, float(mono_bass_hz))
        out = np.stack([out[0] - d, out[1] + d]).astype(x.dtype)
        actions.append(f"mono below {float(mono_bass_hz):g} Hz")
    after = measure(out, sample_rate) if (do or mono_bass_hz) else m
    change = {"correlation_after": after["correlation"], "low_correlation_after": after["low_correlation"]}
    if kind == "inverted":
        s = f"one channel inverted (correlation {m['correlation']:+.2f}, below {LOW_HZ:g} Hz {m['low_correlation']:+.2f})"
    elif kind == "low_anti_phase":
        s = f"low-frequency anti-phase (correlation below {LOW_HZ:g} Hz {m['low_correlation']:+.2f})"
    else:
        s = f"polarity fine (correlation {m['correlation']:+.2f}, below {LOW_HZ:g} Hz {m['low_correlation']:+.2f})"
    if do or mono_bass_hz:
        s += f"; {', '.join(actions)} (now {after['correlation']:+.2f}, low {after['low_correlation']:+.2f})"
    elif found:
        s += "; not applied"
    measured = dict(m, anti_phase_threshold=-ANTI_PHASE, kind=kind)
    return out, Finding("polarity", found, bool(do or mono_bass_hz), s, measured, change,
                        "; ".join(actions) or "none")
