"""Training loop: de-mastered pairs -> network -> chain -> losses, with exact resume.

One call, :func:`train`, runs a whole experiment in ``run_dir`` from a composed
config (see ``configs/``). CPU or CUDA; on CUDA the network runs under autocast
(bf16, or fp16 with a GradScaler) while features and the dsp chain stay float32.
Gradients are clipped by global norm. Under ``torchrun`` (``WORLD_SIZE`` > 1) the
network is wrapped in DistributedDataParallel (gloo on CPU, NCCL on GPUs), every
rank draws its slice of the same global item order (train/pairs.py), and rank 0
alone validates, logs and writes checkpoints.

Run folder::

    config.yaml          resolved config
    train.log            (Hydra's job log; console and file)
    metrics.csv          step,split,name,value,time (long format, appended)
    tb/                  TensorBoard events
    checkpoints/         step_*/ + latest.json (train/state.py), for resume=true
    model.safetensors    final model (+ model.json): automaster --model <run>/model.safetensors
    summary.json         final validation metrics and timings

Exactness of resume: the model, optimizer (tensors in safetensors, scalars in
JSON), scheduler, grad scaler and RNG states are restored; the data position is the
step (items are pure functions of seed/split/index) and dropout is reseeded per step
from (seed, step, rank). A run killed and resumed therefore reaches bit-identical
weights to an uninterrupted one on the same device and world size.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from dsp.memory import keep_freed_memory
from train.demaster import Demasterer, ParamTarget
from train.losses import MasteringLoss
from train.metrics import quality_metrics, summarize
from train.pairs import ItemAnalysis, PairDataset, StepSampler, collate, mix_seed
from train.sources import build_source
from train.state import StateError, find_latest_checkpoint, load_training_state, save_training_checkpoint

log = logging.getLogger("train")


class ConfigError(ValueError):
    """A configuration value training cannot run with (one line for the user, exit 2)."""


# ----------------------------------------------------------------------------- setup
@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the torchrun job described by the environment (no-op when WORLD_SIZE <= 1).

    Uses one process group with gloo for CPU tensors and NCCL for CUDA tensors where
    CUDA is available, so the same group serves object broadcasts and DDP on GPUs.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available() and os.environ.get("AUTOMASTER_DIST_BACKEND") != "gloo":
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
            backend = "cpu:gloo,cuda:nccl"
        else:
            backend = "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` -> cuda:<local rank> when CUDA is present, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"trainer.device={name}: not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but CUDA is not available here (torch.cuda.is_available() is False)")
    if name == "cuda":
        return torch.device("cuda", info.local_rank % max(1, torch.cuda.device_count()))
    return device


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the network, or None for full float32."""
    mode = str(mode).lower()
    if mode in ("off", "none", "false", "fp32"):
        return None
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        if device.type != "cuda":
            raise ConfigError("trainer.amp=fp16 needs CUDA; use bf16 or off on CPU")
        return torch.float16
    raise ValueError(f"trainer.amp must be auto | bf16 | fp16 | off, got {mode!r}")


def _lr_lambda(warmup: int, total: int, schedule: str, floor: float):
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def _as_level(value: Any, name: str) -> float | str | None:
    if value is None or value == "original":
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"chain.{name} must be a number, 'original' or null, got {value!r}") from None


