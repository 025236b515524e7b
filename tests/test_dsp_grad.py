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

from dsp import Compressor, Gain, Limiter, MasteringChain, ParametricEQ, Saturation, StereoWidth
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


def set_param(proc, p: torch.Tensor, name: str, value: float) -> torch.Tensor:
    p = p.detach().clone()
    p[:, proc.param_names.index(name)] = value
    return p.requires_grad_(True)


# ------------------------------------------------------------------ processors
def test_gradcheck_gain():
    proc = Gain(44100)
    check(lambda x, p: proc(x, p), audio(0), params(0, proc.num_params))


def test_gradcheck_parametric_eq():
    proc = ParametricEQ(44100)
    p = set_param(proc, params(1, proc.num_params), "highpass.mix", 0.6)
    check(lambda x, p: proc(x, p), audio(1), p)


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


def test_gradcheck_saturation():
    proc = Saturation(44100)
    check(lambda x, p: proc(x, p), audio(4, scale=0.8), params(4, proc.num_params))


def test_gradcheck_stereo_width():
    proc = StereoWidth(44100)
    check(lambda x, p: proc(x, p), audio(5), params(5, proc.num_params))


@pytest.mark.parametrize("channels", [1, 2])
def test_gradcheck_limiter(channels):
    proc = Limiter(16000)  # 2 ms look-ahead = 32 samples, inside the 64-sample input
    x = audio(6, channels=channels, scale=0.7)
    with torch.no_grad():
        g = proc.gain(x, proc.denormalize(params(6, 1)), -3.0)
    assert float(g.min()) < 0.7  # really limiting
    check(lambda x, p: proc(x, p, ceiling_dbtp=-3.0), x, params(6, 1))


# ------------------------------------------------------------------ chain
def chain_point(chain: MasteringChain, seed: int) -> torch.Tensor:
    p = params(seed, chain.num_params)
    # keep the upper EQ bands below the 0.45 fs design clamp at 16 kHz
    for name in ("eq.peak3.center_hz", "eq.peak4.center_hz", "eq.high_shelf.cutoff_hz"):
        p = set_param(chain, p, name, 0.3)
    p = set_param(chain, p, "compressor.threshold_db", 0.55)
    p = set_param(chain, p, "compressor.knee_db", 0.5)
    return p


@pytest.mark.parametrize(
    ("detector", "ceiling", "target", "fast"),
    [("rms", None, None, False), ("rms", -1.0, None, False), ("rms", -1.0, -14.0, False),
     ("peak", -1.0, -14.0, True), ("peak", None, None, True), ("peak", -1.0, None, True), ("rms", None, -20.0, True)],
    ids=["rms-bare", "rms-ceiling", "rms-ceiling+target", "peak-ceiling+target-fast", "peak-bare-fast", "peak-ceiling-fast",
         "rms-target-fast"],
)
def test_gradcheck_chain(detector, ceiling, target, fast):
    """Full Jacobian for the main configurations; the rest by gradcheck's fast mode (random projections)."""
    chain = MasteringChain(sample_rate=16000, detector=detector)
    x = audio(7, scale=0.4)
    p = chain_point(chain, 8)
    assert gradcheck(lambda x, p: chain(x, p, ceiling_dbtp=ceiling, target_lufs=target), (x, p), eps=EPS, atol=ATOL,
                     fast_mode=fast)


def test_gradcheck_chain_mono():
    chain = MasteringChain(sample_rate=16000)
    check(lambda x, p: chain(x, p, ceiling_dbtp=-1.0, target_lufs=-12.0), audio(9, channels=1), chain_point(chain, 10))


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


def test_gradcheck_smooth_rows():
    g = torch.Generator().manual_seed(14)
    rise = (0.5 + 0.45 * torch.rand(3, generator=g, dtype=torch.float64)).requires_grad_(True)
    fall = (0.2 + 0.45 * torch.rand(3, generator=g, dtype=torch.float64)).requires_grad_(True)
    check(_ops.smooth_rows, rows(14), rise, fall)


def test_gradcheck_smooth_rows_instant_attack():
    """alpha_fall = 0 (the limiter's instant attack): the state jumps down to the input."""
    rise = torch.tensor([0.9, 0.7, 0.95], dtype=torch.float64, requires_grad=True)
    check(lambda x, a: _ops.smooth_rows(x, a, torch.zeros(3, dtype=torch.float64)), rows(15), rise)


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
