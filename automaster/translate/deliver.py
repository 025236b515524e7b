"""Write a master to a lossy file, or a lossless one with ``--codec-safe``, so that the
decoded true peak meets the ceiling (see :mod:`automaster.translate.codec`).

The master is rendered into a float buffer (memory, or an unnamed temporary file for long
inputs: :class:`automaster.pipeline.FloatStore`), encoded with every codec to check, decoded
and measured. When a decoded true peak passes the ceiling, the same settings are rendered
again with the limiter's ceiling lowered by the overshoot plus a margin (the loudness
target stays; the model is not asked again, since its prediction depends on the ceiling).
The report's ``after`` is then the decoded file's measurement for a lossy output, and
``translation.codec`` lists every try.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from automaster.translate.codec import CODEC_SAFE, OUTPUT_CODECS, Codec, fit_ceiling

__all__ = ["needs_codec_loop", "master_to_file", "codecs_for"]


def codecs_for(fmt: str, codec_safe: bool) -> tuple[Codec | None, list[Codec]]:
    """(the output's own codec or None, every codec to check) for an output format."""
    out = OUTPUT_CODECS.get(fmt)
    codecs = [out] if out is not None else []
    if codec_safe:
        codecs += [c for c in CODEC_SAFE if c not in codecs]
    return out, codecs


def needs_codec_loop(output: str | os.PathLike, codec_safe: bool) -> bool:
    from automaster.io import output_format

    return bool(codecs_for(output_format(output), codec_safe)[1])


class _StoreSource:
    """The rendered master in a FloatStore, as a Source."""

    def __init__(self, store, sample_rate: int, frames: int) -> None:
        self.store, self.sample_rate = store, int(sample_rate)
        self.channels, self.frames = store.channels, int(frames)

    def read(self, start: int, stop: int):
        return self.store.read(start, stop)


def master_to_file(source, job, output: str | os.PathLike, bit_depth: str | None = None, *,
                   codec_safe: bool = False, progress=None):
    """Master ``source`` with ``job`` into ``output`` through the codec ceiling loop.

    Returns the pipeline's MasterResult (audio None) with the report completed: the user's
    ceiling, ``translation.codec`` (tries, decoded figures per codec) and, for a lossy
    output, ``after`` measured on the decoded file (``after_before_encoding`` keeps the
    float master's figures).
    """
    from automaster.io import (AudioWriter, discard_temp_file, new_temp_file, output_format,
                               release_temp_file)
    from automaster.pipeline import FloatStore, master_source, restore_input

    # restored once (the renders below all master the restored signal, restoration off)
    source = restore_input(source, job, progress)
    output = Path(output)
    fmt = output_format(output)
    out_codec, codecs = codecs_for(fmt, codec_safe)
    if not codecs:
        raise ValueError(f"nothing to check for {output} (lossless and no codec_safe)")
    sr, ch, frames = source.sample_rate, source.channels, source.frames
    ceiling = job.ceiling_dbtp
    store = FloatStore(ch, frames, job.memory_bytes, job.tmp_dir)
    pos = [0]
    state: dict[str, Any] = {"first": None, "last": None}
    kept: list[Path] = []

    def write(block) -> None:
        store.write(pos[0], block)
        pos[0] += block.shape[1]

    def rewind() -> None:
        pos[0] = 0

    def render(limiter_ceiling: float | None):
        first = state["first"]
        if first is None:
            j = job
        else:  # the same settings, a lower limiter ceiling, the same loudness target
            # every other field as the caller's job (restoration already done: it is reused)
            j = dataclasses.replace(job, target_lufs=first.report.get("target_lufs"),
                                    ceiling_dbtp=limiter_ceiling, intensity=1.0,
                                    settings=dict(first.settings), settings_path=None,
                                    reference=None, model=None, restore="off", warnings=[])
        rewind()
        result = master_source(source, j, write, progress, rewind=rewind)
        if pos[0] != frames:
            raise RuntimeError(f"the pipeline wrote {pos[0]} frames, expected {frames}")
        state["last"] = result
        if first is None:
            state["first"] = result
        return _StoreSource(store, sr, frames)

    def new_output_part() -> Path:
        for old in kept:
            discard_temp_file(old)
        kept.clear()
        kept.append(new_temp_file(output))
        return kept[-1]

    # every try masters the same restored source with the same setting: the later ones
    # reuse the first's analysis and pre-limiter render (only the limiter's ceiling moves)
    cache: dict[str, Any] = {}
    job.prelimiter = cache
    if out_codec is not None and out_codec.coded_rate(sr) != sr and job.notify is not None:
        job.notify(f"{out_codec.describe()} codes {out_codec.coded_rate(sr)} Hz: the "
                   f"{sr} Hz master is resampled for encoding")
    try:
        fit = fit_ceiling(render, ceiling, codecs,
                          keep=(out_codec, new_output_part) if out_codec is not None else None,
                          tmp_dir=job.tmp_dir)
        result = state["last"]
        if out_codec is not None:
            part = kept.pop()
            os.replace(part, output)
            release_temp_file(part)
        else:
            src = _StoreSource(store, sr, frames)
            with AudioWriter(output, sr, ch, bit_depth, frames_hint=frames) as w:
                for s in range(0, frames, 1 << 20):
                    w.write(src.read(s, min(s + (1 << 20), frames)))
    finally:
        for old in kept:
            discard_temp_file(old)
        store.close()
        job.prelimiter = None
        from automaster.pipeline.job import close_prelimiter

        close_prelimiter(cache)

    report = result.report
    first = state["first"]
    if first is not result:  # where the setting came from: the first render's story
        for key in ("source", "model", "reference", "filled_from_identity"):
            if key in first.report:
                report[key] = first.report[key]
            else:
                report.pop(key, None)
        report["warnings"] = list(first.report.get("warnings", [])) + [
            w for w in report.get("warnings", []) if w not in first.report.get("warnings", [])]
    warnings = report.setdefault("warnings", [])
    doc = fit.as_dict()
    doc["output_codec"] = out_codec.name if out_codec is not None else None
    doc["codec_safe"] = bool(codec_safe)
    if ceiling is not None and not fit.met:
        worst = max(fit.checks, key=lambda c: c.true_peak_dbtp)
        warnings.append(f"the decoded true peak ({worst.true_peak_dbtp:.2f} dBTP as "
                        f"{worst.codec.name}) is still above the {ceiling:g} dBTP ceiling after "
                        f"{fit.encodes} encodes (limiter ceiling "
                        f"{fit.limiter_ceiling_dbtp:.2f} dBTP)")
    report["ceiling_dbtp"] = ceiling
    if out_codec is not None:
        mine = next(c for c in fit.checks if c.codec == out_codec)
        report["after_before_encoding"] = report.get("after")
        report["after"] = mine.measurement.as_dict()
        report["output_sample_rate"] = mine.decoded_rate
        report["output_codec"] = out_codec.describe()
    report.setdefault("translation", {})["codec"] = doc
    return result


def codec_summary(report: dict[str, Any]) -> str | None:
    """One line for the CLI: decoded true peaks and encodes, or None without a codec loop."""
    doc = (report.get("translation") or {}).get("codec")
    if not doc:
        return None
    parts = []
    for c in doc.get("codecs", []):
        tp = c.get("decoded_true_peak_dbtp")
        parts.append(f"{c['codec']} {tp:.2f}" if isinstance(tp, (int, float)) and math.isfinite(tp)
                     else f"{c['codec']} n/a")
    n = doc.get("encodes", 0)
    return (f"decoded true peak (dBTP): {', '.join(parts)}; {n} encode{'s' if n != 1 else ''}"
            f", limiter ceiling {doc.get('limiter_ceiling_dbtp')} dBTP")
