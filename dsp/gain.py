"""Static gain."""

from __future__ import annotations

import torch

from dsp.processor import Processor
from dsp.ranges import ParamRange


def apply_gain(x: torch.Tensor, gain_db: torch.Tensor) -> torch.Tensor:
    """x: (batch, channels, samples) times 10^(gain_db/20), gain_db: (batch,)."""
    return x * torch.pow(10.0, gain_db.to(x.dtype) / 20.0)[:, None, None]


class Gain(Processor):
    """Normalized-parameter gain, +-12 dB."""

    ranges = {"gain_db": ParamRange(-12.0, 12.0, "lin", "dB")}

    def process(self, x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return apply_gain(x, values["gain_db"])

    def identity_values(self) -> dict[str, float]:
        return {"gain_db": 0.0}
