"""Compiled inner loops for the meters (numba, cached on disk like dsp's kernels).

Why: ``scipy.signal`` costs 0.3-1.3 s to import and the K-weighting is two biquads; a
small loop here keeps the CLI's start-up to what torch itself needs.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def k_weighted_power(x, sos, state):  # pragma: no cover - compiled
    """Channel-summed power of the biquad cascade ``sos`` applied to x.

    x: (channels, n) C-contiguous float32 (one compiled specialisation); sos: (sections, 6) float64 normalised [b0 b1 b2 1 a1 a2];
    state: (sections, channels, 2) float64 transposed-direct-form-II memory, updated in
    place. Returns (n,) float64.
    """
    channels, n = x.shape
    sections = sos.shape[0]
    out = np.zeros(n)
    for c in range(channels):
        z = state[:, c, :].copy()
        for i in range(n):
            v = np.float64(x[c, i])
            for s in range(sections):
                b0, b1, b2 = sos[s, 0], sos[s, 1], sos[s, 2]
                a1, a2 = sos[s, 4], sos[s, 5]
                y = b0 * v + z[s, 0]
                z[s, 0] = b1 * v - a1 * y + z[s, 1]
                z[s, 1] = b2 * v - a2 * y
                v = y
            out[i] += v * v
        state[:, c, :] = z
    return out
