"""The track's reference level: what level-relative settings are measured against.

Thresholds of the dynamics and the saturation's drive are set relative to the input's
integrated loudness (BS.1770, :func:`dsp.loudness.integrated_loudness`), so a mix that
arrives 10 dB hotter is treated the same as a quiet one, and level is left to the
loudness normalization at the end of the chain (no input gain or makeup that could
trade against a threshold). Rendering a long track in blocks passes the whole track's
loudness so every block uses the same reference.
"""

from __future__ import annotations

import torch

from dsp.loudness import integrated_loudness

FLOOR_LUFS = -70.0  # BS.1770 absolute gate: silence is referenced here
CEIL_LUFS = 10.0


@torch.no_grad()
def reference_lufs(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Integrated loudness of x (batch, channels, samples) -> (batch,) LUFS, float64,
    clamped to [-70, 10]; silent items read -70. Measured, never differentiated."""
    lufs = integrated_loudness(x.detach(), sample_rate).to(torch.float64)
    return torch.nan_to_num(lufs, nan=FLOOR_LUFS, neginf=FLOOR_LUFS, posinf=CEIL_LUFS).clamp(FLOOR_LUFS, CEIL_LUFS)


def as_reference(reference: torch.Tensor | float | None, x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """(batch,) float64 reference loudness on x's device: given, or measured from x."""
    if reference is None:
        return reference_lufs(x, sample_rate).to(x.device)
    ref = torch.as_tensor(reference, dtype=torch.float64, device=x.device).detach()
    if ref.dim() == 0:
        ref = ref.expand(x.shape[0])
    if ref.shape != (x.shape[0],):
        raise ValueError(f"reference loudness must be a scalar or ({x.shape[0]},), got {tuple(ref.shape)}")
    if not bool(torch.isfinite(ref).all()):
        raise ValueError("reference loudness must be finite")
    return ref.clamp(FLOOR_LUFS, CEIL_LUFS)
