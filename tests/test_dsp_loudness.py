"""BS.1770-4 loudness, EBU Tech 3341/3342 cases, and 4x true peak, against independent references."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest
import torch

from dsp.loudness import loudness_and_range
from dsp import integrated_loudness, loudness_range, momentary_loudness, normalize_loudness, short_term_loudness, true_peak


def to_batch(x: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype)[None]


def lufs(x: np.ndarray, fs: float) -> float:
    with torch.no_grad():
        return float(integrated_loudness(to_batch(x), fs)[0])


def pyln_lufs(x: np.ndarray, fs: float) -> float:
    return float(pyloudnorm.Meter(fs).integrated_loudness(np.asarray(x, dtype=np.float64).T))


def tone_sequence(fs: float, parts: list[tuple[float, float]], freq: float = 1000.0, channels: int = 2) -> np.ndarray:
    """Concatenated sine segments [(dBFS peak per channel, seconds)], continuous phase, (channels, samples)."""
    amps = np.concatenate([np.full(int(round(sec * fs)), 10 ** (db / 20)) for db, sec in parts])
    t = np.arange(amps.size) / fs
    return np.repeat((amps * np.sin(2 * math.pi * freq * t))[None], channels, axis=0)


# ------------------------------------------------------------------ music-like synthetic signals
def shaped_noise(fs: float, seconds: float, channels: int, seed: int, slope_db_oct: float) -> np.ndarray:
    """Noise with a spectral slope (pink = -3 dB/oct, brown = -6 dB/oct), (channels, samples)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=-1)
    f = np.fft.rfftfreq(n, 1 / fs)
    shape = np.where(f > 20, (np.maximum(f, 20) / 1000) ** (slope_db_oct / (20 * math.log10(2))), 0.0)
    x = np.fft.irfft(spec * shape, n, axis=-1)
    return 0.3 * x / np.abs(x).max()


