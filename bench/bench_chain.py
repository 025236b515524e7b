"""Benchmark: the full mastering chain against pedalboard's comparable chain.

Renders a 3-minute 44.1 kHz stereo track (the bundled example looped, or a
synthetic music-like signal with --synthetic) through the whole chain (7-section
EQ, compressor, saturation, width, true-peak limiter, loudness normalization), and
a training-like batch (16 excerpts of 5 s) forward and backward. pedalboard's
chain (high-pass, two shelves, three peaks, compressor, limiter) runs in the same
process on the same signal. The three timings run interleaved, round by round, in one
subprocess (a slow phase of a shared machine hits all of them alike); the peak memory
(ru_maxrss) of the forward and the batch is measured each in a subprocess of its own.
Every part, pedalboard's too, runs with the allocator setting the product's entry points
use (dsp/memory.py: freed memory is kept for reuse).

    python -m bench.bench_chain            # prints a table
    python -m bench.bench_chain --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SR = 44100
SECONDS = 180
REPEATS = 3
ROUNDS = 7  # interleaved timing rounds (part_timing)
ROOT = Path(__file__).resolve().parents[1]


def _track(synthetic: bool):
    import numpy as np

    n = SR * SECONDS
    example = ROOT / "automaster" / "examples" / "example.ogg"
    if not synthetic and example.exists():
        import soundfile as sf

        x, sr = sf.read(str(example), dtype="float32", always_2d=True)
        if sr != SR:
            from scipy.signal import resample_poly

            x = resample_poly(x, SR, sr, axis=0).astype("float32")
        reps = int(np.ceil(n / len(x)))
        return np.ascontiguousarray(np.tile(x.T, (1, reps))[:, :n]), "bundled example, looped"
    rng = np.random.default_rng(0)
    t = np.arange(n) / SR
    beat = np.zeros(n)
    beat[:: SR // 2] = 1.0  # a kick every 0.5 s
    hit = np.exp(-np.arange(4000) / 600.0) * np.sin(2 * np.pi * 55 * np.arange(4000) / SR)
    kick = np.convolve(beat, hit)[:n]
    chord = sum(0.05 / k * np.sin(2 * np.pi * f * k * t + k) for f in (110.0, 138.6, 164.8) for k in range(1, 9))
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * t / 20.0)  # slow dynamics
    noise = rng.standard_normal((2, n)) * 0.02
    x = 0.6 * kick + swell * chord + noise
    return x.astype(np.float32), "synthetic (kick, harmonics, noise)"


def _best(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up: numba caches, allocator
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _forward_fn(synthetic: bool):
    import torch

    from dsp import MasteringChain

    x_np, source = _track(synthetic)
    chain = MasteringChain(SR)
    x = torch.from_numpy(x_np)[None]
    p = chain.normalize([_PRESET])

    def run():
        with torch.no_grad():
            chain(x, p, ceiling_dbtp=-1.0, target_lufs=-14.0)

    return run, source


def _batch_fn(synthetic: bool):
    import torch

    from dsp import MasteringChain

    x_np, _ = _track(synthetic)
    chain = MasteringChain(SR)
    seg = SR * 5
    starts = [int(i * (x_np.shape[1] - seg) / 15) for i in range(16)]
    x = torch.stack([torch.from_numpy(x_np[:, s : s + seg]) for s in starts])
    base = chain.normalize([_PRESET] * 16)

    def step():
        p = base.clone().requires_grad_(True)
        y = chain(x, p, ceiling_dbtp=-1.0)
        (y * y).mean().backward()

    return step


def _pedalboard_fn(synthetic: bool):
    import pedalboard as pb

    x_np, _ = _track(synthetic)
    board = pb.Pedalboard(
        [
            pb.HighpassFilter(cutoff_frequency_hz=30),
            pb.LowShelfFilter(cutoff_frequency_hz=100, gain_db=2.0, q=0.707),
            pb.PeakFilter(cutoff_frequency_hz=250, gain_db=-2.0, q=1.0),
            pb.PeakFilter(cutoff_frequency_hz=2500, gain_db=1.5, q=1.0),
            pb.PeakFilter(cutoff_frequency_hz=6000, gain_db=1.0, q=1.0),
            pb.HighShelfFilter(cutoff_frequency_hz=10000, gain_db=2.0, q=0.707),
            pb.Compressor(threshold_db=-18, ratio=2.5, attack_ms=10, release_ms=150),
            pb.Limiter(threshold_db=-1.0, release_ms=100),
        ]
    )
    return lambda: board(x_np, SR)


def part_forward(synthetic: bool) -> dict:
    run, source = _forward_fn(synthetic)
    return {"seconds": _best(run, 1), "source": source}


def part_batch(synthetic: bool) -> dict:
    return {"seconds": _best(_batch_fn(synthetic), 1)}


def part_pedalboard(synthetic: bool) -> dict:
    return {"seconds": _best(_pedalboard_fn(synthetic), 1)}


def part_timing(synthetic: bool) -> dict:
    """The three timings in one process, interleaved round by round, so that a slow
    phase of a shared machine hits each of them alike (the ratio is measured in the same
    rounds); the best of ROUNDS per part, and the median of the per-round ratios."""
    fns = {"forward": _forward_fn(synthetic)[0], "pedalboard": _pedalboard_fn(synthetic), "batch": _batch_fn(synthetic)}
    for fn in fns.values():  # warm-up: numba caches, allocator
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ratios = sorted(f / p for f, p in zip(times["forward"], times["pedalboard"]))
    return {**{k: min(v) for k, v in times.items()}, "ratio_median": ratios[len(ratios) // 2],
            "rounds": ROUNDS}


def part_baseline(synthetic: bool) -> dict:
    import torch  # noqa: F401  (the import's own footprint is the baseline)

    _track(synthetic)
    return {"seconds": 0.0}


# a moderate mastering setting in physical units, the same for every run
_PRESET = {
    "eq.highpass.cutoff_hz": 30.0,
    "eq.low_shelf.cutoff_hz": 100.0, "eq.low_shelf.gain_db": 2.0,
    "eq.low_mid.center_hz": 250.0, "eq.low_mid.gain_db": -2.0, "eq.low_mid.q": 1.0,
    "eq.mid.center_hz": 1000.0, "eq.mid.gain_db": 0.5, "eq.mid.q": 0.7,
    "eq.presence.center_hz": 3000.0, "eq.presence.gain_db": 1.5, "eq.presence.q": 1.0,
    "eq.high_shelf.cutoff_hz": 10000.0, "eq.high_shelf.gain_db": 2.0,
    "multiband.crossover_low_hz": 150.0, "multiband.crossover_high_hz": 3000.0,
    "multiband.low.threshold_db": -6.0, "multiband.low.ratio": 2.5,
    "multiband.mid.threshold_db": -8.0, "multiband.mid.ratio": 2.0,
    "multiband.high.threshold_db": -12.0, "multiband.high.ratio": 2.0,
    "multiband.attack_ms": 10.0, "multiband.release_ms": 150.0,
    "saturation.amount": 0.2, "width.width": 1.1, "width.mono_below_hz": 80.0, "limiter.release_ms": 100.0,
}

PARTS = {"forward": part_forward, "batch": part_batch, "pedalboard": part_pedalboard, "baseline": part_baseline,
         "timing": part_timing}


def _run_part(name: str, synthetic: bool) -> dict:
    cmd = [sys.executable, "-m", "bench.bench_chain", "--part", name] + (["--synthetic"] if synthetic else [])
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(f"bench part {name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=sorted(PARTS))
    ap.add_argument("--synthetic", action="store_true", help="use the synthetic track instead of the example")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.part:
        from dsp.memory import keep_freed_memory

        keep_freed_memory()
        res = PARTS[args.part](args.synthetic)
        res["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(json.dumps(res))
        return 0

    # peak memory: each part alone in its own process; times: all three interleaved in one
    res = {name: _run_part(name, args.synthetic) for name in ("baseline", "forward", "batch", "timing")}
    import torch

    fwd, batch, base, tim = res["forward"], res["batch"], res["baseline"], res["timing"]
    summary = {
        "track": fwd["source"],
        "threads": torch.get_num_threads(),
        "rounds": tim["rounds"],
        "chain_forward_s": round(tim["forward"], 3),
        "realtime_factor": round(SECONDS / tim["forward"], 1),
        "pedalboard_s": round(tim["pedalboard"], 3),
        "chain_vs_pedalboard": round(tim["forward"] / tim["pedalboard"], 2),
        "chain_vs_pedalboard_median_of_rounds": round(tim["ratio_median"], 2),
        "batch16x5s_fwd_bwd_s": round(tim["batch"], 3),
        "forward_peak_mem_mb": round(fwd["maxrss_mb"] - base["maxrss_mb"], 1),
        "batch_peak_mem_mb": round(batch["maxrss_mb"] - base["maxrss_mb"], 1),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"3-minute 44.1 kHz stereo track: {summary['track']}; torch threads {summary['threads']}; "
          f"best of {summary['rounds']} interleaved rounds")
    print(f"{'chain forward (EQ, comp, sat, width, TP limiter, loudness)':62s} {tim['forward']:7.3f} s  "
          f"realtime x{summary['realtime_factor']}")
    print(f"{'pedalboard (HP, 2 shelves, 3 peaks, comp, limiter)':62s} {tim['pedalboard']:7.3f} s")
    print(f"{'ratio chain / pedalboard (target <= 1.0)':62s} {summary['chain_vs_pedalboard']:7.2f}"
          f"   (median of the rounds' ratios {summary['chain_vs_pedalboard_median_of_rounds']:.2f})")
    print(f"{'batch 16 x 5 s stereo, forward+backward (target < 0.5 s)':62s} {tim['batch']:7.3f} s")
    print(f"{'peak memory over baseline: forward / batch':62s} {summary['forward_peak_mem_mb']:.0f} MB / "
          f"{summary['batch_peak_mem_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
