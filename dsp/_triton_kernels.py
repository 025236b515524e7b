"""CUDA implementations of the recursive ops (Triton kernels plus plain torch ops).

Triton ships with the torch wheel and brings its own compiler, so nothing beyond
torch is needed on a GPU machine. The same code runs on CPU tensors in Triton's
interpreter (``TRITON_INTERPRET=1``), which is how the tests check it without a GPU
(tests/test_dsp_triton.py). Conventions follow :mod:`dsp._cpu_kernels`: rows are one
channel of one batch item, recursions keep float64 state whatever the I/O dtype.

Parallelism: a kernel program runs ``LANES`` independent recursions side by side
(one per lane). The biquad, being linear and time-invariant, is also cut along time:
each row is split into chunks, every chunk is filtered from zero state (its final
state recorded), a short scan per row composes the chunks' states with the filter's
L-step transition matrix, and the chunks are filtered again from their true initial
states. A long stereo file therefore runs thousands of lanes, not two. The branching
attack/release smoother is not linear, so it runs one lane per row. No function here
synchronizes with the host.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


def _fix_interpreter() -> None:
    """triton 3.6's interpreter turns scalar kernel arguments into 1-element arrays and
    indexes with ``int(array)``, which numpy >= 2.4 refuses; index with the element."""
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor
    if getattr(original, "_automaster", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._automaster = True
    interpreter._patch_lang_tensor = patched


if os.environ.get("TRITON_INTERPRET") == "1":
    _fix_interpreter()

LANES = 32  # recursions per program (one warp)
TARGET_LANES = 16384  # chunk rows until about this many recursions run at once ...
MIN_CHUNK = 1024  # ... but never into chunks shorter than this
TP_BLOCK = 128  # true-peak outputs per program
TP_FLOOR_BLOCK = 128  # the CPU kernel's block (_TP_BLOCK) for the floor decision (kept identical)


# ----------------------------------------------------------------------------- biquads
@triton.jit
def _biquad_chunks(x_ptr, y_ptr, coef_ptr, s_in_ptr, s_out_ptr, n, chunk, n_chunks, lanes,
                   HAS_S_IN: tl.constexpr, WRITE_Y: tl.constexpr, WRITE_S: tl.constexpr, LANES: tl.constexpr):
    """Direct form II transposed biquad on lane = (row, chunk): samples [t0, t0 + chunk)."""
    lane = tl.program_id(0) * LANES + tl.arange(0, LANES)
    live = lane < lanes
    row = lane // n_chunks
    t0 = (lane % n_chunks) * chunk
    length = tl.minimum(chunk, n - t0)
    base = row.to(tl.int64) * n + t0
    cp = coef_ptr + row * 5
    b0 = tl.load(cp + 0, mask=live, other=0.0)
    b1 = tl.load(cp + 1, mask=live, other=0.0)
    b2 = tl.load(cp + 2, mask=live, other=0.0)
    a1 = tl.load(cp + 3, mask=live, other=0.0)
    a2 = tl.load(cp + 4, mask=live, other=0.0)
    if HAS_S_IN:
        s1 = tl.load(s_in_ptr + lane * 2, mask=live, other=0.0)
        s2 = tl.load(s_in_ptr + lane * 2 + 1, mask=live, other=0.0)
    else:
        s1 = tl.zeros([LANES], dtype=tl.float64)
        s2 = tl.zeros([LANES], dtype=tl.float64)
    for i in range(0, chunk):
        m = live & (i < length)
        xt = tl.load(x_ptr + base + i, mask=m, other=0.0).to(tl.float64)
        yt = b0 * xt + s1
        n1 = b1 * xt - a1 * yt + s2
        n2 = b2 * xt - a2 * yt
        s1 = tl.where(m, n1, s1)
        s2 = tl.where(m, n2, s2)
        if WRITE_Y:
            tl.store(y_ptr + base + i, yt.to(y_ptr.dtype.element_ty), mask=m)
    if WRITE_S:
        tl.store(s_out_ptr + lane * 2, s1, mask=live)
        tl.store(s_out_ptr + lane * 2 + 1, s2, mask=live)


@triton.jit
def _biquad_chunk_scan(z_ptr, coef_ptr, s_ptr, rows, chunk, n_chunks, LANES: tl.constexpr):
    """Initial state of every chunk: s[c + 1] = A^chunk s[c] + z[c], s[0] = 0, per row.

    z (rows * n_chunks, 2) holds each chunk's final state from zero initial state;
    A = [[-a1, 1], [-a2, 0]] is the zero-input state transition of one sample.
    """
    row = tl.program_id(0) * LANES + tl.arange(0, LANES)
    live = row < rows
    a1 = tl.load(coef_ptr + row * 5 + 3, mask=live, other=0.0)
    a2 = tl.load(coef_ptr + row * 5 + 4, mask=live, other=0.0)
    # columns of M = A^chunk: the zero-input responses of the unit states
    p11 = tl.full([LANES], 1.0, tl.float64)
    p21 = tl.zeros([LANES], dtype=tl.float64)
    p12 = tl.zeros([LANES], dtype=tl.float64)
    p22 = tl.full([LANES], 1.0, tl.float64)
    for i in range(0, chunk):
        q11 = -a1 * p11 + p21
        q21 = -a2 * p11
        q12 = -a1 * p12 + p22
        q22 = -a2 * p12
        p11 = q11
        p21 = q21
        p12 = q12
        p22 = q22
    s1 = tl.zeros([LANES], dtype=tl.float64)
    s2 = tl.zeros([LANES], dtype=tl.float64)
    base = row.to(tl.int64) * n_chunks * 2
    tl.store(s_ptr + base, s1, mask=live)
    tl.store(s_ptr + base + 1, s2, mask=live)
    for c in range(0, n_chunks - 1):
        z1 = tl.load(z_ptr + base + c * 2, mask=live, other=0.0)
        z2 = tl.load(z_ptr + base + c * 2 + 1, mask=live, other=0.0)
        t1 = p11 * s1 + p12 * s2 + z1
        t2 = p21 * s1 + p22 * s2 + z2
        s1 = t1
        s2 = t2
        tl.store(s_ptr + base + (c + 1) * 2, s1, mask=live)
        tl.store(s_ptr + base + (c + 1) * 2 + 1, s2, mask=live)


def _grid(lanes: int) -> tuple[int]:
    return (max(1, triton.cdiv(lanes, LANES)),)


def chunk_plan(rows: int, n: int) -> tuple[int, int]:
    """(chunk length, chunks per row): enough lanes to fill the GPU, chunks >= MIN_CHUNK."""
    want = max(1, TARGET_LANES // max(rows, 1))
    chunks = max(1, min(want, n // max(MIN_CHUNK, 1)))
    chunk = triton.cdiv(n, chunks)
    return chunk, triton.cdiv(n, chunk)


def biquad(x: torch.Tensor, coef: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """One biquad per row: x (rows, n), coef (rows, 5) float64 -> (rows, n) in ``out_dtype``."""
    rows, n = x.shape
    y = torch.empty((rows, n), dtype=out_dtype or x.dtype, device=x.device)
    if rows == 0 or n == 0:
        return y
    chunk, chunks = chunk_plan(rows, n)
    lanes = rows * chunks
    if chunks == 1:
        _biquad_chunks[_grid(lanes)](x, y, coef, coef, coef, n, chunk, 1, lanes,
                                     HAS_S_IN=False, WRITE_Y=True, WRITE_S=False, LANES=LANES)
        return y
    z = torch.empty((lanes, 2), dtype=torch.float64, device=x.device)
    s = torch.empty_like(z)
    _biquad_chunks[_grid(lanes)](x, y, coef, coef, z, n, chunk, chunks, lanes,
                                 HAS_S_IN=False, WRITE_Y=False, WRITE_S=True, LANES=LANES)
    _biquad_chunk_scan[_grid(rows)](z, coef, s, rows, chunk, chunks, LANES=LANES)
    _biquad_chunks[_grid(lanes)](x, y, coef, s, z, n, chunk, chunks, lanes,
                                 HAS_S_IN=True, WRITE_Y=True, WRITE_S=False, LANES=LANES)
    return y


def biquad_cascade(x: torch.Tensor, coef: torch.Tensor, store: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sections in series: x (rows, n), coef (rows, S, 5) -> y, and with ``store`` the
    outputs of sections 0 .. S-2 (S-1, rows, n) for the adjoint (else an empty tensor)."""
    x = x.contiguous()
    c = coef.to(torch.float64).contiguous()
    ns = c.shape[1]
    ys = x.new_empty((max(ns - 1, 0),) + tuple(x.shape) if store else (0,))
    v = x
    for k in range(ns):
        v = biquad(v, c[:, k].contiguous(), x.dtype)
        if store and k < ns - 1:
            ys[k] = v
    return (v.clone() if ns == 0 else v), ys


