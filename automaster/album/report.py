"""album.json and album.png: the album report.

JSON: the album (integrated loudness, true peak, loudness range, target, ceiling,
loudness mode, the common gain and the final trim, the spread of track loudness before
and after), the sequence with its reasons, and per track: file, title, input, start and
duration (seconds and samples), pregap, fades, what follows it, input and output
loudness, true peak, loudness range, planned loudness, features (energy, tempo, key) and
the settings (physical units; also the prediction before cohesion). Plus the short-term
loudness (3 s windows) of the whole album, at most about 2000 points.

PNG: the loudness over time of the whole album with the track boundaries, and the
tracks' loudness before and after.
"""

from __future__ import annotations

import math
from typing import Any

from automaster.report import _clean, quiet_missing_glyphs


def _spread(values: list[Any]) -> float | None:
    v = [x for x in values if isinstance(x, (int, float)) and math.isfinite(x)]
    return round(max(v) - min(v), 3) if len(v) > 1 else (0.0 if v else None)


def album_document(res: Any, files: list[str], audio_name: str) -> dict[str, Any]:
    from automaster.settings import rounded

    sr = res.sample_rate
    o = res.options
    tracks = []
    for k, (t, p, f) in enumerate(zip(res.tracks, res.layout.tracks, files), 1):
        nxt = res.transitions[k - 1] if k - 1 < len(res.transitions) else None
        tracks.append({
            "number": k,
            "title": t.title,
            "file": f,
            "input": str(t.path),
            "given_position": t.index + 1,
            "start_s": round(p.cut / sr, 6),
            "duration_s": round((p.end - p.cut) / sr, 6),
            "start_sample": p.cut,
            "frames": p.end - p.cut,
            "music_start_s": round(p.music_start / sr, 6),
            "music_end_s": round(p.music_end / sr, 6),
            "pregap_s": None if p.pregap is None else round(p.pregap / sr, 6),
            "fade_in_s": t.fade_in, "fade_out_s": t.fade_out,
            "next": None if nxt is None else ({"crossfade_s": round(p.xfade_out / sr, 6)}
                                              if p.xfade_out else
                                              {"gap_s": round((res.layout.tracks[k].music_start
                                                               - p.music_end) / sr, 6)}),
            "offset_lu": t.offset,
            "planned_lufs": round(t.planned_lufs, 3),
            "input_measurement": t.input,
            "lufs": t.output.get("integrated_lufs"),
            "true_peak_dbtp": t.output.get("true_peak_dbtp"),
            "loudness_range_lu": t.output.get("loudness_range_lu"),
            "output_measurement": t.output,
            "features": t.features.as_dict() if t.features else None,
            "setting_source": t.master_report.get("setting_source"),
            "reference_match": t.master_report.get("reference_match"),
            "settings": rounded(t.settings),
            "predicted_settings": rounded(t.predicted),
            "restoration": t.restoration,
            "warnings": t.warnings,
        })
    m = res.measured
    doc = {
        "album": {
            "file": audio_name,
            "title": res.playlist.title, "performer": res.playlist.performer,
            "catalog": res.playlist.catalog,
            "sample_rate": sr, "channels": int(res.album.shape[0]),
            "frames": int(res.album.shape[1]), "duration_s": round(res.album.shape[1] / sr, 3),
            "integrated_lufs": m.get("integrated_lufs"),
            "true_peak_dbtp": m.get("true_peak_dbtp"),
            "loudness_range_lu": m.get("loudness_range_lu"),
            "measurement": m,
            "reference": o.reference_report,
            "target_lufs": o.target_lufs, "ceiling_dbtp": o.ceiling_dbtp,
            "limiter_ceiling_dbtp": None if res.limiter_ceiling_dbtp is None
            else round(res.limiter_ceiling_dbtp, 3),
            "loudness_mode": o.loudness, "cohesion": o.cohesion,
            "album_gain_db": round(res.plan.album_gain_db, 3),
            "trim_db": round(res.trim_db, 3),
            "track_loudness_spread_lu": _spread([t["lufs"] for t in tracks]),
            "input_loudness_spread_lu": _spread([t["input_measurement"]["integrated_lufs"]
                                                 for t in tracks]),
            "fixes": res.fixes,
        },
        "sequence": {**res.sequence,
                     "tracks": [{"number": k, "title": t["title"], "given_position":
                                 t["given_position"], "reason": r,
                                 **(t["features"] or {})}
                                for k, (t, r) in enumerate(zip(tracks, res.sequence["reasons"]),
                                                           1)]},
        "tracks": tracks,
        "translation": {"codec": res.codec} if res.codec else None,
        "loudness_over_time": res.loudness_curve,
        "warnings": res.warnings,
        "timings_s": res.timings,
    }
    return _clean(doc)


