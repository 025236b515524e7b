"""Shared fixtures for the test suite.

The dsp tests use independent references (numpy/scipy/pyloudnorm), never dsp's own
helpers, for expected values. Signal generators and the reference true-peak meter
live here and are handed to tests as fixtures.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.signal as sps

LOUDNESS_DIR = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "loudness"

# EXPECTED.tsv quantity -> name of the fixture that is parametrized over its rows
_ROW_FIXTURES = {
    "integrated_lufs": "integrated_row",
    "momentary_max_lufs": "momentary_row",
    "true_peak_dbtp": "true_peak_row",
}


@dataclass(frozen=True)
class ExpectedRow:
    """One row of ../shared/testdata/loudness/EXPECTED.tsv."""

    path: Path
    quantity: str
    expected: float
    tolerance_low: float
    tolerance_high: float
    source: str

    def check(self, measured: float) -> None:
        lo, hi = self.expected + self.tolerance_low, self.expected + self.tolerance_high
        assert lo <= measured <= hi, (
            f"{self.path.name} ({self.source}): {self.quantity} measured {measured:.3f}, "
            f"expected {self.expected} in [{lo:.2f}, {hi:.2f}]"
        )


def expected_rows(quantity: str) -> list[ExpectedRow]:
    """Rows of EXPECTED.tsv for one quantity; [] when the folder is absent."""
    table = LOUDNESS_DIR / "EXPECTED.tsv"
    if not table.is_file():
        return []
    rows = []
    with table.open(newline="") as fh:
        for rec in csv.DictReader(fh, delimiter="\t"):
            if rec["quantity"] != quantity:
                continue
            rows.append(
                ExpectedRow(
                    LOUDNESS_DIR / rec["file"], rec["quantity"], float(rec["expected"]),
                    float(rec["tolerance_low"]), float(rec["tolerance_high"]), rec.get("source", ""),
                )
            )
    return rows


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``integrated_row`` / ``momentary_row`` / ``true_peak_row`` over EXPECTED.tsv."""
    for quantity, fixture in _ROW_FIXTURES.items():
        if fixture not in metafunc.fixturenames:
            continue
        rows = expected_rows(quantity)
        if rows:
            metafunc.parametrize(fixture, rows, ids=[r.path.stem for r in rows])
        else:
            metafunc.parametrize(
                fixture, [pytest.param(None, marks=pytest.mark.skip(reason=f"{LOUDNESS_DIR} absent"))], ids=["absent"]
            )


@pytest.fixture(scope="session")
def loudness_dir() -> Path:
    """../shared/testdata/loudness beside the repository; skips the test if absent."""
    if not (LOUDNESS_DIR / "EXPECTED.tsv").is_file():
        pytest.skip(f"{LOUDNESS_DIR} absent")
    return LOUDNESS_DIR


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(channels, samples) float64 and the sample rate."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    return np.ascontiguousarray(data.T), int(sr)


@pytest.fixture(scope="session")
def load_wav() -> Callable[[Path], tuple[np.ndarray, int]]:
    return read_wav


@pytest.fixture
def single_threaded_numba():
    """Run dsp's numba kernels on one thread for the test.

    For gradchecks on tiny inputs (thousands of kernel calls on a few dozen samples)
    waking numba's thread pool costs far more than the work, badly so on a busy
    machine; the kernels compute the same values either way.
    """
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


# ---------------------------------------------------------------- references
def reference_true_peak_db(x: np.ndarray) -> float:
    """Independent true peak: 4x resample_poly, max |.| over everything, in dB."""
    up = sps.resample_poly(np.asarray(x, dtype=np.float64), 4, 1, axis=-1)
    return 20.0 * math.log10(max(float(np.abs(up).max()), 1e-12))


@pytest.fixture(scope="session")
def ref_true_peak_db() -> Callable[[np.ndarray], float]:
    return reference_true_peak_db


