"""torch.autograd.gradcheck (float64, tiny inputs) of every processor, the chain and the internal ops.

Points are fixed seeds away from the non-differentiable kinks (knee edges, branch
switches of the smoothers, max/min ties, the limiter's unity clamp).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from dsp import (Compressor, Gain, Limiter, MasteringChain, MultibandCompressor, ParametricEQ, StereoWidth,
                 multiband_compress, saturate, split_bands, stereo_width)
from dsp import _ops

EPS, ATOL = 1e-6, 1e-5

pytestmark = pytest.mark.usefixtures("single_threaded_numba")  # tiny inputs: see conftest


def audio(seed: int, batch: int = 2, channels: int = 2, n: int = 64, scale: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(batch, channels, n, generator=g, dtype=torch.float64)).requires_grad_(True)


def params(seed: int, n: int, batch: int = 2, lo: float = 0.15, hi: float = 0.85) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(batch, n, generator=g, dtype=torch.float64)).requires_grad_(True)


def check(fn, *inputs) -> None:
    assert gradcheck(fn, inputs, eps=EPS, atol=ATOL)


def check_fast(fn, *inputs, projections: int = 2) -> None:
    """gradcheck's fast mode: v^T J u for random u, v against finite differences along u.
    The full Jacobian costs one backward pass per output sample; a few projections check
    every input and output at once."""
    for seed in range(projections):
        torch.manual_seed(seed)
        assert gradcheck(fn, inputs, eps=EPS, atol=ATOL, fast_mode=True)


def set_param(proc, p: torch.Tensor, name: str, value: float) -> torch.Tensor:
    p = p.detach().clone()
    p[:, proc.param_names.index(name)] = value
    return p.requires_grad_(True)


# ------------------------------------------------------------------ processors
def test_gradcheck_gain():
    proc = Gain(44100)
    check(lambda x, p: proc(x, p), audio(0), params(0, proc.num_params))


def test_gradcheck_parametric_eq():
    proc = ParametricEQ(44100)  # every section engaged: high-pass 15-85 Hz, gains +-4 dB
    check_fast(lambda x, p: proc(x, p), audio(1), params(1, proc.num_params))


def test_gradcheck_eq_at_identity_high_pass():
    """High-pass at 0 Hz (the identity branch) next to an engaged one."""
    proc = ParametricEQ(44100)
    i = proc.param_names.index("highpass.cutoff_hz")
    p = params(2, proc.num_params).detach()
    cutoff = torch.tensor([[0.0], [0.5]], dtype=torch.float64)  # normalized 0 is the range's edge: not perturbed

    def fn(x, rest):
        return proc(x, torch.cat([rest[:, :i], cutoff, rest[:, i:]], dim=1))

    check_fast(fn, audio(2), torch.cat([p[:, :i], p[:, i + 1 :]], dim=1).requires_grad_(True))


@pytest.mark.parametrize("detector", ["rms", "peak"])
def test_gradcheck_compressor(detector):
    proc = Compressor(16000, detector=detector)
    p = params(2, proc.num_params)
    p = set_param(proc, p, "threshold_db", 0.55)  # -21.6 dB: the test signal crosses it, through the knee
    p = set_param(proc, p, "knee_db", 0.5)
    p = set_param(proc, p, "attack_ms", 0.3)
    p = set_param(proc, p, "release_ms", 0.2)
    x = audio(3, scale=0.2)
    with torch.no_grad():  # the point really compresses (and not uniformly)
        g = proc.gain_db(x, proc.denormalize(p))
    assert float(g.min()) < float(g.max()) - 1.0
    check(lambda x, p: proc(x, p), x, p)


def test_gradcheck_split_bands():
    x = audio(30, n=96)
    low = torch.tensor([150.0, 300.0], dtype=torch.float64, requires_grad=True)
    high = torch.tensor([2000.0, 4500.0], dtype=torch.float64, requires_grad=True)
    check_fast(lambda x, lo, hi: split_bands(x, lo, hi, 16000), x, low, high)


MB_NAMES = list(MultibandCompressor.ranges)


def test_gradcheck_multiband_compress():
    """All ten settings and the audio; thresholds relative to a given reference loudness."""
    proc = MultibandCompressor(16000)
    p = params(31, proc.num_params, lo=0.3, hi=0.7).detach()
    for band, t in (("low", 0.1), ("mid", 0.45), ("high", 0.45)):  # -26.4, -13.8 dB re the reference
        p[:, MB_NAMES.index(f"{band}.threshold_db")] = t
    p[:, MB_NAMES.index("attack_ms")] = 0.2
    p[:, MB_NAMES.index("release_ms")] = 0.3
    x = audio(32, n=96, scale=0.3).detach()
    t = torch.arange(96, dtype=torch.float64) / 16000
    x = (x + 0.5 * torch.sin(2 * math.pi * 100.0 * t)).requires_grad_(True)  # low-band content
    ref = torch.tensor([-8.0, -5.0], dtype=torch.float64)

    def fn(x, p):
        y, g = multiband_compress(x, proc.denormalize(p), 16000, reference_lufs=ref)
        return y, g

    with torch.no_grad():
        g = fn(x, p)[1]
    for k in range(3):  # every band compresses somewhere, not uniformly
        assert float(g[:, k].min()) < -0.5 and float(g[:, k].max() - g[:, k].min()) > 0.3, k
    check_fast(fn, x, p.requires_grad_(True))


def test_gradcheck_saturation():
    x = audio(4, scale=0.8)
    amount = torch.tensor([0.3, 0.9], dtype=torch.float64, requires_grad=True)
    check_fast(lambda x, a: saturate(x, a, 44100, reference_lufs=torch.tensor([-10.0, -18.0])), x, amount)


def test_gradcheck_stereo_width_with_mono_bass():
    x = audio(5, n=96)
    width = torch.tensor([0.6, 1.4], dtype=torch.float64, requires_grad=True)
    mono = torch.tensor([120.0, 40.0], dtype=torch.float64, requires_grad=True)
    check_fast(lambda x, w, m: stereo_width(x, w, m, 16000), x, width, mono)
    proc = StereoWidth(44100)
    check_fast(lambda x, p: proc(x, p), audio(6), params(5, proc.num_params))


@pytest.mark.parametrize("channels", [1, 2])
def test_gradcheck_limiter(channels):
    proc = Limiter(16000)  # 2 ms look-ahead = 32 samples, inside the 64-sample input
    x = audio(6, channels=channels, scale=0.7)
    with torch.no_grad():
        g = proc.gain(x, proc.denormalize(params(6, 1)), -3.0)
    assert float(g.min()) < 0.7  # really limiting
    check(lambda x, p: proc(x, p, ceiling_dbtp=-3.0), x, params(6, 1))


# ------------------------------------------------------------------ chain
CHAIN_FS = 32000  # every declared frequency stays below the designs' 0.45 fs clamp


def chain_point(chain: MasteringChain, seed: int) -> torch.Tensor:
    """Random interior point."""
    for name, r in chain.ranges.items():
        assert r.unit != "Hz" or r.high < 0.45 * CHAIN_FS, name
    return params(seed, chain.num_params)


@pytest.mark.parametrize("ceiling", [None, -6.0])
def test_gradcheck_chain_without_target(ceiling):
    """Audio and all 28 parameters, full Jacobian; reference loudness given (it is measured
    without autograd, so it must not move under the finite differences)."""
    chain = MasteringChain(sample_rate=CHAIN_FS)
    x = audio(7, n=128, scale=0.4)  # longer than the 64-sample look-ahead at 32 kHz
    check_fast(lambda x, p: chain(x, p, ceiling_dbtp=ceiling, reference_lufs=torch.tensor([-12.0, -20.0])),
          x, chain_point(chain, 8))


def test_gradcheck_chain_mono():
    chain = MasteringChain(sample_rate=CHAIN_FS)
    check_fast(lambda x, p: chain(x, p, ceiling_dbtp=-6.0, reference_lufs=-15.0), audio(9, channels=1, n=128), chain_point(chain, 10))


TARGET_FS = 8000  # the target tests need one 400 ms loudness block: kept short at a low rate


def long_audio(seed: int, seconds: float = 0.45) -> torch.Tensor:
    """Long enough for one 400 ms loudness block, so a target really normalizes."""
    return audio(seed, n=int(seconds * TARGET_FS), scale=0.3)


def test_gradcheck_chain_with_target_no_ceiling():
    """Loudness normalization without a ceiling is a pure gain 10^((target - L) / 20): the
    search result drops out exactly, so the whole render is checked (fast mode for the audio)."""
    chain = MasteringChain(sample_rate=TARGET_FS)
    x = long_audio(11)
    p = params(12, chain.num_params)
    ref = torch.tensor([-12.0, -16.0])

    def fn(x, p):
        return chain(x, p, ceiling_dbtp=None, target_lufs=torch.tensor([-14.0, -9.0]), reference_lufs=ref)

    with torch.no_grad():
        from dsp.loudness import integrated_loudness

        assert float((integrated_loudness(fn(x, p), TARGET_FS) - torch.tensor([-14.0, -9.0])).abs().max()) < 0.01
    # fast mode (random projections): the full analytical Jacobian would need one backward
    # pass per output sample
    for seed in range(2):
        torch.manual_seed(seed)
        assert gradcheck(fn, (x, p), eps=EPS, atol=ATOL, fast_mode=True)


def test_gradcheck_chain_with_target_and_ceiling_at_a_fixed_search_result(monkeypatch):
    """With a ceiling the loudness search (run without autograd) picks the limiter's drive;
    at a fixed search result the rest - the limiter rendered at that drive and the final
    differentiable normalization - must have exact gradients (see MasteringChain._finish)."""
    chain = MasteringChain(sample_rate=TARGET_FS)
    x = long_audio(13, seconds=0.42)
    p = params(14, chain.num_params)
    ref = torch.tensor([-12.0, -16.0])
    search = chain._search
    frozen: dict[str, tuple] = {}

    def fixed_search(*args, **kwargs):
        if "result" not in frozen:
            frozen["result"] = search(*args, **kwargs)
        return frozen["result"]

    monkeypatch.setattr(chain, "_search", fixed_search)

    def fn(x, p):
        return chain(x, p, ceiling_dbtp=-1.0, target_lufs=-8.0, reference_lufs=ref)

    y, trace = chain.render(x, p, ceiling_dbtp=-1.0, target_lufs=-8.0, reference_lufs=ref)
    assert float(trace["limiter_gain_db"].min()) < -0.5  # the limiter works at this drive
    for seed in range(2):
        torch.manual_seed(seed)
        assert gradcheck(fn, (x, p), eps=EPS, atol=ATOL, fast_mode=True)


# ------------------------------------------------------------------ internal ops
def stable_biquads(rows: int, seed: int) -> torch.Tensor:
    """Peaking / shelving-like stable biquads (rows, 5) from random poles and zeros."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows):
        r_p, th_p = rng.uniform(0.5, 0.95), rng.uniform(0.1, 2.5)
        r_z, th_z = rng.uniform(0.3, 1.1), rng.uniform(0.1, 2.5)
        gain = rng.uniform(0.5, 2.0)
        out.append([gain, -2 * gain * r_z * math.cos(th_z), gain * r_z**2, -2 * r_p * math.cos(th_p), r_p**2])
    return torch.tensor(out, dtype=torch.float64)


