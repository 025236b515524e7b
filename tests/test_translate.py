"""Translation (issue #10 section 2): lossy outputs and --codec-safe meet the ceiling after
decoding; playback-system models behave physically.

The decoded true peak is checked against an independent reference: the file decoded with
soundfile and 4x oversampled with scipy.signal.resample_poly (not the project's meter).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfilt

from automaster.cli import main
from automaster.translate.codec import CODEC_SAFE, mp3_level, opus_level
from automaster.translate.systems import SYSTEMS, analyze_array

EXAMPLE = Path(__file__).resolve().parents[1] / "automaster" / "examples" / "example.ogg"
CEILING = -1.0


def _reference_true_peak_dbtp(path: Path) -> float:
    """Independent 4x true peak of a decoded file (scipy polyphase resampler)."""
    x, _ = sf.read(str(path), dtype="float64", always_2d=True)
    up = resample_poly(x, 4, 1, axis=0)
    return 20.0 * math.log10(max(float(np.abs(up).max()), float(np.abs(x).max()), 1e-12))


@pytest.fixture(scope="module")
def excerpt(tmp_path_factory) -> Path:
    """3 s of the bundled example (the loud part), as a 24-bit WAV."""
    x, sr = sf.read(str(EXAMPLE), dtype="float32")
    path = tmp_path_factory.mktemp("translate") / "mix.wav"
    sf.write(str(path), x[6 * sr:9 * sr], sr, subtype="PCM_24")
    return path


@pytest.mark.parametrize("ext", ["ogg", "opus", "mp3"])
def test_lossy_master_decodes_under_the_ceiling(excerpt: Path, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"master.{ext}"
    rc = main([str(excerpt), "-o", str(out), "--target", "-9", "--ceiling", str(CEILING),
               "--report", "-q"])
    assert rc == 0
    tp = _reference_true_peak_dbtp(out)
    assert tp <= CEILING + 0.05, tp  # 0.05 dB: the two 4x interpolators' difference
    doc = json.loads((tmp_path / f"master.{ext}.report.json").read_text())
    codec = doc["translation"]["codec"]
    assert codec["met"] is True and codec["encodes"] >= 1
    assert codec["output_codec"] == {"ogg": "vorbis-q0.7", "opus": "opus-160k", "mp3": "mp3-320k"}[ext]
    # the report's "after" is the decoded file, not the float master
    assert doc["after"]["true_peak_dbtp"] == pytest.approx(tp, abs=0.05)
    assert doc["after"]["true_peak_dbtp"] <= CEILING
    assert "after_before_encoding" in doc
    assert len(codec["tries"]) == codec["encodes"]
    # a later try masters the same source with the same setting: it reuses the first try's
    # pre-limiter render (Job.prelimiter) and only limits again
    assert doc["timings_s"]["prelimiter_reused"] is (codec["encodes"] > 1)
    assert doc["translation"]["playback"]["systems"].keys() == {s.name for s in SYSTEMS}
    if ext == "opus":
        assert sf.info(str(out)).samplerate == 48000


def test_coded_rates_are_rates_the_encoders_accept() -> None:
    from automaster.translate.codec import MP3_RATES, OPUS_RATES, OUTPUT_CODECS

    mp3, opus = OUTPUT_CODECS["MP3"], OUTPUT_CODECS["OPUS"]
    for sr in (8000, 11000, 22050, 37800, 44100, 48000, 88200, 96000, 176400, 192000):
        assert mp3.coded_rate(sr) in MP3_RATES and mp3.coded_rate(sr) >= min(sr, 44100)
        assert opus.coded_rate(sr) in OPUS_RATES
    assert [mp3.coded_rate(sr) for sr in (11000, 37800, 88200, 96000)] == [11025, 44100, 44100,
                                                                            48000]


@pytest.mark.parametrize("ext, args", [("mp3", []), ("wav", ["--codec-safe"])])
def test_high_resolution_master_to_mp3(excerpt: Path, tmp_path: Path, ext: str, args) -> None:
    """A 96 kHz mix to MP3 (or checked against MP3 with --codec-safe): MPEG audio codes at
    most 48 kHz, so it is resampled for the encoder, as Opus is (it was an internal error
    from libsndfile after the whole master had been rendered)."""
    x, sr = sf.read(str(excerpt), dtype="float32")
    hi = tmp_path / "mix96k.wav"
    sf.write(str(hi), resample_poly(x[: int(1.5 * sr)], 320, 147, axis=0), 96000, subtype="FLOAT")
    out = tmp_path / f"master.{ext}"
    assert main([str(hi), "-o", str(out), "-q", *args]) == 0
    assert sf.info(str(out)).samplerate == (48000 if ext == "mp3" else 96000)
    assert _reference_true_peak_dbtp(out) <= CEILING + 0.05


def test_codec_check_temporaries_are_cleaned_up(tmp_path: Path) -> None:
    """A codec check's encoded file is a registered temporary named with the pid: nothing
    stays, and one a SIGKILLed run left in the folder is removed by the next check."""
    import subprocess
    import sys

    from automaster.io import ArraySource, _host_tag
    from automaster.translate.codec import check_codec

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    stale = tmp_path / f".automaster-codec.{p.pid}@{_host_tag()}.abc123xy.mp3"
    stale.write_bytes(b"x" * 1000)
    rng = np.random.default_rng(2)
    src = ArraySource((0.1 * rng.standard_normal((2, 44100))).astype(np.float32), 44100)
    c = check_codec(src, CODEC_SAFE[0], tmp_dir=str(tmp_path))
    assert c.decoded_rate == 44100 and math.isfinite(c.true_peak_dbtp)
    assert list(tmp_path.iterdir()) == []


def test_codec_checks_side_by_side_read_a_file_backed_master_safely(tmp_path: Path) -> None:
    """check_codecs runs the codecs on threads; a master too large for memory sits in a
    temporary file (FloatStore), read by every encoder at once. Each codec's figures equal
    those of the same check run alone, in the caller's order, and no temporary stays."""
    from automaster.pipeline import FloatStore
    from automaster.translate.codec import check_codec, check_codecs
    from automaster.translate.deliver import _StoreSource

    rng = np.random.default_rng(5)
    x = (0.2 * rng.standard_normal((2, 3 * 44100))).astype(np.float32)
    store = FloatStore(2, x.shape[1], memory_bytes=1024, tmp_dir=str(tmp_path))
    assert not store.in_memory
    for s in range(0, x.shape[1], 10000):
        store.write(s, x[:, s:s + 10000])
    # reads from several threads at once return exactly what was written (failed unlocked)
    from concurrent.futures import ThreadPoolExecutor

    def reads(seed: int) -> bool:
        r = np.random.default_rng(seed)
        for _ in range(300):
            a = int(r.integers(0, x.shape[1] - 1))
            b = min(x.shape[1], a + int(r.integers(1, 40000)))
            if not np.array_equal(store.read(a, b), x[:, a:b]):
                return False
        return True

    with ThreadPoolExecutor(4) as ex:
        assert all(ex.map(reads, range(8)))
    src = _StoreSource(store, 44100, x.shape[1])
    codecs = [CODEC_SAFE[0], CODEC_SAFE[2], CODEC_SAFE[1]]
    together = check_codecs(src, codecs, [None] * 3, str(tmp_path))
    alone = [check_codec(src, c, None, str(tmp_path)) for c in codecs]
    assert [c.codec for c in together] == codecs
    for a, b in zip(together, alone):
        assert a.measurement.as_dict() == b.measurement.as_dict()
    store.close()
    assert list(tmp_path.iterdir()) == []


