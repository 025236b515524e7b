"""Write and report: the accepted limiter pass goes to the output (from its cache, as
already written while it was verified, or rendered once more), and the report gets the
before/after measurements, the gain, the warnings and, with job.detail, the spectra and
gain-reduction traces."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from automaster.io import Source
from automaster.metering import BackgroundMeter, Measurement, Meter
from automaster.pipeline.analyse import Analysis
from automaster.pipeline.job import Job, MasterResult, Progress, blocks, fmt
from automaster.pipeline.loudness import Limited, Limiting
from automaster.pipeline.traces import BandTraces


class Output:
    """Where the master's blocks go: the caller's ``write`` (with its ``rewind``, which may
    be None), or a list that becomes MasterResult.audio."""

    def __init__(self, write: Callable[[np.ndarray], None] | None,
                 rewind: Callable[[], None] | None) -> None:
        self.collected: list[np.ndarray] | None = [] if write is None else None
        self.emit: Callable[[np.ndarray], None] = write if write is not None else self.collected.append
        self.rewind = rewind if write is not None else self.collected.clear

    def audio(self) -> np.ndarray | None:
        return np.concatenate(self.collected, axis=1) if self.collected is not None else None


def pass_through(source: Source, chain, analysis: Analysis, job: Job, out: Output,
                 report: dict[str, Any], progress: Progress,
                 before: Measurement | None = None) -> MasterResult:
    """Silence or near-silence is written unchanged, with a warning, instead of being
    pushed up to the target. ``before``: the measurement of ``source`` when the analysis
    measured something else (the restored copy of an input passed through as it was)."""
    analysis.finish()
    before = before if before is not None else analysis.before
    job.warnings.append(f"silent or near-silent input ({fmt(before.integrated_lufs)} LUFS, "
                        f"peak {fmt(before.sample_peak_dbfs)} dBFS): passed through "
                        f"unchanged, not raised to the target")
    progress.stage("write", source.frames)
    for s, e in blocks(source.frames, 1 << 20):
        out.emit(np.array(source.read(s, e), dtype=np.float32))
        progress.advance(e - s)
    settings = chain.denormalize(chain.identity_params(1))[0]
    report.update({"source": "passthrough", "before": before.as_dict(),
                   "after": before.as_dict(), "gain_db": 0.0, "warnings": job.warnings})
    return MasterResult(out.audio(), settings, report)


def write_output(ctx: Limiting, result: Limited, out: Output) -> None:
    """The accepted pass, with the trim, to the output. A trimmed output is measured as it
    is written (``result.best`` then holds that measurement), so the report never shows a
    level shifted by arithmetic."""
    best, trim_db = result.best, result.trim_db
    trim = np.float32(10.0 ** (trim_db / 20.0))
    if best.emitted and trim_db:
        out.rewind()
        best.emitted = False
    ctx.progress.stage("write", ctx.store.frames)
    if best.emitted:
        return  # written while verifying
    meter = None
    if trim_db:
        meter = BackgroundMeter(Meter(ctx.sample_rate, ctx.store.channels, true_peak=True,
                                      spectrum=ctx.job.detail))
    blocks_out = best.cache if best.cache is not None else (b for _, b, _ in ctx.blocks(best.gain_db, best.ceiling))
    for block in blocks_out:
        if trim_db:
            block = block * trim
            meter.process(block)
        out.emit(block)
        ctx.progress.advance(block.shape[1])
    if meter is not None:
        m = meter.join()
        best.measurement, best.spectrum = m.result(), m.spectrum()
        best.level, best.tp_db = best.measurement.integrated_lufs, best.measurement.true_peak_dbtp


def final_report(report: dict[str, Any], analysis: Analysis, result: Limited, job: Job,
                 timings: dict, comp_trace: BandTraces | None, ref_spectrum: tuple | None) -> None:
    """Before/after (the output as written, measured), gain, limiter ceiling, warnings,
    timings; spectra and traces with job.detail."""
    before = analysis.finish()
    best, trim_db = result.best, result.trim_db
    after: Measurement = best.measurement
    report.update({
        "before": before.as_dict(),
        "after": after.as_dict(),
        "gain_db": round(best.gain_db + trim_db, 3),
        "true_peak_trim_db": round(trim_db, 3),
        "limiter_ceiling_dbtp": None if best.ceiling is None else round(best.ceiling, 3),
        "warnings": job.warnings,
        "timings_s": timings,
    })
    if job.detail:
        report["spectrum"] = _spectra(analysis, before, after, best.spectrum, ref_spectrum)
        report["gain_reduction"] = {
            **(comp_trace.as_dict() if comp_trace else {}),
            "limiter": best.trace.as_dict() if best.trace else None,
        }


def _spectra(analysis: Analysis, before: Measurement, after: Measurement, out_spectrum: tuple,
             ref_spectrum: tuple | None) -> dict[str, Any]:
    """Long-term spectra of input, master (and reference), the input and reference moved
    to the master's loudness so the plot shows tone, not level."""
    from automaster.report import smooth_spectrum

    f_in, s_in = analysis.spectrum()
    _, s_out = out_spectrum
    shift = after.integrated_lufs - before.integrated_lufs
    shift = shift if math.isfinite(shift) else 0.0
    spectrum = smooth_spectrum(f_in, s_in + shift if s_in.size else s_in, s_out)
    spectrum["before_shift_db"] = round(shift, 2)
    if ref_spectrum is not None:
        f_ref, s_ref, l_ref = ref_spectrum
        ref_shift = after.integrated_lufs - l_ref if math.isfinite(l_ref) else 0.0
        spectrum["reference_db"] = smooth_spectrum(f_ref, s_ref + ref_shift, s_ref[:0])["before_db"]
    return spectrum


def describe(m: dict[str, Any]) -> str:
    """'-23.1 LUFS, -6.0 dBTP, LRA 5.2 LU' from a Measurement.as_dict()."""
    def f(v: Any, unit: str) -> str:
        return f"{v:.1f} {unit}" if isinstance(v, (int, float)) else f"n/a {unit}"
    return (f"{f(m.get('integrated_lufs'), 'LUFS')}, {f(m.get('true_peak_dbtp'), 'dBTP')}, "
            f"LRA {f(m.get('loudness_range_lu'), 'LU')}")
