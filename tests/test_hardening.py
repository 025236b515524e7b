"""Issue #9: signals, partial files, untrusted checkpoints and API inputs.

Each test reproduces one defect of the stress test (it failed before the fix): real CLI
subprocesses for the signals, crafted files for the untrusted inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
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
from automaster.errors import OutputError, UserError
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
    out = tmp_path / "out.wav"
    proc = subprocess.Popen([sys.executable, "-m", "automaster", str(long_input), "-o", str(out),
                             "-q"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
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
        old_other_host = tmp_path / f".out.wav.12345@some-other-host.jkl012xy.part"
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
