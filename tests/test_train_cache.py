"""train.cache: the decoded float16 corpus cache (build, read, resume, a build in progress)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from train.cache import AUDIO, INDEX, AudioCache, build_cache


def _corpus(folder: Path) -> Path:
    """Three tiny tracks (stereo 44.1 kHz, mono 44.1 kHz, stereo 48 kHz) and their manifest."""
    rng = np.random.default_rng(0)
    specs = [("a.wav", 44100, 2, 1.0), ("b.wav", 44100, 1, 0.5), ("c.wav", 48000, 2, 0.75)]
    lines = []
    for name, sr, ch, sec in specs:
        x = (0.3 * rng.standard_normal((int(sr * sec), ch))).astype(np.float32)
        sf.write(str(folder / name), x, sr, subtype="FLOAT")
        lines.append(json.dumps({"file": name, "package": "p" + name[0], "duration_s": sec,
                                 "sample_rate_hz": sr, "channels": ch}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "manifest.jsonl"


def test_cache_reads_what_the_files_hold(tmp_path):
    manifest = _corpus(tmp_path)
    build_cache(manifest, tmp_path / "cache")
    cache = AudioCache(tmp_path / "cache")
    a, _ = sf.read(str(tmp_path / "a.wav"), dtype="float32", always_2d=True)
    got = cache.read(tmp_path / "a.wav", 0.25, 4410)
    np.testing.assert_array_equal(got, a[11025:11025 + 4410].T)  # float32: the decoded samples
    b, _ = sf.read(str(tmp_path / "b.wav"), dtype="float32", always_2d=True)
    got = cache.read(tmp_path / "b.wav", 0.0, 100)
    np.testing.assert_array_equal(got, np.repeat(b[:100].T, 2, axis=0))  # mono -> both channels
    assert cache.frames(tmp_path / "c.wav") == 33075  # 0.75 s resampled from 48 kHz to 44.1 kHz
    tail = cache.read(tmp_path / "b.wav", 0.49, 1000)  # past the end: zero-padded
    assert np.all(tail[:, 441:] == 0) and np.any(tail[:, :441] != 0)


def test_cache_in_progress_is_readable_and_a_killed_build_resumes(tmp_path):
    manifest = _corpus(tmp_path)
    out = tmp_path / "cache"
    build_cache(manifest, out)
    full = (out / AUDIO).read_bytes()
    meta = json.loads((out / INDEX).read_text())
    # as after a kill (or during a build) between writing a track's samples and its index
    # entry: the index lists two tracks, the audio file holds more
    last = max(meta["tracks"], key=lambda k: meta["tracks"][k][0])
    first, n = meta["tracks"].pop(last)
    meta["frames"] = first
    (out / INDEX).write_text(json.dumps(meta))
    (out / AUDIO).write_bytes(full[: (first + n // 2) * 8])
    cache = AudioCache(out)
    assert last not in cache and len(cache.tracks) == 2
    assert cache.read(next(iter(cache.tracks)), 0.0, 10).shape == (2, 10)
    build_cache(manifest, out)  # resumes: truncates the half track and appends it whole
    assert (out / AUDIO).read_bytes() == full
    assert json.loads((out / INDEX).read_text())["tracks"][last] == [first, n]


def test_cache_shorter_than_its_index_is_refused(tmp_path):
    manifest = _corpus(tmp_path)
    build_cache(manifest, tmp_path / "cache")
    audio = tmp_path / "cache" / AUDIO
    audio.write_bytes(audio.read_bytes()[:-8])
    with pytest.raises(ValueError, match="the index expects"):
        AudioCache(tmp_path / "cache")


def test_training_falls_back_to_decoding_and_validation_never_reads_the_cache(tmp_path, caplog):
    """An unusable cache (here an old version) is logged and training decodes; validation
    decodes even with a good cache (a float16 cache once changed the validation MRSTFT
    from 0.84 to 0.49 for the same model)."""
    import logging

    from omegaconf import OmegaConf

    from train.sources import build_source

    manifest = _corpus(tmp_path)
    build_cache(manifest, tmp_path / "cache")
    cfg = OmegaConf.create({"kind": "manifest", "path": str(manifest), "cache": str(tmp_path / "cache"),
                            "excerpt_seconds": 0.25, "val_fraction": 0.5, "silence_db": -90.0})
    with caplog.at_level(logging.INFO, logger="train"):
        train_src = build_source(cfg, "train", 44100, 0, 0.25)
        val_src = build_source(cfg, "val", 44100, 0, 0.25)
    assert train_src.dataset.cache is not None and val_src.dataset.cache is None
    meta = json.loads((tmp_path / "cache" / INDEX).read_text())
    (tmp_path / "cache" / INDEX).write_text(json.dumps({**meta, "version": 1}))
    with caplog.at_level(logging.INFO, logger="train"):
        again = build_source(cfg, "train", 44100, 0, 0.25)
    assert again.dataset.cache is None and "not used" in caplog.text
