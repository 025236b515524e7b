"""Benchmark: ``automaster album`` on ten 3-minute tracks next to Matchering on each track.

In one run, on the same ten 3-minute 44.1 kHz stereo 24-bit files (the bundled example,
looped, each rotated by a different offset and set to a different level between -6 and
0 dB, so the album has a loudness spread to keep):
- ``automaster album T1..T10 -o DIR`` as one fresh process (imports torch and loads the
  model once; writes album.wav, ten track files, CUE, JSON and PNG);
- Matchering 2 (``matchering.process``) on each track, with the track 3 dB louder as
  its reference (as bench/bench_master.py), summed.
Prints the wall times and the ratio album / Matchering (bar: <= 0.25), and the CPU
times (user + system, all threads) beside them: on a shared, busy machine the wall
times swing with the other jobs' load, the CPU times much less. Also the album
process's peak memory (ru_maxrss) beside the album's size as float32 samples: the
album is mastered in memory.

    python -m bench.bench_album [--tracks 10] [--seconds 180] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SR = 44100


def _tracks(folder: Path, count: int, seconds: float) -> list[Path]:
    from bench.bench_master import _example

    base = _example(seconds + 30.0)
    n = int(seconds * SR)
    paths = []
    for k in range(count):
        gain = 10 ** (-6.0 * ((k * 7) % count) / max(count - 1, 1) / 20.0)
        x = np.roll(base, -int(k * 2.5 * SR), axis=0)[:n] * gain
        p = folder / f"track{k + 1:02d}.wav"
        sf.write(str(p), x, SR, subtype="PCM_24")
        paths.append(p)
    return paths


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-matchering", action="store_true")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="automaster-bench-album-"))
    try:
        paths = _tracks(tmp, args.tracks, args.seconds)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        album_times, album_cpu = [], []
        for r in range(args.repeats):
            out = tmp / f"album{r}"
            c0 = _child_cpu()
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "automaster", "album", *map(str, paths),
                                  "-o", str(out), "-q"], env=env, capture_output=True, text=True)
            album_times.append(time.perf_counter() - t0)
            album_cpu.append(_child_cpu() - c0)
            if res.returncode != 0:
                raise SystemExit(f"automaster album failed: {res.stderr.strip()}")
        doc = json.loads((out / "album.json").read_text())
        rows = {"automaster album, one process (s)": min(album_times),
                "automaster album, CPU time (s)": min(album_cpu),
                # Linux reports ru_maxrss in KiB: the largest child so far, i.e. the album
                "automaster album, peak memory (MB)": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
                "album as float32 samples (MB)": args.tracks * args.seconds * SR * 2 * 4 / 2**20}
        if not args.skip_matchering:
            import matchering as mg

            mg.log(lambda *a, **k: None)
            total, cpu = 0.0, 0.0
            for p in paths:
                ref = tmp / "reference.wav"
                x, _ = sf.read(str(p), dtype="float32")
                sf.write(str(ref), np.clip(x * 10 ** (3 / 20), -1, 1), SR, subtype="PCM_24")
                t0, c0 = time.perf_counter(), time.process_time()
                mg.process(target=str(p), reference=str(ref),
                           results=[mg.pcm24(str(tmp / "matchering.wav"))])
                total += time.perf_counter() - t0
                cpu += time.process_time() - c0
            rows["Matchering 2, each track, total (s)"] = total
            rows["Matchering 2, CPU time (s)"] = cpu
            rows["album / Matchering, wall (bar <= 0.25)"] = \
                rows["automaster album, one process (s)"] / total
            rows["album / Matchering, CPU"] = rows["automaster album, CPU time (s)"] / cpu
        a = doc["album"]
        print(f"{args.tracks} x {args.seconds:g} s, 44.1 kHz stereo 24-bit; album "
              f"{a['integrated_lufs']} LUFS, {a['true_peak_dbtp']} dBTP, track spread "
              f"{a['input_loudness_spread_lu']} -> {a['track_loudness_spread_lu']} LU")
        width = max(len(k) for k in rows)
        for k, v in rows.items():
            print(f"{k:{width}s}  {v:8.3f}")
        print(json.dumps({k: round(v, 3) for k, v in rows.items()}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
