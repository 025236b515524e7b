"""Analyse: measure the source (and the reference), decide whether it is silence, and cut
the analysis windows and excerpts that the setting is chosen from.

The input is measured in one streaming pass: loudness, LRA and crest on this thread, the
4x true peak (and the long-term spectrum for reports) on a background worker that the
caller joins later (:meth:`Analysis.finish`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from automaster.errors import InputError
from automaster.io import Source
from automaster.metering import BackgroundMeter, Measurement, Meter
from automaster.pipeline.job import Job, Progress, blocks, fmt, note_once

SILENCE_LUFS = -70.0
SILENCE_PEAK_DBFS = -80.0


def measure_source(source: Source, *, true_peak: bool = True, spectrum: bool = False,
                   block: int = 1 << 20, progress: Progress | None = None,
                   name: str = "input", also: BackgroundMeter | None = None) -> Meter:
    """Stream a source through a Meter (and ``also`` a background one). InputError on
    NaN/inf samples."""
    meter = Meter(source.sample_rate, source.channels, true_peak=true_peak, spectrum=spectrum)
    for s, e in blocks(source.frames, block):
        x = source.read(s, e)
        try:
            meter.process(x)
        except ValueError:
            if also is not None:
                also.join()
            bad = int(np.argmin(np.isfinite(x).all(axis=0)))
            raise InputError(f"contains NaN or infinite samples (first at "
                             f"{(s + bad) / source.sample_rate:.3f} s)", name) from None
        if also is not None:
            also.process(x)
        if progress:
            progress.advance(e - s)
    return meter


@dataclass
class Analysis:
    """The input's measurement. ``before.true_peak_dbtp`` is filled in by :meth:`finish`,
    once the background true-peak meter ``tp`` is done."""

    before: Measurement
    tp: BackgroundMeter

    def finish(self) -> Measurement:
        self.before.true_peak_dbtp = self.tp.join().result().true_peak_dbtp
        return self.before

    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        return self.tp.join().spectrum()


def analyse_input(source: Source, job: Job, progress: Progress) -> Analysis:
    """The analysis pass over the whole input; the caller must ``tp.join()`` the result."""
    progress.stage("analyse", source.frames)
    tp = BackgroundMeter(Meter(source.sample_rate, source.channels, loudness=False,
                               true_peak=True, spectrum=job.detail))
    meter = measure_source(source, true_peak=False, progress=progress, name=job.name, also=tp)
    return Analysis(meter.result(), tp)


def is_silent(m: Measurement) -> bool:
    """Silence or near-silence: below -70 LUFS integrated or -80 dBFS sample peak."""
    return (not math.isfinite(m.integrated_lufs) or m.integrated_lufs < SILENCE_LUFS
            or not math.isfinite(m.sample_peak_dbfs) or m.sample_peak_dbfs < SILENCE_PEAK_DBFS)


def refuse_silent_reference(m: Measurement, name: str) -> None:
    """A silent or near-silent reference gives nothing to match (its spectrum and width are
    noise): refuse it whether or not a loudness target is given."""
    if is_silent(m):
        raise InputError(f"the reference is silent or near-silent ({fmt(m.integrated_lufs)} "
                         f"LUFS, peak {fmt(m.sample_peak_dbfs)} dBFS); there is nothing to "
                         f"match", name)


def check_reference_level(reference: Source, name: str) -> None:
    """Measure a reference once and refuse it if silent (the CLI calls this up front)."""
    refuse_silent_reference(measure_source(reference, true_peak=False, name=name).result(), name)


DUAL_MONO_DB = 10.0 * math.log10(2.0)  # a mono file played on two loudspeakers


def played_loudness_offset_db(reference_channels: int, input_channels: int) -> float:
    """dB to add to a reference's BS.1770 loudness so that the master, measured on its own
    channels, sounds as loud as the reference when both are played on two loudspeakers.

    BS.1770 measures a mono file as one channel; played on two speakers (dual mono, as
    players and platforms do) it is 3.01 dB louder. So a mono reference for a stereo mix
    asks for 3.01 dB more, a stereo reference for a mono mix 3.01 dB less; the album
    command's mono upmix (both channels at full gain) follows the same convention."""
    if reference_channels == 1 and input_channels >= 2:
        return DUAL_MONO_DB
    if reference_channels >= 2 and input_channels == 1:
        return -DUAL_MONO_DB
    return 0.0


def measure_reference(job: Job, report: dict[str, Any], input_channels: int) -> tuple | None:
    """Measure job.reference into ``report["reference"]``, refuse it if silent, and take its
    loudness as played (:func:`played_loudness_offset_db`) as the target when none was given.
    Returns (frequencies, spectrum dB, LUFS) for the report's plot when job.detail, else None."""
    meter = measure_source(job.reference, true_peak=False, spectrum=job.detail,
                           name=job.reference_name)
    m = meter.result()
    report["reference"] = {"file": job.reference_name, **m.as_dict()}
    refuse_silent_reference(m, job.reference_name)  # in every mode, target or not
    if job.target_lufs is None:
        offset = played_loudness_offset_db(job.reference.channels, input_channels)
        job.target_lufs = round(m.integrated_lufs + offset, 2)
        if offset:
            report["reference"]["played_lufs"] = job.target_lufs
            kind = "mono reference" if offset > 0 else "stereo reference for a mono input"
            (job.notify or (lambda msg: note_once(f"played {msg}", msg)))(
                f"{kind}: a mono file plays 3 dB louder on two speakers than it measures, so the "
                f"target is {job.target_lufs:.1f} LUFS (the reference measures {m.integrated_lufs:.1f})")
    if not job.detail:
        return None
    f_ref, s_ref = meter.spectrum()
    return f_ref, s_ref, m.integrated_lufs


def reference_lufs(before: Measurement) -> float:
    """The input's loudness that the chain's thresholds and drive are relative to."""
    from dsp.level import CEIL_LUFS, FLOOR_LUFS

    v = before.integrated_lufs
    return float(min(max(v, FLOOR_LUFS), CEIL_LUFS)) if math.isfinite(v) else FLOOR_LUFS


def analysis_windows(source: Source, count: int, seconds: float) -> np.ndarray:
    """``count`` windows of ``seconds`` centred at (k + 0.5) / count of the signal, joined:
    (channels, count * L); the whole signal when it is shorter than that."""
    n = source.frames
    length = max(1, int(round(seconds * source.sample_rate)))
    if n <= count * length:
        return np.array(source.read(0, n), dtype=np.float32)
    parts = []
    for i in range(count):
        centre = (i + 0.5) / count * n
        start = int(min(max(round(centre - length / 2), 0), n - length))
        parts.append(source.read(start, start + length))
    return np.concatenate(parts, axis=1)


def excerpt_batch(source: Source, count: int, seconds: float) -> np.ndarray:
    """(count', channels, L) evenly spread excerpts (fewer when the signal is short)."""
    n = source.frames
    length = min(n, max(1, int(round(seconds * source.sample_rate))))
    count = max(1, min(count, n // length))
    out = []
    for i in range(count):
        centre = (i + 0.5) / count * n
        start = int(min(max(round(centre - length / 2), 0), n - length))
        out.append(source.read(start, start + length))
    return np.stack(out)
