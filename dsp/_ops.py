"""The recursive parts of the chain as torch custom ops (``torch.ops.automaster.*``).

Each op has a CPU kernel (numba, :mod:`dsp._cpu_kernels`) and a CUDA kernel (Triton
and plain torch ops, :mod:`dsp._triton_kernels`), a fake implementation for
``torch.compile`` and a registered autograd formula whose backward is another op
(the hand-written adjoints), so no per-sample Python loop runs in either direction
and tensors reach the kernels straight from the caller. Half-precision inputs (AMP)
are computed in float32. The public functions below keep the chain's signatures.

Tests run the CUDA implementations on CPU tensors in Triton's interpreter: with
``TRITON_INTERPRET=1`` set before triton is imported, :func:`triton_on_cpu` routes
CPU tensors to them (tests/test_dsp_triton.py).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch
from torch import Tensor

_TRITON_ON_CPU = False


def _cpu():
    from dsp import _cpu_kernels

    return _cpu_kernels


def _tk():
    from dsp import _triton_kernels

    return _triton_kernels


@contextlib.contextmanager
def triton_on_cpu():
    """Run the CUDA implementations on CPU tensors (Triton's interpreter; tests only)."""
    global _TRITON_ON_CPU
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("triton_on_cpu needs TRITON_INTERPRET=1 set before triton is imported")
    saved, _TRITON_ON_CPU = _TRITON_ON_CPU, True
    try:
        yield
    finally:
        _TRITON_ON_CPU = saved


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def _f64(t: Tensor) -> Tensor:
    return t.detach().to(device="cpu", dtype=torch.float64).contiguous()


def _compute_dtype(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _dispatch_needed(args: tuple) -> bool:
    """Whether a call must go through the op's dispatcher: autograd has to record it, a
    tensor is not a plain CPU tensor (CUDA, meta, fake or functorch wrappers), the Triton
    interpreter is on, or torch.compile is tracing."""
    if _TRITON_ON_CPU or torch.compiler.is_compiling():
        return True
    grad = torch.is_grad_enabled()
    for a in args:
        if isinstance(a, Tensor) and (type(a) is not Tensor or a.device.type != "cpu"
                                      or (grad and a.requires_grad)):
            return True
    return False


def _no_kernel(name: str) -> NotImplementedError:
    """The error a schema function below raises: its body is the op's fallback, run only
    for tensors on a device without a registered kernel (CPU and CUDA have one)."""
    return NotImplementedError(f"automaster::{name} has kernels for CPU and CUDA tensors only")


def _op(name: str, schema_fn, cpu, cuda, fake, autograd=None):
    """Register ``automaster::name``: CPU kernel, CUDA kernel, fake and autograd formula.

    Returns a caller that sends plain CPU tensors that need no gradient straight to the
    CPU kernel (the kernel the dispatcher would pick): the first dispatch of a custom op
    imports torch._dynamo (about 1.8 s here), which every inference process (the CLI)
    would otherwise pay. Everything else goes through the op."""
    op = torch.library.custom_op(f"automaster::{name}", mutates_args=())(schema_fn)

    @op.register_kernel("cpu")
    def _(*args):
        return cuda(*args) if _TRITON_ON_CPU else cpu(*args)

    op.register_kernel("cuda")(cuda)
    op.register_fake(fake)
    if autograd is not None:
        op.register_autograd(autograd[0], setup_context=autograd[1])

    def call(*args):
        return op(*args) if _dispatch_needed(args) else cpu(*args)

    call.op = op
    call.__name__ = call.__qualname__ = name
    return call


# ------------------------------------------------------------------ biquad cascade
def _cascade_cpu(x: Tensor, coef: Tensor, store: bool) -> tuple[Tensor, Tensor]:
    x = x.contiguous()
    ns = coef.shape[1]
    y = torch.empty_like(x)
    ys = torch.empty((max(ns - 1, 0),) + tuple(x.shape) if store else (0,), dtype=x.dtype)
    buf = ys.numpy() if store and ns > 1 else np.empty((1, 1, 1), dtype=_np(x).dtype)
    _cpu().biquad_cascade_forward(_np(x), _np(_f64(coef)), _np(y), buf, bool(store and ns > 1))
    return y, ys


def _cascade_fake(x, coef, store):
    ns = coef.shape[1]
    return torch.empty_like(x), x.new_empty((max(ns - 1, 0),) + tuple(x.shape) if store else (0,))


def _cascade_bwd_cpu(x: Tensor, coef: Tensor, y: Tensor, ys: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    c = _f64(coef)
    ns = c.shape[1]
    dc = torch.empty_like(c)
    g = g.contiguous()
    for k in range(ns - 1, -1, -1):
        xin = ys[k - 1] if k > 0 else x.contiguous()
        yout = ys[k] if k < ns - 1 else y.contiguous()
        dx = torch.empty_like(xin)
        dck = torch.empty(c.shape[0], 5, dtype=torch.float64)
        _cpu().biquad_backward(_np(xin), _np(yout), _np(c[:, k].contiguous()), _np(g), _np(dx), dck.numpy())
        dc[:, k] = dck
        g = dx
    return g, dc


def _cascade_bwd_fake(x, coef, y, ys, g):
    return torch.empty_like(x), coef.new_empty(coef.shape, dtype=torch.float64)


def _cascade_bwd_schema(x: Tensor, coef: Tensor, y: Tensor, ys: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    raise _no_kernel("biquad_cascade_backward")


_cascade_bwd = _op("biquad_cascade_backward", _cascade_bwd_schema, _cascade_bwd_cpu,
                   lambda *a: _tk().biquad_cascade_backward(*a), _cascade_bwd_fake)


def _cascade_setup(ctx, inputs, output):
    x, coef, store = inputs
    y, ys = output
    ctx.mark_non_differentiable(ys)
    ctx.set_materialize_grads(False)  # no zero-filled gradient for ys ((S-1) x the signal) on every backward
    ctx.store = store
    ctx.coef_dtype = coef.dtype
    if store:
        ctx.save_for_backward(x, coef, y, ys)
    else:  # fixed coefficients (K-weighting): the input's gradient needs only them
        ctx.save_for_backward(coef)


def _cascade_backward(ctx, gy, gys):
    if gy is None:
        return None, None, None
    if not ctx.store:
        if ctx.needs_input_grad[1]:
            raise RuntimeError("biquad_cascade ran without store=True; its section outputs are needed "
                               "for the coefficients' gradient")
        # the adjoint of a causal filter from rest is the same filter run backwards in time
        (coef,) = ctx.saved_tensors
        return _cascade(gy.flip(-1).contiguous(), coef, False)[0].flip(-1), None, None
    x, coef, y, ys = ctx.saved_tensors
    dx, dc = _cascade_bwd(x, coef, y, ys, gy)
    return dx, dc.to(ctx.coef_dtype), None


def _cascade_schema(x: Tensor, coef: Tensor, store: bool) -> tuple[Tensor, Tensor]:
    raise _no_kernel("biquad_cascade")


_cascade = _op("biquad_cascade", _cascade_schema, _cascade_cpu, lambda *a: _tk().biquad_cascade(*a),
               _cascade_fake, (_cascade_backward, _cascade_setup))


def biquad_cascade_rows(x: Tensor, coef: Tensor) -> Tensor:
    """Biquads in series: x (rows, samples), coef (rows, sections, 5) -> (rows, samples).

    ``coef`` holds b0, b1, b2, a1, a2 normalised by a0, run in float64. Section
    outputs are kept only when autograd needs them. Differentiable in both.
    """
    x = _compute_dtype(x)
    # section outputs are kept only for the coefficients' gradient: the input's alone is
    # the cascade run backwards in time (fixed filters such as the K-weighting)
    store = torch.is_grad_enabled() and coef.requires_grad
    return _cascade(x, coef, store)[0]


def biquad_rows(x: Tensor, coef: Tensor) -> Tensor:
    """Filter each row of ``x`` (rows, samples) with its biquad ``coef`` (rows, 5)."""
    return biquad_cascade_rows(x, coef[:, None, :])


# ------------------------------------------------------------------------ smoother
def _smooth_cpu(x: Tensor, alpha: Tensor) -> Tensor:
    x = x.contiguous()
    y = torch.empty_like(x)
    _cpu().smoother_forward(_np(x), _np(_f64(alpha)), _np(y))
    return y


def _smooth_bwd_cpu(x: Tensor, y: Tensor, alpha: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    dx = torch.empty_like(x)
    da = torch.empty(alpha.shape, dtype=torch.float64)
    _cpu().smoother_backward(_np(x.contiguous()), _np(y.contiguous()), _np(_f64(alpha)), _np(g.contiguous()),
                             _np(dx), da.numpy())
    return dx, da


def _smooth_bwd_schema(x: Tensor, y: Tensor, alpha: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    raise _no_kernel("smooth_backward")


_smooth_bwd = _op("smooth_backward", _smooth_bwd_schema, _smooth_bwd_cpu, lambda *a: _tk().smooth_backward(*a),
                  lambda x, y, alpha, g: (torch.empty_like(x), alpha.new_empty(alpha.shape, dtype=torch.float64)))


def _smooth_setup(ctx, inputs, output):
    x, alpha = inputs
    ctx.alpha_dtype = alpha.dtype
    ctx.save_for_backward(x, output, alpha)


def _smooth_backward(ctx, g):
    x, y, alpha = ctx.saved_tensors
    dx, da = _smooth_bwd(x, y, alpha, g)
    return dx, da.to(ctx.alpha_dtype)


def _smooth_schema(x: Tensor, alpha: Tensor) -> Tensor:
    raise _no_kernel("smooth")


_smooth = _op("smooth", _smooth_schema, _smooth_cpu, lambda *a: _tk().smooth(*a),
              lambda x, alpha: torch.empty_like(x), (_smooth_backward, _smooth_setup))


def smooth_rows(x: Tensor, alpha_rise: Tensor, alpha_fall: Tensor) -> Tensor:
    """Branching one-pole smoothing of each row of ``x`` (rows, samples).

    ``alpha_rise`` / ``alpha_fall`` (rows,) are the pole radii used while the input
    is above / below the smoothed state (e.g. release / attack for a gain in dB).
    Differentiable in ``x`` and both coefficients.
    """
    alpha = torch.stack([alpha_rise, alpha_fall], dim=-1)
    return _smooth(_compute_dtype(x), alpha)


# ------------------------------------------------------------------ running minimum
def _sliding_min_cpu(x: Tensor, window: int, want_idx: bool) -> tuple[Tensor, Tensor]:
    x = x.contiguous()
    y = torch.empty_like(x)
    idx = torch.empty(x.shape if want_idx else (1, 1), dtype=torch.int64)
    _cpu().sliding_min_forward(_np(x), int(window), _np(y), idx.numpy(), bool(want_idx))
    return y, (idx if want_idx else idx.new_empty(0))


def _sliding_min_setup(ctx, inputs, output):
    ctx.want = inputs[2]
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(output[1])


def _sliding_min_backward(ctx, gy, gidx):
    if not ctx.want:
        raise RuntimeError("sliding_min ran without want_idx=True; its argmins are needed for the gradient")
    if gy is None:
        return None, None, None
    (idx,) = ctx.saved_tensors
    return torch.zeros_like(gy).scatter_add_(1, idx, gy.contiguous()), None, None


def _sliding_min_schema(x: Tensor, window: int, want_idx: bool) -> tuple[Tensor, Tensor]:
    raise _no_kernel("sliding_min")


_sliding_min = _op(
    "sliding_min", _sliding_min_schema, _sliding_min_cpu, lambda *a: _tk().sliding_min(*a),
    lambda x, window, want_idx: (torch.empty_like(x), x.new_empty(x.shape if want_idx else (0,), dtype=torch.int64)),
    (_sliding_min_backward, _sliding_min_setup),
)


def sliding_min_rows(x: Tensor, window: int) -> Tensor:
    """Minimum of each row over the look-ahead window [n, n + window - 1].

    x: (rows, samples). The window is clipped at the end. Differentiable in ``x``
    (the gradient goes to the sample that holds the minimum).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1 sample, got {window}")
    x = _compute_dtype(x)
    want = torch.is_grad_enabled() and x.requires_grad
    return _sliding_min(x, int(window), want)[0]


def sliding_max_rows(x: Tensor, window: int) -> Tensor:
    """Maximum of each row over the look-ahead window [n, n + window - 1]; see sliding_min_rows."""
    return -sliding_min_rows(-x, window)


# ------------------------------------------------------------------ moving average
def _movavg_cpu(x: Tensor, window: int) -> Tensor:
    x = x.contiguous()
    y = torch.empty_like(x)
    _cpu().moving_average_forward(_np(x), int(window), _np(y))
    return y


def _movavg_bwd_cpu(g: Tensor, window: int) -> Tensor:
    dx = torch.empty_like(g, memory_format=torch.contiguous_format)
    _cpu().moving_average_backward(_np(g.contiguous()), int(window), _np(dx))
    return dx


def _movavg_bwd_schema(g: Tensor, window: int) -> Tensor:
    raise _no_kernel("moving_average_backward")


_movavg_bwd = _op("moving_average_backward", _movavg_bwd_schema, _movavg_bwd_cpu,
                  lambda *a: _tk().moving_average_backward(*a), lambda g, window: torch.empty_like(g))


def _movavg_setup(ctx, inputs, output):
    ctx.window = inputs[1]


def _movavg_backward(ctx, g):
    return _movavg_bwd(g, ctx.window), None


def _movavg_schema(x: Tensor, window: int) -> Tensor:
    raise _no_kernel("moving_average")


_movavg = _op("moving_average", _movavg_schema, _movavg_cpu, lambda *a: _tk().moving_average(*a),
              lambda x, window: torch.empty_like(x), (_movavg_backward, _movavg_setup))


def moving_average_rows(x: Tensor, window: int) -> Tensor:
    """Trailing moving average of each row of x (rows, samples) over ``window`` samples,
    with the first sample replicated before the start. Differentiable."""
    if window < 1:
        raise ValueError(f"window must be >= 1 sample, got {window}")
    return _movavg(_compute_dtype(x), int(window))


# ----------------------------------------------------------------------- true peak
def _tp_cpu(x: Tensor, taps: Tensor, floor: Tensor) -> tuple[Tensor, Tensor]:
    x = x.contiguous()
    b, c, n = x.shape
    env = torch.empty(b, n, dtype=x.dtype)
    code = torch.empty(b, n, dtype=torch.int32)
    _cpu().true_peak_envelope_forward(_np(x), _np(taps.to(x.dtype).contiguous()), _np(_f64(floor)), _np(env),
                                      code.numpy())
    return env, code


def _tp_bwd_cpu(g: Tensor, code: Tensor, taps: Tensor, channels: int) -> Tensor:
    b, n = code.shape
    dx = torch.zeros(b, channels, n, dtype=g.dtype)
    _cpu().true_peak_envelope_backward(_np(g.contiguous()), code.numpy(), _np(taps.to(g.dtype).contiguous()),
                                       int(channels), _np(dx))
    return dx


def _tp_bwd_schema(g: Tensor, code: Tensor, taps: Tensor, channels: int) -> Tensor:
    raise _no_kernel("true_peak_envelope_backward")


_tp_bwd = _op("true_peak_envelope_backward", _tp_bwd_schema, _tp_bwd_cpu,
              lambda *a: _tk().true_peak_envelope_backward(*a),
              lambda g, code, taps, channels: g.new_empty((g.shape[0], channels, g.shape[1])))


def _tp_setup(ctx, inputs, output):
    x, taps, floor = inputs
    ctx.channels = x.shape[1]
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(output[1], taps)


def _tp_backward(ctx, genv, gcode):
    if genv is None:
        return None, None, None
    code, taps = ctx.saved_tensors
    return _tp_bwd(genv, code, taps, ctx.channels), None, None


def _tp_schema(x: Tensor, taps: Tensor, floor: Tensor) -> tuple[Tensor, Tensor]:
    raise _no_kernel("true_peak_envelope")


_tp = _op("true_peak_envelope", _tp_schema, _tp_cpu, lambda *a: _tk().true_peak_envelope(*a),
          lambda x, taps, floor: (x.new_empty((x.shape[0], x.shape[2])),
                                  x.new_empty((x.shape[0], x.shape[2]), dtype=torch.int32)),
          (_tp_backward, _tp_setup))


def true_peak_envelope_linked(x: Tensor, taps: Tensor, floor: Tensor | None = None) -> Tensor:
    """Largest |value| of the 4x-oversampled signal over [n-1, n+1), linked across
    channels: x (batch, channels, samples) -> (batch, samples).

    Where no in-between value can reach ``floor`` (batch,), the sample peaks are kept
    (a lower bound) to save time; pass None for the exact envelope. ``taps`` (3, K)
    are the interpolator phases. Differentiable in ``x``.
    """
    x = _compute_dtype(x)
    if floor is None:
        floor = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    floor = floor.detach().to(device=x.device, dtype=torch.float64)
    return _tp(x, taps.detach().to(device=x.device, dtype=x.dtype), floor)[0]


# ------------------------------------------------------- zero-phase three-band split
def _xover_cpu(x: Tensor, lp_low: Tensor, lp_high: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    x = x.contiguous()
    b, c, n = x.shape
    bands = torch.empty(b, 3, c, n, dtype=x.dtype)
    u_low = torch.empty_like(x)
    u_mid = torch.empty_like(x)
    _cpu().crossover_forward(_np(x), _np(_f64(lp_low)), _np(_f64(lp_high)), _np(bands), _np(u_low), _np(u_mid), True)
    return bands, u_low, u_mid


def _xover_fake(x, lp_low, lp_high):
    b, c, n = x.shape
    return x.new_empty(b, 3, c, n), torch.empty_like(x), torch.empty_like(x)


def _xover_bwd_cpu(x: Tensor, lp_low: Tensor, lp_high: Tensor, bands: Tensor, u_low: Tensor, u_mid: Tensor,
                   gb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    x = x.contiguous()
    dx = torch.empty_like(x)
    dlow = torch.empty(x.shape[0], 5, dtype=torch.float64)
    dhigh = torch.empty(x.shape[0], 5, dtype=torch.float64)
    _cpu().crossover_backward(_np(x), _np(_f64(lp_low)), _np(_f64(lp_high)), _np(bands.contiguous()),
                              _np(u_low.contiguous()), _np(u_mid.contiguous()), _np(gb.contiguous()), _np(dx),
                              dlow.numpy(), dhigh.numpy())
    return dx, dlow, dhigh


def _xover_bwd_schema(x: Tensor, lp_low: Tensor, lp_high: Tensor, bands: Tensor, u_low: Tensor, u_mid: Tensor,
                      gb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    raise _no_kernel("crossover_backward")


_xover_bwd = _op("crossover_backward", _xover_bwd_schema, _xover_bwd_cpu, lambda *a: _tk().crossover_backward(*a),
                 lambda x, lp_low, lp_high, bands, u_low, u_mid, gb: (
                     torch.empty_like(x), lp_low.new_empty((x.shape[0], 5), dtype=torch.float64),
                     lp_low.new_empty((x.shape[0], 5), dtype=torch.float64)))


def _xover_setup(ctx, inputs, output):
    x, lp_low, lp_high = inputs
    bands, u_low, u_mid = output
    ctx.mark_non_differentiable(u_low, u_mid)
    ctx.set_materialize_grads(False)
    ctx.dtypes = (lp_low.dtype, lp_high.dtype)
    ctx.save_for_backward(x, lp_low, lp_high, bands, u_low, u_mid)


def _xover_backward(ctx, gb, gu_low, gu_mid):
    if gb is None:
        return None, None, None
    x, lp_low, lp_high, bands, u_low, u_mid = ctx.saved_tensors
    dx, dlow, dhigh = _xover_bwd(x, lp_low, lp_high, bands, u_low, u_mid, gb.to(x.dtype))
    return dx, dlow.to(ctx.dtypes[0]), dhigh.to(ctx.dtypes[1])


def _xover_schema(x: Tensor, lp_low: Tensor, lp_high: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    raise _no_kernel("crossover")


_xover = _op("crossover", _xover_schema, _xover_cpu, lambda *a: _tk().crossover(*a), _xover_fake,
             (_xover_backward, _xover_setup))


def crossover_split(x: Tensor, lp_low: Tensor, lp_high: Tensor) -> Tensor:
    """Zero-phase three-band split (dsp/crossover.py) as one op: x (batch, channels,
    samples), lp_low and lp_high (batch, 5) the Butterworth low-passes (b0, b1, b2, a1, a2)
    each run forward then backward -> bands (batch, 3, channels, samples): low =
    ZP(lp_low, x), mid = ZP(lp_high, x - low), high = x - low - mid. Differentiable in x
    and both coefficient sets; on CPU one compiled pass each way (the inference split's
    kernel forward, the adjoint backward)."""
    return _xover(_compute_dtype(x), lp_low, lp_high)[0]


# ------------------------------------------------- multiband gain computer + application
def _bandcomp_cpu(bands: Tensor, thr: Tensor, slope: Tensor, alpha: Tensor, knee: float, a_rms: float,
                  floor: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The inference kernels (as in :func:`multiband_pass`), keeping the floored power, its
    log10 and the linear gains for the backward pass."""
    bands = bands.contiguous()
    b, k, c, n = bands.shape
    power = torch.empty(b, k, n, dtype=bands.dtype)
    _cpu().band_power_forward(_np(bands), float(a_rms), float(floor), _np(power))
    log_power = torch.log10(power)
    gain_db = torch.empty_like(power)
    gain_lin = torch.empty_like(power)
    _cpu().band_gain_forward(_np(log_power), _np(_f64(thr)), _np(_f64(slope)), float(knee), _np(_f64(alpha[:, 0])),
                             _np(_f64(alpha[:, 1])), _np(gain_db), _np(gain_lin))
    y = torch.empty(b, c, n, dtype=bands.dtype)
    _cpu().apply_band_gains_forward(_np(bands), _np(gain_lin.exp_()), _np(y))
    return y, gain_db, power, log_power, gain_lin


def _bandcomp_fake(bands, thr, slope, alpha, knee, a_rms, floor):
    b, k, c, n = bands.shape
    return (bands.new_empty(b, c, n), bands.new_empty(b, k, n), bands.new_empty(b, k, n), bands.new_empty(b, k, n),
            bands.new_empty(b, k, n))


def _bandcomp_bwd_cpu(bands: Tensor, thr: Tensor, slope: Tensor, alpha: Tensor, knee: float, a_rms: float,
                      floor: float, power: Tensor, log_power: Tensor, gain_db: Tensor, gain_lin: Tensor, gy: Tensor,
                      gg: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    bands = bands.contiguous()
    b, k, c, n = bands.shape
    dbands = torch.empty_like(bands)
    dthr = torch.empty(b, k, dtype=torch.float64)
    dslope = torch.empty(b, k, dtype=torch.float64)
    dalpha = torch.empty(b, k, 2, dtype=torch.float64)
    _cpu().band_compress_backward(_np(bands), _np(log_power.contiguous()), _np(power.contiguous()), _np(gain_db.contiguous()),
                                  _np(gain_lin.contiguous()), _np(_f64(thr)), _np(_f64(slope)), float(knee), float(a_rms),
                                  _np(_f64(alpha)), _np(gy.contiguous()), _np(gg.contiguous()),
                                  _np(dbands), dthr.numpy(), dslope.numpy(), dalpha.numpy())
    return dbands, dthr, dslope, dalpha


def _bandcomp_bwd_fake(bands, thr, slope, alpha, knee, a_rms, floor, power, log_power, gain_db, gain_lin, gy, gg):
    b, k = thr.shape
    f64 = dict(dtype=torch.float64)
    return torch.empty_like(bands), thr.new_empty(b, k, **f64), thr.new_empty(b, k, **f64), thr.new_empty(b, k, 2, **f64)


def _bandcomp_bwd_schema(bands: Tensor, thr: Tensor, slope: Tensor, alpha: Tensor, knee: float, a_rms: float,
                         floor: float, power: Tensor, log_power: Tensor, gain_db: Tensor, gain_lin: Tensor,
                         gy: Tensor, gg: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    raise _no_kernel("band_compress_backward")


_bandcomp_bwd = _op("band_compress_backward", _bandcomp_bwd_schema, _bandcomp_bwd_cpu,
                    lambda *a: _tk().band_compress_backward(*a, _smooth_bwd), _bandcomp_bwd_fake)


def _bandcomp_setup(ctx, inputs, output):
    bands, thr, slope, alpha, knee, a_rms, floor = inputs
    y, gain_db, power, log_power, gain_lin = output
    ctx.mark_non_differentiable(power, log_power, gain_lin)
    ctx.set_materialize_grads(False)  # no zero-filled (batch, K, samples) gradients for the saved outputs
    ctx.consts = (knee, a_rms, floor)
    ctx.dtypes = (thr.dtype, slope.dtype, alpha.dtype)
    ctx.save_for_backward(bands, thr, slope, alpha, power, log_power, gain_db, gain_lin)


def _bandcomp_backward(ctx, gy, ggain, gpower, glog, glin):
    if gy is None and ggain is None:
        return None, None, None, None, None, None, None
    bands, thr, slope, alpha, power, log_power, gain_db, gain_lin = ctx.saved_tensors
    if gy is None:
        gy = bands.new_zeros(bands.shape[0], bands.shape[2], bands.shape[3])
    if ggain is None:  # the gain trace took no part in the loss: a zero the kernels broadcast
        ggain = gain_db.new_zeros(1, 1, 1)
    dbands, dthr, dslope, dalpha = _bandcomp_bwd(bands, thr, slope, alpha, *ctx.consts, power, log_power, gain_db,
                                                 gain_lin, gy.to(bands.dtype), ggain.to(bands.dtype))
    return (dbands, dthr.to(ctx.dtypes[0]), dslope.to(ctx.dtypes[1]), dalpha.sum(dim=1).to(ctx.dtypes[2]),
            None, None, None)


def _bandcomp_schema(bands: Tensor, thr: Tensor, slope: Tensor, alpha: Tensor, knee: float, a_rms: float,
                     floor: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    raise _no_kernel("band_compress")


_bandcomp = _op("band_compress", _bandcomp_schema, _bandcomp_cpu,
                lambda *a: _tk().band_compress(*a, smooth_rows), _bandcomp_fake, (_bandcomp_backward, _bandcomp_setup))


def band_compress(bands: Tensor, threshold_db: Tensor, slope: Tensor, alpha: Tensor, knee_db: float, a_rms: float,
                  power_floor: float) -> tuple[Tensor, Tensor]:
    """The multiband compressor's gain computer and gain application as one op
    (dsp/multiband.py), differentiable in the bands, thresholds, slopes and poles.

    bands (batch, K, channels, samples); threshold_db (absolute dB) and slope
    (= 1/ratio - 1) (batch, K); alpha (batch, 2) the gain smoother's release and
    attack poles; knee_db, the detector pole a_rms and the power floor are constants.
    Returns (output (batch, channels, samples), gain in dB (batch, K, samples)). On CPU
    one compiled pass each way replaces the two dozen full-size intermediate tensors of
    the composition :func:`dsp.multiband.band_gain_db` / :func:`~dsp.multiband.apply_band_gains`.
    """
    y, gain_db, _, _, _ = _bandcomp(_compute_dtype(bands), threshold_db, slope, alpha, float(knee_db), float(a_rms),
                                 float(power_floor))
    return y, gain_db


# ------------------------------------------------------- fused, inference-only passes
def _use_cpu_kernel(t: Tensor) -> bool:
    return t.device.type == "cpu" and not _TRITON_ON_CPU


def true_peak_max(x: Tensor, taps: Tensor) -> Tensor | None:
    """Inference only: per-item true peak (batch,) as a linear amplitude from one CPU pass
    that stores nothing per sample; None where that pass does not apply (not a CPU tensor,
    or autograd has to record the call), and the caller uses the envelope instead."""
    if not _use_cpu_kernel(x) or (torch.is_grad_enabled() and x.requires_grad):
        return None
    x = _compute_dtype(x).detach().contiguous()
    out = torch.zeros(x.shape[0], dtype=torch.float64)
    _cpu().true_peak_max_forward(_np(x), _np(taps.detach().to(x.dtype).contiguous()), out.numpy())
    return out.to(x.dtype)


def limiter_pass(hold: Tensor, scale: Tensor, ceiling: Tensor, alpha: Tensor, window: int,
                 power: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """Fused, inference-only limiter gain (batch, samples) and the 100 ms energies
    (batch, samples // step) of ``power`` under the total gain ``scale * gain``.

    CPU: one numba pass; elsewhere the same arithmetic from the ops above.
    """
    with torch.no_grad():
        if not _use_cpu_kernel(hold):
            return _tk().limiter_pass(hold, scale, ceiling, alpha, int(window), power, int(step),
                                      smooth_rows, moving_average_rows)
        b, n = hold.shape
        gain = torch.empty_like(hold)
        energy = torch.zeros(b, n // step, dtype=torch.float64)
        _cpu().limiter_pass_forward(_np(hold.contiguous()), _np(_f64(scale)), _np(_f64(ceiling)), _np(_f64(alpha)),
                                    int(window), _np(power.contiguous()), int(step), _np(gain), energy.numpy())
        return gain, energy.to(hold.dtype)


def gain_and_loudness_energy(y: Tensor, gain: Tensor, kcoef: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """Inference only: (y * gain, 100 ms K-weighted energies summed over channels).

    y: (batch, channels, samples); gain: (batch, samples); kcoef: (2, 5) K-weighting
    sections -> out (batch, channels, samples), energy (batch, samples // step).
    """
    with torch.no_grad():
        if not _use_cpu_kernel(y):
            return _tk().gain_and_loudness_energy(y, gain, kcoef, int(step), biquad_cascade_rows)
        b, c, n = y.shape
        out = torch.empty_like(y)
        energy = torch.zeros(b, c, n // step, dtype=torch.float64)
        _cpu().gain_and_kweight_forward(_np(y.contiguous()), _np(gain.contiguous()), _np(_f64(kcoef)), int(step),
                                        _np(out), energy.numpy())
        return out, energy.sum(dim=1).to(y.dtype)


def fused_cpu_ok(x: Tensor) -> bool:
    """Whether the fused inference-only CPU kernels can take ``x`` (CPU, float32/64, no Triton emulation)."""
    return _use_cpu_kernel(x) and x.dtype in (torch.float32, torch.float64)


def multiband_pass(x: Tensor, lp_low: Tensor, lp_high: Tensor, threshold_db: Tensor, slope: Tensor, knee_db: float,
                   a_rms: float, a_rel: Tensor, a_att: Tensor, power_floor: float) -> tuple[Tensor, Tensor]:
    """Fused, inference-only three-band compressor on CPU (see :func:`fused_cpu_ok`):
    zero-phase split, gain computer and gain application without the intermediate
    tensors of the differentiable composition. x: (batch, channels, samples);
    lp_low, lp_high: (batch, 5) low-pass biquads; threshold_db, slope: (batch, 3);
    a_rel, a_att: (batch,) -> (output like x, gain in dB (batch, 3, samples))."""
    with torch.no_grad():
        x = x.contiguous()
        b, c, n = x.shape
        k = threshold_db.shape[1]
        bands = torch.empty(b, k, c, n, dtype=x.dtype)
        unused = np.empty((1, 1, 1), dtype=_np(x).dtype)
        _cpu().crossover_forward(_np(x), _np(_f64(lp_low)), _np(_f64(lp_high)), _np(bands), unused, unused, False)
        power = torch.empty(b, k, n, dtype=x.dtype)
        _cpu().band_power_forward(_np(bands), float(a_rms), float(power_floor), _np(power))
        log_power = power.log10_()  # vectorized, in place
        gain_db = torch.empty_like(power)
        _cpu().band_gain_forward(_np(log_power), _np(_f64(threshold_db)), _np(_f64(slope)), float(knee_db),
                                 _np(_f64(a_rel)), _np(_f64(a_att)), _np(gain_db), _np(log_power))
        gain_lin = log_power.exp_()  # the kernel wrote gain_db ln(10)/20 over the (consumed) log power
        out = torch.empty_like(x)
        _cpu().apply_band_gains_forward(_np(bands), _np(gain_lin), _np(out))
        return out, gain_db


def width_pass(x: Tensor, coef: Tensor, width: Tensor) -> Tensor:
    """Fused, inference-only stereo width on CPU (see :func:`fused_cpu_ok`): x (batch, 2,
    samples); coef (batch, 2, 5) the side's high-pass sections; width (batch,) -> like x.
    The mid/side sums and the side's filter run in float64 in one pass."""
    with torch.no_grad():
        x = x.contiguous()
        out = torch.empty_like(x)
        unused = np.empty((1, 1), dtype=_np(x).dtype)
        _cpu().width_forward(_np(x), _np(_f64(coef).contiguous()), _np(_f64(width).contiguous()), _np(out), unused,
                             unused, False)
        return out


# ------------------------------------------------------------ stereo width, differentiable
def _width_cpu(x: Tensor, coef: Tensor, width: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    x = x.contiguous()
    out = torch.empty_like(x)
    o = torch.empty(x.shape[0], x.shape[2], dtype=x.dtype)
    h = torch.empty_like(o)
    _cpu().width_forward(_np(x), _np(_f64(coef)), _np(_f64(width)), _np(out), _np(o), _np(h), True)
    return out, o, h


def _width_fake(x, coef, width):
    return torch.empty_like(x), x.new_empty(x.shape[0], x.shape[2]), x.new_empty(x.shape[0], x.shape[2])


def _width_bwd_cpu(x: Tensor, coef: Tensor, width: Tensor, o: Tensor, h: Tensor, g: Tensor
                   ) -> tuple[Tensor, Tensor, Tensor]:
    x = x.contiguous()
    dx = torch.empty_like(x)
    dcoef = torch.empty(x.shape[0], 2, 5, dtype=torch.float64)
    dwidth = torch.empty(x.shape[0], dtype=torch.float64)
    _cpu().width_backward(_np(x), _np(_f64(coef)), _np(_f64(width)), _np(o.contiguous()), _np(h.contiguous()),
                          _np(g.contiguous()), _np(dx), dcoef.numpy(), dwidth.numpy())
    return dx, dcoef, dwidth


def _width_bwd_schema(x: Tensor, coef: Tensor, width: Tensor, o: Tensor, h: Tensor, g: Tensor
                      ) -> tuple[Tensor, Tensor, Tensor]:
    raise _no_kernel("stereo_width_backward")


_width_bwd = _op("stereo_width_backward", _width_bwd_schema, _width_bwd_cpu,
                 lambda *a: _tk().stereo_width_backward(*a),
                 lambda x, coef, width, o, h, g: (torch.empty_like(x), coef.new_empty(coef.shape, dtype=torch.float64),
                                                  width.new_empty(width.shape, dtype=torch.float64)))


def _width_setup(ctx, inputs, output):
    x, coef, width = inputs
    out, o, h = output
    ctx.mark_non_differentiable(o, h)
    ctx.set_materialize_grads(False)
    ctx.dtypes = (coef.dtype, width.dtype)
    ctx.save_for_backward(x, coef, width, o, h)


def _width_backward(ctx, g, go, gh):
    if g is None:
        return None, None, None
    x, coef, width, o, h = ctx.saved_tensors
    dx, dcoef, dwidth = _width_bwd(x, coef, width, o, h, g.to(x.dtype))
    return dx, dcoef.to(ctx.dtypes[0]), dwidth.to(ctx.dtypes[1])


def _width_schema(x: Tensor, coef: Tensor, width: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    raise _no_kernel("stereo_width")


_width = _op("stereo_width", _width_schema, _width_cpu, lambda *a: _tk().stereo_width(*a), _width_fake,
             (_width_backward, _width_setup))


def stereo_width_op(x: Tensor, coef: Tensor, width: Tensor) -> Tensor:
    """Mid/side width as one differentiable op (dsp/width.py): x (batch, 2, samples); coef
    (batch, 2, 5) the side's high-pass sections; width (batch,) -> like x. Differentiable
    in all three; on CPU the inference pass's arithmetic forward and one compiled adjoint
    pass per item backward."""
    return _width(_compute_dtype(x), coef, width)[0]


# ----------------------------------------------------------------- device self-check
_CHECKED: dict[str, str | None] = {}


def device_problem(device: torch.device | str) -> str | None:
    """Why the ops cannot run on ``device`` (None if they can): runs each op forward and
    backward on a small input there and compares with the CPU kernels. Cached per device."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return None
    key = str(dev)
    if key not in _CHECKED:
        try:
            _CHECKED[key] = _self_check(dev)
        except Exception as exc:  # noqa: BLE001 - any failure means "do not use this device"
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            _CHECKED[key] = f"{type(exc).__name__}: {first}"
    return _CHECKED[key]


def _self_check(dev: torch.device, device_context=contextlib.nullcontext) -> str | None:
    """Each op forward and backward on a small input, on the CPU kernels and on ``dev``
    (inside ``device_context()``: the tests pass :func:`triton_on_cpu` to run the CUDA
    implementations in Triton's interpreter); the reason they differ, or None."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 600, generator=gen, dtype=torch.float64)
    coef = torch.tensor([[[0.2, 0.4, 0.2, -0.6, 0.25], [1.0, -1.9, 0.95, -1.85, 0.9]]] * 4, dtype=torch.float64)
    taps = torch.tensor(np.sinc(np.arange(-5, 7)[None, :] - np.array([[0.25], [0.5], [0.75]])), dtype=torch.float64)
    a = torch.tensor([0.9, 0.5, 0.99, 0.1], dtype=torch.float64)

    def run(d: torch.device) -> list[Tensor]:
        xd = x.to(d, copy=True).requires_grad_(True)  # fresh leaves per run (also when d is the CPU)
        cd = coef.to(d, copy=True).requires_grad_(True)
        rows = xd.reshape(4, 600)
        outs = [biquad_cascade_rows(rows, cd), smooth_rows(rows, a.to(d), a.flip(0).to(d)),
                sliding_max_rows(rows, 9), moving_average_rows(rows, 9),
                true_peak_envelope_linked(xd, taps.to(d), None),
                crossover_split(xd, cd[:2, 0], cd[2:, 0]).reshape(2, -1),
                stereo_width_op(xd, cd[:2], a[:2].to(d) + 0.5)]
        loss = sum((o * torch.linspace(-1, 1, o.shape[-1], dtype=o.dtype, device=d)).sum() for o in outs)
        loss.backward()
        return [o.detach().cpu() for o in outs] + [xd.grad.cpu(), cd.grad.cpu()]

    names = ["biquad_cascade", "smooth", "sliding_max", "moving_average", "true_peak", "crossover", "stereo_width",
             "grad_x", "grad_coef"]
    want_all = run(torch.device("cpu"))
    with device_context():
        got_all = run(dev)
    for name, want, got in zip(names, want_all, got_all):
        err = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
        if not err < 1e-6:
            return f"self-check of {name} on {dev} differs from the CPU kernels (relative error {err:.2g})"
    return None
