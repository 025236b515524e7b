"""Benchmark: a whole master of a 3-minute stereo track, next to Matchering.

Times, in one run on the same 3-minute 44.1 kHz stereo file (the bundled example,
looped):
- automaster in-process (``automaster.master`` on an array, model and chain warm);
- the automaster CLI as a fresh process (imports, model load, read, master, write);
- Matchering 2 (``matchering.process``) mastering the same file to a reference
  (the example itself, 3 dB louder), also as in-process wall time.
With ``--long`` it also masters a 60-minute stereo file through the CLI and reports
the child process's peak resident memory.

    python -m bench.bench_master [--long]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SR = 44100


def _example(seconds: float) -> np.ndarray:
    """(samples, 2) float32: the bundled example looped to ``seconds``."""
    x, sr = sf.read(str(ROOT / "automaster" / "examples" / "example.ogg"), dtype="float32", always_2d=True)
    if sr != SR:
        from scipy.signal import resample_poly

        x = resample_poly(x, SR, sr, axis=0).astype(np.float32)
    if x.shape[1] == 1:
        x = np.repeat(x, 2, axis=1)
    n = int(seconds * SR)
    return np.tile(x, (int(np.ceil(n / len(x))), 1))[:n]


def _cli(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one CLI process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "automaster", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"automaster failed: {res.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long", action="store_true", help="also master a 60-minute file (slow)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="automaster-bench-"))
    track = _example(180.0)
    src = tmp / "track.wav"
    ref = tmp / "reference.wav"
    sf.write(str(src), track, SR, subtype="PCM_24")
    sf.write(str(ref), np.clip(track * 10 ** (3 / 20), -1, 1), SR, subtype="PCM_24")
    rows: dict[str, float] = {}

    import automaster

    automaster.master(track.T[:, : SR * 5], SR)  # warm-up: imports, model, numba caches
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        automaster.master(track.T, SR)
        times.append(time.perf_counter() - t0)
    rows["automaster in-process (s)"] = min(times)

    cli_times = [_cli([str(src), "-o", str(tmp / "out.wav"), "--force", "--quiet"])[0] for _ in range(args.repeats)]
    rows["automaster CLI process (s)"] = min(cli_times)

    import matchering as mg

    mg.log(lambda *a, **k: None)
    m_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        mg.process(target=str(src), reference=str(ref), results=[mg.pcm24(str(tmp / "matchering.wav"))])
        m_times.append(time.perf_counter() - t0)
    rows["Matchering 2 (s)"] = min(m_times)
    rows["CLI / Matchering (target <= 0.5)"] = rows["automaster CLI process (s)"] / rows["Matchering 2 (s)"]
    rows["in-process / Matchering (target <= 0.15)"] = rows["automaster in-process (s)"] / rows["Matchering 2 (s)"]

    if args.long:
        long_path = tmp / "long.wav"
        with sf.SoundFile(str(long_path), "w", SR, 2, subtype="PCM_16") as f:
            for _ in range(20):  # 20 x 3 min = 60 min
                f.write(track)
        wall, peak = _cli([str(long_path), "-o", str(tmp / "long_out.wav"), "--force", "--quiet"])
        rows["60-min CLI master (s)"] = wall
        rows["60-min CLI peak RSS (MB)"] = peak

    width = max(len(k) for k in rows)
    print("3-minute 44.1 kHz stereo track (bundled example, looped); best of", args.repeats)
    for k, v in rows.items():
        print(f"{k:{width}s}  {v:8.3f}")
    print(json.dumps({k: round(v, 3) for k, v in rows.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
