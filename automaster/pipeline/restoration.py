"""Restore: repair what the mix got wrong before it is analysed and mastered
(:mod:`automaster.restore`: DC/subsonic, hum, clicks, clipping, polarity, optional mono
bass and noise reduction).

Restoration's detectors judge the whole signal at once (a hum's stable peaks, the noise
floor of the quiet passages, the channels' correlation), so the input is read into memory
here, once, and the restored signal replaces the source for every later stage. Inputs whose
float32 samples exceed ``job.restore_max_bytes`` are not restored: with the default
``--restore auto`` the master goes on without it and says so (a warning); when restoration
was asked for explicitly (a fix list, ``--denoise``, ``--mono-bass``) it is a one-line error.

The input itself (file or the caller's array) is never modified: the stages work on a copy.
The findings go to ``job.restoration`` and from there to ``report["restoration"]``.
"""

from __future__ import annotations

import numpy as np

from automaster.errors import InputError, UserError
from automaster.io import ArraySource, Source, materialize
from automaster.pipeline.job import Job, Progress
from automaster.report import restoration_lines  # noqa: F401  (re-exported: the CLI's text lines)

OFF = ("off", "none")


def restoration_off(job: Job) -> bool:
    """Nothing to do: ``restore`` off, no noise reduction, no mono bass."""
    spec = str(job.restore if job.restore is not None else "auto").strip().lower()
    return spec in OFF and job.denoise is None and job.mono_bass_hz is None


def explicit(job: Job) -> bool:
    """Restoration was asked for by name (not just the ``auto`` default)."""
    spec = str(job.restore if job.restore is not None else "auto").strip().lower()
    return (spec not in OFF and spec != "auto") or job.denoise is not None \
        or job.mono_bass_hz is not None


def restore_input(source: Source, job: Job, progress: Progress | None = None) -> Source:
    """The source the rest of the pipeline masters: ``source`` restored (in memory), or
    ``source`` itself when restoration is off, found nothing to change, was already done
    for this job (``job.restoration`` set), or the input is too long (see the module doc).
    Bad options raise ValueError (the CLI checks them before this)."""
    if job.restoration is not None:
        return source
    mode = str(job.restore if job.restore is not None else "auto")
    if restoration_off(job):
        job.restoration = {"mode": "off", "findings": []}
        return source
    nbytes = source.frames * source.channels * 4
    if nbytes > job.restore_max_bytes:
        limit_min = job.restore_max_bytes / (source.channels * 4 * source.sample_rate) / 60.0
        why = (f"{source.frames / source.sample_rate / 60.0:.1f} min is too long for "
               f"restoration, which holds the whole signal in memory (at most "
               f"{limit_min:.1f} min at {source.sample_rate} Hz, {source.channels} "
               f"channel{'s' if source.channels != 1 else ''})")
        if explicit(job):
            spec = str(job.restore if job.restore is not None else "auto").strip().lower()
            asked = [opt for opt, on in ((f"--restore {spec}", spec not in OFF + ("auto",)),
                                         ("--denoise", job.denoise is not None),
                                         ("--mono-bass", job.mono_bass_hz is not None)) if on]
            # name what asked for it: "--restore off" alone does not help with --denoise
            raise UserError(f"{why}; leave out {' and '.join(asked)} (with the default "
                            f"--restore auto it is skipped with a warning)", job.name)
        job.warnings.append(f"restoration skipped: {why}")
        job.restoration = {"mode": mode, "skipped": why, "findings": []}
        return source

    from automaster.restore import restore

    progress = progress or Progress()
    progress.stage("restore", source.frames)
    # the stages return new arrays; a copy only guards the caller's own array (a file
    # source is read into a fresh one)
    whole = materialize(source)
    finite = np.isfinite(whole.data).all(axis=0)
    if not finite.all():  # before the stages: their filters would smear it and warn
        raise InputError(f"contains NaN or infinite samples (first at "
                         f"{int(np.argmin(finite)) / source.sample_rate:.3f} s)", job.name)
    data = np.array(whole.data, dtype=np.float32) if whole is source else whole.data
    result = restore(data, source.sample_rate, mode, denoise=job.denoise,
                     mono_bass_hz=job.mono_bass_hz)
    del data
    if result.audio.shape != (source.channels, source.frames):
        raise RuntimeError(f"restoration returned shape {result.audio.shape}, expected "
                           f"{(source.channels, source.frames)}")
    progress.advance(source.frames)
    doc = result.to_dict()
    doc["changed"] = bool(result.changed)
    job.restoration = doc
    if not result.changed:
        return source
    if not np.isfinite(result.audio).all():  # a stage's bug must not reach the output
        job.warnings.append("restoration produced non-finite samples and was not used")
        doc["changed"] = False
        return source
    return ArraySource(result.audio, source.sample_rate)