def sine_mixture(fs: float, seconds: float, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    out = np.zeros((channels, t.size))
    for _ in range(8):
        f = math.exp(rng.uniform(math.log(30), math.log(min(15000, 0.45 * fs))))
        amp = rng.uniform(0.02, 0.15)
        for c in range(channels):
            out[c] += amp * rng.uniform(0.5, 1.0) * np.sin(2 * math.pi * f * t + rng.uniform(0, 2 * math.pi))
    return out


def am_signal(fs: float, seconds: float, channels: int, seed: int) -> np.ndarray:
    """Amplitude-modulated noise and tone with deep, slow modulation: the gates matter."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    mod = 10 ** ((-30 * (0.5 + 0.5 * np.sin(2 * math.pi * 0.4 * t))) / 20)  # 0 to -30 dB
    carrier = 0.3 * np.sin(2 * math.pi * 440 * t) + 0.1 * rng.standard_normal((channels, t.size))
    return carrier * mod


SIGNALS = {
    "pink": lambda fs, ch, s: shaped_noise(fs, 2.0, ch, s, -3.0),
    "brown": lambda fs, ch, s: shaped_noise(fs, 2.0, ch, s, -6.0),
    "white": lambda fs, ch, s: shaped_noise(fs, 2.0, ch, s, 0.0),
    "sines": lambda fs, ch, s: sine_mixture(fs, 2.0, ch, s),
    "am": lambda fs, ch, s: am_signal(fs, 5.0, ch, s),
}


@pytest.mark.parametrize(("fs", "channels"), [(44100, 2), (48000, 1), (22050, 2), (96000, 1), (48000, 2), (22050, 1)])
@pytest.mark.parametrize("kind", list(SIGNALS))
def test_integrated_loudness_matches_pyloudnorm(fs, kind, channels):
    x = SIGNALS[kind](fs, channels, channels + 10 * len(kind))
    assert lufs(x.astype(np.float32), fs) == pytest.approx(pyln_lufs(x, fs), abs=0.1)


@pytest.mark.parametrize("fs", [44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_integrated_loudness_of_music_matches_pyloudnorm(fs, channels, make_music):
    x = make_music(fs, 4.0, channels=channels, seed=2)
    assert lufs(x.astype(np.float32), fs) == pytest.approx(pyln_lufs(x, fs), abs=0.1)


def test_batch_items_measured_independently():
    fs = 48000
    a, b = sine_mixture(fs, 2.0, 2, 1), 0.1 * shaped_noise(fs, 2.0, 2, 2, -3.0)
    with torch.no_grad():
        both = integrated_loudness(torch.from_numpy(np.stack([a, b])).float(), fs)
    assert float(both[0]) == pytest.approx(lufs(a.astype(np.float32), fs), abs=1e-4)
    assert float(both[1]) == pytest.approx(lufs(b.astype(np.float32), fs), abs=1e-4)
    assert float(both[1]) == pytest.approx(pyln_lufs(b, fs), abs=0.1)


# ------------------------------------------------------------------ reference files (skip if absent)
def test_integrated_loudness_reference_files(integrated_row, load_wav):
    x, fs = load_wav(integrated_row.path)
    integrated_row.check(lufs(x.astype(np.float32), fs))


def test_momentary_max_reference_files(momentary_row, load_wav):
    x, fs = load_wav(momentary_row.path)
    with torch.no_grad():
        m = momentary_loudness(to_batch(x), fs)
    momentary_row.check(float(m.max()))


def test_true_peak_reference_files(true_peak_row, load_wav):
    x, fs = load_wav(true_peak_row.path)
    with torch.no_grad():
        true_peak_row.check(float(true_peak(to_batch(x), fs)[0]))


# ------------------------------------------------------------------ EBU Tech 3341 (synthesized, always run)
@pytest.mark.parametrize(("level", "expected"), [(-23.0, -23.0), (-33.0, -33.0)])
def test_tech3341_cases_1_2_stereo_sine(level, expected):
    fs = 48000
    x = tone_sequence(fs, [(level, 20.0)])
    assert lufs(x.astype(np.float32), fs) == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize(
    ("case", "parts"),
    [
        (3, [(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)]),
        (4, [(-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0), (-72.0, 10.0)]),
        (5, [(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)]),
    ],
)
def test_tech3341_gating_sequences(case, parts):
    """Tech 3341 tests 3-5: the gates must discard the quiet parts; all read -23.0 LUFS."""
    fs = 48000
    x = tone_sequence(fs, parts)
    assert lufs(x.astype(np.float32), fs) == pytest.approx(-23.0, abs=0.1)


def test_tech3341_case_12_momentary_max():
    """Tech 3341 test 12 style: a 1 kHz sine burst whose momentary maximum is -23.0 LUFS."""
    fs = 48000
    x = tone_sequence(fs, [(-80.0, 1.0), (-23.0, 1.0), (-80.0, 1.0)])
    with torch.no_grad():
        assert float(momentary_loudness(to_batch(x), fs).max()) == pytest.approx(-23.0, abs=0.1)


def test_steady_stereo_sine_reads_its_level():
    """Without gating effects, a steady stereo 1 kHz sine at A reads 10 log10(2 * A^2 / 2) + K(1 kHz) - 0.691."""
    fs = 48000
    x = tone_sequence(fs, [(-12.0, 3.0)], freq=1000.0)
    # K-weighting at 1 kHz is +0.691 dB by construction of the -0.691 offset
    assert lufs(x.astype(np.float32), fs) == pytest.approx(-12.0, abs=0.05)


# ------------------------------------------------------------------ EBU Tech 3342 loudness range
@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([(-20.0, 20.0), (-30.0, 20.0)], 10.0),
        ([(-20.0, 20.0), (-15.0, 20.0)], 5.0),
        ([(-40.0, 20.0), (-20.0, 20.0)], 20.0),
        ([(-50.0, 20.0), (-35.0, 20.0), (-20.0, 20.0), (-35.0, 20.0), (-50.0, 20.0)], 15.0),
    ],
)
def test_tech3342_loudness_range(parts, expected):
    fs = 48000
    x = tone_sequence(fs, parts)
    with torch.no_grad():
        lra = float(loudness_range(to_batch(x), fs)[0])
    assert lra == pytest.approx(expected, abs=1.0)
    # the one-filtering pair gives the same range and pyloudnorm's integrated loudness
    lufs2, lra2 = loudness_and_range(to_batch(x), fs)
    assert float(lra2[0]) == pytest.approx(expected, abs=1.0)
    assert float(lufs2[0]) == pytest.approx(pyln_lufs(x, fs), abs=0.05)


def test_loudness_range_of_steady_tone_is_zero():
    fs = 48000
    with torch.no_grad():
        assert float(loudness_range(to_batch(tone_sequence(fs, [(-20.0, 10.0)])), fs)[0]) == pytest.approx(0.0, abs=0.1)


# ------------------------------------------------------------------ silence, short-term, normalize
@pytest.mark.parametrize("channels", [1, 2])
def test_silence_is_minus_infinity(channels):
    with torch.no_grad():
        v = integrated_loudness(torch.zeros(2, channels, 48000), 48000)
    assert torch.isneginf(v).all()


def test_below_absolute_gate_is_minus_infinity():
    x = tone_sequence(48000, [(-80.0, 2.0)])
    assert math.isinf(lufs(x.astype(np.float32), 48000)) and lufs(x.astype(np.float32), 48000) < 0


def test_short_term_loudness_of_steady_tone():
    fs = 48000
    x = tone_sequence(fs, [(-20.0, 5.0)])
    with torch.no_grad():
        st = short_term_loudness(to_batch(x), fs)[0].numpy()
    assert st.size >= 10
    np.testing.assert_allclose(st, -20.0, atol=0.1)


@pytest.mark.parametrize("target", [-8.0, -14.0, -23.0])
def test_normalize_loudness_hits_target(target, make_music):
    fs = 44100
    x = make_music(fs, 4.0, seed=4)
    with torch.no_grad():
        y = normalize_loudness(to_batch(x), fs, target)[0].double().numpy()
    assert pyln_lufs(y, fs) == pytest.approx(target, abs=0.1)
    ratio = y / np.where(x == 0, 1, x)
    assert np.ptp(ratio[np.abs(x) > 1e-3]) < 1e-4  # a pure gain


# ------------------------------------------------------------------ differentiability
@pytest.mark.usefixtures("single_threaded_numba")
def test_integrated_loudness_gradient_matches_finite_difference():
    fs = 16000
    rng = np.random.default_rng(0)
    x = torch.from_numpy(am_signal(fs, 1.5, 2, 3) + 0.01 * rng.standard_normal((2, int(1.5 * fs))))[None]
    x.requires_grad_(True)
    loud = integrated_loudness(x, fs)
    (grad,) = torch.autograd.grad(loud.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    v = torch.from_numpy(rng.standard_normal(x.shape))
    eps = 1e-6
    with torch.no_grad():
        fd = (integrated_loudness(x + eps * v, fs) - integrated_loudness(x - eps * v, fs)) / (2 * eps)
    assert float((grad * v).sum()) == pytest.approx(float(fd[0]), rel=1e-5, abs=1e-7)


@pytest.mark.usefixtures("single_threaded_numba")
def test_integrated_loudness_gradcheck():
    fs = 8000
    rng = np.random.default_rng(1)
    # 0.5 s (two gated 400 ms blocks): fast-mode gradcheck (random projections)
    x = torch.from_numpy(0.2 * rng.standard_normal((1, 2, 4000))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: integrated_loudness(a, fs), (x,), eps=1e-6, atol=1e-5, fast_mode=True)
    # a tiny input (measured as one block): the full Jacobian
    x = torch.from_numpy(0.2 * rng.standard_normal((2, 1, 40))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: integrated_loudness(a, fs), (x,), eps=1e-6, atol=1e-5)


def test_gradient_is_finite_on_silence_with_some_signal():
    fs = 8000
    x = torch.zeros(1, 2, 8000, dtype=torch.float64)
    x[..., 4000:] = 0.3 * torch.sin(torch.arange(4000, dtype=torch.float64) * 0.3)
    x.requires_grad_(True)
    integrated_loudness(x, fs).sum().backward()
    assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------------ true peak
def faded(x: np.ndarray, n_fade: int = 256) -> np.ndarray:
    """Raised-cosine fade in/out: an abrupt start would ring (Gibbs) above the steady peak."""
    w = np.ones(x.shape[-1])
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_fade) / n_fade)
    w[:n_fade], w[-n_fade:] = ramp, ramp[::-1]
    return x * w


@pytest.mark.parametrize("fs", [44100, 48000])
@pytest.mark.parametrize("seed", range(6))
def test_true_peak_matches_oversampled_reference(fs, seed, make_band_noise, ref_true_peak_db):
    channels = 1 + seed % 2
    x = make_band_noise(fs, 0.25, channels=channels, seed=seed, high_fraction=0.2 + 0.04 * seed, peak=0.3 + 0.1 * seed)
    with torch.no_grad():
        got = float(true_peak(to_batch(x, torch.float64), fs)[0])
    assert got == pytest.approx(ref_true_peak_db(x), abs=0.1)
    assert got >= 20 * math.log10(np.abs(x).max()) - 1e-9  # never below the sample peak


@pytest.mark.parametrize("amp_db", [-6.0, 0.0, 3.0])
def test_true_peak_of_quarter_rate_sine_with_45_degree_phase(amp_db):
    """sin(pi n / 2 + pi / 4): every sample is at 0.707 of the peak, so the sample peak is 3 dB low."""
    fs = 48000
    n = np.arange(4800)
    x = faded(10 ** (amp_db / 20) * np.sin(math.pi * n / 2 + math.pi / 4))
    x = np.stack([x, 0.5 * x])
    sample_peak_db = 20 * math.log10(np.abs(x).max())
    assert sample_peak_db == pytest.approx(amp_db - 3.0103, abs=1e-6)
    with torch.no_grad():
        got = float(true_peak(to_batch(x), fs)[0])
    assert got == pytest.approx(amp_db, abs=0.1)


@pytest.mark.parametrize("ratio", [0.11, 0.23, 0.31, 0.43])
def test_true_peak_of_sines_between_samples(ratio):
    """A long unit sine at f/fs = ratio (crests fall between samples): reads 0 dBTP within the
    Tech 3341 true-peak tolerance (-0.4, +0.2)."""
    fs = 48000
    n = np.arange(9600)
    x = faded(np.sin(2 * math.pi * ratio * n + 0.37))[None]
    with torch.no_grad():
        got = float(true_peak(to_batch(x, torch.float64), fs)[0])
    assert -0.4 <= got <= 0.2


def test_true_peak_batch_and_silence():
    fs = 48000
    x = torch.zeros(2, 2, 1000)
    x[0, 1, 500] = 0.5
    with torch.no_grad():
        tp = true_peak(x, fs)
    assert float(tp[0]) == pytest.approx(20 * math.log10(0.5), abs=0.05)
    assert float(tp[1]) < -100


@pytest.mark.parametrize("shape", [(1, 1, 5), (2, 2, 31), (1, 2, 33), (3, 1, 4097), (2, 2, 44100)])
def test_true_peak_measurement_pass_equals_the_envelope(shape):
    """The measurement-only pass (no per-sample envelope, blocks that cannot reach the sample
    peak skipped) returns exactly the largest value of the limiter's true-peak envelope,
    including at the ends (zero outside) and in partial blocks; with autograd recording,
    the envelope path runs and gives the same value."""
    from dsp._ops import true_peak_envelope_linked, true_peak_max
    from dsp.truepeak import interpolation_taps, true_peak_linear

    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=gen) * 0.2
    x[0, -1, shape[2] // 2] = 0.8  # a lone spike: its neighbourhood decides
    x[-1, 0, -1] = -0.7            # and one at the very end
    taps = interpolation_taps("cpu", x.dtype)
    fast = true_peak_max(x, taps)
    assert fast is not None
    envelope = true_peak_envelope_linked(x, taps, None).amax(dim=1)
    assert torch.equal(fast, envelope)
    xg = x.clone().requires_grad_(True)
    assert true_peak_max(xg, taps) is None  # autograd records: the envelope path instead
    slow = true_peak_linear(xg)
    slow.sum().backward()
    assert torch.equal(slow.detach(), envelope)
    assert xg.grad is not None and bool(torch.isfinite(xg.grad).all())
