"""The few filter designs and the zero-phase filtering restoration needs, in numpy (and one
compiled loop, :func:`automaster._kernels.sos_filter_rows`), so that restoration does not
import ``scipy.signal``: that import costs about 0.9 s after torch's here, on every master
with ``--restore auto`` (issue #10: auto may cost at most 20% over off).

Each function computes what the scipy function named in its docstring computes, with the
same conventions; tests/test_restore_filters.py checks them against scipy.
"""

from __future__ import annotations

import math

import numpy as np


def butter_sos(order: int, cutoff_hz: float, btype: str, sample_rate: float) -> np.ndarray:
    """Digital Butterworth low- or high-pass as second-order sections (sections, 6):
    ``scipy.signal.butter(order, cutoff_hz, btype, fs=sample_rate, output="sos")``'s
    filter (bilinear transform with the cut-off pre-warped; the sections may be ordered and
    scaled differently, the product is the same)."""
    if btype not in ("lowpass", "highpass"):
        raise ValueError(f"btype must be 'lowpass' or 'highpass', got {btype!r}")
    if order < 1 or not 0.0 < cutoff_hz < sample_rate / 2.0:
        raise ValueError(f"need order >= 1 and 0 < cutoff < Nyquist, got {order}, {cutoff_hz}")
    k = math.tan(math.pi * cutoff_hz / sample_rate)   # pre-warped analog cut-off, per 2 fs
    sections = []
    for m in range(order // 2):
        # analog pole pair at angle theta from the negative real axis: s^2 + 2 cos(theta) s + 1
        # (the poles sit pi / order apart, symmetric about the real axis; an odd order has
        # one on it)
        theta = math.pi * ((m + 1) / order if order % 2 else (2 * m + 1) / (2 * order))
        q2 = 2.0 * math.cos(theta)            # = 1 / Q
        a0 = 1.0 + q2 * k + k * k
        a1 = 2.0 * (k * k - 1.0) / a0
        a2 = (1.0 - q2 * k + k * k) / a0
        if btype == "lowpass":
            g = k * k / a0
            sections.append([g, 2.0 * g, g, 1.0, a1, a2])
        else:
            g = 1.0 / a0
            sections.append([g, -2.0 * g, g, 1.0, a1, a2])
    if order % 2:
        a1 = (k - 1.0) / (k + 1.0)
        g = k / (k + 1.0) if btype == "lowpass" else 1.0 / (k + 1.0)
        sign = 1.0 if btype == "lowpass" else -1.0
        sections.append([g, sign * g, 0.0, 1.0, a1, 0.0])
    return np.array(sections, dtype=np.float64)


def notch_sos(f0_hz: float, q: float, sample_rate: float) -> np.ndarray:
    """A second-order notch at ``f0_hz`` with quality ``q`` (-3 dB width f0 / q) as one
    section (1, 6): ``scipy.signal.iirnotch(f0_hz, q, fs=sample_rate)``'s b and a."""
    if not 0.0 < f0_hz < sample_rate / 2.0 or q <= 0:
        raise ValueError(f"need 0 < f0 < Nyquist and q > 0, got {f0_hz}, {q}")
    w0 = 2.0 * math.pi * f0_hz / sample_rate
    gain = 1.0 / (1.0 + math.tan(w0 / q / 2.0))
    c = math.cos(w0)
    return np.array([[gain, -2.0 * gain * c, gain, 1.0, -2.0 * gain * c, 2.0 * gain - 1.0]])


def sos_steady_state(sos: np.ndarray) -> np.ndarray:
    """(sections, 2) transposed-direct-form-II memory of the cascade at rest under a unit
    step input (``scipy.signal.sosfilt_zi``)."""
    zi = np.empty((sos.shape[0], 2))
    scale = 1.0
    for s, (b0, b1, b2, _, a1, a2) in enumerate(sos):
        # y = H(1) x at rest; z0 = y - b0 x, z1 = b2 x - a2 y (x = 1)
        dc = (b0 + b1 + b2) / (1.0 + a1 + a2)
        zi[s] = scale * np.array([dc - b0, b2 - a2 * dc])
        scale *= dc
    return zi


def sosfiltfilt(sos: np.ndarray, x: np.ndarray, padlen: int, about: str = "edge") -> np.ndarray:
    """Zero-phase filtering of the rows of x (..., n) along the last axis: forward and
    backward through the cascade, odd extension of ``padlen`` samples at both ends,
    initial state at rest for the extension's first value. With ``about="edge"`` the
    extension is point-symmetric about the first and last samples: ``scipy.signal.
    sosfiltfilt(sos, x, axis=-1, padtype="odd", padlen=padlen)``. With ``about="mean"``
    it is symmetric about the mean of the first and last ``max(1, padlen // 3)`` samples
    instead: audio cut anywhere has an arbitrary last sample, and reflecting about it
    puts a step of up to twice that value into what a high-pass sees (a thump at the
    edges, 0.12-0.34 of full scale on 12 s excerpts of corpus music through the 12 Hz
    high-pass), while the local mean carries a DC offset or drift across the edge.
    Returns float64 of x's shape."""
    from automaster._kernels import sos_filter_rows

    sos = np.ascontiguousarray(sos, dtype=np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6 or not np.allclose(sos[:, 3], 1.0):
        raise ValueError("sos must be (sections, 6) with a0 = 1")
    shape = x.shape
    rows = np.asarray(x, dtype=np.float64).reshape(-1, shape[-1])
    n = rows.shape[-1]
    if not 0 <= padlen < n:
        raise ValueError(f"padlen must be in [0, {n - 1}], got {padlen}")
    if about not in ("edge", "mean"):
        raise ValueError(f"about must be 'edge' or 'mean', got {about!r}")
    if padlen:
        if about == "mean":
            w = max(1, padlen // 3)
            first, last = rows[:, :w].mean(axis=1, keepdims=True), rows[:, -w:].mean(axis=1, keepdims=True)
        else:
            first, last = rows[:, :1], rows[:, -1:]
        left = 2.0 * first - rows[:, padlen:0:-1]
        right = 2.0 * last - rows[:, -2:-padlen - 2:-1]
        ext = np.concatenate([left, rows, right], axis=1)
    else:
        ext = rows.copy()
    zi = sos_steady_state(sos)                                      # (sections, 2)
    state = np.ascontiguousarray(zi[:, None, :] * ext[None, :, 0, None])
    sos_filter_rows(ext, sos, state)
    ext = np.ascontiguousarray(ext[:, ::-1])
    state = np.ascontiguousarray(zi[:, None, :] * ext[None, :, 0, None])
    sos_filter_rows(ext, sos, state)
    out = ext[:, ::-1][:, padlen:padlen + n]
    return np.ascontiguousarray(out).reshape(shape)


def kaiser_order(ripple_db: float, width: float) -> tuple[int, float]:
    """Taps and Kaiser beta for a low-pass with ``ripple_db`` attenuation and a transition
    ``width`` as a fraction of Nyquist (``scipy.signal.kaiserord``)."""
    a = abs(ripple_db)
    if a < 8:
        raise ValueError("the attenuation must be at least 8 dB")
    if a > 50:
        beta = 0.1102 * (a - 8.7)
    elif a > 21:
        beta = 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
    else:
        beta = 0.0
    taps = (a - 7.95) / 2.285 / (math.pi * width) + 1
    return int(math.ceil(taps)), beta


def kaiser_lowpass(taps: int, cutoff_hz: float, beta: float, sample_rate: float) -> np.ndarray:
    """Windowed-sinc low-pass FIR with unit gain at DC: ``scipy.signal.firwin(taps,
    cutoff_hz, window=("kaiser", beta), fs=sample_rate)``."""
    c = cutoff_hz / (sample_rate / 2.0)
    m = np.arange(taps) - (taps - 1) / 2.0
    h = c * np.sinc(c * m) * np.kaiser(taps, beta)
    return h / h.sum()
