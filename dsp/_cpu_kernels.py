"""Compiled CPU kernels for the recursive parts of the chain (numba, parallel over rows).

Every kernel works on 2-D row-major arrays ``(rows, samples)`` where a row is one
channel of one batch item, so a batch of stereo audio is ``batch * 2`` rows. The
recursions run in float64 whatever the I/O dtype, which keeps float32 results
within ~1e-6 of a float64 reference filter (see ``shared/notes/dsp-pitfalls.md``).
The pure-Python loops below are compiled to machine code; none of them runs in
the interpreter.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, nogil=True, parallel=True, fastmath=False)


@njit(**_OPTS)
def biquad_forward(x, coef, y):
    """Direct form II transposed biquad per row.

    x, y: (rows, samples); coef: (rows, 5) float64 = b0, b1, b2, a1, a2 (a0 = 1).
    """
    rows, n = x.shape
    for r in prange(rows):
        b0 = coef[r, 0]
        b1 = coef[r, 1]
        b2 = coef[r, 2]
        a1 = coef[r, 3]
        a2 = coef[r, 4]
        s1 = 0.0
        s2 = 0.0
        for t in range(n):
            xt = np.float64(x[r, t])
            yt = b0 * xt + s1
            s1 = b1 * xt - a1 * yt + s2
            s2 = b2 * xt - a2 * yt
            y[r, t] = yt


@njit(**_OPTS)
def biquad_backward(x, y, coef, g, dx, dcoef):
    """Adjoint of :func:`biquad_forward`.

    v[n] = g[n] - a1 v[n+1] - a2 v[n+2] is the gradient reaching y[n] through the
    recursion; then dx[n] = sum_k b_k v[n+k], db_k = sum v[n] x[n-k] and
    da_k = -sum v[n] y[n-k]. One reversed pass per row, float64 accumulators.
    """
    rows, n = x.shape
    for r in prange(rows):
        b0 = coef[r, 0]
        b1 = coef[r, 1]
        b2 = coef[r, 2]
        a1 = coef[r, 3]
        a2 = coef[r, 4]
        v1 = 0.0  # v[n+1]
        v2 = 0.0  # v[n+2]
        db0 = 0.0
        db1 = 0.0
        db2 = 0.0
        da1 = 0.0
        da2 = 0.0
        for t in range(n - 1, -1, -1):
            v = np.float64(g[r, t]) - a1 * v1 - a2 * v2
            dx[r, t] = b0 * v + b1 * v1 + b2 * v2
            db0 += v * x[r, t]
            if t >= 1:
                db1 += v * x[r, t - 1]
                da1 -= v * y[r, t - 1]
            if t >= 2:
                db2 += v * x[r, t - 2]
                da2 -= v * y[r, t - 2]
            v2 = v1
            v1 = v
        dcoef[r, 0] = db0
        dcoef[r, 1] = db1
        dcoef[r, 2] = db2
        dcoef[r, 3] = da1
        dcoef[r, 4] = da2


@njit(**_OPTS)
def smoother_forward(x, alpha, y):
    """Branching one-pole smoother per row.

    y[0] = x[0]; y[n] = a y[n-1] + (1 - a) x[n], with a = alpha[r, 0] when the input
    rises above the state (x[n] > y[n-1]) and alpha[r, 1] otherwise.
    x, y: (rows, samples); alpha: (rows, 2) float64 = (rising, falling).
    """
    rows, n = x.shape
    for r in prange(rows):
        au = alpha[r, 0]
        ad = alpha[r, 1]
        s = np.float64(x[r, 0])
        y[r, 0] = s
        for t in range(1, n):
            xt = np.float64(x[r, t])
            a = au if xt > s else ad
            s = a * s + (1.0 - a) * xt
            y[r, t] = s


@njit(**_OPTS)
def smoother_backward(x, y, alpha, g, dx, dalpha):
    """Adjoint of :func:`smoother_forward`; the branch is re-derived from x and y."""
    rows, n = x.shape
    for r in prange(rows):
        au = alpha[r, 0]
        ad = alpha[r, 1]
        v_next = 0.0
        a_next = 0.0
        dau = 0.0
        dad = 0.0
        for t in range(n - 1, 0, -1):
            v = np.float64(g[r, t]) + a_next * v_next
            xt = np.float64(x[r, t])
            yp = np.float64(y[r, t - 1])
            rising = xt > yp
            a = au if rising else ad
            dx[r, t] = (1.0 - a) * v
            d = v * (yp - xt)
            if rising:
                dau += d
            else:
                dad += d
            v_next = v
            a_next = a
        v0 = np.float64(g[r, 0]) + a_next * v_next
        dx[r, 0] = v0
        dalpha[r, 0] = dau
        dalpha[r, 1] = dad


@njit(**_OPTS)
def sliding_min_forward(x, window, y, idx):
    """Running minimum over the look-ahead window [n, n + window - 1] per row.

    Monotonic deque, O(samples) per row. The window is clipped at the end of the
    row. x, y: (rows, samples); idx: (rows, samples) int64 argmin positions.
    """
    rows, n = x.shape
    for r in prange(rows):
        dq = np.empty(n, dtype=np.int64)
        head = 0
        tail = 0  # deque holds indices with increasing values
        nxt = 0   # next index to push
        for t in range(n):
            end = min(n, t + window)
            while nxt < end:
                v = x[r, nxt]
                while tail > head and x[r, dq[tail - 1]] >= v:
                    tail -= 1
                dq[tail] = nxt
                tail += 1
                nxt += 1
            while dq[head] < t:
                head += 1
            j = dq[head]
            y[r, t] = x[r, j]
            idx[r, t] = j
