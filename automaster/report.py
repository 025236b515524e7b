"""``--report``: OUT.report.json and OUT.report.png next to the output file.

The JSON holds loudness, true peak, loudness range and crest factor before and after,
the settings, the normalization gain, 1/6-octave smoothed long-term spectra and the
compressor and limiter gain-reduction traces (minimum per time bucket). The PNG shows
the same four things (with the restoration's findings in words above the settings), plus
a row for ``translation`` when present (playback systems and decoded codec figures,
:mod:`automaster.translate.report`). matplotlib (Agg backend) is imported only when a PNG is drawn.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from automaster.errors import OutputError, one_line


def report_paths(output: str | os.PathLike) -> tuple[Path, Path]:
    """(OUT.report.json, OUT.report.png) for an output file OUT."""
    out = Path(output)
    return out.with_name(out.name + ".report.json"), out.with_name(out.name + ".report.png")


def smooth_spectrum(freqs: np.ndarray, before_db: np.ndarray, after_db: np.ndarray,
                    points: int = 160, fraction: float = 6.0) -> dict[str, list]:
    """1/``fraction``-octave smoothing of power spectra (dB) onto ``points`` log frequencies."""
    if freqs.size == 0:
        return {"frequencies_hz": [], "before_db": [], "after_db": []}
    nyq = float(freqs[-1])
    grid = np.geomspace(20.0, max(40.0, 0.98 * nyq), points)
    half = 2.0 ** (0.5 / fraction)

    def smooth(db: np.ndarray) -> list:
        if db.size == 0:
            return []
        p = 10.0 ** (db / 10.0)
        out = []
        for f in grid:
            sel = (freqs >= f / half) & (freqs <= f * half)
            v = p[sel].mean() if sel.any() else p[int(np.argmin(np.abs(freqs - f)))]
            out.append(round(float(10.0 * np.log10(max(v, 1e-20))), 2))
        return out

    return {"frequencies_hz": np.round(grid, 1).tolist(), "before_db": smooth(before_db),
            "after_db": smooth(after_db)}


def _atomic_write(path: Path, write) -> None:
    from automaster.io import new_temp_file

    tmp = new_temp_file(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, np.integer)):
        return _clean(obj.item())
    return obj


def report_document(report: dict[str, Any], settings: dict[str, float],
                    output: str | None = None) -> dict[str, Any]:
    """The JSON-ready report: the pipeline's report plus settings and output name."""
    from automaster.settings import rounded

    from automaster.describe import describe

    doc = dict(report)
    if output is not None:
        doc["output"] = output
    doc["settings"] = rounded(settings)
    doc["settings_in_words"] = describe(settings, report)
    return _clean(doc)


def write_report(output: str | os.PathLike, report: dict[str, Any],
                 settings: dict[str, float]) -> tuple[Path, Path]:
    """Write OUT.report.json and OUT.report.png; returns their paths."""
    json_path, png_path = report_paths(output)
    doc = report_document(report, settings, os.fspath(output))
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    try:
        _atomic_write(json_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        _atomic_write(png_path, lambda tmp: draw_report(doc, tmp))
    except OSError as e:
        raise OutputError(f"cannot write the report ({one_line(e)})", json_path) from None
    return json_path, png_path


def restoration_lines(doc: dict | None) -> list[str]:
    """The text report's lines for ``report["restoration"]``: each problem found, with
    what was done (or the suggestion). Nothing when restoration was off or skipped (a
    warning says so) or found nothing."""
    if not doc:
        return []
    lines = []
    for f in doc.get("findings", []):
        if f.get("found"):
            line = f"{f.get('problem')}: {f.get('summary')}"
            if f.get("suggestion") and not f.get("applied"):
                line += f" ({f['suggestion']})"
            lines.append(line)
    return lines


def restoration_words(restoration: dict[str, Any] | None, width: int = 90) -> list[str]:
    """The restoration's findings in words for the PNG (wrapped at ``width`` characters):
    what was found and done, or that nothing was found; [] when restoration was off."""
    import textwrap

    if not restoration or restoration.get("mode") == "off":
        return []

    def wrap(text: str) -> list[str]:
        return textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="    ")

    head = [f"restoration ({restoration.get('mode')})"]
    if restoration.get("skipped"):
        return head + wrap(f"skipped: {restoration['skipped']}")
    found = [f for f in restoration.get("findings", []) if f.get("found")]
    if not found:
        return head + wrap("nothing to repair found")
    lines = head
    for text in restoration_lines(restoration):
        lines += wrap(text)
    return lines


