"""Mastering quality on held-out corpus excerpts: how close does each system get back to the
original master, starting from a de-mastered copy?

Usage::

    python bench/quality.py                          # 16 held-out excerpts of 12 s, all systems
    python bench/quality.py --items 32 --model runs/<run>/model.safetensors --json out.json
    python bench/quality.py --folder MY_MASTERS/ --systems input,limiter,model

Excerpts come from the validation split (whole packages held out, as in training) of the
corpus manifest (``--manifest``) or of a folder (``--folder``), and are de-mastered with
``train.demaster.Demasterer`` from a fixed seed (``--seed``), so every run scores the same
pairs. Systems, all run on the same pairs in one process:

  input      (a) the de-mastered input as is
  limiter    (b) loudness normalization + true-peak limiter only: the chain at identity
                 settings, target = the original's loudness, ceiling -1 dBTP
  matchering (c) Matchering 2 with the original as its reference (temp wav files)
  model      (d) automaster.master one-click with the model (default: checkpoints/default),
                 target = the original's loudness (as (b), so loudness is not what differs)
  reference  (e) automaster.master in reference mode, the original as its reference
                 (loudness matched to the reference, as Matchering does)

Metrics (``train/metrics.py``, lower is better): MRSTFT distance, mel distance (dB),
spectral-centroid error (Hz), crest-factor error (dB), RMS error (dB), LUFS error (LU), each
against the original. The bar: (d) beats (b) on MRSTFT and mel distance, (e) beats (c).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from train.metrics import METRIC_NAMES, METRIC_UNITS, loudness_lufs, quality_metrics  # noqa: E402

SYSTEMS = ("input", "limiter", "matchering", "model", "reference")
LABELS = {"input": "(a) input", "limiter": "(b) limiter", "matchering": "(c) matchering", "model": "(d) model", "reference": "(e) reference"}
CEILING_DBTP = -1.0
DEFAULT_MANIFEST = Path.home() / ".cache" / "automaster" / "corpus" / "manifest.jsonl"


def load_pairs(args: argparse.Namespace) -> list[tuple[torch.Tensor, torch.Tensor, dict]]:
    """Held-out (original, de-mastered, info) excerpts, (2, samples) float32 each."""
    from train import data as tdata
    from train.demaster import Demasterer

    cfg = tdata.ExcerptConfig(excerpt_s=args.seconds, sample_rate_hz=args.sample_rate, channels="stereo", seed=args.seed)
    if args.folder:
        ds = tdata.FolderDataset(args.folder, cfg, group_by="file", split=args.split, val_fraction=args.val_fraction)
    else:
        ds = tdata.ManifestDataset(args.manifest, cfg, split=args.split, val_fraction=args.val_fraction)
    demaster = Demasterer(args.sample_rate)
    pairs = []
    n = min(args.items, len(ds)) if args.unique_tracks else args.items
    for i in range(n):
        ex = ds.sample(i % len(ds))
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + i)
        degraded, params = demaster(ex.audio, g)
        pairs.append((ex.audio.float(), degraded, {"track": str(ex.track.path.name), "start_s": round(ex.start_s, 2), "demaster": params.to_dict()}))
    return pairs


def system_limiter(sr: int) -> Callable:
    from dsp import MasteringChain

    chain = MasteringChain(sr)

    def run(degraded: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        target = float(loudness_lufs(original[None], sr))
        with torch.no_grad():
            return chain(degraded[None], chain.identity_params(1), ceiling_dbtp=CEILING_DBTP, target_lufs=target)[0]

    return run


def system_matchering(sr: int, tmp: Path) -> Callable:
    import matchering as mg
    import soundfile as sf

    mg.log(default_handler=lambda *_: None)  # quiet

    def run(degraded: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        tgt, ref, out = tmp / "target.wav", tmp / "reference.wav", tmp / "result.wav"
        sf.write(str(tgt), degraded.numpy().T, sr, subtype="FLOAT")
        sf.write(str(ref), original.numpy().T, sr, subtype="FLOAT")
        mg.process(target=str(tgt), reference=str(ref), results=[mg.Result(str(out), subtype="FLOAT", use_limiter=True)])
        y, out_sr = sf.read(str(out), dtype="float32", always_2d=True)
        if out_sr != sr:
            raise ValueError(f"matchering wrote {out_sr} Hz, expected {sr}")
        return torch.from_numpy(np.ascontiguousarray(y.T))

    return run


def system_automaster(sr: int, model: str | None, reference: bool) -> Callable:
    import automaster

    from model import load_checkpoint

    net = load_checkpoint(model or "default", device="cpu")

    def run(degraded: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        if reference:
            res = automaster.master(degraded.numpy(), sr, target_lufs=None, ceiling_dbtp=CEILING_DBTP,
                                    reference=original.numpy(), reference_sample_rate=sr, model=net, device="cpu")
        else:
            target = float(loudness_lufs(original[None], sr))
            res = automaster.master(degraded.numpy(), sr, target_lufs=target, ceiling_dbtp=CEILING_DBTP, model=net, device="cpu")
        return torch.from_numpy(np.ascontiguousarray(res.audio, dtype=np.float32))

    return run


def evaluate(pairs, systems: dict[str, Callable], sr: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Mean metrics per system and seconds spent per system."""
    per: dict[str, dict[str, list[float]]] = {s: {m: [] for m in METRIC_NAMES} for s in systems}
    seconds = {s: 0.0 for s in systems}
    for i, (original, degraded, _) in enumerate(pairs):
        for name, fn in systems.items():
            t = time.perf_counter()
            y = degraded if name == "input" else fn(degraded, original)
            seconds[name] += time.perf_counter() - t
            n = min(y.shape[-1], original.shape[-1])
            if n < original.shape[-1] - 2:
                raise ValueError(f"{name} returned {y.shape[-1]} samples for {original.shape[-1]}")
            m = quality_metrics(y[None, :, :n].float(), original[None, :, :n], sr)
            for k, v in m.items():
                per[name][k].append(float(v[0]))
        print(f"  item {i + 1}/{len(pairs)} done", file=sys.stderr, flush=True)
    means = {s: {k: float(np.mean(v)) for k, v in d.items()} for s, d in per.items()}
    return means, seconds


