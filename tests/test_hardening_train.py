"""Issue #9, training inputs: short or too-small data folders, user mistakes in one line.

Each case runs ``automaster-train`` (train.cli.main, in-process) on a tiny folder of
generated files and checks the exit status, the single error line naming the folder, and
that no model was exported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from train.cli import main

BASE = [
    "experiment=smoke", "chain.sample_rate=16000", "data=folder", "data.excerpt_seconds=0.5",
    "data.num_workers=0", "data.val_items=2", "trainer.max_steps=1", "trainer.batch_size=2",
    "trainer.val_batch_size=2", "trainer.feature_stats_items=2", "trainer.progress=false",
    "trainer.device=cpu", "trainer.threads=1",
]


def _folder(root: Path, seconds: float, albums: int = 1, per_album: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for a in range(albums):
        (root / f"album{a}").mkdir(parents=True)
        for i in range(per_album):
            x = rng.standard_normal((int(seconds * 16000), 2)) * 0.1
            sf.write(root / f"album{a}" / f"t{i}.wav", x, 16000)
    return root


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    _, err = capsys.readouterr()
    return code, err


def _assert_user_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], err
    assert "Traceback" not in err


def test_folder_of_tracks_shorter_than_the_excerpt_stops(tmp_path, capsys):
    data = _folder(tmp_path / "short", seconds=0.3, albums=3)  # excerpts need >= 0.5 s
    run = tmp_path / "run"
    code, err = _run([*BASE, f"data.path={data}", f"hydra.run.dir={run}"], capsys)
    _assert_user_error(code, err, str(data), "shorter than")
    assert not (run / "model.safetensors").exists()


def test_short_tracks_are_left_out_and_long_ones_used(tmp_path):
    from train.data import ExcerptConfig, FolderDataset

    data = _folder(tmp_path / "mixed", seconds=1.0, albums=1)
    sf.write(data / "album0" / "tiny.wav", np.zeros((1600, 2)), 16000)  # 0.1 s
    ds = FolderDataset(data, ExcerptConfig(excerpt_s=0.5, sample_rate_hz=16000))
    names = sorted(t.path.name for t in ds.tracks)
    assert names == ["t0.wav", "t1.wav", "t2.wav"]
    assert all(abs(t.duration_s - 1.0) < 1e-9 for t in ds.tracks)


def test_data_without_room_for_a_validation_split_stops(tmp_path, capsys):
    data = _folder(tmp_path / "one_album", seconds=1.0, albums=1)  # one group: no val split
    run = tmp_path / "run"
    code, err = _run([*BASE, f"data.path={data}", f"hydra.run.dir={run}"], capsys)
    _assert_user_error(code, err, str(data), "validation", "data.val_items=0")
    assert not (run / "model.safetensors").exists()


@pytest.mark.parametrize("path", [None, "", "missing"])
def test_missing_or_empty_data_path_is_one_line(tmp_path, capsys, path):
    args = [*BASE, f"hydra.run.dir={tmp_path / 'run'}"]
    if path is not None:
        args.append(f"data.path={tmp_path / path if path else ''}")
    code, err = _run(args, capsys)
    _assert_user_error(code, err, "data.path")
    if path:
        assert str(tmp_path / path) in err


def test_folder_of_corrupt_files_names_the_folder(tmp_path, capsys):
    data = tmp_path / "corrupt"
    data.mkdir()
    for i in range(4):
        (data / f"t{i}.wav").write_bytes(os.urandom(3000))
    code, err = _run([*BASE, f"data.path={data}", f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    _assert_user_error(code, err, str(data), "readable")


def test_resume_with_latest_json_outside_the_run_is_one_line(tmp_path, capsys):
    outside = tmp_path / "elsewhere" / "step_0000001"
    outside.mkdir(parents=True)
    (outside / "state.json").write_text("{}")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    latest = run / "checkpoints" / "latest.json"
    latest.write_text(json.dumps({"step": 1, "dir": "../../elsewhere/step_0000001"}))
    smoke = ["experiment=smoke", "chain.sample_rate=16000", "data.excerpt_seconds=0.5",
             "trainer.max_steps=1", "trainer.batch_size=2", "trainer.progress=false",
             "trainer.device=cpu", "data.val_items=0", "trainer.feature_stats_items=2"]
    code, err = _run([*smoke, f"hydra.run.dir={run}", "resume=true"], capsys)
    _assert_user_error(code, err, str(latest), "outside")