# ---------------------------------------------------------------- signals
def music_like(sample_rate: float, seconds: float, channels: int = 2, seed: int = 0, peak: float = 0.5) -> np.ndarray:
    """A stereo (or mono) music-like excerpt, (channels, samples) float64.

    Kick (decaying pitch sweep), bass with harmonics, chord partials with slow AM,
    snare and hi-hat noise bursts (content up to the top of the band), panned
    differently per element, with a quieter break in the middle for dynamics.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    out = np.zeros((2, n))
    beat = 0.5
    nyq = sample_rate / 2

    def env(start: float, decay: float) -> np.ndarray:
        dt = t - start
        return np.where(dt >= 0, np.exp(-np.clip(dt, 0, None) / decay), 0.0)

    def pan(sig: np.ndarray, pos: float) -> np.ndarray:  # pos in [-1, 1]
        ang = (pos + 1) * math.pi / 4
        return np.stack([math.cos(ang) * sig, math.sin(ang) * sig])

    kick = np.zeros(n)
    snare_src = rng.standard_normal(n)
    snare_src = sps.sosfilt(sps.butter(2, [180 / nyq, min(5000 / nyq, 0.95)], "bandpass", output="sos"), snare_src)
    hat_src = sps.sosfilt(sps.butter(2, min(7000 / nyq, 0.9), "highpass", output="sos"), rng.standard_normal(n))
    snare = np.zeros(n)
    hats = np.zeros(n)
    for k in range(int(seconds / beat) + 1):
        start = k * beat + rng.uniform(0, 0.01)
        dt = np.clip(t - start, 0, None)
        phase = 2 * math.pi * (45 * dt + (110 - 45) * 0.04 * (1 - np.exp(-dt / 0.04)))
        kick += 0.9 * np.sin(phase) * env(start, 0.12)
        if k % 2 == 1:
            snare += 0.5 * snare_src * env(start, 0.07)
        for j in range(2):
            hats += 0.25 * hat_src * env(start + j * beat / 2, 0.02)
    roots = (55.0, 73.42, 82.41, 61.74)
    bass = np.zeros(n)
    chords = np.zeros((2, n))
    for k in range(int(seconds / (2 * beat)) + 1):
        f = roots[k % len(roots)] * rng.choice([1.0, 1.0, 2.0])
        seg = (t >= 2 * k * beat) & (t < 2 * (k + 1) * beat)
        for h in range(1, 6):
            bass += seg * (0.35 / h) * np.sin(2 * math.pi * f * h * t + rng.uniform(0, 2 * math.pi))
        for ratio, pos in ((4.0, -0.6), (5.04, 0.5), (6.0, -0.2), (8.0, 0.7), (10.08, 0.1), (16.0, -0.4)):
            partial = seg * 0.08 * np.sin(2 * math.pi * f * ratio * t + rng.uniform(0, 2 * math.pi))
            partial *= 1 + 0.3 * np.sin(2 * math.pi * rng.uniform(0.3, 3) * t)
            chords += pan(partial, pos)
    ambience = 0.02 * sps.sosfilt(sps.butter(1, 0.2, output="sos"), rng.standard_normal((2, n)), axis=-1)
    out = pan(kick, 0.0) + pan(bass, -0.1) + pan(snare, 0.15) + pan(hats, 0.45) + chords + ambience
    dyn = 1.0 - 0.8 * np.exp(-(((t - 0.55 * seconds) / (0.08 * seconds + 1e-9)) ** 2))  # a quieter break
    out *= dyn
    out *= peak / max(np.abs(out).max(), 1e-12)
    if channels == 1:
        return out.mean(axis=0, keepdims=True) * (peak / max(np.abs(out.mean(axis=0)).max(), 1e-12))
    if channels != 2:
        raise ValueError("music_like makes mono or stereo")
    return out


def band_limited_noise(sample_rate: float, seconds: float, channels: int = 2, seed: int = 0,
                       high_fraction: float = 0.4, peak: float = 0.5) -> np.ndarray:
    """Gaussian noise with no content above ``high_fraction`` * fs (FFT brick wall), (channels, samples)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=-1)
    freqs = np.fft.rfftfreq(n, 1.0)
    spec[:, freqs > high_fraction] = 0
    x = np.fft.irfft(spec, n, axis=-1)
    return x * (peak / np.abs(x).max())


@pytest.fixture(scope="session")
def make_music() -> Callable[..., np.ndarray]:
    return music_like


@pytest.fixture(scope="session")
def make_band_noise() -> Callable[..., np.ndarray]:
    return band_limited_noise


def rich_mix(sample_rate: float, seconds: float, seed: int = 0) -> np.ndarray:
    """A stereo (2, samples) float64 test mix for whole-chain tests: every 1/3-octave band
    from 20 Hz to 14 kHz carries content (a pink stereo bed), sparse hits in the sub, mid
    and top octaves each rise well above the mix's loudness (so each band of a multiband
    compressor has something to act on), and every band has side content."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate

    def band_noise(lo: float, hi: float, corr: float) -> np.ndarray:
        common = rng.standard_normal(n)
        w = corr * common + math.sqrt(1 - corr**2) * rng.standard_normal((2, n))
        y = sps.sosfilt(sps.butter(4, [lo, hi], "bandpass", fs=sample_rate, output="sos"), w, axis=-1)
        return y / np.sqrt(np.mean(y**2))

    def hits(period: float, offset: float, decay: float) -> np.ndarray:
        return np.exp(-((t - offset) % period) / decay)

    spec = np.fft.rfft(rng.standard_normal((2, n)), axis=-1)
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    bed = np.fft.irfft(spec / np.sqrt(np.maximum(f, 15.0)), n, axis=-1)
    bed *= 0.015 / np.sqrt(np.mean(bed**2))
    kick = np.sin(2 * math.pi * 40.0 * t) * hits(0.5, 0.0, 0.06)
    low = np.stack([kick, kick]) + 0.3 * band_noise(25, 55, 0.5) * hits(0.5, 0.0, 0.06)
    mid = band_noise(400, 1400, 0.7) * hits(0.5, 0.25, 0.03)
    top = min(13000.0, 0.45 * sample_rate)
    high = band_noise(0.5 * top, top, 0.3) * hits(0.5, 0.125, 0.015)
    pad = band_noise(150, 5000, 0.8) * (0.6 + 0.4 * np.sin(2 * math.pi * 1.3 * t))
    x = 1.4 * low + mid + high + 0.08 * pad + bed
    return 0.5 * x / np.abs(x).max()


@pytest.fixture(scope="session")
def make_rich_mix() -> Callable[..., np.ndarray]:
    return rich_mix
