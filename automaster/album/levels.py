"""The album's gain structure: the loudness each track is mastered to.

``track`` mode: every track to the target (plus its own playlist offset).

``album`` mode (the default): one gain structure for the whole album. Track i is
mastered to ``input_lufs[i] + offset[i] + G``: the differences between the tracks'
input loudness are kept (a quiet interlude stays as much quieter as it was), and the
common gain G is chosen so that the album's integrated loudness (BS.1770 gating over the
whole album) hits the target. The mastering pipeline then normalizes each track to its
planned loudness under the true-peak ceiling; a track whose peaks would pass the ceiling
at its planned level is held there by the chain's true-peak limiter, not turned down
relative to the others. Only when a planned level cannot be reached under the ceiling
(the pipeline's loudness search saturates) does that track end up quieter; a warning
says so.

G is estimated before mastering from the inputs' 100 ms K-weighted energies, shifted by
each track's gain, weighted by its fades and cross-fades (:func:`faded_hops`) and gated
as one album. The estimate aims ``AIM_MARGIN_DB`` above the
target; after assembly the album is measured and trimmed down by a single global gain
(which keeps both the relative levels and the ceiling), so the estimate only has to
err on the loud side. If the album still measures quieter than the target by more than
the tolerance, the caller masters again with the corrected G (at most once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from automaster.metering import RELATIVE_GATE_LU, gated_loudness

AIM_MARGIN_DB = 0.5
TOLERANCE_LU = 0.1
MAX_TRACK_LUFS = -3.0
MIN_TRACK_LUFS = -60.0


@dataclass
class LevelPlan:
    mode: str
    target_lufs: float
    planned_lufs: list[float]   # what each track is mastered to
    album_gain_db: float        # G (album mode), 0 in track mode
    estimated_album_lufs: float  # the album's loudness expected before the trim
    notes: list[str]


def album_loudness_estimate(hops: list[np.ndarray], gains_db: list[float]) -> float:
    """Integrated loudness of tracks played in a row, each scaled by its gain: the 400 ms
    gating blocks of each track's 100 ms K-weighted mean squares (``Meter.hop_energies``)
    gated together."""
    blocks = []
    for h, g in zip(hops, gains_db):
        if h.size >= 4:
            c = np.concatenate([[0.0], np.cumsum(h)])
            blocks.append((c[4:] - c[:-4]) / 4.0 * 10.0 ** (g / 10.0))
        elif h.size:
            blocks.append(np.array([h.mean() * 10.0 ** (g / 10.0)]))
    if not blocks:
        return -math.inf
    return gated_loudness(np.concatenate(blocks), RELATIVE_GATE_LU)


def faded_hops(hops: np.ndarray, hop_s: float, fade_in: float, fade_out: float,
               xfade_in: float = 0.0, xfade_out: float = 0.0) -> np.ndarray:
    """Hop energies weighted by the mean squared gain of the track's fades and cross-fades
    (quarter-sine, as :mod:`automaster.album.assemble`) over each hop."""
    n = hops.size
    if n == 0:
        return hops
    t = (np.arange(n) + 0.5) * hop_s  # hop centres
    dur = n * hop_s
    g2 = np.ones(n)
    for length, rising in ((fade_in, True), (xfade_in, True), (fade_out, False),
                           (xfade_out, False)):
        if length <= 0:
            continue
        u = np.clip((t if rising else dur - t) / length, 0.0, 1.0)
        g2 *= np.sin(0.5 * np.pi * u) ** 2
    return hops * g2


def plan_levels(mode: str, target_lufs: float, input_lufs: list[float], offsets: list[float],
                hops: list[np.ndarray], extra_gain_db: float = 0.0) -> LevelPlan:
    """Planned loudness per track. Silent tracks (non-finite input loudness) get the
    target; the pipeline passes them through unchanged anyway."""
    notes: list[str] = []
    if mode == "track":
        planned = [target_lufs + o for o in offsets]
        est = album_loudness_estimate(
            hops, [(p - L) if math.isfinite(L) else 0.0 for p, L in zip(planned, input_lufs)])
        return LevelPlan(mode, target_lufs, _clamp(planned, notes), 0.0, est, notes)
    if mode != "album":
        raise ValueError(f"unknown loudness mode {mode!r}")
    live = [i for i, L in enumerate(input_lufs) if math.isfinite(L)]
    base = album_loudness_estimate([hops[i] for i in live], [offsets[i] for i in live])
    if not math.isfinite(base):
        planned = [target_lufs] * len(input_lufs)
        return LevelPlan(mode, target_lufs, planned, 0.0, -math.inf, ["the album is silent"])
    gain = target_lufs - base + AIM_MARGIN_DB + extra_gain_db
    planned = [(L + o + gain) if math.isfinite(L) else target_lufs
               for L, o in zip(input_lufs, offsets)]
    return LevelPlan(mode, target_lufs, _clamp(planned, notes), gain,
                     base + gain, notes)


def _clamp(planned: list[float], notes: list[str]) -> list[float]:
    out = []
    for i, p in enumerate(planned):
        q = min(max(p, MIN_TRACK_LUFS), MAX_TRACK_LUFS)
        if q != p:
            notes.append(f"track {i + 1}: planned loudness {p:.1f} LUFS clamped to {q:.1f}")
        out.append(q)
    return out
