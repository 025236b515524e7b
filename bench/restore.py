"""Benchmark: what restoration costs on a 3-minute track (issue #10, section 3).

Prints, for one 3-minute 44.1 kHz stereo track (the bundled example looped, or ``--file``):
- each restoration stage's time with ``--restore auto`` (clipping, dc, hum, clicks,
  polarity, noise measurement; from the stages' own timers, ``Finding.seconds``), their
  total, and the wall time of the whole ``restore()`` call;
- the noise reduction's time on its own (``--denoise``, never part of auto);
- the master's time (``automaster.master`` in-process, model and chain warm, best of
  ``--repeats``) with ``restore="off"`` and ``restore="auto"``, and their ratio;
- the same for the CLI in a fresh process, as a user runs it (imports included), the two
  modes alternating.
The bar: auto at most 1.2x off on a clean track, both ways (``--strict`` exits 1 when it
is missed).

    python -m bench.restore                  # 3 min, 3 repeats (a few minutes on 2 cores)
    python -m bench.restore --smoke          # 20 s, 1 repeat: does it run
    python -m bench.restore --file track.flac --json out.json

The false-positive measurement on held-out music is ``python -m bench.restore_fp``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BAR_RATIO = 1.2


def load_track(path: Path | None, seconds: float) -> tuple[np.ndarray, int]:
    """(channels, samples) float32: ``path`` (or the bundled example) looped or cut to
    ``seconds``, stereo."""
    src = path or ROOT / "automaster" / "examples" / "example.ogg"
    x, sr = sf.read(str(src), dtype="float32", always_2d=True)
    if x.shape[1] == 1:
        x = np.repeat(x, 2, axis=1)
    x = x[:, :2]
    n = int(round(seconds * sr))
    x = np.tile(x, (int(np.ceil(n / len(x))), 1))[:n]
    return np.ascontiguousarray(x.T), sr


def stage_times(x: np.ndarray, sr: int, denoise: float) -> dict:
    from automaster.restore import restore

    t0 = time.perf_counter()
    r = restore(x, sr, "auto")
    wall = time.perf_counter() - t0
    stages = {f.problem: f.seconds for f in r.findings}
    applied = [f.problem for f in r.findings if f.applied]
    t0 = time.perf_counter()
    d = restore(x, sr, "off", denoise=denoise)
    denoise_wall = time.perf_counter() - t0
    noise = next((f.seconds for f in d.findings if f.problem == "noise"), denoise_wall)
    return {"stages_s": stages, "stages_total_s": sum(stages.values()), "restore_wall_s": wall,
            "applied": applied, "denoise_s": noise, "denoise_amount": denoise,
            "findings": [line for line in r.lines()]}


def master_times(x: np.ndarray, sr: int, repeats: int) -> dict:
    import automaster

    automaster.master(x[:, : 5 * sr], sr, restore="auto")  # warm: model, numba, imports
    out = {}
    for mode in ("off", "auto"):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = automaster.master(x, sr, restore=mode)
            times.append(time.perf_counter() - t0)
        out[mode] = {"best_s": min(times), "all_s": times,
                     "restore_lap_s": r.report.get("timings_s", {}).get("restore")}
    out["ratio"] = out["auto"]["best_s"] / out["off"]["best_s"]
    return out


def cli_times(x: np.ndarray, sr: int, repeats: int) -> dict:
    """The CLI in a fresh process (imports, model, restoration, read, master, write), as a
    user runs it, ``--restore off`` and ``auto`` alternating; best of ``repeats`` each."""
    import os
    import subprocess
    import tempfile

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = {"off": [], "auto": []}
    with tempfile.TemporaryDirectory(prefix="bench_restore_") as d:
        src = Path(d) / "track.wav"
        sf.write(str(src), x.T, sr, subtype="PCM_24")
        for _ in range(repeats):
            for mode in ("off", "auto"):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "automaster", str(src), "-o", str(Path(d) / "out.wav"),
                                "--force", "-q", "--restore", mode], check=True, env=env, cwd=d)
                out[mode].append(time.perf_counter() - t0)
    res = {m: {"best_s": min(v), "all_s": v} for m, v in out.items()}
    res["ratio"] = res["auto"]["best_s"] / res["off"]["best_s"]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.restore", description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", type=Path, help="a track to use instead of the bundled example")
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--denoise", type=float, default=0.5, help="amount for the noise-reduction timing")
    ap.add_argument("--smoke", action="store_true", help="20 s, 1 repeat (checks that it runs)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--strict", action="store_true", help=f"exit 1 when auto/off > {BAR_RATIO}")
    args = ap.parse_args(argv)
    if args.smoke:
        args.seconds, args.repeats = 20.0, 1

    import torch

    torch.set_num_threads(1)
    x, sr = load_track(args.file, args.seconds)
    name = args.file.name if args.file else "example.ogg (looped)"
    print(f"track: {name}, {x.shape[1] / sr:.0f} s, {sr} Hz, {x.shape[0]} ch")

    st = stage_times(x, sr, args.denoise)
    print("restoration stages (--restore auto):")
    for k, v in st["stages_s"].items():
        print(f"  {k:<10} {v:7.2f} s{'  (applied)' if k in st['applied'] else ''}")
    print(f"  {'total':<10} {st['stages_total_s']:7.2f} s   (restore() wall {st['restore_wall_s']:.2f} s)")
    print(f"  {'denoise':<10} {st['denoise_s']:7.2f} s   (--denoise {args.denoise:g}, on request only)")
    for line in st["findings"]:
        print(f"    {line}")

    mt = master_times(x, sr, args.repeats)
    off, auto = mt["off"]["best_s"], mt["auto"]["best_s"]
    print(f"master (best of {args.repeats}): --restore off {off:.2f} s, --restore auto {auto:.2f} s "
          f"(restore lap {mt['auto']['restore_lap_s']} s)")
    print(f"ratio auto/off, in-process: {mt['ratio']:.3f}")
    ct = cli_times(x, sr, args.repeats)
    print(f"CLI, fresh process (best of {args.repeats}, alternating): --restore off "
          f"{ct['off']['best_s']:.2f} s, --restore auto {ct['auto']['best_s']:.2f} s")
    print(f"ratio auto/off, CLI: {ct['ratio']:.3f}")
    ok = max(mt["ratio"], ct["ratio"]) <= BAR_RATIO
    print(f"bar: auto at most {BAR_RATIO}x off, in-process and CLI: {'met' if ok else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"track": name, "seconds": x.shape[1] / sr, "sample_rate": sr,
                                         "restoration": st, "master": mt, "cli": ct,
                                         "bar_ratio": BAR_RATIO, "met": ok}, indent=2))
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
