"""The shipped default model: it loads through the registry and masters a short file."""

import numpy as np
import pyloudnorm
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