def quiet_missing_glyphs(draw):
    """``draw`` without matplotlib's "Glyph N missing from font(s)" warnings: a title or
    file name in CJK or with an emoji is drawn as boxes by the bundled DejaVu font (the
    JSON keeps the exact text); the warnings were printed on stderr, two lines per glyph."""
    import functools

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
            return draw(*args, **kwargs)

    return wrapper


@quiet_missing_glyphs
def draw_report(doc: dict[str, Any], path: str | os.PathLike) -> None:
    """Render the report document as a PNG (2x2 panels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    translation = doc.get("translation") or {}
    rows = 3 if translation else 2
    fig = Figure(figsize=(13, 4.5 * rows), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 2)
    name = Path(str(doc.get("output") or doc.get("input", ""))).name
    fig.suptitle(f"automaster report: {name}  (target {doc.get('target_lufs')} LUFS, "
                 f"ceiling {doc.get('ceiling_dbtp')} dBTP, setting from {doc.get('source')})",
                 fontsize=11)

    ax = axes[0, 0]
    spec = doc.get("spectrum") or {}
    f = spec.get("frequencies_hz") or []
    if f:
        if spec.get("before_db"):
            ax.semilogx(f, spec["before_db"], label="before (at the master's loudness)", color="tab:gray")
        if spec.get("after_db"):
            ax.semilogx(f, spec["after_db"], label="after", color="tab:blue")
        if spec.get("reference_db"):
            ax.semilogx(f, spec["reference_db"], label="reference (at the master's loudness)", color="tab:green",
                        linestyle="--")
        ax.legend(fontsize=8)
    ax.set_title("Long-term spectrum (1/6 octave), equal loudness")
    ax.set_xlabel("Hz")
    ax.set_ylabel("dB")
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[0, 1]
    keys = [("integrated_lufs", "LUFS"), ("true_peak_dbtp", "dBTP"),
            ("loudness_range_lu", "LRA LU"), ("crest_db", "crest dB")]
    before, after = doc.get("before") or {}, doc.get("after") or {}
    xs = np.arange(len(keys))
    vb = [before.get(k) if before.get(k) is not None else 0.0 for k, _ in keys]
    va = [after.get(k) if after.get(k) is not None else 0.0 for k, _ in keys]
    ax.bar(xs - 0.2, vb, 0.4, label="before", color="tab:gray")
    ax.bar(xs + 0.2, va, 0.4, label="after", color="tab:blue")
    for x, b, a in zip(xs, vb, va):
        ax.annotate(f"{b:.1f}", (x - 0.2, b), ha="center", va="bottom" if b >= 0 else "top",
                    fontsize=8)
        ax.annotate(f"{a:.1f}", (x + 0.2, a), ha="center", va="bottom" if a >= 0 else "top",
                    fontsize=8)
    ax.set_xticks(xs, [label for _, label in keys])
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_title("Loudness, true peak, loudness range, crest")
    ax.legend()

    ax = axes[1, 0]
    gr = doc.get("gain_reduction") or {}
    for key, color in (("low", "tab:brown"), ("mid", "tab:orange"), ("high", "tab:olive"), ("limiter", "tab:red")):
        tr = gr.get(key)
        if tr and tr.get("time_s"):
            label = key if key == "limiter" else f"{key} band"
            ax.plot(tr["time_s"], tr["gain_db"], label=label, color=color, linewidth=0.8)
    ax.set_title("Gain reduction (min per bucket)")
    ax.set_xlabel("s")
    ax.set_ylabel("dB")
    ax.grid(True, alpha=0.3)
    if any((gr.get(k) or {}).get("time_s") for k in ("low", "mid", "high", "limiter")):
        ax.legend()

    ax = axes[1, 1]
    ax.axis("off")
    words = doc.get("settings_in_words") or {}
    lines = []
    for group, items in words.items():
        lines.append(group)
        lines.extend(f"  {line}" for line in items)
    if doc.get("model"):
        lines.append(f"model: {doc['model']}")
    restoration = restoration_words(doc.get("restoration"))
    if restoration:
        lines = restoration + [""] + lines
    ax.text(0.0, 1.0, "\n".join(lines), family="monospace", fontsize=7.5, va="top", wrap=True)
    ax.set_title("Restoration and settings" if restoration else "Settings")

    if translation:
        from automaster.translate.report import draw_translation

        draw_translation(translation, axes[2, 0], axes[2, 1])

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, format="png")