def rows(seed: int, r: int = 3, n: int = 48, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(r, n, generator=g, dtype=torch.float64)).requires_grad_(True)


def test_gradcheck_biquad_rows():
    check(_ops.biquad_rows, rows(11), stable_biquads(3, 11).requires_grad_(True))


def test_gradcheck_biquad_cascade_rows():
    coef = torch.stack([stable_biquads(3, 12), stable_biquads(3, 13)], dim=1).requires_grad_(True)
    check(_ops.biquad_cascade_rows, rows(12), coef)


@pytest.mark.parametrize("ns", [1, 2, 3, 4, 5, 7, 8, 9])
@pytest.mark.parametrize("n", [1, 5, 300])
def test_biquad_cascade_forward_matches_sosfilt(ns, n):
    """Every cascade length (the 2-section and the skewed 4-8-section kernels, the general
    loop), signals shorter than the skew, against scipy's sosfilt in float64."""
    from scipy.signal import sosfilt

    coef = torch.stack([stable_biquads(2, 70 + k) for k in range(ns)], dim=1)
    x = rows(ns + n, r=2, n=n).detach()
    y = _ops.biquad_cascade_rows(x, coef)
    for row in range(2):
        sos = np.concatenate([coef[row, :, :3].numpy(), np.ones((ns, 1)), coef[row, :, 3:].numpy()], axis=1)
        np.testing.assert_allclose(y[row].numpy(), sosfilt(sos, x[row].numpy()), rtol=1e-12, atol=1e-12)


