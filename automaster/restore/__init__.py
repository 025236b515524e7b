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
from automaster.restore_options import FIXES, check_denoise, check_mono_bass

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


def restore(audio: np.ndarray, sample_rate: int, spec: str | None = "auto",
            denoise: float | None = None, mono_bass_hz: float | None = None) -> Restoration:
    """Restore (channels, samples) float audio; returns a Restoration (float32 audio)."""
    fixes = parse_restore(spec)
    check_denoise(denoise)
    check_mono_bass(mono_bass_hz, sample_rate)
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    label = "auto" if spec is None else str(spec)
    if fixes is None and denoise is None and mono_bass_hz is None:
        return Restoration(x, [], "off")
    findings: list[Finding] = []

    def run(fn, *args, **kwargs):
        """One stage, timed; its finding is kept."""
        t = time.perf_counter()
        y, f = fn(*args, **kwargs)
        f.seconds = time.perf_counter() - t
        findings.append(f)
        return y

    if fixes is not None:
        for name, fn in (("clipping", declip), ("dc", remove_dc), ("hum", remove_hum), ("clicks", remove_clicks)):
            x = run(fn, x, sample_rate, apply=name in fixes)
    if x.shape[0] == 2 and (fixes is not None or mono_bass_hz):
        x = run(fix_polarity, x, sample_rate, apply=fixes is not None and "polarity" in fixes,
                mono_bass_hz=mono_bass_hz)
    if fixes is not None or denoise:
        x = run(_denoise, x, sample_rate, denoise)
    return Restoration(np.ascontiguousarray(x, dtype=np.float32), findings, label)
