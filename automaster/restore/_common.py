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


def frames_view(x: np.ndarray, frame: int) -> np.ndarray:
    """(…, T) -> (…, T // frame, frame) view of whole frames (the tail is left out)."""
    n = x.shape[-1] // frame
    return x[..., :n * frame].reshape(x.shape[:-1] + (n, frame))