def restoration_panel(doc: dict[str, Any], max_lines: int = 12) -> list[str]:
    """The PNG's restoration panel: per track, what restoration found and did (the
    single-track report's lines, :func:`automaster.report.restoration_lines`), or that it
    found nothing / was off / was skipped. At most ``max_lines`` lines (the rest counted);
    [] when restoration was off for every track."""
    from automaster.report import restoration_lines

    lines, quiet, off = [], [], 0
    for tr in doc["tracks"]:
        r = tr.get("restoration")
        if not r or r.get("mode") == "off":
            off += 1
            continue
        label = f"{tr['number']}. {tr['title']}"
        if r.get("skipped"):
            lines.append(f"{label}: skipped ({r['skipped']})")
            continue
        found = restoration_lines(r)
        if found:
            lines.extend(f"{label}: {line}" for line in found)
        else:
            quiet.append(str(tr["number"]))
    if off == len(doc["tracks"]):
        return []
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [f"... and {len(lines) - max_lines + 1} more (album.json)"]
    if quiet:
        lines.append(f"nothing to repair in track{'s' if len(quiet) > 1 else ''} {', '.join(quiet)}")
    if off:
        lines.append(f"restoration off for {off} track{'s' if off > 1 else ''}")
    return lines


@quiet_missing_glyphs
def draw_album(doc: dict[str, Any], path: str) -> None:
    """The PNG: loudness over time with track boundaries; loudness per track; what
    restoration found and did per track (when it ran)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panel = restoration_panel(doc)
    rows = 0.35 + 0.17 * len(panel) if panel else 0.0   # inches for the text panel
    fig = Figure(figsize=(13, 8 + rows), dpi=90)
    FigureCanvasAgg(fig)
    if panel:
        ax, bx, cx = fig.subplots(3, 1, gridspec_kw={"height_ratios": [3 * 8 / 5, 2 * 8 / 5, rows]})
        cx.axis("off")
        cx.set_title("restoration (before mastering)", fontsize=9, loc="left")
        cx.text(0.0, 1.0, "\n".join(panel), fontsize=8, va="top", ha="left", family="monospace",
                transform=cx.transAxes)
    else:
        ax, bx = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 2]})
    a = doc["album"]
    fig.suptitle(f"automaster album: {a.get('title') or a['file']}  ({a['loudness_mode']} "
                 f"loudness, {a.get('integrated_lufs')} LUFS integrated, true peak "
                 f"{a.get('true_peak_dbtp')} dBTP, target {a['target_lufs']} LUFS)",
                 fontsize=11)
    curve = doc.get("loudness_over_time") or {}
    t = curve.get("time_s") or []
    v = [np.nan if x is None else x for x in curve.get("short_term_lufs") or []]
    if t:
        ax.plot(t, v, color="tab:blue", linewidth=0.9, label="short-term loudness (3 s)")
    ax.axhline(a["target_lufs"], color="tab:gray", linestyle="--", linewidth=0.8,
               label="target")
    if a.get("integrated_lufs") is not None:
        ax.axhline(a["integrated_lufs"], color="tab:green", linewidth=0.8,
                   label="album integrated")
    finite = [x for x in v if np.isfinite(x)]
    top = max(finite) + 3 if finite else 0
    for tr in doc["tracks"]:
        ax.axvline(tr["start_s"], color="black", linewidth=0.6)
        ax.text(tr["start_s"], top, f" {tr['number']}. {tr['title']}", fontsize=7,
                rotation=0, va="top")
    ax.set_ylim(max(min(finite) - 3, -60) if finite else -60, top + 1)
    ax.set_xlabel("album time, s")
    ax.set_ylabel("LUFS")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)

    n = len(doc["tracks"])
    xs = np.arange(n)
    vin = [tr["input_measurement"].get("integrated_lufs") or np.nan for tr in doc["tracks"]]
    vout = [tr["lufs"] if tr["lufs"] is not None else np.nan for tr in doc["tracks"]]
    bx.plot(xs, vin, "o", label="input", color="tab:gray")
    bx.plot(xs, vout, "s", label="master", color="tab:blue")
    bx.set_xticks(xs, [f"{tr['number']}" for tr in doc["tracks"]])
    bx.set_ylabel("integrated LUFS")
    bx.set_title(f"track loudness: spread {a.get('input_loudness_spread_lu')} LU in, "
                 f"{a.get('track_loudness_spread_lu')} LU out", fontsize=9)
    bx.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, format="png")
