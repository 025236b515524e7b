"""Compiled CPU kernels for the fused multi-resolution STFT loss (``train/_stft_loss.py``).

Imported lazily, only on CPU, so that importing ``train.metrics`` never loads numba.
Rows are one channel of one batch item. Spectra come as ``torch.fft.rfft`` returns
them, ``(rows, frames, bins)`` complex, and are passed here as their real views
``(rows, frames, 2 * bins)`` (re, im interleaved), which torch's own elementwise
kernels handle poorly: a complex-times-real multiply of 4 M bins costs ~50 ms at one
thread. The kernels use numpy's error model (a float division does not test for
zero, so loops vectorize); only the per-row float64 sums may be reassociated.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, nogil=True, parallel=True, error_model="numpy")


@njit(**_OPTS)
def frame_window(x, n_valid, window, hop, pad, out):
    """out[r, f, n] = window[n] * x[r, f * hop + n - pad], zero where that index falls
    outside [0, n_valid): the centre padding (and the zero padding of short inputs to
    one window) without materializing the padded signal."""
    rows, n_frames, n_fft = out.shape
    for r in prange(rows):
        xr = x[r]
        for f in range(n_frames):
            o = out[r, f]
            start = f * hop - pad
            lo = min(max(0, -start), n_fft)
            hi = max(min(n_fft, n_valid - start), lo)
            # slices keep every index a plain non-negative loop counter, so the
            # compiler needs no negative-index wraparound and the loops vectorize
            xs = xr[start + lo: start + hi]
            ws = window[lo:hi]
            os = o[lo:hi]
            for i in range(hi - lo):
                os[i] = ws[i] * xs[i]
            for n in range(lo):
                o[n] = 0.0
            for n in range(hi, n_fft):
                o[n] = 0.0


@njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath={"reassoc"})
def magnitude_stats(zp, zt, eps2, ratio, sums):
    """Per bin P = sqrt(re_p^2 + im_p^2 + eps2), T likewise from zt; writes
    ratio = max(P, T) / min(P, T) (so that |log T - log P| = log ratio, taken outside
    with torch's vectorized log) and sums[r] = (sum (T - P)^2, sum T^2) over the row.
    zp, zt: (rows, 2 m) interleaved; ratio: (rows, m); eps2 has the data's dtype."""
    rows, m = ratio.shape
    for r in prange(rows):
        a = zp[r]
        b = zt[r]
        q = ratio[r]
        dd = 0.0
        tt = 0.0
        for j in range(m):
            ar = a[2 * j]
            ai = a[2 * j + 1]
            br = b[2 * j]
            bi = b[2 * j + 1]
            p = np.sqrt(ar * ar + ai * ai + eps2)
            t = np.sqrt(br * br + bi * bi + eps2)
            d = t - p
            dd += np.float64(d) * d
            tt += np.float64(t) * t
            q[j] = max(p, t) / min(p, t)
        sums[r, 0] = dd
        sums[r, 1] = tt


@njit(**_OPTS)
def spectrum_gradient(zp, zt, eps2, sc_coef, norm, log_coef, bin_weight):
    """In place on zp (rows, frames, 2 bins): each bin times
    s = (sc_coef[r] (P - T) / norm[r] + log_coef[r] sgn(P - T) / P) / P * bin_weight[k],
    the gradient of the loss with respect to the complex spectrum (d loss / d P times
    Z / P), already weighted for the rfft adjoint."""
    rows, n_frames, m2 = zp.shape
    n_bins = m2 // 2
    for r in prange(rows):
        a_r = sc_coef[r]
        n_r = norm[r]
        c_r = log_coef[r]
        for f in range(n_frames):
            a = zp[r, f]
            b = zt[r, f]
            for k in range(n_bins):
                ar = a[2 * k]
                ai = a[2 * k + 1]
                br = b[2 * k]
                bi = b[2 * k + 1]
                p = np.sqrt(ar * ar + ai * ai + eps2)
                t = np.sqrt(br * br + bi * bi + eps2)
                d = p - t
                s = (a_r * (d / n_r) + c_r * np.sign(d) / p) / p * bin_weight[k]
                a[2 * k] = ar * s
                a[2 * k + 1] = ai * s


@njit(**_OPTS)
def overlap_add(g, window, hop, pad, out):
    """Adjoint of :func:`frame_window`: out[r, t] += sum_f window[n] g[r, f, n] over
    the frames covering t = f * hop + n - pad, for t inside [0, out.shape[1])."""
    rows, n_frames, n_fft = g.shape
    n_out = out.shape[1]
    for r in prange(rows):
        o = out[r]
        for f in range(n_frames):
            start = f * hop - pad
            lo = min(max(0, -start), n_fft)
            hi = max(min(n_fft, n_out - start), lo)
            gs = g[r, f, lo:hi]
            ws = window[lo:hi]
            os = o[start + lo: start + hi]
            for i in range(hi - lo):
                os[i] += ws[i] * gs[i]
