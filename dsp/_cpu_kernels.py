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


# The per-row recursions live in this file (not in a shared module) on purpose: numba's
# on-disk cache is keyed by the stamp of the file that defines a cached kernel, so a
# kernel inlining functions from another file kept returning the old behaviour after
# that file changed.
_ROW = dict(cache=True, nogil=True, fastmath=False)


@njit(**_ROW)
def _biquad_fwd_row(x, coef, y, r):
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


@njit(**_ROW)
def _smoother_fwd_row(x, alpha, y, r):
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


@njit(**_ROW)
def _smoother_bwd_row(x, y, alpha, g, dx, dalpha, r):
    """Adjoint of :func:`_smoother_fwd_row`; the branch is re-derived from x and y."""
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


@njit(**_OPTS)
def biquad_forward(x, coef, y):
    """Biquad per row (see _biquad_fwd_row). x, y: (rows, samples); coef: (rows, 5) float64."""
    for r in prange(x.shape[0]):
        _biquad_fwd_row(x, coef, y, r)


@njit(**_OPTS)
def biquad_backward(x, y, coef, g, dx, dcoef):
    """Adjoint of :func:`biquad_forward`; dcoef: (rows, 5) float64. Rows go in fours: the
    recursions side by side (:func:`_allpole_adjoint4`; lanes past the last row repeat
    it), then each row's products, which vectorize. dx may be g itself."""
    rows, n = x.shape
    for j in prange((rows + 3) // 4):
        r0 = 4 * j
        nr = min(4, rows - r0)
        v = np.empty((4, n + 2))
        gi = np.empty(4, dtype=np.int64)
        a1 = np.empty(4)
        a2 = np.empty(4)
        for k in range(4):
            r = r0 + min(k, nr - 1)
            gi[k] = r
            a1[k] = coef[r, 3]
            a2[k] = coef[r, 4]
        _allpole_adjoint4(g, gi, a1, a2, v, True)
        for k in range(nr):
            r = r0 + k
            for m in range(5):
                dcoef[r, m] = 0.0
            _adjoint_products(v[k], x[r], y[r], dx[r], coef[r], dcoef[r], True)


@njit(**_OPTS)
def smoother_forward(x, alpha, y):
    """Branching one-pole smoother per row; alpha: (rows, 2) float64 = (rising, falling)."""
    for r in prange(x.shape[0]):
        _smoother_fwd_row(x, alpha, y, r)


@njit(**_OPTS)
def smoother_backward(x, y, alpha, g, dx, dalpha):
    """Adjoint of :func:`smoother_forward`; dalpha: (rows, 2) float64."""
    for r in prange(x.shape[0]):
        _smoother_bwd_row(x, y, alpha, g, dx, dalpha, r)


@njit(cache=True, nogil=True)
def _sliding_min_segment(xs, w, t_end, y, idx, offset, want_idx):
    """van Herk / Gil-Werman on one segment ``xs`` (samples), writing outputs for
    t in [0, t_end) to y[offset + t] (and argmins to idx); windows are clipped at the
    segment end, which the caller places at the row end or past every window."""
    n = xs.shape[0]
    suf = np.empty(n, dtype=xs.dtype)
    suf_i = np.empty(n if want_idx else 1, dtype=np.int32)
    r = n % w  # (t + 1) % w, kept by a counter: an integer division per sample cost more than the rest
    for t in range(n - 1, -1, -1):
        v = xs[t]
        if t == n - 1 or r == 0 or v <= suf[t + 1]:
            suf[t] = v
            if want_idx:
                suf_i[t] = t
        else:
            suf[t] = suf[t + 1]
            if want_idx:
                suf_i[t] = suf_i[t + 1]
        r = r - 1 if r > 0 else w - 1
    pre = xs[0]
    pre_i = 0
    m = -1  # e % w
    for e in range(t_end + w - 1):
        m = m + 1 if m < w - 1 else 0
        if e < n:
            v = xs[e]
            if m == 0 or v < pre:
                pre = v
                pre_i = e
        t = e - w + 1
        if t < 0:
            continue
        if t >= t_end:
            break
        # t = e - w + 1 lies in another block than e unless e ends a block (m == w - 1)
        other = m != w - 1 if e < n else (n - 1) // w != t // w
        if other and pre < suf[t]:
            y[offset + t] = pre
            if want_idx:
                idx[offset + t] = offset + pre_i
        else:
            y[offset + t] = suf[t]
            if want_idx:
                idx[offset + t] = offset + suf_i[t]


_SLIDING_CHUNK = 1 << 20


@njit(**_OPTS)
def sliding_min_forward(x, window, y, idx, want_idx):
    """Running minimum over the look-ahead window [n, n + window - 1] per row.

    van Herk / Gil-Werman: a window spans at most two blocks of ``window`` samples,
    so its minimum is min(suffix-min of its first block from n, prefix-min of its
    last block up to n + window - 1); O(samples), branch-light. Long rows are cut
    into chunks (each reading ``window - 1`` samples past its end) that run in
    parallel. The window is clipped at the end of the row. x, y: (rows, samples);
    idx: (rows, samples) int64 argmin positions, filled only when ``want_idx``.
    """
    rows, n = x.shape
    w = window
    chunks = max(1, (n + _SLIDING_CHUNK - 1) // _SLIDING_CHUNK)
    for job in prange(rows * chunks):
        r = job // chunks
        c0 = (job % chunks) * _SLIDING_CHUNK
        c1 = min(n, c0 + _SLIDING_CHUNK)
        end = min(n, c1 + w - 1)
        _sliding_min_segment(x[r, c0:end], w, c1 - c0, y[r], idx[r] if want_idx else idx[0], c0, want_idx)


@njit(**_ROW)
def _cascade2_row(x, coef, y, ys, store, r):
    """Two biquads in series on row r, the same arithmetic as the general loop of
    :func:`biquad_cascade_forward` (bit-identical) with the state in scalars."""
    b00 = coef[r, 0, 0]
    b01 = coef[r, 0, 1]
    b02 = coef[r, 0, 2]
    a01 = coef[r, 0, 3]
    a02 = coef[r, 0, 4]
    b10 = coef[r, 1, 0]
    b11 = coef[r, 1, 1]
    b12 = coef[r, 1, 2]
    a11 = coef[r, 1, 3]
    a12 = coef[r, 1, 4]
    s01 = 0.0
    s02 = 0.0
    s11 = 0.0
    s12 = 0.0
    for t in range(x.shape[1]):
        v = np.float64(x[r, t])
        o = b00 * v + s01
        s01 = b01 * v - a01 * o + s02
        s02 = b02 * v - a02 * o
        if store:
            ys[0, r, t] = o
        w = b10 * o + s11
        s11 = b11 * o - a11 * w + s12
        s12 = b12 * o - a12 * w
        y[r, t] = w


@njit(**_ROW)
def _cascade8_row(x, coef, y, ys, store, r):
    """Four to eight biquads in series on row r, skewed in time: at step t section k
    takes what section k - 1 gave at step t - 1, so the eight sections of one step are
    independent and run side by side (instruction-level parallelism; 1.7x the general
    loop for the 7-section EQ; below four sections the padding costs more than it gains).
    Sections past the cascade are exact pass-throughs (b0 = 1) that only delay; each
    section does the arithmetic of :func:`biquad_cascade_forward` in the same order, so
    the result is bit-identical. The sections are written out so that their states stay
    in registers: the same skew over arrays of states measured no faster than the
    general loop."""
    n = x.shape[1]
    ns = coef.shape[1]
    c = np.zeros((8, 5))
    for k in range(8):
        if k < ns:
            for j in range(5):
                c[k, j] = coef[r, k, j]
        else:
            c[k, 0] = 1.0
    b00, b10, b20, a10, a20 = c[0, 0], c[0, 1], c[0, 2], c[0, 3], c[0, 4]
    b01, b11, b21, a11, a21 = c[1, 0], c[1, 1], c[1, 2], c[1, 3], c[1, 4]
    b02, b12, b22, a12, a22 = c[2, 0], c[2, 1], c[2, 2], c[2, 3], c[2, 4]
    b03, b13, b23, a13, a23 = c[3, 0], c[3, 1], c[3, 2], c[3, 3], c[3, 4]
    b04, b14, b24, a14, a24 = c[4, 0], c[4, 1], c[4, 2], c[4, 3], c[4, 4]
    b05, b15, b25, a15, a25 = c[5, 0], c[5, 1], c[5, 2], c[5, 3], c[5, 4]
    b06, b16, b26, a16, a26 = c[6, 0], c[6, 1], c[6, 2], c[6, 3], c[6, 4]
    b07, b17, b27, a17, a27 = c[7, 0], c[7, 1], c[7, 2], c[7, 3], c[7, 4]
    s10 = s20 = o0 = 0.0
    s11 = s21 = o1 = 0.0
    s12 = s22 = o2 = 0.0
    s13 = s23 = o3 = 0.0
    s14 = s24 = o4 = 0.0
    s15 = s25 = o5 = 0.0
    s16 = s26 = o6 = 0.0
    s17 = s27 = o7 = 0.0
    for t in range(n + 7):
        v0 = np.float64(x[r, t]) if t < n else 0.0
        v1, v2, v3, v4, v5, v6, v7 = o0, o1, o2, o3, o4, o5, o6
        o0 = b00 * v0 + s10
        s10 = b10 * v0 - a10 * o0 + s20
        s20 = b20 * v0 - a20 * o0
        o1 = b01 * v1 + s11
        s11 = b11 * v1 - a11 * o1 + s21
        s21 = b21 * v1 - a21 * o1
        o2 = b02 * v2 + s12
        s12 = b12 * v2 - a12 * o2 + s22
        s22 = b22 * v2 - a22 * o2
        o3 = b03 * v3 + s13
        s13 = b13 * v3 - a13 * o3 + s23
        s23 = b23 * v3 - a23 * o3
        o4 = b04 * v4 + s14
        s14 = b14 * v4 - a14 * o4 + s24
        s24 = b24 * v4 - a24 * o4
        o5 = b05 * v5 + s15
        s15 = b15 * v5 - a15 * o5 + s25
        s25 = b25 * v5 - a25 * o5
        o6 = b06 * v6 + s16
        s16 = b16 * v6 - a16 * o6 + s26
        s26 = b26 * v6 - a26 * o6
        o7 = b07 * v7 + s17
        s17 = b17 * v7 - a17 * o7 + s27
        s27 = b27 * v7 - a27 * o7
        if store:
            if 6 <= t < n:  # every kept section has an output at this step (4 <= ns)
                ys[0, r, t] = o0
                ys[1, r, t - 1] = o1
                ys[2, r, t - 2] = o2
                if ns > 4:
                    ys[3, r, t - 3] = o3
                if ns > 5:
                    ys[4, r, t - 4] = o4
                if ns > 6:
                    ys[5, r, t - 5] = o5
                if ns > 7:
                    ys[6, r, t - 6] = o6
            else:  # the skew's first and last steps
                outs = (o0, o1, o2, o3, o4, o5, o6)
                for k in range(ns - 1):
                    if k <= t < n + k:
                        ys[k, r, t - k] = outs[k]
        if t >= 7:
            y[r, t - 7] = o7


@njit(**_OPTS)
def biquad_cascade_forward(x, coef, y, ys, store):
    """Several biquads in series in one pass.

    x, y: (rows, samples); coef: (rows, sections, 5) float64. With ``store``, the
    outputs of sections 0 .. S-2 are also kept in ys (sections - 1, rows, samples) for
    the adjoint (the last one is y).
    """
    rows, n = x.shape
    ns = coef.shape[1]
    for r in prange(rows):
        if ns == 1:
            _biquad_fwd_row(x, coef[:, 0], y, r)
            continue
        if ns == 2:  # Linkwitz-Riley halves, K-weighting: the state in registers (1.5x)
            _cascade2_row(x, coef, y, ys, store, r)
            continue
        if 4 <= ns <= 8:  # the EQ: sections side by side
            _cascade8_row(x, coef, y, ys, store, r)
            continue
        s1 = np.zeros(ns)
        s2 = np.zeros(ns)
        c = coef[r]
        for t in range(n):
            v = np.float64(x[r, t])
            for k in range(ns):
                out = c[k, 0] * v + s1[k]
                s1[k] = c[k, 1] * v - c[k, 3] * out + s2[k]
                s2[k] = c[k, 2] * v - c[k, 4] * out
                v = out
                if store and k < ns - 1:
                    ys[k, r, t] = out
            y[r, t] = v


_TP_BLOCK = 128  # outputs filtered tap by tap per block: 4x fewer loop set-ups than 32 (2x faster)




@njit(**_ROW)
def _taps_l1(taps):
    """Largest sum of |taps| over the interpolator's phases: no in-between value can exceed
    the largest |sample| of its neighbourhood times this."""
    l1 = 0.0
    for p in range(taps.shape[0]):
        s = 0.0
        for k in range(taps.shape[1]):
            s += abs(taps[p, k])
        l1 = max(l1, s)
    return l1


@njit(**_OPTS)
def true_peak_max_forward(x, taps, out):
    """Per-item true peak (largest |value| of the 4x-oversampled signal), no envelope.

    x: (batch, channels, samples); taps: (3, K) interpolator phases as in
    :func:`true_peak_envelope_forward` (value at n + p/4 from x[n-K/2+1 .. n+K/2], zero
    outside); out: (batch,). The answer is at least the sample peak S, and an in-between
    value can only exceed S near samples above S / sum|taps|, so only those blocks are
    filtered; nothing is stored per sample.
    """
    nb, nc, n = x.shape
    k_len = taps.shape[1]
    half = k_len // 2
    l1 = _taps_l1(taps)
    nblocks = (n + _TP_BLOCK - 1) // _TP_BLOCK
    bpeak = np.zeros((nb, nblocks))
    for job in prange(nb * nblocks):
        b = job // nblocks
        t0 = (job % nblocks) * _TP_BLOCK
        t1 = min(n, t0 + _TP_BLOCK)
        m = 0.0
        for c in range(nc):
            for t in range(t0, t1):
                a = abs(x[b, c, t])
                if a > m:
                    m = a
        bpeak[b, job % nblocks] = m
    for b in range(nb):
        out[b] = bpeak[b].max() if nblocks else 0.0
    bmax = np.zeros((nb, nblocks))
    per = 64  # blocks per job: the scratch row is allocated once per job
    njobs = (nblocks + per - 1) // per
    for job in prange(nb * njobs):
        b = job // njobs
        first = (job % njobs) * per
        acc = np.empty(_TP_BLOCK, dtype=x.dtype)
        seg = np.zeros(_TP_BLOCK + k_len, dtype=x.dtype)
        for blk in range(first, min(nblocks, first + per)):
            # samples that feed this block's in-between values: blocks blk-1 .. blk+1
            local = bpeak[b, blk]
            if blk > 0:
                local = max(local, bpeak[b, blk - 1])
            if blk + 1 < nblocks:
                local = max(local, bpeak[b, blk + 1])
            if local * l1 <= out[b]:
                continue
            t0 = blk * _TP_BLOCK
            m = min(n, t0 + _TP_BLOCK) - t0
            j0 = t0 - half + 1
            inside = j0 >= 0 and t0 + m - half + k_len <= n
            best = 0.0
            for c in range(nc):
                if inside:
                    seg[: m + k_len - 1] = x[b, c, j0: j0 + m + k_len - 1]
                else:
                    for i in range(m + k_len - 1):
                        j = j0 + i
                        seg[i] = x[b, c, j] if j >= 0 and j < n else 0.0
                for p in range(3):
                    acc[:] = 0.0
                    for k in range(k_len):  # contiguous outputs per tap: vectorizes
                        w = taps[p, k]
                        for i in range(m):
                            acc[i] += w * seg[i + k]
                    for i in range(m):
                        a = abs(acc[i])
                        if a > best:
                            best = a
            bmax[b, blk] = best
    for b in range(nb):
        if nblocks:
            out[b] = max(out[b], bmax[b].max())


@njit(**_OPTS)
def true_peak_envelope_forward(x, taps, floor, env, code):
    """Channel-linked true-peak envelope over [n-1, n+1) per batch item.

    x: (batch, channels, samples); taps: (3, K) interpolator phases (value at
    n + p/4 from x[n-K/2+1 .. n+K/2]); floor: (batch,) level below which in-between
    values need not be exact -- a block whose samples are so low that no
    interpolated value can reach ``floor`` keeps its sample peaks (a lower bound),
    which skips most of the filtering on music. env: (batch, samples) output;
    code: (batch, samples) int32 provenance ((shift * channels + c) * 4 + p) * 2 + neg
    for the adjoint. Blocks of 32 outputs are filtered tap by tap so the inner loop
    runs over contiguous outputs (SIMD).
    """
    nb, nc, n = x.shape
    k_len = taps.shape[1]
    half = k_len // 2
    l1 = _taps_l1(taps)
    nblocks = (n + _TP_BLOCK - 1) // _TP_BLOCK
    for job in prange(nb * nblocks):
        b = job // nblocks
        blk = job % nblocks
        t0 = blk * _TP_BLOCK
        t1 = min(n, t0 + _TP_BLOCK)
        m = t1 - t0
        lo = max(0, t0 - half)
        hi = min(n, t1 + half + 1)
        local = 0.0
        for c in range(nc):
            for t in range(lo, hi):
                a = abs(x[b, c, t])
                if a > local:
                    local = a
        exact = local * l1 >= floor[b]
        best = np.full(m, -1.0, dtype=x.dtype)
        bcode = np.zeros(m, dtype=np.int32)
        seg = np.zeros(m + k_len, dtype=x.dtype)  # x[t0-half+1 .. t1+half], zero outside
        acc = np.empty(m, dtype=x.dtype)
        for c in range(nc):
            for i in range(m):
                v = x[b, c, t0 + i]
                a = abs(v)
                if a > best[i]:
                    best[i] = a
                    bcode[i] = (c * 4) * 2 + (1 if v < 0 else 0)
            if not exact:
                continue
            for i in range(m + k_len - 1):
                j = t0 - half + 1 + i
                seg[i] = x[b, c, j] if j >= 0 and j < n else 0.0
            for p in range(3):
                acc[:] = 0.0
                for k in range(k_len):
                    w = taps[p, k]
                    for i in range(m):
                        acc[i] += w * seg[i + k]
                for i in range(m):
                    a = abs(acc[i])
                    if a > best[i]:
                        best[i] = a
                        bcode[i] = (c * 4 + p + 1) * 2 + (1 if acc[i] < 0 else 0)
        for i in range(m):
            env[b, t0 + i] = best[i]
            code[b, t0 + i] = bcode[i]
    # extend each value over the previous interval: env2[n] = max(env[n-1], env[n])
    for b in prange(nb):
        prev = env[b, 0]
        prev_code = code[b, 0]
        for t in range(1, n):
            cur = env[b, t]
            cur_code = code[b, t]
            if prev > cur:
                env[b, t] = prev
                code[b, t] = prev_code + nc * 8  # shift = 1: the source is sample t-1
            prev = cur
            prev_code = cur_code


@njit(**_OPTS)
def true_peak_envelope_backward(g, code, taps, nc, dx):
    """Adjoint of :func:`true_peak_envelope_forward`: scatters g (batch, samples)
    into dx (batch, channels, samples), which must be zeroed."""
    nb, n = g.shape
    k_len = taps.shape[1]
    half = k_len // 2
    for b in prange(nb):
        for t in range(n):
            gv = g[b, t]
            if gv == 0.0:
                continue
            cd = code[b, t]
            neg = cd & 1
            cd >>= 1
            p = cd % 4
            cd //= 4
            c = cd % nc
            shift = cd // nc
            src = t - shift
            if neg:
                gv = -gv
            if p == 0:
                dx[b, c, src] += gv
            else:
                for k in range(k_len):
                    j = src + k - half + 1
                    if j >= 0 and j < n:
                        dx[b, c, j] += gv * taps[p - 1, k]


@njit(**_OPTS)
def moving_average_forward(x, window, y):
    """Trailing moving average over [n - window + 1, n], the first value replicated
    before the start. x, y: (rows, samples); float64 running sum."""
    rows, n = x.shape
    inv = 1.0 / window
    for r in prange(rows):
        first = np.float64(x[r, 0])
        acc = first * window
        for t in range(n):
            acc += np.float64(x[r, t])
            j = t - window
            acc -= np.float64(x[r, j]) if j >= 0 else first
            y[r, t] = acc * inv


@njit(**_OPTS)
def moving_average_backward(g, window, dx):
    """Adjoint of :func:`moving_average_forward` (g, dx: (rows, samples))."""
    rows, n = g.shape
    inv = 1.0 / window
    for r in prange(rows):
        acc = 0.0  # sum of g[t .. t + window - 1]
        for t in range(n - 1, -1, -1):
            acc += np.float64(g[r, t])
            j = t + window
            if j < n:
                acc -= np.float64(g[r, j])
            dx[r, t] = acc * inv
        # the replicated first sample collects the windows that reach before the start
        extra = 0.0
        for t in range(min(n, window - 1)):
            extra += np.float64(g[r, t]) * (window - 1 - t)
        dx[r, 0] += extra * inv


@njit(**_OPTS)
def limiter_pass_forward(hold, scale, ceiling, alpha, window, power, step, gain, energy):
    """One fused limiter gain computation plus the loudness energy it yields (no adjoint).

    hold: (batch, samples) look-ahead peak hold of the envelope; scale: (batch,) pre-gain
    k; ceiling: (batch,) linear; alpha: (batch,) release pole; window: look-ahead + 1.
    gain (batch, samples) receives G = movavg(smooth(min(1, ceiling / (k hold)))) --
    the same arithmetic as the differentiable composition -- and energy
    (batch, samples // step) the mean of power * (k G)^2 over each step.
    """
    nb, n = hold.shape
    nsub = energy.shape[1]
    inv = 1.0 / window
    for b in prange(nb):
        k = scale[b]
        c = ceiling[b]
        a = alpha[b]
        buf = np.empty(window)
        y = min(1.0, c / (k * max(np.float64(hold[b, 0]), 1e-9)))
        for i in range(window):
            buf[i] = y
        acc = y * window
        esum = 0.0
        j = 0
        slot = 0  # t % window and (t + 1) % step as counters, not divisions
        left = step
        for t in range(n):
            g1 = min(1.0, c / (k * max(np.float64(hold[b, t]), 1e-9)))
            if g1 <= y:
                y = g1
            else:
                y = a * y + (1.0 - a) * g1
            acc += y - buf[slot]
            buf[slot] = y
            slot = slot + 1 if slot < window - 1 else 0
            g = acc * inv
            gain[b, t] = g
            tot = k * g
            esum += power[b, t] * tot * tot
            left -= 1
            if left == 0:
                left = step
                if j < nsub:
                    energy[b, j] = esum / step
                j += 1
                esum = 0.0



@njit(**_OPTS)
def gain_and_kweight_forward(y, gain, coef, step, out, energy):
    """out = y * gain, and the mean K-weighted power of ``out`` per 100 ms step (no adjoint).

    y, out: (batch, channels, samples); gain: (batch, samples); coef: (2, 5) float64
    K-weighting sections; energy: (batch, channels, samples // step) float64.
    """
    nb, nc, n = y.shape
    nsub = energy.shape[2]
    for job in prange(nb * nc):
        b = job // nc
        c = job % nc
        s10 = 0.0
        s11 = 0.0
        s20 = 0.0
        s21 = 0.0
        esum = 0.0
        j = 0
        left = step
        for t in range(n):
            o = y[b, c, t] * gain[b, t]
            out[b, c, t] = o
            v = np.float64(o)
            u = coef[0, 0] * v + s10
            s10 = coef[0, 1] * v - coef[0, 3] * u + s11
            s11 = coef[0, 2] * v - coef[0, 4] * u
            w = coef[1, 0] * u + s20
            s20 = coef[1, 1] * u - coef[1, 3] * w + s21
            s21 = coef[1, 2] * u - coef[1, 4] * w
            esum += w * w
            left -= 1
            if left == 0:
                left = step
                if j < nsub:
                    energy[b, c, j] = esum / step
                j += 1
                esum = 0.0


# ------------------------------------------------------- fused three-band compressor (no adjoint)
@njit(**_ROW)
def _biquad_pair_row(src, dst, coef):
    """The biquad ``coef`` (b0, b1, b2, a1, a2) over 1-D src into dst, two samples per
    step: with the transposed direct form's state s = (s1, s2) advancing as
    s' = A s + B x (A = [[-a1, 1], [-a2, 0]], B = (b1 - a1 b0, b2 - a2 b0)), the state
    two samples on is A^2 s + A B x[t] + B x[t+1], so the recursion that bounds the speed
    is one step per two samples (1.6x the sample-by-sample loop on the crossover); the
    outputs come off that path. Same filter to float64 rounding (scipy's sosfilt within
    1e-14). Reads x[t], x[t+1] before writing y[t], y[t+1]: safe in place."""
    b0 = coef[0]
    b1 = coef[1]
    b2 = coef[2]
    a1 = coef[3]
    a2 = coef[4]
    B0 = b1 - a1 * b0
    B1 = b2 - a2 * b0
    p00 = a1 * a1 - a2  # A^2
    p01 = -a1
    p10 = a1 * a2
    p11 = -a2
    q0 = B1 - a1 * B0  # A B
    q1 = -a2 * B0
    s1 = 0.0
    s2 = 0.0
    n = src.shape[0]
    t = 0
    while t + 1 < n:
        x0 = np.float64(src[t])
        x1 = np.float64(src[t + 1])
        y0 = b0 * x0 + s1
        y1 = b0 * x1 + (s2 - a1 * s1 + B0 * x0)
        n1 = p00 * s1 + p01 * s2 + (q0 * x0 + B0 * x1)
        s2 = p10 * s1 + p11 * s2 + (q1 * x0 + B1 * x1)
        s1 = n1
        dst[t] = y0
        dst[t + 1] = y1
        t += 2
    if t < n:
        dst[t] = b0 * np.float64(src[t]) + s1


@njit(**_ROW)
def _zero_phase_row(src, dst, coef, u):
    """dst = the biquad ``coef`` (b0, b1, b2, a1, a2) run forward over src into u, then
    backward over u (reversed views, no flipped copies), each pass rounding to the
    output's dtype. u may be dst itself (in place), or a buffer that keeps the forward
    pass for the adjoint. src, dst, u: contiguous 1-D; coef: (5,)."""
    _biquad_pair_row(src, u, coef)
    _biquad_pair_row(u[::-1], dst[::-1], coef)


@njit(**_OPTS)
def crossover_forward(x, lp_low, lp_high, bands, u_low, u_mid, keep):
    """Zero-phase three-band split (dsp/crossover.py): x (batch, channels, samples);
    lp_low, lp_high: (batch, 5) float64 Butterworth low-passes; bands: (batch, 3,
    channels, samples) receives low = ff(lp_low, x), mid = ff(lp_high, x - low),
    high = (x - low) - mid. With ``keep`` (training), each low-pass's forward-pass output
    is also kept for the adjoint, u_low = F_low(x) and u_mid = F_high(x - low) (batch,
    channels, samples); without it they are unused (pass (1, 1, 1) arrays) and each
    filter runs in place in its band. The same arithmetic either way."""
    nb, nc, n = x.shape
    for job in prange(nb * nc):
        b = job // nc
        c = job % nc
        low = bands[b, 0, c]
        mid = bands[b, 1, c]
        high = bands[b, 2, c]
        _zero_phase_row(x[b, c], low, lp_low[b], u_low[b, c] if keep else low)
        for t in range(n):
            high[t] = x[b, c, t] - low[t]
        _zero_phase_row(high, mid, lp_high[b], u_mid[b, c] if keep else mid)
        for t in range(n):
            high[t] = high[t] - mid[t]


@njit(**_ROW)
def _allpole_adjoint4(g, gi, a1, a2, v, causal):
    """The all-pole part of a biquad's adjoint on four rows at once: the rows g[gi[l]] of
    g (rows, samples), gi (4,), their poles a1, a2 (4,), into v (4, samples + 2) float64.
    Each recursion alone is latency-bound; four in flight measured 3.7x two, on 32 rows. Causal filter (run forward in
    time): v[t] = g[t] - a1 v[t+1] - a2 v[t+2], run backwards, into v[:, 0 .. n-1] with
    v[:, n] = v[:, n+1] = 0. Anti-causal filter (the zero-phase filter's second pass,
    run backwards in time): v[t] = g[t] - a1 v[t-1] - a2 v[t-2], run forwards, into
    v[:, 2 .. n+1] with v[:, 0] = v[:, 1] = 0."""
    n = g.shape[1]
    a1p, a2p = a1[0], a2[0]
    a1q, a2q = a1[1], a2[1]
    a1s, a2s = a1[2], a2[2]
    a1u, a2u = a1[3], a2[3]
    g0, g1, g2, g3 = gi[0], gi[1], gi[2], gi[3]
    p1 = p2 = q1 = q2 = s1 = s2 = u1 = u2 = 0.0
    if causal:
        for k in range(4):
            v[k, n] = 0.0
            v[k, n + 1] = 0.0
    else:
        for k in range(4):
            v[k, 0] = 0.0
            v[k, 1] = 0.0
    o = 0 if causal else 2
    for i in range(n):
        t = n - 1 - i if causal else i
        p = 1.0 * g[g0, t] - a1p * p1 - a2p * p2
        q = 1.0 * g[g1, t] - a1q * q1 - a2q * q2
        s = 1.0 * g[g2, t] - a1s * s1 - a2s * s2
        u = 1.0 * g[g3, t] - a1u * u1 - a2u * u2
        v[0, t + o] = p
        v[1, t + o] = q
        v[2, t + o] = s
        v[3, t + o] = u
        p2 = p1
        p1 = p
        q2 = q1
        q1 = q
        s2 = s1
        s1 = s
        u2 = u1
        u1 = u


# reassociation only for the sums below (no recursion): they vectorize; float64 sums of
# float32 products, reordered, differ from the sequential sum by ~1e-14 relative
@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _adjoint_products(v, xin, yout, dx, coef, dcoef, causal):
    """The rest of a biquad's adjoint after :func:`_allpole_adjoint4` (no recursion: these
    loops vectorize, one pass each). Causal: dx[t] = b0 v[t] +
    b1 v[t+1] + b2 v[t+2], db_k += v . x[t-k], da_k -= v . y[t-k]; anti-causal (v stored
    from index 2): dx[t] = b0 v[t] + b1 v[t-1] + b2 v[t-2], db_k += v . x[t+k], da_k -=
    v . y[t+k]. dcoef (5,) = (db0, db1, db2, da1, da2); dx may be the gradient itself."""
    n = xin.shape[0]
    o = 0 if causal else 2  # v[t] is at v[t + o]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    s4 = 0.0
    for t in range(n):
        s0 += v[t + o] * xin[t]
    if causal:
        for t in range(1, n):
            s1 += v[t] * xin[t - 1]
            s3 += v[t] * yout[t - 1]
        for t in range(2, n):
            s2 += v[t] * xin[t - 2]
            s4 += v[t] * yout[t - 2]
    else:
        for t in range(n - 1):
            s1 += v[t + 2] * xin[t + 1]
            s3 += v[t + 2] * yout[t + 1]
        for t in range(n - 2):
            s2 += v[t + 2] * xin[t + 2]
            s4 += v[t + 2] * yout[t + 2]
    b0 = coef[0]
    b1 = coef[1]
    b2 = coef[2]
    if causal:
        for t in range(n):
            dx[t] = b0 * v[t] + b1 * v[t + 1] + b2 * v[t + 2]
    else:
        for t in range(n):
            dx[t] = b0 * v[t + 2] + b1 * v[t + 1] + b2 * v[t]
    dcoef[0] += s0
    dcoef[1] += s1
    dcoef[2] += s2
    dcoef[3] -= s3
    dcoef[4] -= s4


@njit(**_ROW)
def _zero_phase_adjoint4(src, si, sc, u, out, items, chans, g, dsrc, coef, a1, a2, v, tmp, dcoef, slot):
    """Adjoint of a zero-phase filter (u = F src forwards in time, out = F over u
    backwards in time) on four lanes at once: lane l filtered src[si[l], sc[l]] into
    u[items[l], chans[l]] and out[items[l], chans[l]] with coef[items[l]] (poles a1, a2
    (4,)). g (4, samples): the gradient of out; dsrc (4, samples) receives src's (it may be
    g); both passes' coefficient gradients are added to dcoef[slot[l]] (5,). v: (4,
    samples + 2), tmp: (4, samples) float64 scratch."""
    lanes = np.arange(4)
    _allpole_adjoint4(g, lanes, a1, a2, v, False)  # through the backward pass
    for lane in range(4):
        b = items[lane]
        c = chans[lane]
        _adjoint_products(v[lane], u[b, c], out[b, c], tmp[lane], coef[b], dcoef[slot[lane]], False)
    _allpole_adjoint4(tmp, lanes, a1, a2, v, True)  # tmp: u's gradient; through the forward pass
    for lane in range(4):
        b = items[lane]
        c = chans[lane]
        _adjoint_products(v[lane], src[si[lane], sc[lane]], u[b, c], dsrc[lane], coef[b], dcoef[slot[lane]], True)


@njit(**_OPTS)
def crossover_backward(x, lp_low, lp_high, bands, u_low, u_mid, gb, dx, dlow, dhigh):
    """Adjoint of :func:`crossover_forward` (with ``keep``) for the bands' gradient gb (batch, 3,
    channels, samples): dx (batch, channels, samples); dlow, dhigh (batch, 5) float64,
    the coefficient gradients of the two low-passes (summed over channels and passes).
    Mono or stereo.

    high = upper - mid and mid = ZP_high(upper) give upper's gradient g_high +
    ZP_high^T(g_mid - g_high); upper = x - low gives low's g_low - g_upper, and x gets
    g_upper + ZP_low^T(g_low - g_upper); each ZP^T is the adjoint of the backward pass
    (an all-pole recursion forwards in time) then of the forward pass. A job takes two
    batch items: their four rows' recursions run side by side (lanes past the batch or
    the channels repeat a real row and are discarded), and each item's channels sum into
    its coefficient gradients without a race."""
    nb, nc, n = x.shape
    for j in prange((nb + 1) // 2):
        v = np.empty((4, n + 2))
        tmp = np.empty((4, n))
        gu = np.empty((4, n))
        gl = np.empty((4, n))
        upper = np.empty((4, n), dtype=x.dtype)
        al1 = np.empty(4)
        al2 = np.empty(4)
        ah1 = np.empty(4)
        ah2 = np.empty(4)
        dl = np.zeros((3, 5))  # rows 0, 1: the job's items; 2: the discarded lanes
        dh = np.zeros((3, 5))
        items = np.empty(4, dtype=np.int64)
        chans = np.empty(4, dtype=np.int64)
        slot = np.empty(4, dtype=np.int64)
        lanes = np.arange(4)
        zeros = np.zeros(4, dtype=np.int64)
        for lane in range(4):
            i = lane // 2
            c = lane % 2
            b = min(2 * j + i, nb - 1)
            items[lane] = b
            chans[lane] = min(c, nc - 1)
            slot[lane] = i if (2 * j + i < nb and c < nc) else 2
            al1[lane] = lp_low[b, 3]
            al2[lane] = lp_low[b, 4]
            ah1[lane] = lp_high[b, 3]
            ah2[lane] = lp_high[b, 4]
        for lane in range(4):
            b = items[lane]
            c = chans[lane]
            for t in range(n):
                upper[lane, t] = x[b, c, t] - bands[b, 0, c, t]  # the forward's own rounding
                gl[lane, t] = 1.0 * gb[b, 1, c, t] - gb[b, 2, c, t]  # mid's whole gradient
        # mid = ZP_high(upper), then low = ZP_low(x)
        _zero_phase_adjoint4(upper.reshape(4, 1, n), lanes, zeros, u_mid, bands[:, 1], items, chans, gl, gu,
                             lp_high, ah1, ah2, v, tmp, dh, slot)
        for lane in range(4):
            b = items[lane]
            c = chans[lane]
            for t in range(n):
                gu[lane, t] += gb[b, 2, c, t]  # upper's gradient
                gl[lane, t] = 1.0 * gb[b, 0, c, t] - gu[lane, t]  # low's
        _zero_phase_adjoint4(x, items, chans, u_low, bands[:, 0], items, chans, gl, gl, lp_low, al1, al2, v, tmp, dl,
                             slot)
        for lane in range(4):
            if slot[lane] < 2:
                b = items[lane]
                c = chans[lane]
                for t in range(n):
                    dx[b, c, t] = gu[lane, t] + gl[lane, t]
        for i in range(2):
            if 2 * j + i < nb:
                for k in range(5):
                    dlow[2 * j + i, k] = dl[i, k]
                    dhigh[2 * j + i, k] = dh[i, k]


@njit(**_OPTS)
def band_power_forward(bands, a_rms, floor, power):
    """The multiband detector's power (dsp/multiband.py): channel-mean of the squared band,
    smoothed by a one-pole ``a_rms`` (y[0] = x[0]), plus ``floor`` (the level is
    10 log10 of it). bands: (batch, K, channels, samples); power: (batch, K, samples)."""
    nb, nk, nc, n = bands.shape
    for job in prange(nb * nk):
        b = job // nk
        k = job % nk
        s = 0.0
        for t in range(n):
            p = 0.0
            for c in range(nc):
                v = np.float64(bands[b, k, c, t])
                p += v * v
            p = p / nc
            if t == 0:
                s = p
            else:
                s = a_rms * s + (1.0 - a_rms) * p
            power[b, k, t] = s + floor


@njit(**_OPTS)
def band_gain_forward(log_power, thr, slope, knee, a_rel, a_att, gain_db, gain_neper):
    """Soft-knee static curve and branching gain smoother (release while the gain rises)
    of the multiband gain computer. log_power: log10 of the floored detector power, a
    tenth of its level in dB (batch, K, samples); thr, slope (= 1/ratio - 1): (batch, K)
    float64; knee: dB; a_rel, a_att: (batch,) poles. Writes gain_db and gain_neper =
    gain_db ln(10) / 20 (exp of it is the linear gain), both (batch, K, samples);
    gain_neper may be log_power itself (each sample is read before it is written)."""
    nb, nk, n = log_power.shape
    to_neper = np.log(10.0) / 20.0
    half = 0.5 * knee
    w_safe = max(knee, 1e-6)
    for job in prange(nb * nk):
        b = job // nk
        k = job % nk
        t_db = thr[b, k]
        sl = slope[b, k]
        ar = a_rel[b]
        aa = a_att[b]
        gs = 0.0
        for t in range(n):
            over = 10.0 * np.float64(log_power[b, k, t]) - t_db
            if 2.0 * over > knee:
                g = sl * over
            elif 2.0 * over < -knee:
                g = 0.0
            else:
                g = sl * (over + half) ** 2 / (2.0 * w_safe)
            if t == 0:
                gs = g
            else:
                a = ar if g > gs else aa
                gs = a * gs + (1.0 - a) * g
            gain_db[b, k, t] = gs
            gain_neper[b, k, t] = gs * to_neper


@njit(**_OPTS)
def apply_band_gains_forward(bands, gain_lin, out):
    """out[b, c] = sum over bands of bands[b, k, c] * gain_lin[b, k]."""
    nb, nk, nc, n = bands.shape
    for job in prange(nb * nc):
        b = job // nc
        c = job % nc
        for t in range(n):
            acc = 0.0
            for k in range(nk):
                acc += np.float64(bands[b, k, c, t]) * np.float64(gain_lin[b, k, t])
            out[b, c, t] = acc


# ------------------------------------------------ multiband gain computer: its adjoint
@njit(**_OPTS)
def band_compress_backward(bands, log_power, power, gain_db, gain_lin, thr, slope, knee, a_rms, alpha, gy, gg,
                           dbands, dthr, dslope, dalpha):
    """Adjoint of the multiband gain computer and gain application (band_power_forward,
    level = 10 log10(power), band_gain_forward, apply_band_gains_forward), in one pass
    backwards in time per band. Saved from the forward: log_power (= level / 10), the
    floored power, gain_db and gain_lin (= 10^(gain_db/20)), all (batch, K, samples);
    the transcendental functions are computed by the caller, vectorized.
    gy (batch, channels, samples) is the gradient of the output, gg (batch, K, samples)
    that of the gain trace ((1, 1, 1) when the trace got none). Writes dbands (like bands), dthr, dslope (batch, K) and
    dalpha (batch, K, 2) float64 (release, attack; the caller sums over K). The static
    curve and the smoother's branch are re-derived from log_power and gain_db."""
    nb, nk, nc, n = bands.shape
    has_gg = gg.shape[2] == n
    half = 0.5 * knee
    w_safe = max(knee, 1e-6)
    inv_nc2 = 2.0 / nc
    ln10_20 = np.log(10.0) / 20.0
    db_per_neper = 10.0 / np.log(10.0)  # d(10 log10 p)/dp = that / p
    for job in prange(nb * nk):
        b = job // nk
        k = job % nk
        t_db = thr[b, k]
        sl = slope[b, k]
        ar = alpha[b, 0]
        aa = alpha[b, 1]
        v_next = 0.0  # the gain smoother's adjoint state
        a_next = 0.0
        u_next = 0.0  # the detector one-pole's adjoint state
        d_thr = 0.0
        d_slope = 0.0
        d_ar = 0.0
        d_aa = 0.0
        for i in range(n):
            t = n - 1 - i
            glin = np.float64(gain_lin[b, k, t])
            acc = 0.0
            for c in range(nc):
                acc += np.float64(gy[b, c, t]) * np.float64(bands[b, k, c, t])
            v = ln10_20 * glin * acc + (np.float64(gg[b, k, t]) if has_gg else 0.0) + a_next * v_next
            over = 10.0 * np.float64(log_power[b, k, t]) - t_db
            if 2.0 * over > knee:
                region = 1
                g_static = sl * over
            elif 2.0 * over < -knee:
                region = -1
                g_static = 0.0
            else:
                region = 0
                g_static = sl * (over + half) ** 2 / (2.0 * w_safe)
            if t > 0:
                y_prev = np.float64(gain_db[b, k, t - 1])
                rising = g_static > y_prev
                a = ar if rising else aa
                d_gs = (1.0 - a) * v
                if rising:
                    d_ar += v * (y_prev - g_static)
                else:
                    d_aa += v * (y_prev - g_static)
                a_next = a
            else:
                d_gs = v
            v_next = v
            if region == 1:
                d_level = d_gs * sl
                d_slope += d_gs * over
            elif region == 0:
                d_level = d_gs * sl * (over + half) / w_safe
                d_slope += d_gs * (over + half) ** 2 / (2.0 * w_safe)
            else:
                d_level = 0.0
            d_thr -= d_level
            u = d_level * db_per_neper / np.float64(power[b, k, t]) + a_rms * u_next
            u_next = u
            d_p = ((1.0 - a_rms) * u if t > 0 else u) * inv_nc2
            for c in range(nc):
                dbands[b, k, c, t] = np.float64(gy[b, c, t]) * glin + d_p * np.float64(bands[b, k, c, t])
        dthr[b, k] = d_thr
        dslope[b, k] = d_slope
        dalpha[b, k, 0] = d_ar
        dalpha[b, k, 1] = d_aa


# ------------------------------------------------------------ fused stereo width (no adjoint)
@njit(**_OPTS)
def width_forward(x, coef, width, out, o, h, keep):
    """Mid/side width in one pass (dsp/width.py): x, out (batch, 2, samples); coef
    (batch, 2, 5) float64, the side's high-pass sections; width (batch,) float64.
    side = 0.5 (L - R) through both sections, times width; L, R = mid +- side. With
    ``keep`` (training) the side after the first section (o) and after the second (h,
    before the width) are kept for the adjoint, (batch, samples) in x's dtype; without
    it they are unused (pass (1, 1) arrays)."""
    nb = x.shape[0]
    n = x.shape[2]
    for b in prange(nb):
        b00 = coef[b, 0, 0]
        b01 = coef[b, 0, 1]
        b02 = coef[b, 0, 2]
        a01 = coef[b, 0, 3]
        a02 = coef[b, 0, 4]
        b10 = coef[b, 1, 0]
        b11 = coef[b, 1, 1]
        b12 = coef[b, 1, 2]
        a11 = coef[b, 1, 3]
        a12 = coef[b, 1, 4]
        w = width[b]
        s01 = 0.0
        s02 = 0.0
        s11 = 0.0
        s12 = 0.0
        for t in range(n):
            left = np.float64(x[b, 0, t])
            right = np.float64(x[b, 1, t])
            mid = 0.5 * (left + right)
            v = 0.5 * (left - right)
            u = b00 * v + s01
            s01 = b01 * v - a01 * u + s02
            s02 = b02 * v - a02 * u
            side = b10 * u + s11
            s11 = b11 * u - a11 * side + s12
            s12 = b12 * u - a12 * side
            if keep:
                o[b, t] = u
                h[b, t] = side
            side = w * side
            out[b, 0, t] = mid + side
            out[b, 1, t] = mid - side


@njit(**_OPTS)
def width_backward(x, coef, width, o, h, g, dx, dcoef, dwidth):
    """Adjoint of :func:`width_forward` (with ``keep``) for the output gradient g (batch, 2,
    samples): dx like x; dcoef (batch, 2, 5) and dwidth (batch,) float64. With
    gm = g_L + g_R and gs = g_L - g_R: the width gets sum(h gs), the side w gs goes back
    through both sections, and L, R get (gm +- g_side) / 2. A job takes four items, their
    recursions side by side (lanes past the batch repeat the last item, discarded)."""
    nb = x.shape[0]
    n = x.shape[2]
    for j in prange((nb + 3) // 4):
        v = np.empty((4, n + 2))
        gh = np.empty((4, n))
        gu = np.empty((4, n))
        side = np.empty((4, n))
        a1 = np.empty(4)
        a2 = np.empty(4)
        dc = np.zeros((4, 2, 5))
        lanes = np.arange(4)
        for lane in range(4):
            b = min(4 * j + lane, nb - 1)
            w = width[b]
            dw = 0.0
            for t in range(n):
                d = 1.0 * g[b, 0, t] - g[b, 1, t]
                dw += h[b, t] * d
                gh[lane, t] = w * d
                side[lane, t] = 0.5 * (np.float64(x[b, 0, t]) - np.float64(x[b, 1, t]))
            if 4 * j + lane < nb:
                dwidth[b] = dw
            a1[lane] = coef[b, 1, 3]
            a2[lane] = coef[b, 1, 4]
        _allpole_adjoint4(gh, lanes, a1, a2, v, True)
        for lane in range(4):
            b = min(4 * j + lane, nb - 1)
            _adjoint_products(v[lane], o[b], h[b], gu[lane], coef[b, 1], dc[lane, 1], True)
            a1[lane] = coef[b, 0, 3]
            a2[lane] = coef[b, 0, 4]
        _allpole_adjoint4(gu, lanes, a1, a2, v, True)
        for lane in range(4):
            b = 4 * j + lane
            if b >= nb:
                break
            _adjoint_products(v[lane], side[lane], o[b], gh[lane], coef[b, 0], dc[lane, 0], True)  # the side's gradient
            for k in range(2):
                for m in range(5):
                    dcoef[b, k, m] = dc[lane, k, m]
            for t in range(n):
                gm = 1.0 * g[b, 0, t] + g[b, 1, t]
                dx[b, 0, t] = 0.5 * (gm + gh[lane, t])
                dx[b, 1, t] = 0.5 * (gm - gh[lane, t])
