"""Restoration wired into the product (issue #10, section 1 "CLI"): ``--restore``,
``--denoise``, ``--mono-bass`` on the command line, ``restore=`` in the Python API and the
album, findings in the report. The restoration's own quality (hum, clicks, de-clipping...)
is tests/test_restore.py; here a synthetic DC offset of 0.25 on the bundled example goes
through the whole product and the output file's DC is measured with numpy.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from automaster.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "automaster" / "examples" / "example.ogg"
DC = 0.25
DC_BAR = 1e-3  # issue #10: DC below 0.001 in the master


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(args: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("automaster: error:"), err
    for w in words:
        assert w in lines[0], err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def music() -> tuple[np.ndarray, int]:
    """6 s of the bundled example at half level, (channels, samples) float32."""
    x, sr = sf.read(str(EXAMPLE), dtype="float32", always_2d=True)
    return np.ascontiguousarray(0.5 * x[5 * sr:11 * sr].T), sr


@pytest.fixture(scope="module")
def files(tmp_path_factory, music) -> dict[str, Path]:
    from automaster.testing import make_tiny_checkpoint

    d = tmp_path_factory.mktemp("restore_cli")
    x, sr = music
    paths = {"dc": d / "dc.wav", "dir": d}
    sf.write(paths["dc"], (x + DC).T, sr, subtype="FLOAT")
    paths["model"] = make_tiny_checkpoint(d / "ckpt" / "tiny")
    return paths


@pytest.fixture(scope="module")
def identity() -> dict[str, float]:
    """The chain's identity setting: no EQ, no dynamics; only the gain and the limiter act,
    so a DC offset nothing removes reaches the output."""
    from dsp import MasteringChain

    chain = MasteringChain(sample_rate=44100)
    return chain.denormalize(chain.identity_params(1))[0]


@pytest.fixture(scope="module")
def identity_file(files, identity) -> Path:
    from automaster.settings import settings_document

    path = files["dir"] / "identity.json"
    path.write_text(json.dumps(settings_document(identity)))
    return path


def output_dc(path: Path) -> float:
    y, _ = sf.read(str(path), dtype="float64", always_2d=True)
    return float(np.abs(y.mean(axis=0)).max())


def finding(report: dict, problem: str) -> dict:
    found = [f for f in report["restoration"]["findings"] if f["problem"] == problem]
    assert len(found) == 1, report["restoration"]
    return found[0]


# ---------------------------------------------------------------------------- options
def test_option_names_match_the_restore_package():
    from automaster.restore import FIXES, parse_restore
    from automaster.restore_options import FIXES as CLI_FIXES, normalize_restore

    assert CLI_FIXES == FIXES
    for spec in ("auto", "off", "dc", "hum,clicks", " DC , polarity ", "clipping,dc,dc"):
        assert parse_restore(normalize_restore(spec)) == parse_restore(spec)
    for bad in ("foo", "dc,foo", ",", ""):
        with pytest.raises(ValueError):
            normalize_restore(bad)


@pytest.mark.parametrize("args, words", [
    (["--restore", "foo"], ["--restore", "foo"]),
    (["--restore", "dc,hiss"], ["--restore", "hiss"]),
    (["--denoise", "2"], ["--denoise", "between 0 and 1"]),
    (["--denoise", "-0.1"], ["--denoise"]),
    (["--denoise", "nan"], ["--denoise"]),
    (["--mono-bass", "5"], ["--mono-bass", "Hz"]),
])
def test_bad_values_are_one_line_errors(files, tmp_path, capsys, args, words):
    before = sha(files["dc"])
    code, _, err = run([files["dc"], "-o", tmp_path / "m.wav", *args], capsys)
    one_line_error(code, err, *words)
    assert not (tmp_path / "m.wav").exists()
    assert sha(files["dc"]) == before


@pytest.mark.filterwarnings("error")  # a RuntimeWarning from a stage fails the run
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_non_finite_input_is_refused_before_restoration(files, music, tmp_path, capsys, bad):
    """The same one-line error as without restoration, before any stage runs on the
    samples (an inf went through the filters first and printed numpy/scipy warnings)."""
    x, sr = music
    y = x.copy()
    y[1, 2 * sr] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, y.T, sr, subtype="FLOAT")
    code, _, err = run([path, "-o", tmp_path / "m.wav", "--model", files["model"]], capsys)
    one_line_error(code, err, "bad.wav", "NaN or infinite", "2.000 s")
    assert not (tmp_path / "m.wav").exists()


def test_bad_value_in_a_subprocess_and_in_the_album_command(files, tmp_path, capsys):
    r = subprocess.run([sys.executable, "-m", "automaster", str(files["dc"]), "-o",
                        str(tmp_path / "m.wav"), "--restore", "foo"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    one_line_error(r.returncode, r.stderr, "--restore", "foo")
    code, _, err = run(["album", files["dc"], "-o", tmp_path / "alb", "--denoise", "2"], capsys)
    one_line_error(code, err, "--denoise")
    assert not (tmp_path / "alb").exists()


# ---------------------------------------------------------------------------- command line
def test_dc_offset_is_removed_end_to_end(files, tmp_path, capsys):
    before = sha(files["dc"])
    out = tmp_path / "master.wav"
    code, stdout, err = run([files["dc"], "-o", out, "--model", files["model"], "--report"],
                            capsys)
    assert code == 0, err
    assert sha(files["dc"]) == before  # the input is never touched
    assert output_dc(out) < DC_BAR, output_dc(out)
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["restoration"]["mode"] == "auto"
    dc = finding(report, "dc")
    assert dc["found"] and dc["applied"]
    assert abs(dc["measured"]["dc_max"] - DC) < 0.01
    assert {f["problem"] for f in report["restoration"]["findings"]} >= {
        "dc", "hum", "clicks", "clipping", "polarity", "noise"}
    assert "restore" in report["timings_s"]
    assert any("restoration: dc:" in ln for ln in stdout.splitlines()), stdout


def test_restore_off_leaves_the_dc_to_the_chain(files, identity_file, tmp_path, capsys,
                                               monkeypatch):
    import automaster.restore

    def refuse(*a, **k):
        raise AssertionError("--restore off must not run restoration")

    monkeypatch.setattr(automaster.restore, "restore", refuse)
    out = tmp_path / "master.wav"
    code, stdout, err = run([files["dc"], "-o", out, "--params-in", identity_file, "--report",
                             "--restore", "off"], capsys)
    assert code == 0, err
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["restoration"] == {"mode": "off", "findings": []}
    assert "restoration:" not in stdout
    # nothing removed it: the offset is still there after the chain and the gain
    assert output_dc(out) > 0.05, output_dc(out)


def test_selected_fixes_only(files, identity_file, tmp_path, capsys):
    out = tmp_path / "master.wav"
    code, _, err = run([files["dc"], "-o", out, "--params-in", identity_file, "--report",
                        "--restore", "hum,clicks"], capsys)
    assert code == 0, err
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["restoration"]["mode"] == "hum,clicks"
    dc = finding(report, "dc")
    assert dc["found"] and not dc["applied"]  # measured and reported, not fixed
    assert output_dc(out) > 0.05


def test_lossy_output_restores_once(files, tmp_path, capsys):
    """The codec loop may render twice; both renders master the restored signal."""
    out = tmp_path / "master.ogg"
    code, _, err = run([files["dc"], "-o", out, "--model", files["model"], "--report"], capsys)
    assert code == 0, err
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert finding(report, "dc")["applied"]
    assert output_dc(out) < DC_BAR, output_dc(out)


# ---------------------------------------------------------------------------- Python API
def test_api_restore_options(music, identity):
    import automaster

    x, sr = music
    y = x + np.float32(DC)
    kept = y.copy()
    r = automaster.master(y, sr, settings=identity, restore="dc")
    assert np.array_equal(y, kept)  # the caller's array is not modified
    assert float(np.abs(r.audio.astype(np.float64).mean(axis=1)).max()) < DC_BAR
    assert r.report["restoration"]["mode"] == "dc"
    assert finding(r.report, "dc")["applied"] and not finding(r.report, "hum")["applied"]

    r = automaster.master(y, sr, settings=identity, restore="off", mono_bass_hz=120,
                          denoise=0.5)
    assert finding(r.report, "polarity")["applied"]  # the mono bass ran
    assert finding(r.report, "noise")["applied"]
    assert "dc" not in {f["problem"] for f in r.report["restoration"]["findings"]}
    assert float(np.abs(r.audio.astype(np.float64).mean(axis=1)).max()) > 0.05

    for kwargs, word in (({"restore": "foo"}, "restore"), ({"denoise": 1.5}, "denoise"),
                         ({"mono_bass_hz": 1000}, "mono_bass_hz")):
        with pytest.raises(ValueError, match=word):
            automaster.master(y, sr, settings=identity, **kwargs)


def test_too_long_for_memory(music):
    from automaster.errors import UserError
    from automaster.io import ArraySource
    from automaster.pipeline import Job, restore_input

    x, sr = music
    src = ArraySource(x + np.float32(DC), sr)
    job = Job(name="long.wav", restore_max_bytes=1000)
    assert restore_input(src, job) is src  # auto: skipped, said so
    assert job.restoration["findings"] == [] and "too long" in job.restoration["skipped"]
    assert any("restoration skipped" in w for w in job.warnings)
    with pytest.raises(UserError, match="long.wav.*too long.*leave out --restore dc\\b"):
        restore_input(src, Job(name="long.wav", restore="dc", restore_max_bytes=1000))
    # --denoise asked for it: the advice names --denoise ("--restore off" would not help)
    with pytest.raises(UserError, match="too long.*leave out --denoise \\("):
        restore_input(src, Job(name="long.wav", restore="off", denoise=0.5,
                               restore_max_bytes=1000))


def test_album_restores_each_track(files, music):
    from automaster.album.master import AlbumOptions, Track, restore_track

    x, sr = music
    t = Track(0, files["dc"], "dc", None)
    t.audio = x + np.float32(DC)
    y = restore_track(t, sr, AlbumOptions(restore="dc"), lambda m: None)
    assert float(np.abs(y.astype(np.float64).mean(axis=1)).max()) < DC_BAR
    assert t.restoration["mode"] == "dc" and finding({"restoration": t.restoration}, "dc")["applied"]
    t.audio = x + np.float32(DC)
    assert restore_track(t, sr, AlbumOptions(restore="off"), lambda m: None) is t.audio
