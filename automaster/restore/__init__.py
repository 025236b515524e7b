"""Restoration before the mastering chain (issue #10 section 1).

``restore(audio, sample_rate, spec="auto", denoise=None, mono_bass_hz=None)`` runs, in
this order: clipping (before anything moves the flat tops), DC/subsonic, hum, clicks,
polarity (+ optional mono bass), noise. Each stage measures its problem and, when it is
selected and found, fixes it; every stage returns a :class:`Finding`.

spec: "auto" (every fix where its detector is confident; DC/subsonic always), "off"
(nothing, not even measured), or a comma list of fix names from :data:`FIXES`
(only those are applied; the others are still measured and reported). Noise reduction is
never part of "auto": it runs only with ``denoise`` (0..1).

How often auto fires on clean music: :func:`automaster.restore.falsealarm.false_alarm_rate`
runs it over held-out corpus excerpts (and measures the spectrum change it makes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ._common import Finding
from .clicks import remove_clicks
from .clipping import declip
from .dc import remove_dc
from .hum import remove_hum
from .noise import denoise as _denoise
from .polarity import fix_polarity

FIXES = ("dc", "hum", "clicks", "clipping", "polarity")

__all__ = ["FIXES", "Finding", "Restoration", "parse_restore", "restore"]


@dataclass
class Restoration:
    audio: np.ndarray
    findings: list[Finding] = field(default_factory=list)
    spec: str = "auto"

    @property
    def changed(self) -> bool:
        return any(f.applied for f in self.findings)

    def to_dict(self) -> dict:
        return {"mode": self.spec, "findings": [f.to_dict() for f in self.findings]}

    def lines(self) -> list[str]:
        return [f"{f.problem}: {f.summary}" for f in self.findings]


def parse_restore(spec: str | None) -> frozenset[str] | None:
    """'auto' -> all fixes, 'off' -> None, 'dc,hum' -> those. Unknown names: ValueError
    with a one-line message."""
    if spec is None:
        return frozenset(FIXES)
    s = str(spec).strip().lower()
    if s == "auto":
        return frozenset(FIXES)
    if s in ("off", "none"):
        return None
    names = [n.strip() for n in s.split(",") if n.strip()]
    bad = [n for n in names if n not in FIXES]
    if bad or not names:
        raise ValueError(f"--restore: unknown fix {', '.join(bad) or repr(spec)}; use auto, off "
                         f"or a comma list of {','.join(FIXES)}")
    return frozenset(names)


def _check_options(denoise: float | None, mono_bass_hz: float | None, sample_rate: int) -> None:
    if denoise is not None and not (0.0 <= float(denoise) <= 1.0):
        raise ValueError(f"--denoise must be between 0 and 1, got {denoise}")
    if mono_bass_hz is not None and not (20.0 <= float(mono_bass_hz) <= min(500.0, sample_rate / 4)):
        raise ValueError(f"--mono-bass must be between 20 and 500 Hz, got {mono_bass_hz}")


def restore(audio: np.ndarray, sample_rate: int, spec: str | None = "auto",
            denoise: float | None = None, mono_bass_hz: float | None = None) -> Restoration:
    """Restore (channels, samples) float audio; returns a Restoration (float32 audio)."""
    fixes = parse_restore(spec)
    _check_options(denoise, mono_bass_hz, sample_rate)
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    label = "auto" if spec is None else str(spec)
    if fixes is None and denoise is None and mono_bass_hz is None:
        return Restoration(x, [], "off")
    findings: list[Finding] = []
    stages = [("clipping", declip), ("dc", remove_dc), ("hum", remove_hum), ("clicks", remove_clicks)]
    for name, fn in stages:
        if fixes is None:
            break
        t = time.perf_counter()
        x, f = fn(x, sample_rate, apply=name in fixes)
        f.seconds = time.perf_counter() - t
        findings.append(f)
    if x.shape[0] == 2 and (fixes is not None or mono_bass_hz):
        t = time.perf_counter()
        x, f = fix_polarity(x, sample_rate, apply=fixes is not None and "polarity" in fixes,
                            mono_bass_hz=mono_bass_hz)
        f.seconds = time.perf_counter() - t
        findings.append(f)
    if fixes is not None or denoise:
        t = time.perf_counter()
        x, f = _denoise(x, sample_rate, denoise)
        f.seconds = time.perf_counter() - t
        findings.append(f)
    return Restoration(np.ascontiguousarray(x, dtype=np.float32), findings, label)
