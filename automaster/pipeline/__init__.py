"""The mastering pipeline, in the order the data flows through its modules:

0. :mod:`~automaster.pipeline.restoration` - restoration (:mod:`automaster.restore`: DC
   and rumble, hum, clicks, clipping, polarity; noise reduction and mono bass on request)
   on the whole input, in memory, before anything is measured: every later stage sees the
   restored signal, and its findings go to ``report["restoration"]``. ``--restore off``
   skips it; inputs too long to hold (``Job.restore_max_bytes``) skip it with a warning.
1. :mod:`~automaster.pipeline.analyse` - one streaming pass over the whole input:
   loudness, true peak, LRA, crest. Silence or near-silence (below -70 LUFS integrated or
   -80 dBFS peak) stops here: it is passed through unchanged, with a warning
   (:func:`~automaster.pipeline.write.pass_through`), instead of being pushed up to the target.
2. :mod:`~automaster.pipeline.decide` - the setting: ``--params-in`` values, the network's
   prediction, or the built-in preset; refined towards a reference; scaled by ``intensity``.
3. :mod:`~automaster.pipeline.render` - the chain without limiter or loudness stage, in
   blocks with lead-in, into a float store (memory, or an unnamed temporary file for long
   inputs) while its loudness is measured.
4. :mod:`~automaster.pipeline.loudness` - one global gain, then the chain's true-peak
   limiter, re-aimed (dsp.loudness_search, the search training uses too) until the
   limited output is within 0.1 LU of the target, verified
   with the 4x true-peak meter over every output sample.
5. :mod:`~automaster.pipeline.write` - the accepted pass to the output (quantized and
   dithered by the sink) and the report.

Memory stays bounded by the block size whatever the input length (60 min of stereo
44.1 kHz: about 1.1 GB peak RSS, the same as for 3 min). Meters (K-weighting, true peak)
run on a worker thread beside the render, so a second core is used; torch itself runs
single-threaded (:func:`~automaster.pipeline.job.compute_threads`). Inputs longer than the
memory budget keep the pre-limiter render in an unnamed temporary file and write the
output while verifying it.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from automaster.errors import UserError
from automaster.io import ArraySource, Source
from automaster.pipeline.analyse import Analysis, analyse_input, check_reference_level, is_silent, measure_reference, measure_source, reference_lufs
from automaster.pipeline.checks import (check_args, check_audio, check_length_and_values,
                                        check_sample_rate, reference_source)
from automaster.pipeline.decide import choose_setting, load_model
from automaster.pipeline.device import resolve_device
from automaster.pipeline.job import Job, MasterResult, Progress, Timings, close_prelimiter, compute_threads
from automaster.pipeline.loudness import LIMITER_MARGIN_DB, Limiting, normalize_and_limit
from automaster.pipeline.render import FloatStore, render_pre_limiter
from automaster.pipeline.restoration import restoration_lines, restore_input
from automaster.restore_options import check_restore_options
from automaster.pipeline.traces import BandTraces
from automaster.pipeline.write import Output, describe, final_report, pass_through, write_output
from dsp.memory import keep_freed_memory

def master(audio: Any, sample_rate: int, target_lufs: float | None = None,
           ceiling_dbtp: float | None = -1.0, intensity: float = 1.0, reference: Any = None,
           reference_sample_rate: int | None = None, model: Any = None, device: Any = "auto",
           *, settings: dict[str, float] | None = None, detail: bool = False,
           restore: str = "auto", denoise: float | None = None,
           mono_bass_hz: float | None = None) -> MasterResult:
    """Master ``audio`` (channels, samples) or (samples,) at ``sample_rate``.

    target_lufs: integrated loudness of the result; None (the default) matches the
    reference's loudness when a reference is given, else -14 LUFS. ceiling_dbtp: true-peak
    ceiling (None: no limiter). intensity: 0 = identity setting .. 1 = full predicted
    setting. reference: a finished master to match, as an array (channels, samples) at
    ``reference_sample_rate`` (default ``sample_rate``) or a file path. model:
    MasteringModel, checkpoint name/path or None. settings: explicit {parameter: physical
    value} (skips prediction). restore: "auto" (repair DC/rumble, hum, clicks, clipping and
    polarity where detected), "off", or a comma list of fixes ("dc,hum"); denoise: noise
    reduction amount 0..1 (None: hiss is only reported); mono_bass_hz: keep the low end mono
    below this frequency (None: off). Returns a MasterResult with audio (channels, samples)
    float32 at the same rate and channel count; ``report["restoration"]`` lists the findings.
    """
    x = check_audio(audio)
    check_args(sample_rate, target_lufs, ceiling_dbtp, intensity)
    check_length_and_values(x, sample_rate)
    if reference is not None and settings is not None:
        raise ValueError("give either a reference or explicit settings, not both")
    restore, denoise, mono_bass_hz = check_restore_options(restore, denoise, mono_bass_hz,
                                                           sample_rate, cli=False)
    if settings is not None:  # the values --params-in takes, with its messages
        from automaster.settings import parse_settings

        settings = parse_settings(settings)
    job = Job(target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, intensity=float(intensity),
              settings=settings, model=model,
              device=device, detail=detail, name="audio", restore=restore, denoise=denoise,
              mono_bass_hz=mono_bass_hz)
    if reference_sample_rate is not None:
        check_sample_rate(reference_sample_rate, "reference_sample_rate")
    if reference is not None:
        job.reference, job.reference_name = reference_source(
            reference, sample_rate if reference_sample_rate is None else reference_sample_rate)
    return master_source(ArraySource(x, sample_rate), job)


def master_source(source: Source, job: Job, write: Callable[[np.ndarray], None] | None = None,
                  progress: Progress | None = None,
                  rewind: Callable[[], None] | None = None) -> MasterResult:
    """Master a (processing-rate) source; blocks go to ``write`` (or into result.audio).

    ``rewind``, when given with ``write``, discards what was written so far; it lets a long
    input write its likely-final limiter pass while verifying it instead of running it again.
    Torch and numba (dsp's kernels) run with ``job.threads`` threads meanwhile, restored
    afterwards (:func:`~automaster.pipeline.job.compute_threads`).
    """
    keep_freed_memory()  # large tensors reuse freed memory instead of page-faulting (dsp/memory.py)
    progress = progress or Progress()
    out = Output(write, rewind)
    timings = Timings()
    with compute_threads(job.threads):
        original = source
        source = restore_input(source, job, progress)
        timings.lap("restore")
        cache = job.prelimiter
        if cache is not None and cache.get("source") is source:
            analysis = cache["analysis"]  # a later try of the same source (Job.prelimiter)
        else:
            analysis = analyse_input(source, job, progress)
            if cache is not None:
                close_prelimiter(cache)
                cache.update(source=source, analysis=analysis)
        try:
            timings.lap("analyse")
            return _master_analysed(source, job, analysis, out, progress, timings, original)
        finally:
            analysis.tp.join()


def _master_analysed(source: Source, job: Job, analysis: Analysis, out: Output,
                     progress: Progress, timings: Timings,
                     original: Source | None = None) -> MasterResult:
    """Everything after the analysis pass: target, setting, render, loudness, write.
    ``original``: the input before restoration (silence is passed through as it was)."""
    report = _start_report(source, job)
    ref_spectrum = None
    if job.reference is not None:
        ref_spectrum = measure_reference(job, report, source.channels)
        timings.lap("reference_loudness")
    if job.target_lufs is None:
        job.target_lufs = -14.0
    report.update(target_lufs=job.target_lufs, ceiling_dbtp=job.ceiling_dbtp,
                  intensity=job.intensity)

    from dsp import MasteringChain

    device = resolve_device(job.device)
    chain = MasteringChain(sample_rate=source.sample_rate).to(device)
    timings.lap("load_torch")
    if is_silent(analysis.before):
        if original is not None and original is not source:  # unchanged, not restored
            report["restoration"] = job.restoration = {
                "mode": (job.restoration or {}).get("mode", job.restore), "findings": [],
                "skipped": "silent or near-silent input, passed through unchanged"}
            source = original
            # what is written is the original: report its levels, not the restored copy's
            return pass_through(source, chain, analysis, job, out, report, progress,
                                before=measure_source(original, name=job.name).result())
        return pass_through(source, chain, analysis, job, out, report, progress)

    p, info = choose_setting(chain, source, analysis.before, job, device)
    timings.lap("setting")
    settings = chain.denormalize(p.detach().cpu())[0]
    # the match's figures join the reference's measurement (file, loudness) rather than replace it
    report.setdefault("reference", {}).update(info.pop("reference", {}))
    if not report["reference"]:
        del report["reference"]
    report.update(info)

    cache = job.prelimiter
    reuse = cache is not None and cache.get("source") is source and "store" in cache
    if reuse:  # the same source and setting rendered before: only loudness and limiter differ
        store, pre, comp_trace = cache["store"], cache["pre"], cache["trace"]
    else:
        store = FloatStore(source.channels, source.frames, job.memory_bytes, job.tmp_dir)
        comp_trace = BandTraces(source.frames, source.sample_rate) if job.detail else None
    try:
        if not reuse:
            pre = render_pre_limiter(chain, p.detach(), source, store, job, device, progress,
                                     comp_trace, reference_lufs(analysis.before))
            if cache is not None:
                cache.update(store=store, pre=pre, trace=comp_trace)
        # the absolute gate judged at the level the master will have: a mix just above
        # -70 LUFS that the chain takes a little below it is quiet, not silent
        pre_lufs = pre.integrated_lufs(
            gain_db=job.target_lufs - analysis.before.integrated_lufs)
        timings.lap("render")
        if not math.isfinite(pre_lufs):
            raise UserError("the chain's output with this setting is silent", job.name)
        ctx = Limiting(chain, store, float(settings.get("limiter.release_ms", 100.0)), job,
                       device, progress, hold=None if cache is None else cache.get("hold"))
        limited = normalize_and_limit(ctx, pre_lufs, settings, out.emit, out.rewind)
        if cache is not None and ctx.hold is not None:
            cache["hold"] = ctx.hold
        timings.lap("loudness_and_limiter")
        timings["limiter_passes"] = limited.passes
        timings["prelimiter_reused"] = reuse
        write_output(ctx, limited, out)
    finally:
        if cache is None or cache.get("store") is not store:
            store.close()
    timings.lap("write")

    final_report(report, analysis, limited, job, dict(timings), comp_trace, ref_spectrum)
    return MasterResult(out.audio(), settings, report)


def _start_report(source: Source, job: Job) -> dict[str, Any]:
    return {"input": job.name, "sample_rate": source.sample_rate, "channels": source.channels,
            "duration_s": round(source.frames / source.sample_rate, 3),
            "restoration": job.restoration}


# what other modules import from here (the stages' own names live in their modules)
__all__ = ["MasterResult", "Job", "Progress", "master", "master_source", "restore_input",
           "restoration_lines", "load_model", "resolve_device", "choose_setting",
           "check_reference_level", "compute_threads", "describe", "FloatStore",
           "LIMITER_MARGIN_DB"]
