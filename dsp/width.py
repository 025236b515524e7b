"""Mid/side stereo width."""

from __future__ import annotations

import torch

from dsp.processor import Processor
from dsp.ranges import ParamRange


def stereo_width(x: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Scale the side signal by ``width`` (batch,): 0 = mono, 1 = unchanged, 2 = twice as wide.

    x: (batch, channels, samples). Mono input (1 channel) has no side and is returned
    as is; more than two channels is an error.
    """
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 2:
        raise ValueError(f"stereo width needs 1 or 2 channels, got {x.shape[1]}")
    # L' = M + w S, R' = M - w S with M, S = (L +- R) / 2, as one 2x2 matrix per item
    w = width.to(x.dtype)
    a = 0.5 * (1.0 + w)
    b = 0.5 * (1.0 - w)
    mix = torch.stack([torch.stack([a, b], -1), torch.stack([b, a], -1)], -2)  # (batch, 2, 2)
    return torch.bmm(mix, x)


class StereoWidth(Processor):
    """Normalized-parameter mid/side width, 0-2."""

    ranges = {"width": ParamRange(0.0, 2.0, "lin", "x")}

    def process(self, x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return stereo_width(x, values["width"])

    def identity_values(self) -> dict[str, float]:
        return {"width": 1.0}