def biquad_cascade_backward(x: torch.Tensor, coef: torch.Tensor, y: torch.Tensor, ys: torch.Tensor,
                            g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adjoint of :func:`biquad_cascade`, sections in reverse order.

    Per section, v[n] = g[n] - a1 v[n+1] - a2 v[n+2] is the all-pole filter run
    backwards in time (the chunked kernel on the flipped gradient, float64); then
    dx[n] = b0 v[n] + b1 v[n+1] + b2 v[n+2], db_k = sum v[n] x[n-k], da_k = -sum v[n] y[n-k].
    """
    c = coef.to(torch.float64).contiguous()
    rows, ns = c.shape[0], c.shape[1]
    n = x.shape[1]
    dc = torch.zeros((rows, ns, 5), dtype=torch.float64, device=x.device)
    g = g.contiguous()
    for k in range(ns - 1, -1, -1):
        xin = (ys[k - 1] if k > 0 else x).to(torch.float64)
        yout = (ys[k] if k < ns - 1 else y).to(torch.float64)
        pole = torch.zeros_like(c[:, k])
        pole[:, 0] = 1.0
        pole[:, 3:] = c[:, k, 3:]
        v = biquad(g.flip(-1), pole, torch.float64).flip(-1)
        v1 = F.pad(v[:, 1:], (0, 1))
        v2 = F.pad(v[:, 2:], (0, 2))
        ck = c[:, k]
        dx = ck[:, 0:1] * v + ck[:, 1:2] * v1 + ck[:, 2:3] * v2
        dc[:, k, 0] = (v * xin).sum(-1)
        if n > 1:
            dc[:, k, 1] = (v[:, 1:] * xin[:, :-1]).sum(-1)
            dc[:, k, 3] = -(v[:, 1:] * yout[:, :-1]).sum(-1)
        if n > 2:
            dc[:, k, 2] = (v[:, 2:] * xin[:, :-2]).sum(-1)
            dc[:, k, 4] = -(v[:, 2:] * yout[:, :-2]).sum(-1)
        g = dx.to(x.dtype)
    return g, dc


# ---------------------------------------------------------------------- smoother
@triton.jit
def _smoother_fwd(x_ptr, alpha_ptr, y_ptr, rows, n, LANES: tl.constexpr):
    row = tl.program_id(0) * LANES + tl.arange(0, LANES)
    live = row < rows
    base = row.to(tl.int64) * n
    au = tl.load(alpha_ptr + row * 2, mask=live, other=0.0)
    ad = tl.load(alpha_ptr + row * 2 + 1, mask=live, other=0.0)
    s = tl.load(x_ptr + base, mask=live, other=0.0).to(tl.float64)
    tl.store(y_ptr + base, s.to(y_ptr.dtype.element_ty), mask=live)
    for t in range(1, n):
        xt = tl.load(x_ptr + base + t, mask=live, other=0.0).to(tl.float64)
        a = tl.where(xt > s, au, ad)
        s = a * s + (1.0 - a) * xt
        tl.store(y_ptr + base + t, s.to(y_ptr.dtype.element_ty), mask=live)


@triton.jit
def _smoother_bwd(x_ptr, y_ptr, alpha_ptr, g_ptr, dx_ptr, da_ptr, rows, n, LANES: tl.constexpr):
    row = tl.program_id(0) * LANES + tl.arange(0, LANES)
    live = row < rows
    base = row.to(tl.int64) * n
    au = tl.load(alpha_ptr + row * 2, mask=live, other=0.0)
    ad = tl.load(alpha_ptr + row * 2 + 1, mask=live, other=0.0)
    v_next = tl.zeros([LANES], dtype=tl.float64)
    a_next = tl.zeros([LANES], dtype=tl.float64)
    dau = tl.zeros([LANES], dtype=tl.float64)
    dad = tl.zeros([LANES], dtype=tl.float64)
    for i in range(0, n - 1):
        t = n - 1 - i
        v = tl.load(g_ptr + base + t, mask=live, other=0.0).to(tl.float64) + a_next * v_next
        xt = tl.load(x_ptr + base + t, mask=live, other=0.0).to(tl.float64)
        yp = tl.load(y_ptr + base + t - 1, mask=live, other=0.0).to(tl.float64)
        rising = xt > yp
        a = tl.where(rising, au, ad)
        tl.store(dx_ptr + base + t, ((1.0 - a) * v).to(dx_ptr.dtype.element_ty), mask=live)
        d = v * (yp - xt)
        dau += tl.where(rising, d, 0.0)
        dad += tl.where(rising, 0.0, d)
        v_next = v
        a_next = a
    g0 = tl.load(g_ptr + base, mask=live, other=0.0).to(tl.float64)
    tl.store(dx_ptr + base, (g0 + a_next * v_next).to(dx_ptr.dtype.element_ty), mask=live)
    tl.store(da_ptr + row * 2, dau, mask=live)
    tl.store(da_ptr + row * 2 + 1, dad, mask=live)


def smooth(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Branching one-pole smoother per row; alpha (rows, 2) = (rising, falling) pole radii."""
    x = x.contiguous()
    rows, n = x.shape
    y = torch.empty_like(x)
    if rows and n:
        _smoother_fwd[_grid(rows)](x, alpha.to(torch.float64).contiguous(), y, rows, n, LANES=LANES)
    return y


def smooth_backward(x, y, alpha, g) -> tuple[torch.Tensor, torch.Tensor]:
    rows, n = x.shape
    dx = torch.empty_like(x)
    da = torch.empty((rows, 2), dtype=torch.float64, device=x.device)
    if rows and n:
        _smoother_bwd[_grid(rows)](x.contiguous(), y.contiguous(), alpha.to(torch.float64).contiguous(),
                                   g.contiguous(), dx, da, rows, n, LANES=LANES)
    return dx, da


# -------------------------------------------------------- running min / moving average
def sliding_min(x: torch.Tensor, window: int, want_idx: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Look-ahead running minimum over [n, n + window - 1] with its argmin, by log-doubling
    (parallel torch ops). Ties go to the earliest sample, as in the CPU kernel."""
    rows, n = x.shape
    big = torch.finfo(x.dtype).max
    pos = torch.arange(n, device=x.device).expand(rows, n)
    if window == 1 or n == 0:
        return x.clone(), (pos.contiguous() if want_idx else torch.empty(0, dtype=torch.int64, device=x.device))

    def shift(v, i, s):
        if s >= n:
            return torch.full_like(v, big), i
        return F.pad(v[:, s:], (0, s), value=big), F.pad(i[:, s:], (0, s), value=n - 1)

    def take(v0, i0, v1, i1):  # v0 covers earlier samples: it wins ties
        later = v1 < v0
        return torch.where(later, v1, v0), torch.where(later, i1, i0)

    res_v = res_i = None
    offset, size, remaining = 0, 1, window
    block_v, block_i = x, pos
    while remaining > 0:
        if remaining & 1:
            sv, si = shift(block_v, block_i, offset)
            res_v, res_i = (sv, si) if res_v is None else take(res_v, res_i, sv, si)
            offset += size
        remaining >>= 1
        if remaining:
            sv, si = shift(block_v, block_i, size)
            block_v, block_i = take(block_v, block_i, sv, si)
            size *= 2
    idx = res_i.contiguous() if want_idx else torch.empty(0, dtype=torch.int64, device=x.device)
    return res_v.contiguous(), idx


def moving_average(x: torch.Tensor, window: int) -> torch.Tensor:
    """Trailing mean over [n - window + 1, n], the first value replicated before the start
    (float64 prefix sums)."""
    rows, n = x.shape
    xd = x.to(torch.float64)
    padded = torch.cat([xd[:, :1].expand(rows, window), xd], dim=1)  # window copies of x[0], then x
    cs = torch.cumsum(padded, dim=1)
    return ((cs[:, window:] - cs[:, :n]) / window).to(x.dtype)


def moving_average_backward(g: torch.Tensor, window: int) -> torch.Tensor:
    """Adjoint of :func:`moving_average`: dx[t] = sum of g over [t, t + window - 1] / window,
    plus, for t = 0, what the replicated first sample collected."""
    rows, n = g.shape
    gd = g.to(torch.float64)
    cs = torch.cat([gd.new_zeros(rows, 1), torch.cumsum(gd, dim=1)], dim=1)  # cs[t] = sum g[:t]
    end = torch.clamp(torch.arange(n, device=g.device) + window, max=n)
    dx = (cs[:, end] - cs[:, :n]) / window
    m = min(n, window - 1)
    if m > 0:
        weights = torch.arange(window - 1, window - 1 - m, -1, device=g.device, dtype=torch.float64)
        dx[:, 0] += (gd[:, :m] * weights).sum(-1) / window
    return dx.to(g.dtype)


# ---------------------------------------------------------------------- true peak
@triton.jit
def _true_peak(x_ptr, taps_ptr, exact_ptr, env_ptr, code_ptr, nc, n, nblk,
               K: tl.constexpr, FB: tl.constexpr, BLOCK: tl.constexpr):
    """Per-sample max over channels of |x| and of the 3 in-between phases where exact."""
    b = tl.program_id(1)
    t = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = t < n
    ex = tl.load(exact_ptr + b * nblk + t // FB, mask=live, other=0)
    use = ex != 0
    any_exact = tl.max(ex, axis=0) > 0
    best = tl.full([BLOCK], -1.0, x_ptr.dtype.element_ty)
    code = tl.zeros([BLOCK], dtype=tl.int32)
    for c in range(0, nc):
        base = (b * nc + c).to(tl.int64) * n
        v = tl.load(x_ptr + base + t, mask=live, other=0.0)
        a = tl.abs(v)
        upd = a > best
        best = tl.where(upd, a, best)
        code = tl.where(upd, c * 8 + (v < 0).to(tl.int32), code)
        if any_exact:
            for p in tl.static_range(3):
                acc = tl.zeros([BLOCK], dtype=x_ptr.dtype.element_ty)
                for k in tl.static_range(K):
                    j = t + (k - K // 2 + 1)
                    w = tl.load(taps_ptr + p * K + k)
                    acc += w * tl.load(x_ptr + base + j, mask=live & (j >= 0) & (j < n), other=0.0)
                a = tl.abs(acc)
                upd = use & (a > best)
                best = tl.where(upd, a, best)
                code = tl.where(upd, (c * 4 + p + 1) * 2 + (acc < 0).to(tl.int32), code)
    tl.store(env_ptr + b.to(tl.int64) * n + t, best, mask=live)
    tl.store(code_ptr + b.to(tl.int64) * n + t, code, mask=live)


def true_peak_envelope(x: torch.Tensor, taps: torch.Tensor, floor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel-linked envelope over [n-1, n+1) and provenance codes; see
    dsp._cpu_kernels.true_peak_envelope_forward (same blocks, order and codes)."""
    x = x.contiguous()
    nb, nc, n = x.shape
    k_len = taps.shape[1]
    half = k_len // 2
    taps = taps.to(device=x.device, dtype=x.dtype).contiguous()
    l1 = taps.abs().sum(dim=1).amax().to(torch.float64)
    nblk = triton.cdiv(n, TP_FLOOR_BLOCK)
    a = x.abs().amax(dim=1, keepdim=True)  # (nb, 1, n)
    a = F.pad(a, (half, nblk * TP_FLOOR_BLOCK - n + half + 1))
    local = F.max_pool1d(a, TP_FLOOR_BLOCK + 2 * half + 1, stride=TP_FLOOR_BLOCK)[:, 0, :nblk]
    exact = (local.to(torch.float64) * l1 >= floor.to(device=x.device, dtype=torch.float64)[:, None]).to(torch.int32)
    env = torch.empty((nb, n), dtype=x.dtype, device=x.device)
    code = torch.empty((nb, n), dtype=torch.int32, device=x.device)
    if nb and n:
        _true_peak[(triton.cdiv(n, TP_BLOCK), nb)](x, taps, exact.contiguous(), env, code, nc, n, nblk,
                                                   K=k_len, FB=TP_FLOOR_BLOCK, BLOCK=TP_BLOCK)
    # extend each value over the previous interval: env2[n] = max(env[n-1], env[n])
    prev = F.pad(env[:, :-1], (1, 0), value=-1.0)
    prev_code = F.pad(code[:, :-1], (1, 0))
    later = prev > env
    return torch.where(later, prev, env), torch.where(later, prev_code + nc * 8, code)


def true_peak_envelope_backward(g: torch.Tensor, code: torch.Tensor, taps: torch.Tensor, nc: int) -> torch.Tensor:
    """Adjoint of :func:`true_peak_envelope`: scatter g (batch, n) to (batch, channels, n)."""
    nb, n = g.shape
    k_len = taps.shape[1]
    half = k_len // 2
    cd = code.to(torch.int64)
    neg = cd & 1
    cd = cd >> 1
    p = cd % 4
    cd = cd // 4
    c = cd % nc
    src = torch.arange(n, device=g.device) - cd // nc
    gv = torch.where(neg.bool(), -g, g)
    # phase 0 is the sample itself: a unit tap at offset 0 (k = half - 1)
    table = torch.zeros((4, k_len), dtype=g.dtype, device=g.device)
    table[0, half - 1] = 1.0
    table[1:] = taps.to(device=g.device, dtype=g.dtype)
    base = (torch.arange(nb, device=g.device)[:, None] * nc + c) * n
    dx = torch.zeros(nb * nc * n, dtype=g.dtype, device=g.device)
    for k in range(k_len):
        j = src + (k - half + 1)
        ok = (j >= 0) & (j < n)
        w = table[:, k][p]
        vals = torch.where(ok, gv * w, torch.zeros_like(gv))
        dx.index_add_(0, (base + j.clamp(0, n - 1)).reshape(-1), vals.reshape(-1))
    return dx.reshape(nb, nc, n)


# ------------------------------------------------------- fused inference fallbacks
def limiter_pass(hold, scale, ceiling, alpha, window, power, step, smooth_fn, average_fn):
    """Limiter gain and 100 ms energies from the differentiable pieces (see the CPU kernel)."""
    b, n = hold.shape
    k = scale.to(device=hold.device, dtype=torch.float64)
    c = ceiling.to(device=hold.device, dtype=torch.float64)
    g1 = torch.clamp(c[:, None] / (k[:, None] * hold.to(torch.float64).clamp_min(1e-9)), max=1.0)
    a = alpha.to(device=hold.device, dtype=torch.float64)
    g = average_fn(smooth_fn(g1, a, torch.zeros_like(a)), window)
    nsub = n // step
    tot = k[:, None] * g[:, : nsub * step]
    energy = (power[:, : nsub * step].to(torch.float64) * tot * tot).reshape(b, nsub, step).mean(-1)
    return g.to(hold.dtype), energy.to(hold.dtype)


def gain_and_loudness_energy(y, gain, kcoef, step, cascade_fn):
    """(y * gain, K-weighted 100 ms energies summed over channels) from plain ops."""
    b, c, n = y.shape
    out = y * gain[:, None, :]
    rows = out.reshape(b * c, n).to(torch.float64)
    kw = cascade_fn(rows, kcoef.to(device=y.device, dtype=torch.float64).expand(b * c, -1, 5))
    nsub = n // step
    energy = kw[:, : nsub * step].square().reshape(b, c, nsub, step).mean(-1).sum(1)
    return out, energy.to(y.dtype)


# ------------------------------------------------------- multiband gain computer (torch ops)
_LN10 = 2.302585092994046


def _static_curve(level, thr, slope, knee, derivatives=False):
    """Soft-knee static gain (batch, K, samples); with ``derivatives`` also its
    derivatives in level and slope."""
    over = level - thr[:, :, None].to(level.dtype)
    sl = slope[:, :, None].to(level.dtype)
    w = max(knee, 1e-6)
    hard = 2.0 * over > knee
    below = 2.0 * over < -knee
    zero = torch.zeros_like(over)
    gs = torch.where(below, zero, torch.where(hard, sl * over, sl * (over + 0.5 * knee) ** 2 / (2.0 * w)))
    if not derivatives:
        return gs
    d_level = torch.where(below, zero, torch.where(hard, sl.expand_as(over), sl * (over + 0.5 * knee) / w))
    d_slope = torch.where(below, zero, torch.where(hard, over, (over + 0.5 * knee) ** 2 / (2.0 * w)))
    return gs, d_level, d_slope


def crossover(x: torch.Tensor, lp_low: torch.Tensor, lp_high: torch.Tensor):
    """Torch-op version of the CPU crossover op (dsp/_ops.py): the zero-phase three-band
    split of x (batch, channels, samples) -> (bands (batch, 3, channels, samples), the
    two low-passes' forward-pass outputs u_low = F_low(x), u_mid = F_high(x - low))."""
    b, c, n = x.shape
    rows = x.reshape(b * c, n)
    cl = lp_low.to(torch.float64).repeat_interleave(c, dim=0).contiguous()
    ch = lp_high.to(torch.float64).repeat_interleave(c, dim=0).contiguous()
    u_low = biquad(rows, cl, x.dtype)
    low = biquad(u_low.flip(-1), cl, x.dtype).flip(-1)
    upper = rows - low
    u_mid = biquad(upper, ch, x.dtype)
    mid = biquad(u_mid.flip(-1), ch, x.dtype).flip(-1)
    bands = torch.stack([low, mid, upper - mid], dim=1).reshape(b, c, 3, n).transpose(1, 2).contiguous()
    return bands, u_low.reshape(b, c, n), u_mid.reshape(b, c, n)


def crossover_backward(x, lp_low, lp_high, bands, u_low, u_mid, gb):
    """Torch-op version of dsp._cpu_kernels.crossover_backward: (dx, dlow, dhigh (batch,
    5) float64), from the single-section adjoint above, one pass at a time."""
    b, c, n = x.shape
    cl = lp_low.to(torch.float64).repeat_interleave(c, dim=0)[:, None].contiguous()
    ch = lp_high.to(torch.float64).repeat_interleave(c, dim=0)[:, None].contiguous()
    empty = x.new_empty(0)

    def zero_phase_adjoint(src, u, out, g, coef):
        gu_rev, dc2 = biquad_cascade_backward(u.flip(-1), coef, out.flip(-1), empty, g.flip(-1))
        dsrc, dc1 = biquad_cascade_backward(src, coef, u, empty, gu_rev.flip(-1))
        return dsrc, (dc1 + dc2)[:, 0].reshape(b, c, 5).sum(dim=1)

    rows = lambda t: t.reshape(b * c, n)  # noqa: E731
    low, mid = rows(bands[:, 0]), rows(bands[:, 1])
    g_low, g_mid, g_high = rows(gb[:, 0]), rows(gb[:, 1]), rows(gb[:, 2])
    upper = rows(x) - low
    d_upper, dhigh = zero_phase_adjoint(upper, rows(u_mid), mid, g_mid - g_high, ch)
    g_upper = d_upper + g_high
    d_x, dlow = zero_phase_adjoint(rows(x), rows(u_low), low, g_low - g_upper, cl)
    return (g_upper + d_x).reshape(b, c, n), dlow, dhigh


def stereo_width(x: torch.Tensor, coef: torch.Tensor, width: torch.Tensor):
    """Torch-op version of the CPU stereo_width op (dsp/_ops.py): (out, o, h), o and h
    (batch, samples) the side after the first and the second high-pass section."""
    c = coef.to(torch.float64)
    side = 0.5 * (x[:, 0].double() - x[:, 1].double())
    o = biquad(side, c[:, 0].contiguous(), torch.float64)
    h = biquad(o, c[:, 1].contiguous(), torch.float64)
    mid = 0.5 * (x[:, 0].double() + x[:, 1].double())
    s = width.to(torch.float64)[:, None] * h
    out = torch.stack([mid + s, mid - s], dim=1).to(x.dtype)
    return out, o.to(x.dtype), h.to(x.dtype)


def stereo_width_backward(x, coef, width, o, h, g):
    """Torch-op version of dsp._cpu_kernels.width_backward: (dx, dcoef (batch, 2, 5),
    dwidth (batch,) float64)."""
    gs = g[:, 0].double() - g[:, 1].double()
    dwidth = (h.double() * gs).sum(dim=-1)
    side = 0.5 * (x[:, 0].double() - x[:, 1].double())
    c = coef.to(torch.float64).contiguous()
    g_side, dc = biquad_cascade_backward(side, c, h.double(), o.double()[None], width.double()[:, None] * gs)
    gm = g[:, 0].double() + g[:, 1].double()
    dx = torch.stack([0.5 * (gm + g_side), 0.5 * (gm - g_side)], dim=1).to(x.dtype)
    return dx, dc, dwidth


def band_compress(bands, thr, slope, alpha, knee, a_rms, floor, smooth_fn):
    """Torch-op version of the CPU band_compress op (dsp/_ops.py): returns (y (batch,
    channels, samples), gain_db, power + floor, log10(power + floor), the linear gains
    (batch, K, samples))."""
    b, k, c, n = bands.shape
    pm = (bands * bands).mean(dim=2).reshape(b * k, n)
    a = torch.full((b * k,), a_rms, dtype=torch.float64, device=bands.device)
    power = smooth_fn(pm, a, a).reshape(b, k, n).clamp_min(0.0) + floor
    log_power = torch.log10(power)
    gs = _static_curve(10.0 * log_power, thr, slope, knee)
    rel = alpha[:, 0].repeat_interleave(k)
    att = alpha[:, 1].repeat_interleave(k)
    gain_db = smooth_fn(gs.reshape(b * k, n), rel, att).reshape(b, k, n)
    glin = torch.pow(10.0, gain_db / 20.0)
    y = (bands * glin[:, :, None, :]).sum(dim=1)
    return y, gain_db, power, log_power, glin


def band_compress_backward(bands, thr, slope, alpha, knee, a_rms, floor, power, log_power, gain_db, glin, gy, gg,
                           smooth_bwd_fn):
    """Torch-op version of dsp._cpu_kernels.band_compress_backward: returns (dbands,
    dthr, dslope (batch, K), dalpha (batch, K, 2) float64)."""
    b, k, c, n = bands.shape
    dg = (_LN10 / 20.0) * glin * (gy[:, None] * bands).sum(dim=2) + gg
    gs, d_level, d_sl = _static_curve(10.0 * log_power, thr, slope, knee, derivatives=True)
    rows_alpha = torch.stack([alpha[:, 0].repeat_interleave(k), alpha[:, 1].repeat_interleave(k)], dim=-1)
    dgs, da = smooth_bwd_fn(gs.reshape(b * k, n), gain_db.reshape(b * k, n), rows_alpha, dg.reshape(b * k, n))
    dgs = dgs.reshape(b, k, n)
    d_level = d_level * dgs
    d_s = d_level * (10.0 / _LN10) / power  # power: floored
    pm = (bands * bands).mean(dim=2).reshape(b * k, n)
    a = torch.full((b * k, 2), a_rms, dtype=torch.float64, device=bands.device)
    dpm, _ = smooth_bwd_fn(pm, (power - floor).reshape(b * k, n), a, d_s.reshape(b * k, n))
    dbands = gy[:, None] * glin[:, :, None] + (2.0 / c) * dpm.reshape(b, k, 1, n) * bands
    return dbands, -d_level.sum(dim=-1).double(), (d_sl * dgs).sum(dim=-1).double(), da.reshape(b, k, 2)