def test_codec_safe_wav_gives_per_codec_figures_under_the_ceiling(excerpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "master.wav"
    rc = main([str(excerpt), "-o", str(out), "--target", "-9", "--codec-safe", "--report", "-q"])
    assert rc == 0
    doc = json.loads((tmp_path / "master.wav.report.json").read_text())
    codec = doc["translation"]["codec"]
    assert [c["codec"] for c in codec["codecs"]] == [c.name for c in CODEC_SAFE]
    assert all(c["decoded_true_peak_dbtp"] <= CEILING for c in codec["codecs"]), codec
    assert codec["met"] is True
    assert doc["ceiling_dbtp"] == CEILING and doc["source"] != "params-in"
    # the delivered WAV is under the ceiling too, and lossless: "after" is its own figure
    assert _reference_true_peak_dbtp(out) <= CEILING + 0.05
    # independent check of one codec: encode the WAV as MP3 128k ourselves and decode it
    x, sr = sf.read(str(out), dtype="float32")
    mp3 = tmp_path / "check.mp3"
    sf.write(str(mp3), x, sr, format="MP3", subtype="MPEG_LAYER_III",
             compression_level=mp3_level(128), bitrate_mode="CONSTANT")
    assert _reference_true_peak_dbtp(mp3) <= CEILING + 0.05


def test_bitrate_mapping_matches_the_encoder(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal((44100 * 3, 2))).astype(np.float32)
    for kbps in (128.0, 320.0):
        p = tmp_path / f"{kbps}.mp3"
        sf.write(str(p), x, 44100, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=mp3_level(kbps), bitrate_mode="CONSTANT")
        assert p.stat().st_size * 8 / 3 / 1000 == pytest.approx(kbps, rel=0.08)
    y = resample_poly(x, 160, 147, axis=0).astype(np.float32)
    for kbps in (96.0, 160.0):
        p = tmp_path / f"{kbps}.opus"
        sf.write(str(p), y, 48000, format="OGG", subtype="OPUS",
                 compression_level=opus_level(kbps, 2))
        assert p.stat().st_size * 8 / 3 / 1000 == pytest.approx(kbps, rel=0.15)


# ---------------------------------------------------------------- playback models
SR = 44100


def _tone(freq: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return 0.25 * np.sin(2 * np.pi * freq * t)


def _through(system_name: str, x: np.ndarray) -> np.ndarray:
    s = next(s for s in SYSTEMS if s.name == system_name)
    y = x.mean(axis=0, keepdims=True).repeat(2, axis=0) if s.mono else x
    return sosfilt(s.sos(SR), y, axis=-1)


def _rms_db(x: np.ndarray) -> float:
    x = x[..., x.shape[-1] // 4:]  # past the filters' start-up
    return 10 * math.log10(float(np.mean(x ** 2)))


@pytest.mark.parametrize("name,low_hz,min_drop_db", [("phone", 60.0, 40.0), ("phone", 150.0, 25.0),
                                                      ("laptop", 60.0, 30.0), ("earbuds", 40.0, 6.0)])
def test_small_speakers_lose_the_low_end(name: str, low_hz: float, min_drop_db: float) -> None:
    ref = _rms_db(_through(name, np.stack([_tone(1000.0)] * 2)))
    low = _rms_db(_through(name, np.stack([_tone(low_hz)] * 2)))
    assert ref == pytest.approx(_rms_db(np.stack([_tone(1000.0)] * 2)), abs=0.3)  # 0 dB at 1 kHz
    assert ref - low >= min_drop_db


def test_car_cabin_gain_lifts_the_low_end() -> None:
    ref = _rms_db(_through("car", np.stack([_tone(1000.0)] * 2)))
    low = _rms_db(_through("car", np.stack([_tone(35.0, 4.0)] * 2)))
    assert 6.0 <= low - ref <= 12.5


def test_mono_fold_down_of_anti_phase_loses_it_all() -> None:
    x = _tone(440.0)
    doc = analyze_array(np.stack([x, -x]), SR)
    mono = doc["systems"]["mono"]
    assert mono["loudness_lufs"] is None  # below the gate: nothing left
    assert any("mono fold-down loses" in w for w in mono["warnings"])
    assert doc["systems"]["laptop"]["loudness_change_lu"] == pytest.approx(0.0, abs=0.3)
    # in phase: the fold-down changes nothing
    same = analyze_array(np.stack([x, x]), SR)["systems"]["mono"]
    assert same["loudness_change_lu"] == pytest.approx(0.0, abs=0.01) and not same["warnings"]


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal(n)
    f = np.fft.rfftfreq(n, 1 / SR)
    spec = np.fft.rfft(w)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    y = np.fft.irfft(spec, n)
    return 0.1 * y / y.std()


def test_bass_heavy_mix_triggers_the_phone_warning_and_a_flat_one_does_not() -> None:
    rng = np.random.default_rng(0)
    pink = _pink(4 * SR, rng)
    bass = 0.5 * sosfilt(butter(4, 120, fs=SR, output="sos"), rng.standard_normal(4 * SR)) + 0.3 * pink
    heavy = analyze_array(np.stack([bass, bass]), SR)
    flat = analyze_array(np.stack([pink, pink]), SR)
    assert heavy["master"]["share_below_150_hz"] >= 0.30
    assert any("below 150 Hz carries" in w for w in heavy["systems"]["phone"]["warnings"])
    assert not any("below 150 Hz" in w for w in heavy["systems"]["car"]["warnings"])
    assert flat["systems"]["phone"]["warnings"] == []
    # pink noise is its own reference: its change equals the analytic pink change
    for s in flat["systems"].values():
        assert s["loudness_change_lu"] == pytest.approx(s["pink_change_lu"], abs=0.5)
