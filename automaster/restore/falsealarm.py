"""False alarms of the restoration detectors on clean music (issue #10: "never harm a clean
master"): what ``restore(..., "auto")`` finds and changes on held-out corpus excerpts.

The corpus is the one the training builds (``~/.cache/automaster/corpus/manifest.jsonl``);
the held-out (validation) package is ``supertux-data``: whole packages are held out, as in
training. Each excerpt is ``seconds`` long from the middle of a track; every one is run
through :func:`automaster.restore.restore` in auto mode.

For each excerpt and each detector: found or not; for clicks also the isolated outliers
per minute (below the found threshold they are left alone). The change auto made is
measured by :func:`spectrum_change_db`. Call :func:`false_alarm_rate` (the bench helper
prints it), e.g.::

    python -c "from automaster.restore.falsealarm import false_alarm_rate, summary; \\
               print(summary(false_alarm_rate(count=24)))"
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

DEFAULT_MANIFEST = Path.home() / ".cache" / "automaster" / "corpus" / "manifest.jsonl"
HELD_OUT_PACKAGE = "supertux-data"
BAND_FLOOR_DB = 60.0
MIN_HZ = 30.0
AUDIBLE_DB = 0.1  # issue #10: on clean music, auto changes the long-term spectrum by less than this
EDGE_S = 0.1  # an excerpt's cut ends: what a filter's edge handling changes there is a click or thump


def edge_change_db(before: np.ndarray, after: np.ndarray, sample_rate: int) -> float:
    """The largest sample change within ``EDGE_S`` of either end, in dB of the peak of
    ``before`` (channels, samples): a long-term spectrum does not see a thump at a cut."""
    n = max(1, min(int(EDGE_S * sample_rate), before.shape[-1] // 2))
    d = np.abs(np.asarray(after, dtype=np.float64) - before)
    worst = max(float(d[:, :n].max()), float(d[:, -n:].max()))
    peak = float(np.abs(before).max())
    return 20.0 * np.log10(max(worst, 1e-12) / max(peak, 1e-12))


def spectrum_change_db(before: np.ndarray, after: np.ndarray, sample_rate: int) -> dict:
    """Long-term spectrum change in 1/3-octave bands, where the music has energy.

    Power per 1/3-octave band (centres 31.5 Hz up, edges at 2^(+-1/6)) of the channels'
    summed periodograms (Hann, 16384-sample Welch segments). Counted: bands from
    ``MIN_HZ`` up whose level in ``before`` is within ``BAND_FLOOR_DB`` of its loudest band
    (above a lossy codec's cut-off the bands are near-empty, and a relative change there
    means nothing). Returns the largest absolute change in dB, the band where it is, and
    how many bands were counted."""
    from scipy import signal

    b = np.atleast_2d(np.asarray(before, dtype=np.float64))
    a = np.atleast_2d(np.asarray(after, dtype=np.float64))
    n = min(16384, b.shape[-1])
    f, pb = signal.welch(b, sample_rate, nperseg=n)
    _, pa = signal.welch(a, sample_rate, nperseg=n)
    pb, pa = pb.sum(axis=0), pa.sum(axis=0)
    centres = 1000.0 * 2.0 ** (np.arange(-15, 14) / 3.0)
    centres = centres[(centres * 2 ** (1 / 6) >= MIN_HZ) & (centres * 2 ** (1 / 6) < sample_rate / 2)]
    lb, la, kept = [], [], []
    for c in centres:
        sel = (f >= max(c * 2 ** (-1 / 6), MIN_HZ)) & (f < c * 2 ** (1 / 6))
        if sel.any():
            lb.append(pb[sel].sum())
            la.append(pa[sel].sum())
            kept.append(c)
    lb, la, kept = np.array(lb), np.array(la), np.array(kept)
    if lb.size == 0:
        return {"max_change_db": 0.0, "band_hz": None, "bands": 0}
    level = 10 * np.log10(lb + 1e-30)
    use = level >= level.max() - BAND_FLOOR_DB
    change = np.abs(10 * np.log10((la[use] + 1e-30) / (lb[use] + 1e-30)))
    j = int(np.argmax(change))
    return {"max_change_db": float(change[j]), "band_hz": float(kept[use][j]), "bands": int(use.sum())}


def held_out_tracks(manifest: Path | str | None = None, package: str = HELD_OUT_PACKAGE) -> list[Path]:
    """Audio files of the held-out package listed in the corpus manifest (empty when the
    corpus is absent)."""
    path = Path(manifest) if manifest else DEFAULT_MANIFEST
    if not path.is_file():
        return []
    root = path.parent
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("package") == package and (root / row["file"]).is_file():
            out.append(root / row["file"])
    return sorted(out)


def excerpt(path: Path, seconds: float) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 excerpt of ``seconds`` from the middle of a file."""
    info = sf.info(str(path))
    n = int(round(seconds * info.samplerate))
    start = max(0, (info.frames - n) // 2)
    x, sr = sf.read(str(path), start=start, frames=n, dtype="float32", always_2d=True)
    return x.T, sr


def false_alarm_rate(manifest: Path | str | None = None, package: str = HELD_OUT_PACKAGE,
                     seconds: float = 30.0, count: int | None = None) -> dict:
    """Run auto restoration over held-out excerpts; count what each detector found.

    count: the first ``count`` tracks (sorted by path; all when None). Returns the number of
    excerpts and minutes, per detector how many excerpts it fired on (and the fraction), the
    clicks' isolated outliers per minute, the largest spectrum change auto made
    (:func:`spectrum_change_db`), and one row per excerpt."""
    from . import restore

    tracks = held_out_tracks(manifest, package)
    if count is not None:
        tracks = tracks[:count]
    rows = []
    for path in tracks:
        x, sr = excerpt(path, seconds)
        if x.shape[-1] < sr:
            continue
        r = restore(x, sr, "auto")
        found = {f.problem: bool(f.found) for f in r.findings}
        clicks = next((f for f in r.findings if f.problem == "clicks"), None)
        change = spectrum_change_db(x, r.audio, sr)
        rows.append({"file": str(path.name), "seconds": x.shape[-1] / sr, "found": found,
                     "applied": [f.problem for f in r.findings if f.applied and f.found],
                     "click_outliers": clicks.measured["events"] if clicks else 0,
                     "spectrum_change_db": change["max_change_db"], "band_hz": change["band_hz"],
                     "edge_change_db": edge_change_db(x, r.audio, sr),
                     "stage_seconds": {f.problem: round(f.seconds, 3) for f in r.findings}})
    minutes = sum(r["seconds"] for r in rows) / 60.0
    problems = sorted({p for r in rows for p in r["found"]})
    fired = {p: sum(r["found"].get(p, False) for r in rows) for p in problems}
    return {"package": package, "excerpts": len(rows), "minutes": minutes,
            "fired": fired, "fired_fraction": {p: v / max(len(rows), 1) for p, v in fired.items()},
            "click_outliers_per_minute": sum(r["click_outliers"] for r in rows) / max(minutes, 1e-9),
            "max_spectrum_change_db": max((r["spectrum_change_db"] for r in rows), default=0.0),
            "max_edge_change_db": max((r["edge_change_db"] for r in rows), default=-240.0),
            "applied_beyond_dc": sum(1 for r in rows if set(r["applied"]) - {"dc"}),
            "false_positive_rate": sum(1 for r in rows if r["spectrum_change_db"] >= AUDIBLE_DB) / max(len(rows), 1),
            "rows": rows}


def summary(result: dict) -> str:
    """A few lines for a terminal or the README."""
    lines = [f"{result['excerpts']} held-out excerpts ({result['package']}, {result['minutes']:.1f} min): "
             f"auto restoration fired on"]
    for p, v in result["fired"].items():
        lines.append(f"  {p:9s} {v:3d} ({100 * result['fired_fraction'][p]:.0f} %)")
    lines.append(f"  click outliers left alone: {result['click_outliers_per_minute']:.2f}/min")
    lines.append(f"  largest long-term spectrum change (1/3 octave, >= {MIN_HZ:g} Hz): "
                 f"{result['max_spectrum_change_db']:.4f} dB")
    lines.append(f"  largest sample change within {1000 * EDGE_S:g} ms of an excerpt's cut ends: "
                 f"{result['max_edge_change_db']:.1f} dB re its peak")
    lines.append(f"  a fix beyond the always-on DC/subsonic high-pass applied on {result['applied_beyond_dc']} "
                 f"excerpt(s); false-positive rate (change >= {AUDIBLE_DB:g} dB): "
                 f"{100 * result['false_positive_rate']:.1f} %")
    for r in result["rows"]:
        if any(r["found"].values()):
            lines.append(f"  {r['file']}: found {', '.join(k for k, v in r['found'].items() if v)}; "
                         f"change {r['spectrum_change_db']:.3f} dB at {r['band_hz']} Hz")
    return "\n".join(lines)