# ----------------------------------------------------------------------------- rendering
class Renderer:
    """Chain rendering with the configured loudness target / ceiling (float32 always).

    ``original`` takes the value from each clean master (integrated loudness, resp. true
    peak clamped to <= 0 dBTP); the per-item values are computed in the data workers
    (:class:`train.pairs.ItemAnalysis`) and the whole batch renders in one call.
    """

    def __init__(self, chain: Any, target_lufs: Any, ceiling_dbtp: Any) -> None:
        self.chain = chain
        self.target_lufs = _as_level(target_lufs, "target_lufs")
        self.ceiling_dbtp = _as_level(ceiling_dbtp, "ceiling_dbtp")

    def levels(self, batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(target_lufs, ceiling_dbtp) per item (batch,) on ``device``, or None when off."""
        tl = None if self.target_lufs is None else batch["target_lufs"].to(device).float()
        cl = None if self.ceiling_dbtp is None else batch["ceiling_dbtp"].to(device).float()
        return tl, cl

    def __call__(self, x: torch.Tensor, p: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        tl, cl = self.levels(batch, x.device)
        return self.chain(x.float(), p.float(), ceiling_dbtp=cl, target_lufs=tl,
                          reference_lufs=batch["reference_lufs"].to(x.device).double())


# ----------------------------------------------------------------------------- logging
class MetricLog:
    """Rank-0 CSV + TensorBoard writer (no-op elsewhere)."""

    def __init__(self, run_dir: Path, enabled: bool, start_step: int) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.csv"
        self.tb = None
        if not enabled:
            return
        if start_step > 0 and self.path.exists():  # drop rows a killed run wrote after its checkpoint
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=["step", "split", "name", "value", "time"])
                w.writeheader()
                w.writerows(rows)
        new = not self.path.exists()
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["step", "split", "name", "value", "time"])
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step if start_step > 0 else None)
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            log.warning("tensorboard is not installed; logging to CSV only")

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        now = round(time.time(), 3)
        for name, value in values.items():
            self._csv.writerow([step, split, name, f"{value:.6g}", now])
            if self.tb is not None:
                self.tb.add_scalar(f"{split}/{name}", value, step)
        self._file.flush()

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self.tb is not None:
                self.tb.close()


# ----------------------------------------------------------------------------- trainer
class Trainer:
    """Holds model, chain, optimizer and data for one run; see :func:`train`."""

    def __init__(self, cfg: DictConfig, run_dir: str | os.PathLike, info: DistInfo | None = None) -> None:
        from dsp import MasteringChain
        from model import MasteringModel, load_checkpoint
        from model.checkpoint import CheckpointError

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.info = info or init_distributed()
        tc = cfg.trainer
        keep_freed_memory()  # the step's large tensors reuse freed memory (dsp/memory.py)
        if tc.threads:
            torch.set_num_threads(int(tc.threads))
            _numba_threads(int(tc.threads))  # the chain's CPU kernels: as many as torch's
        self.device = resolve_device(str(tc.device), self.info)
        self.amp_dtype = resolve_amp(str(tc.amp), self.device)
        self.seed = int(cfg.seed)
        self.global_batch = int(tc.batch_size)
        if self.global_batch < 1:
            raise ConfigError(f"trainer.batch_size must be at least 1, got {self.global_batch}")
        if self.global_batch % self.info.world_size:
            raise ConfigError(f"trainer.batch_size={self.global_batch} must be divisible by the world size {self.info.world_size}")
        if int(tc.max_steps) < 0:
            raise ConfigError(f"trainer.max_steps must be >= 0, got {tc.max_steps}")
        if not int(cfg.chain.sample_rate) > 0:
            raise ConfigError(f"chain.sample_rate must be positive, got {cfg.chain.sample_rate}")
        for key in ("lr", "eps"):
            if not float(cfg.optim[key]) > 0:
                raise ConfigError(f"optim.{key} must be positive, got {cfg.optim[key]}")
        if float(cfg.optim.weight_decay) < 0:
            raise ConfigError(f"optim.weight_decay must be >= 0, got {cfg.optim.weight_decay}")
        self.local_batch = self.global_batch // self.info.world_size
        self.max_steps = int(tc.max_steps)
        self.sample_rate = int(cfg.chain.sample_rate)

        torch.manual_seed(self.seed)
        self.chain = MasteringChain(self.sample_rate).to(self.device)
        self.renderer = Renderer(self.chain, cfg.chain.target_lufs, cfg.chain.ceiling_dbtp)
        self.fresh_init = cfg.get("init_from") in (None, "", "none")
        if self.fresh_init:
            self.model = MasteringModel(
                chain_sample_rate=self.sample_rate,
                features=OmegaConf.to_container(cfg.model.features, resolve=True),
                network=OmegaConf.to_container(cfg.model.network, resolve=True),
                tonal=OmegaConf.to_container(cfg.model.tonal, resolve=True) if cfg.model.get("tonal") is not None else None,
            )
        else:
            try:
                self.model = load_checkpoint(str(cfg.init_from), device="cpu")
            except CheckpointError as e:
                raise ConfigError(f"init_from: {e}") from None
            if self.model.chain_sample_rate != self.sample_rate:
                raise ConfigError(f"init_from model runs its chain at {self.model.chain_sample_rate} Hz but chain.sample_rate={self.sample_rate}")
        self.model.to(self.device).train()
        self.net: torch.nn.Module = self.model.network

        self.demaster = Demasterer(self.sample_rate, probs=OmegaConf.to_container(cfg.demaster.probs, resolve=True))
        lc = cfg.loss
        self.loss_fn = MasteringLoss(
            self.sample_rate,
            mrstft_weight=float(lc.mrstft_weight),
            fft_sizes=list(lc.fft_sizes),
            loudness_weight=float(lc.loudness_weight),
            param_weight=float(lc.param_weight),
        )
        param_target = ParamTarget(self.sample_rate, self.renderer.target_lufs is not None) if float(lc.param_weight) > 0 else None
        # The chain renders data.excerpt_seconds; the features see the model's analysis span
        # (n_windows x window_seconds, contiguous here, spread over the track at inference).
        crop_s = float(cfg.data.excerpt_seconds)
        feats = self.model.features
        context_s = max(crop_s, float(feats.n_windows) * float(feats.window_seconds))
        crop = int(round(crop_s * self.sample_rate))
        self.analysis = ItemAnalysis(feats.config(), self.sample_rate, self.renderer.target_lufs, self.renderer.ceiling_dbtp)
        self.train_set = PairDataset(build_source(cfg.data, "train", self.sample_rate, self.seed, context_s), self.demaster, self.seed, "train",
                                     param_target=param_target, crop_samples=crop, analysis=self.analysis)
        self.val_set: PairDataset | None = None
        if self.info.is_main and int(cfg.data.val_items) > 0:
            try:
                val_source = build_source(cfg.data, "val", self.sample_rate, self.seed, context_s)
            except ValueError as e:
                log.warning("no validation split (%s): training without validation", e)
            else:
                self.val_set = PairDataset(val_source, self.demaster, self.seed, "val", length=int(cfg.data.val_items), crop_samples=crop,
                                           analysis=self.analysis)

        oc = cfg.optim
        self.optimizer = torch.optim.AdamW(
            self.net.parameters(), lr=float(oc.lr), betas=tuple(oc.betas), eps=float(oc.eps), weight_decay=float(oc.weight_decay)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(int(oc.warmup_steps), self.max_steps, str(oc.schedule), float(oc.min_lr_ratio))
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.best: dict[str, float] = {}
        self.val_cache: list[dict[str, torch.Tensor]] | None = None
        self.baselines: dict[str, dict[str, float]] = {}

    # -- state --------------------------------------------------------------------
    def _resume_source(self) -> Path | None:
        resume = self.cfg.get("resume", False)
        if resume in (False, None, "", "false", "False"):
            return None
        if resume in (True, "true", "True"):
            found = find_latest_checkpoint(self.run_dir)
            if found is None:
                log.info("resume=true but %s has no checkpoint yet: starting fresh", self.run_dir)
            return found
        found = find_latest_checkpoint(str(resume))
        if found is None:
            raise StateError(f"resume={resume!r}: no complete checkpoint found there")
        return found

    def _init_fresh(self) -> None:
        """Input standardization and a near-identity output layer (new models only)."""
        if not self.fresh_init:
            return
        if self.info.is_main:
            n = int(self.cfg.trainer.feature_stats_items)
            if n > 1:
                stats_set = PairDataset(self.train_set.source, self.demaster, self.seed, "stats", length=n,
                                        crop_samples=self.train_set.crop_samples, analysis=self.analysis)
                f = torch.stack([stats_set[j]["features"] for j in range(n)]).float()
                self.net.set_feature_stats(f.mean(0), f.std(0))
            # Identity settings sit on range edges (ratio 1, mixes 0) where the sigmoid is flat;
            # start a margin inside so every output can learn.
            margin = float(self.cfg.trainer.get("init_margin", 0.02))
            self.net.init_output_to(self.chain.identity_params(1).squeeze(0).clamp(margin, 1.0 - margin))
        # DDP broadcasts rank 0's parameters and buffers when it wraps the network.

    def _state_summary(self, val: dict[str, float] | None) -> dict[str, Any]:
        return {
            "experiment": str(self.cfg.get("name", "")),
            "step": self.step,
            "global_batch": self.global_batch,
            "world_size": self.info.world_size,
            "items_seen": self.step * self.global_batch,
            "validation": val or {},
            "baselines": self.baselines,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }

    def save(self, val: dict[str, float] | None = None) -> None:
        if not self.info.is_main:
            return
        path = save_training_checkpoint(
            self.run_dir / "checkpoints",
            self.step,
            self.model,
            self._state_summary(val),
            self.optimizer,
            self.scheduler,
            self.scaler,
            trainer_state={
                "data": {"next_index": self.step * self.global_batch, "global_batch": self.global_batch, "seed": self.seed},
                "best": self.best,
                "baselines": self.baselines,
                "world_size": self.info.world_size,
            },
            keep=int(self.cfg.trainer.keep_checkpoints),
        )
        log.info("checkpoint %s", path)

    # -- validation ---------------------------------------------------------------
    def _val_batches(self) -> list[dict[str, torch.Tensor]]:
        if self.val_cache is None:
            items = [self.val_set[i] for i in range(len(self.val_set))]
            bs = int(self.cfg.trainer.val_batch_size)
            self.val_cache = [collate(items[i : i + bs]) for i in range(0, len(items), bs)]
        return self.val_cache

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Metrics of train/metrics.py on the held-out pairs (rank 0); also loss."""
        if self.val_set is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        per: dict[str, list[torch.Tensor]] = {}
        base_in: dict[str, list[torch.Tensor]] = {}
        base_id: dict[str, list[torch.Tensor]] = {}
        losses = []
        need_baselines = not self.baselines
        for batch in self._val_batches():
            x = batch["input"].to(self.device)
            tgt = batch["target"].to(self.device)
            with self._autocast():
                p = self.net(batch["features"].to(self.device).float(), None, self._levels(batch))
            y = self.renderer(x, p.float(), batch)
            losses.append(self.loss_fn(y, tgt)[0].detach().cpu().reshape(1))
            for k, v in quality_metrics(y, tgt, self.sample_rate).items():
                per.setdefault(k, []).append(v)
            if need_baselines:
                for k, v in quality_metrics(x, tgt, self.sample_rate).items():
                    base_in.setdefault(k, []).append(v)
                ident = self.chain.identity_params(x.shape[0], device=self.device)
                for k, v in quality_metrics(self.renderer(x, ident, batch), tgt, self.sample_rate).items():
                    base_id.setdefault(k, []).append(v)
        self.model.train(was_training)
        out = summarize(per)
        out["loss"] = float(torch.cat(losses).mean())
        if need_baselines:
            self.baselines = {"input": summarize(base_in), "identity_chain": summarize(base_id)}
        return out

    # -- training -----------------------------------------------------------------
    def _levels(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """The network's level input (batch, 2): what each master is asked for."""
        if not self.net.n_levels:
            return None
        from model.network import level_vector

        tl, cl = self.renderer.levels(batch, torch.device("cpu"))
        return level_vector(tl, cl, batch["features"].shape[0], device=self.device)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _loader(self) -> DataLoader:
        dc = self.cfg.data
        workers = int(dc.get("num_workers", 0))
        sampler = StepSampler(self.step, self.global_batch, self.info.rank, self.info.world_size)
        kwargs: dict[str, Any] = {}
        if workers > 0:
            # spawn: the numba kernels use GNU OpenMP, which must not be forked
            kwargs = {"prefetch_factor": int(dc.get("prefetch", 2)), "worker_init_fn": _worker_init, "multiprocessing_context": "spawn"}
        return DataLoader(
            self.train_set,
            batch_size=self.local_batch,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            **kwargs,
        )

    def _train_step(self, batch: dict[str, torch.Tensor], ddp_net: torch.nn.Module) -> tuple[dict[str, float], float, bool]:
        x = batch["input"].to(self.device, non_blocking=True)
        tgt = batch["target"].to(self.device, non_blocking=True)
        # Dropout randomness is a function of (seed, step, rank): resume needs no RNG replay.
        torch.manual_seed(mix_seed(self.seed, 7, self.step, self.info.rank))
        feats = batch["features"].to(self.device, non_blocking=True).float()
        with self._autocast():
            p = ddp_net(feats, None, self._levels(batch))
        p = p.float()
        bad_rows = [0]
        if p.requires_grad:
            p.register_hook(lambda g: _zero_nonfinite_rows(g, bad_rows))
        y = self.renderer(x, p, batch)
        p_tgt = batch.get("param_target")
        loss, parts = self.loss_fn(
            y, tgt, p, p_tgt.to(self.device) if p_tgt is not None else None,
            batch["param_mask"].to(self.device) if p_tgt is not None else None,
        )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.cfg.optim.get("grad_clip")
        params = [q for q in self.net.parameters() if q.grad is not None]
        if clip:
            gnorm = torch.nn.utils.clip_grad_norm_(params, float(clip))
        else:
            gnorm = torch.linalg.vector_norm(torch.stack([q.grad.detach().norm() for q in params]))
        finite = bool(torch.isfinite(gnorm))  # identical on every rank after the all-reduce
        if finite:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        parts["loss"] = float(loss.detach())
        parts["nonfinite_items"] = float(bad_rows[0])
        return parts, float(gnorm), finite

    def _should_stop(self, start_time: float) -> bool:
        limit = self.cfg.trainer.get("max_minutes")
        stop = limit is not None and (time.time() - start_time) / 60.0 >= float(limit)
        if self.info.enabled:
            flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item() > 0)
        return stop

    def fit(self) -> dict[str, Any]:
        """Train until trainer.max_steps or trainer.max_minutes; returns the summary."""
        t_start = time.time()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        src = self._resume_source()
        if src is not None:
            meta = load_training_state(src, self.model, self.optimizer, self.scheduler, self.scaler)
            self.step = int(meta["step"])
            tr = meta.get("trainer", {})
            self.best = tr.get("best", {})
            self.baselines = tr.get("baselines", {})
            gb = tr.get("data", {}).get("global_batch", self.global_batch)
            if gb != self.global_batch:
                raise ValueError(f"checkpoint {src} used global batch {gb}, config has {self.global_batch}; the data order would change")
            log.info("resumed from %s at step %d", src, self.step)
        else:
            self._init_fresh()
        if self.info.is_main:
            (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg, resolve=True), encoding="utf-8")
            log.info(
                "run %s | device %s | amp %s | world %d | global batch %d | model %.2fM params | chain %d params",
                self.run_dir, self.device, self.amp_dtype, self.info.world_size, self.global_batch,
                self.model.num_parameters() / 1e6, self.chain.num_params,
            )
        ddp_net = self.net
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # FiLM layers of a conditioned network get no gradient when cond is None
            ddp_net = DDP(self.net, device_ids=ids, find_unused_parameters=self.net.cond_dim > 0)
        metrics = MetricLog(self.run_dir, self.info.is_main, self.step)
        tc = self.cfg.trainer
        val_every, ckpt_every, log_every = int(tc.val_every), int(tc.ckpt_every), max(1, int(tc.log_every))
        last_val: dict[str, float] = {}
        stopped_early = False
        bar = None
        redirect = nullcontext()
        if self.info.is_main and bool(tc.get("progress", True)):
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            bar = tqdm(total=self.max_steps, initial=self.step, desc=str(self.cfg.get("name", "train")), dynamic_ncols=True, mininterval=1.0)
            redirect = logging_redirect_tqdm()  # log lines print above the bar, not through it
        acc: dict[str, float] = {}
        n_acc = 0
        skipped = 0
        t_log = time.time()
        it = iter(self._loader()) if self.step < self.max_steps else None
        with redirect:
            try:
                while self.step < self.max_steps:
                    parts, gnorm, finite = self._train_step(next(it), ddp_net)
                    self.step += 1
                    skipped += 0 if finite else 1
                    for k, v in parts.items():
                        acc[k] = acc.get(k, 0.0) + v
                    n_acc += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{parts['loss']:.4f}", refresh=False)
                    if self.step % log_every == 0 or self.step == self.max_steps:
                        dt = time.time() - t_log
                        row = {k: v / n_acc for k, v in acc.items()}
                        row.update(lr=self.scheduler.get_last_lr()[0], grad_norm=gnorm, steps_per_s=n_acc / max(dt, 1e-9), skipped=skipped)
                        metrics.write(self.step, "train", row)
                        if self.info.is_main:
                            log.info("step %d | %s", self.step, " ".join(f"{k} {v:.4g}" for k, v in row.items()))
                        acc, n_acc, t_log = {}, 0, time.time()
                    stop = self._should_stop(t_start)
                    if self.step % val_every == 0 or self.step == self.max_steps or stop:
                        if self.info.is_main:
                            last_val = self.validate()
                            metrics.write(self.step, "val", last_val)
                            if last_val.get("mrstft", math.inf) < self.best.get("mrstft", math.inf):
                                self.best = {"step": self.step, **last_val}
                            log.info("val step %d | %s", self.step, " ".join(f"{k} {v:.4g}" for k, v in last_val.items()))
                        self._barrier()
                    if self.step % ckpt_every == 0 or self.step == self.max_steps or stop:
                        self.save(last_val)
                        self._barrier()
                    if stop:
                        stopped_early = self.step < self.max_steps
                        if self.info.is_main:
                            log.info("time limit trainer.max_minutes=%s reached at step %d", tc.max_minutes, self.step)
                        break
            finally:
                if bar is not None:
                    bar.close()
                metrics.close()
        summary = self._finish(last_val, stopped_early, time.time() - t_start)
        return summary

    def _barrier(self) -> None:
        if self.info.enabled:
            dist.barrier()

    def _finish(self, last_val: dict[str, float], stopped_early: bool, seconds: float) -> dict[str, Any]:
        summary = {
            "step": self.step,
            "stopped_early": stopped_early,
            "seconds": round(seconds, 2),
            "validation": last_val,
            "best": self.best,
            "baselines": self.baselines,
            "run_dir": str(self.run_dir),
        }
        if self.info.is_main:
            from model.checkpoint import save_checkpoint

            info = self._state_summary(last_val)
            final = save_checkpoint(self.run_dir / "model", self.model, info)
            summary["model"] = str(final)
            export = self.cfg.get("export")
            if export:
                summary["export"] = str(save_checkpoint(str(export), self.model, info))
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            log.info("done: %d steps in %.1f s; model %s", self.step, seconds, final)
        return summary


def _zero_nonfinite_rows(grad: torch.Tensor, counter: list[int]) -> torch.Tensor:
    """Backward hook on the predicted params (batch, n): an item whose chain gradient is
    not finite contributes nothing instead of poisoning the whole batch."""
    bad = ~torch.isfinite(grad).all(dim=1, keepdim=True)
    counter[0] = int(bad.sum())
    return torch.where(bad, torch.zeros_like(grad), grad)


def _numba_threads(n: int) -> None:
    """numba's thread count for this thread's kernel calls, within what numba started with."""
    try:
        import numba

        numba.set_num_threads(max(1, min(int(n), int(numba.config.NUMBA_NUM_THREADS))))
    except (ImportError, ValueError):
        pass


def _worker_init(_: int) -> None:
    """One thread per data worker (torch and numba): the main process needs the cores."""
    keep_freed_memory()
    torch.set_num_threads(1)
    _numba_threads(1)


def train(cfg: DictConfig, run_dir: str | os.PathLike, info: DistInfo | None = None) -> dict[str, Any]:
    """Run one experiment (fresh or resumed) in ``run_dir``; returns the summary dict."""
    return Trainer(cfg, run_dir, info).fit()
