"""Fades, cross-fades and concatenation into one album signal, then the true-peak check.

Timeline. Track 1's music starts at sample 0. After each track comes either a gap of
silence or an equal-power cross-fade into the next track. Every track boundary (the
"cut", where the per-track files are split and the CUE sheet's ``INDEX 01`` points) lies
on a CD frame (1/75 s; ``frame_sample``), so the CUE sheet is exact:

- gap > 0: the gap is lengthened by less than one frame so the next track's music starts
  on a frame; the cut is that start. The gap is the next track's pregap (``INDEX 00`` on
  the first frame after the previous music ends) and, in the files, the tail of the
  previous track (so a track played alone starts with its music).
- gap = 0: the tracks are joined without silence and the cut is the frame nearest the
  join (at most half a frame, 6.7 ms, of one track lands in the neighbour's file).
- cross-fade of X s: the overlap is adjusted by less than one frame so its middle lies
  on a frame; the cut sits at that middle.
The album's end is padded with silence to a whole frame.

Gains. Fades are quarter-sine: fade-in sin(pi/2 t), fade-out cos(pi/2 t). A cross-fade
multiplies the outgoing track by cos(theta) and the incoming one by sin(theta), theta
going 0 -> pi/2 across the overlap: cos^2 + sin^2 = 1, so the power of uncorrelated
material stays constant through the crossing, while identical (correlated) material
adds in amplitude to sqrt(2), +3 dB at the middle. Neither dips.

True peak. Each mastered track is already under the ceiling; a cross-fade's sum can go
over it (up to +3 dB on correlated material). Overlaps whose true peak exceeds the
ceiling go through the chain's true-peak limiter (``dsp.limiter_gain``) locally, with
the gain ramped back to exactly 1 outside. Every file is also checked alone (zeros
outside it): cutting inside music makes a step whose interpolated overshoot can pass
the ceiling; there a short smooth dip (Hann-shaped, 20 ms) lowers the signal around
the cut. :func:`verify` checks the whole album and every track file with the 4x
interpolator of ``scipy.signal.resample_poly`` (``automaster.metering``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from automaster.metering import TP_AFTER, TP_BEFORE, TP_CONTEXT, tp_taps

TP_HALF = max(TP_BEFORE, TP_AFTER)  # samples either side that can reach a centre through the interpolator

FRAMES_PER_SECOND = 75
LIMITER_MARGIN_DB = 0.07  # as the pipeline: the limiter aims this far under the ceiling
TP_MARGIN_DB = 0.02       # accepted true peak: ceiling - this
LIMITER_RELEASE_MS = 80.0
LIMITER_LOOKAHEAD_MS = 2.0
LIMIT_CONTEXT_S = 0.05    # audio either side of an overlap given to the limiter
RAMP_S = 0.4              # the limiter's gain returns to 1 over this span after an overlap
DIP_HALF_S = 0.010


def frame_sample(frame: int, sample_rate: int) -> int:
    """Album sample where CD frame ``frame`` begins (exact when sample_rate % 75 == 0)."""
    return int(round(frame * sample_rate / FRAMES_PER_SECOND))


def frame_at_or_after(sample: int, sample_rate: int) -> int:
    f = int(math.ceil(sample * FRAMES_PER_SECOND / sample_rate - 1e-9))
    while frame_sample(f, sample_rate) < sample:
        f += 1
    return f


def nearest_frame(sample: float, sample_rate: int) -> int:
    return int(round(sample * FRAMES_PER_SECOND / sample_rate))


@dataclass
class Transition:
    """What follows a track: ``gap`` seconds of silence or a ``crossfade`` of that length."""

    gap: float = 0.0
    crossfade: float = 0.0


@dataclass
class Placement:
    """Where one track sits in the album (all in album samples)."""

    music_start: int
    music_end: int
    cut: int               # file start, INDEX 01
    end: int = 0           # file end (the next cut, or the album end)
    pregap: int | None = None  # INDEX 00 (start of the silence before the music)
    fade_in: int = 0
    fade_out: int = 0
    xfade_in: int = 0      # overlap with the previous track
    xfade_out: int = 0     # overlap with the next track


@dataclass
class Layout:
    sample_rate: int
    frames: int
    tracks: list[Placement] = field(default_factory=list)


def plan_layout(lengths: list[int], sample_rate: int, transitions: list[Transition],
                fades: list[tuple[float, float]]) -> Layout:
    """Positions of every track. ``transitions[i]`` follows track i (the last is ignored);
    ``fades[i]`` = (fade-in s, fade-out s). Raises ValueError on impossible lengths (the
    caller checks user input before, with file names)."""
    sr = sample_rate
    places: list[Placement] = []
    pos, cut, xin = 0, 0, 0
    pregap: int | None = None
    for i, n in enumerate(lengths):
        fi, fo = (int(round(v * sr)) for v in fades[i])
        if fi > n or fo > n:
            raise ValueError(f"track {i + 1}: a fade is longer than the track")
        p = Placement(pos, pos + n, cut, pregap=pregap, fade_in=fi, fade_out=fo, xfade_in=xin)
        places.append(p)
        if i == len(lengths) - 1:
            break
        t = transitions[i]
        end = pos + n
        pregap = None
        if t.crossfade > 0:
            x = int(round(t.crossfade * sr))
            c = frame_sample(nearest_frame(end - x / 2.0, sr), sr)
            x = 2 * (end - c)
            if x < 2 or x > n or x > lengths[i + 1]:
                raise ValueError(f"track {i + 1}: a cross-fade of {t.crossfade:g} s does not fit")
            p.xfade_out = x
            pos, cut, xin = end - x, c, x
        elif t.gap > 0:
            start = end + int(round(t.gap * sr))
            start = frame_sample(frame_at_or_after(start, sr), sr)
            first_silent_frame = frame_sample(frame_at_or_after(end, sr), sr)
            pregap = first_silent_frame if first_silent_frame < start else None
            pos, cut, xin = start, start, 0
        else:
            pos, xin = end, 0
            cut = max(frame_sample(nearest_frame(end, sr), sr), p.cut + 1)
    total = frame_sample(frame_at_or_after(places[-1].music_end, sr), sr)
    for a, b in zip(places, places[1:]):
        a.end = b.cut
    places[-1].end = total
    return Layout(sr, total, places)


def _quarter_sine(n: int, rising: bool) -> np.ndarray:
    """n gains on a quarter period, sampled at the middle of each step: sin (rising) or cos."""
    theta = (np.arange(n, dtype=np.float64) + 0.5) * (0.5 * math.pi / n)
    return (np.sin(theta) if rising else np.cos(theta)).astype(np.float32)


def assemble(tracks: list[np.ndarray], layout: Layout) -> np.ndarray:
    """The album (channels, layout.frames) float32 from the mastered tracks, with fades
    and cross-fades applied (see the module doc)."""
    ch = tracks[0].shape[0]
    album = np.zeros((ch, layout.frames), dtype=np.float32)
    for y, p in zip(tracks, layout.tracks):
        z = np.array(y, dtype=np.float32, copy=True)
        n = z.shape[1]
        if p.fade_in:
            z[:, :p.fade_in] *= _quarter_sine(p.fade_in, True)
        if p.fade_out:
            z[:, n - p.fade_out:] *= _quarter_sine(p.fade_out, False)
        if p.xfade_in:
            z[:, :p.xfade_in] *= _quarter_sine(p.xfade_in, True)
        if p.xfade_out:
            z[:, n - p.xfade_out:] *= _quarter_sine(p.xfade_out, False)
        album[:, p.music_start:p.music_end] += z
    return album


# ---------------------------------------------------------------------------- true peak
def interpolated_peak(x: np.ndarray, lo: int, hi: int, left_zero: int | None = None,
                      right_zero: int | None = None) -> float:
    """Largest |4x interpolated value| (linear) for centres [lo, hi) of x (channels, n),
    the shared true-peak interpolator (dsp/_bs1770.py). Samples before ``left_zero`` or from
    ``right_zero`` on read as zero (a file cut there, played alone); outside x too."""
    lo, hi = max(lo, 0), min(hi, x.shape[1])
    if hi <= lo:
        return 0.0
    a, b = lo - TP_BEFORE, hi + TP_AFTER
    seg = np.zeros((x.shape[0], b - a), dtype=np.float64)
    s0, s1 = max(a, 0), min(b, x.shape[1])
    if left_zero is not None:
        s0 = max(s0, left_zero)
    if right_zero is not None:
        s1 = min(s1, right_zero)
    if s1 > s0:
        seg[:, s0 - a:s1 - a] = x[:, s0:s1]
    taps = tp_taps()  # (TP_CONTEXT + 1, 4), row j <-> x[n - TP_BEFORE + j]
    best = 0.0
    for row in seg:
        win = np.lib.stride_tricks.sliding_window_view(row, TP_CONTEXT + 1)
        best = max(best, float(np.abs(win @ taps).max()))
    return best


def _db(v: float) -> float:
    return 20.0 * math.log10(v) if v > 0 else -math.inf


def limit_overlaps(album: np.ndarray, layout: Layout, ceiling_dbtp: float) -> list[dict]:
    """Run the true-peak limiter on cross-fade overlaps that exceed the ceiling (in place).
    Returns one record per overlap that needed it."""
    sr = layout.sample_rate
    limit = 10.0 ** ((ceiling_dbtp - TP_MARGIN_DB) / 20.0)
    done = []
    for i, p in enumerate(layout.tracks[:-1]):
        if not p.xfade_out:
            continue
        a, b = p.music_end - p.xfade_out, p.music_end
        peak = interpolated_peak(album, a, b)
        if peak <= limit:
            continue
        aim = ceiling_dbtp - LIMITER_MARGIN_DB
        for _ in range(4):
            _limit_region(album, a, b, sr, aim)
            after = interpolated_peak(album, a - int(RAMP_S * sr), b + int(RAMP_S * sr))
            if after <= limit:
                break
            aim -= _db(after / limit) + 0.01
        done.append({"after_track": i + 1, "peak_before_dbtp": round(_db(peak), 3),
                     "peak_after_dbtp": round(_db(after), 3), "limiter_ceiling_dbtp": round(aim, 3)})
    return done


def _limit_region(album: np.ndarray, a: int, b: int, sr: int, ceiling_dbtp: float) -> None:
    """Limiter gain on album[a - ctx, b + ramp); the gain is ramped to exactly 1 over the
    span after the overlap (where the signal is one track, already under the ceiling)."""
    import torch

    from dsp import limiter_gain

    ctx, ramp = int(LIMIT_CONTEXT_S * sr), int(RAMP_S * sr)
    s, e = max(0, a - ctx), min(album.shape[1], b + ramp)
    seg = torch.from_numpy(np.ascontiguousarray(album[:, s:e]))[None]
    rel = torch.tensor([LIMITER_RELEASE_MS], dtype=seg.dtype)
    g = limiter_gain(seg, ceiling_dbtp, rel, sr, LIMITER_LOOKAHEAD_MS)[0].double().numpy()
    g = np.minimum(g, 1.0)
    # after the overlap, let the gain rise to 1 linearly by the end of the segment
    tail = e - b
    if tail > 0:
        w = np.linspace(0.0, 1.0, tail)
        g[b - s:] = np.maximum(g[b - s:], g[b - s:] + (1.0 - g[b - s:]) * w)
    # before the overlap: the look-ahead starts the gain early; the context starts at 1
    head = a - s
    if head > 0:
        w = np.linspace(1.0, 0.0, head)
        g[:head] = np.maximum(g[:head], g[:head] + (1.0 - g[:head]) * w)
    album[:, s:e] *= g.astype(np.float32)[None, :]


def _dip(album: np.ndarray, centre: int, half: int, depth_db: float) -> None:
    s, e = max(0, centre - half), min(album.shape[1], centre + half)
    w = np.hanning(2 * half + 2)[1:-1][s - (centre - half):e - (centre - half)]
    g = 1.0 - (1.0 - 10.0 ** (-depth_db / 20.0)) * w
    album[:, s:e] *= g.astype(np.float32)[None, :]


def fix_cut_edges(album: np.ndarray, layout: Layout, ceiling_dbtp: float) -> list[dict]:
    """Each file alone (zeros outside it) must stay under the ceiling at its edges; where a
    cut inside music overshoots, dip the signal smoothly around the cut (in place)."""
    sr = layout.sample_rate
    limit = 10.0 ** ((ceiling_dbtp - TP_MARGIN_DB) / 20.0)
    half = int(DIP_HALF_S * sr)
    done = []
    for k, p in enumerate(layout.tracks[1:], 1):
        c = p.cut
        total = 0.0
        for _ in range(6):
            left = interpolated_peak(album, c - TP_HALF - 1, c, right_zero=c)
            right = interpolated_peak(album, c, c + TP_HALF + 1, left_zero=c)
            cont = interpolated_peak(album, c - half, c + half)
            worst = max(left, right, cont)
            if worst <= limit:
                break
            depth = _db(worst / limit) + 0.01
            _dip(album, c, half, depth)
            total += depth
        if total:
            done.append({"cut_before_track": k + 1, "dip_db": round(total, 3)})
    return done
