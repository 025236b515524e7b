"""The album, step by step: load, analyse, sequence, predict, plan levels, master each
track, assemble, verify. Writing the files is :mod:`automaster.album.output`.

Every track goes through the ordinary mastering pipeline
(:func:`automaster.pipeline.master_source`) with explicit settings and its own planned
loudness; nothing here depends on the chain's parameter names. Settings are handled as
normalized vectors (``chain.normalize`` / ``chain.denormalize``) when ``cohesion`` pulls
them toward the album's mean.

Memory: the inputs (at the album's rate) and the mastered tracks are held in memory
(float32), then the album; about 3 x 32 MB per stereo minute at 44.1 kHz at the peak
(a 40-minute album: about 1.3 GB).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from automaster.album.assemble import (Layout, Transition, assemble, fix_cut_edges,
                                       limit_overlaps, plan_layout, TP_MARGIN_DB)
from automaster.album.levels import TOLERANCE_LU, LevelPlan, faded_hops, plan_levels
from automaster.album.playlist import Playlist, title_from_name, unique_titles
from automaster.album.sequence import Features, analyze, keep_order, propose_order
from automaster.errors import InputError, UserError

FORMATS = {"wav": ".wav", "flac": ".flac", "aiff": ".aiff"}


@dataclass
class AlbumOptions:
    target_lufs: float = -14.0
    ceiling_dbtp: float = -1.0
    loudness: str = "album"          # album | track
    cohesion: float = 0.0            # 0..1
    sequence: str = "keep"           # keep | auto
    gap: float = 2.0                 # default gap after each track, s
    crossfade: float = 0.0           # default cross-fade, s (replaces the gap when > 0)
    fade_in: float = 0.0
    fade_out: float = 0.0
    intensity: float = 1.0
    model: Any = None
    device: Any = "auto"
    sample_rate: int | None = None
    downmix: bool = False
    format: str = "wav"
    bit_depth: str | None = None
    threads: int | None = 1
    restore: str = "auto"            # restoration per track at load (automaster.restore)
    denoise: float | None = None
    mono_bass_hz: float | None = None
    codec_safe: bool = False         # encode the album with CODEC_SAFE, lower the limiter
    reference: Any = None            # a finished master (Source) every track is matched to
    reference_name: str = "reference"
    reference_report: dict | None = None  # its measurement, for album.json


@dataclass
class Track:
    """One track through the album's steps."""

    index: int                       # position in the given order (0-based)
    path: Path
    title: str
    spec: Any                        # playlist.TrackSpec
    info: Any = None                 # io.AudioInfo
    fade_in: float = 0.0
    fade_out: float = 0.0
    offset: float = 0.0
    audio: np.ndarray | None = None  # input at the album rate, then the master
    input: dict = field(default_factory=dict)      # Measurement.as_dict() of the input
    hops: np.ndarray | None = None
    features: Features | None = None
    settings: dict[str, float] = field(default_factory=dict)
    predicted: dict[str, float] = field(default_factory=dict)
    planned_lufs: float = math.nan
    master_report: dict = field(default_factory=dict)
    restoration: dict | None = None  # the restoration's findings (report["restoration"])
    output: dict = field(default_factory=dict)     # measured on its file's span
    prelimiter: dict | None = None   # codec-safe: the pipeline's reuse cache (Job.prelimiter)
    warnings: list[str] = field(default_factory=list)         # loading (mono, resampled...)
    master_warnings: list[str] = field(default_factory=list)  # from the mastering pipeline


@dataclass
class AlbumResult:
    tracks: list[Track]               # in album order
    transitions: list[Transition]
    layout: Layout
    album: np.ndarray                 # (channels, frames) float32, final
    sample_rate: int
    plan: LevelPlan
    sequence: dict
    measured: dict                    # album measurement
    loudness_curve: dict
    trim_db: float
    fixes: dict
    warnings: list[str]
    options: AlbumOptions
    playlist: Playlist
    timings: dict = field(default_factory=dict)
    limiter_ceiling_dbtp: float | None = None  # below the ceiling after a codec-safe check
    codec: dict | None = None                  # the codec-safe check (FitResult.as_dict)


