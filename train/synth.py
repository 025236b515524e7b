"""Generated "mastered" music-like excerpts for smoke runs and tests (no files needed).

Each excerpt is a short stereo mix of a chord of harmonic tones with note envelopes,
a kick (decaying sine sweep), a hi-hat (filtered noise bursts) and a bass line,
panned and then "mastered" with a tanh soft clipper at a fixed loudness, so the
de-mastering augmenter has something to undo. Fully determined by the generator.
"""

from __future__ import annotations

import math

import torch

from train.pairs import mix_seed


class GeneratedSource:
    """Deterministic synthetic excerpts: ``excerpt(index) -> (channels, samples)`` float32."""

    def __init__(self, sample_rate: int = 44100, seconds: float = 1.0, channels: int = 2, seed: int = 0, bpm_range: tuple[float, float] = (80.0, 160.0)) -> None:
        if sample_rate <= 0 or seconds <= 0 or channels not in (1, 2):
            raise ValueError(f"bad GeneratedSource settings: sample_rate={sample_rate} seconds={seconds} channels={channels}")
        self.sample_rate = int(sample_rate)
        self.num_samples = int(round(seconds * sample_rate))
        self.channels = int(channels)
        self.seed = int(seed)
        self.bpm_range = bpm_range

    def excerpt(self, index: int) -> torch.Tensor:
        """Excerpt number ``index`` (any non-negative int), a pure function of (seed, index)."""
        g = torch.Generator(device="cpu")
        g.manual_seed(mix_seed(self.seed, index))
        sr, n = self.sample_rate, self.num_samples

        def u(lo: float, hi: float) -> float:
            return lo + (hi - lo) * float(torch.rand((), generator=g))

        t = torch.arange(n, dtype=torch.float32) / sr
        beat = 60.0 / u(*self.bpm_range)
        root = 55.0 * 2.0 ** (int(torch.randint(0, 12, (), generator=g)) / 12.0)
        stems = []

        # chord pad: three harmonic tones, per-note attack/decay envelope
        phase_env = torch.remainder(t, 2 * beat)
        note_env = (1 - torch.exp(-phase_env / 0.01)) * torch.exp(-phase_env / u(0.2, 1.0))
        chord = torch.zeros(n)
        for interval in (12, 16, 19):
            f0 = root * 2.0 ** (interval / 12.0)
            for h in range(1, 5):
                chord += (0.5**h) * torch.sin(2 * math.pi * f0 * h * t + u(0, 6.28))
        stems.append((0.25 * chord * note_env, u(-0.6, 0.6)))

        # bass: root with a little second harmonic, gated per beat
        pb = torch.remainder(t, beat)
        bass = (torch.sin(2 * math.pi * root * t) + 0.3 * torch.sin(4 * math.pi * root * t)) * torch.exp(-pb / u(0.1, 0.4))
        stems.append((0.35 * bass, 0.0))

        # kick: pitch-swept sine at every beat
        kick_phase = 2 * math.pi * (45.0 * pb + 80.0 * 0.03 * (1 - torch.exp(-pb / 0.03)))
        kick = torch.sin(kick_phase) * torch.exp(-pb / 0.12)
        stems.append((0.6 * kick, 0.0))

        # hi-hat: high-passed noise bursts on eighth notes
        noise = torch.randn(n, generator=g)
        hp = noise - torch.nn.functional.avg_pool1d(noise.view(1, 1, -1), 9, stride=1, padding=4).view(-1)
        ph = torch.remainder(t, beat / 2)
        stems.append((0.15 * hp * torch.exp(-ph / 0.03), u(-0.7, 0.7)))

        mix = torch.zeros(2, n)
        for sig, pan in stems:
            angle = (pan + 1) * math.pi / 4
            mix[0] += math.cos(angle) * sig
            mix[1] += math.sin(angle) * sig
        mix = mix / mix.abs().amax().clamp_min(1e-6)
        drive = u(1.5, 4.0)
        mastered = torch.tanh(drive * mix) / math.tanh(drive) * 10 ** (u(-1.5, -0.3) / 20)
        if self.channels == 1:
            mastered = mastered.mean(dim=0, keepdim=True)
        return mastered.float().contiguous()
