"""Compiled inner loops for the meters (numba, cached on disk like dsp's kernels).

Why: ``scipy.signal`` costs 0.3-1.3 s to import and the K-weighting is two biquads; a
small loop here keeps the CLI's start-up to what torch itself needs.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath=False)
def k_weighted_power(x, sos, state):  # pragma: no cover - compiled
    """Channel-summed power of the two-section biquad cascade ``sos`` applied to x.

    x: (channels, n) C-contiguous float32 (one compiled specialisation); sos: (2, 6) float64
    normalised [b0 b1 b2 1 a1 a2]; state: (2, channels, 2) float64 transposed-direct-form-II
    memory, updated in place. Returns (n,) float64.
    """
    channels, n = x.shape
    out = np.zeros(n)
    b00, b01, b02, a01, a02 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    b10, b11, b12, a11, a12 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
    for c in range(channels):
        z00, z01 = state[0, c, 0], state[0, c, 1]
        z10, z11 = state[1, c, 0], state[1, c, 1]
        for i in range(n):
            v = np.float64(x[c, i])
            y = b00 * v + z00
            z00 = b01 * v - a01 * y + z01
            z01 = b02 * v - a02 * y
            w = b10 * y + z10
            z10 = b11 * y - a11 * w + z11
            z11 = b12 * y - a12 * w
            out[i] += w * w
        state[0, c, 0], state[0, c, 1] = z00, z01
        state[1, c, 0], state[1, c, 1] = z10, z11
    return out


@njit(cache=True, nogil=True, fastmath=False)
def sos_filter_rows(x, sos, zi):  # pragma: no cover - compiled
    """A biquad cascade along each row of x, in place: what ``scipy.signal.sosfilt`` does.

    x: (rows, n) C-contiguous float64, overwritten with the output; sos: (sections, 6)
    float64 [b0 b1 b2 a0 a1 a2] with a0 = 1; zi: (sections, rows, 2) float64 transposed
    direct-form-II memory, updated in place (it holds the final state on return).
    """
    rows, n = x.shape
    for s in range(sos.shape[0]):
        b0, b1, b2, a1, a2 = sos[s, 0], sos[s, 1], sos[s, 2], sos[s, 4], sos[s, 5]
        for r in range(rows):
            z0, z1 = zi[s, r, 0], zi[s, r, 1]
            for i in range(n):
                v = x[r, i]
                y = b0 * v + z0
                z0 = b1 * v - a1 * y + z1
                z1 = b2 * v - a2 * y
                x[r, i] = y
            zi[s, r, 0], zi[s, r, 1] = z0, z1
