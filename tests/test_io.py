"""automaster.io and automaster.metering: formats, dither, resampling, sources, meters.

No torch needed here: these are the numpy/scipy/soundfile layers of the CLI.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from automaster import io as aio
from automaster.errors import InputError, OutputError, UserError
from automaster.metering import Meter, k_weighting_sos, measure
from automaster.testing import synth_mix

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "loudness"
SR = 44100


def _tp_db(x: np.ndarray) -> float:
    return 20 * math.log10(np.abs(resample_poly(x, 4, 1, axis=-1)).max())


# ---------------------------------------------------------------------------- formats
@pytest.mark.parametrize("name,fmt", [("a.wav", "WAV"), ("a.FLAC", "FLAC"), ("a.ogg", "OGG"),
                                      ("a.aiff", "AIFF"), ("a.aif", "AIFF")])
def test_output_format_from_extension(name, fmt):
    assert aio.output_format(name) == fmt


def test_output_format_rejects_unknown_extension():
    with pytest.raises(OutputError, match="unsupported output extension"):
        aio.output_format("x.mp4")
    # "-o masters" for a folder not made yet: say what is missing, not "extension '(none)'"
    with pytest.raises(OutputError, match="no file extension and is not an existing folder"):
        aio.output_format("masters")


def test_subtypes_and_incompatible_bit_depths():
    assert aio.output_subtype("WAV", None) == "PCM_24"
    assert aio.output_subtype("WAV", "16") == "PCM_16"
    assert aio.output_subtype("AIFF", "32f") == "FLOAT"
    assert aio.output_subtype("OGG", None) == "VORBIS"
    with pytest.raises(UserError, match="FLAC cannot store 32-bit float"):
        aio.output_subtype("FLAC", "32f")
    with pytest.raises(UserError, match="does not apply to Ogg"):
        aio.output_subtype("OGG", "16")


# ---------------------------------------------------------------------------- dither
def test_quantize_without_dither_is_plain_rounding():
    x = np.full((1, 1000), 0.25 / 32768, dtype=np.float32)  # a quarter LSB
    q = aio.quantize(x, 16, None)
    assert q.dtype == np.int16 and not q.any()


def test_tpdf_dither_is_present_and_unbiased():
    x = np.full((1, 200_000), 0.25 / 32768, dtype=np.float32)
    q = aio.quantize(x, 16, np.random.default_rng(1))
    assert q.any()
    assert set(np.unique(q)) <= {-1, 0, 1}  # TPDF: at most +-1 LSB around the value
    assert abs(q.mean() - 0.25) < 0.01  # dither linearises: the mean survives


@pytest.mark.parametrize("depth,bits", [("16", 16), ("24", 24)])
def test_written_pcm_has_dither_noise_of_tpdf_size(tmp_path, depth, bits):
    x = (0.3 * np.sin(2 * np.pi * 997 * np.arange(SR) / SR))[None].astype(np.float32)
    path = tmp_path / "d.wav"
    aio.write_audio(path, x, SR, depth)
    y, _ = sf.read(path, dtype="float64", always_2d=True)
    err = (y[:, 0] - x[0]) * 2 ** (bits - 1)
    # rounding (1/12 LSB^2) + TPDF (2/12 LSB^2): std 0.5 LSB; without dither it is 0.29
    assert 0.45 < err.std() < 0.55
    assert np.abs(err).max() <= 1.5 + 1e-6
    assert sf.info(str(path)).subtype == f"PCM_{bits}"


def test_float_output_is_exact_without_dither(tmp_path):
    x = synth_mix(1.0, SR, seed=3)
    path = tmp_path / "f.wav"
    aio.write_audio(path, x, SR, "32f")
    y, _ = sf.read(path, dtype="float32", always_2d=True)
    assert sf.info(str(path)).subtype == "FLOAT"
    np.testing.assert_array_equal(y.T, x)


def test_dither_is_reproducible(tmp_path):
    x = synth_mix(0.5, SR, seed=4)
    aio.write_audio(tmp_path / "a.wav", x, SR, "16")
    aio.write_audio(tmp_path / "b.wav", x, SR, "16")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("ext,depth,tol", [
    (".wav", "16", 2.0 / 32768), (".wav", "24", 2.0 / 2**23), (".flac", "16", 2.0 / 32768),
    (".flac", "24", 2.0 / 2**23), (".aiff", "24", 2.0 / 2**23), (".aiff", "32f", 0.0),
    (".ogg", None, None)])
def test_format_round_trip(tmp_path, ext, depth, tol):
    x = synth_mix(1.0, SR, seed=1, level_db=-18)
    path = tmp_path / f"r{ext}"
    aio.write_audio(path, x, SR, depth)
    y, sr = aio.read_audio(path)
    assert sr == SR and y.shape[0] == 2
    if tol is None:  # lossy Vorbis: same signal, roughly
        n = min(y.shape[1], x.shape[1])
        corr = np.corrcoef(x[:, :n].ravel(), y[:, :n].ravel())[0, 1]
        assert corr > 0.99
    else:
        assert y.shape == x.shape
        assert np.abs(y - x).max() <= tol


def test_writer_abort_leaves_nothing(tmp_path):
    out = tmp_path / "o.wav"
    with pytest.raises(RuntimeError):
        with aio.AudioWriter(out, SR, 2) as w:
            w.write(np.zeros((2, 100), dtype=np.float32))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_respects_umask(tmp_path):
    aio.write_audio(tmp_path / "p.wav", np.zeros((1, 100), np.float32), SR)
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "p.wav").stat().st_mode & 0o777 == 0o666 & ~mask


# ---------------------------------------------------------------------------- probing
def test_probe_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        aio.probe(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        aio.probe(tmp_path / "empty.wav")
    (tmp_path / "junk.wav").write_bytes(os.urandom(4000))
    with pytest.raises(InputError, match="not a readable audio file"):
        aio.probe(tmp_path / "junk.wav")
    with pytest.raises(InputError, match="folder"):
        aio.probe(tmp_path)


def test_check_input_info(tmp_path):
    sf.write(tmp_path / "none.wav", np.zeros((0, 2)), SR)
    with pytest.raises(InputError, match="no samples"):
        aio.check_input_info(aio.probe(tmp_path / "none.wav"))
    sf.write(tmp_path / "short.wav", np.zeros((int(0.3 * SR), 2)), SR)
    with pytest.raises(InputError, match="too short"):
        aio.check_input_info(aio.probe(tmp_path / "short.wav"))
    sf.write(tmp_path / "six.wav", np.zeros((SR, 6)), SR)
    with pytest.raises(InputError, match="6 channels"):
        aio.check_input_info(aio.probe(tmp_path / "six.wav"))
    aio.check_input_info(aio.probe(tmp_path / "six.wav"), downmix=True)


def test_truncated_flac_is_reported(tmp_path):
    x = synth_mix(2.0, SR, seed=2)
    aio.write_audio(tmp_path / "t.flac", x, SR, "16")
    data = (tmp_path / "t.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.flac"):
        aio.read_audio(tmp_path / "cut.flac")


# ---------------------------------------------------------------------------- sources
def test_array_source_pads_with_zeros():
    src = aio.ArraySource(np.ones((2, 10), np.float32), SR)
    block = src.read(-3, 12)
    assert block.shape == (2, 15)
    assert block[:, :3].sum() == 0 and block[:, 3:13].all() and block[:, 13:].sum() == 0


def test_downmix_matrix_layouts():
    m = aio.downmix_matrix(6)
    assert m.shape == (2, 6)
    assert m[0, 3] == 0 and m[1, 3] == 0  # LFE dropped
    assert m[0, 0] == 1 and m[1, 1] == 1
    assert aio.downmix_matrix(7).shape == (2, 7)


@pytest.mark.parametrize("sr_in,sr_out", [(44100, 48000), (48000, 44100), (96000, 44100),
                                          (8000, 22050)])
def test_block_resampling_equals_one_shot(sr_in, sr_out):
    x = np.random.default_rng(0).standard_normal((2, sr_in // 2)).astype(np.float32)
    whole = aio.resample(x, sr_in, sr_out)
    src = aio.ResampledSource(aio.ArraySource(x, sr_in), sr_out)
    assert src.frames == whole.shape[1] == math.ceil(x.shape[1] * sr_out / sr_in)
    parts, s = [], 0
    for n in (777, 1, 5000, 10**9):
        e = min(s + n, src.frames)
        parts.append(src.read(s, e))
        s = e
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, atol=1e-6)


def test_resampler_quality():
    t = np.arange(SR) / SR
    x = np.sin(2 * np.pi * 1000 * t)[None].astype(np.float32)
    y = aio.resample(x, SR, 48000)
    ty = np.arange(y.shape[1]) / 48000
    err = y[0, 2000:-2000] - np.sin(2 * np.pi * 1000 * ty[2000:-2000])
    assert 20 * np.log10(np.abs(err).max()) < -90
    # a tone above the output's Nyquist must not alias back (stopband ~ -100 dB)
    z = aio.resample(np.sin(2 * np.pi * 23000 * t)[None].astype(np.float32), SR, 44100 // 2)
    assert 20 * np.log10(np.abs(z[0, 1000:-1000]).max() + 1e-12) < -80


# ---------------------------------------------------------------------------- meters
@pytest.mark.parametrize("sr", [44100, 48000, 22050])
def test_meter_matches_pyloudnorm_and_independent_true_peak(sr):
    import pyloudnorm

    x = synth_mix(6.0, sr, seed=5, level_db=-16)
    m = measure(x, sr)
    ref = pyloudnorm.Meter(sr).integrated_loudness(x.T.astype(np.float64))
    # pyloudnorm uses rounded K-weighting parameters; the spread is a few hundredths of a LU
    assert abs(m.integrated_lufs - ref) < 0.08
    # a different 4x interpolator (scipy's 81-tap Kaiser(5) against the limiter's 24 taps per
    # phase, Kaiser(5)): they differ by up to ~0.07 dB on content near Nyquist
    assert abs(m.true_peak_dbtp - _tp_db(x)) < 0.1


def test_streaming_meter_is_block_size_independent():
    x = synth_mix(5.0, SR, seed=6)
    whole = measure(x, SR, block=x.shape[1])
    for block in (1, 333, 4410, 100_000):
        if block == 1:
            x_small = x[:, :3000]
            a, b = measure(x_small, SR, block=1), measure(x_small, SR, block=3000)
            assert a.true_peak_dbtp == pytest.approx(b.true_peak_dbtp, abs=1e-6)
            continue
        m = measure(x, SR, block=block)
        assert m.integrated_lufs == pytest.approx(whole.integrated_lufs, abs=1e-6)
        assert m.true_peak_dbtp == pytest.approx(whole.true_peak_dbtp, abs=1e-6)
        assert m.loudness_range_lu == pytest.approx(whole.loudness_range_lu, abs=1e-6)


def test_meter_silence_and_nan():
    m = measure(np.zeros((2, SR), np.float32), SR)
    assert m.integrated_lufs == -math.inf and math.isnan(m.crest_db)
    assert m.as_dict()["integrated_lufs"] is None
    bad = np.zeros((1, 1000), np.float32)
    bad[0, 500] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Meter(SR, 1).process(bad)


def test_k_weighting_at_48k_matches_bs1770_table():
    sos = k_weighting_sos(48000)
    np.testing.assert_allclose(sos[0, :3], [1.53512485958697, -2.69169618940638,
                                            1.19839281085285], rtol=1e-6)
    np.testing.assert_allclose(sos[0, 4:], [-1.69065929318241, 0.73248077421585], rtol=1e-6)
    np.testing.assert_allclose(sos[1, 4:], [-1.99004745483398, 0.99007225036621], rtol=1e-6)


@pytest.mark.skipif(not TESTDATA.exists(), reason="shared loudness test data absent")
@pytest.mark.parametrize("name,expected", [("seq-3341-1-16bit.wav", -23.0),
                                           ("seq-3341-2-16bit.wav", -33.0),
                                           ("1kHz_Sine_-20_LUFS-16bit.wav", -20.0)])
def test_meter_on_ebu_signals(name, expected):
    path = TESTDATA / name
    if not path.exists():
        pytest.skip(f"{name} absent")
    x, sr = aio.read_audio(path)
    assert measure(x, sr).integrated_lufs == pytest.approx(expected, abs=0.1)


def test_writer_rewind_starts_over(tmp_path):
    x = synth_mix(0.5, SR, seed=8)
    out = tmp_path / "w.wav"
    with aio.AudioWriter(out, SR, 2, "16") as w:
        w.write(np.ones((2, 1000), np.float32) * 0.5)
        w.rewind()
        w.write(x)
    aio.write_audio(tmp_path / "ref.wav", x, SR, "16")
    assert out.read_bytes() == (tmp_path / "ref.wav").read_bytes()  # same data, same dither


def test_meter_gain_db_moves_only_the_absolute_gate():
    """integrated_lufs(gain_db=g): the absolute -70 LUFS gate judged as if the signal were
    g dB louder; loudness of a signal well above the gate is unchanged."""
    import pyloudnorm

    sr = 48000
    rng = np.random.default_rng(5)
    loud = rng.standard_normal((2, 4 * sr)).astype(np.float32) * 0.1
    m = Meter(sr, 2, true_peak=False)
    m.process(loud)
    assert m.integrated_lufs(gain_db=30.0) == pytest.approx(m.integrated_lufs(), abs=1e-9)
    quiet = loud * np.float32(10 ** (-60 / 20))  # about -72 LUFS: below the gate
    m = Meter(sr, 2, true_peak=False)
    m.process(quiet)
    assert m.integrated_lufs() == -np.inf
    reference = pyloudnorm.Meter(sr).integrated_loudness(loud.T.astype(np.float64)) - 60.0
    assert m.integrated_lufs(gain_db=50.0) == pytest.approx(reference, abs=0.05)


def test_temporaries_of_a_long_output_name_fit_the_name_limit(tmp_path):
    """A 244-byte output name is legal; its hidden temporary (".NAME.<pid>@<host>.<random>.part")
    must be too (it failed with "File name too long"), and a dead run's temporary of that
    name is still recognized and removed."""
    import subprocess
    import sys

    target = tmp_path / ("é" * 120 + ".wav")
    assert len(target.name.encode()) == 244
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    dead = tmp_path / (aio.temp_prefix(target).replace(f".{os.getpid()}@", f".{p.pid}@")
                       + "abc123xy.part")
    dead.write_bytes(b"x")
    tmp = aio.new_temp_file(target)
    assert len(tmp.name.encode()) <= 255 and not dead.exists()
    aio.discard_temp_file(tmp)
    aio.write_audio(target, np.zeros((2, 4410), np.float32), 44100)
    assert sorted(q.name for q in tmp_path.iterdir()) == [target.name]