def test_gradcheck_biquad_cascade_rows_seven_sections():
    """The EQ's length: the skewed kernel stores each section's output for the adjoint."""
    coef = torch.stack([stable_biquads(2, 80 + k) for k in range(7)], dim=1).requires_grad_(True)
    check(_ops.biquad_cascade_rows, rows(14, r=2, n=40), coef)


@pytest.mark.parametrize("r, n, ns", [(1, 1, 3), (2, 1, 3), (3, 2, 3), (4, 3, 3), (5, 257, 3), (16, 4096, 3),
                                       (3, 5, 7), (2, 300, 4), (3, 300, 7), (2, 300, 8)])
def test_biquad_cascade_gradient_matches_a_numpy_adjoint(r, n, ns):
    """The backward kernel (rows in fours, any count, signals shorter than the filter's
    memory) against the adjoint written out in numpy, float32 audio as in training:
    v[t] = g[t] - a1 v[t+1] - a2 v[t+2], dx = b * v shifted, db_k = v . x[t-k],
    da_k = -v . y[t-k], section by section from the last. 4-8 sections go through the
    skewed forward kernel, whose stored section outputs the coefficients' gradient reads."""
    coef = torch.stack([stable_biquads(r, 40 + n + k) for k in range(ns)], dim=1)
    g = torch.Generator().manual_seed(n)
    x = torch.randn(r, n, generator=g).requires_grad_(True)
    c = coef.clone().requires_grad_(True)
    y = _ops.biquad_cascade_rows(x, c)
    gy = torch.randn(r, n, generator=g)
    y.backward(gy)

    def filt(sig, b):  # direct form I in float64, sample by sample
        out = np.zeros_like(sig)
        for t in range(len(sig)):
            out[t] = (b[0] * sig[t] + (b[1] * sig[t - 1] if t >= 1 else 0.0) + (b[2] * sig[t - 2] if t >= 2 else 0.0)
                      - (b[3] * out[t - 1] if t >= 1 else 0.0) - (b[4] * out[t - 2] if t >= 2 else 0.0))
        return out

    cn = coef.numpy()
    for row in range(r):
        sig = [x.detach().numpy()[row].astype(np.float64)]
        for k in range(ns):
            sig.append(filt(sig[-1], cn[row, k]))
        grad = gy.numpy()[row].astype(np.float64)
        dcoef = np.zeros((ns, 5))
        for k in range(ns - 1, -1, -1):
            b, xin, yout = cn[row, k], sig[k], sig[k + 1]
            v = np.zeros(n + 2)
            for t in range(n - 1, -1, -1):
                v[t] = grad[t] - b[3] * v[t + 1] - b[4] * v[t + 2]
            vv = v[:n]
            dcoef[k] = [vv @ xin, vv[1:] @ xin[:-1], vv[2:] @ xin[:-2], -(vv[1:] @ yout[:-1]), -(vv[2:] @ yout[:-2])]
            grad = b[0] * vv + b[1] * v[1:n + 1] + b[2] * v[2:n + 2]
        np.testing.assert_allclose(x.grad.numpy()[row], grad, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(grad).max()))
        np.testing.assert_allclose(c.grad.numpy()[row], dcoef, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(dcoef).max()))


