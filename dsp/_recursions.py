"""The per-row recursions, written once and compiled for both targets.

Each function processes row ``r`` of 2-D ``(rows, samples)`` arrays. The CPU kernels
(:mod:`dsp._cpu_kernels`) compile them with ``numba.njit`` and run rows in parallel;
the CUDA kernels (:mod:`dsp._cuda_kernels`) compile the same source as device
functions, one thread per row. Only arithmetic and indexing both targets support is
used; ``1.0 * v`` promotes float32 samples to float64 state.
"""

from __future__ import annotations


def biquad_forward_row(x, coef, y, r):
    """Direct form II transposed biquad; coef[r] = b0, b1, b2, a1, a2 (a0 = 1)."""
    b0 = coef[r, 0]
    b1 = coef[r, 1]
    b2 = coef[r, 2]
    a1 = coef[r, 3]
    a2 = coef[r, 4]
    s1 = 0.0
    s2 = 0.0
    for t in range(x.shape[1]):
        xt = 1.0 * x[r, t]
        yt = b0 * xt + s1
        s1 = b1 * xt - a1 * yt + s2
        s2 = b2 * xt - a2 * yt
        y[r, t] = yt


def biquad_backward_row(x, y, coef, g, dx, dcoef, r):
    """Adjoint of :func:`biquad_forward_row`.

    v[n] = g[n] - a1 v[n+1] - a2 v[n+2] is the gradient reaching y[n] through the
    recursion; then dx[n] = sum_k b_k v[n+k], db_k = sum v[n] x[n-k] and
    da_k = -sum v[n] y[n-k]. One reversed pass, float64 accumulators.
    """
    n = x.shape[1]
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
    for i in range(n):
        t = n - 1 - i
        v = 1.0 * g[r, t] - a1 * v1 - a2 * v2
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


def smoother_forward_row(x, alpha, y, r):
    """Branching one-pole: y[0] = x[0]; y[n] = a y[n-1] + (1 - a) x[n], with
    a = alpha[r, 0] while the input is above the state, alpha[r, 1] otherwise."""
    au = alpha[r, 0]
    ad = alpha[r, 1]
    s = 1.0 * x[r, 0]
    y[r, 0] = s
    for t in range(1, x.shape[1]):
        xt = 1.0 * x[r, t]
        a = au if xt > s else ad
        s = a * s + (1.0 - a) * xt
        y[r, t] = s


def smoother_backward_row(x, y, alpha, g, dx, dalpha, r):
    """Adjoint of :func:`smoother_forward_row`; the branch is re-derived from x and y."""
    n = x.shape[1]
    au = alpha[r, 0]
    ad = alpha[r, 1]
    v_next = 0.0
    a_next = 0.0
    dau = 0.0
    dad = 0.0
    for i in range(n - 1):
        t = n - 1 - i
        v = 1.0 * g[r, t] + a_next * v_next
        xt = 1.0 * x[r, t]
        yp = 1.0 * y[r, t - 1]
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
    dx[r, 0] = 1.0 * g[r, 0] + a_next * v_next
    dalpha[r, 0] = dau
    dalpha[r, 1] = dad
