"""Shared pieces of the restoration stages: findings, AR (LPC) models, LSAR interpolation.

Everything here works on float64 numpy arrays (channels, samples); nothing imports torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import linalg


@dataclass
class Finding:
    """One restoration stage's result, for the text report and the JSON.

    problem: stage name ("dc", "hum", ...). found: the detector's measurement passed the
    stage's documented threshold. applied: the fix was run on the audio. measured: what
    the detector measured (physical units in the key names). change: by how much the fix
    changed the audio (same style). summary: one line a user reads.
    """

    problem: str
    found: bool
    applied: bool
    summary: str
    measured: dict[str, Any] = field(default_factory=dict)
    change: dict[str, Any] = field(default_factory=dict)
    action: str = ""
    suggestion: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {"problem": self.problem, "found": bool(self.found), "applied": bool(self.applied),
             "summary": self.summary, "action": self.action,
             "measured": _jsonable(self.measured), "change": _jsonable(self.change),
             "seconds": round(float(self.seconds), 4)}
        if self.suggestion:
            d["suggestion"] = self.suggestion
        return d


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return round(f, 6) if math.isfinite(f) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    return v


def db(power_ratio: float, floor: float = 1e-30) -> float:
    """10 log10 of a power ratio, -inf-safe (floored)."""
    return 10.0 * math.log10(max(float(power_ratio), floor))


def levinson(r: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Levinson-Durbin on autocorrelations r (..., >= order+1), batched over leading axes.

    Returns (a, err): prediction-error filter a (..., order+1) with a[..., 0] = 1, so that
    e[n] = sum_j a[j] x[n-j] is the forward prediction error, and the final error power.
    """
    r = np.asarray(r, dtype=np.float64)
    shape = r.shape[:-1]
    a = np.zeros(shape + (order + 1,))
    a[..., 0] = 1.0
    err = r[..., 0].copy()
    tiny = 1e-300
    for i in range(1, order + 1):
        acc = r[..., i] + np.einsum("...j,...j->...", a[..., 1:i], r[..., i - 1:0:-1])
        k = -acc / np.maximum(err, tiny)
        k = np.where(err > tiny, k, 0.0)
        prev = a[..., 1:i].copy()
        a[..., 1:i] = prev + k[..., None] * prev[..., ::-1]
        a[..., i] = k
        err = err * (1.0 - k * k)
    return a, err


def autocorr(x: np.ndarray, order: int) -> np.ndarray:
    """Biased autocorrelation lags 0..order of the last axis (Hann-windowed frames), via FFT."""
    n = x.shape[-1]
    w = np.hanning(n + 2)[1:-1]
    xw = x * w
    nfft = 1 << int(math.ceil(math.log2(2 * n)))
    X = np.fft.rfft(xw, nfft)
    r = np.fft.irfft(X.real ** 2 + X.imag ** 2, nfft)[..., :order + 1]
    r[..., 0] *= 1.0 + 1e-9  # white-noise floor: keeps Levinson stable on silence
    r[..., 0] += 1e-20
    return r


def ar_fit(x: np.ndarray, order: int) -> np.ndarray:
    """AR prediction-error filter of one 1-D segment (autocorrelation method)."""
    a, _ = levinson(autocorr(np.asarray(x, dtype=np.float64), order), order)
    return a


