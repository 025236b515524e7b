"""The shipped default model: it loads through the registry and masters a short file."""

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch

from automaster.cli import main
from dsp import MasteringChain
from model.checkpoint import load_checkpoint, read_metadata

SR = 44100


def _mix(seconds: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.2 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 1760 * t)
    noise = 0.05 * rng.standard_normal((2, t.size))
    return (tone + noise).astype(np.float32)


def test_default_checkpoint_loads_with_the_current_chain():
    model = load_checkpoint("default")
    meta = read_metadata("default")
    assert meta["range_table"] == MasteringChain(meta["sample_rate"]).range_table()
    assert meta["training_summary"]["step"] > 0
    p = model.predict(torch.from_numpy(_mix())[None], SR)
    assert p.shape == (1, MasteringChain(SR).num_params)
    assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()


def test_default_model_masters_a_short_file(tmp_path, capsys):
    src, out = tmp_path / "mix.wav", tmp_path / "master.flac"
    sf.write(str(src), _mix().T, SR)
    before = src.read_bytes()
    assert main([str(src), "-o", str(out), "--target", "-16", "--params-out", str(tmp_path / "s.json")]) == 0
    assert "no trained model" not in capsys.readouterr().err
    y, sr = sf.read(str(out), always_2d=True)
    assert sr == SR and y.shape[1] == 2
    assert abs(pyloudnorm.Meter(SR).integrated_loudness(y) + 16.0) <= 0.5
    assert src.read_bytes() == before


def _shelf(x: np.ndarray, kind: str, gain_db: float, freq_hz: float) -> np.ndarray:
    """RBJ shelf applied with scipy, integrated loudness restored (pyloudnorm)."""
    from scipy.signal import sosfilt

    from dsp.biquad import high_shelf_coefficients, low_shelf_coefficients

    design = low_shelf_coefficients if kind == "low" else high_shelf_coefficients
    t = lambda v: torch.tensor([float(v)], dtype=torch.float64)  # noqa: E731
    c = design(t(freq_hz), t(gain_db), t(2 ** -0.5), SR)[0].numpy()
    y = sosfilt(np.array([[c[0], c[1], c[2], 1.0, c[3], c[4]]]), x, axis=-1)
    meter = pyloudnorm.Meter(SR)
    d = meter.integrated_loudness(x.T) - meter.integrated_loudness(y.T)
    return (y * 10 ** (d / 20)).astype(np.float32)


def _predict(model, x: np.ndarray, target: float = -14.0) -> dict:
    chain = MasteringChain(SR)
    p = model.predict(torch.from_numpy(x)[None], SR, target_lufs=target, ceiling_dbtp=-1.0)
    return chain.denormalize(p)[0]


def test_default_model_detects_a_known_shelf_with_the_right_sign():
    """Audio the model never saw (a synthetic mix): a +6 dB bass shelf gets a lower low
    shelf than a -6 dB one, and likewise for treble."""
    from automaster.testing import synth_mix

    model = load_checkpoint("default")
    x = synth_mix(12.0, SR, seed=21, level_db=-20)
    for kind, freq, name in (("low", 150.0, "eq.low_shelf.gain_db"), ("high", 5000.0, "eq.high_shelf.gain_db")):
        up = _predict(model, _shelf(x, kind, 6.0, freq))[name]
        down = _predict(model, _shelf(x, kind, -6.0, freq))[name]
        assert up < down, (name, up, down)


def test_default_model_hears_the_loudness_target():
    """A -8 LUFS club master and a -16 LUFS master of the same mix get different dynamics."""
    from automaster.testing import synth_mix

    model = load_checkpoint("default")
    x = synth_mix(12.0, SR, seed=22, level_db=-20)
    club, quiet = _predict(model, x, -8.0), _predict(model, x, -16.0)
    chain = MasteringChain(SR)
    pc, pq = chain.normalize([club]), chain.normalize([quiet])
    idx = [i for i, n in enumerate(chain.param_names) if n.startswith("multiband.")]
    assert float((pc[0, idx] - pq[0, idx]).abs().max()) > 0.01


def test_album_prediction_hears_the_album_target_and_ceiling():
    """The album asks the model for the album's target and ceiling, as a single master does:
    a -8 LUFS album and a -16 LUFS album of the same track get different dynamics, and
    each equals the single-track prediction at that level."""
    from pathlib import Path

    from automaster.album.master import AlbumOptions, Track
    from automaster.album.master import _predict as album_predict
    from automaster.metering import Meter
    from automaster.testing import synth_mix

    x = synth_mix(12.0, SR, seed=22, level_db=-20)
    meter = Meter(SR, 2, true_peak=False)
    meter.process(x)

    def album_setting(target: float, ceiling: float) -> dict:
        t = Track(0, Path("a.wav"), "a", None)
        t.audio, t.input = x, meter.result().as_dict()
        album_predict([t], SR, AlbumOptions(target_lufs=target, ceiling_dbtp=ceiling, model="default",
                                       device="cpu"), lambda m: None)
        return t.predicted

    model = load_checkpoint("default")
    chain = MasteringChain(SR)
    idx = [i for i, n in enumerate(chain.param_names) if n.startswith("multiband.")]
    club, quiet = album_setting(-8.0, -1.0), album_setting(-16.0, -1.0)
    pc, pq = chain.normalize([club]), chain.normalize([quiet])
    assert float((pc[0, idx] - pq[0, idx]).abs().max()) > 0.01
    single = chain.normalize([_predict(model, x, -8.0)])
    assert float((pc - single).abs().max()) < 1e-4
