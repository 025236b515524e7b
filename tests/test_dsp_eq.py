"""ParametricEQ against scipy.signal.sosfilt on independently computed RBJ cookbook biquads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal as sps
import torch

from dsp import ParametricEQ, parametric_eq

SHELF_Q = 1 / math.sqrt(2)  # the EQ's fixed shelf and high-pass Q (Butterworth)
SAMPLE_RATES = (44100, 48000, 96000)
PEAKS = ("peak1", "peak2", "peak3", "peak4")


# ------------------------------------------------------------- RBJ cookbook (numpy float64)
def _w0_alpha(f: float, q: float, fs: float) -> tuple[float, float, float]:
    w0 = 2 * math.pi * f / fs
    return math.cos(w0), math.sin(w0), math.sin(w0) / (2 * q)


def rbj_peaking(f: float, gain_db: float, q: float, fs: float) -> np.ndarray:
    a = 10 ** (gain_db / 40)
    cw, _, alpha = _w0_alpha(f, q, fs)
    b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
    den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    return np.array(b + den) / den[0]


def rbj_low_shelf(f: float, gain_db: float, q: float, fs: float) -> np.ndarray:
    a = 10 ** (gain_db / 40)
    cw, _, alpha = _w0_alpha(f, q, fs)
    r = 2 * math.sqrt(a) * alpha
    b = [a * ((a + 1) - (a - 1) * cw + r), 2 * a * ((a - 1) - (a + 1) * cw), a * ((a + 1) - (a - 1) * cw - r)]
    den = [(a + 1) + (a - 1) * cw + r, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - r]
    return np.array(b + den) / den[0]


def rbj_high_shelf(f: float, gain_db: float, q: float, fs: float) -> np.ndarray:
    a = 10 ** (gain_db / 40)
    cw, _, alpha = _w0_alpha(f, q, fs)
    r = 2 * math.sqrt(a) * alpha
    b = [a * ((a + 1) + (a - 1) * cw + r), -2 * a * ((a - 1) + (a + 1) * cw), a * ((a + 1) + (a - 1) * cw - r)]
    den = [(a + 1) - (a - 1) * cw + r, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - r]
    return np.array(b + den) / den[0]


def rbj_highpass(f: float, q: float, fs: float) -> np.ndarray:
    cw, _, alpha = _w0_alpha(f, q, fs)
    b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
    den = [1 + alpha, -2 * cw, 1 - alpha]
    return np.array(b + den) / den[0]


# ------------------------------------------------------------- settings and helpers
def neutral_settings() -> dict[str, float]:
    """Physical settings with every band at 0 dB and the high-pass mixed out."""
    s = {"highpass.cutoff_hz": 80.0, "highpass.mix": 0.0, "low_shelf.cutoff_hz": 120.0, "low_shelf.gain_db": 0.0,
         "high_shelf.cutoff_hz": 6000.0, "high_shelf.gain_db": 0.0}
    for name, f in zip(PEAKS, (100.0, 500.0, 2000.0, 8000.0)):
        s.update({f"{name}.center_hz": f, f"{name}.gain_db": 0.0, f"{name}.q": 1.0})
    return s


def normalized(settings: dict[str, float]) -> torch.Tensor:
    """Physical settings -> (1, n) normalized p, mapped here from the declared range table."""
    row = []
    for name, r in ParametricEQ.ranges.items():
        v = settings[name]
        assert r.low <= v <= r.high, f"{name}={v} outside the declared range"
        row.append(math.log(v / r.low) / math.log(r.high / r.low) if r.scale == "log" else (v - r.low) / (r.high - r.low))
    return torch.tensor([row], dtype=torch.float64)


def reference_sos(s: dict[str, float], fs: float) -> np.ndarray:
    """The EQ as an SOS cascade: blended high-pass, low shelf, four peaks, high shelf."""
    sections = []
    hp = rbj_highpass(s["highpass.cutoff_hz"], SHELF_Q, fs)
    m = s["highpass.mix"]
    den = hp[3:]
    sections.append(np.concatenate([(1 - m) * den + m * hp[:3], den]))
    sections.append(rbj_low_shelf(s["low_shelf.cutoff_hz"], s["low_shelf.gain_db"], SHELF_Q, fs))
    for name in PEAKS:
        sections.append(rbj_peaking(s[f"{name}.center_hz"], s[f"{name}.gain_db"], s[f"{name}.q"], fs))
    sections.append(rbj_high_shelf(s["high_shelf.cutoff_hz"], s["high_shelf.gain_db"], SHELF_Q, fs))
    return np.stack(sections)


def run_eq(x: np.ndarray, settings: dict[str, float], fs: float, dtype=torch.float32) -> np.ndarray:
    """Render (channels, samples) through the ParametricEQ module (batch of 1)."""
    eq = ParametricEQ(fs)
    xt = torch.as_tensor(x, dtype=dtype)[None]
    with torch.no_grad():
        return eq(xt, normalized(settings).to(dtype))[0].double().numpy()


def random_settings(rng: np.random.Generator, fs: float) -> dict[str, float]:
    s = {}
    for name, r in ParametricEQ.ranges.items():
        u = rng.uniform(0.05, 0.95)
        s[name] = r.low * (r.high / r.low) ** u if r.scale == "log" else r.low + u * (r.high - r.low)
    s["highpass.mix"] = rng.uniform(0.2, 1.0)
    return s


def sine(f: float, fs: float, seconds: float, amp: float = 0.25) -> np.ndarray:
    t = np.arange(int(seconds * fs)) / fs
    return (amp * np.sin(2 * math.pi * f * t))[None]


def steady_gain_db(x: np.ndarray, y: np.ndarray, fs: float, skip_s: float) -> float:
    """RMS ratio in dB of y over x, after the filter transient."""
    k = int(skip_s * fs)
    return 10 * math.log10(np.mean(y[..., k:] ** 2) / np.mean(x[..., k:] ** 2))


# ------------------------------------------------------------- tests
def test_reference_designs_are_the_cookbook_shapes():
    """Sanity of the test's own references: gains at DC / centre / Nyquist."""
    fs = 48000.0
    for coef, f, expect in (
        (rbj_peaking(1000, 6, 2, fs), 1000, 6.0),
        (rbj_low_shelf(200, -9, SHELF_Q, fs), 0.0, -9.0),
        (rbj_high_shelf(3000, 5, SHELF_Q, fs), fs / 2, 5.0),
        (rbj_highpass(100, SHELF_Q, fs), 100, -3.0103),
    ):
        _, h = sps.sosfreqz(coef[None], worN=[f], fs=fs)
        assert 20 * np.log10(abs(h[0])) == pytest.approx(expect, abs=1e-3)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("section", ["peaking", "low_shelf", "high_shelf", "highpass"])