def test_gradcheck_smooth_rows():
    g = torch.Generator().manual_seed(14)
    rise = (0.5 + 0.45 * torch.rand(3, generator=g, dtype=torch.float64)).requires_grad_(True)
    fall = (0.2 + 0.45 * torch.rand(3, generator=g, dtype=torch.float64)).requires_grad_(True)
    check(_ops.smooth_rows, rows(14), rise, fall)


def test_gradcheck_smooth_rows_instant_attack():
    """alpha_fall = 0 (the limiter's instant attack): the state jumps down to the input."""
    rise = torch.tensor([0.9, 0.7, 0.95], dtype=torch.float64, requires_grad=True)
    check(lambda x, a: _ops.smooth_rows(x, a, torch.zeros(3, dtype=torch.float64)), rows(15), rise)


@pytest.mark.parametrize("n, window", [(1, 1), (5, 1), (7, 3), (10, 4), (9, 20), (1000, 37), ((1 << 20) + 333, 221)])
def test_sliding_min_matches_a_brute_force_window(n, window):
    """Forward values and argmins (the gradient's routing) against numpy over every
    look-ahead window [t, t + window - 1] clipped at the row end; the last case crosses the
    kernel's 2^20-sample chunks. Ties and plateaus come from rounding to 1/8."""
    g = torch.Generator().manual_seed(n + window)
    x = torch.round(8 * torch.randn(2, n, generator=g, dtype=torch.float64)) / 8
    xp = np.concatenate([x.numpy(), np.full((2, window - 1), np.inf)], axis=1)
    from numpy.lib.stride_tricks import sliding_window_view
    want = sliding_window_view(xp, window, axis=1).min(axis=-1)
    y = _ops.sliding_min_rows(x, window)
    np.testing.assert_array_equal(y.numpy(), want)
    xg = x.clone().requires_grad_(True)
    _ops.sliding_min_rows(xg, window).sum().backward()
    assert float(xg.grad.sum()) == 2 * n  # each output routes its gradient to one input
    # an input that receives gradient is the minimum of a window that contains it
    back = sliding_window_view(np.concatenate([np.full((2, window - 1), np.inf), want], axis=1), window, axis=1)
    hit = (back == x.numpy()[..., None]).any(axis=-1)
    assert np.all(hit[xg.grad.numpy() > 0])


