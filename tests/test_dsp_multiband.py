"""Zero-phase Linkwitz-Riley crossover and the three-band compressor, against scipy's
Butterworth designs and a plain numpy per-sample loop of the gain computer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal as sps
import torch

from dsp import MasteringChain, MultibandCompressor, multiband_compress, split_bands
from dsp.crossover import lr_highpass, lr_lowpass

FS = 44100
KNEE_DB = 6.0          # documented in dsp/multiband.py
RMS_WINDOW_MS = 10.0   # documented in dsp/multiband.py
POWER_FLOOR = 1e-10    # documented in dsp/compressor.py: level = 10 log10(power + 1e-10)


# ------------------------------------------------------------------ references (scipy / numpy only)
def butter2(fc: float, kind: str, fs: float = FS) -> np.ndarray:
    return sps.butter(2, fc, kind, fs=fs, output="sos")


def power_response(fc: float, kind: str, freqs: np.ndarray, fs: float = FS) -> np.ndarray:
    """|H|^2 of scipy's 2nd-order Butterworth: the zero-phase LR4 band's (real) response."""
    _, h = sps.sosfreqz(butter2(fc, kind, fs), worN=freqs, fs=fs)
    return np.abs(h) ** 2


def zero_phase_ref(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    """Forward then backward through sosfilt, zero initial state both ways (no padding)."""
    y = sps.sosfilt(sos, x, axis=-1)
    return sps.sosfilt(sos, y[..., ::-1], axis=-1)[..., ::-1]


def split_ref(x: np.ndarray, low_hz: float, high_hz: float, fs: float = FS) -> np.ndarray:
    low = zero_phase_ref(x, butter2(low_hz, "lowpass", fs))
    upper = x - low
    mid = zero_phase_ref(upper, butter2(high_hz, "lowpass", fs))
    return np.stack([low, mid, upper - mid])


def static_curve_db(level: np.ndarray, threshold: float, ratio: float, knee: float = KNEE_DB) -> np.ndarray:
    """Soft-knee static curve (Giannoulis et al. 2012) as a gain in dB."""
    over = level - threshold
    gain = np.where(2 * over > knee, (1 / ratio - 1) * over, (1 / ratio - 1) * (over + knee / 2) ** 2 / (2 * knee))
    return np.where(2 * over < -knee, 0.0, gain)


def band_gain_loop(band: np.ndarray, threshold: float, ratio: float, attack_ms: float, release_ms: float,
                   fs: float = FS) -> np.ndarray:
    """One band's gain in dB, one sample at a time: channel-mean power through a 10 ms
    one-pole (state starts at the first sample), soft-knee static curve, branching
    attack/release smoothing of the gain in dB (attack while it falls)."""
    power = np.mean(band * band, axis=0)
    a_rms = math.exp(-1.0 / (RMS_WINDOW_MS * 1e-3 * fs))
    a_att = math.exp(-1.0 / (attack_ms * 1e-3 * fs))
    a_rel = math.exp(-1.0 / (release_ms * 1e-3 * fs))
    out = np.empty(power.shape[0])
    p = power[0]
    state = 0.0
    for i in range(power.shape[0]):
        if i > 0:
            p = a_rms * p + (1 - a_rms) * power[i]
        level = 10 * math.log10(p + POWER_FLOOR)
        g = float(static_curve_db(np.array(level), threshold, ratio))
        if i == 0:
            state = g
        else:
            coef = a_rel if g > state else a_att
            state = coef * state + (1 - coef) * g
        out[i] = state
    return out


def values(low_hz=150.0, high_hz=3000.0, thresholds=(-12.0, -12.0, -12.0), ratios=(1.0, 1.0, 1.0), attack_ms=10.0,
           release_ms=150.0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    v = {"crossover_low_hz": low_hz, "crossover_high_hz": high_hz, "attack_ms": attack_ms, "release_ms": release_ms}
    for k, t, r in zip(("low", "mid", "high"), thresholds, ratios):
        v[f"{k}.threshold_db"] = t
        v[f"{k}.ratio"] = r
    assert set(v) == set(MultibandCompressor.ranges)  # the test covers every declared parameter
    return {k: torch.tensor([x], dtype=dtype) for k, x in v.items()}


def impulse(n: int = 1 << 14) -> np.ndarray:
    x = np.zeros((1, n))
    x[0, n // 2] = 1.0
    return x


def real_response(y: np.ndarray, n0: int) -> np.ndarray:
    """Frequency response of a zero-phase impulse response centred at n0 (real up to rounding)."""
    spec = np.fft.rfft(y) * np.exp(2j * math.pi * np.fft.rfftfreq(y.shape[-1]) * n0)
    return spec


# ------------------------------------------------------------------ crossover
def test_scipy_butterworth_is_the_rbj_q_half_sqrt2_design():
    """The references below use scipy.butter; the module says it uses RBJ designs at Q = 1/sqrt(2)."""
    from dsp.biquad import lowpass_coefficients

    for fc in (60.0, 300.0, 6000.0):
        rbj = lowpass_coefficients(torch.tensor([fc], dtype=torch.float64), torch.tensor([1 / math.sqrt(2)], dtype=torch.float64), FS)[0].numpy()
        sos = butter2(fc, "lowpass")[0]
        np.testing.assert_allclose(rbj, np.r_[sos[:3], sos[4:]], rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("low_hz", "high_hz"), [(60.0, 1500.0), (300.0, 6000.0), (120.0, 2500.0)])
def test_bands_sum_to_the_input_exactly(make_music, dtype, low_hz, high_hz):
    x = torch.from_numpy(make_music(FS, 0.5, seed=2)).to(dtype)[None].repeat(2, 1, 1)
    bands = split_bands(x, torch.tensor([low_hz, 90.0]), torch.tensor([high_hz, 4000.0]), FS)
    assert bands.shape == (2, 3, 2, x.shape[-1]) and bands.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    assert float((bands.sum(dim=1) - x).abs().max()) < tol
    # and they are the bands of the independent zero-phase reference
    want = split_ref(x[0].double().numpy(), low_hz, high_hz)
    assert np.abs(bands[0].double().numpy() - want).max() < (1e-5 if dtype == torch.float32 else 1e-10)


@pytest.mark.parametrize(("low_hz", "high_hz"), [(60.0, 1500.0), (300.0, 6000.0)])
def test_band_magnitudes_are_squared_butterworth(low_hz, high_hz):
    """Impulse in the middle of the buffer (far from the edges): low = |LP1|^2, mid =
    |HP1|^2 |LP2|^2, high = |HP1|^2 |HP2|^2, zero phase (the spectra are real)."""
    x = impulse()
    n0 = x.shape[-1] // 2
    with torch.no_grad():
        bands = split_bands(torch.from_numpy(x)[None], torch.tensor([low_hz]), torch.tensor([high_hz]), FS)[0, :, 0]
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / FS)
    lp1, hp1 = power_response(low_hz, "lowpass", freqs), power_response(low_hz, "highpass", freqs)
    lp2, hp2 = power_response(high_hz, "lowpass", freqs), power_response(high_hz, "highpass", freqs)
    for k, want in enumerate((lp1, hp1 * lp2, hp1 * hp2)):
        spec = real_response(bands[k].numpy(), n0)
        assert np.abs(spec.imag).max() < 1e-9  # zero phase
        np.testing.assert_allclose(spec.real, want, atol=1e-9)
    # LR4: -6.02 dB at each crossover
    for fc, resp in ((low_hz, lp1), (high_hz, hp2)):
        _, h = sps.sosfreqz(butter2(fc, "lowpass"), worN=[fc], fs=FS)
        assert 20 * math.log10(abs(h[0]) ** 2) == pytest.approx(-6.0206, abs=1e-3)


@pytest.mark.parametrize("fc", [60.0, 300.0, 3000.0])
def test_complementary_high_band_is_the_filtered_high_pass(fc, make_band_noise):
    """Butterworth power complementarity |LP|^2 + |HP|^2 = 1 (checked on scipy's designs)
    makes x - low equal to the zero-phase LR high-pass away from the start-up transients."""
    freqs = np.linspace(1.0, FS / 2, 2000)
    total = power_response(fc, "lowpass", freqs) + power_response(fc, "highpass", freqs)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    x = torch.from_numpy(make_band_noise(FS, 1.0, channels=1, seed=4))[None]
    f = torch.tensor([fc], dtype=torch.float64)
    with torch.no_grad():
        upper = x - lr_lowpass(x, f, FS)
        high = lr_highpass(x, f, FS)
    edge = int(0.2 * FS)  # start-up transients of the zero-state filters at both ends
    err = (upper - high)[..., edge:-edge].abs().max()
    assert float(err) < 1e-6 * float(x.abs().max())


# ------------------------------------------------------------------ gain computer against the numpy loop
CASES = [
    dict(low_hz=150.0, high_hz=3000.0, thresholds=(-18.0, -10.0, -6.0), ratios=(4.0, 2.0, 3.0), attack_ms=5.0,
         release_ms=80.0),
    dict(low_hz=60.0, high_hz=6000.0, thresholds=(-30.0, -24.0, -28.0), ratios=(1.5, 4.0, 1.2), attack_ms=1.0,
         release_ms=1000.0),
    dict(low_hz=300.0, high_hz=1500.0, thresholds=(-3.0, -20.0, 6.0), ratios=(3.0, 1.0, 4.0), attack_ms=100.0,
         release_ms=20.0),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("path", ["fused", "autograd"])
def test_gain_computer_matches_numpy_loop(case, path, make_music):
    """Both the fused inference pass (no grad, CPU) and the differentiable composition
    (grad enabled) against the numpy per-sample loop."""
    settings = CASES[case]
    rng = np.random.default_rng(case)
    # short random input: music with a loud burst and a near-silent gap
    x = make_music(FS, 0.25, seed=case)
    x[:, 2000:4000] *= 3.0
    x[:, 6000:7000] *= 1e-4
    x = x + 0.01 * rng.standard_normal(x.shape)
    ref_lufs = -20.0 + 3.0 * case
    xt = torch.from_numpy(x)[None]
    if path == "fused":
        with torch.no_grad():
            y, g = multiband_compress(xt, values(**settings), FS, reference_lufs=ref_lufs)
    else:
        y, g = multiband_compress(xt.clone().requires_grad_(), values(**settings), FS, reference_lufs=ref_lufs)
        y, g = y.detach(), g.detach()
    bands = split_ref(x, settings["low_hz"], settings["high_hz"])
    want = np.stack([
        band_gain_loop(bands[k], ref_lufs + settings["thresholds"][k], settings["ratios"][k], settings["attack_ms"],
                       settings["release_ms"])
        for k in range(3)
    ])
    assert g.shape == (1, 3, x.shape[-1])
    np.testing.assert_allclose(g[0].numpy(), want, atol=1e-7)
    assert float(g.min()) < -1.0  # the case really compresses
    out = (bands * 10 ** (want[:, None, :] / 20)).sum(axis=0)
    np.testing.assert_allclose(y[0].numpy(), out, atol=1e-7)


def test_float32_gain_matches_float64(make_music):
    x = make_music(FS, 0.25, seed=9)
    v64 = values(**CASES[0])
    v32 = {k: t.float() for k, t in v64.items()}
    with torch.no_grad():
        y64, g64 = multiband_compress(torch.from_numpy(x)[None], v64, FS, reference_lufs=-20.0)
        y32, g32 = multiband_compress(torch.from_numpy(x).float()[None], v32, FS, reference_lufs=-20.0)
    assert y32.dtype == torch.float32
    assert float((g32.double() - g64).abs().max()) < 1e-3
    assert float((y32.double() - y64).abs().max()) < 1e-5


def test_steady_low_tone_compresses_only_the_low_band():
    """A 100 Hz tone 9 dB over the low band's threshold gets the static curve's reduction
    in the low band; the mid and high bands (same threshold, tone far below it) stay at 0 dB."""
    fs, f0, seconds = FS, 100.0, 1.0
    t = np.arange(int(seconds * fs)) / fs
    amp = 0.5
    x = np.stack([amp * np.sin(2 * math.pi * f0 * t)] * 2)
    ref_lufs = -23.0
    v = values(low_hz=300.0, high_hz=3000.0, thresholds=(-6.0, -6.0, -6.0), ratios=(4.0, 4.0, 4.0), attack_ms=50.0,
               release_ms=50.0)  # equal times: the smoother is linear, so the detector's ripple averages out
    with torch.no_grad():
        _, g = multiband_compress(torch.from_numpy(x)[None], v, fs, reference_lufs=ref_lufs)
    g = g[0].numpy()
    steady = slice(int(0.4 * fs), int(0.8 * fs))  # settled, away from the zero-phase filters' edges
    # level of the low band's 10 ms RMS: the tone times |LP(100 Hz)|^2 (scipy), power A^2 / 2
    lp = float(power_response(300.0, "lowpass", np.array([f0]))[0])
    level = 20 * math.log10(amp * lp) - 10 * math.log10(2)
    want = float(static_curve_db(np.array(level), ref_lufs - 6.0, 4.0))
    assert want < -5.0
    assert float(g[0, steady].mean()) == pytest.approx(want, abs=0.05)
    assert float(np.ptp(g[0, steady])) < 0.5  # steady (the detector's 200 Hz ripple, smoothed)
    # ~0 dB: only the release tail of the filters' start-up transient at the signal's edge is left
    assert np.abs(g[1:, steady]).max() < 1e-3


def test_ratio_one_changes_nothing(make_music):
    x = torch.from_numpy(make_music(FS, 0.5, seed=6))[None]
    v = values(low_hz=100.0, high_hz=2000.0, thresholds=(-30.0, -30.0, -30.0), ratios=(1.0, 1.0, 1.0))
    with torch.no_grad():
        y, g = multiband_compress(x, v, FS)
    assert float(g.abs().max()) == 0.0
    assert float((y - x).abs().max()) < 1e-12


def test_thresholds_follow_the_reference_loudness(make_music):
    """Thresholds are relative to the reference loudness: scaling the input by k and the
    reference by 20 log10 k scales the output by k (and leaves the gain trace alone)."""
    x = torch.from_numpy(make_music(FS, 0.5, seed=7))[None]
    v = values(**CASES[0])
    with torch.no_grad():
        y1, g1 = multiband_compress(x, v, FS, reference_lufs=-18.0)
        y2, g2 = multiband_compress(0.1 * x, v, FS, reference_lufs=-38.0)
        y3, g3 = multiband_compress(0.1 * x, v, FS)  # measured reference: same as measuring x, minus 20 dB
        y4, _ = multiband_compress(x, v, FS)
    # up to the detector's -100 dB power floor, which a 20 dB quieter input comes 20 dB nearer
    assert float((g1 - g2).abs().max()) < 1e-4
    assert float((y2 - 0.1 * y1).abs().max()) < 1e-5 * float(y2.abs().max())
    assert float((y3 - 0.1 * y4).abs().max()) < 1e-5 * float(y3.abs().max())
    assert float(g1.min()) < -1.0


def test_module_and_chain_return_per_band_traces(make_music):
    """The chain's "band_gain_db" trace is the multiband compressor's per-band gain."""
    chain = MasteringChain(FS)
    x = torch.from_numpy(make_music(FS, 0.5, seed=8)).float()[None]
    p = chain.identity_params(1)
    settings = chain.denormalize(p)[0]
    for k, t, r in (("low", -20.0, 3.0), ("mid", -15.0, 2.0), ("high", -25.0, 4.0)):
        settings[f"multiband.{k}.threshold_db"] = t
        settings[f"multiband.{k}.ratio"] = r
    p = chain.normalize([settings])
    with torch.no_grad():
        _, trace = chain.render(x, p, ceiling_dbtp=None, reference_lufs=-16.0)
        vals = {n.split(".", 1)[1]: torch.tensor([v]) for n, v in chain.denormalize(p)[0].items()
                if n.startswith("multiband.")}
        _, g = multiband_compress(x, vals, FS, reference_lufs=-16.0)
    assert trace["band_gain_db"].shape == (1, 3, x.shape[-1])
    assert float((trace["band_gain_db"] - g).abs().max()) < 1e-4
    for k in range(3):
        assert float(trace["band_gain_db"][0, k].min()) < -0.5, f"band {k} idle"
    assert float(trace["band_gain_db"].max()) <= 0.0


@pytest.mark.parametrize("n", [1, 2, 3, 6, 257])
def test_fused_split_handles_any_length(n):
    """The fused pass filters two samples per step; odd and tiny lengths (the last sample
    alone) give what the differentiable composition gives."""
    g = torch.Generator().manual_seed(n)
    x = 0.3 * torch.randn(1, 2, n, generator=g, dtype=torch.float64)
    v = values(**CASES[0])
    with torch.no_grad():
        y_fused, g_fused = multiband_compress(x, v, FS, reference_lufs=-30.0)
    y_graph, g_graph = multiband_compress(x.clone().requires_grad_(), v, FS, reference_lufs=-30.0)
    torch.testing.assert_close(y_fused, y_graph.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(g_fused, g_graph.detach(), rtol=0, atol=1e-9)


def test_fused_gradient_equals_autograd_through_the_composition(make_music):
    """With autograd on, multiband_compress runs the gain computer and application as one
    op with a hand-written adjoint (dsp._ops.band_compress). On 0.3 s of music with a loud
    burst, its output, gain trace and every gradient (the audio, thresholds, ratios,
    attack, release) equal autograd through the readable composition split_bands ->
    band_gain_db -> apply_band_gains, which the numpy loop above checks forward."""
    from dsp.multiband import BANDS, apply_band_gains, band_gain_db

    x = make_music(FS, 0.3, seed=7)
    x[:, 3000:6000] *= 4.0
    ref = torch.tensor([-20.0], dtype=torch.float64)
    settings = values(**CASES[0])
    leaves = {k: v.clone().requires_grad_(True) for k, v in settings.items()
              if k.endswith(("threshold_db", "ratio", "attack_ms", "release_ms"))}
    gen = torch.Generator().manual_seed(3)
    w_y = torch.randn(1, 2, x.shape[-1], generator=gen, dtype=torch.float64)
    w_g = torch.randn(1, 3, x.shape[-1], generator=gen, dtype=torch.float64)

    def run(fused: bool):
        xt = torch.from_numpy(x)[None].clone().requires_grad_(True)
        v = {**settings, **leaves}
        if fused:
            y, g = multiband_compress(xt, v, FS, reference_lufs=ref)
        else:
            b = split_bands(xt, v["crossover_low_hz"], v["crossover_high_hz"], FS)
            thr = torch.stack([v[f"{k}.threshold_db"] for k in BANDS], dim=1)
            ratio = torch.stack([v[f"{k}.ratio"] for k in BANDS], dim=1)
            g = band_gain_db(b, ref, thr, ratio, v["attack_ms"], v["release_ms"], FS)
            y = apply_band_gains(b, g)
        loss = (y * w_y).sum() + (g * w_g).sum()
        return [y.detach(), g.detach()] + list(torch.autograd.grad(loss, [xt] + list(leaves.values())))

    fused, composed = run(True), run(False)
    assert float(composed[1].min()) < -1.0  # really compresses
    for name, a, b in zip(["y", "gain", "audio"] + list(leaves), fused, composed):
        scale = float(b.abs().max())
        assert scale > 0.0, name
        assert float((a - b).abs().max()) <= 1e-9 * scale, name


@pytest.mark.parametrize(("dtype", "n", "tol", "items", "channels"),
                         [(torch.float64, 9000, 1e-9, 2, 2), (torch.float64, 5, 1e-9, 2, 2),
                          (torch.float32, 9000, 2e-4, 2, 2), (torch.float64, 3000, 1e-9, 3, 1),
                          (torch.float64, 3000, 1e-9, 3, 2)])
def test_split_op_gradient_equals_autograd_through_the_composition(make_music, dtype, n, tol, items, channels):
    """split_bands is one op with a hand-written adjoint (dsp._ops.crossover_split). Its
    bands and the gradients of the audio and of both crossover frequencies equal autograd
    through the composition written with the biquad ops (forward pass, flipped backward
    pass; those ops are checked against scipy's sosfilt and a numpy adjoint), for items
    with different crossovers and each band weighted differently (the kernel takes items
    in pairs: odd batches and mono too)."""
    from dsp.crossover import lr_lowpass

    x = torch.from_numpy(make_music(FS, 0.3, seed=11)[:, :n]).to(dtype)
    x = torch.stack([x, 0.5 * x.flip(-1), -0.8 * x.roll(n // 3, -1)])[:items, :channels]
    low0 = torch.tensor([90.0, 240.0, 400.0], dtype=torch.float64)[:items]
    high0 = torch.tensor([1800.0, 5200.0, 3000.0], dtype=torch.float64)[:items]
    w = torch.randn(items, 3, channels, x.shape[-1], generator=torch.Generator().manual_seed(5), dtype=dtype)

    def run(op: bool):
        xt = x.clone().requires_grad_(True)
        lo, hi = low0.clone().requires_grad_(True), high0.clone().requires_grad_(True)
        if op:
            bands = split_bands(xt, lo, hi, FS)
        else:
            low = lr_lowpass(xt, lo, FS)
            upper = xt - low
            mid = lr_lowpass(upper, hi, FS)
            bands = torch.stack([low, mid, upper - mid], dim=1)
        return [bands.detach()] + list(torch.autograd.grad((bands * w).sum(), [xt, lo, hi]))

    got, want = run(True), run(False)
    for name, a, b in zip(["bands", "audio", "low_hz", "high_hz"], got, want):
        scale = float(b.abs().max())
        assert scale > 0.0, name
        assert float((a - b).abs().max()) <= tol * scale, (name, float((a - b).abs().max()), scale)
