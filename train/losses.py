"""Training losses: multi-resolution STFT, loudness and optional parameter regression.

The network predicts chain parameters ``p`` for a de-mastered input; the chain
renders ``y = chain(degraded, p)`` and the loss compares ``y`` with the original
master ``x``:

- ``mrstft``: :func:`train.metrics.mrstft` (spectral convergence + log magnitude,
  several FFT sizes). Zero for identical audio, positive otherwise.
- ``loudness``: |LUFS(y) - LUFS(x)| in LU through ``dsp.integrated_loudness``
  (differentiable). With ``target_lufs`` given to the chain this is mostly the
  limiter's loudness loss, so a small weight suffices.
- ``params``: masked mean squared error between predicted and target normalized
  parameters. Only possible when the degradation has a *known inverse inside the
  chain*: the linear de-mastering stages (EQ tilt / bands, width, level) are undone
  exactly by the chain's EQ with negated gains, reciprocal width and opposite gain
  (see ``train/demaster.py``), whereas the dynamics stages (expansion, transient
  restoration, un-limiting) have no exact counterpart among the chain's compressor
  and limiter settings. Items with a dynamics stage, or whose inverse falls outside
  the chain's ranges, carry ``param_mask`` = False and add nothing. It is off by
  default (weight 0) and serves as an auxiliary signal early in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from train.metrics import DEFAULT_FFT_SIZES, mrstft


class MasteringLoss(nn.Module):
    """Weighted sum of the losses above; returns (total scalar, dict of detached parts)."""

    def __init__(
        self,
        sample_rate: int,
        mrstft_weight: float = 1.0,
        fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
        loudness_weight: float = 0.05,
        param_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if min(mrstft_weight, loudness_weight, param_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        self.sample_rate = int(sample_rate)
        self.mrstft_weight = float(mrstft_weight)
        self.fft_sizes = tuple(int(n) for n in fft_sizes)
        self.loudness_weight = float(loudness_weight)
        self.param_weight = float(param_weight)

    def forward(
        self,
        pred_audio: torch.Tensor,
        target_audio: torch.Tensor,
        pred_params: torch.Tensor | None = None,
        target_params: torch.Tensor | None = None,
        param_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Audio (batch, channels, samples); params (batch, n); mask (batch, n) bool."""
        pred_audio = pred_audio.float()
        target_audio = target_audio.float()
        parts: dict[str, torch.Tensor] = {}
        total = pred_audio.new_zeros(())
        if self.mrstft_weight > 0:
            parts["mrstft"] = mrstft(pred_audio, target_audio, self.fft_sizes).mean()
            total = total + self.mrstft_weight * parts["mrstft"]
        if self.loudness_weight > 0:
            parts["loudness"] = loudness_loss(pred_audio, target_audio, self.sample_rate)
            total = total + self.loudness_weight * parts["loudness"]
        if self.param_weight > 0 and pred_params is not None and target_params is not None:
            parts["params"] = param_loss(pred_params.float(), target_params.float(), param_mask)
            total = total + self.param_weight * parts["params"]
        return total, {k: float(v.detach()) for k, v in parts.items()}


def loudness_loss(pred: torch.Tensor, target: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean |integrated loudness difference| in LU, differentiable w.r.t. ``pred``.

    Items whose loudness is not finite (digital silence) are left out.
    """
    from dsp.loudness import integrated_loudness

    lp = integrated_loudness(pred, sample_rate)
    with torch.no_grad():
        lt = integrated_loudness(target, sample_rate)
    ok = torch.isfinite(lp) & torch.isfinite(lt)
    if not bool(ok.any()):
        return pred.sum() * 0.0
    # Select before subtracting so non-finite items contribute neither value nor NaN gradient.
    return (torch.where(ok, lp, torch.zeros_like(lp)) - torch.where(ok, lt, torch.zeros_like(lt))).abs()[ok].mean()


def param_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Masked squared error over normalized parameters (batch, n), summed and divided by
    batch * n; 0 when nothing is masked in."""
    if pred.shape != target.shape:
        raise ValueError(f"param shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if mask is None:
        mask = torch.ones_like(pred, dtype=torch.bool)
    mask = mask.to(torch.bool) & torch.isfinite(target)
    if not bool(mask.any()):
        return pred.sum() * 0.0
    diff = pred - torch.nan_to_num(target)
    # a sum over items divided by a constant (not by how many entries happen to be masked
    # in): the loss is linear in the items, so DDP ranks averaging their shards' gradients
    # get exactly the single-process gradient
    return torch.where(mask, diff.square(), torch.zeros_like(diff)).sum() / diff.numel()
