"""Which torch device a master runs on."""

from __future__ import annotations

from typing import Any

from automaster.errors import UserError
from automaster.pipeline.job import note_once


def resolve_device(device: Any):
    """"auto" | "cpu" | "cuda[:n]" | torch.device -> torch.device (UserError if unusable)."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device or "auto").lower()
    # CUDA is used only after dsp's ops pass a quick self-check there (dsp._ops.device_problem)
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        from dsp._ops import device_problem

        problem = device_problem("cuda")
        if problem:
            note_once("device", f"using the CPU: CUDA failed the self-check ({problem})")
            return torch.device("cpu")
        return torch.device("cuda")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was requested but no CUDA device is available")
        from dsp._ops import device_problem

        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise UserError(f"unknown device {device!r}; use auto, cpu or cuda") from exc
        problem = device_problem(dev)
        if problem:
            raise UserError(f"--device {name} cannot be used: {problem}")
        return dev
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"unknown device {device!r}; use auto, cpu or cuda")
