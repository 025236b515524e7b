"""Issue #9: signals, partial files, untrusted checkpoints and API inputs.

Each test reproduces one defect of the stress test (it failed before the fix): real CLI
subprocesses for the signals, crafted files for the untrusted inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import automaster.io as aio
from automaster.cli import main
from automaster.testing import make_tiny_checkpoint, synth_mix

ROOT = Path(__file__).resolve().parents[1]
SR = 44100


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("AUTOMASTER_DEBUG", None)
    return env


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_error_line(err: str, name: str) -> None:
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    assert name in lines[0], err
    assert "Traceback" not in err


def _parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# ----------------------------------------------------------------------------- 1: signals
@pytest.fixture(scope="module")
def long_input(tmp_path_factory) -> Path:
    """20 minutes of 8 kHz mono noise (19 MB): mastering it takes far longer than the
    moment between the output's temporary file appearing and the signal being sent."""
    folder = tmp_path_factory.mktemp("long")
    x = (np.random.default_rng(0).standard_normal(8000 * 1200) * 0.05).astype(np.float32)
    path = folder / "long.wav"
    sf.write(path, x, 8000, subtype="PCM_16")
    return path


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_signal_during_master_leaves_nothing(long_input, tmp_path, signame):
    before = _sha(long_input)
    out = tmp_path / "out.flac"
    # FLAC at 48 kHz: resampling and encoding keep the temporary file alive for seconds
    proc = subprocess.Popen([sys.executable, "-m", "automaster", str(long_input), "-o", str(out),
                             "--sample-rate", "48000", "-q"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not _parts(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _parts(tmp_path), "the run never created its temporary output"
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    signum = getattr(signal, signame)
    assert proc.returncode == 128 + signum, err
    _one_error_line(err, f"interrupted ({signame})")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "something was left behind"
    assert _sha(long_input) == before


# ------------------------------------------------------------ 2: interrupt in the writer's open
def test_interrupt_while_opening_the_writer_removes_the_part(tmp_path, monkeypatch):
    import soundfile

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # what a Ctrl-C in the lazy import / the open looks like

    monkeypatch.setattr(soundfile, "SoundFile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        aio.AudioWriter(tmp_path / "o.wav", SR, 2)
    assert list(tmp_path.iterdir()) == []


def test_cli_interrupt_while_opening_the_writer(tmp_path, monkeypatch, capsys):
    import soundfile

    sf.write(tmp_path / "in.wav", synth_mix(1.0).T, SR)
    real = soundfile.SoundFile

    def open_(path, mode="r", *a, **k):
        if mode == "w":
            raise KeyboardInterrupt
        return real(path, mode, *a, **k)

    monkeypatch.setattr(soundfile, "SoundFile", open_)
    code = main([str(tmp_path / "in.wav"), "-o", str(tmp_path / "o.wav"), "-q"])
    _, err = capsys.readouterr()
    assert code == 130
    _one_error_line(err, "interrupted (SIGINT)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_interrupt_while_writing_the_report_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Ctrl-C after the master was written but before its report was: the master and the
    report are one result, so neither stays (before: the WAV and the JSON stayed, without
    the PNG, and a re-run refused the existing output)."""
    import automaster.report as report

    sf.write(tmp_path / "in.wav", synth_mix(1.0).T, SR)

    def draw(doc, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "draw_report", draw)
    code = main([str(tmp_path / "in.wav"), "-o", str(tmp_path / "o.wav"), "--report", "-q"])
    _, err = capsys.readouterr()
    assert code == 130
    _one_error_line(err, "interrupted (SIGINT)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


# --------------------------------------------------------------------- 3: stale parts
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_parts_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "out.wav"
    host = aio._host_tag()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f".out.wav.{_dead_pid()}@{host}.abc123xy.part"
        live = tmp_path / f".out.wav.{sleeper.pid}@{host}.def456xy.part"
        other_host = tmp_path / f".out.wav.{_dead_pid()}@some-other-host.ghi789xy.part"
        old_other_host = tmp_path / ".out.wav.12345@some-other-host.jkl012xy.part"
        legacy_old = tmp_path / ".out.wav.mno345xy.part"      # before pids were recorded
        legacy_new = tmp_path / ".out.wav.pqr678xy.part"
        other_target = tmp_path / f".out.wav.report.json.{_dead_pid()}@{host}.stu901xy.part"
        for p in (dead, live, other_host, old_other_host, legacy_old, legacy_new, other_target):
            p.write_bytes(b"x" * 100)
        old = time.time() - 3 * 24 * 3600
        os.utime(old_other_host, (old, old))
        os.utime(legacy_old, (old, old))

        tmp = aio.new_temp_file(out)
        names = {p.name for p in tmp_path.iterdir()}
        assert dead.name not in names and old_other_host.name not in names
        assert legacy_old.name not in names
        for kept in (live, other_host, legacy_new, other_target):
            assert kept.name in names, kept
        assert tmp.name.startswith(f".out.wav.{os.getpid()}@{host}.")
        aio.discard_temp_file(tmp)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_later_run_removes_the_part_of_a_killed_one(long_input, tmp_path, capsys):
    out = tmp_path / "out.wav"
    proc = subprocess.Popen([sys.executable, "-m", "automaster", str(long_input), "-o", str(out),
                             "-q"], cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _parts(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no cleanup possible
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(_parts(tmp_path)) == 1
    sf.write(tmp_path / "short.wav", synth_mix(1.0).T, SR)
    assert main([str(tmp_path / "short.wav"), "-o", str(out), "-q"]) == 0
    assert _parts(tmp_path) == []
    assert out.exists()


# ------------------------------------------------------------- 4: folder unwritable at commit
def test_commit_into_a_folder_that_became_unwritable(tmp_path, monkeypatch, capsys):
    sf.write(tmp_path / "in.wav", synth_mix(1.0).T, SR)
    real_unlink = os.unlink

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    def unlink(path, *a, **k):
        if str(path).endswith(".part"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_unlink(path, *a, **k)

    monkeypatch.setattr(aio.os, "replace", refuse)
    monkeypatch.setattr(aio.os, "unlink", unlink)
    code = main([str(tmp_path / "in.wav"), "-o", str(tmp_path / "o.wav"), "-q"])
    _, err = capsys.readouterr()
    monkeypatch.undo()
    assert code == 2, err
    _one_error_line(err, "o.wav")
    assert "internal error" not in err
    parts = _parts(tmp_path)
    assert len(parts) == 1 and parts[0] in err  # named, so the user can remove it
    assert (tmp_path / parts[0]).stat().st_size == 0  # and it holds no space meanwhile
    assert not (tmp_path / "o.wav").exists()


def test_writer_abort_never_raises(tmp_path, monkeypatch):
    w = aio.AudioWriter(tmp_path / "o.wav", SR, 1)
    w.write(np.zeros((1, 1000), np.float32))
    monkeypatch.setattr(aio.os, "unlink", lambda *a, **k: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied")))
    reason = w.abort()
    assert reason and "Permission denied" in reason


# ------------------------------------------------------------------ 5: truncated WAV
def _truncated_wav(folder: Path) -> Path:
    full = folder / "full.wav"
    sf.write(full, synth_mix(2.0).T, SR, subtype="PCM_16")
    data = full.read_bytes()
    cut = folder / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])  # header still says 2 s
    full.unlink()
    return cut


def test_truncated_wav_is_detected_from_the_data_chunk_size(tmp_path):
    cut = _truncated_wav(tmp_path)
    info = aio.probe(cut)
    assert info.declared_frames == 2 * SR
    assert info.frames < 1.01 * SR  # what libsndfile reports: no error of its own
    assert info.truncated


def test_truncated_wav_refused_unless_allowed(tmp_path, capsys):
    cut = _truncated_wav(tmp_path)
    before = _sha(cut)
    out = tmp_path / "o.wav"
    code = main([str(cut), "-o", str(out), "-q"])
    _, err = capsys.readouterr()
    assert code == 2
    _one_error_line(err, str(cut))
    assert "truncated" in err and "--allow-truncated" in err
    assert not out.exists() and _parts(tmp_path) == []
    assert _sha(cut) == before

    code = main([str(cut), "-o", str(out), "-q", "--allow-truncated"])
    _, err = capsys.readouterr()
    assert code == 0, err
    warnings = [ln for ln in err.splitlines() if "warning:" in ln and "truncated" in ln]
    assert len(warnings) == 1 and str(cut) in warnings[0]
    assert sf.info(str(out)).frames == aio.probe(cut).frames
    assert _sha(cut) == before


def test_complete_wavs_are_not_flagged(tmp_path):
    for subtype, fmt in (("PCM_24", "WAV"), ("FLOAT", "WAV"), ("PCM_16", "RF64")):
        p = tmp_path / f"{subtype}{fmt}.wav"
        sf.write(p, synth_mix(0.5).T, SR, subtype=subtype, format=fmt)
        info = aio.probe(p)
        assert not info.truncated and info.declared_frames == info.frames


# ------------------------------------------------------------------ 6: silent reference
@pytest.mark.parametrize("level", [0.0, 10 ** (-95 / 20)])
def test_silent_reference_refused_even_with_a_target(tmp_path, capsys, level):
    sf.write(tmp_path / "in.wav", synth_mix(1.0).T, SR)
    noise = np.random.default_rng(1).uniform(-1, 1, (SR, 2)) * level
    ref = tmp_path / "silent.wav"
    sf.write(ref, noise, SR, subtype="FLOAT")
    out = tmp_path / "o.wav"
    code = main([str(tmp_path / "in.wav"), "-o", str(out), "--reference", str(ref),
                 "--target", "-14", "-q"])
    _, err = capsys.readouterr()
    assert code == 2
    _one_error_line(err, str(ref))
    assert "silent" in err
    assert not out.exists() and _parts(tmp_path) == []


def test_silent_reference_refused_by_the_api():
    from automaster import master
    from automaster.errors import InputError

    with pytest.raises(InputError, match="silent"):
        master(synth_mix(1.0), SR, target_lufs=-14.0, reference=np.zeros((2, SR), np.float32))


# --------------------------------------------------------------- 7: API array types
def _lufs(x: np.ndarray) -> float:
    import pyloudnorm

    return pyloudnorm.Meter(SR).integrated_loudness(np.asarray(x, np.float64).T)


def test_int16_input_is_scaled_by_full_scale():
    from automaster import master

    # restoration off: "before" is measured after restoration, and this is about how the
    # samples are read (its click repair also fires on the coarse 8-bit steps below)
    x = synth_mix(1.0)
    pcm = np.round(x * 32767).astype(np.int16)
    r = master(pcm, SR, settings={}, restore="off")
    expected = _lufs(pcm.astype(np.float64) / 32768.0)
    assert abs(r.report["before"]["integrated_lufs"] - expected) < 0.1
    assert abs(r.report["before"]["integrated_lufs"] - _lufs(x)) < 0.1
    i32 = (x.astype(np.float64) * 2**31).astype(np.int32)
    r32 = master(i32, SR, settings={}, restore="off")
    assert abs(r32.report["before"]["integrated_lufs"] - expected) < 0.1
    u8 = np.clip(np.round(x * 8 + 128), 0, 255).astype(np.uint8)  # 8-bit WAV is offset binary
    r8 = master(u8, SR, settings={}, restore="off")
    assert abs(r8.report["before"]["integrated_lufs"] - _lufs((u8 - 128.0) / 128.0)) < 0.2


@pytest.mark.parametrize("bad, pattern", [
    (np.ones((2, SR), bool), "bool"),
    (np.ones((2, SR), np.complex64) * 0.1, "complex"),
    (np.ones((2, SR), np.uint16), "uint16"),
    (np.ones((2, SR), np.int64), "int64"),
])
def test_bool_complex_and_odd_integer_arrays_are_refused(bad, pattern):
    from automaster import master

    with pytest.raises(TypeError, match=pattern):
        master(bad, SR, settings={})


def test_samples_by_channels_array_says_transpose():
    from automaster import master

    with pytest.raises(ValueError, match=r"\(samples, channels\).*\.T"):
        master(synth_mix(1.0).T, SR, settings={})


@pytest.mark.parametrize("what", ["audio", "reference"])
def test_empty_array_says_empty_not_transpose(what):
    from automaster import master

    empty = np.zeros((2, 0), np.float32)
    with pytest.raises(ValueError, match=f"{what} is empty") as e:
        if what == "audio":
            master(empty, SR, settings={})
        else:
            master(synth_mix(1.0), SR, reference=empty, device="cpu")
    assert ".T" not in str(e.value)


@pytest.mark.parametrize("rate", [-44100, 0, 100, 44100.7, 10**6])
def test_bad_reference_sample_rate_is_named(rate):
    """reference_sample_rate was not checked like sample_rate: -44100 gave "bad meter
    setup", 100 called a full-scale reference "silent", 0 fell back to sample_rate and
    44100.7 was truncated, silently."""
    from automaster import master

    x = synth_mix(1.0)
    with pytest.raises(ValueError, match=r"^reference_sample_rate must be an integer"):
        master(x, SR, reference=x, reference_sample_rate=rate, device="cpu")


@pytest.mark.parametrize("kwargs", [{"target_lufs": "-14"}, {"ceiling_dbtp": "-1"},
                                    {"intensity": None}, {"intensity": [1.0]}])
def test_non_numeric_arguments_are_named(kwargs):
    """A string or None where a number goes said only "must be real number, not str"."""
    from automaster import master

    (name, value), = kwargs.items()
    with pytest.raises(TypeError, match=rf"^{name} must be a number, got {re.escape(repr(value))}"):
        master(synth_mix(1.0), SR, settings={}, **kwargs)
    # numbers in other wrappers still are numbers (as before)
    r = master(synth_mix(1.0), SR, settings={}, target_lufs=np.array(-20.0), intensity=np.float32(1))
    assert r.report["target_lufs"] == -20.0


def test_tensor_that_requires_grad_is_detached():
    import torch

    from automaster import master

    x = synth_mix(1.0)
    t = torch.tensor(x, requires_grad=True)
    r = master(t, SR, settings={})
    ref = master(x, SR, settings={})
    assert np.array_equal(r.audio, ref.audio)
    with pytest.raises(TypeError, match="bool"):
        master(torch.ones(2, SR, dtype=torch.bool), SR, settings={})


# ------------------------------------------------------------ 8: oversized checkpoints
def _tampered_checkpoint(folder: Path, edit) -> Path:
    weights = make_tiny_checkpoint(folder / "m")
    meta_path = weights.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    edit(meta["model_config"])
    meta_path.write_text(json.dumps(meta))
    return weights


def test_oversized_checkpoint_refused_before_allocating(tmp_path):
    def huge(cfg):
        cfg["network"]["hidden"] = [25000, 25000]  # 625M weights = 2.5 GB if built
    weights = _tampered_checkpoint(tmp_path, huge)
    sf.write(tmp_path / "in.wav", synth_mix(1.0).T, SR)
    probe = ("import resource, sys\nfrom automaster.cli import main\nrc = main(sys.argv[1:])\n"
             "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
             "sys.exit(rc)\n")
    p = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "in.wav"), "-o",
                        str(tmp_path / "o.wav"), "--model", str(weights), "-q"],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    _one_error_line(p.stderr, str(weights.with_suffix(".json")))
    assert "parameters" in p.stderr and "limit" in p.stderr
    maxrss_mb = int(p.stdout.split("MAXRSS_KB")[1].split()[0]) / 1024
    # torch + the CLI's preload measured 0.9-1.6 GB here (1.58 GB once in a full-suite run);
    # building the tampered network would add 2.5 GB on top
    assert maxrss_mb < 2200, maxrss_mb
    assert not (tmp_path / "o.wav").exists() and _parts(tmp_path) == []


# (sizes kept small enough that code without the checks fails the test without exhausting
# the machine's memory: an unchecked n_mels=10**9 would try to allocate terabytes)
@pytest.mark.parametrize("edit, pattern", [
    (lambda c: c["features"].update(n_windows=100000), "n_windows"),
    (lambda c: c["features"].update(n_mels=10000), "n_mels"),
    (lambda c: c["network"].update(hidden=[10**40]), "hidden"),
    (lambda c: c["network"].update(hidden=[8] * 1000), "hidden"),
    (lambda c: c["network"].update(cond_dim=100000), "cond_dim"),
    (lambda c: c.update(num_params=10**6), "num_params"),
    (lambda c: c["network"].update(hidden=["512"]), "integer"),
])
def test_absurd_checkpoint_settings_are_refused(tmp_path, edit, pattern):
    from model.checkpoint import CheckpointError, load_checkpoint

    weights = _tampered_checkpoint(tmp_path, edit)
    with pytest.raises(CheckpointError, match=pattern) as e:
        load_checkpoint(weights)
    assert str(weights.with_suffix(".json")) in str(e.value)


def test_oversized_weights_file_refused(tmp_path):
    from model.checkpoint import CheckpointError, load_checkpoint

    weights = make_tiny_checkpoint(tmp_path / "m")
    with open(weights, "ab") as f:
        f.truncate(weights.stat().st_size + (64 << 20))  # sparse: 64 MB more than it needs
    with pytest.raises(CheckpointError, match="far more"):
        load_checkpoint(weights)


# ------------------------------------------------------------------ 9: hostile JSON
@pytest.mark.parametrize("text", [
    "[" * 50000 + "]" * 50000,
    '{"settings": {"input.gain_db": ' + "[" * 50000 + "]" * 50000 + "}}",
    '{"input.gain_db": ' + "9" * 5000 + "}",
    '{"input.gain_db": ' + "9" * 4000 + "}",
])
def test_params_in_hostile_json(tmp_path, capsys, text):
    sf.write(tmp_path / "in.wav", synth_mix(1.0).T, SR)
    params = tmp_path / "p.json"
    params.write_text(text)
    code = main([str(tmp_path / "in.wav"), "-o", str(tmp_path / "o.wav"), "--params-in",
                 str(params), "-q"])
    _, err = capsys.readouterr()
    assert code == 2, err
    _one_error_line(err, str(params))
    assert "internal error" not in err
    assert not (tmp_path / "o.wav").exists()


def test_checkpoint_hostile_json(tmp_path):
    from model.checkpoint import CheckpointError, read_metadata

    make_tiny_checkpoint(tmp_path / "m")
    for text in ("[" * 50000 + "]" * 50000, '{"format": ' + "1" * 5000 + "}"):
        (tmp_path / "m.json").write_text(text)
        with pytest.raises(CheckpointError, match="m.json"):
            read_metadata(tmp_path / "m.json")


# ----------------------------------------------------- 10: latest.json outside the run
@pytest.mark.parametrize("pointer", ["../../elsewhere/step_0000001", "/ABS", "step_link"])
def test_latest_json_cannot_escape_the_run_folder(tmp_path, pointer):
    from train.state import StateError, find_latest_checkpoint

    outside = tmp_path / "elsewhere" / "step_0000001"
    outside.mkdir(parents=True)
    (outside / "state.json").write_text("{}")
    root = tmp_path / "run" / "checkpoints"
    root.mkdir(parents=True)
    (root / "step_link").symlink_to(outside)
    pointer = str(outside) if pointer == "/ABS" else pointer
    (root / "latest.json").write_text(json.dumps({"step": 1, "dir": pointer}))
    with pytest.raises(StateError, match="outside"):
        find_latest_checkpoint(tmp_path / "run")
    # without the pointer, a symlinked step folder leading outside is not picked either
    (root / "latest.json").unlink()
    assert find_latest_checkpoint(tmp_path / "run") is None
    (root / "step_0000002").mkdir()
    (root / "step_0000002" / "state.json").write_text("{}")
    (root / "latest.json").write_text(json.dumps({"step": 2, "dir": "step_0000002"}))
    assert find_latest_checkpoint(tmp_path / "run") == root / "step_0000002"
