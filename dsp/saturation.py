"""Soft saturation as one amount, driven relative to the track's loudness.

The clipper is ``tanh`` with unity small-signal gain, driven so that a signal at the
track's reference loudness (dsp/level.py) sits at ``DRIVE_LUFS`` in front of it: the
same mix at any level gets the same harmonics, and level is left to the loudness
normalization. ``amount`` blends dry (0, exact identity) and saturated (1).
"""

from __future__ import annotations

import torch

from dsp.level import as_reference
from dsp.processor import Processor
from dsp.ranges import ParamRange

DRIVE_LUFS = -12.0  # the reference loudness is placed here in front of tanh (peaks near 0 dBFS)


def saturate(x: torch.Tensor, amount: torch.Tensor, sample_rate: float,
             reference_lufs: torch.Tensor | float | None = None) -> torch.Tensor:
    """x (batch, channels, samples); amount (batch,) in [0, 1] -> same shape as x.

    y = x + amount * (tanh(d x) / d - x) with d = 10^((DRIVE_LUFS - reference) / 20).
    With amount 0 for every item and no gradient to record, x itself is returned (what the
    formula gives, without five passes over the audio: the setting most masters use).
    """
    recording = torch.is_grad_enabled() and (x.requires_grad or amount.requires_grad)
    if not recording and not bool((amount != 0).any()):
        return x
    ref = as_reference(reference_lufs, x, sample_rate)
    d = torch.pow(10.0, (DRIVE_LUFS - ref) / 20.0).to(x.dtype)[:, None, None]
    a = amount.to(x.dtype)[:, None, None]
    if not recording:  # the same sum regrouped, (a / d) tanh(d x) + (1 - a) x: three passes in place
        return torch.tanh_(x * d).mul_(a / d).addcmul_(x, 1.0 - a)
    return _Saturate.apply(x, a, d)


class _Saturate(torch.autograd.Function):
    """y = (a / d) tanh(d x) + (1 - a) x with its derivatives written out (d is a measured
    constant): dy/dx = 1 - a tanh^2(d x), dy/da = tanh(d x) / d - x. Four passes forward
    (the inference arithmetic, so both paths agree bit for bit) and seven backward,
    in place of autograd's two dozen through the composition (tests/test_dsp_misc.py)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        t = torch.tanh_(x * d)
        ctx.save_for_backward(x, a, d, t)
        return torch.mul(t, a / d).addcmul_(x, 1.0 - a)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, a, d, t = ctx.saved_tensors
        da = dx = None
        if ctx.needs_input_grad[1]:  # the difference per sample, then one dot product (no cancellation of sums)
            b = x.shape[0]
            u = torch.div(t, d).sub_(x)
            da = torch.bmm(g.reshape(b, 1, -1), u.reshape(b, -1, 1)).reshape(a.shape)
        if ctx.needs_input_grad[0]:
            dx = torch.mul(t, t).mul_(-a).add_(1.0).mul_(g)
        return dx, da, None


class Saturation(Processor):
    """Normalized-parameter saturation: one amount, 0-1."""

    ranges = {"amount": ParamRange(0.0, 1.0, "lin", "")}

    def process(self, x: torch.Tensor, values: dict[str, torch.Tensor], reference_lufs=None) -> torch.Tensor:
        return saturate(x, values["amount"], self.sample_rate, reference_lufs)

    def identity_values(self) -> dict[str, float]:
        return {"amount": 0.0}
