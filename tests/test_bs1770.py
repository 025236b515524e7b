"""One definition of BS.1770 loudness and true peak (``dsp._bs1770``), shared by the torch
meters and limiter in ``dsp`` and the streaming report meters in ``automaster.metering``.

Checked here: the report meter reads a limited signal at the limiter's ceiling (they use the
same interpolator), the report meter and ``dsp.true_peak`` agree, the gating rule against a
plain loop over levels written as the standard writes it, loudness range on the meter
against EBU Tech 3342's cases, and that the shared module and the meters import no torch.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from automaster.metering import measure
from automaster.testing import synth_mix
from dsp import limit, true_peak
from dsp.loudness import gated_mean_energy

ROOT = Path(__file__).resolve().parents[1]


def _dsp_true_peak_db(x: np.ndarray, fs: int) -> float:
    with torch.no_grad():
        return float(true_peak(torch.as_tensor(x, dtype=torch.float32)[None], fs)[0])


def _signals(fs: int, music_like, band_limited_noise) -> dict[str, np.ndarray]:
    n = int(0.5 * fs)
    t = np.arange(n)
    quarter = np.sin(np.pi / 2 * t + np.pi / 4)  # fs/4 sine, peaks exactly between samples
    impulse_at_edges = np.zeros((2, 64))
    impulse_at_edges[0, 0], impulse_at_edges[1, -1] = 0.9, -0.7  # context past both ends
    return {
        "mix": synth_mix(2.0, fs, seed=3, level_db=-8),
        "near_nyquist_noise": band_limited_noise(fs, 0.5, channels=2, seed=1, high_fraction=0.48, peak=0.9),
        "music": music_like(fs, 0.5, channels=1, seed=2, peak=1.2),
        "quarter_rate_sine": (0.5 * quarter)[None],
        "impulses_at_edges": impulse_at_edges,
        "five_samples": np.array([[0.1, -0.8, 0.9, -0.2, 0.05]]),
    }


@pytest.mark.parametrize("fs", [44100, 48000])
def test_report_meter_and_dsp_true_peak_agree(fs, make_music, make_band_noise):
    for name, x in _signals(fs, make_music, make_band_noise).items():
        x = np.asarray(x, dtype=np.float32)
        a = measure(x, fs).true_peak_dbtp
        b = measure(x, fs, block=37).true_peak_dbtp  # streamed in small blocks
        c = _dsp_true_peak_db(x, fs)
        assert abs(a - c) < 0.001, name
        assert abs(b - c) < 0.001, name


@pytest.mark.parametrize("fs", [44100, 48000])
@pytest.mark.parametrize("ceiling", [-1.0, -0.3])
@pytest.mark.parametrize("kind", ["white_noise", "near_nyquist_noise", "music"])
def test_limited_signal_reads_the_ceiling_on_the_report_meter(fs, ceiling, kind, make_music, make_band_noise,
                                                              ref_true_peak_db):
    """Limited 9 dB into the ceiling, the report's true peak sits at the ceiling (within 0.02
    dB: the gain's own modulation moves the in-between values a little); scipy's independent
    4x resample_poly stays within the 0.1 dB the limiter tests allow."""
    rng = np.random.default_rng(7)
    if kind == "white_noise":
        x = rng.standard_normal((2, int(0.5 * fs)))
    elif kind == "near_nyquist_noise":
        x = make_band_noise(fs, 0.5, channels=2, seed=4, high_fraction=0.45)
    else:
        x = make_music(fs, 0.5, channels=2, seed=5)
    x = (x * 10 ** ((ceiling + 9) / 20) / np.abs(x).max()).astype(np.float32)
    for release_ms in (10.0, 100.0):
        with torch.no_grad():
            y = limit(torch.from_numpy(x)[None], ceiling, torch.tensor([release_ms]), fs)[0].numpy()
        tp = measure(y, fs).true_peak_dbtp
        assert tp <= ceiling + 0.02
        assert tp > ceiling - 0.5  # it limits rather than just turning everything down
        assert ref_true_peak_db(y) <= ceiling + 0.1


def _gated_mean_by_levels(energy: np.ndarray, relative_gate_lu: float) -> float:
    """BS.1770-4 gating as the standard writes it: block loudness in LUFS, a loop per block."""
    def lufs(e: float) -> float:
        return -0.691 + 10 * math.log10(e) if e > 0 else -math.inf

    above = [e for e in energy if lufs(e) > -70.0]
    if not above:
        return 0.0
    gate = lufs(sum(above) / len(above)) + relative_gate_lu
    kept = [e for e in above if lufs(e) > gate]
    return sum(kept) / len(kept) if kept else 0.0


@pytest.mark.parametrize("relative_gate_lu", [-10.0, -20.0])
def test_gating_matches_the_standards_level_form(relative_gate_lu):
    from automaster.metering import gated_loudness

    rng = np.random.default_rng(0)
    cases = [10 ** rng.uniform(-9, 0, size=200),  # spans the absolute gate (-70 LUFS ~ 1.2e-7)
             np.concatenate([np.zeros(20), 10 ** rng.uniform(-3, -1, size=30)]),  # silence + music
             np.full(10, 1e-9), np.zeros(5)]  # everything below the absolute gate
    for energy in cases:
        want = _gated_mean_by_levels(energy, relative_gate_lu)
        got = float(gated_mean_energy(torch.from_numpy(energy)[None], relative_gate_lu)[0])
        assert got == pytest.approx(want, rel=1e-12, abs=0)
        meter = gated_loudness(energy, relative_gate_lu)
        assert meter == (pytest.approx(-0.691 + 10 * math.log10(want), abs=1e-9) if want > 0 else -math.inf)


@pytest.mark.parametrize(("parts", "expected"), [([(-20.0, 20.0), (-30.0, 20.0)], 10.0),
                                                 ([(-40.0, 20.0), (-20.0, 20.0)], 20.0)])
def test_report_meter_loudness_range_on_tech3342_cases(parts, expected):
    from dsp import loudness_range

    fs = 48000
    amps = np.concatenate([np.full(int(sec * fs), 10 ** (db / 20)) for db, sec in parts])
    x = np.repeat((amps * np.sin(2 * math.pi * 1000 * np.arange(amps.size) / fs))[None], 2, axis=0)
    lra = measure(x.astype(np.float32), fs, true_peak=False).loudness_range_lu
    assert lra == pytest.approx(expected, abs=1.0)
    with torch.no_grad():
        assert float(loudness_range(torch.from_numpy(x)[None], fs)[0]) == pytest.approx(lra, abs=1e-6)


def test_shared_definitions_and_report_meters_import_no_torch():
    code = ("import sys, dsp._bs1770, automaster.metering; "
            "print('torch' in sys.modules, 'scipy.signal' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.stdout.split() == ["False", "False"], res.stdout + res.stderr


def test_each_definition_is_written_once():
    """The K-weighting prototype and the interpolator's window exist only in dsp/_bs1770.py."""
    needles = ("1681.97", "38.135", "np.i0(", "kaiser(")
    found: dict[str, list[str]] = {n: [] for n in needles}
    for pkg in ("automaster", "dsp", "model", "train", "bench"):
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for n in needles:
                if n in text:
                    found[n].append(path.relative_to(ROOT).as_posix())
    # restoration's decimation low-pass (a Kaiser-window FIR design, what scipy.signal.firwin
    # gave before) is the one other Kaiser window, and no true-peak interpolator
    assert found == {n: (["dsp/_bs1770.py"] if n != "kaiser(" else ["automaster/restore/_filters.py"])
                     for n in needles}
