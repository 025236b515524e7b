"""Loudness and limiter: one global gain, then the chain's true-peak limiter, in blocks with
lead-in, until the limited output is within dsp.loudness_search.LOUDNESS_TOLERANCE_LU
(0.1 LU) of the target under the ceiling.

1. Loudness passes (:func:`_passes_to_target`): the loudness of the limited output is
   measured and the gain re-aimed by :class:`dsp.loudness_search.GainSearch`, the same
   search the chain uses in training. If the target is out of reach with
   the predicted limiter release, the release is shortened to 40 ms once and the search
   starts again (:func:`_reach_loudness`).
2. Verification (:func:`verify`): the pass closest to the target is checked with the
   streaming 4x true-peak meter over every output sample (the same interpolator as the
   limiter's, dsp/_bs1770.py, which only estimates peaks near the ceiling). Where it reads
   above the ceiling, the limiter's own ceiling is lowered and step 1 resumes; a tiny global
   trim is the last resort (:func:`true_peak_trim`).

Every level reported is that of a pass actually rendered and measured.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from automaster.metering import BackgroundMeter, Measurement, Meter
from automaster.pipeline.job import Job, Progress, block_frames, blocks
from automaster.pipeline.render import FloatStore
from automaster.pipeline.traces import TraceReducer
from dsp.loudness_search import GainSearch, run_search

MAX_LIMITER_PASSES = 8
MAX_EXTRA_DB = 24.0  # the gain search goes at most this far above its first estimate
TP_MARGIN_DB = 0.02
LIMITER_MARGIN_DB = 0.07  # the limiter aims this far under the ceiling: its interpolator and
# the independent 4x measurement (resample_poly) differ by up to ~0.06 dB on bright material
# (tests/test_dsp_dynamics.py); the verification pass lowers the aim if that is not enough
TAIL_SECONDS = 0.05
FAST_RELEASE_MS = 40.0  # limiter release used when the predicted one cannot reach the target
HELD_GAIN = np.float32(10.0 ** (-0.05 / 20.0))  # limiter gain below this = "held down"


@dataclass
class LimiterPass:
    """One limiter pass: its gain, limiter ceiling, measured loudness and what to keep."""

    gain_db: float
    ceiling: float | None
    level: float
    slope: float  # fraction of output energy the limiter left alone (d loudness / d gain)
    meter: Meter
    cache: list | None
    trace: TraceReducer | None
    tp_db: float = math.nan
    emitted: bool = False  # its blocks already went to the output
    measurement: Measurement | None = None
    spectrum: tuple = (np.zeros(0), np.zeros(0))


@dataclass
class Limiting:
    """What the limiter passes run on; ``release`` may be shortened by the search."""

    chain: object
    store: FloatStore
    release: float
    job: Job
    device: object
    progress: Progress
    hold: object = None  # the limiter's peak hold (1, frames) of the whole store at unit gain

    @property
    def sample_rate(self) -> int:
        return int(self.chain.sample_rate)

    def blocks(self, gain_db: float, ceiling: float | None):
        return limited(self.chain, self.store, gain_db, self.release, ceiling, self.job,
                       self.device, self.sample_rate, self.hold)


@dataclass
class Limited:
    """Outcome of :func:`normalize_and_limit`: the accepted pass and the global trim."""

    best: LimiterPass
    trim_db: float
    passes: int


def _debug(message: str) -> None:
    if os.environ.get("AUTOMASTER_DEBUG_PASSES"):
        print(f"automaster: debug: {message}", file=sys.stderr)


def limiter_gain(chain, y, release_ms: float, ceiling_dbtp: float):
    """Linear gain (1, n) of the chain's true-peak limiter for y (1, channels, n)."""
    import torch

    from dsp import limiter_gain as dsp_limiter_gain

    limiter = chain.stages["limiter"]
    rel = torch.tensor([float(release_ms)], dtype=y.dtype, device=y.device)
    return dsp_limiter_gain(y, ceiling_dbtp, rel, chain.sample_rate, limiter.lookahead_ms)


def limited(chain, store: FloatStore, gain_db: float, release_ms: float,
            ceiling: float | None, job: Job, device, sample_rate: int, hold=None):
    """Yield (start, output block (channels, n) float32, limiter gain (n,) linear float32).

    With ``hold`` (the peak hold of the whole store at unit gain, which scales with the
    gain) the limiter's gain is computed for the whole track at once from it: no
    envelope per pass, and no block edges (the blocks' lead-in approximates this)."""
    import torch

    block = block_frames(job, store.frames)
    if hold is not None and ceiling is not None:
        k = 10.0 ** (gain_db / 20.0)
        with torch.no_grad():
            limiter = chain.stages["limiter"]
            c = torch.tensor([10.0 ** (ceiling / 20.0)], dtype=hold.dtype, device=hold.device)
            rel = torch.tensor([float(release_ms)], dtype=hold.dtype, device=hold.device)
            gain = limiter.gain_from_hold(hold * k, c, rel)[0].to(torch.float32).cpu().numpy()
        kf = np.float32(k)
        for s, e in blocks(store.frames, block):
            g = gain[s:e]
            yield s, store.read(s, e) * (kf * g)[None, :], g
        return
    lead = int(min(job.lead_seconds, 1.0) * sample_rate)
    tail = int(TAIL_SECONDS * sample_rate) + 32
    k = np.float32(10.0 ** (gain_db / 20.0))
    with torch.no_grad():
        for s, e in blocks(store.frames, block):
            a, b = max(0, s - lead), min(store.frames, e + tail)
            y = store.read(a, b) * k
            if ceiling is None:
                yield s, y[:, s - a:e - a], np.ones(e - s, dtype=np.float32)
                continue
            yt = torch.from_numpy(np.ascontiguousarray(y))[None].to(device)
            g = limiter_gain(chain, yt, release_ms, ceiling)[0, s - a:e - a]
            g = g.to(torch.float32).cpu().numpy()
            out = y[:, s - a:e - a] * g[None, :]
            yield s, out, g


