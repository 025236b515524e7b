"""The restoration options (``--restore``, ``--denoise``, ``--mono-bass``), checked without
importing numpy or scipy, so the command line rejects a bad value at once.

The restoration itself is :mod:`automaster.restore` (whose ``FIXES`` this list must equal;
tests/test_restore_cli.py checks it) and its place in the pipeline is
:mod:`automaster.pipeline.restoration`.
"""

from __future__ import annotations

import math
from typing import Any

FIXES = ("dc", "hum", "clicks", "clipping", "polarity")
MONO_BASS_HZ = (20.0, 500.0)  # --mono-bass range (and at most a quarter of the sample rate)


def normalize_restore(spec: Any, name: str = "--restore") -> str:
    """'auto', 'off' or a comma list of known fixes (lower case, no spaces, in the given
    order); ValueError with a one-line message otherwise."""
    if spec is None:
        return "auto"
    if not isinstance(spec, str):
        raise ValueError(f"{name} must be auto, off or a comma list of {','.join(FIXES)}, "
                         f"got {spec!r}")
    s = spec.strip().lower()
    if s in ("auto", "off"):
        return s
    if s == "none":
        return "off"
    names = [n.strip() for n in s.split(",") if n.strip()]
    bad = [n for n in names if n not in FIXES]
    if bad or not names:
        what = f"unknown fix {', '.join(repr(n) for n in bad)}" if bad else f"empty value {spec!r}"
        raise ValueError(f"{name}: {what}; use auto, off or a comma list of {','.join(FIXES)}")
    return ",".join(dict.fromkeys(names))


def check_denoise(amount: Any, name: str = "--denoise") -> float | None:
    if amount is None:
        return None
    try:
        v = float(amount)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {amount!r}") from None
    if isinstance(amount, bool) or not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be between 0 and 1, got {amount!r}")
    return v


def check_mono_bass(hz: Any, sample_rate: int | None = None,
                    name: str = "--mono-bass") -> float | None:
    if hz is None:
        return None
    lo, hi = MONO_BASS_HZ
    if sample_rate:
        hi = min(hi, sample_rate / 4.0)
    try:
        v = float(hz)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a frequency in Hz between {lo:g} and {hi:g}, "
                         f"got {hz!r}") from None
    if isinstance(hz, bool) or not (math.isfinite(v) and lo <= v <= hi):
        raise ValueError(f"{name} must be between {lo:g} and {hi:g} Hz, got {hz!r}")
    return v


def check_restore_options(restore: Any, denoise: Any, mono_bass_hz: Any,
                          sample_rate: int | None = None, cli: bool = True
                          ) -> tuple[str, float | None, float | None]:
    """(restore, denoise, mono_bass_hz) normalized; ValueError naming the bad option (CLI
    spelling with ``cli``, the keyword argument's otherwise)."""
    names = ("--restore", "--denoise", "--mono-bass") if cli else \
        ("restore", "denoise", "mono_bass_hz")
    return (normalize_restore(restore, names[0]), check_denoise(denoise, names[1]),
            check_mono_bass(mono_bass_hz, sample_rate, names[2]))
