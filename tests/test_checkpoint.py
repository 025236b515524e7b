"""Tests for model/checkpoint.py: safetensors + JSON round trip and refusal of bad files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import model.checkpoint as ckpt
from model import SCHEMA_VERSION, CheckpointError, MasteringModel, load_checkpoint, save_checkpoint

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
SR = 44100


@pytest.fixture(scope="module")
def trained() -> MasteringModel:
    torch.manual_seed(0)
    m = MasteringModel(chain_sample_rate=SR, network={"hidden": [64, 48], "cond_dim": 8})
    m.network.set_feature_stats(torch.randn(m.feature_dim), torch.rand(m.feature_dim) + 0.5)
    return m.eval()


@pytest.fixture(scope="module")
def audio() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return 0.1 * torch.randn(2, 2, SR, generator=g)


@pytest.fixture()
def saved(tmp_path, trained) -> Path:
    summary = {"epochs": 3, "val_loss": torch.tensor(0.25), "bad": float("nan")}
    return save_checkpoint(tmp_path / "m", trained, summary)


def _edit_json(weights: Path, edit) -> None:
    jp = weights.with_suffix(".json")
    meta = json.loads(jp.read_text())
    edit(meta)
    jp.write_text(json.dumps(meta))


def _refused(path, match: str) -> CheckpointError:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg
    return info.value


def test_round_trip_is_bitwise(saved, trained, audio):
    cond = torch.randn(2, 8, generator=torch.Generator().manual_seed(4))
    loaded = load_checkpoint(saved)
    assert not loaded.training
    assert loaded.config == trained.config
    for key, value in trained.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert torch.equal(loaded.predict(audio, SR, cond), trained.predict(audio, SR, cond))
    assert torch.equal(loaded.predict(audio, SR), trained.predict(audio, SR))


def test_metadata_contents(saved, trained):
    from dsp import MasteringChain

    meta = json.loads(saved.with_suffix(".json").read_text())
    assert meta["schema_version"] == SCHEMA_VERSION == 1
    assert meta["sample_rate"] == SR
    assert meta["model_config"] == trained.config
    assert meta["range_table"] == json.loads(json.dumps(MasteringChain(sample_rate=SR).range_table()))
    assert meta["feature_settings"]["feature_dim"] == trained.feature_dim
    assert meta["training_summary"] == {"epochs": 3, "val_loss": 0.25, "bad": None}
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m.json", "m.safetensors"]


def test_path_forms(saved, audio, trained):
    ref = trained.predict(audio, SR)
    for form in (saved, saved.with_suffix(".json"), saved.with_suffix(""), str(saved)):
        assert torch.equal(load_checkpoint(form).predict(audio, SR), ref)


def test_renamed_pair_loads(saved, audio, trained):
    target = saved.with_name("renamed.safetensors")
    saved.rename(target)
    saved.with_suffix(".json").rename(target.with_suffix(".json"))
    assert torch.equal(load_checkpoint(target).predict(audio, SR), trained.predict(audio, SR))


def test_overwrite_is_atomic_replace(tmp_path, trained):
    first = save_checkpoint(tmp_path / "m.safetensors", trained)
    second = save_checkpoint(tmp_path / "m", trained, {"again": True})
    assert first == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    assert load_checkpoint(first).checkpoint_metadata["training_summary"] == {"again": True}


def test_edited_range_table_refused(saved):
    def edit(meta):
        meta["range_table"][0]["high"] = meta["range_table"][0]["high"] + 1.0
    _edit_json(saved, edit)
    _refused(saved, "range table differs")


def test_reordered_range_table_refused(saved):
    _edit_json(saved, lambda meta: meta["range_table"].reverse())
    _refused(saved, "range table")


def test_schema_version_refused(saved):
    _edit_json(saved, lambda meta: meta.update(schema_version=2))
    _refused(saved, "schema_version 2")


def test_missing_key_refused(saved):
    _edit_json(saved, lambda meta: meta.pop("model_config"))
    _refused(saved, "missing keys: model_config")


def test_corrupt_json_refused(saved):
    jp = saved.with_suffix(".json")
    jp.write_text(jp.read_text()[:-40])
    err = _refused(saved, "corrupt metadata JSON")
    assert str(jp) in str(err)


def test_truncated_safetensors_refused(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    _refused(saved, "sha256")
    # even with a matching hash, the safetensors parser refuses it
    _edit_json(saved, lambda meta: meta.update(weights_sha256=ckpt._sha256(saved)))
    err = _refused(saved, "corrupt or truncated safetensors")
    assert str(saved) in str(err)


def test_shape_mismatch_refused(saved):
    _edit_json(saved, lambda meta: meta["model_config"]["network"].update(hidden=[64, 40]))
    _refused(saved, "shape")


def test_missing_tensor_refused(saved):
    _edit_json(saved, lambda meta: meta["model_config"]["network"].update(hidden=[64, 48, 32]))
    _refused(saved, "missing")


def test_missing_files_refused(saved):
    meta = saved.with_suffix(".json")
    text = meta.read_text()
    meta.unlink()
    _refused(saved, "metadata file not found")
    meta.write_text(text)
    saved.unlink()
    _refused(saved, "weights file not found")
    meta.unlink()   # nothing there at all: a wrong path, named as given
    _refused(saved, "model checkpoint not found")


def test_registry_names(tmp_path, monkeypatch, trained, audio):
    reg_dir = tmp_path / "checkpoints"
    reg_dir.mkdir()
    (reg_dir / "registry.json").write_text(json.dumps({
        "default": {"file": "default.safetensors", "description": "d"},
        "warm": {"file": "warm.safetensors", "description": "w"},
    }))
    monkeypatch.setattr(ckpt, "REGISTRY_DIR", reg_dir)
    monkeypatch.setattr(ckpt, "REGISTRY_PATH", reg_dir / "registry.json")
    err = _refused("nosuchmodel", "unknown model name")
    assert "default" in str(err) and "warm" in str(err)
    _refused("default", "no weights file")
    save_checkpoint(reg_dir / "warm", trained)
    assert torch.equal(load_checkpoint("warm").predict(audio, SR), trained.predict(audio, SR))


def test_shipped_registry_is_valid():
    data = json.loads((REPO / "checkpoints" / "registry.json").read_text())
    assert "default" in data and data["default"]["file"].endswith(".safetensors")
    assert ckpt.REGISTRY_PATH == REPO / "checkpoints" / "registry.json"


def test_no_pickle_in_model_package():
    pattern = re.compile(r"torch\.load\(|import pickle|pickle\.load|weights_only")
    for src in (REPO / "model").glob("*.py"):
        assert not pattern.search(src.read_text()), src
