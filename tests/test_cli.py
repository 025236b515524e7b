"""The ``automaster`` command end to end, on short generated audio.

Most runs call ``automaster.cli.main([...])`` in-process (fast); a few go through
``python -m automaster`` to check exit codes and that no traceback escapes. Outputs are
measured independently: pyloudnorm for loudness, 4x ``resample_poly`` for the true peak.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from automaster.cli import main
from automaster.platforms import PLATFORMS
from automaster.testing import make_tiny_checkpoint, synth_mix

ROOT = Path(__file__).resolve().parents[1]
SR = 44100
SECONDS = 3.0


def lufs(path: Path) -> float:
    import pyloudnorm

    x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    return pyloudnorm.Meter(sr).integrated_loudness(x)


def true_peak_db(path: Path) -> float:
    x, _ = sf.read(str(path), dtype="float64", always_2d=True)
    return 20 * math.log10(np.abs(resample_poly(x, 4, 1, axis=0)).max())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(args: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, name: str) -> None:
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1, err
    assert name in errors[0], err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    mix = synth_mix(SECONDS, SR, seed=21, level_db=-21)
    paths = {"mix": d / "mix.wav", "mono": d / "mono.wav", "dir": d}
    sf.write(paths["mix"], mix.T, SR, subtype="PCM_16")
    sf.write(paths["mono"], synth_mix(SECONDS, SR, channels=1, seed=22).T, SR, subtype="PCM_24")
    paths["model"] = make_tiny_checkpoint(d / "ckpt" / "tiny")
    return paths


@pytest.fixture
def out_dir(tmp_path) -> Path:
    return tmp_path


# ---------------------------------------------------------------------------- fast paths
def test_help_and_usage_errors_import_nothing_heavy():
    code = ("import sys; from automaster.cli import main; "
            "a = main(['--help']); b = main(['x.wav', '-o', 'y.wav', '--intensity', '3']); "
            "print(a, b, 'torch' in sys.modules, 'numpy' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert res.stdout.split()[-4:] == ["0", "2", "False", "False"], res.stdout + res.stderr
    assert "usage: automaster" in res.stdout
    assert "--intensity must be between 0 and 1" in res.stderr


def test_subprocess_missing_file_exit_code():
    res = subprocess.run([sys.executable, "-m", "automaster", "nope.wav", "-o", "out.wav"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "nope.wav" in res.stderr
    assert "Traceback" not in res.stderr


def test_list_platforms(capsys):
    code, out, _ = run(["--list-platforms"], capsys)
    assert code == 0
    for name in ("spotify", "apple-music", "youtube", "tidal", "amazon-music", "deezer",
                 "soundcloud", "cd", "club", "ebu-r128"):
        assert name in PLATFORMS and name in out


# ---------------------------------------------------------------------------- end to end
def test_end_to_end_with_model(files, out_dir, capsys):
    before = sha(files["mix"])
    out = out_dir / "master.wav"
    code, stdout, err = run([files["mix"], "-o", out, "--model", files["model"]], capsys)
    assert code == 0, err
    assert sha(files["mix"]) == before  # the input is never modified
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (SR, 2, "PCM_24")
    assert info.frames == int(SECONDS * SR)
    assert abs(lufs(out) + 14.0) <= 0.5
    assert true_peak_db(out) <= -1.0 + 0.1
    assert "LUFS" in stdout and "->" in stdout and "dBTP" in stdout and "LRA" in stdout
    assert [p.name for p in out_dir.iterdir()] == ["master.wav"]  # no temporary left over


def test_in_process_run_leaves_the_thread_count_alone(files, out_dir, capsys):
    """The CLI sets its thread count per call (AUTOMASTER_THREADS, default 1) and restores
    the caller's afterwards."""
    import torch

    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        code, _, err = run([files["mix"], "-o", out_dir / "t.wav", "--model", files["model"]], capsys)
        assert code == 0, err
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def test_subprocess_full_run(files, out_dir):
    out = out_dir / "sub.flac"
    res = subprocess.run([sys.executable, "-m", "automaster", str(files["mix"]), "-o", str(out),
                          "--model", str(files["model"]), "-q"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and "Traceback" not in res.stderr
    assert abs(lufs(out) + 14.0) <= 0.5


@pytest.mark.parametrize("args,target,ceiling", [
    (["--target", "-18"], -18.0, -1.0),
    (["--target", "-10", "--ceiling", "-2"], -10.0, -2.0),
    (["--platform", "ebu-r128"], -23.0, -1.0),
    (["--platform", "apple-music"], -16.0, -1.0),
    (["--platform", "club"], -8.0, -0.5),
    (["--platform", "cd", "--target", "-11"], -11.0, -0.3),
])
def test_targets_and_platforms(files, out_dir, capsys, args, target, ceiling):
    out = out_dir / "t.wav"
    code, _, err = run([files["mix"], "-o", out, *args], capsys)
    assert code == 0, err
    assert abs(lufs(out) - target) <= 0.5
    assert true_peak_db(out) <= ceiling + 0.1


def test_preset_fallback_is_announced_once(files, out_dir, capsys, monkeypatch):
    import automaster.pipeline.decide

    monkeypatch.setattr(automaster.pipeline.decide, "default_model_available", lambda: False)
    code, _, err = run([files["mix"], files["mono"], "-o", out_dir], capsys)
    assert code == 0
    assert err.count("no trained model found") == 1


def test_mono_stays_mono_and_stereo_upmixes(files, out_dir, capsys):
    code, _, _ = run([files["mono"], "-o", out_dir / "m.wav"], capsys)
    assert code == 0 and sf.info(str(out_dir / "m.wav")).channels == 1
    code, _, _ = run([files["mono"], "-o", out_dir / "s.wav", "--stereo"], capsys)
    assert code == 0 and sf.info(str(out_dir / "s.wav")).channels == 2


def test_downmix(files, out_dir, capsys):
    six = out_dir / "six.wav"
    x = synth_mix(1.5, SR, seed=3)
    sf.write(six, np.concatenate([x, x, x]).T, SR)
    code, _, err = run([six, "-o", out_dir / "o.wav"], capsys)
    assert_user_error(code, err, "six.wav")
    assert "6 channels" in err
    code, _, err = run([six, "-o", out_dir / "o.wav", "--downmix"], capsys)
    assert code == 0, err
    assert sf.info(str(out_dir / "o.wav")).channels == 2


@pytest.mark.parametrize("in_ext,out_ext,subtype", [(".flac", ".wav", "PCM_24"),
                                                    (".ogg", ".flac", "PCM_24"),
                                                    (".aiff", ".ogg", "VORBIS"),
                                                    (".wav", ".aiff", "PCM_24")])
def test_formats_in_and_out(files, out_dir, capsys, in_ext, out_ext, subtype):
    src = out_dir / f"in{in_ext}"
    x, _ = sf.read(files["mix"], dtype="float32")
    sf.write(src, x, SR)
    out = out_dir / f"out{out_ext}"
    code, _, err = run([src, "-o", out], capsys)
    assert code == 0, err
    info = sf.info(str(out))
    assert info.subtype == subtype and info.samplerate == SR and info.channels == 2
    assert abs(lufs(out) + 14.0) <= (0.7 if out_ext == ".ogg" else 0.5)


@pytest.mark.parametrize("depth,subtype", [("16", "PCM_16"), ("24", "PCM_24"), ("32f", "FLOAT")])
def test_bit_depth(files, out_dir, capsys, depth, subtype):
    out = out_dir / "b.wav"
    code, _, _ = run([files["mix"], "-o", out, "--bit-depth", depth], capsys)
    assert code == 0 and sf.info(str(out)).subtype == subtype
    if depth == "32f":  # float output: no dither, so quiet passages keep sub-LSB detail
        x, _ = sf.read(out, dtype="float32")
        assert np.any(np.abs(x * 32768 - np.round(x * 32768)) > 1e-3)


def test_flac_float_is_refused(files, out_dir, capsys):
    code, _, err = run([files["mix"], "-o", out_dir / "x.flac", "--bit-depth", "32f"], capsys)
    assert code == 2 and "FLAC cannot store 32-bit float" in err
    assert list(out_dir.iterdir()) == []


def test_option_refused_per_file_in_folder_mode_names_the_file(files, out_dir, capsys):
    """Folder mode: an output-format problem is each file's own error line, naming it."""
    code, _, err = run([files["mix"], files["mono"], "-o", out_dir, "--format", "flac",
                        "--bit-depth", "32f"], capsys)
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 2 and all("FLAC cannot store 32-bit float" in ln for ln in lines), err
    assert str(files["mix"]) in lines[0] and str(files["mono"]) in lines[1], err
    assert list(out_dir.iterdir()) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX file names are bytes")
def test_file_name_that_is_not_utf8(files, out_dir, capsys):
    """A Latin-1 file name (bytes b"caf\\xe9.wav", from an old archive): soundfile got it
    as a str and encoded it as strict UTF-8 ("not a readable audio file"), and the summary
    line failed on a strict UTF-8 stdout (internal error after the master was written)."""
    name = os.fsdecode(b"caf\xe9.wav")
    try:
        (out_dir / name).write_bytes(files["mix"].read_bytes())
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    code, out, err = run([out_dir / name, "-o", out_dir / os.fsdecode(b"m\xe4ster.wav")], capsys)
    assert code == 0, err
    assert "caf\\udce9.wav" in out  # escaped, as Python's stderr writes it
    assert os.fsdecode(b"m\xe4ster.wav") in os.listdir(out_dir)


def test_report_name_too_long_is_refused_before_work(files, out_dir, capsys):
    out = out_dir / ("é" * 120 + ".wav")  # legal; OUT.report.json is 256 bytes
    code, _, err = run([files["mix"], "-o", out, "--report"], capsys)
    assert_user_error(code, err, "report.json: file name too long (256 bytes")
    assert list(out_dir.iterdir()) == []


def test_sample_rate_conversion(files, out_dir, capsys):
    out = out_dir / "r.wav"
    code, _, err = run([files["mix"], "-o", out, "--sample-rate", "48000"], capsys)
    assert code == 0, err
    info = sf.info(str(out))
    assert info.samplerate == 48000
    assert info.frames == math.ceil(SECONDS * SR * 48000 / SR)
    assert abs(lufs(out) + 14.0) <= 0.5 and true_peak_db(out) <= -0.9


def test_force(files, out_dir, capsys):
    out = out_dir / "f.wav"
    assert run([files["mix"], "-o", out], capsys)[0] == 0
    stamp = sha(out)
    code, _, err = run([files["mix"], "-o", out, "--target", "-20"], capsys)
    assert_user_error(code, err, "f.wav")
    assert "--force" in err and sha(out) == stamp
    code, _, _ = run([files["mix"], "-o", out, "--target", "-20", "--force"], capsys)
    assert code == 0 and sha(out) != stamp


def test_report(files, out_dir, capsys):
    out = out_dir / "rep.wav"
    code, _, err = run([files["mix"], "-o", out, "--report"], capsys)
    assert code == 0, err
    doc = json.loads((out_dir / "rep.wav.report.json").read_text())
    for key in ("before", "after", "settings", "spectrum", "gain_reduction"):
        assert key in doc
    for key in ("integrated_lufs", "true_peak_dbtp", "loudness_range_lu", "crest_db"):
        assert key in doc["before"] and key in doc["after"]
    assert doc["gain_reduction"]["low"]["gain_db"] and doc["settings_in_words"]["Dynamics"]
    assert doc["gain_reduction"]["limiter"]["gain_db"]
    assert (out_dir / "rep.wav.report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------- settings
def test_intensity_zero_writes_identity_settings(files, out_dir, capsys):
    from dsp import MasteringChain

    p = out_dir / "p.json"
    code, _, _ = run([files["mix"], "-o", out_dir / "i.wav", "--intensity", "0",
                      "--params-out", p], capsys)
    assert code == 0
    chain = MasteringChain(SR)
    ident = chain.denormalize(chain.identity_params(1))[0]
    got = json.loads(p.read_text())["settings"]
    assert got.keys() == ident.keys()
    from automaster.intensity import is_scaled

    for k in got:  # every amount at neutral (frequencies, times and thresholds stay as predicted)
        if is_scaled(k):
            assert got[k] == pytest.approx(ident[k], rel=1e-5, abs=1e-6), k


def test_params_out_in_round_trip(files, out_dir, capsys):
    p = out_dir / "s.json"
    a, b = out_dir / "a.wav", out_dir / "b.wav"
    assert run([files["mix"], "-o", a, "--model", files["model"], "--params-out", p], capsys)[0] == 0
    doc = json.loads(p.read_text())
    assert doc["source"] == "model" and len(doc["settings"]) > 10
    assert run([files["mix"], "-o", b, "--params-in", p], capsys)[0] == 0
    xa, _ = sf.read(a, dtype="float64")
    xb, _ = sf.read(b, dtype="float64")
    assert np.abs(xa - xb).max() < 1e-4  # the same master (settings are rounded to 6 digits)
    doc["settings"] = {"eq.high_shelf.gain_db": 5.0}  # a partial, edited file
    p.write_text(json.dumps(doc))
    p2 = out_dir / "s2.json"
    code, _, err = run([files["mix"], "-o", out_dir / "c.wav", "--params-in", p,
                        "--params-out", p2], capsys)
    assert code == 0, err
    assert json.loads(p2.read_text())["settings"]["eq.high_shelf.gain_db"] == 5.0


@pytest.mark.parametrize("content,problem", [
    ("{not json", "invalid JSON"),
    ('{"settings": {"eq.bogus": 1}}', "unknown parameter"),
    ('{"settings": {"multiband.low.ratio": 500}}', "outside its range"),
    ('{"eq.low_shelf.gain_db": "loud"}', "must be a number"),
    ("[1, 2]", "JSON object"),
])
def test_params_in_errors(files, out_dir, capsys, content, problem):
    p = out_dir / "bad_settings.json"
    p.write_text(content)
    code, _, err = run([files["mix"], "-o", out_dir / "x.wav", "--params-in", p], capsys)
    assert_user_error(code, err, "bad_settings.json")
    assert problem in err
    assert not (out_dir / "x.wav").exists()


def test_params_in_with_a_byte_order_mark(files, out_dir, capsys):
    """A settings file saved by an editor that writes a UTF-8 BOM (Windows Notepad) was
    refused as "invalid JSON (Unexpected UTF-8 BOM ...)"."""
    p, p2 = out_dir / "edited.json", out_dir / "back.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps({"settings": {"eq.high_shelf.gain_db": 5.0}}).encode())
    code, _, err = run([files["mix"], "-o", out_dir / "b.wav", "--params-in", p,
                        "--params-out", p2], capsys)
    assert code == 0, err
    assert json.loads(p2.read_text())["settings"]["eq.high_shelf.gain_db"] == 5.0


# ---------------------------------------------------------------------------- bad input
def _bad_input(kind: str, d: Path) -> Path:
    p = d / f"bad_{kind}.wav"
    if kind == "missing":
        return p
    if kind == "corrupt":
        p.write_bytes(b"RIFF" + os.urandom(3000))
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "no_samples":
        sf.write(p, np.zeros((0, 2)), SR)
    elif kind == "short":
        sf.write(p, synth_mix(0.3, SR).T, SR)
    elif kind == "nan":
        x = synth_mix(1.0, SR)
        x[1, 20000] = np.nan
        sf.write(p, x.T, SR, subtype="FLOAT")
    elif kind == "inf":
        x = synth_mix(1.0, SR)
        x[0, 100] = np.inf
        sf.write(p, x.T, SR, subtype="FLOAT")
    elif kind == "three_channels":
        sf.write(p, np.zeros((SR, 3)), SR)
    elif kind == "truncated_flac":
        p = d / "bad_truncated.flac"
        sf.write(p, synth_mix(2.0, SR).T, SR)
        p.write_bytes(p.read_bytes()[:40000])
    return p


@pytest.mark.parametrize("kind", ["missing", "corrupt", "empty", "no_samples", "short", "nan",
                                  "inf", "three_channels", "truncated_flac"])
def test_bad_inputs(out_dir, capsys, kind):
    src_dir = out_dir / "src"
    src_dir.mkdir()
    dst_dir = out_dir / "dst"
    dst_dir.mkdir()
    bad = _bad_input(kind, src_dir)
    code, _, err = run([bad, "-o", dst_dir / "out.wav"], capsys)
    assert_user_error(code, err, bad.name)
    assert list(dst_dir.iterdir()) == []  # no partial output


def test_output_equal_to_input(files, out_dir, capsys):
    src = out_dir / "same.wav"
    src.write_bytes(files["mix"].read_bytes())
    stamp = sha(src)
    code, _, err = run([src, "-o", out_dir / "." / "same.wav", "--force"], capsys)
    assert_user_error(code, err, "same.wav")
    assert sha(src) == stamp


def test_output_folder_problems(files, out_dir, capsys):
    code, _, err = run([files["mix"], "-o", out_dir / "nowhere" / "o.wav"], capsys)
    assert_user_error(code, err, "nowhere")
    (out_dir / "afile").write_text("x")
    code, _, err = run([files["mix"], files["mono"], "-o", out_dir / "afile"], capsys)
    assert_user_error(code, err, "afile")
    code, _, err = run([files["mix"], "-o", out_dir / "o.mp4"], capsys)
    assert_user_error(code, err, "o.mp4")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores folder permissions")
def test_unwritable_output_folder(files, out_dir, capsys):
    ro = out_dir / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = run([files["mix"], "-o", ro / "o.wav"], capsys)
        assert_user_error(code, err, "ro")
    finally:
        ro.chmod(0o700)


def test_bad_checkpoints(files, out_dir, capsys):
    import shutil

    stem = out_dir / "ck" / "bad"
    stem.parent.mkdir()
    shutil.copy(files["model"], stem.with_suffix(".safetensors"))
    shutil.copy(files["model"].with_suffix(".json"), stem.with_suffix(".json"))
    w = stem.with_suffix(".safetensors")
    w.write_bytes(w.read_bytes()[:500])  # truncated weights
    code, _, err = run([files["mix"], "-o", out_dir / "o.wav", "--model", w], capsys)
    assert_user_error(code, err, "bad")
    meta = json.loads(files["model"].with_suffix(".json").read_text())
    meta["range_table"][0]["high"] = 99.0  # trained for another chain
    shutil.copy(files["model"], w)
    stem.with_suffix(".json").write_text(json.dumps(meta))
    code, _, err = run([files["mix"], "-o", out_dir / "o.wav", "--model", w], capsys)
    assert_user_error(code, err, "bad")
    code, _, err = run([files["mix"], "-o", out_dir / "o.wav", "--model", "no-such-model"], capsys)
    assert_user_error(code, err, "no-such-model")
    assert not (out_dir / "o.wav").exists()


def test_silence_passes_through_with_warning(out_dir, capsys):
    src = out_dir / "quiet.wav"
    x = np.zeros((2, SR), np.float32)
    x[:, ::500] = 1e-5
    sf.write(src, x.T, SR, subtype="FLOAT")
    code, _, err = run([src, "-o", out_dir / "q.wav", "--bit-depth", "32f"], capsys)
    assert code == 0
    assert "warning:" in err and "quiet.wav" in err and "silent" in err
    y, _ = sf.read(out_dir / "q.wav", dtype="float32")
    np.testing.assert_array_equal(y.T, x)


def test_silence_passed_through_reports_its_own_levels(out_dir, capsys):
    """Near-silence is written as it was; the report's before/after and the warning give
    that file's levels, not those of the restored copy the analysis measured (auto's DC
    stage changed a -86 dBFS tone's peak by 1.4 dB, and the report said -84.9)."""
    src = out_dir / "faint.wav"
    t = np.arange(2 * SR) / SR
    tone = 5e-5 * np.sin(2 * np.pi * 220 * t + 1.0)
    x = np.stack([tone, np.roll(tone, 100)]).astype(np.float32)
    sf.write(src, x.T, SR, subtype="FLOAT")
    code, _, err = run([src, "-o", out_dir / "f.wav", "--bit-depth", "32f", "--report"], capsys)
    assert code == 0 and "silent" in err
    peak_db = 20 * np.log10(np.abs(x).max())
    rep = json.loads((out_dir / "f.wav.report.json").read_text())
    for key in ("before", "after"):
        assert abs(rep[key]["sample_peak_dbfs"] - peak_db) < 0.01
    assert f"peak {peak_db:.1f} dBFS" in err


def test_batch_with_one_bad_file(files, out_dir, capsys):
    bad = out_dir / "broken.wav"
    bad.write_bytes(b"garbage" * 100)
    dst = out_dir / "masters"
    dst.mkdir()
    p = out_dir / "batch.json"
    code, stdout, err = run([files["mix"], bad, files["mono"], "-o", dst, "--params-out", p,
                             "--format", "flac"], capsys)
    assert_user_error(code, err, "broken.wav")
    assert sorted(x.name for x in dst.iterdir()) == ["mix.flac", "mono.flac"]
    assert stdout.count("->") == 2
    doc = json.loads(p.read_text())
    assert len(doc["files"]) == 2


def test_cuda_request_without_cuda(files, out_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code, _, err = run([files["mix"], "-o", out_dir / "o.wav", "--device", "cuda"], capsys)
    assert code == 2 and "CUDA" in err and "Traceback" not in err
