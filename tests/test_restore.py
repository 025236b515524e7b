"""Restoration (issue #10 section 1): synthetic defects added to real music, removal
measured against the clean original; no false alarm on the clean example."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from automaster.restore import parse_restore, restore
from automaster.restore import clicks as C
from automaster.restore.clipping import declip
from automaster.restore.dc import remove_dc, zero_phase_highpass
from automaster.restore.hum import remove_hum
from automaster.restore.noise import denoise
from automaster.restore.polarity import fix_polarity, measure

EXAMPLE_PATH = "automaster/examples/example.ogg"


@pytest.fixture(scope="module")
def music():
    x, sr = sf.read(EXAMPLE_PATH, dtype="float32")
    return x.T.astype(np.float64), sr


def _lts_db(x, sr):
    f, P = signal.welch(x, sr, nperseg=16384)
    return f, 10 * np.log10(P.mean(axis=0) + 1e-30)


@pytest.mark.parametrize("offset", [0.1, 0.25])
def test_dc_removed_and_spectrum_above_30hz_unchanged(music, offset):
    x, sr = music
    y, f = remove_dc(x + offset, sr)
    assert f.found and f.applied
    assert np.abs(y.mean(axis=1)).max() < 1e-3
    fr, a = _lts_db(x, sr)
    _, b = _lts_db(y, sr)
    assert np.abs(b - a)[fr > 30].max() < 0.01


def test_dc_fast_path_matches_full_rate_filter(music):
    x, sr = music
    x = x[:, : 10 * sr] - x[:, : 10 * sr].mean(axis=1, keepdims=True)
    sos = signal.butter(4, 12.0, btype="highpass", fs=sr, output="sos")
    ref = signal.sosfiltfilt(sos, x, axis=-1, padlen=sr)
    got = zero_phase_highpass(x, sr)
    mid = slice(sr, -sr)  # edges differ by the padding choice
    assert np.abs(got[:, mid] - ref[:, mid]).max() < 2e-3 * np.abs(x).max()


def test_hum_reduced_20db_at_each_harmonic(music):
    x, sr = music
    t = np.arange(x.shape[1]) / sr
    f0 = 59.93  # off nominal: the notches must follow the measured frequency
    levels_db = [-34, -38, -40, -42, -44, -46]
    hum = sum(10 ** (l / 20) * np.sin(2 * np.pi * k * f0 * t + k) for k, l in enumerate(levels_db, 1))[None]
    y, f = remove_hum(x + hum, sr)
    assert f.found and f.applied and f.measured["mains_hz"] == 60.0
    for k in range(1, len(levels_db) + 1):
        e = np.exp(-2j * np.pi * k * f0 * t)
        before = np.abs((hum * e).sum(axis=1)).mean()
        after = np.abs(((y - x) * e).sum(axis=1)).mean()
        assert 20 * np.log10(before / after) >= 20.0, k


def test_clicks_repaired(music):
    x, sr = music
    x = x[:, : 12 * sr]
    rng = np.random.default_rng(1)
    y = x.copy()
    clicks = []
    for p in np.sort(rng.choice(np.arange(1000, x.shape[1] - 1000, 3000), 80, replace=False)):
        n = int(rng.integers(1, 30))
        shape = np.exp(-np.arange(n) / max(n / 2, 1)) * rng.standard_normal(n)
        shape *= rng.uniform(0.3, 0.8) / np.abs(shape).max()
        ch = [0, 1] if rng.random() < 0.5 else [int(rng.integers(2))]
        for c in ch:
            y[c, p:p + n] += shape
            clicks.append((c, p, n))
    out, f = C.remove_clicks(y, sr)
    assert f.found and f.applied
    ok = 0
    for c, p, n in clicks:
        sl = slice(p - 10, p + n + 10)
        before = np.abs(y[c, sl] - x[c, sl]).max()
        after = np.abs(out[c, sl] - x[c, sl]).max()
        ok += after < 0.5 * before  # the click's peak error at least halved (-6 dB)
    assert ok / len(clicks) >= 0.95, ok / len(clicks)


def test_declipping_reduces_error(music):
    x, sr = music
    x = x[:, : 10 * sr]
    level = 0.5 * np.abs(x).max()
    y = np.clip(x, -level, level)
    out, f = declip(y, sr)
    assert f.found and f.applied and f.measured["runs"] > 100
    clipped = np.abs(y) >= level * (1 - 1e-4)
    before = np.sqrt(np.mean((y - x)[clipped] ** 2))
    after = np.sqrt(np.mean((out - x)[clipped] ** 2))
    assert 20 * np.log10(before / after) >= 6.0
    assert np.all(np.abs(out[clipped]) >= level * (1 - 1e-4) - 1e-7)  # beyond the clip level


def test_inverted_channel_fixed(music):
    x, sr = music
    y, f = fix_polarity(np.stack([x[0], -x[1]]), sr)
    assert f.found and f.measured["kind"] == "inverted"
    assert np.allclose(y, x)


def test_low_antiphase_fixed(music):
    x, sr = music
    from automaster.restore.polarity import lowpass

    low = lowpass(x, sr, 200.0)
    y = np.stack([x[0], x[1] - 2 * low[1]])  # right channel's bass inverted
    out, f = fix_polarity(y, sr)
    assert f.found and f.measured["kind"] == "low_anti_phase"
    assert measure(out, sr)["low_correlation"] > 0.9
    fr, a = _lts_db(x, sr)
    _, b = _lts_db(out, sr)
    band = (fr > 40) & (fr < 100)
    assert np.abs(b - a)[band].max() < 1.5  # the bass is back, not cancelled


def test_mono_bass(music):
    x, sr = music
    out, f = fix_polarity(x, sr, apply=True, mono_bass_hz=100)
    side = (out[0] - out[1]) / 2
    fr, P = signal.welch(side, sr, nperseg=16384)
    _, P0 = signal.welch((x[0] - x[1]) / 2, sr, nperseg=16384)
    assert 10 * np.log10(P[(fr > 20) & (fr < 40)].sum() / P0[(fr > 20) & (fr < 40)].sum()) < -20
    assert np.allclose(out[:, sr:-sr].sum(0), x[:, sr:-sr].sum(0), atol=1e-5)  # mid untouched


def test_denoise_reduces_hiss_keeps_music(music):
    x, sr = music
    x = x[:, : 12 * sr].copy()
    q = slice(4 * sr, 8 * sr)
    x[:, q] *= 10 ** (-45 / 20)  # a quiet passage
    rng = np.random.default_rng(0)
    noise = 10 ** (-60 / 20) * rng.standard_normal(x.shape)
    y = x + noise
    _, f0 = denoise(y, sr, None)
    assert f0.found and not f0.applied and f0.suggestion
    out, f = denoise(y, sr, 1.0)
    hiss_before = np.mean(noise[:, q] ** 2)
    hiss_after = np.mean((out - x)[:, q] ** 2)
    assert 10 * np.log10(hiss_before / hiss_after) >= 10.0
    fr, a = _lts_db(x, sr)
    _, b = _lts_db(out, sr)
    _, nz = _lts_db(noise, sr)
    above = a > nz + 10
    assert np.abs(b - a)[above].max() < 0.5


def test_clean_music_no_false_alarms(music):
    x, sr = music
    r = restore(x.astype(np.float32), sr, "auto")
    found = {f.problem: f.found for f in r.findings}
    for name in ("dc", "hum", "clipping", "polarity", "noise"):
        assert not found[name], name
    fr, a = _lts_db(x, sr)
    _, b = _lts_db(r.audio.astype(np.float64), sr)
    assert np.abs(b - a)[fr > 30].max() < 0.1


def test_parse_restore():
    assert parse_restore("auto") == parse_restore(None)
    assert parse_restore("off") is None
    assert parse_restore("dc, hum") == {"dc", "hum"}
    with pytest.raises(ValueError, match="unknown fix bogus"):
        parse_restore("dc,bogus")
