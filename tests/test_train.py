"""Training loop end to end on generated audio: Hydra composition, CLI, exact resume, DDP."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from train.cli import CONFIG_DIR, main
from train.loop import DistInfo, Trainer, train

# Tiny and fast: 16 kHz, 0.5 s excerpts, batch 2, no dropout (so DDP can be compared).
TINY = [
    "experiment=smoke",
    "chain.sample_rate=16000",
    "data.excerpt_seconds=0.5",
    "data.val_items=2",
    "trainer.batch_size=2",
    "trainer.val_batch_size=2",
    "trainer.feature_stats_items=4",
    "trainer.val_every=1000",
    "trainer.progress=false",
    "model.network.dropout=0.0",
    "trainer.threads=1",
]


def _cfg(*overrides: str):
    base = [o for o in TINY if not (o.startswith("experiment=") and any(x.startswith("experiment=") for x in overrides))]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*base, *overrides])


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _assert_same_state(a: Path, b: Path, exact: bool = True) -> None:
    for name in ("model.safetensors", "state.safetensors"):
        ta, tb = _tensors(a / name), _tensors(b / name)
        assert ta.keys() == tb.keys(), name
        for k in ta:
            if exact:
                assert torch.equal(ta[k], tb[k]), f"{name}:{k}"
            else:
                torch.testing.assert_close(ta[k], tb[k], rtol=1e-5, atol=1e-6, msg=f"{name}:{k}")
    ja = json.loads((a / "state.json").read_text())
    jb = json.loads((b / "state.json").read_text())
    for key in ("step", "optimizer", "scheduler", "rng"):
        assert ja[key] == jb[key], key
    assert ja["trainer"]["data"] == jb["trainer"]["data"]


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("two_step")
    summary = train(_cfg("trainer.max_steps=2", "trainer.ckpt_every=2"), run, DistInfo())
    assert summary["step"] == 2
    return run


def test_two_step_run_writes_a_complete_run_folder(two_step_run: Path) -> None:
    from model import load_checkpoint

    run = two_step_run
    for name in ("config.yaml", "metrics.csv", "summary.json", "model.safetensors", "model.json"):
        assert (run / name).exists(), name
    assert any((run / "tb").iterdir())
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 2
    summary = json.loads((run / "summary.json").read_text())
    assert {"mrstft", "mel", "centroid", "crest", "rms", "lufs"} <= set(summary["validation"])
    assert summary["baselines"]["input"]["mrstft"] > summary["validation"]["mrstft"]  # the chain undoes the level drop at least
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,split,name,value,time" and any(",val,mrstft," in r for r in rows)
    model = load_checkpoint(run / "model.safetensors")
    x = torch.randn(1, 2, 8000) * 0.1
    p = model.predict(x, 16000)
    assert p.shape == (1, model.num_params) and torch.isfinite(p).all()


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = ("trainer.max_steps=3", "trainer.ckpt_every=2", "model.network.dropout=0.1", "data.val_items=0")
    full = tmp_path / "full"
    train(_cfg(*overrides), full, DistInfo())

    killed = tmp_path / "killed"
    original = Trainer._train_step

    def dying_step(self, batch, net):
        if self.step == 2:  # during step 3, after the step-2 checkpoint
            raise KeyboardInterrupt("simulated kill")
        return original(self, batch, net)

    monkeypatch.setattr(Trainer, "_train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(*overrides), killed, DistInfo())
    monkeypatch.setattr(Trainer, "_train_step", original)
    assert json.loads((killed / "checkpoints" / "latest.json").read_text())["step"] == 2

    summary = train(_cfg(*overrides, "resume=true"), killed, DistInfo())
    assert summary["step"] == 3
    _assert_same_state(full / "checkpoints" / "step_0000003", killed / "checkpoints" / "step_0000003")
    steps = [int(r.split(",")[0]) for r in (killed / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps)  # rows the killed run wrote past its checkpoint were dropped


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg, run_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        AUTOMASTER_DIST_BACKEND="gloo",
    )
    torch.set_num_threads(1)
    from train.loop import init_distributed

    info = init_distributed()
    try:
        train(cfg, run_dir, info)
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_two_processes_on_cpu_match_single_process(tmp_path: Path, two_step_run: Path) -> None:
    import torch.multiprocessing as mp

    cfg = _cfg("trainer.max_steps=2", "trainer.ckpt_every=2", "trainer.device=cpu", "data.val_items=0")
    run = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(run)), nprocs=2, join=True)
    ckpt = run / "checkpoints" / "step_0000002"
    assert (ckpt / "state.json").exists() and (run / "model.safetensors").exists()
    assert not list(run.glob("**/*rank1*"))
    state = json.loads((ckpt / "state.json").read_text())
    assert state["trainer"]["world_size"] == 2
    # Global batch 2 split 1 + 1 with averaged gradients == one process with batch 2.
    ddp_w, single_w = _tensors(ckpt / "model.safetensors"), _tensors(two_step_run / "checkpoints" / "step_0000002" / "model.safetensors")
    for k in single_w:
        torch.testing.assert_close(ddp_w[k], single_w[k], rtol=1e-4, atol=1e-5, msg=k)


def test_cli_entry_point_runs_hydra_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "trainer.max_steps=1", "data.val_items=0", "name=cli"]) == 0
    runs = list((tmp_path / "runs").glob("*_cli"))
    assert len(runs) == 1
    run = runs[0]
    assert (run / ".hydra" / "config.yaml").exists() and (run / "config.yaml").exists()
    assert (run / "model.safetensors").exists() and (run / "train.log").exists()


def test_style_fine_tune_from_a_checkpoint_on_a_folder(tmp_path: Path, two_step_run: Path) -> None:
    import soundfile as sf

    from model import load_checkpoint
    from train.synth import GeneratedSource

    masters = tmp_path / "masters"
    masters.mkdir()
    src = GeneratedSource(16000, seconds=2.0, seed=9)
    for i in range(3):
        sf.write(str(masters / f"song{i}.wav"), src.excerpt(i).numpy().T, 16000)
    cfg = _cfg("experiment=style", "chain.sample_rate=16000", "data.excerpt_seconds=0.5", "data.num_workers=0",
               f"data.path={masters}", f"init_from={two_step_run / 'model.safetensors'}", f"export={tmp_path / 'my_style'}",
               "trainer.max_steps=1", "trainer.batch_size=2", "data.val_items=2", "trainer.val_batch_size=2",
               "chain.ceiling_dbtp=original")
    summary = train(cfg, tmp_path / "run", DistInfo())
    assert summary["step"] == 1 and summary["validation"]
    base = load_checkpoint(two_step_run / "model.safetensors")
    style = load_checkpoint(tmp_path / "my_style.safetensors")  # what `automaster --model` loads
    assert style.config == base.config
    assert not torch.equal(style.network.out.weight, base.network.out.weight)
    assert torch.equal(style.network.feature_mean, base.network.feature_mean)  # kept from the base model


def test_trainer_threads_also_bound_the_chains_numba_kernels(tmp_path: Path) -> None:
    """trainer.threads sets torch's and numba's thread counts in the main process: numba
    otherwise starts one thread per core, which the data worker's core is also running."""
    numba = pytest.importorskip("numba")
    from train.loop import Trainer

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs numba started with 2 or more threads")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        Trainer(_cfg("trainer.threads=1", "trainer.feature_stats_items=0"), tmp_path / "run", DistInfo())
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("override, words", [
    ("trainer.batch_size=0", "trainer.batch_size must be at least 1"),
    ("optim.lr=-1", "optim.lr must be positive"),
    ("init_from=/nonexistent/model.safetensors", "init_from: /nonexistent/model"),
    ("resume=/nonexistent", "resume='/nonexistent': no complete checkpoint"),
    ("trainer.max_steps=-5", "trainer.max_steps must be >= 0"),
    ("chain.sample_rate=0", "chain.sample_rate must be positive"),
    ("trainer.device=tpu9", "trainer.device=tpu9: not a device"),
    pytest.param("trainer.device=cuda", "CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")),
])
def test_cli_config_mistakes_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture, override: str, words: str) -> None:
    """A researcher's mistyped value ended in a torch/DataLoader traceback (exit 1); now one
    line naming the setting, exit 2, as data problems already were."""
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "trainer.max_steps=1", "data.val_items=0", override]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("automaster-train: error:")] == \
        [ln for ln in err.splitlines() if "error" in ln.lower()]