def limiter_pass(ctx: Limiting, gain_db: float, ceiling: float | None, keep: bool, tp: bool,
                 emit: Callable[[np.ndarray], None] | None = None) -> LimiterPass:
    """Gain + limiter over the whole store, measuring loudness (and the true peak if ``tp``);
    blocks also go to ``emit`` when given (speculative writing of a likely final pass).

    With a memory cache the true peak is always measured: on the second core, in parallel,
    it is nearly free, and an accepted pass then needs no separate check."""
    sr, frames = ctx.sample_rate, ctx.store.frames
    tp = tp or keep
    bg = BackgroundMeter(Meter(sr, ctx.store.channels, true_peak=tp, spectrum=tp and ctx.job.detail))
    trace = TraceReducer(frames, sr) if ctx.job.detail else None
    cache: list | None = [] if keep else None
    limited_energy = 0.0
    ctx.progress.stage("limit", frames)
    for s, out, g in ctx.blocks(gain_db, ceiling):
        bg.process(out)
        # only the samples the limiter leaves alone get louder with more gain
        held = out[:, g <= HELD_GAIN]
        limited_energy += float(np.einsum("ij,ij->", held, held, dtype=np.float64))
        if cache is not None:
            cache.append(out)
        if emit is not None:
            emit(out)
        if trace is not None:
            trace.add(s, 20.0 * np.log10(np.maximum(g, 1e-6)))
        ctx.progress.advance(out.shape[1])
    meter = bg.join()
    level = meter.integrated_lufs()
    _debug(f"pass gain {gain_db:.3f} ceiling {ceiling} -> {level:.3f} LUFS")
    total = meter.energy
    slope = 1.0 - limited_energy / total if total > 0 else 1.0
    p = LimiterPass(gain_db, ceiling, level, slope, meter, cache, trace)
    if tp:
        p.measurement = meter.result()
        p.tp_db = p.measurement.true_peak_dbtp
        p.spectrum = meter.spectrum()
    return p


def verify(p: LimiterPass, ctx: Limiting,
           emit: Callable[[np.ndarray], None] | None = None) -> LimiterPass:
    """Add the true peak (and report spectrum) to a loudness pass. Without a cached output
    the pass is re-run, writing to ``emit`` on the way (the caller rewinds if rejected)."""
    if p.measurement is not None:
        return p  # measured during the pass
    q = limiter_pass(ctx, p.gain_db, p.ceiling, False, tp=True, emit=emit)
    q.emitted = emit is not None
    return q


def _passes_to_target(ctx: Limiting, search: GainSearch, lim_ceiling: float | None, passes: int
                      ) -> tuple[LimiterPass, LimiterPass, int]:
    """Loudness passes (no true peak: that costs as much as the rest of a pass) at the
    gains ``search`` asks for (:func:`dsp.loudness_search.run_search`), until one is within
    the tolerance, the passes run out, or the target is out of reach. Returns (the pass
    closest to the target, the last pass, the pass count)."""
    keep = ctx.store.in_memory  # cache the last pass when it fits in memory
    rendered: list[LimiterPass] = []
    first = search.passes

    def render(gain_db):
        cur = limiter_pass(ctx, float(gain_db[0]), lim_ceiling, keep, tp=False)
        rendered.append(cur)
        return cur.level, cur.slope

    # without a ceiling the first pass is a plain gain, exact by construction
    budget = 1 if ctx.job.ceiling_dbtp is None else MAX_LIMITER_PASSES - passes
    run_search(search, render, budget)
    return rendered[int(search.best_pass[0]) - first], rendered[-1], passes + len(rendered)


