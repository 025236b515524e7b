"""Tests of train.corpus on fake package trees (no network, no real .deb downloads)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from train import corpus

SR = 8000
COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: 2020 Fake Team
License: GPL-2+

Files: data/music/special.ogg
       base/music/inzip.ogg
Copyright: Jane Doe
 John Roe
License: CC-BY-SA-3.0
 Some license text.
 .
 More text.

Files: debian/*
Copyright: 2021 Packager
License: GPL-3+
"""


def _ogg_bytes(seconds: float, freq: float = 440.0, channels: int = 2) -> bytes:
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    buf = io.BytesIO()
    sf.write(buf, np.repeat(x[:, None], channels, axis=1), SR, format="OGG", subtype="VORBIS")
    return buf.getvalue()


def _make_tree(root: Path, package: str = "fakepkg") -> Path:
    """A fake `dpkg -x` tree with music, sound effects, archives and junk."""
    games = root / "usr/share/games/fake"
    files = {
        f"usr/share/doc/{package}/copyright": COPYRIGHT.encode(),
        "usr/share/games/fake/music/track.ogg": _ogg_bytes(1.5),
        "usr/share/games/fake/music/special.ogg": _ogg_bytes(1.2, channels=1),
        "usr/share/games/fake/music/jingle.ogg": _ogg_bytes(0.3),
        "usr/share/games/fake/music/noext": _ogg_bytes(1.1),
        "usr/share/games/fake/music/readme": b"not audio at all\n",
        "usr/share/games/fake/music/broken.ogg": b"OggS" + bytes(200),
        "usr/share/games/fake/sounds/boom.ogg": _ogg_bytes(2.0),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (games / "base").mkdir(parents=True)
    with zipfile.ZipFile(games / "base" / "0music.pk3", "w") as z:
        z.writestr("music/inzip.ogg", _ogg_bytes(1.3))
        z.writestr("textures/wall.png", b"\x89PNG fake")
    with zipfile.ZipFile(games / "data.zip", "w") as z:
        z.writestr("sound/sfx.ogg", _ogg_bytes(1.5))
        z.writestr("Music/inside.ogg", _ogg_bytes(1.4))
    (games / "Sound.ocg").write_bytes(b"\x1e\x8c" + bytes(64))  # C4Group, not zip: ignored
    return root


@pytest.fixture()
def built(tmp_path: Path) -> tuple[Path, list[dict]]:
    tree = _make_tree(tmp_path / "tree")
    out = tmp_path / "corpus"
    records = corpus.build_from_tree(tree, "fakepkg", out, version="1.0-1", min_duration_s=1.0)
    return out, records


def test_selection_of_music(built: tuple[Path, list[dict]]) -> None:
    out, records = built
    sources = sorted(r["source"] for r in records)
    assert sources == [
        "usr/share/games/fake/base/0music.pk3!music/inzip.ogg",
        "usr/share/games/fake/data.zip!Music/inside.ogg",
        "usr/share/games/fake/music/noext",
        "usr/share/games/fake/music/special.ogg",
        "usr/share/games/fake/music/track.ogg",
    ]
    files = {r["source"]: r["file"] for r in records}
    assert files["usr/share/games/fake/music/noext"] == "audio/fakepkg/fake/music/noext.ogg"
    assert files["usr/share/games/fake/base/0music.pk3!music/inzip.ogg"] == (
        "audio/fakepkg/fake/base/0music.pk3/music/inzip.ogg"
    )
    for rec in records:
        assert (out / rec["file"]).is_file()
        assert set(rec) == set(corpus.MANIFEST_FIELDS)
        assert rec["package"] == "fakepkg" and rec["version"] == "1.0-1"
        assert rec["sample_rate_hz"] == SR and rec["format"] == "OGG/VORBIS"
    # short, undecodable, non-music and non-audio files leave nothing behind
    audio_files = sorted(p.relative_to(out).as_posix() for p in (out / "audio").rglob("*") if p.is_file())
    assert audio_files == sorted(r["file"] for r in records)
    assert (out / "licenses" / "fakepkg.copyright").read_text() == COPYRIGHT


def test_durations_and_licenses(built: tuple[Path, list[dict]]) -> None:
    _, records = built
    by_source = {r["source"].rsplit("/", 1)[-1]: r for r in records}
    assert by_source["track.ogg"]["duration_s"] == pytest.approx(1.5, abs=0.01)
    assert by_source["track.ogg"]["channels"] == 2
    assert by_source["special.ogg"]["channels"] == 1
    assert by_source["track.ogg"]["license"] == "GPL-2+"
    assert by_source["track.ogg"]["copyright"] == "2020 Fake Team"
    # "data/music/special.ogg" matches although the installed path has no "data/" folder
    assert by_source["special.ogg"]["license"] == "CC-BY-SA-3.0"
    assert by_source["special.ogg"]["copyright"] == "Jane Doe; John Roe"
    # archive members are matched at "<archive folder>/<member>"
    assert by_source["inzip.ogg"]["license"] == "CC-BY-SA-3.0"


def test_manifest_roundtrip_and_idempotency(built: tuple[Path, list[dict]], tmp_path: Path) -> None:
    out, records = built
    manifest = corpus.write_manifest(out)
    assert manifest == out / corpus.MANIFEST_NAME
    parsed = corpus.read_manifest(manifest)
    assert parsed == records
    assert corpus.load_state(out, "fakepkg", 1.0) == records
    assert corpus.load_state(out, "fakepkg", 2.0) is None  # other settings: rebuild
    mtimes = {r["file"]: (out / r["file"]).stat().st_mtime_ns for r in records}
    again = corpus.build_from_tree(tmp_path / "tree", "fakepkg", out, version="1.0-1", min_duration_s=1.0)
    assert again == records
    assert {r["file"]: (out / r["file"]).stat().st_mtime_ns for r in again} == mtimes  # not re-copied
    (out / records[0]["file"]).unlink()
    assert corpus.load_state(out, "fakepkg", 1.0) is None  # a missing file invalidates the state
    text = corpus.format_summary(parsed)
    assert "fakepkg" in text and "total" in text


def test_read_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        corpus.read_manifest(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"file": "a.ogg"}\n')
    with pytest.raises(ValueError, match="missing keys"):
        corpus.read_manifest(bad)
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match="not JSON"):
        corpus.read_manifest(bad)


