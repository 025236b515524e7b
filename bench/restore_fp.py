"""Benchmark: does ``--restore auto`` leave clean, mastered music alone? (issue #10:
"never harm a clean master")

On held-out excerpts of the corpus (the validation split, whole packages held out as in
training: ``train.data.ManifestDataset``), restoration runs with ``auto`` and this prints:
- how often each detector reported its problem on this clean music, and the fraction of
  excerpts where auto applied a fix beyond the DC/subsonic high-pass (which it always
  applies, by design);
- the long-term spectral change: before and after, Welch power spectra summed over the
  channels, smoothed to 1/6 octave as in the report (``automaster.report.smooth_spectrum``),
  the largest absolute difference above 30 Hz (in bands within 60 dB of the loudest,
  i.e. where there is music) per excerpt; the max over excerpts;
- the false-positive rate: the fraction of excerpts whose long-term spectrum above 30 Hz
  changed by 0.1 dB or more (the issue's bar for "nothing audible").

    python -m bench.restore_fp                     # 24 excerpts of 30 s
    python -m bench.restore_fp --items 4 --seconds 10   # a quick look
    python -m bench.restore_fp --json fp.json

Skips (exit 0, with a message) when the corpus manifest is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_MANIFEST = Path.home() / ".cache" / "automaster" / "corpus" / "manifest.jsonl"
AUDIBLE_DB = 0.1
MIN_HZ = 30.0
FLOOR_DB = 60.0  # bands this far below the loudest one hold no music (e.g. above a codec's lowpass)


def spectral_change_db(before: np.ndarray, after: np.ndarray, sr: int) -> float:
    """Largest |after - before| (dB) of the 1/6-octave smoothed long-term spectra above
    MIN_HZ, over the bands within FLOOR_DB of the loudest band (a -180 dB band above a
    codec's lowpass would otherwise count a rounding error as a change of tens of dB);
    (channels, samples) inputs, power summed over the channels."""
    from scipy.signal import welch

    from automaster.report import smooth_spectrum

    f, pb = welch(before.astype(np.float64), sr, nperseg=16384, axis=-1)
    _, pa = welch(after.astype(np.float64), sr, nperseg=16384, axis=-1)
    tiny = 1e-30
    s = smooth_spectrum(f, 10 * np.log10(pb.sum(axis=0) + tiny), 10 * np.log10(pa.sum(axis=0) + tiny))
    grid = np.asarray(s["frequencies_hz"])
    before_db = np.asarray(s["before_db"])
    diff = np.abs(np.asarray(s["after_db"]) - before_db)
    sel = (grid >= MIN_HZ) & (before_db >= before_db.max() - FLOOR_DB)
    return float(diff[sel].max()) if sel.any() else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.restore_fp", description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    ap.add_argument("--split", default="val", choices=("val", "train", "all"))
    ap.add_argument("--val-fraction", type=float, default=0.1, help="as in training (data.val_fraction)")
    ap.add_argument("--items", type=int, default=24, help="excerpts (one per track while tracks last)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not args.manifest.is_file():
        print(f"skipped: no corpus manifest at {args.manifest}")
        return 0

    from automaster.restore import restore
    from train import data as tdata

    sr = 44100
    cfg = tdata.ExcerptConfig(excerpt_s=args.seconds, sample_rate_hz=sr, channels="keep", seed=args.seed)
    ds = tdata.ManifestDataset(args.manifest, cfg, split=args.split, val_fraction=args.val_fraction)
    rows = []
    for i in range(min(args.items, len(ds))):
        ex = ds.sample(i)
        x = ex.audio.numpy()
        r = restore(x, sr, "auto")
        fired = [f.problem for f in r.findings if f.applied and f.problem != "dc"]
        found = [f.problem for f in r.findings if f.found]
        change = spectral_change_db(x, r.audio, sr)
        rows.append({"track": ex.track.path.name, "start_s": round(ex.start_s, 2), "fired": fired,
                     "found": found,
                     "spectral_change_db": round(change, 4), "lines": r.lines()})
        print(f"{i + 1:3d} {ex.track.path.name[:40]:<40} {ex.start_s:7.1f} s  change {change:6.3f} dB  "
              f"fixed: {', '.join(fired) or '-'}; found: {', '.join(found) or '-'}", flush=True)
    n = len(rows)
    if not n:
        print("no excerpts")
        return 0
    fired = sum(1 for r in rows if r["fired"])
    per_problem: dict[str, int] = {}
    for r in rows:
        for p in r["found"]:
            per_problem[p] = per_problem.get(p, 0) + 1
    worst = max(r["spectral_change_db"] for r in rows)
    audible = sum(1 for r in rows if r["spectral_change_db"] >= AUDIBLE_DB)
    print(f"excerpts: {n} ({args.seconds:g} s, {args.split} split)")
    print(f"detectors that reported a problem (excerpts): {per_problem or 'none'}")
    print(f"auto applied a fix beyond the always-on DC/subsonic high-pass: {fired}/{n} = {fired / n:.1%}")
    print(f"max long-term spectral change above {MIN_HZ:g} Hz: {worst:.3f} dB")
    print(f"false-positive rate (change >= {AUDIBLE_DB} dB above {MIN_HZ:g} Hz): {audible}/{n} = {audible / n:.1%}")
    if args.json:
        args.json.write_text(json.dumps({"items": rows, "fired_fraction": fired / n, "found_per_problem": per_problem,
                                         "max_spectral_change_db": worst,
                                         "false_positive_rate": audible / n}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
