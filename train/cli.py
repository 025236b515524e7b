"""``automaster-train`` / ``python -m train``: Hydra entry point of the training loop.

Configs live in ``configs/`` (groups data, model, chain, demaster, loss, optim,
trainer, experiment; ``configs/config.yaml`` is the primary). Any key can be
overridden on the command line; ``--multirun`` sweeps. Each run writes its resolved
config, log, metrics.csv, TensorBoard events, checkpoints and final model into its
own folder ``runs/<date>_<time>_<name>/`` (sweeps: ``multirun/<date>_<time>_<name>/<n>/``).

Examples::

    automaster-train experiment=smoke                      # seconds, generated audio
    automaster-train experiment=default                    # the shipped model, corpus manifest
    automaster-train experiment=default trainer.max_minutes=30 trainer.device=cpu
    automaster-train experiment=style data.path=MY_MASTERS/ export=my_style
    automaster-train --multirun experiment=smoke optim.lr=1e-3,3e-4 seed=1,2

Resume after a kill: rerun with the same run folder and ``resume=true``::

    automaster-train experiment=default hydra.run.dir=runs/2025-01-01_12-00-00_default resume=true

(or ``resume=<run folder or checkpoints/step_N folder>`` to continue it in a new folder).

Distributed (DDP; gloo on CPU, NCCL on GPUs; ``trainer.batch_size`` is the global
batch, split across ranks; rank 0 logs and checkpoints). One machine, 4 GPUs::

    torchrun --standalone --nproc_per_node=4 -m train experiment=default trainer.batch_size=32

Two machines with 8 GPUs each (run on both, node_rank 0 and 1; HOST is node 0)::

    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 --rdzv_id=am1 \\
        -m train experiment=default trainer.batch_size=128 hydra.run.dir=/shared/runs/am1

CPU-only DDP (e.g. to test): ``torchrun --standalone --nproc_per_node=2 -m train
experiment=smoke trainer.device=cpu``. All ranks agree on one run folder (rank 0
picks the time stamp); on several nodes give ``hydra.run.dir`` on shared storage.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


def _config_dir() -> Path:
    """AUTOMASTER_CONFIG_DIR if set; else ``train/_configs`` inside an installed wheel
    (pyproject.toml maps the checkout's top-level ``configs/`` there), else ``configs/`` of
    the checkout."""
    from importlib.resources import files

    if os.environ.get("AUTOMASTER_CONFIG_DIR"):
        return Path(os.environ["AUTOMASTER_CONFIG_DIR"])
    packaged = files(__package__ or "train").joinpath("_configs")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "configs"


CONFIG_DIR = _config_dir()
RUN_STAMP_ENV = "AUTOMASTER_RUN_STAMP"


def _share_run_stamp(argv: list[str]) -> list[str]:
    """Under torchrun: join the process group, make all ranks use rank 0's time stamp for
    the run folder, and keep Hydra's files and logging on rank 0 only."""
    from train.loop import init_distributed

    info = init_distributed()
    if not info.enabled:
        return argv
    if any(a in ("-m", "--multirun") for a in argv):
        raise SystemExit("automaster-train: --multirun cannot be combined with torchrun")
    import torch.distributed as dist

    stamp = [time.strftime("%Y-%m-%d_%H-%M-%S") if info.is_main else None]
    dist.broadcast_object_list(stamp, src=0)
    os.environ[RUN_STAMP_ENV] = str(stamp[0])
    if not info.is_main:
        argv = [*argv, "hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none"]
    return argv


class _UserStop(BaseException):
    """A user mistake (bad data, unusable checkpoint folder) travelling out of Hydra, which
    would otherwise print it with a traceback and exit 1. BaseException so that Hydra's
    ``except Exception`` reporting lets it through to :func:`main` (one line, exit 2)."""


def _user_message(e: BaseException) -> str:
    """One line for a user error; an error re-raised from a DataLoader worker carries the
    worker's traceback in its text: keep its last line, the original message."""
    text = str(e)
    if "Original Traceback" in text:
        import re

        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = re.sub(r"^[\w.]+Error: ", "", last.strip())
    return " ".join(text.split())


def _task(cfg: Any) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from train.data import DataError
    from train.loop import ConfigError, train
    from train.state import StateError

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = train(cfg, run_dir)
    except (DataError, StateError, ConfigError) as e:
        raise _UserStop(_user_message(e)) from None
    val = summary.get("validation") or {}
    return val.get("mrstft")  # the value a sweeper would minimize


def main(argv: list[str] | None = None) -> int:
    """Console entry point; ``argv`` defaults to ``sys.argv[1:]`` (Hydra overrides)."""
    import hydra

    if not (CONFIG_DIR / "config.yaml").exists():
        raise SystemExit(f"automaster-train: config tree not found at {CONFIG_DIR} (set AUTOMASTER_CONFIG_DIR)")
    args = list(sys.argv[1:] if argv is None else argv)
    args = _share_run_stamp(args)
    app = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")(_task)
    saved = sys.argv
    sys.argv = [saved[0] if saved else "automaster-train", *args]
    try:
        app()
    except _UserStop as e:
        print(f"automaster-train: error: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        sys.argv = saved
        _destroy_process_group()
    return 0


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