def test_dep5_parsing_and_matching() -> None:
    stanzas = corpus.parse_dep5(COPYRIGHT)
    assert stanzas is not None and len(stanzas) == 3
    assert stanzas[1].patterns == ("data/music/special.ogg", "base/music/inzip.ogg")
    assert stanzas[1].license == "CC-BY-SA-3.0"
    assert corpus.parse_dep5("This package was debianized by someone.\nGPL-2+\n") is None
    assert corpus.dep5_pattern_matches("*", "usr/share/x.ogg")
    assert corpus.dep5_pattern_matches("data/music/*", "usr/share/games/st/music/forest/a.ogg")
    assert corpus.dep5_pattern_matches("music/cave", "usr/share/games/blobwars/music/cave")
    assert not corpus.dep5_pattern_matches("debian/*", "usr/share/games/x/music/a.ogg")
    assert not corpus.dep5_pattern_matches("data/sound/*", "usr/share/games/x/music/a.ogg")
    assert corpus.resolve_license(None, "a/b.ogg", "GPL-2") == ("GPL-2", "")


def test_path_rules() -> None:
    assert corpus.is_audio_candidate("usr/share/games/x/music/a.ogg")
    assert corpus.is_audio_candidate("usr/share/games/x/Music.ocg/a.ogg")
    assert corpus.is_audio_candidate("usr/share/games/blobwars/music/cave")
    assert corpus.is_audio_candidate("x/music.pk3/sound/cdtracks/a.ogg")
    assert not corpus.is_audio_candidate("usr/share/games/x/sounds/music.ogg")  # file name does not count
    assert not corpus.is_audio_candidate("usr/share/games/x/music/a.png")
    assert corpus.is_archive("a/b/0music.PK3") and not corpus.is_archive("a/Sound.ocg")
    assert corpus.corpus_relpath("usr/share/games/x/y.ogg") == "x/y.ogg"
    assert corpus.sniff_audio_extension(b"OggS\x00\x02") == ".ogg"
    assert corpus.sniff_audio_extension(b"fLaC\x00") == ".flac"
    assert corpus.sniff_audio_extension(b"RIFF\x00\x00\x00\x00WAVEfmt ") == ".wav"
    assert corpus.sniff_audio_extension(b"ID3\x04") == ".mp3"
    assert corpus.sniff_audio_extension(b"hello world!") is None


def test_download_failure_explains_apt_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus.shutil, "which", lambda name: "/usr/bin/" + name)

    def fake_run(*args, **kwargs):
        return subprocess.CompletedProcess(args, 100, "", "E: Unable to locate package nosuchpkg")

    monkeypatch.setattr(corpus.subprocess, "run", fake_run)
    with pytest.raises(corpus.CorpusError, match="apt-get update"):
        corpus.download_deb("nosuchpkg", tmp_path)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_build_package_from_local_deb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = _make_tree(tmp_path / "pkg", package="fakepkg")
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(
        "Package: fakepkg\nVersion: 2.0-1\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: fake\n fake package for tests\n"
    )
    out = tmp_path / "corpus"
    (out / "debs").mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", "-z1", str(tree), str(out / "debs" / "fakepkg_2.0-1_all.deb")],
                   check=True, capture_output=True)
    code = corpus.main(["--out", str(out), "--packages", "fakepkg", "--min-duration", "1.0"])
    assert code == 0
    records = corpus.read_manifest(out / "manifest.jsonl")
    assert len(records) == 5 and all(r["version"] == "2.0-1" for r in records)
    assert not (out / "debs" / "fakepkg_2.0-1_all.deb").exists()  # removed without --keep-debs
    assert "fakepkg" in capsys.readouterr().out
    # second run: already done, no .deb needed
    assert corpus.main(["--out", str(out), "--packages", "fakepkg", "--min-duration", "1.0"]) == 0
    assert corpus.main(["--out", str(out), "--summary"]) == 0
    assert json.loads((out / "state" / "fakepkg.json").read_text())["version"] == "2.0-1"