def lsar_interpolate(seg: np.ndarray, unknown: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Least-squares AR interpolation (LSAR): the unknown samples of ``seg`` that minimize
    the AR prediction-error energy of the whole segment, the known samples held.

    seg: 1-D float64 segment; unknown: bool mask over seg (its first and last p = len(a)-1
    samples should be known); a: prediction-error filter (a[0] = 1). Returns the unknown
    samples' values in order.
    """
    p = len(a) - 1
    n = len(seg)
    col = np.zeros(n - p)
    col[0] = a[p]
    row = np.zeros(n)
    row[:p + 1] = a[::-1]
    A = linalg.toeplitz(col, row)
    Au = A[:, unknown]
    Ak = A[:, ~unknown]
    rhs = -Au.T @ (Ak @ seg[~unknown])
    M = Au.T @ Au
    M[np.diag_indices_from(M)] += 1e-12 * (np.trace(M) / max(len(M), 1) + 1e-30)
    return linalg.solve(M, rhs, assume_a="pos")


def dot(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 16) -> float:
    """sum(a * b) of two 1-D arrays of the same length, as a float: BLAS dot products over
    chunks of ``chunk`` samples (in the arrays' own dtype, float32 for audio), accumulated in
    float64, so a float32 track needs no float64 copy and the sum keeps ~1e-7 relative
    precision (a single float32 dot over millions of samples would not)."""
    n = len(a)
    if len(b) != n:
        raise ValueError(f"dot: lengths differ ({n} and {len(b)})")
    total = 0.0
    for i in range(0, n, chunk):
        total += float(np.dot(a[i:i + chunk], b[i:i + chunk]))
    return total


def block_means(x: np.ndarray, factor: int) -> np.ndarray:
    """Means of consecutive blocks of ``factor`` samples along the last axis, (..., T // factor)
    float64 (the tail shorter than a block is left out). One matrix-vector product in the
    input's dtype per row: a float32 mean of a few tens of samples is exact to ~1e-7."""
    m = x.shape[-1] // factor
    v = x[..., :m * factor].reshape(x.shape[:-1] + (m, factor))
    w = np.full(factor, 1.0 / factor, dtype=v.dtype if v.dtype in (np.float32, np.float64) else np.float64)
    return np.asarray(v @ w, dtype=np.float64)


def decimator(sample_rate: float, band_hz: float, min_rate_factor: float = 4.0,
              stop_db: float = 90.0) -> tuple[int, np.ndarray]:
    """A decimation factor D (a power of two, sample_rate / D >= min_rate_factor x band_hz)
    and its anti-aliasing low-pass: a Kaiser-window FIR (``scipy.signal.firwin``, computed by :mod:`._filters`), length a
    multiple of D, cut-off at the new Nyquist frequency, transition wide enough to keep
    [0, band_hz] flat (ripple ~1e-4 dB) and everything that would alias into it at least
    about ``stop_db`` down (89 dB measured at 90). D = 1 (no filter) where the rate is already low."""
    from automaster.restore._filters import kaiser_lowpass, kaiser_order

    factor = 1
    while sample_rate / (2 * factor) >= min_rate_factor * band_hz:
        factor *= 2
    if factor == 1:
        return 1, np.ones(1)
    rate = sample_rate / factor
    width = (rate - 2 * band_hz) / (0.5 * sample_rate)  # the transition, as kaiserord wants it
    taps, beta = kaiser_order(stop_db, width)
    taps = factor * int(math.ceil(taps / factor))
    h = kaiser_lowpass(taps, rate / 2, beta, sample_rate)
    return factor, h


def decimate(x: np.ndarray, factor: int, h: np.ndarray) -> np.ndarray:
    """(channels, T) -> (channels, T // factor): filtered by h (length L = factor x Q, see
    :func:`decimator`) and kept every factor-th sample, centred on the blocks:
    y[m] = sum_j h[j] x[m factor - P + j] with P = (L - factor) / 2, so that y[m] (h being
    symmetric) is centred on m factor + (factor - 1) / 2, the middle of block m (x is zero
    outside its ends); in x's dtype. Polyphase, as one matrix product: the signal seen as
    columns of factor samples, the (Q, factor) matrix of h's phases times them, then the Q
    rows summed with their shifts; it costs Q multiply-adds per input sample."""
    if factor == 1:
        return np.array(x, copy=True)
    L = len(h)
    q = L // factor
    if L != q * factor or (L - factor) % 2:
        raise ValueError(f"decimate: filter length {L} must be an even multiple of {factor}")
    pre = (L - factor) // 2
    a = -(-pre // factor)  # x[m factor - pre + j] = x[(m - a) factor + r + j], r = a factor - pre
    r = a * factor - pre
    T = x.shape[-1]
    m = T // factor
    k = max(0, (T - r) // factor)  # whole blocks of x[r:]
    dt = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    hm = np.ascontiguousarray(h.reshape(q, factor), dtype=dt)  # hm[j, i] = h[j factor + i]
    out = np.zeros(x.shape[:-1] + (m,), dtype=dt)
    for idx in np.ndindex(x.shape[:-1] if k else ()):
        z = hm @ np.asarray(x[idx][r:r + k * factor], dtype=dt).reshape(k, factor).T  # (q, k)
        row = out[idx]
        for j in range(q):
            # y[m] += z[j, m - a + j] for 0 <= m - a + j < k
            lo = max(0, a - j)
            hi = min(m, k + a - j)
            if hi > lo:
                row[lo:hi] += z[j, lo - a + j:hi - a + j]
    # the outputs that reach outside the whole blocks (the first r samples, the tail shorter
    # than a block, or beyond the signal): directly, from a zero-padded copy of the edge
    tail = max(0, (r + k * factor + pre - L) // factor + 1)
    edge = sorted(set(range(min(a, m))) | set(range(min(tail, m), m)))
    hd = np.asarray(h, dtype=np.float64)
    for idx in np.ndindex(x.shape[:-1]):
        ch = x[idx]
        for mm in edge:
            s0 = mm * factor - pre
            seg = np.zeros(L)
            lo, hi = max(0, s0), min(T, s0 + L)
            seg[lo - s0:hi - s0] = ch[lo:hi]
            out[idx + (mm,)] = float(seg @ hd)
    return out
