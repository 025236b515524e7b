"""Compressor against a numpy loop of the textbook equations; true-peak limiter against an
independent 4x resample_poly meter."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import scipy.signal as sps
import torch

from dsp import Compressor, Limiter, compress, compressor_gain_db, limit

RMS_WINDOW_MS = 10.0  # the compressor's default RMS detector time constant
POWER_FLOOR = 1e-10   # convention documented in dsp.compressor: level = 10 log10(power + 1e-10)


# =============================================================== compressor reference
def one_pole(tau_ms: float, fs: float) -> float:
    return math.exp(-1.0 / (tau_ms * 1e-3 * fs))


def reference_gain_db(x: np.ndarray, fs: float, threshold_db: float, ratio: float, knee_db: float, attack_ms: float,
                      release_ms: float, makeup_db: float, detector: str) -> np.ndarray:
    """Giannoulis, Massberg & Reiss (2012) feed-forward compressor, one sample at a time.

    x: (channels, samples). Stereo-linked detector: "peak" uses the largest squared
    sample over channels, "rms" the channel-mean power through a one-pole of
    RMS_WINDOW_MS. Log-domain soft-knee static curve, then smoothed-gain branching
    ballistics (attack while the gain falls, release while it recovers), state
    initialised to the first sample, then makeup.
    """
    threshold, knee, makeup = threshold_db, knee_db, makeup_db
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[1]
    power = np.max(x * x, axis=0) if detector == "peak" else np.mean(x * x, axis=0)
    if detector == "rms":
        a = one_pole(RMS_WINDOW_MS, fs)
        smoothed = np.empty(n)
        s = power[0]
        smoothed[0] = s
        for i in range(1, n):
            s = a * s + (1 - a) * power[i]
            smoothed[i] = s
        power = smoothed
    a_att, a_rel = one_pole(attack_ms, fs), one_pole(release_ms, fs)
    out = np.empty(n)
    state = 0.0
    for i in range(n):
        level = 10 * math.log10(power[i] + POWER_FLOOR)
        over = level - threshold
        if 2 * over < -knee:
            static_out = level
        elif 2 * over > knee:
            static_out = threshold + over / ratio
        else:
            static_out = level + (1 / ratio - 1) * (over + knee / 2) ** 2 / (2 * knee)
        g = static_out - level
        if i == 0:
            state = g
        else:
            coef = a_rel if g > state else a_att
            state = coef * state + (1 - coef) * g
        out[i] = state + makeup
    return out


def comp_gain(x: np.ndarray, fs: float, settings: dict, detector: str, dtype=torch.float32) -> np.ndarray:
    xt = torch.as_tensor(x, dtype=dtype)[None]
    v = {k: torch.tensor([val], dtype=torch.float64) for k, val in settings.items()}
    with torch.no_grad():
        g = compressor_gain_db(xt, v["threshold_db"], v["ratio"], v["knee_db"], v["attack_ms"], v["release_ms"],
                               v["makeup_db"], fs, detector=detector)
    return g[0].double().numpy()


def settings(threshold_db=-30.0, ratio=4.0, knee_db=6.0, attack_ms=5.0, release_ms=100.0, makeup_db=0.0) -> dict:
    return dict(threshold_db=threshold_db, ratio=ratio, knee_db=knee_db, attack_ms=attack_ms, release_ms=release_ms,
                makeup_db=makeup_db)


def to_normalized(values: dict) -> torch.Tensor:
    row = []
    for name, r in Compressor.ranges.items():
        v = values[name]
        row.append(math.log(v / r.low) / math.log(r.high / r.low) if r.scale == "log" else (v - r.low) / (r.high - r.low))
    return torch.tensor([row], dtype=torch.float64)


def tone_bursts(fs: float, levels_db: list[float], seconds_each: float, freq: float = 997.0, channels: int = 2) -> np.ndarray:
    n = int(seconds_each * fs)
    t = np.arange(n * len(levels_db)) / fs
    amp = np.repeat([10 ** (lv / 20) for lv in levels_db], n)
    x = amp * np.sin(2 * math.pi * freq * t)
    if channels == 1:
        return x[None]
    return np.stack([x, 0.6 * x + 0.05 * np.sin(2 * math.pi * 211 * t)])


COMP_SETTINGS = [
    settings(),
    settings(threshold_db=-20.0, ratio=20.0, knee_db=0.0, attack_ms=0.1, release_ms=10.0, makeup_db=0.0),
    settings(threshold_db=-40.0, ratio=2.0, knee_db=18.0, attack_ms=100.0, release_ms=2000.0, makeup_db=12.0),
    settings(threshold_db=-28.0, ratio=1.5, knee_db=12.0, attack_ms=1.0, release_ms=300.0, makeup_db=3.5),
]


@pytest.mark.parametrize("fs", [44100, 48000])
@pytest.mark.parametrize("detector", ["rms", "peak"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("case", range(len(COMP_SETTINGS)))
def test_compressor_gain_trace_matches_textbook_loop(fs, detector, channels, case, make_music):
    s = COMP_SETTINGS[case]
    x = make_music(fs, 0.35, channels=channels, seed=case).astype(np.float32)
    got = comp_gain(x, fs, s, detector)
    want = reference_gain_db(x, fs, detector=detector, **s)
    assert np.abs(got - want).max() < 1e-4
    assert want.min() < s["makeup_db"] - 1.0  # the case really compresses


@pytest.mark.parametrize("detector", ["rms", "peak"])
def test_compressor_on_tone_bursts_matches_loop(detector):
    """Level steps exercise both ballistics branches and the knee; float64 for a tight check."""
    fs = 44100
    x = tone_bursts(fs, [-40, -10, -25, -3, -50, -18], 0.08)
    s = settings(threshold_db=-22.0, ratio=6.0, knee_db=8.0, attack_ms=2.0, release_ms=40.0, makeup_db=2.0)
    got = comp_gain(x, fs, s, detector, dtype=torch.float64)
    want = reference_gain_db(x, fs, detector=detector, **s)
    assert np.abs(got - want).max() < 1e-6


@pytest.mark.parametrize("detector", ["rms", "peak"])
def test_compressor_module_output_is_linked_gain_times_input(detector, make_music):
    """Module with normalized p: both channels get the same reference gain."""
    fs = 48000
    s = settings(threshold_db=-28.0, ratio=5.0, knee_db=4.0, attack_ms=3.0, release_ms=150.0, makeup_db=6.0)
    x = make_music(fs, 0.3, seed=9)
    with torch.no_grad():
        y = Compressor(fs, detector=detector)(torch.from_numpy(x)[None], to_normalized(s))[0].numpy()
    g = reference_gain_db(x, fs, detector=detector, **s)
    np.testing.assert_allclose(y, x * 10 ** (g / 20), rtol=1e-6, atol=1e-9)
    yc = compress(torch.from_numpy(x)[None], *[torch.tensor([s[k]], dtype=torch.float64) for k in Compressor.ranges],
                  fs, detector=detector)[0].numpy()
    np.testing.assert_allclose(yc, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("detector", ["rms", "peak"])
@pytest.mark.parametrize(("threshold", "knee"), [(-40.0, 0.0), (-20.0, 12.0), (-6.0, 18.0)])
def test_ratio_one_is_identity(detector, threshold, knee, make_music):
    x = make_music(44100, 0.3, seed=5).astype(np.float32)
    s = settings(threshold_db=threshold, ratio=1.0, knee_db=knee, attack_ms=1.0, release_ms=50.0)
    with torch.no_grad():
        y = Compressor(44100, detector=detector)(torch.from_numpy(x)[None], to_normalized(s).float())[0].numpy()
    assert np.abs(y - x).max() < 1e-6


def _burst_then_quiet(fs: float) -> tuple[np.ndarray, int]:
    x = tone_bursts(fs, [-4.0, -40.0], 0.4, freq=500.0)
    return x, int(0.4 * fs)


def test_release_changes_output_and_recovery_speed():
    fs = 44100
    x, end = _burst_then_quiet(fs)
    base = dict(threshold_db=-30.0, ratio=8.0, knee_db=0.0, attack_ms=1.0, makeup_db=0.0)
    g_short = comp_gain(x, fs, settings(release_ms=40.0, **base), "rms")
    g_long = comp_gain(x, fs, settings(release_ms=400.0, **base), "rms")
    assert g_short[end - 10] == pytest.approx(g_long[end - 10], abs=0.05)  # same reduction during the burst
    assert g_short[end - 10] < -15.0
    assert np.abs(g_short - g_long).max() > 3.0  # release really changes the output

    def recovery_samples(g: np.ndarray) -> int:
        after = np.nonzero(g[end:] > -1.0)[0]
        return int(after[0]) if after.size else len(g) - end

    assert recovery_samples(g_short) < recovery_samples(g_long)
    at = end + int(0.1 * fs)
    assert g_short[at] > g_long[at] + 5.0

    with torch.no_grad():
        xt = torch.from_numpy(x.astype(np.float32))[None]
        outs = [Compressor(fs)(xt, to_normalized(settings(release_ms=r, **base)).float()) for r in (40.0, 400.0)]
    assert (outs[0] - outs[1]).abs().max() > 1e-3


def test_attack_changes_onset():
    fs = 44100
    x = tone_bursts(fs, [-40.0, -4.0], 0.2, freq=500.0)
    start = int(0.2 * fs)
    base = dict(threshold_db=-30.0, ratio=8.0, knee_db=0.0, release_ms=100.0, makeup_db=0.0)
    fast = comp_gain(x, fs, settings(attack_ms=0.5, **base), "peak")
    slow = comp_gain(x, fs, settings(attack_ms=50.0, **base), "peak")
    at = start + int(0.01 * fs)
    assert fast[at] < slow[at] - 5.0


@pytest.mark.parametrize("detector", ["rms", "peak"])
@pytest.mark.parametrize(("threshold", "ratio", "knee"), [(-20.0, 4.0, 10.0), (-35.0, 20.0, 18.0), (-10.0, 1.7, 3.0)])
def test_soft_knee_static_curve_is_continuous_and_textbook(detector, threshold, ratio, knee):
    """DC inputs give a constant gain equal to the static curve (state starts at the first sample).

    Levels straddle both knee edges by +-1e-3 dB: the gain must not jump there."""
    fs = 44100
    delta = 1e-3
    lo, hi = threshold - knee / 2, threshold + knee / 2
    levels = np.array([lo - 5, lo - delta, lo + delta, threshold, hi - delta, hi + delta, hi + 10])
    x = np.repeat((10 ** (levels / 20))[:, None, None], 64, axis=2)  # (batch, 1, 64)
    s = settings(threshold_db=threshold, ratio=ratio, knee_db=knee, attack_ms=1.0, release_ms=10.0)
    v = {k: torch.full((len(levels),), val, dtype=torch.float64) for k, val in s.items()}
    with torch.no_grad():
        g = compressor_gain_db(torch.from_numpy(x), v["threshold_db"], v["ratio"], v["knee_db"], v["attack_ms"],
                               v["release_ms"], v["makeup_db"], fs, detector=detector).numpy()
    assert np.ptp(g, axis=1).max() < 1e-9  # constant over time
    g = g[:, 0]
    slope = 1 / ratio - 1
    assert abs(g[2] - g[1]) <= 2 * delta * abs(slope) + 1e-7  # lower knee edge
    assert abs(g[5] - g[4]) <= 2 * delta * abs(slope) + 1e-7  # upper knee edge
    assert g[0] == pytest.approx(0.0, abs=1e-6)
    assert g[3] == pytest.approx(slope * knee / 8, abs=1e-6)  # knee centre: quarter-width parabola
    assert g[6] == pytest.approx(slope * (hi + 10 - threshold), abs=1e-5)  # hard region above the knee
    assert np.all(np.diff(g) <= 1e-12)  # more level, never less reduction
    want = [reference_gain_db(np.full((1, 4), 10 ** (lv / 20)), fs, detector=detector, **s)[0] for lv in levels]
    np.testing.assert_allclose(g, want, atol=1e-6)


# =============================================================== limiter
def release_p(release_ms: float) -> torch.Tensor:
    r = Limiter.ranges["release_ms"]
    return torch.tensor([[math.log(release_ms / r.low) / math.log(r.high / r.low)]])


def run_limiter(x: np.ndarray, fs: float, ceiling: float, release_ms: float = 100.0, dtype=torch.float32) -> np.ndarray:
    with torch.no_grad():
        y = Limiter(fs)(torch.as_tensor(x, dtype=dtype)[None], release_p(release_ms).to(dtype), ceiling_dbtp=ceiling)
    return y[0].double().numpy()


def loud_signal(kind: str, fs: float, channels: int, over_db: float, ceiling: float, seed: int, make_music,
                make_band_noise) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(0.4 * fs)
    if kind == "white_noise":
        x = rng.standard_normal((channels, n))
    elif kind == "band_noise":
        x = make_band_noise(fs, 0.4, channels=channels, seed=seed, high_fraction=0.45)
    else:
        x = make_music(fs, 0.4, channels=channels, seed=seed)
    return x * (10 ** ((ceiling + over_db) / 20) / np.abs(x).max())


@pytest.mark.parametrize("fs", [44100, 48000])
@pytest.mark.parametrize("ceiling", [-1.0, -0.3, -2.0])
@pytest.mark.parametrize("release_ms", [10.0, 100.0, 1000.0])
@pytest.mark.parametrize("kind", ["white_noise", "band_noise", "music"])
@pytest.mark.parametrize("channels", [1, 2])
def test_limiter_output_true_peak_under_ceiling(fs, ceiling, release_ms, kind, channels, make_music, make_band_noise,
                                                ref_true_peak_db):
    over = 6.0 + zlib.crc32(repr((fs, ceiling, release_ms, kind, channels)).encode()) % 7  # +6 .. +12 dB
    x = loud_signal(kind, fs, channels, over, ceiling, seed=int(release_ms) + channels, make_music=make_music,
                    make_band_noise=make_band_noise)
    y = run_limiter(x.astype(np.float32), fs, ceiling, release_ms)
    assert y.shape == x.shape
    assert ref_true_peak_db(y) <= ceiling + 0.1
    assert ref_true_peak_db(y) > ceiling - 1.5  # limiting, not just attenuating everything


@pytest.mark.parametrize("fs", [44100, 48000])
def test_limiter_holds_ceiling_on_heavily_limited_music(fs, make_music, ref_true_peak_db):
    """3 s of music pushed 18 dB into the limiter: every peak sits at the ceiling, and the gain
    modulation puts energy near Nyquist, where a short interpolator under-reads."""
    x = make_music(fs, 3.0, channels=2, seed=0) * 10 ** (18 / 20)
    y = run_limiter(x.astype(np.float32), fs, -1.0, 50.0)
    assert ref_true_peak_db(y) <= -1.0 + 0.1


def test_limiter_functional_form_matches_module(make_music):
    fs = 44100
    x = 3.0 * make_music(fs, 0.3, seed=1)
    xt = torch.from_numpy(x.astype(np.float32))[None]
    with torch.no_grad():
        y = limit(xt, -1.0, torch.tensor([200.0]), fs)[0].numpy()
    np.testing.assert_allclose(y, run_limiter(x.astype(np.float32), fs, -1.0, 200.0), rtol=1e-5, atol=1e-6)


def test_limiter_on_true_peak_test_files(true_peak_row, load_wav, ref_true_peak_db):
    """EBU true-peak test signals boosted by +6 dB stay under the ceiling."""
    x, fs = load_wav(true_peak_row.path)
    x = x * 10 ** (6 / 20)
    for ceiling in (-1.0, -2.0):
        y = run_limiter(x.astype(np.float32), fs, ceiling, 100.0)
        assert ref_true_peak_db(y) <= ceiling + 0.1


@pytest.mark.parametrize("channels", [1, 2])
def test_limiter_is_time_aligned(channels, make_music):
    fs = 44100
    x = 4.0 * make_music(fs, 0.5, channels=channels, seed=3)  # well over the ceiling
    y = run_limiter(x.astype(np.float32), fs, -1.0, 50.0)
    assert y.shape == x.shape
    for c in range(channels):
        corr = sps.correlate(y[c], x[c], mode="full", method="fft")
        lags = sps.correlation_lags(len(y[c]), len(x[c]), mode="full")
        assert lags[np.argmax(corr)] == 0
    assert np.abs(y - x).max() > 0.1  # it did limit


@pytest.mark.parametrize("fs", [44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_limiter_passes_quiet_signal_unchanged(fs, channels, make_music, ref_true_peak_db):
    x = make_music(fs, 0.3, channels=channels, seed=8)
    x *= 10 ** ((-1.5 - ref_true_peak_db(x)) / 20)  # true peak -1.5 dBTP, under a -1 dBTP ceiling
    y = run_limiter(x.astype(np.float32), fs, -1.0, 100.0)
    assert np.abs(y - x.astype(np.float32)).max() < 1e-6


def test_limiter_release_sets_recovery_speed():
    fs = 44100
    x = tone_bursts(fs, [6.0, -20.0], 0.3, freq=440.0, channels=2)
    end = int(0.3 * fs)
    x32 = x.astype(np.float32)
    ys = {r: run_limiter(x32, fs, -1.0, r) for r in (20.0, 500.0)}
    win = slice(end + int(0.05 * fs), end + int(0.08 * fs))
    gains = {r: math.sqrt(np.mean(y[:, win] ** 2) / np.mean(x32[:, win].astype(np.float64) ** 2)) for r, y in ys.items()}
    assert gains[20.0] > 0.95           # short release: back near unity 50 ms after the burst
    assert gains[500.0] < gains[20.0] - 0.2  # long release: still pulled down
    assert np.abs(ys[20.0] - ys[500.0]).max() > 1e-3
