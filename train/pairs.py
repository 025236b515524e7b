"""Self-supervised (de-mastered input, original master) pairs with a resumable order.

Every item is a pure function of ``(seed, split, index)``: the excerpt source is
deterministic in the index (train/data.py datasets are functions of seed, epoch and
item) and the de-mastering draw comes from a ``torch.Generator`` seeded from the three, so
the data position of a run is a single integer (the next global item index). Step
``s`` of a run with global batch ``B`` uses items ``s*B .. s*B+B-1``; rank ``r`` of
``W`` takes the contiguous slice ``s*B + r*B/W ..`` (DistributedSampler-like
sharding of the same global order, so results do not depend on the world size).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset, Sampler

from train.demaster import Demasterer

_SPLIT_CODES = {"train": 1, "val": 2, "stats": 3, "test": 4}
_MASK64 = (1 << 64) - 1


class ExcerptSource(Protocol):
    """Mastered excerpts ``(channels, samples)``, a pure function of an unbounded index."""

    sample_rate: int

    def excerpt(self, index: int) -> torch.Tensor: ...


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*parts: int) -> int:
    """Hash integers into a 63-bit seed (stable across processes and platforms)."""
    h = 0
    for p in parts:
        h = _splitmix(h ^ (int(p) & _MASK64))
    return h & ((1 << 63) - 1)


def item_generator(seed: int, split: str, index: int) -> torch.Generator:
    """CPU generator for the de-mastering draw of one item."""
    g = torch.Generator(device="cpu")
    g.manual_seed(mix_seed(seed, _SPLIT_CODES[split], index))
    return g


class ItemAnalysis:
    """Picklable per-item analysis run in the data workers (no gradient is needed there):

    - "features" (feature_dim,): the model's features of the de-mastered context;
    - "reference_lufs": the context's loudness, which the chain's thresholds and drive are
      relative to (as the whole track's loudness is at inference);
    - "target_lufs" / "ceiling_dbtp": the render levels. "original" takes them from the
      master crop (its integrated loudness, NaN when silent; its true peak clamped to
      <= 0 dBTP), a number is used as is, None means none (NaN).
    """

    def __init__(self, feature_config: dict, sample_rate: int, target_lufs: Any, ceiling_dbtp: Any) -> None:
        self.feature_config = dict(feature_config)
        self.sample_rate = int(sample_rate)
        self.target_lufs = target_lufs
        self.ceiling_dbtp = ceiling_dbtp
        self._extractor = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_extractor": None}

    @torch.no_grad()
    def __call__(self, context: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        from dsp import integrated_loudness, true_peak
        from dsp.level import reference_lufs

        if self._extractor is None:
            from model.features import FeatureExtractor

            self._extractor = FeatureExtractor(**self.feature_config)
        sr = self.sample_rate
        x = context[None].float()
        analysis = self._extractor.analyze(x, sr)
        out = {"features": self._extractor.vectorize(analysis).to(x.dtype)[0]}
        fx = self._extractor
        if x.shape[-1] == fx.n_windows * int(round(fx.window_seconds * sr)):
            # the analysis windows tile the context exactly, so the features' loudness is
            # the context's (one K-weighting less per item), clamped as reference_lufs does
            from dsp.level import CEIL_LUFS, FLOOR_LUFS

            lufs = analysis["loudness_lufs"][0].double().clamp(FLOOR_LUFS, CEIL_LUFS)
            out["reference_lufs"] = lufs.float()
        else:
            out["reference_lufs"] = reference_lufs(x, sr)[0].float()
        if self.target_lufs == "original":
            out["target_lufs"] = integrated_loudness(target[None].float(), sr)[0].float()
            if not bool(torch.isfinite(out["target_lufs"])):
                out["target_lufs"] = torch.tensor(float("nan"))
        else:
            out["target_lufs"] = torch.tensor(float("nan") if self.target_lufs is None else float(self.target_lufs))
        if self.ceiling_dbtp == "original":
            tp = float(true_peak(target[None].float(), sr)[0])
            out["ceiling_dbtp"] = torch.tensor(min(tp, 0.0) if tp == tp and tp > -200 else -1.0)
        else:
            out["ceiling_dbtp"] = torch.tensor(float("nan") if self.ceiling_dbtp is None else float(self.ceiling_dbtp))
        return out


class PairDataset(Dataset):
    """index -> {"context": de-mastered excerpt (C, L), "input": de-mastered crop (C, T),
    "target": master crop (C, T), "invertible": bool, "index": int} (+ the
    :class:`ItemAnalysis` keys when ``analysis`` is given).

    The whole excerpt is de-mastered as one piece; the network's features see the
    ``context`` (as at inference, where they see several analysis windows), the chain
    renders only a random ``crop_samples`` crop of it (T = L without a crop), which
    keeps the differentiable part short. Map-style over an unbounded index space;
    ``length`` only matters for fixed sets (validation). ``param_target`` (optional)
    maps DemasterParams to a ((n,) target, (n,) mask) pair for parameter regression.
    """

    def __init__(self, source: ExcerptSource, demasterer: Demasterer, seed: int, split: str, length: int = 2**62,
                 param_target: Any = None, crop_samples: int | None = None, analysis: Any = None) -> None:
        if split not in _SPLIT_CODES:
            raise ValueError(f"unknown split {split!r}; known: {sorted(_SPLIT_CODES)}")
        self.source = source
        self.demasterer = demasterer
        self.seed = int(seed)
        self.split = split
        self.length = int(length)
        self.param_target = param_target
        self.crop_samples = int(crop_samples) if crop_samples else None
        self.analysis = analysis

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        master = self.source.excerpt(int(index)).float()
        g = item_generator(self.seed, self.split, index)
        degraded, params = self.demasterer(master, g)
        n = master.shape[-1]
        crop = self.crop_samples
        if crop is not None and crop < n:
            start = int(torch.randint(0, n - crop + 1, (), generator=g))
            inp, target = degraded[:, start : start + crop], master[:, start : start + crop]
        else:
            inp, target = degraded, master
        item = {"context": degraded, "input": inp, "target": target, "invertible": params.invertible, "index": int(index)}
        if self.param_target is not None:
            item["param_target"], item["param_mask"] = self.param_target(params)
        if self.analysis is not None:
            item.update(self.analysis(degraded, target))
        return item


class StepSampler(Sampler[int]):
    """Endless item indices for one rank, starting at global step ``start_step``."""

    def __init__(self, start_step: int, global_batch: int, rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} must be divisible by the world size {world_size}")
        self.start_step = int(start_step)
        self.global_batch = int(global_batch)
        self.local_batch = self.global_batch // world_size
        self.rank = int(rank)

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            base = step * self.global_batch + self.rank * self.local_batch
            yield from range(base, base + self.local_batch)
            step += 1

    def __len__(self) -> int:  # pragma: no cover - endless
        return 2**62


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of PairDataset items (all of one length) into a batch."""
    out: dict[str, Any] = {
        "context": torch.stack([it["context"] for it in items]),
        "input": torch.stack([it["input"] for it in items]),
        "target": torch.stack([it["target"] for it in items]),
        "invertible": torch.tensor([bool(it["invertible"]) for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
    }
    for key in ("param_target", "param_mask", "features", "reference_lufs", "target_lufs", "ceiling_dbtp"):
        if key in items[0]:
            out[key] = torch.stack([it[key] for it in items])
    return out