@pytest.mark.parametrize("window", [1, 4, 9, 50])
def test_gradcheck_sliding_min_rows(window):
    check(lambda x: _ops.sliding_min_rows(x, window), rows(16 + window))


@pytest.mark.parametrize("window", [1, 5, 16, 50])
def test_gradcheck_moving_average_rows(window):
    check(lambda x: _ops.moving_average_rows(x, window), rows(20 + window))


def my_interpolator(taps_per_phase: int = 12) -> torch.Tensor:
    """(3, K) Hann-windowed sinc phases for x(n + p/4) from x[n-K/2+1 .. n+K/2] (the test's own taps)."""
    half = taps_per_phase // 2
    k = np.arange(-half + 1, half + 1)
    out = []
    for p in (1, 2, 3):
        t = p / 4 - k
        h = np.sinc(t) * (0.5 + 0.5 * np.cos(np.pi * t / (half + 1)))
        out.append(h / h.sum())
    return torch.tensor(np.array(out), dtype=torch.float64)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("floor", [None, 0.8])
def test_gradcheck_true_peak_envelope_linked(channels, floor):
    x = audio(24, batch=2, channels=channels, n=36)
    fl = None if floor is None else torch.full((2,), floor, dtype=torch.float64)
    check(lambda a: _ops.true_peak_envelope_linked(a, my_interpolator(), fl), x)


def test_true_peak_envelope_is_the_oversampled_max():
    """Forward value against a direct evaluation with the same taps: max |.| over [n-1, n+1)."""
    taps = my_interpolator().numpy()
    x = audio(25, batch=1, channels=2, n=50).detach()
    with torch.no_grad():
        env = _ops.true_peak_envelope_linked(x, torch.from_numpy(taps), None)[0].numpy()
    xn = x[0].numpy()
    n, half = xn.shape[1], taps.shape[1] // 2
    padded = np.pad(xn, ((0, 0), (half - 1, half)))
    fine = np.zeros((2, n, 4))
    fine[:, :, 0] = np.abs(xn)
    for p in range(3):
        for t in range(n):
            fine[:, t, p + 1] = np.abs(padded[:, t : t + 2 * half] @ taps[p])
    per_interval = fine.max(axis=(0, 2))  # [n, n+1), linked over channels
    want = np.maximum(per_interval, np.concatenate([[0.0], per_interval[:-1]]))
    np.testing.assert_allclose(env, want, rtol=1e-12, atol=1e-12)


def test_gradcheck_biquad_cascade_rows_fixed_coefficients():
    """Coefficients that need no gradient (the K-weighting): no section outputs are kept and
    the input's gradient is the cascade run backwards in time; float64 gradcheck, and the
    same gradient as with the coefficients' adjoint."""
    coef = torch.stack([stable_biquads(3, 14), stable_biquads(3, 15)], dim=1)
    x = rows(14)
    check(_ops.biquad_cascade_rows, x, coef)
    g = torch.Generator().manual_seed(3)
    gy = torch.randn(3, 48, generator=g, dtype=torch.float64)
    fixed = torch.autograd.grad(_ops.biquad_cascade_rows(x, coef), x, gy)[0]
    full = torch.autograd.grad(_ops.biquad_cascade_rows(x, coef.clone().requires_grad_(True)), x, gy)[0]
    torch.testing.assert_close(fixed, full, rtol=1e-10, atol=1e-12)
