"""Training-state checkpoints without pickle: atomic step folders for exact resume.

Layout of ``<run>/checkpoints/``::

    step_000250/
        model.safetensors, model.json   model.checkpoint.save_checkpoint (loads with automaster --model)
        state.safetensors               optimizer state tensors ("optim.<param index>.<key>"),
                                        RNG states as uint8 tensors ("rng.torch", "rng.cuda.<i>",
                                        "rng.numpy", "rng.python")
        state.json                      step / data position, optimizer param groups and scalar
                                        state, scheduler and grad-scaler state, RNG scalars,
                                        trainer bookkeeping; written last = completeness marker
    latest.json                         {"step": 250, "dir": "step_000250"}

A step folder is written under a temporary name and renamed into place, and
``latest.json`` is replaced atomically, so a kill at any moment leaves either the
previous or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE_VERSION = 1


class StateError(ValueError):
    """A training checkpoint folder that cannot be used (a user-facing, one-line problem)."""


# ----------------------------------------------------------------------------- RNG
def _bytes_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).view(np.uint8).copy())


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """All RNG states of this process -> (uint8 tensors, JSON scalars)."""
    tensors = {"rng.torch": torch.get_rng_state().clone()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s.clone()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = _bytes_tensor(np.asarray(keys, dtype=np.uint32))
    version, internal, gauss = random.getstate()
    tensors["rng.python"] = _bytes_tensor(np.asarray(internal, dtype=np.uint32))
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [int(version), gauss]}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states only where devices exist)."""
    torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([c.to(torch.uint8) for c in cuda[: torch.cuda.device_count()]])
    kind, pos, has_gauss, cached = meta["numpy"]
    keys = tensors["rng.numpy"].numpy().view(np.uint32)
    np.random.set_state((kind, keys, int(pos), int(has_gauss), float(cached)))
    version, gauss = meta["python"]
    internal = tuple(int(v) for v in tensors["rng.python"].numpy().view(np.uint32))
    random.setstate((int(version), internal, gauss))


# ----------------------------------------------------------------------------- optimizer
def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors, JSON): tensors keyed ``optim.<idx>.<key>``."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalar_state": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Load what :func:`optimizer_to_flat` wrote into ``opt`` (same parameter layout)."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, scal in meta["scalar_state"].items():
        state.setdefault(int(idx), {}).update(scal)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """Keep the JSON-serialisable entries of a state_dict (drops callables such as lr lambdas)."""
    out = {}
    for k, v in d.items():
        try:
            json.dumps(v)
        except TypeError:
            continue
        out[k] = v
    return out


# ----------------------------------------------------------------------------- save / load
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_training_checkpoint(
    ckpt_root: str | os.PathLike,
    step: int,
    model: torch.nn.Module,
    training_summary: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    trainer_state: dict[str, Any],
    keep: int = 3,
) -> Path:
    """Write ``step_<step>/`` atomically, point ``latest.json`` at it, prune old ones."""
    from model.checkpoint import save_checkpoint

    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{int(step):07d}"
    final = root / name
    for stale in root.glob(".step_*.tmp-*"):  # left by a run killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".{name}.tmp-{os.getpid()}"
    tmp.mkdir()
    save_checkpoint(tmp / "model", model, training_summary)
    tensors, opt_meta = optimizer_to_flat(optimizer)
    rng_tensors, rng_meta = capture_rng()
    tensors.update(rng_tensors)
    save_file(tensors, str(tmp / "state.safetensors"), metadata={"state_version": str(STATE_VERSION)})
    meta = {
        "state_version": STATE_VERSION,
        "step": int(step),
        "optimizer": opt_meta,
        "scheduler": _jsonable(scheduler.state_dict()) if scheduler is not None else None,
        "scaler": _jsonable(scaler.state_dict()) if scaler is not None and scaler.is_enabled() else None,
        "rng": rng_meta,
        "trainer": trainer_state,
    }
    with open(tmp / "state.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = root / f".latest.json.tmp-{os.getpid()}"
    latest_tmp.write_text(json.dumps({"step": int(step), "dir": name}) + "\n", encoding="utf-8")
    os.replace(latest_tmp, root / "latest.json")
    _fsync_dir(root)
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[: max(0, len(steps) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _inside(root: Path, cand: Path) -> bool:
    """``cand`` (symlinks resolved) is a folder directly inside ``root``."""
    try:
        return cand.resolve().parent == root.resolve()
    except (OSError, RuntimeError):
        return False


def find_latest_checkpoint(path: str | os.PathLike) -> Path | None:
    """A run dir, its ``checkpoints/`` dir or a ``step_*`` dir -> newest complete step dir.

    ``latest.json``'s ``dir`` must name a folder inside the checkpoints folder (after
    resolving symlinks and ``..``); anything else is refused with a StateError, and step
    folders that resolve outside it are ignored.
    """
    p = Path(path)
    if (p / "state.json").exists():
        return p
    root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    latest = root / "latest.json"
    if latest.exists():
        try:
            name = json.loads(latest.read_text(encoding="utf-8"))["dir"]
        except (ValueError, KeyError, TypeError, OSError, RecursionError):
            name = None  # unreadable pointer: fall back to scanning the step folders
        if name is not None:
            if not isinstance(name, str) or not _inside(root, root / name):
                raise StateError(f"{latest}: 'dir' {str(name)[:80]!r} points outside the "
                                 f"checkpoint folder {root}; refusing to load it")
            cand = root / name
            if (cand / "state.json").exists():
                return cand
    complete = sorted(d for d in root.glob("step_*") if (d / "state.json").exists()
                      and _inside(root, d))
    return complete[-1] if complete else None


def load_training_state(
    ckpt_dir: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    restore_rng_state: bool = True,
) -> dict[str, Any]:
    """Restore model weights, optimizer, scheduler, scaler and RNG in place; returns state.json."""
    d = Path(ckpt_dir)
    meta = json.loads((d / "state.json").read_text(encoding="utf-8"))
    if meta.get("state_version") != STATE_VERSION:
        raise ValueError(f"{d}: training state version {meta.get('state_version')!r} is not supported")
    weights = load_file(str(d / "model.safetensors"), device="cpu")
    model.load_state_dict(weights, strict=True)
    tensors = load_file(str(d / "state.safetensors"), device="cpu")
    optimizer_from_flat(optimizer, tensors, meta["optimizer"])
    if scheduler is not None and meta.get("scheduler") is not None:
        sd = scheduler.state_dict()
        sd.update(meta["scheduler"])
        scheduler.load_state_dict(sd)
    if scaler is not None and scaler.is_enabled() and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    if restore_rng_state:
        restore_rng(tensors, meta["rng"])
    return meta
