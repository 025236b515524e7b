"""Clipped peaks: flat runs at the signal's extreme values, reconstructed by constrained
LSAR interpolation (de-clipping).

Detection, per channel: the positive clip level is the channel's maximum, the negative
one its minimum (a DC offset or a gain change after clipping moves them apart); samples
within ``TOLERANCE`` (relative) of either are clipped candidates, and runs of at least
``MIN_RUN`` consecutive ones at one level are clipped runs. Found: at least ``MIN_RUNS``
such runs in the track (then every sample at a clip level is repaired, shorter runs too) (a lone flat top is more likely an intended peak than damage), and the
clip level above ``MIN_LEVEL`` (so silence and fades are never "clipped").

Repair: each run (runs closer than the AR order are treated together) is missing data
re-estimated by least-squares AR interpolation with a model fitted on ``CONTEXT``
unclipped samples either side, under the clipping constraint: every reconstructed sample
must lie beyond the clip level in the run's sign. Constraint violations are fixed at the
clip level and the rest re-solved (active set, up to 4 rounds).
"""
from __future__ import annotations

import numpy as np

from ._common import Finding, ar_fit, lsar_interpolate

TOLERANCE = 1e-4
MIN_RUN = 3
MIN_RUNS = 5
MIN_LEVEL = 0.05
ORDER = 32
CONTEXT = 1024


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def detect_channel(x: np.ndarray) -> dict:
    hi, lo = float(x.max()), float(x.min())
    scale = max(abs(hi), abs(lo), 1e-12)
    tol = TOLERANCE * scale
    runs = []
    for level, mask in ((hi, x >= hi - tol), (lo, x <= lo + tol)):
        if abs(level) < MIN_LEVEL:
            continue
        s, e = _runs(mask)
        runs += [(int(a), int(b), level) for a, b in zip(s, e)]
    runs.sort()
    flat = [r for r in runs if r[1] - r[0] >= MIN_RUN]
    return {"runs": flat, "all_runs": runs, "positive_level": hi, "negative_level": lo,
            "clipped_samples": int(sum(b - a for a, b, _ in runs))}


def repair_channel(x: np.ndarray, runs: list[tuple[int, int, float]]) -> np.ndarray:
    y = np.array(x, dtype=np.float64)
    T = len(y)
    p = ORDER
    clipped = np.zeros(T, dtype=bool)
    level_of = np.zeros(T)
    for s, e, lev in runs:
        clipped[s:e] = True
        level_of[s:e] = lev
    # group runs that are closer than p samples
    groups: list[list[int]] = []
    for s, e, _ in runs:
        if groups and s - groups[-1][1] < p:
            groups[-1][1] = max(groups[-1][1], e)
        else:
            groups.append([s, e])
    for s, e in groups:
        if s < p or e > T - p:
            continue
        lo, hi = max(0, s - CONTEXT), min(T, e + CONTEXT)
        ctx_idx = np.r_[lo:s, e:hi]
        ctx = y[ctx_idx][~clipped[ctx_idx]]
        if len(ctx) < 4 * p:
            continue
        a = ar_fit(ctx - ctx.mean(), p)
        w0, w1 = max(0, s - 2 * p), min(T, e + 2 * p)
        seg = y[w0:w1].copy()
        unknown = clipped[w0:w1].copy()
        levels = level_of[w0:w1]
        for _ in range(4):
            if not unknown.any():
                break
            vals = lsar_interpolate(seg, unknown, a)
            seg[unknown] = vals
            lev = levels[unknown]
            bad = np.where(lev > 0, vals < lev, vals > lev)
            if not bad.any():
                break
            pos = np.flatnonzero(unknown)[bad]
            seg[pos] = levels[pos]
            unknown[pos] = False
        y[w0:w1] = np.where(clipped[w0:w1], seg, y[w0:w1])
    return y.astype(x.dtype)


def declip(x: np.ndarray, sample_rate: int, apply: bool = True) -> tuple[np.ndarray, Finding]:
    info = [detect_channel(ch) for ch in x]
    runs = sum(len(i["runs"]) for i in info)
    samples = sum(i["clipped_samples"] for i in info)
    found = runs >= MIN_RUNS
    do = apply and found
    out = x
    change = {}
    if do:
        out = np.stack([repair_channel(ch, i["all_runs"]) if i["runs"] else ch for ch, i in zip(x, info)])
        change = {"peak_before": float(np.abs(x).max()), "peak_after": float(np.abs(out).max())}
    levels = [max(abs(i["positive_level"]), abs(i["negative_level"])) for i in info]
    measured = {"runs": runs, "clipped_samples": samples,
                "clipped_fraction": samples / max(x.size, 1),
                "clip_level_dbfs": [20 * np.log10(max(l, 1e-12)) for l in levels],
                "longest_run": max((b - a for i in info for a, b, _ in i["runs"]), default=0),
                "found_at_runs": MIN_RUNS}
    if found:
        s = (f"clipping: {runs} flat runs ({samples} samples, {100 * samples / max(x.size, 1):.3f} %) "
             f"at {max(measured['clip_level_dbfs']):.2f} dBFS")
        if do:
            s += f"; reconstructed by constrained AR interpolation (peak now {change['peak_after']:.3f})"
        else:
            s += "; not applied"
        action = "constrained LSAR de-clipping" if do else "none"
    else:
        s = "no clipping" if runs == 0 else f"no clipping ({runs} flat run(s), below the {MIN_RUNS}-run threshold)"
        action = "none"
    return out, Finding("clipping", found, do, s, measured, change, action)