@pytest.mark.parametrize("seconds", [12.0, 7.0])
def test_item_analysis_reference_and_target_levels_match_pyloudnorm(seconds):
    """The data workers' levels: the context's loudness (what thresholds and drive are
    relative to; taken from the features' own measurement when their windows tile the
    context, measured again otherwise), the master crop's loudness as the target and its
    true peak as the ceiling; against pyloudnorm and scipy's 4x oversampling."""
    import json

    import pyloudnorm
    from scipy.signal import resample_poly

    from automaster.testing import synth_mix
    from train.pairs import ItemAnalysis

    sr = 44100
    fc = json.loads((Path(__file__).parents[1] / "checkpoints" / "default.json").read_text())["model_config"]["features"]
    a = ItemAnalysis(fc, sr, "original", "original")
    ctx = torch.from_numpy(synth_mix(seconds, sr, 2, -23.0, seed=8))
    crop = torch.from_numpy(synth_mix(3.0, sr, 2, -16.0, seed=9))
    out = a(ctx, crop)
    meter = pyloudnorm.Meter(sr)
    assert float(out["reference_lufs"]) == pytest.approx(meter.integrated_loudness(ctx.double().numpy().T), abs=0.05)
    assert float(out["target_lufs"]) == pytest.approx(meter.integrated_loudness(crop.double().numpy().T), abs=0.05)
    tp = 20 * np.log10(np.abs(resample_poly(crop.double().numpy(), 4, 1, axis=-1)).max())
    assert float(out["ceiling_dbtp"]) == pytest.approx(min(tp, 0.0), abs=0.1)
    assert out["features"].shape == (fc["n_mels"] * 4 + 14,) and bool(torch.isfinite(out["features"]).all())