# ---------------------------------------------------------------------------- preparing
def prepare(playlist: Playlist, opts: AlbumOptions) -> tuple[list[Track], int, int]:
    """Probe every file and check the album's options before anything heavy.
    Returns (tracks in the given order, album sample rate, album channels)."""
    from automaster.io import check_input_info, probe

    if not playlist.tracks:
        raise UserError("no tracks given")
    tracks: list[Track] = []
    for i, spec in enumerate(playlist.tracks):
        info = probe(spec.path)
        check_input_info(info, downmix=opts.downmix)
        t = Track(i, spec.path, spec.title or title_from_name(spec.path.stem), spec, info)
        t.fade_in = opts.fade_in if spec.fade_in is None else spec.fade_in
        t.fade_out = opts.fade_out if spec.fade_out is None else spec.fade_out
        t.offset = spec.offset
        if t.fade_in > info.duration or t.fade_out > info.duration:
            raise InputError(f"a fade ({max(t.fade_in, t.fade_out):g} s) is longer than the "
                             f"track ({info.duration:.2f} s)", spec.path)
        tracks.append(t)
    titles, notes = unique_titles([t.title for t in tracks])
    for t, title in zip(tracks, titles):
        t.title = title
    playlist.notes.extend(notes)
    sr = int(opts.sample_rate or tracks[0].info.sample_rate)
    channels = 2 if any(t.info.channels >= 2 for t in tracks) else 1
    return tracks, sr, channels


def load_reference(path: str | os.PathLike, opts: AlbumOptions, channels: int, note=None) -> None:
    """Load and measure ``--reference`` (before the heavy part): every track is matched to
    it, and without --target/--platform the album's loudness is the reference's as played
    (a mono reference for a stereo album 3.01 dB louder, as for a single master)."""
    from automaster.pipeline import reference_source
    from automaster.pipeline.analyse import (measure_source, played_loudness_offset_db,
                                             refuse_silent_reference)

    note = note or (lambda m: None)
    source, name = reference_source(path, 0)
    m = measure_source(source, true_peak=False, name=name).result()
    refuse_silent_reference(m, name)
    opts.reference, opts.reference_name = source, name
    opts.reference_report = {"file": name, **m.as_dict()}
    if math.isnan(opts.target_lufs):
        offset = played_loudness_offset_db(source.channels, channels)
        target = round(m.integrated_lufs + offset, 2)
        if not -70.0 < target <= 0.0:
            raise UserError(f"the reference measures {m.integrated_lufs:.1f} LUFS: outside the "
                            f"album's -70 to 0 LUFS target range; give --target", path)
        opts.target_lufs = target
        opts.reference_report["album_target_lufs"] = target
        note(f"album target {target:.1f} LUFS: the reference's loudness"
             + (f" as played ({m.integrated_lufs:.1f} measured, {offset:+.2f} dB for its "
                f"channels)" if offset else ""))


def transitions_for(tracks: list[Track], opts: AlbumOptions) -> list[Transition]:
    """What follows each track (in album order), checked: a cross-fade may be at most
    half the shorter of its two tracks."""
    out = []
    for a, b in zip(tracks, tracks[1:]):
        gap, xf = opts.gap, opts.crossfade
        if a.spec.gap is not None:
            gap, xf = a.spec.gap, 0.0
        elif a.spec.crossfade is not None:
            gap, xf = 0.0, a.spec.crossfade
        if xf > 0:
            shorter = min(a.info.duration, b.info.duration)
            if xf > shorter / 2.0:
                raise InputError(f"the {xf:g} s cross-fade into {b.path.name!r} is longer than "
                                 f"half the shorter track ({shorter:.2f} s)", a.path)
            if xf + a.fade_out > a.info.duration or xf + b.fade_in > b.info.duration:
                raise InputError(f"the {xf:g} s cross-fade and the fades do not fit in the "
                                 f"track", a.path)
            gap = 0.0
        out.append(Transition(gap=gap, crossfade=xf))
    return out


