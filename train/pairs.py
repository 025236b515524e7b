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


class PairDataset(Dataset):
    """index -> {"context": de-mastered excerpt (C, L), "input": de-mastered crop (C, T),
    "target": master crop (C, T), "invertible": bool, "index": int}.

    The whole excerpt is de-mastered as one piece; the network's features see the
    ``context`` (as at inference, where they see several analysis windows), the chain
    renders only a random ``crop_samples`` crop of it (T = L without a crop), which
    keeps the differentiable part short. Map-style over an unbounded index space;
    ``length`` only matters for fixed sets (validation). ``param_target`` (optional)
    maps DemasterParams to a ((n,) target, (n,) mask) pair for parameter regression.
    """

    def __init__(self, source: ExcerptSource, demasterer: Demasterer, seed: int, split: str, length: int = 2**62,
                 param_target: Any = None, crop_samples: int | None = None) -> None:
        if split not in _SPLIT_CODES:
            raise ValueError(f"unknown split {split!r}; known: {sorted(_SPLIT_CODES)}")
        self.source = source
        self.demasterer = demasterer
        self.seed = int(seed)
        self.split = split
        self.length = int(length)
        self.param_target = param_target
        self.crop_samples = int(crop_samples) if crop_samples else None

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
    if "param_target" in items[0]:
        out["param_target"] = torch.stack([it["param_target"] for it in items])
        out["param_mask"] = torch.stack([it["param_mask"] for it in items])
    return out
