"""Excerpt sources for the training loop, built from a ``data`` config group.

``data.kind`` selects: ``generated`` (train/synth.py, no files), ``manifest`` (the
free-music corpus of train/corpus.py), ``folder``, ``musdb``, ``fma``, ``jamendo``
(train/data.py). File-backed sources wrap an :class:`train.data.ExcerptDataset`
and map the loop's unbounded item index to (epoch, item), so an item stays a pure
function of (seed, index) and resuming needs only the index.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from train.pairs import mix_seed

log = logging.getLogger("train")
_SPLIT_SALT = {"train": 11, "val": 12}


class DatasetSource:
    """Adapter: ``ExcerptDataset`` -> ``excerpt(index)``; index = epoch * len + item."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.sample_rate = int(dataset.config.sample_rate_hz)

    def __len__(self) -> int:
        return len(self.dataset)

    def excerpt(self, index: int) -> torch.Tensor:
        epoch, item = divmod(int(index), len(self.dataset))
        if self.dataset.epoch != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[item]


def build_source(data_cfg: DictConfig, split: str, sample_rate: int, seed: int, seconds: float | None = None):
    """Source of ``split`` ("train" or "val") at ``sample_rate`` for ``data_cfg``; excerpts
    last ``seconds`` (default ``data.excerpt_seconds``).

    Raises :class:`train.data.DataError` (one line, naming the data) for a user's data
    problem: a missing ``data.path``, a folder without readable audio, tracks all shorter
    than an excerpt, or a split without tracks (e.g. a single-album style folder grouped by
    album has no validation split: use ``data.group_by=file``, or ``data.val_items=0``).
    """
    kind = str(data_cfg.kind)
    seconds = float(seconds or data_cfg.excerpt_seconds)
    split_seed = mix_seed(seed, _SPLIT_SALT[split])
    if kind == "generated":
        from train.synth import GeneratedSource

        return GeneratedSource(sample_rate, seconds=seconds, channels=int(data_cfg.channels), seed=split_seed)

    from train import data as tdata

    config = tdata.ExcerptConfig(
        excerpt_s=seconds,
        sample_rate_hz=int(sample_rate),
        channels=str(data_cfg.get("channel_mode", "stereo")),
        silence_db=float(data_cfg.get("silence_db", -50.0)),
        seed=split_seed % (2**32),
    )
    common = {"split": split, "val_fraction": float(data_cfg.get("val_fraction", 0.1)), "split_salt": str(data_cfg.get("split_salt", ""))}
    if OmegaConf.is_missing(data_cfg, "path") or data_cfg.get("path") in (None, ""):
        raise tdata.DataError(f"data.path must be set for data.kind={kind} (e.g. data.path=MY_MASTERS/)")
    path = Path(str(data_cfg.path)).expanduser()
    try:
        ds = _dataset(kind, path, data_cfg, config, common)
    except tdata.DataError:
        raise
    except (ValueError, OSError) as e:
        msg = " ".join(str(e).split())
        if split == "val":
            msg += ("; the data is too small to hold a validation split: add tracks (or albums), use "
                    "data.group_by=file, or set data.val_items=0 to train without validation")
        raise tdata.DataError(f"data.kind={kind} data.path={path}: {msg}") from None
    cache = data_cfg.get("cache")
    if cache and split == "val":
        # validation decodes: its figures must not depend on how (or whether) a cache stores
        # the audio, and 32-48 items cost little to decode
        log.info("data %s split val: decoding files (validation never reads the cache)", kind)
    elif cache:
        from train.cache import INDEX, AudioCache

        cache = Path(str(cache)).expanduser()
        if (cache / INDEX).exists():
            try:
                ds.cache = AudioCache(cache)
                log.info("data %s split %s: excerpts sliced from the decoded cache %s", kind, split, cache)
            except (ValueError, OSError, KeyError) as e:  # an old version, damaged: decode instead
                log.warning("decoded cache %s not used (%s): decoding files", cache, " ".join(str(e).split()))
        else:
            log.info("no decoded cache at %s (python -m train.cache builds it): decoding files", cache)
    log.info("data %s split %s: %d tracks in %d groups", kind, split, len(ds.tracks), len(ds.groups))
    return DatasetSource(ds)


def _dataset(kind: str, path: Path, data_cfg: DictConfig, config, common: dict):
    from train import data as tdata

    if kind == "manifest":
        if not path.exists():
            raise ValueError(f"corpus manifest {path} not found; build it with `python -m train.corpus --out {path.parent}`")
        ds = tdata.ManifestDataset(path, config, **common)
    elif kind == "folder":
        ds = tdata.FolderDataset(path, config, group_by=str(data_cfg.get("group_by", "parent")), **common)
    elif kind == "musdb":
        ds = tdata.MusdbDataset(path, config, **common)
    elif kind in ("fma", "jamendo"):
        cls = tdata.FmaDataset if kind == "fma" else tdata.JamendoDataset
        ds = cls(path, config, metadata=data_cfg.get("metadata"), group_by=str(data_cfg.get("group_by", "album")), **common)
    else:
        raise ValueError(f"unknown data.kind {kind!r}; choose generated, manifest, folder, musdb, fma or jamendo")
    return ds
