"""One-command GPU check: prints one JSON object (and writes it with --out).

Parts, each timed and reported even when another fails:
  parity     the CUDA parity tests (tests/test_dsp_cuda.py) and the Triton-interpreter tests
  forward    the chain's forward on a 3-minute stereo track (-14 LUFS, -1 dBTP), vs the CPU
  batch      forward + backward on a batch of 64 x 5 s stereo excerpts
  cli        a 3-minute master through the CLI with --device cuda
  train      a 200-step training run with AMP (experiment=smoke, generated data)
Budget: under 5 minutes on an H200 (the first call compiles the Triton kernels).

The GPU machine has no network and lacks a few packages; fetch their wheels here first
(bench/gpu_wheels.sh writes the git-ignored .whl/, about 2 MB), then run on the device,
carrying .whl:

    bench/gpu_wheels.sh
    # device command (run tool, carry [".whl"], timeout_s 420):
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && \
        python3 bench/gpu_check.py --out $OUT/gpu_check.json

Locally (no GPU) `python bench/gpu_check.py --device cpu` runs the same parts on the CPU
(slowly; use --skip to leave parts out).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SR = 44100
PARTS = ("parity", "forward", "batch", "cli", "train")


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, repeats: int = 3) -> tuple[float, float]:
    """(first call incl. compilation, best of ``repeats`` later calls) in seconds."""
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return first, best


def _params(chain, batch: int, seed: int):
    import torch

    return 0.15 + 0.7 * torch.rand(batch, chain.num_params, generator=torch.Generator().manual_seed(seed))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(ROOT)) if p)
    return env


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def part_parity(device: str) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_dsp_cuda.py",
           "tests/test_dsp_triton.py"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    return {"ok": res.returncode == 0, "seconds": time.perf_counter() - t0, "summary": _tail(res.stdout, 2),
            "stderr": _tail(res.stderr) if res.returncode else ""}


def part_forward(device: str) -> dict:
    import torch

    from automaster.testing import synth_mix
    from dsp import MasteringChain, integrated_loudness, true_peak

    x = torch.from_numpy(synth_mix(180.0, SR, seed=3))[None]
    chain = MasteringChain(SR)
    p = _params(chain, 1, 0)
    xd, pd, cd = x.to(device), p.to(device), chain.to(device)
    out = {}
    with torch.no_grad():
        first, best = _timed(lambda: out.__setitem__("y", cd(xd, pd, ceiling_dbtp=-1.0, target_lufs=-14.0)), device)
        y = out["y"].float().cpu()
        ref = MasteringChain(SR)(x, p, ceiling_dbtp=-1.0, target_lufs=-14.0)
    return {"seconds": best, "first_call_seconds": first, "realtime_factor": 180.0 / best,
            "lufs": float(integrated_loudness(y, SR)[0]), "dbtp": float(true_peak(y, SR)[0]),
            "max_abs_diff_vs_cpu": float((y - ref).abs().max())}


def part_batch(device: str) -> dict:
    import torch

    from automaster.testing import synth_mix
    from dsp import MasteringChain

    seg = 5 * SR
    x = torch.stack([torch.from_numpy(synth_mix(5.0, SR, seed=100 + i)) for i in range(64)]).to(device)
    chain = MasteringChain(SR).to(device)
    base = _params(chain, 64, 1).to(device)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        p = base.clone().requires_grad_(True)
        y = chain(x, p, ceiling_dbtp=-1.0)
        (y * y).mean().backward()
        if not bool(torch.isfinite(p.grad).all()):
            raise RuntimeError("non-finite parameter gradient")

    first, best = _timed(step, device)
    mem = torch.cuda.max_memory_allocated() / 2**20 if torch.device(device).type == "cuda" else None
    return {"seconds": best, "first_call_seconds": first, "samples": seg, "peak_memory_mib": mem}


def part_cli(device: str) -> dict:
    import soundfile as sf

    from automaster.testing import synth_mix

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "mix.wav", Path(tmp) / "master.wav"
        sf.write(src, synth_mix(180.0, SR, seed=5).T, SR, subtype="FLOAT")
        cmd = [sys.executable, "-m", "automaster", str(src), "-o", str(dst), "--device", device, "--quiet"]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180)
        sec = time.perf_counter() - t0
        info = {"ok": res.returncode == 0 and dst.exists(), "rc": res.returncode, "seconds": sec,
                "stderr": _tail(res.stderr)}
        if dst.exists():
            y, sr = sf.read(dst, dtype="float32", always_2d=True)
            info["output_seconds"] = y.shape[0] / sr
    return info


def part_train(device: str, steps: int = 200) -> dict:
    amp = "bf16" if device.startswith("cuda") else "off"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "train", "experiment=smoke", f"trainer.device={device}", f"trainer.amp={amp}",
               f"trainer.max_steps={steps}", "trainer.max_minutes=3", f"trainer.val_every={max(1, steps // 2)}",
               f"trainer.ckpt_every={max(1, steps // 2)}",
               "trainer.log_every=50", "trainer.progress=false", f"hydra.run.dir={tmp}/run"]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
        info = {"ok": res.returncode == 0, "rc": res.returncode, "seconds": time.perf_counter() - t0, "amp": amp, "steps": steps,
                "stderr": _tail(res.stderr) if res.returncode else ""}
        summary = Path(tmp) / "run" / "summary.json"
        if summary.exists():
            data = json.loads(summary.read_text())
            info["summary"] = {k: data.get(k) for k in ("step", "seconds", "validation", "stopped_early")}
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    ap.add_argument("--out", default=None, help="also write the JSON object here")
    ap.add_argument("--train-steps", type=int, default=200)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    report: dict = {"device": args.device, "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import triton

        report["triton"] = triton.__version__
    except ImportError:
        report["triton"] = None
    if args.device.startswith("cuda"):
        from dsp._ops import device_problem

        t0 = time.perf_counter()
        report["self_check"] = {"problem": device_problem(args.device), "seconds": time.perf_counter() - t0}
    start = time.perf_counter()
    for name in PARTS:
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        try:
            extra = {"steps": args.train_steps} if name == "train" else {}
            report[name] = globals()[f"part_{name}"](args.device, **extra)
        except Exception as exc:  # noqa: BLE001 - report every part, whatever fails
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc()[-1500:]}
        report[name].setdefault("wall_seconds", time.perf_counter() - t0)
    report["total_seconds"] = time.perf_counter() - start
    text = json.dumps(report, default=float)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    failed = [k for k in PARTS if isinstance(report.get(k), dict) and report[k].get("ok") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