def load(track: Track, sample_rate: int, channels: int) -> np.ndarray:
    """The track at the album's rate and channel count, (channels, n) float32."""
    from automaster.io import (ChannelMapSource, FileSource, ResampledSource, downmix_matrix,
                               materialize)

    with FileSource(track.path) as fs:
        src: Any = fs
        if fs.channels > 2:
            src = ChannelMapSource(src, downmix_matrix(fs.channels))
            track.warnings.append(f"{fs.channels} channels folded down to stereo")
        if src.channels == 1 and channels == 2:
            src = ChannelMapSource(src, np.ones((2, 1), dtype=np.float32))
            track.warnings.append("mono, upmixed to stereo")
        if src.sample_rate != sample_rate:
            track.warnings.append(f"resampled from {src.sample_rate} to {sample_rate} Hz")
            src = ResampledSource(src, sample_rate)
        data = materialize(src).data
    if not np.isfinite(data).all():
        raise InputError("contains NaN or infinite samples", track.path)
    return data


# ---------------------------------------------------------------------------- mastering
def restore_track(t: Track, sr: int, opts: AlbumOptions, note) -> np.ndarray:
    """The loaded track restored (before it is measured, sequenced and mastered), its
    findings in ``t.restoration``; the same restoration as a single master's
    (:func:`automaster.pipeline.restoration.restore_input`)."""
    from automaster.io import ArraySource
    from automaster.pipeline.job import Job
    from automaster.pipeline.restoration import restore_input

    job = Job(name=str(t.path), notify=note, restore=opts.restore, denoise=opts.denoise,
              mono_bass_hz=opts.mono_bass_hz)
    src = restore_input(ArraySource(t.audio, sr), job)
    t.restoration = job.restoration
    t.warnings.extend(job.warnings)
    return src.data  # restore_input hands an ArraySource back as an ArraySource


