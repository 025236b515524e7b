"""ParametricEQ against scipy.signal (sosfilt, sosfreqz, butter) on independently computed RBJ cookbook biquads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal as sps
import torch

from dsp import MasteringChain, ParametricEQ, parametric_eq
from dsp.eq import BELLS, eq_response_db

SHELF_Q = 1 / math.sqrt(2)  # the EQ's fixed shelf Q
SAMPLE_RATES = (44100, 48000, 96000)
BELL_NAMES = tuple(name for name, _, _ in BELLS)
# 4th-order Butterworth high-pass as two RBJ high-passes: the pole angles of the analog
# prototype give Q_k = 1 / (2 cos(pi (2k + 1) / 8))
BUTTER4_Q = tuple(1 / (2 * math.cos(math.pi * (2 * k + 1) / 8)) for k in range(2))


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
def region(name: str) -> tuple[float, float]:
    """The declared frequency range of an EQ section (from the range table)."""
    for key, r in ParametricEQ.ranges.items():
        if key.startswith(name + ".") and r.unit == "Hz":
            return r.low, r.high
    raise KeyError(name)


def neutral_settings() -> dict[str, float]:
    """Physical settings with every gain at 0 dB and the high-pass off (0 Hz)."""
    s = {"highpass.cutoff_hz": 0.0, "low_shelf.cutoff_hz": 80.0, "low_shelf.gain_db": 0.0,
         "high_shelf.cutoff_hz": 8000.0, "high_shelf.gain_db": 0.0}
    for name in BELL_NAMES:
        lo, hi = region(name)
        s.update({f"{name}.center_hz": math.sqrt(lo * hi), f"{name}.gain_db": 0.0, f"{name}.q": 1.0})
    assert set(s) == set(ParametricEQ.ranges)
    return s


def normalized(settings: dict[str, float]) -> torch.Tensor:
    """Physical settings -> (1, n) normalized p, mapped here from the declared range table."""
    row = []
    for name, r in ParametricEQ.ranges.items():
        v = settings[name]
        assert r.low <= v <= r.high, f"{name}={v} outside the declared range"
        row.append(math.log(v / r.low) / math.log(r.high / r.low) if r.scale == "log" else (v - r.low) / (r.high - r.low))
    return torch.tensor([row], dtype=torch.float64)


def highpass4_sos(fc: float, fs: float) -> list[np.ndarray]:
    if fc <= 0:
        return []
    return [rbj_highpass(fc, q, fs) for q in BUTTER4_Q]


def reference_sos(s: dict[str, float], fs: float) -> np.ndarray:
    """The EQ as an SOS cascade: 4th-order high-pass, low shelf, three bells, high shelf."""
    sections = highpass4_sos(s["highpass.cutoff_hz"], fs)
    sections.append(rbj_low_shelf(s["low_shelf.cutoff_hz"], s["low_shelf.gain_db"], SHELF_Q, fs))
    for name in BELL_NAMES:
        sections.append(rbj_peaking(s[f"{name}.center_hz"], s[f"{name}.gain_db"], s[f"{name}.q"], fs))
    sections.append(rbj_high_shelf(s["high_shelf.cutoff_hz"], s["high_shelf.gain_db"], SHELF_Q, fs))
    return np.stack(sections)


def run_eq(x: np.ndarray, settings: dict[str, float], fs: float, dtype=torch.float32) -> np.ndarray:
    """Render (channels, samples) through the ParametricEQ module (batch of 1)."""
    eq = ParametricEQ(fs)
    xt = torch.as_tensor(x, dtype=dtype)[None]
    with torch.no_grad():
        return eq(xt, normalized(settings).to(dtype))[0].double().numpy()


def random_settings(rng: np.random.Generator) -> dict[str, float]:
    s = {}
    for name, r in ParametricEQ.ranges.items():
        u = rng.uniform(0.05, 0.95)
        s[name] = r.low * (r.high / r.low) ** u if r.scale == "log" else r.low + u * (r.high - r.low)
    return s


def sine(f: float, fs: float, seconds: float, amp: float = 0.25) -> np.ndarray:
    t = np.arange(int(seconds * fs)) / fs
    return (amp * np.sin(2 * math.pi * f * t))[None]


def steady_gain_db(x: np.ndarray, y: np.ndarray, fs: float, skip_s: float) -> float:
    """RMS ratio in dB of y over x, after the filter transient."""
    k = int(skip_s * fs)
    return 10 * math.log10(np.mean(y[..., k:] ** 2) / np.mean(x[..., k:] ** 2))


def impulse_response_db(settings: dict[str, float], fs: float, n: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """(freqs, |FFT of the rendered float64 impulse response| in dB)."""
    x = np.zeros((1, n))
    x[0, 0] = 1.0
    h = run_eq(x, settings, fs, dtype=torch.float64)[0]
    return np.fft.rfftfreq(n, 1 / fs), 20 * np.log10(np.abs(np.fft.rfft(h)) + 1e-300)


# ------------------------------------------------------------- tests
def test_reference_designs_are_the_cookbook_shapes():
    """Sanity of the test's own references: gains at DC / centre / Nyquist, and the RBJ
    high-pass pair at the Butterworth Qs is scipy's 4th-order Butterworth."""
    fs = 48000.0
    for coef, f, expect in (
        (rbj_peaking(1000, 6, 2, fs), 1000, 6.0),
        (rbj_low_shelf(200, -9, SHELF_Q, fs), 0.0, -9.0),
        (rbj_high_shelf(3000, 5, SHELF_Q, fs), fs / 2, 5.0),
        (rbj_highpass(100, SHELF_Q, fs), 100, -3.0103),
    ):
        _, h = sps.sosfreqz(coef[None], worN=[f], fs=fs)
        assert 20 * np.log10(abs(h[0])) == pytest.approx(expect, abs=1e-3)
    freqs = np.geomspace(5, 20000, 300)
    _, mine = sps.sosfreqz(np.stack(highpass4_sos(70.0, fs)), worN=freqs, fs=fs)
    _, theirs = sps.sosfreqz(sps.butter(4, 70.0, "highpass", fs=fs, output="sos"), worN=freqs, fs=fs)
    np.testing.assert_allclose(np.abs(mine), np.abs(theirs), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("section", ["bells", "low_shelf", "high_shelf", "highpass"])
def test_single_section_matches_sosfilt(fs, section, make_music):
    """Each section type alone (others neutral) equals scipy's sosfilt on cookbook coefficients."""
    s = neutral_settings()
    if section == "bells":
        for (name, lo, hi), gain, q in zip(BELLS, (5.5, -6.0, 4.0), (2.0, 0.4, 1.1)):
            s.update({f"{name}.center_hz": lo * 1.3, f"{name}.gain_db": gain, f"{name}.q": q})
    elif section == "low_shelf":
        s.update({"low_shelf.cutoff_hz": 90.0, "low_shelf.gain_db": 6.0})
    elif section == "high_shelf":
        s.update({"high_shelf.cutoff_hz": 6500.0, "high_shelf.gain_db": -5.0})
    else:
        s.update({"highpass.cutoff_hz": 75.0})
    x = make_music(fs, 0.3, channels=2, seed=3).astype(np.float32)
    got = run_eq(x, s, fs)
    want = sps.sosfilt(reference_sos(s, fs), x.astype(np.float64), axis=-1)
    assert np.abs(got - want).max() < 1e-5


@pytest.mark.parametrize("fs", (44100, 96000))
@pytest.mark.parametrize("kind", ["noise", "impulses"])
@pytest.mark.parametrize("seed", [0, 1])
def test_full_eq_matches_sosfilt(fs, kind, seed):
    """All sections at random settings, float32, against a float64 scipy cascade."""
    rng = np.random.default_rng(100 + seed)
    s = random_settings(rng)
    n = int(0.3 * fs)
    if kind == "noise":
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
    settings = [random_settings(rng) for _ in range(3)]
    settings[1]["highpass.cutoff_hz"] = 0.0  # identity high-pass next to engaged ones
    x = (0.2 * rng.standard_normal((3, 1, 8000))).astype(np.float32)
    values = {k: torch.tensor([s[k] for s in settings], dtype=torch.float32) for k in settings[0]}
    with torch.no_grad():
        got = parametric_eq(torch.from_numpy(x), values, fs).double().numpy()
    for i, s in enumerate(settings):
        want = sps.sosfilt(reference_sos(s, fs), x[i].astype(np.float64), axis=-1)
        assert np.abs(got[i] - want).max() < 1e-4


@pytest.mark.parametrize("fs", (44100, 96000))
@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("q", [0.4, 2.0])
def test_bells_give_their_gain_at_their_centre(fs, where, q):
    """A +6 dB bell reads +6 dB at its centre on the rendered signal (steady sine, RMS
    ratio), at the bottom, middle and top of its region."""
    for name, lo, hi in BELLS:
        centre = lo * (hi / lo) ** where
        s = neutral_settings()
        s.update({f"{name}.center_hz": centre, f"{name}.gain_db": 6.0, f"{name}.q": q})
        x = sine(centre, fs, 0.5)
        y = run_eq(x.astype(np.float32), s, fs)
        assert steady_gain_db(x, y, fs, 0.2) == pytest.approx(6.0, abs=0.02), name


@pytest.mark.parametrize("fs", (44100, 96000))
@pytest.mark.parametrize("gain_db", [-6.0, 3.0, 6.0])
def test_shelves_reach_their_gain(fs, gain_db):
    """The rendered impulse response reaches the shelf gain at DC (low shelf) and
    Nyquist (high shelf), and a sine three octaves into the shelf is within 0.1 dB of it."""
    lo_f, _ = region("low_shelf")
    s = neutral_settings()
    s.update({"low_shelf.cutoff_hz": lo_f, "low_shelf.gain_db": gain_db})
    freqs, h_db = impulse_response_db(s, fs)
    assert h_db[0] == pytest.approx(gain_db, abs=1e-3)
    assert h_db[freqs >= 2000].max() == pytest.approx(0.0, abs=0.01)
    x = sine(lo_f / 8, fs, 2.0)
    assert steady_gain_db(x, run_eq(x.astype(np.float32), s, fs), fs, 0.5) == pytest.approx(gain_db, abs=0.1)

    hs_lo, hs_hi = region("high_shelf")
    s = neutral_settings()
    s.update({"high_shelf.cutoff_hz": hs_lo, "high_shelf.gain_db": gain_db})
    freqs, h_db = impulse_response_db(s, fs)
    assert h_db[-1] == pytest.approx(gain_db, abs=1e-3)
    assert h_db[freqs <= 500].max() == pytest.approx(0.0, abs=0.01)
    if fs >= 8 * hs_lo / 0.45:
        x = sine(8 * hs_lo, fs, 0.3)
        assert steady_gain_db(x, run_eq(x.astype(np.float32), s, fs), fs, 0.1) == pytest.approx(gain_db, abs=0.1)


@pytest.mark.parametrize("fs", (44100, 96000))
@pytest.mark.parametrize("fc", [25.0, 60.0, 100.0])
def test_highpass_is_4th_order_butterworth(fs, fc):
    """|FFT| of the rendered impulse response equals scipy.signal.butter(4, fc, 'highpass')."""
    s = neutral_settings()
    s["highpass.cutoff_hz"] = fc
    freqs, h_db = impulse_response_db(s, fs, n=1 << 17)
    _, want = sps.sosfreqz(sps.butter(4, fc, "highpass", fs=fs, output="sos"), worN=freqs[1:], fs=fs)
    want_db = 20 * np.log10(np.abs(want))
    keep = want_db > -80
    np.testing.assert_allclose(h_db[1:][keep], want_db[keep], atol=2e-3)
    # 24 dB/octave well below the cutoff, -3 dB at it
    _, h = sps.sosfreqz(sps.butter(4, fc, "highpass", fs=fs, output="sos"), worN=[fc, fc / 8, fc / 16], fs=fs)
    assert 20 * np.log10(abs(h[0])) == pytest.approx(-3.0103, abs=1e-3)
    assert 20 * np.log10(abs(h[1]) / abs(h[2])) == pytest.approx(24.0, abs=0.1)
    i = np.argmin(np.abs(freqs - fc))
    assert h_db[i] == pytest.approx(20 * np.log10(abs(want[i - 1])), abs=2e-3)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_is_exact(fs, dtype, make_music):
    """High-pass at 0 Hz and every gain at 0 dB (any frequency and Q) is the identity."""
    x = make_music(fs, 0.3, seed=4)
    s = random_settings(np.random.default_rng(fs))
    s["highpass.cutoff_hz"] = 0.0
    for k in s:
        if k.endswith("gain_db"):
            s[k] = 0.0
    err = np.abs(run_eq(x, s, fs, dtype=dtype) - x.astype(np.float32 if dtype == torch.float32 else np.float64)).max()
    assert err < (2e-7 if dtype == torch.float32 else 1e-14)
    eq = ParametricEQ(fs)
    ident = {k: torch.tensor([v], dtype=dtype) for k, v in eq.identity_values().items()}
    with torch.no_grad():
        y = parametric_eq(torch.as_tensor(x, dtype=dtype)[None], ident, fs)[0].double().numpy()
    assert np.abs(y - x).max() < (2e-7 if dtype == torch.float32 else 1e-14)


def test_eq_regions_are_disjoint():
    """The shelves and bells (every section with a gain) own disjoint frequency ranges in
    the chain's range table, in ascending order; gains are mastering scale; the rumble
    high-pass starts at 0 Hz (its identity)."""
    chain = MasteringChain(44100)
    sections: dict[str, dict[str, object]] = {}
    for name, r in chain.ranges.items():
        if not name.startswith("eq."):
            continue
        _, section, leaf = name.split(".")
        sections.setdefault(section, {})[leaf] = r
    regions = []
    for section, leaves in sections.items():
        freq = [r for leaf, r in leaves.items() if r.unit == "Hz"]
        assert len(freq) == 1, section
        if "gain_db" in leaves:
            g = leaves["gain_db"]
            assert g.low == -g.high and 0 < g.high <= 6.0, section
            regions.append((freq[0].low, freq[0].high, section))
        else:
            assert freq[0].low == 0.0, section  # the high-pass: 0 Hz is off
    assert len(regions) == 5
    regions.sort()
    for (lo1, hi1, a), (lo2, hi2, b) in zip(regions, regions[1:]):
        assert hi1 <= lo2, f"{a} [{lo1}, {hi1}] overlaps {b} [{lo2}, {hi2}]"
    assert regions[0][2] == "low_shelf" and regions[-1][2] == "high_shelf"


def test_response_function_matches_sosfreqz():
    """eq_response_db (used for analysis) against sosfreqz of the cookbook cascade."""
    fs = 48000.0
    rng = np.random.default_rng(5)
    settings = [random_settings(rng) for _ in range(2)]
    freqs = np.geomspace(10, 22000, 200)
    values = {k: torch.tensor([s[k] for s in settings], dtype=torch.float64) for k in settings[0]}
    for hp in (False, True):
        got = eq_response_db(values, torch.from_numpy(freqs), fs, include_highpass=hp).numpy()
        for i, s in enumerate(settings):
            sos = reference_sos(s, fs)
            if not hp:
                sos = sos[len(highpass4_sos(s["highpass.cutoff_hz"], fs)):]
            _, h = sps.sosfreqz(sos, worN=freqs, fs=fs)
            np.testing.assert_allclose(got[i], 20 * np.log10(np.abs(h)), atol=1e-6)


def test_float64_input_stays_float64_and_matches_tightly():
    fs = 48000.0
    rng = np.random.default_rng(11)
    s = random_settings(rng)
    x = 0.3 * rng.standard_normal((2, 5000))
    eq = ParametricEQ(fs)
    with torch.no_grad():
        y = eq(torch.from_numpy(x)[None], normalized(s))
    assert y.dtype == torch.float64
    want = sps.sosfilt(reference_sos(s, fs), x, axis=-1)
    assert np.abs(y[0].numpy() - want).max() < 1e-9
