"""Reference matching on a synthetic pair: the reference is the input through a known EQ,
compression and width change, normalized louder. Distances are measured independently
(Welch spectra in 1/3-octave bands, pyloudnorm), not with automaster's own descriptors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import welch

torch = pytest.importorskip("torch")
pytest.importorskip("dsp")
torch.set_num_threads(1)

import automaster  # noqa: E402
from automaster.cli import main  # noqa: E402
from automaster.testing import synth_mix  # noqa: E402

SR = 44100
REF_LUFS = -12.0


def lufs(x: np.ndarray, sr: int = SR) -> float:
    import pyloudnorm

    return pyloudnorm.Meter(sr).integrated_loudness(np.asarray(x, np.float64).T)


def band_db(x: np.ndarray, sr: int = SR) -> np.ndarray:
    """Long-term 1/3-octave band levels (dB, mean removed) of the channel mean, 50 Hz-16 kHz."""
    f, p = welch(np.asarray(x, np.float64).mean(axis=0), sr, nperseg=8192)
    centres = 1000.0 * 2.0 ** (np.arange(-13, 13) / 3.0)
    levels = []
    for fc in centres:
        sel = (f >= fc * 2 ** (-1 / 6)) & (f < fc * 2 ** (1 / 6))
        levels.append(10 * np.log10(p[sel].mean() + 1e-20))
    levels = np.array(levels)
    return levels - levels.mean()


def spectral_distance(a: np.ndarray, b: np.ndarray) -> float:
    d = band_db(a) - band_db(b)
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def side_mid_db(x: np.ndarray) -> float:
    mid, side = (x[0] + x[1]) / 2, (x[0] - x[1]) / 2
    return 10 * math.log10((side**2).mean() / (mid**2).mean())


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """(input mix, reference master) (channels, samples) at SR."""
    from dsp import MasteringChain

    x = synth_mix(6.0, SR, seed=5, level_db=-22)
    chain = MasteringChain(SR)
    s = chain.denormalize(chain.identity_params(1))[0]
    s.update({"eq.high_shelf.gain_db": 6.0, "eq.high_shelf.cutoff_hz": 5000.0,
              "eq.low_shelf.gain_db": -4.0, "eq.low_shelf.cutoff_hz": 150.0,
              "multiband.low.threshold_db": -12.0, "multiband.low.ratio": 4.0,
              "multiband.mid.threshold_db": -12.0, "multiband.mid.ratio": 4.0,
              "multiband.attack_ms": 5.0, "multiband.release_ms": 100.0, "width.width": 1.4})
    with torch.no_grad():
        ref = chain(torch.from_numpy(x)[None], chain.normalize([s]), ceiling_dbtp=-1.0,
                    target_lufs=REF_LUFS)[0].numpy()
    return x, ref


@pytest.fixture(scope="module")
def matched(pair):
    """Reference mode with no trained model available: it must start from identity."""
    import automaster.pipeline.decide

    x, ref = pair
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(automaster.pipeline.decide, "default_model_available", lambda: False)
        return automaster.master(x, SR, target_lufs=None, reference=ref, device="cpu")


def test_reference_match_gets_closer_than_input_and_identity(pair, matched):
    x, ref = pair
    ident = automaster.master(x, SR, target_lufs=REF_LUFS, intensity=0.0, device="cpu").audio
    out = matched.audio
    d_in, d_id, d_out = (spectral_distance(x, ref), spectral_distance(ident, ref),
                         spectral_distance(out, ref))
    assert d_out < d_in and d_out < d_id, (d_in, d_id, d_out)
    assert d_out < 0.7 * d_id
    # loudness: matched to the reference's, far closer than the input
    assert abs(lufs(out) - lufs(ref)) <= 0.5 < abs(lufs(x) - lufs(ref))
    # width moves towards the reference's (it is 1.4x wider)
    assert abs(side_mid_db(out) - side_mid_db(ref)) < abs(side_mid_db(x) - side_mid_db(ref))


def test_reference_report(matched):
    rep = matched.report
    assert rep["source"].startswith("reference")
    assert "identity" in rep["source"]  # no trained model: the search starts at identity
    assert rep["target_lufs"] == pytest.approx(REF_LUFS, abs=0.6)  # the reference's own loudness
    info = rep["reference"]
    assert info["loss_best"] < info["loss_start"]["total"]
    # the top end is brighter in the reference (its +6 dB shelf)
    assert matched.settings["eq.high_shelf.gain_db"] > 1.0


def test_reference_at_another_rate_for_a_mono_input(pair):
    x, ref = pair
    from automaster.io import resample

    ref48 = resample(ref, SR, 48000)
    # (a mono master at the stereo reference's -10 LUFS would need 3 dB more level per
    # channel than the limiter allows, so set the target explicitly here)
    mono = automaster.master(x[:1], SR, target_lufs=-16.0, reference=ref48,
                             reference_sample_rate=48000, device="cpu")
    assert mono.audio.shape == (1, x.shape[1])
    assert abs(lufs(mono.audio) + 16.0) <= 0.5
    assert spectral_distance(mono.audio, ref) < spectral_distance(x[:1], ref)


def test_mono_and_stereo_references_are_matched_as_played_on_two_speakers(pair):
    """BS.1770 measures a mono file as one channel; played on two speakers (dual mono) it is
    3.01 dB louder. A stereo mix matched to a mono reference must sound as loud as that
    reference does, i.e. as loud as the reference duplicated onto both channels; a mono mix
    matched to a stereo reference measures 3.01 dB below it."""
    x, ref = pair
    mono_ref = ref.mean(axis=0, keepdims=True)
    out = automaster.master(x, SR, reference=mono_ref, restore="off", device="cpu")
    played = lufs(np.repeat(mono_ref, 2, axis=0))
    assert abs(played - lufs(mono_ref) - 3.01) < 0.02  # the convention, by pyloudnorm
    assert abs(lufs(out.audio) - played) <= 0.2
    assert abs(out.report["reference"]["played_lufs"] - played) <= 0.1
    # the match's figures sit beside the reference's own measurement, which they used to replace
    assert abs(out.report["reference"]["integrated_lufs"] - lufs(mono_ref)) <= 0.1
    assert out.report["reference"]["loss_best"] <= out.report["reference"]["loss_start"]["total"]
    mono = automaster.master(x[:1], SR, reference=ref * 0.5, restore="off", device="cpu")
    assert abs(lufs(mono.audio) - (lufs(ref * 0.5) - 3.01)) <= 0.2
    same = automaster.master(x, SR, reference=ref * 0.5, restore="off", device="cpu")
    assert "played_lufs" not in same.report["reference"]
    assert abs(lufs(same.audio) - lufs(ref * 0.5)) <= 0.2


def test_cli_reference_with_explicit_target(pair, tmp_path, capsys):
    x, ref = pair
    sf.write(tmp_path / "in.wav", x.T, SR, subtype="FLOAT")
    sf.write(tmp_path / "ref.flac", ref.T, SR)
    out = tmp_path / "out.wav"
    code = main([str(tmp_path / "in.wav"), "-o", str(out), "--reference",
                 str(tmp_path / "ref.flac"), "--target", "-16", "--params-out",
                 str(tmp_path / "s.json")])
    assert code == 0, capsys.readouterr().err
    y, _ = sf.read(out, dtype="float64", always_2d=True)
    assert abs(lufs(y.T) + 16.0) <= 0.5
    assert spectral_distance(y.T, ref) < spectral_distance(x, ref)


def test_cli_reference_errors(pair, tmp_path, capsys):
    x, _ = pair
    sf.write(tmp_path / "in.wav", x.T, SR, subtype="FLOAT")
    code = main([str(tmp_path / "in.wav"), "-o", str(tmp_path / "o.wav"), "--reference",
                 str(tmp_path / "missing_ref.wav")])
    err = capsys.readouterr().err
    assert code == 2 and "missing_ref.wav" in err and len(err.strip().splitlines()) == 1
    sf.write(tmp_path / "silent_ref.wav", np.zeros((SR, 2)), SR)
    code = main([str(tmp_path / "in.wav"), "-o", str(tmp_path / "o.wav"), "--reference",
                 str(tmp_path / "silent_ref.wav")])
    err = capsys.readouterr().err
    assert code == 2 and "silent_ref.wav" in err and "silent" in err
    assert not (tmp_path / "o.wav").exists()
