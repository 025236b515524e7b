"""Soft clipper with drive and dry/wet mix."""

from __future__ import annotations

import torch

from dsp.processor import Processor
from dsp.ranges import ParamRange


def soft_clip(x: torch.Tensor, drive_db: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """tanh soft clipper with unity small-signal gain.

    x: (batch, channels, samples); drive_db, mix: (batch,). The wet path is
    tanh(d x) / d with d = 10^(drive_db/20): it saturates towards -drive_db dBFS,
    so more drive means more harmonics, not more level. ``mix`` blends dry (0) and
    wet (1).
    """
    d = torch.pow(10.0, drive_db.to(x.dtype) / 20.0)[:, None, None]
    m = mix.to(x.dtype)[:, None, None]
    wet = torch.tanh(d * x) / d
    return torch.lerp(x, wet, m)


class Saturation(Processor):
    """Normalized-parameter soft clipper; drive 0-24 dB, mix 0-1."""

    ranges = {
        "drive_db": ParamRange(0.0, 24.0, "lin", "dB"),
        "mix": ParamRange(0.0, 1.0, "lin", ""),
    }

    def process(self, x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return soft_clip(x, values["drive_db"], values["mix"])

    def identity_values(self) -> dict[str, float]:
        return {"drive_db": 6.0, "mix": 0.0}
