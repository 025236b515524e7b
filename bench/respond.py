"""Responsiveness: does the model correct a known tonal error, and do its settings differ
between mixes? Held-out corpus excerpts only (whole packages held out, as in training).

Usage::

    python bench/respond.py                         # 12 held-out excerpts of 12 s, default model
    python bench/respond.py --items 24 --model runs/<run>/model.safetensors --json out.json

For each excerpt, four versions are made at the excerpt's own integrated loudness:
+6 / -6 dB low shelf at 150 Hz and +6 / -6 dB high shelf at 5 kHz (RBJ, Q 0.707). Each
version and the unmodified excerpt are mastered one-click (``automaster.master``, -14 LUFS,
-1 dBTP). Band level = mean dB of the long-term spectrum (Welch, 8192 points, channels
averaged) over 40-150 Hz (bass) or 6-14 kHz (treble), minus its mean over 300 Hz-3 kHz.
error in = band(version) - band(excerpt); error out = band(master(version)) -
band(master(excerpt)); correction = 1 - error out / error in (1 = fully corrected,
0 = untouched, < 0 = made worse). Reported per direction, and the mean.

Settings spread: the median over parameters of the standard deviation of the normalized
settings predicted for the unmodified excerpts (0 = the same preset for every mix).
Plausibility: per parameter, the share of excerpts whose setting sits on a range edge
(normalized value within 0.01 of 0 or 1), and its quartiles in physical units.

Also: the dynamics the model picks for a -8 LUFS (club) and a -16 LUFS master of the same
mix: mean absolute change of the normalized multiband settings between the two targets.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_MANIFEST = Path.home() / ".cache" / "automaster" / "corpus" / "manifest.jsonl"
VERSIONS = (("bass +6", "low", 6.0), ("bass -6", "low", -6.0), ("treble +6", "high", 6.0), ("treble -6", "high", -6.0))
SHELF_HZ = {"low": 150.0, "high": 5000.0}
BAND_HZ = {"low": (40.0, 150.0), "high": (6000.0, 14000.0)}
MID_HZ = (300.0, 3000.0)
EDGE = 0.01


def band_level_db(x: np.ndarray, sr: int, band: tuple[float, float]) -> float:
    """Mean dB of the long-term spectrum over ``band`` minus its mean over 300 Hz-3 kHz."""
    from scipy.signal import welch

    f, p = welch(x, fs=sr, nperseg=8192, axis=-1)
    p = p.mean(axis=0) + 1e-20
    db = 10.0 * np.log10(p)

    def mean(lo: float, hi: float) -> float:
        sel = (f >= lo) & (f <= hi)
        return float(db[sel].mean())

    return mean(*band) - mean(*MID_HZ)


def shelf(x: np.ndarray, sr: int, kind: str, gain_db: float) -> np.ndarray:
    """RBJ shelf (the chain's own design) applied with scipy, loudness restored."""
    from scipy.signal import sosfilt

    from dsp.biquad import high_shelf_coefficients, low_shelf_coefficients
    from train.metrics import loudness_lufs

    design = low_shelf_coefficients if kind == "low" else high_shelf_coefficients
    t = lambda v: torch.tensor([float(v)], dtype=torch.float64)  # noqa: E731
    c = design(t(SHELF_HZ[kind]), t(gain_db), t(1 / math.sqrt(2)), sr)[0].numpy()
    y = sosfilt(np.array([[c[0], c[1], c[2], 1.0, c[3], c[4]]]), x, axis=-1).astype(np.float32)
    l_x = float(loudness_lufs(torch.from_numpy(x)[None], sr))
    l_y = float(loudness_lufs(torch.from_numpy(y)[None], sr))
    return (y * 10.0 ** ((l_x - l_y) / 20.0)).astype(np.float32)


def load_excerpts(args: argparse.Namespace) -> list[np.ndarray]:
    from train import data as tdata

    cfg = tdata.ExcerptConfig(excerpt_s=args.seconds, sample_rate_hz=args.sample_rate, channels="stereo", seed=args.seed)
    ds = tdata.ManifestDataset(args.manifest, cfg, split="val", val_fraction=0.1)
    return [ds.sample(i % len(ds)).audio.numpy() for i in range(args.items)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--sample-rate", type=int, default=44100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    ap.add_argument("--model", default="default")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)

    import automaster
    from dsp import MasteringChain
    from model import load_checkpoint

    sr = args.sample_rate
    net = load_checkpoint(args.model, device="cpu")
    chain = MasteringChain(sr)
    excerpts = load_excerpts(args)

    def run(x: np.ndarray, target: float = -14.0) -> tuple[np.ndarray, dict]:
        res = automaster.master(x, sr, target_lufs=target, ceiling_dbtp=-1.0, model=net, device="cpu")
        return res.audio, res.settings

    corrections: dict[str, list[float]] = {name: [] for name, _, _ in VERSIONS}
    settings, dyn_change = [], []
    for i, x in enumerate(excerpts):
        m0, s0 = run(x)
        settings.append(s0)
        base_in = {k: band_level_db(x, sr, BAND_HZ[k]) for k in BAND_HZ}
        base_out = {k: band_level_db(m0, sr, BAND_HZ[k]) for k in BAND_HZ}
        for name, kind, gain in VERSIONS:
            v = shelf(x, sr, kind, gain)
            mv, _ = run(v)
            err_in = band_level_db(v, sr, BAND_HZ[kind]) - base_in[kind]
            err_out = band_level_db(mv, sr, BAND_HZ[kind]) - base_out[kind]
            corrections[name].append(1.0 - err_out / err_in)
        _, club = run(x, -8.0)
        _, quiet = run(x, -16.0)
        pc, pq = chain.normalize([club]), chain.normalize([quiet])
        idx = [j for j, n in enumerate(chain.param_names) if n.startswith("multiband.")]
        dyn_change.append(float((pc[0, idx] - pq[0, idx]).abs().mean()))
        print(f"item {i}: " + " ".join(f"{n} {corrections[n][-1]:+.2f}" for n, _, _ in VERSIONS), flush=True)

    norm = chain.normalize(settings).numpy()
    spread = float(np.median(norm.std(axis=0)))
    per_dir = {n: float(np.mean(v)) for n, v in corrections.items()}
    mean_corr = float(np.mean(list(per_dir.values())))
    edges = {n: float(np.mean((norm[:, j] < EDGE) | (norm[:, j] > 1 - EDGE))) for j, n in enumerate(chain.param_names)}
    quart = {n: [round(float(q), 4) for q in np.percentile([s[n] for s in settings], [25, 50, 75])] for n in chain.param_names}
    print("\ncorrection per direction: " + ", ".join(f"{n} {v:.2f}" for n, v in per_dir.items()))
    print(f"mean correction {mean_corr:.2f} (bar >= 0.5, every direction >= 0.3)")
    print(f"settings spread (median std of normalized settings) {spread:.3f} (bar >= 0.05)")
    print(f"dynamics change between -8 and -16 LUFS targets (mean |delta| normalized multiband) {np.mean(dyn_change):.3f}")
    worst = sorted(edges.items(), key=lambda kv: -kv[1])[:5]
    print("share on a range edge (worst 5): " + ", ".join(f"{n} {v:.0%}" for n, v in worst) + " (bar <= 10% each)")
    print("setting quartiles (physical):")
    for n, q in quart.items():
        print(f"  {n:32s} {q}")
    out = {"items": len(excerpts), "correction": per_dir, "mean_correction": mean_corr, "spread": spread,
           "dynamics_change_club_vs_quiet": float(np.mean(dyn_change)), "edge_share": edges, "quartiles": quart}
    print(json.dumps({k: out[k] for k in ("items", "correction", "mean_correction", "spread", "dynamics_change_club_vs_quiet")}))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