def master_album(playlist: Playlist, opts: AlbumOptions,
                 notify: Callable[[str], None] | None = None,
                 progress: Callable[[str], None] | None = None) -> AlbumResult:
    """Everything up to the final album signal (see the module doc)."""
    from automaster.metering import Meter

    import time

    say = progress or (lambda m: None)
    note = notify or (lambda m: None)
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(timings.get(name, 0.0) + now - clock[0], 3)
        clock[0] = now

    tracks, sr, channels = prepare(playlist, opts)
    warnings: list[str] = list(playlist.notes)  # reported with the album's warnings, once
    if isinstance(opts.reference, (str, os.PathLike)):  # Python callers may pass a path
        load_reference(opts.reference, opts, channels, note)
    if not math.isfinite(opts.target_lufs):
        raise UserError("no loudness target: give target_lufs, or a reference to take it from")

    # 1. load and analyse (input loudness, features)
    for t in tracks:
        say(f"analysing {t.path.name}")
        t.audio = load(t, sr, channels)
        lap("load_and_measure")
        t.audio = restore_track(t, sr, opts, note)
        lap("restore")
        meter = Meter(sr, channels, true_peak=False)
        meter.process(t.audio)
        t.input = meter.result().as_dict()
        t.hops = meter.hop_energies()
        lap("load_and_measure")
        lufs = t.input["integrated_lufs"]
        t.features = analyze(t.audio, sr, lufs if lufs is not None else -math.inf)
        lap("features")

    # 2. sequence
    if opts.sequence == "auto":
        order, reasons = propose_order([t.features for t in tracks])
    else:
        order, reasons = keep_order(len(tracks))
    tracks = [tracks[i] for i in order]
    sequence = {"mode": opts.sequence, "order": [t.index + 1 for t in tracks],
                "reasons": reasons}
    transitions = transitions_for(tracks, opts)

    # 3. settings: predicted per track for the loudness it is planned to have (the model
    # hears the target and the ceiling), pulled toward the album mean by cohesion
    input_lufs = [t.input["integrated_lufs"] if t.input["integrated_lufs"] is not None
                  else -math.inf for t in tracks]
    hops = [faded_hops(t.hops, 0.1, t.fade_in, t.fade_out,
                       transitions[k - 1].crossfade if k else 0.0,
                       transitions[k].crossfade if k < len(transitions) else 0.0)
            for k, t in enumerate(tracks)]
    first_plan = plan_levels(opts.loudness, opts.target_lufs, input_lufs,
                             [t.offset for t in tracks], hops, 0.0)
    _predict(tracks, sr, opts, note, first_plan.planned_lufs)
    lap("predict")

    # 4. levels, 5. master each track, 6. assemble, 7. verify: at the album's ceiling, or
    # (codec-safe) again under a lower limiter ceiling until the encoded album meets it
    inputs = [t.audio for t in tracks]
    for t in tracks:
        t.audio = None
    rendered: dict[str, Any] = {}

    def render(limiter_ceiling: float | None) -> Any:
        from automaster.io import ArraySource

        ceiling = opts.ceiling_dbtp if limiter_ceiling is None else limiter_ceiling
        rendered.clear()
        rendered.update(_render_album(tracks, inputs, transitions, hops, input_lufs, sr,
                                      channels, ceiling, opts, note, say, lap))
        rendered["limiter_ceiling"] = ceiling
        return ArraySource(rendered["album"], sr)

    codec = None
    if opts.codec_safe:
        from automaster.pipeline.job import close_prelimiter
        from automaster.translate.codec import CODEC_SAFE, fit_ceiling

        # each try masters every track again under a lower limiter: the same inputs and
        # settings, so the pre-limiter renders of the first try are kept and reused (memory:
        # one more float32 copy of the album)
        for t in tracks:
            t.prelimiter = {}
        try:
            fit = fit_ceiling(render, opts.ceiling_dbtp, list(CODEC_SAFE))
        finally:
            for t in tracks:
                close_prelimiter(t.prelimiter)
                t.prelimiter = None
        lap("codec_check")
        codec = {**fit.as_dict(), "codec_safe": True, "output_codec": None}
        if not fit.met:
            worst = max(fit.checks, key=lambda c: c.true_peak_dbtp)
            rendered["warnings"].append(
                f"the decoded true peak ({worst.true_peak_dbtp:.2f} dBTP as {worst.codec.name}) "
                f"is still above the {opts.ceiling_dbtp:g} dBTP ceiling after {fit.encodes} "
                f"encodes (limiter ceiling {fit.limiter_ceiling_dbtp:.2f} dBTP)")
    else:
        render(None)
    del inputs
    warnings.extend(rendered["warnings"])
    for t in tracks:
        t.warnings.extend(t.master_warnings)
        for w in t.warnings:
            note(f"{t.path}: {w}")
    result = AlbumResult(tracks, transitions, rendered["layout"], rendered["album"], sr,
                         rendered["plan"], sequence, rendered["measured"], rendered["curve"],
                         rendered["trim"], rendered["fixes"], warnings, opts, playlist, timings)
    result.limiter_ceiling_dbtp = rendered["limiter_ceiling"]
    result.codec = codec
    return result