def test_single_section_matches_sosfilt(fs, section, make_music):
    """Each section type alone (others neutral) equals scipy's sosfilt on cookbook coefficients."""
    s = neutral_settings()
    if section == "peaking":
        s.update({"peak2.center_hz": 700.0, "peak2.gain_db": 7.5, "peak2.q": 2.5,
                  "peak4.center_hz": 11000.0, "peak4.gain_db": -10.0, "peak4.q": 0.5})
    elif section == "low_shelf":
        s.update({"low_shelf.cutoff_hz": 90.0, "low_shelf.gain_db": 9.0})
    elif section == "high_shelf":
        s.update({"high_shelf.cutoff_hz": 4500.0, "high_shelf.gain_db": -8.0})
    else:
        s.update({"highpass.cutoff_hz": 150.0, "highpass.mix": 1.0})
    x = make_music(fs, 0.4, channels=2, seed=3).astype(np.float32)
    got = run_eq(x, s, fs)
    want = sps.sosfilt(reference_sos(s, fs), x.astype(np.float64), axis=-1)
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("kind", ["music", "noise", "impulses"])
@pytest.mark.parametrize("seed", [0, 1])
def test_full_eq_matches_sosfilt(fs, kind, seed, make_music):
    """All seven sections at random settings, float32, against a float64 scipy cascade."""
    rng = np.random.default_rng(100 + seed)
    s = random_settings(rng, fs)
    n = int(0.3 * fs)
    if kind == "music":
        x = make_music(fs, 0.3, channels=2, seed=seed)
    elif kind == "noise":
        x = 0.3 * rng.standard_normal((2, n))
    else:  # sparse clicks and a DC step: exercises the low-frequency poles
        x = np.zeros((2, n))
        x[:, rng.integers(0, n, 12)] = rng.uniform(-0.9, 0.9, (2, 12))
        x[:, n // 2 :] += 0.2
    x = x.astype(np.float32)
    got = run_eq(x, s, fs)
    want = sps.sosfilt(reference_sos(s, fs), x.astype(np.float64), axis=-1)
    assert np.abs(got - want).max() < 1e-4, f"settings {s}"


def test_functional_form_and_batch_items_use_their_own_settings():
    """parametric_eq with per-item physical values (batch, ) filters each item with its own cascade."""
    fs = 44100.0
    rng = np.random.default_rng(7)
    settings = [random_settings(rng, fs) for _ in range(3)]
    x = (0.2 * rng.standard_normal((3, 1, 8000))).astype(np.float32)
    values = {k: torch.tensor([s[k] for s in settings], dtype=torch.float32) for k in settings[0]}
    with torch.no_grad():
        got = parametric_eq(torch.from_numpy(x), values, fs).double().numpy()
    for i, s in enumerate(settings):
        want = sps.sosfilt(reference_sos(s, fs), x[i].astype(np.float64), axis=-1)
        assert np.abs(got[i] - want).max() < 1e-4


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize(("band", "center", "q"), [("peak1", 60.0, 4.0), ("peak2", 1000.0, 1.0), ("peak3", 3000.0, 0.7),
                                                  ("peak4", 12000.0, 2.0)])
def test_peaking_band_gain_at_centre(fs, band, center, q):
    """+6 dB peaking band reads +6 dB at its centre (steady sine, RMS ratio)."""
    s = neutral_settings()
    s.update({f"{band}.center_hz": center, f"{band}.gain_db": 6.0, f"{band}.q": q})
    x = sine(center, fs, 1.0)
    y = run_eq(x.astype(np.float32), s, fs)
    assert steady_gain_db(x, y, fs, 0.4) == pytest.approx(6.0, abs=0.05)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("gain_db", [-9.0, 6.0, 12.0])
def test_shelves_reach_their_gain_far_into_the_shelf(fs, gain_db):
    s = neutral_settings()
    s.update({"low_shelf.cutoff_hz": 400.0, "low_shelf.gain_db": gain_db})
    x = sine(20.0, fs, 1.5)
    y = run_eq(x.astype(np.float32), s, fs)
    assert steady_gain_db(x, y, fs, 0.5) == pytest.approx(gain_db, abs=0.05)

    s = neutral_settings()
    s.update({"high_shelf.cutoff_hz": 2000.0, "high_shelf.gain_db": gain_db})
    f = 0.44 * fs  # far above the 2 kHz corner
    x = sine(f, fs, 0.3)
    y = run_eq(x.astype(np.float32), s, fs)
    assert steady_gain_db(x, y, fs, 0.1) == pytest.approx(gain_db, abs=0.05)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_highpass_slope_is_12_db_per_octave(fs):
    s = neutral_settings()
    s.update({"highpass.cutoff_hz": 320.0, "highpass.mix": 1.0})
    gains = {}
    for f in (20.0, 40.0, 80.0, 5000.0):
        x = sine(f, fs, 1.0)
        gains[f] = steady_gain_db(x, run_eq(x.astype(np.float32), s, fs), fs, 0.4)
    assert gains[5000.0] == pytest.approx(0.0, abs=0.05)  # passband
    assert gains[40.0] - gains[20.0] == pytest.approx(12.0, abs=0.3)
    assert gains[80.0] - gains[40.0] == pytest.approx(12.0, abs=0.4)
    assert gains[20.0] == pytest.approx(40 * math.log10(20 / 320), abs=0.3)  # ~ -48 dB four octaves down


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_highpass_mix_zero_is_bypass(fs, make_music):
    s = neutral_settings()
    s.update({"highpass.cutoff_hz": 400.0, "highpass.mix": 0.0})
    x = make_music(fs, 0.3, seed=1).astype(np.float32)
    assert np.abs(run_eq(x, s, fs) - x).max() < 1e-6


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("mix", [0.25, 0.5, 0.8, 1.0])
def test_blended_highpass_is_dry_wet_mix(fs, mix, make_music):
    """EQ with only the high-pass engaged equals (1 - m) x + m HP(x), HP by scipy."""
    s = neutral_settings()
    s.update({"highpass.cutoff_hz": 250.0, "highpass.mix": mix})
    x = make_music(fs, 0.3, seed=2).astype(np.float32)
    x64 = x.astype(np.float64)
    want = (1 - mix) * x64 + mix * sps.sosfilt(rbj_highpass(250.0, SHELF_Q, fs)[None], x64, axis=-1)
    assert np.abs(run_eq(x, s, fs) - want).max() < 1e-4


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_neutral_eq_is_identity(fs, make_music):
    x = make_music(fs, 0.3, seed=4).astype(np.float32)
    assert np.abs(run_eq(x, neutral_settings(), fs) - x).max() < 1e-6


def test_float64_input_stays_float64_and_matches_tightly():
    fs = 48000.0
    rng = np.random.default_rng(11)
    s = random_settings(rng, fs)
    x = 0.3 * rng.standard_normal((2, 5000))
    eq = ParametricEQ(fs)
    with torch.no_grad():
        y = eq(torch.from_numpy(x)[None], normalized(s))
    assert y.dtype == torch.float64
    want = sps.sosfilt(reference_sos(s, fs), x, axis=-1)
    assert np.abs(y[0].numpy() - want).max() < 1e-9