def format_table(means: dict[str, dict[str, float]], seconds: dict[str, float], n: int) -> str:
    head = f"{'system':<16}" + "".join(f"{(m + (' ' + METRIC_UNITS[m] if METRIC_UNITS[m] else '')):>13}" for m in METRIC_NAMES) + f"{'s/item':>9}"
    lines = [head, "-" * len(head)]
    for s, vals in means.items():
        lines.append(f"{LABELS[s]:<16}" + "".join(f"{vals[m]:>13.4g}" for m in METRIC_NAMES) + f"{seconds[s] / n:>9.2f}")
    return "\n".join(lines)


def verdict(means: dict[str, dict[str, float]]) -> list[tuple[str, bool | None]]:
    """The bar, as (statement, passed) rows; None where a system was not run."""
    out: list[tuple[str, bool | None]] = []
    for metric in ("mrstft", "mel"):
        ok = means["model"][metric] < means["limiter"][metric] if {"model", "limiter"} <= means.keys() else None
        out.append((f"(d) model beats (b) limiter on {metric}", ok))
    for metric in ("mrstft", "mel"):
        ok = means["reference"][metric] < means["matchering"][metric] if {"reference", "matchering"} <= means.keys() else None
        out.append((f"(e) reference beats (c) matchering on {metric}", ok))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="corpus manifest (default: %(default)s)")
    ap.add_argument("--folder", type=Path, default=None, help="use a folder of masters instead of the corpus")
    ap.add_argument("--split", default="val", choices=("val", "train", "all"), help="which split to draw from")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="as in training (data.val_fraction)")
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--sample-rate", type=int, default=44100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--unique-tracks", action="store_true", help="at most one excerpt per track")
    ap.add_argument("--model", default=None, help="checkpoint path or registry name for (d)/(e) (default: default)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list from {', '.join(SYSTEMS)}")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the bar is not met")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SYSTEMS))
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    sr = args.sample_rate
    t0 = time.perf_counter()
    pairs = load_pairs(args)
    print(f"{len(pairs)} held-out excerpts of {args.seconds:g} s ({args.split} split, seed {args.seed}) "
          f"loaded and de-mastered in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="am-quality-") as tmp:
        factories: dict[str, Callable[[], Callable]] = {
            "input": lambda: (lambda d, o: d),
            "limiter": lambda: system_limiter(sr),
            "matchering": lambda: system_matchering(sr, Path(tmp)),
            "model": lambda: system_automaster(sr, args.model, reference=False),
            "reference": lambda: system_automaster(sr, args.model, reference=True),
        }
        systems = {}
        for s in SYSTEMS:
            if s not in wanted:
                continue
            try:
                systems[s] = factories[s]()
            except ValueError as e:  # CheckpointError: no default model shipped yet
                print(f"skipping {LABELS[s]}: {e} (pass --model PATH)", file=sys.stderr)
        means, seconds = evaluate(pairs, systems, sr)
    print(format_table(means, seconds, len(pairs)))
    rows = verdict(means)
    for text, ok in rows:
        print(f"{'PASS' if ok else ('FAIL' if ok is not None else 'n/a ')}  {text}")
    if args.json:
        payload: dict[str, Any] = {
            "items": len(pairs), "seconds": args.seconds, "seed": args.seed, "split": args.split,
            "model": args.model or "default", "means": means, "seconds_per_item": {k: v / len(pairs) for k, v in seconds.items()},
            "bar": [{"check": t, "passed": ok} for t, ok in rows], "pairs": [p[2] for p in pairs],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    failed = any(ok is False for _, ok in rows)
    return 1 if (failed and args.strict) else 0


if __name__ == "__main__":
    raise SystemExit(main())