def _render_album(tracks: list[Track], inputs: list[np.ndarray], transitions: list[Transition],
                  hops: list[np.ndarray], input_lufs: list[float], sr: int, channels: int,
                  ceiling: float, opts: AlbumOptions, note, say, lap) -> dict[str, Any]:
    """Levels, each track mastered under the limiter ``ceiling``, the album assembled,
    trimmed and verified (every true peak at or below ``ceiling``); once more if the album
    came out quiet. Returns the album and its plan, layout, measurements and warnings."""
    from automaster.metering import Meter

    warnings: list[str] = []
    extra = 0.0
    for attempt in range(2):
        plan = plan_levels(opts.loudness, opts.target_lufs, input_lufs,
                           [t.offset for t in tracks], hops, extra)
        masters = []
        for t, x, level in zip(tracks, inputs, plan.planned_lufs):
            say(f"mastering {t.path.name} to {level:.1f} LUFS")
            t.planned_lufs = level
            masters.append(_master_track(t, x, sr, level, ceiling, opts, note))
        lap("master_tracks")
        try:
            layout = plan_layout([m.shape[1] for m in masters], sr, transitions,
                                 [(t.fade_in, t.fade_out) for t in tracks])
        except ValueError as e:  # e.g. a cross-fade shorter than a CD frame
            raise UserError(f"{e} (cross-fades are whole CD frames, 1/75 s; use at least "
                            f"0.03 s)") from None
        album = assemble(masters, layout)
        del masters
        overlaps = limit_overlaps(album, layout, ceiling)
        lap("assemble")
        album_meter = Meter(sr, channels, true_peak=False)
        album_meter.process(album)
        level = album_meter.integrated_lufs()
        lap("album_loudness")
        if opts.loudness != "album" or not math.isfinite(level):
            trim = 0.0
            break
        if level >= opts.target_lufs - TOLERANCE_LU or attempt == 1:
            trim = min(0.0, opts.target_lufs - level)
            if level < opts.target_lufs - TOLERANCE_LU:
                under = f"{opts.ceiling_dbtp:g} dBTP ceiling" + (
                    "" if ceiling == opts.ceiling_dbtp
                    else f" (limited at {ceiling:.2f} dBTP for the codecs)")
                warnings.append(f"the album reaches {level:.1f} LUFS, short of the "
                                f"{opts.target_lufs:g} LUFS target under the {under}")
            break
        extra += (opts.target_lufs - level) + 0.1
        note(f"the album measured {level:.2f} LUFS, under the target: mastering again "
             f"{extra:+.2f} dB louder")
    if trim:
        album *= np.float32(10.0 ** (trim / 20.0))
    edges = fix_cut_edges(album, layout, ceiling)
    lap("cut_edges")
    measured, curve, final_trim = _measure(album, layout, tracks, sr, ceiling, album_meter, trim)
    lap("verify")
    if final_trim:
        warnings.append(f"a final {final_trim:.3f} dB trim kept the true peak under the "
                        f"ceiling")
    return {"album": album, "layout": layout, "plan": plan, "measured": measured,
            "curve": curve, "trim": trim + final_trim, "warnings": warnings,
            "fixes": {"limited_overlaps": overlaps, "cut_dips": edges}}


def _predict(tracks: list[Track], sr: int, opts: AlbumOptions, note,
             levels: list[float] | None = None) -> None:
    """Each track's setting, asked of the model for its planned loudness (``levels``, LUFS;
    the album's target where not given or not finite) under the album's ceiling."""
    import torch

    from automaster.io import ArraySource
    from automaster.metering import Measurement
    from automaster.pipeline import Job, choose_setting, compute_threads, load_model, resolve_device
    from dsp import MasteringChain

    device = resolve_device(opts.device)
    chain = MasteringChain(sample_rate=sr).to(device)
    model = load_model(opts.model, device)
    with compute_threads(opts.threads):
        ps = []
        for k, t in enumerate(tracks):
            level = levels[k] if levels is not None and math.isfinite(levels[k]) else opts.target_lufs
            job = Job(intensity=opts.intensity, model=model, device=device, name=str(t.path),
                      notify=note, target_lufs=float(level), ceiling_dbtp=opts.ceiling_dbtp,
                      reference=opts.reference, reference_name=opts.reference_name)
            before = Measurement(**{k: (v if v is not None else -math.inf)
                                    for k, v in t.input.items()})
            # no torch.no_grad here: a reference match optimizes through the chain
            p, info = choose_setting(chain, ArraySource(t.audio, sr), before, job, device)
            t.master_report["setting_source"] = info.get("source")
            match = info.get("reference")
            if match:  # how far the fit moved the descriptors toward the reference's
                t.master_report["reference_match"] = {k: match[k] for k in
                                                      ("steps", "loss_start", "loss_best")
                                                      if k in match}
            ps.append(p.detach().cpu().float())
    P = torch.cat(ps, dim=0)
    live = [i for i, t in enumerate(tracks)
            if t.input.get("integrated_lufs") is not None]
    if opts.cohesion > 0 and len(live) > 1:
        mean = P[live].mean(dim=0, keepdim=True)
        P = P + float(opts.cohesion) * (mean - P)
    predicted = chain.denormalize(torch.cat(ps, dim=0))
    final = chain.denormalize(P.clamp(0.0, 1.0))
    for t, a, b in zip(tracks, predicted, final):
        t.predicted, t.settings = a, b


