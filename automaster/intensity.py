"""``--intensity``: how far the master moves from the untouched mix, in physical amounts.

A setting is scaled in what it *does*, not in normalized parameter space (where a blend
of two settings can pull apart moves that cancel): every EQ gain, the high-pass and
mono-bass cutoffs (0 Hz is "off"), each ratio minus 1, the saturation amount and the
width minus 1 are multiplied by the intensity; centre frequencies, Qs, crossovers,
thresholds and times stay where they were predicted. At 0 the chain is the identity; the
EQ's effect in dB grows linearly with the intensity.
"""

from __future__ import annotations

from typing import Any

SCALED_SUFFIXES = ("gain_db", ".ratio", ".amount", "width.width", "highpass.cutoff_hz", "mono_below_hz")


def is_scaled(name: str) -> bool:
    """True when ``name`` is a parameter whose distance from neutral scales with intensity."""
    return name.endswith(SCALED_SUFFIXES)


def scale_settings(settings: dict[str, float], identity: dict[str, float], intensity: float) -> dict[str, float]:
    """Physical settings -> the same with every scaled parameter at
    neutral + intensity * (value - neutral), neutral being the chain's identity value."""
    return {name: identity[name] + intensity * (v - identity[name]) if is_scaled(name) and name in identity else v
            for name, v in settings.items()}


def scale_setting(chain: Any, p: Any, intensity: float) -> Any:
    """Normalized (1, n) setting -> the setting at ``intensity``, normalized, same device."""
    identity = chain.denormalize(chain.identity_params(1))[0]
    rows = [scale_settings(s, identity, float(intensity)) for s in chain.denormalize(p.detach().cpu())]
    clamped = [{n: min(max(v, chain.ranges[n].low), chain.ranges[n].high) for n, v in r.items()} for r in rows]
    return chain.normalize(clamped).to(p.device)
