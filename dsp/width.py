"""Mid/side stereo width with the low end kept mono below a crossover.

The side signal S = (L - R) / 2 is high-passed by a Linkwitz-Riley (LR4, 24 dB/octave)
filter at ``mono_below_hz`` and scaled by ``width``; the mid M = (L + R) / 2 is
untouched, so the low end folds to mono and everything above it is widened or
narrowed. At 0 Hz the high-pass is exactly the identity (dsp/biquad.py), so width 1 with
0 Hz leaves the audio unchanged.
"""

from __future__ import annotations

import torch

from dsp._ops import fused_cpu_ok, stereo_width_op, width_pass
from dsp.biquad import highpass_or_identity
from dsp.crossover import BUTTERWORTH_Q
from dsp.processor import Processor
from dsp.ranges import ParamRange


def _lr4_highpass(cutoff_hz: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """(batch, 2, 5): a Butterworth high-pass twice; exact identity at 0 Hz."""
    c = highpass_or_identity(cutoff_hz, torch.full_like(cutoff_hz, BUTTERWORTH_Q), sample_rate)
    return torch.stack([c, c], dim=1)


def stereo_width(x: torch.Tensor, width: torch.Tensor, mono_below_hz: torch.Tensor | None = None,
                 sample_rate: float = 44100.0) -> torch.Tensor:
    """x (batch, channels, samples); width (batch,): 0 = mono, 1 = unchanged, 2 = twice as wide;
    mono_below_hz (batch,) or None: side content below it is removed.

    Mono input (1 channel) has no side and is returned as is; more than two channels is an error.
    """
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 2:
        raise ValueError(f"stereo width needs 1 or 2 channels, got {x.shape[1]}")
    recording = torch.is_grad_enabled() and (x.requires_grad or width.requires_grad or (
        mono_below_hz is not None and mono_below_hz.requires_grad))
    if not recording and not bool((width != 1).any()) and (
            mono_below_hz is None or not bool((mono_below_hz != 0).any())):
        return x  # the identity setting, exactly (M/S and back would round)
    if not recording and mono_below_hz is not None and fused_cpu_ok(x):
        return width_pass(x, _lr4_highpass(mono_below_hz, sample_rate), width)
    if mono_below_hz is not None:  # mid/side, the side's high-pass and the width as one op (dsp._ops)
        return stereo_width_op(x, _lr4_highpass(mono_below_hz, sample_rate), width)
    mid = 0.5 * (x[:, 0] + x[:, 1])
    side = 0.5 * (x[:, 0] - x[:, 1]) * width.to(x.dtype)[:, None]
    return torch.stack([mid + side, mid - side], dim=1)


class StereoWidth(Processor):
    """Normalized-parameter width 0.5-1.5 with mono bass below 0-250 Hz."""

    ranges = {
        "width": ParamRange(0.5, 1.5, "lin", "x"),
        "mono_below_hz": ParamRange(0.0, 250.0, "lin", "Hz"),
    }

    def process(self, x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return stereo_width(x, values["width"], values["mono_below_hz"], self.sample_rate)

    def identity_values(self) -> dict[str, float]:
        return {"width": 1.0, "mono_below_hz": 0.0}