def _master_track(t: Track, x: np.ndarray, sr: int, level: float, ceiling: float,
                  opts: AlbumOptions, note) -> np.ndarray:
    from automaster.io import ArraySource
    from automaster.pipeline import Job, master_source

    # rendered again (codec-safe): the source object the first render left in the cache
    src = (t.prelimiter or {}).get("source") or ArraySource(x, sr)
    job = Job(target_lufs=level, ceiling_dbtp=ceiling, intensity=1.0,
              settings=dict(t.settings), device=opts.device, name=str(t.path),
              notify=note, threads=opts.threads, restore="off",  # restored at load
              prelimiter=t.prelimiter)
    try:
        result = master_source(src, job)
    except UserError as e:
        if e.path is None:
            raise UserError(e.message, t.path) from None
        raise
    t.master_report.update({k: result.report.get(k) for k in
                            ("before", "after", "gain_db", "limiter_ceiling_dbtp",
                             "target_lufs")})
    t.master_warnings = list(result.report.get("warnings", []))  # the last pass's only
    return result.audio


def true_peaks(album: np.ndarray, layout: Layout) -> tuple[float, list[float]]:
    """True peaks (linear) of the whole album and of each track file played alone (zeros
    outside it), in one pass: each file's interior (identical in both) with the metering
    module's pruned 4x interpolator, then the few samples at every cut twice, continuous
    and cut (:func:`automaster.album.assemble.interpolated_peak`)."""
    from automaster.album.assemble import interpolated_peak
    from automaster.album.assemble import TP_HALF
    from automaster.metering import true_peak_positions

    H = TP_HALF
    n = album.shape[1]
    files, album_tp = [], 0.0
    for p in layout.tracks:
        span = album[:, p.cut:p.end]
        inner = true_peak_positions(span, H, span.shape[1] - H, 0.0) \
            if span.shape[1] > 2 * H else 0.0
        head = interpolated_peak(album, p.cut, p.cut + H, left_zero=p.cut, right_zero=p.end)
        tail = interpolated_peak(album, p.end - H, p.end, left_zero=p.cut, right_zero=p.end)
        files.append(max(inner, head, tail))
        album_tp = max(album_tp, inner, interpolated_peak(album, p.cut - H, p.cut + H))
    album_tp = max(album_tp, interpolated_peak(album, n - H, n))
    return album_tp, files


def _measure(album: np.ndarray, layout: Layout, tracks: list[Track], sr: int,
             ceiling: float, album_meter: Any, shift_db: float) -> tuple[dict, dict, float]:
    """Album and per-file measurements; a last-resort global trim if anything reads over
    the ceiling (not expected after the limiter and the cut dips).

    The album's loudness comes from ``album_meter`` (measured before the global trim)
    shifted by the trim, exact for a pure gain; the cut dips (a few ms) move it by far
    less than 0.01 LU."""
    from automaster.metering import Meter

    limit = 10.0 ** ((ceiling - TP_MARGIN_DB) / 20.0)
    trim = 0.0
    album_tp, file_tp = true_peaks(album, layout)
    worst = max([album_tp] + file_tp)
    if worst > limit:
        step = 20.0 * math.log10(limit / worst) - 0.005
        album *= np.float32(10.0 ** (step / 20.0))
        trim = step
        album_tp, file_tp = true_peaks(album, layout)

    def db(v: float) -> float:
        return 20.0 * math.log10(v) if v > 0 else -math.inf

    for t, p, tp in zip(tracks, layout.tracks, file_tp):
        m = Meter(sr, album.shape[0], true_peak=False)
        m.process(album[:, p.cut:p.end])
        r = m.result()
        r.true_peak_dbtp = db(tp)
        t.output = r.as_dict()
    r = album_meter.result()
    total = shift_db + trim
    for key in ("integrated_lufs", "sample_peak_dbfs", "rms_dbfs"):
        setattr(r, key, getattr(r, key) + total)
    r.true_peak_dbtp = db(album_tp)
    st = album_meter.short_term_lufs() + total
    step = max(1, -(-st.size // 2000))  # at most ~2000 points (100 ms apart on short albums)
    curve = {"time_s": [round((i + 30) * 0.1, 1) for i in range(0, st.size, step)],
             "short_term_lufs": [round(float(v), 2) if math.isfinite(v) and v > -70 else None
                                 for v in st[::step]]}
    return r.as_dict(), curve, trim