def _reach_loudness(ctx: Limiting, search: GainSearch, lim_ceiling: float | None,
                    passes: int, settings: dict[str, float]
                    ) -> tuple[LimiterPass, GainSearch, int]:
    """:func:`_passes_to_target`; when the target is out of reach, once more with the
    limiter's release shortened to FAST_RELEASE_MS (a slow release caps the loudness it
    can reach), else a warning. Returns (best pass, the search in use, the pass count)."""
    target, ceiling, job = float(search.target[0]), ctx.job.ceiling_dbtp, ctx.job
    while True:
        best, last, passes = _passes_to_target(ctx, search, lim_ceiling, passes)
        if not bool(search.out_of_reach[0]):
            return best, search, passes
        # (a setting read back from physical units may hold 40.0000001 ms: not "40 to 40")
        if ctx.release > FAST_RELEASE_MS + 0.5:
            job.warnings.append(
                f"the limiter's release was shortened from {ctx.release:.0f} to {FAST_RELEASE_MS:.0f} ms "
                f"to reach {target:.1f} LUFS under the {round(ceiling, 2):g} dBTP ceiling")
            ctx.release = FAST_RELEASE_MS
            settings["limiter.release_ms"] = ctx.release
            search = GainSearch(target, last.gain_db, MAX_EXTRA_DB)
            passes = 0
            continue
        job.warnings.append(
            f"the target {target:.1f} LUFS is not reachable under the {round(ceiling, 2):g} "
            f"dBTP ceiling with this setting; the master is at {last.level:.1f} LUFS")
        return best, search, passes


def true_peak_excess(p: LimiterPass, ceiling: float | None) -> float:
    """dB by which a verified pass's true peak passes the ceiling (less the margin)."""
    return 0.0 if ceiling is None else max(0.0, p.tp_db - (ceiling - TP_MARGIN_DB))


def true_peak_trim(p: LimiterPass, ceiling: float | None) -> float:
    """The last resort: a small global trim (dB, <= 0) where the true peak is still over."""
    if ceiling is not None and p.tp_db > ceiling - TP_MARGIN_DB:
        return ceiling - TP_MARGIN_DB - p.tp_db
    return 0.0


def estimated_gain(ctx: Limiting, lim_ceiling: float, target: float, unlimited_db: float) -> float:
    """Where the exact passes start: the chain's loudness estimate for the limited output
    (:meth:`dsp.MasteringChain.estimate_gain`: the limiter's peak envelope and the
    K-weighted power computed once, a cheap limiter gain per step), instead of the gain
    that would reach the target without limiting, from which the first pass falls short
    by what the limiter takes and the second, stepping on a slope estimate, often
    overshoots (3 exact passes per track measured in an album). Needs the pre-limiter
    render in memory; ``unlimited_db`` when the estimate is not usable."""
    import torch

    from dsp.limiter import limiter_envelope

    y = torch.from_numpy(ctx.store.read(0, ctx.store.frames))[None].to(ctx.device)
    one = lambda v: torch.tensor([float(v)], dtype=y.dtype, device=y.device)  # noqa: E731
    with torch.no_grad():
        # the envelope exact wherever any pass could limit: up to the largest gain the
        # search may use, down to a ceiling 12 dB under this one (a verification lowers it
        # by hundredths of a dB, the codec loop by at most 6 dB in all, reusing the hold
        # through Job.prelimiter); shared by the estimate and every exact pass
        if ctx.hold is None:
            floor = 10.0 ** ((lim_ceiling - 12.0 - (unlimited_db + MAX_EXTRA_DB)) / 20.0)
            ctx.hold = ctx.chain.stages["limiter"].hold(limiter_envelope(y, one(floor)))
        est = ctx.chain.estimate_gain(y, one(ctx.release), one(lim_ceiling), one(target), ctx.hold)
    g = float(est.rendered_gain[0])
    _debug(f"estimate gain {g:.3f} (no limiting: {unlimited_db:.3f})")
    return g if math.isfinite(g) and g >= unlimited_db - 1e-6 else unlimited_db


def normalize_and_limit(ctx: Limiting, pre_lufs: float, settings: dict[str, float],
                        emit: Callable[[np.ndarray], None],
                        rewind: Callable[[], None] | None) -> Limited:
    """Reach job.target_lufs under job.ceiling_dbtp from the pre-limiter render in
    ``ctx.store`` (loudness ``pre_lufs``). A pass being verified without a cache is written
    to ``emit`` on the way when ``rewind`` can take it back."""
    target, ceiling = float(ctx.job.target_lufs), ctx.job.ceiling_dbtp
    lim_ceiling = None if ceiling is None else ceiling - LIMITER_MARGIN_DB
    first = target - pre_lufs
    if lim_ceiling is not None and ctx.store.in_memory:
        first = estimated_gain(ctx, lim_ceiling, target, first)
    search = GainSearch(target, first, target - pre_lufs + MAX_EXTRA_DB - first)
    passes = 0
    while True:
        best, search, passes = _reach_loudness(ctx, search, lim_ceiling, passes, settings)
        # verify the best pass against the independent 4x true-peak measurement; the
        # limiter holds its own interpolator's peaks, which can read a little lower
        best = verify(best, ctx, emit if rewind is not None else None)
        excess = true_peak_excess(best, ceiling)
        _debug(f"verify gain {best.gain_db:.3f} ceiling {best.ceiling} -> "
               f"{best.level:.3f} LUFS, TP {best.tp_db:.3f}")
        if excess == 0.0 or passes >= MAX_LIMITER_PASSES:
            return Limited(best, true_peak_trim(best, ceiling), passes)
        if best.emitted:
            rewind()
        lim_ceiling = best.ceiling - excess - 0.005
        search.lowered(excess + 0.005)  # and resumes from the best pass's gain
