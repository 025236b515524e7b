"""Synthetic music-like signals for tests, benchmarks and demos (no files needed)."""

from __future__ import annotations

import numpy as np


def synth_mix(seconds: float = 4.0, sample_rate: int = 44100, channels: int = 2,
              level_db: float = -20.0, seed: int = 0) -> np.ndarray:
    """A deterministic, unmastered-sounding mix: (channels, samples) float32.

    Kick and bass on a 120 bpm grid, a sustained chord, hi-hat noise bursts and a melody
    whose loudness varies over the excerpt, panned differently per channel so stereo
    width is non-trivial. ``level_db`` is the approximate RMS level in dBFS.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    beat = (t * 2.0) % 1.0  # 120 bpm
    kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-beat * 30)) * t) * np.exp(-beat * 9)
    bass_f = np.where((t % 4.0) < 2.0, 55.0, 73.4)
    bass = 0.5 * np.sin(2 * np.pi * bass_f * t) * (0.6 + 0.4 * np.exp(-beat * 4))
    chord = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
                for f in (220.0, 261.6, 329.6, 392.0)) * 0.12
    eighth = (t * 4.0) % 1.0
    hat = rng.standard_normal(n) * np.exp(-eighth * 40) * 0.25
    hat = np.diff(hat, prepend=0.0)  # brighter
    swell = 0.55 + 0.45 * np.sin(2 * np.pi * t / max(seconds, 1.0))
    mel_f = 440.0 * 2 ** (np.floor((t * 2) % 8) / 12.0)
    melody = 0.25 * np.sin(2 * np.pi * np.cumsum(mel_f) / sample_rate) * swell
    # a soft pink-ish noise bed (reverb/room stand-in) so every band carries some energy
    spec = np.fft.rfft(rng.standard_normal((2, n)), axis=1)
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spec /= np.sqrt(np.maximum(f, 20.0) / 1000.0)  # 1/f power: pink
    bed = np.fft.irfft(spec, n, axis=1)
    bed *= 0.03 / (np.sqrt(np.mean(bed**2)) + 1e-12)
    left = kick + bass + chord + 0.8 * hat + 0.8 * melody + bed[0]
    right = kick + bass + 0.8 * chord + np.roll(hat, 37) + 0.5 * melody + bed[1]
    x = np.stack([left, right]) if channels == 2 else ((left + right) / 2)[None, :]
    rms = np.sqrt(np.mean(x**2))
    return (x * (10 ** (level_db / 20.0) / rms)).astype(np.float32)


TINY_MODEL_CONFIG = {
    "features": {"n_mels": 16, "n_windows": 2, "window_seconds": 0.5, "fft_seconds": 0.023,
                 "f_min": 30.0, "f_max": 8000.0},
    "network": {"cond_dim": 0, "hidden": [32, 32], "dropout": 0.0},
}


def make_tiny_checkpoint(path, sample_rate: int = 44100, seed: int = 0):
    """Save a tiny randomly initialised MasteringModel checkpoint at ``path`` (stem or
    .safetensors name); returns the weights path. Imports torch and model."""
    import torch

    from model import MasteringModel, save_checkpoint

    torch.manual_seed(seed)
    model = MasteringModel(sample_rate, features=dict(TINY_MODEL_CONFIG["features"]),
                           network=dict(TINY_MODEL_CONFIG["network"]))
    return save_checkpoint(path, model, {"note": "random weights, for tests"})
