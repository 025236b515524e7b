"""Tests of train.data on small fake layouts written into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from train import data
from train.data import ExcerptConfig, ExcerptDataset, Track

# MP3 is decodable (and writable) through libsndfile >= 1.1; fall back to FLAC files carrying
# the same layout names otherwise (the layout logic only looks at names).
HAVE_MP3 = "MP3" in sf.available_formats()
MP3_EXT = ".mp3" if HAVE_MP3 else ".flac"


def tone(path: Path, seconds: float = 1.0, sr: int = 16000, channels: int = 2, freq: float = 440.0,
         amp: float = 0.3, silent_until_s: float = 0.0) -> Path:
    """Write a sine (optionally silent at the start) to ``path``; format from the extension."""
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    x[t < silent_until_s] = 0.0
    audio = np.stack([x * (1.0 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".mp3": "MP3", ".ogg": "OGG"}.get(path.suffix.lower())
    sf.write(str(path), audio, sr, format=fmt) if fmt else sf.write(str(path), audio, sr)
    return path


# --------------------------------------------------------------------------- layouts


def test_scan_folder_groups(tmp_path: Path) -> None:
    tone(tmp_path / "artistA" / "album1" / "01.wav")
    tone(tmp_path / "artistA" / "album1" / "02.flac")
    tone(tmp_path / "artistA" / "album2" / "01.ogg")
    tone(tmp_path / "loose.wav")
    (tmp_path / "notes.txt").write_text("x")
    tracks = data.scan_folder(tmp_path)
    assert [t.path.name for t in tracks] == ["01.wav", "02.flac", "01.ogg", "loose.wav"]
    assert [t.group for t in tracks] == ["folder:artistA/album1"] * 2 + ["folder:artistA/album2", "folder:."]
    assert {t.group for t in data.scan_folder(tmp_path, "top")} == {"folder:artistA", "folder:loose.wav"}
    assert len({t.group for t in data.scan_folder(tmp_path, "file")}) == 4
    with pytest.raises(ValueError):
        data.scan_folder(tmp_path, "album")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a directory"):
        data.scan_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio"):
        data.FolderDataset(tmp_path / "empty")


def test_scan_musdb(tmp_path: Path) -> None:
    for subset, name in [("train", "Artist One - Song A"), ("train", "Artist One - Song B"),
                         ("test", "Other Band - Song C")]:
        tone(tmp_path / subset / name / "mixture.wav")
        tone(tmp_path / subset / name / "vocals.wav")
    (tmp_path / "train" / "No Mixture - X").mkdir()
    tracks = data.scan_musdb(tmp_path)
    assert [t.path.name for t in tracks] == ["mixture.wav"] * 3
    assert [t.group for t in tracks] == ["musdb:artist:Artist One"] * 2 + ["musdb:artist:Other Band"]
    assert len(data.scan_musdb(tmp_path, subsets=("test",))) == 1
    with pytest.raises(ValueError, match="no MUSDB18-HQ"):
        data.scan_musdb(tmp_path / "train")


def _fma_tree(root: Path) -> Path:
    tone(root / "fma_large" / "000" / f"000002{MP3_EXT}")
    tone(root / "fma_large" / "000" / f"000005{MP3_EXT}")
    tone(root / "fma_large" / "001" / f"001039{MP3_EXT}")
    tone(root / "fma_large" / "001" / f"001040{MP3_EXT}")  # not in tracks.csv
    (root / "fma_large" / "README.txt").write_text("x")
    meta = root / "fma_metadata"
    meta.mkdir()
    (meta / "tracks.csv").write_text(
        ",album,album,artist,artist,track\n"
        ",id,title,id,name,title\n"
        "track_id,,,,,\n"
        '2,1,"AWOL, the ""album""",1,AWOL,Food\n'
        '5,1,AWOL,1,AWOL,"multi\nline title"\n'
        "1039,,,77,Someone,Song\n"
    )
    return root


def test_scan_fma(tmp_path: Path) -> None:
    root = _fma_tree(tmp_path)
    tracks = data.scan_fma(root)
    assert [t.path.stem for t in tracks] == ["000002", "000005", "001039", "001040"]
    assert [t.group for t in tracks] == ["fma:album:1", "fma:album:1", "fma:album:77", "fma:track:1040"]
    assert data.scan_fma(root, group_by="artist")[0].group == "fma:artist:1"
    # pointing at fma_large itself finds ../fma_metadata too
    assert [t.group for t in data.scan_fma(root / "fma_large")] == [t.group for t in tracks]
    assert data.read_fma_tracks_csv(root / "fma_metadata" / "tracks.csv")[5] == ("1", "1")
    ds = data.FmaDataset(root, ExcerptConfig(excerpt_s=0.25, sample_rate_hz=16000))
    assert ds[0].shape == (2, 4000)


def test_scan_fma_without_metadata(tmp_path: Path) -> None:
    tone(tmp_path / "000" / f"000002{MP3_EXT}")
    assert [t.group for t in data.scan_fma(tmp_path)] == ["fma:track:2"]
    with pytest.raises(ValueError, match="metadata not found"):
        data.scan_fma(tmp_path, metadata=tmp_path / "tracks.csv")


def test_scan_jamendo(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    tone(audio / "14" / f"214{MP3_EXT}")
    tone(audio / "14" / f"214.low{MP3_EXT}")
    tone(audio / "15" / f"1315.low{MP3_EXT}")
    tone(audio / "16" / f"999{MP3_EXT}")
    (tmp_path / "autotagging.tsv").write_text(
        "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\n"
        "track_0000214\tartist_000014\talbum_000031\t14/214.mp3\t212.7\tgenre---rock\tmood/theme---calm\n"
        "track_0001315\tartist_000014\talbum_000032\t15/1315.mp3\t100.0\tgenre---pop\n"
    )
    tracks = data.scan_jamendo(audio)
    assert [t.path.name for t in tracks] == [f"214{MP3_EXT}", f"999{MP3_EXT}", f"1315.low{MP3_EXT}"]
    assert [t.group for t in tracks] == ["jamendo:album:album_000031", "jamendo:track:999",
                                         "jamendo:album:album_000032"]
    assert data.scan_jamendo(audio, group_by="artist")[2].group == "jamendo:artist:artist_000014"
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n")
    with pytest.raises(ValueError, match="not an MTG-Jamendo TSV"):
        data.scan_jamendo(audio, metadata=bad)


def _manifest(root: Path) -> Path:
    recs = []
    for package, name, seconds in [("pkg-a", "a1.ogg", 2.0), ("pkg-a", "a2.ogg", 2.0),
                                   ("pkg-b", "b1.ogg", 2.0), ("pkg-c", "short.ogg", 0.2)]:
        rel = f"audio/{package}/music/{name}"
        tone(root / rel, seconds=seconds)
        recs.append({"file": rel, "package": package, "version": "1", "source": rel, "license": "GPL-2+",
                     "copyright": "", "duration_s": seconds, "sample_rate_hz": 16000, "channels": 2,
                     "format": "OGG/VORBIS"})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_manifest_dataset(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    tracks = data.scan_manifest(manifest)
    assert [t.group for t in tracks] == ["package:pkg-a"] * 2 + ["package:pkg-b", "package:pkg-c"]
    assert tracks[0].path == tmp_path / "audio/pkg-a/music/a1.ogg" and tracks[0].duration_s == 2.0
    ds = data.ManifestDataset(manifest, ExcerptConfig(excerpt_s=0.5, sample_rate_hz=16000))
    assert "package:pkg-c" not in ds.groups  # shorter than the excerpt: left out
    assert len(ds) == 3 and ds[2].shape == (2, 8000)
    assert data.scan("manifest", manifest) == tracks
    with pytest.raises(ValueError, match="unknown data source"):
        data.scan("nope", manifest)


# --------------------------------------------------------------------------- splits


def test_split_is_deterministic_and_by_group() -> None:
    groups = [f"album:{i}" for i in range(2000)]
    val = data.val_groups(groups, 0.2)
    assert val == data.val_groups(list(reversed(groups)), 0.2)  # order-independent
    assert 0.17 < len(val) / len(groups) < 0.23
    assert data.val_groups(groups, 0.2, salt="other") != val
    assert data.split_of("album:7", 0.2) == data.split_of("album:7", 0.2)
    assert data.group_hash("x") == pytest.approx(0.0, abs=1.0) and 0 <= data.group_hash("x") < 1
    tracks = [Track(Path(f"/x/{i}.wav"), f"album:{i % 50}") for i in range(500)]
    train = data.split_tracks(tracks, "train", 0.2)
    val_tracks = data.split_tracks(tracks, "val", 0.2)
    assert {t.group for t in train}.isdisjoint({t.group for t in val_tracks})
    assert len(train) + len(val_tracks) == len(tracks)
    assert data.split_tracks(tracks, "all") == tracks
    with pytest.raises(ValueError):
        data.split_tracks(tracks, "test")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        data.split_of("a", 1.5)


def test_split_small_collections_get_a_val_group() -> None:
    groups = ["package:a", "package:b", "package:c"]
    val = data.val_groups(groups, 0.01)
    assert len(val) == 1
    assert data.val_groups(groups, 0.0) == set()
    assert data.val_groups(["only"], 0.5) <= {"only"}


# --------------------------------------------------------------------------- excerpts


def test_excerpt_shape_dtype_and_rate(tmp_path: Path) -> None:
    tone(tmp_path / "a" / "x.wav", seconds=2.0, sr=48000)
    tone(tmp_path / "b" / "y.flac", seconds=2.0, sr=22050, channels=1)
    cfg = ExcerptConfig(excerpt_s=0.5, sample_rate_hz=44100)
    ds = data.FolderDataset(tmp_path, cfg)
    for i in range(len(ds)):
        x = ds[i]
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (2, 22050)
    assert cfg.num_samples == 22050
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch.shape == (2, 2, 22050)


@pytest.mark.parametrize("src_hz, dst_hz", [(48000, 44100), (44100, 48000), (22050, 44100), (44100, 44100)])
def test_resampled_excerpt_matches_whole_file_resampling(tmp_path: Path, src_hz: int, dst_hz: int) -> None:
    path = tone(tmp_path / "x.wav", seconds=1.0, sr=src_hz, freq=1000.0)
    whole, _ = sf.read(str(path), dtype="float32", always_2d=True)
    ref = data.resample(whole.T, src_hz, dst_hz)
    n = int(0.25 * dst_hz)
    for start_s in (0.0, 0.4):
        ex = data.read_excerpt(path, start_s, 0.25, dst_hz)
        start = int(round(start_s * dst_hz))
        assert ex.shape == (2, n) and ex.dtype == np.float32
        np.testing.assert_allclose(ex, ref[:, start : start + n], atol=2e-4)
    spectrum = np.abs(np.fft.rfft(ex[0]))
    assert np.fft.rfftfreq(n, 1 / dst_hz)[spectrum.argmax()] == pytest.approx(1000, abs=5)
    tail = data.read_excerpt(path, 0.9, 0.25, dst_hz)  # runs past the end: zero-padded
    assert tail.shape == (2, n) and np.all(tail[:, -100:] == 0)
    with pytest.raises(ValueError):
        data.read_excerpt(path, -1.0, 0.25, dst_hz)
    with pytest.raises(ValueError, match="past the end"):
        data.read_excerpt(path, 5.0, 0.25, dst_hz)


def test_channel_handling() -> None:
    mono = np.ones((1, 10), np.float32)
    assert data.convert_channels(mono, "stereo").shape == (2, 10)
    assert data.convert_channels(mono, "keep").shape == (1, 10)
    stereo = np.stack([np.ones(10), -np.ones(10)]).astype(np.float32)
    assert np.allclose(data.convert_channels(stereo, "mono"), 0.0)
    six = np.ones((6, 10), np.float32)
    down = data.convert_channels(six, "keep")
    assert down.shape == (2, 10) and np.allclose(down, 1.0)
    assert data.convert_channels(np.ones((4, 10), np.float32), "stereo").shape == (2, 10)
    with pytest.raises(ValueError):
        data.convert_channels(mono, "surround")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        data.convert_channels(np.ones(10, np.float32), "stereo")


def test_mono_keep_and_multichannel_files(tmp_path: Path) -> None:
    path = tone(tmp_path / "m.wav", seconds=1.0, channels=1)
    ds = ExcerptDataset([Track(path, "g")], ExcerptConfig(excerpt_s=0.2, sample_rate_hz=16000, channels="keep"))
    assert ds[0].shape == (1, 3200)
    multi = tone(tmp_path / "six.wav", seconds=1.0, channels=6)
    ds = ExcerptDataset([Track(multi, "g")], ExcerptConfig(excerpt_s=0.2, sample_rate_hz=16000, channels="keep"))
    assert ds[0].shape == (2, 3200)


def test_silent_excerpts_are_skipped(tmp_path: Path) -> None:
    tone(tmp_path / "half" / "a.wav", seconds=4.0, silent_until_s=3.0)  # 3 s silence, 1 s tone
    tone(tmp_path / "silent" / "b.wav", seconds=4.0, amp=0.0)
    tone(tmp_path / "loud" / "c.wav", seconds=4.0)
    cfg = ExcerptConfig(excerpt_s=0.5, sample_rate_hz=16000, silence_db=-50.0, max_tries=40)
    ds = ExcerptDataset(data.scan_folder(tmp_path), cfg, num_excerpts=30)
    for i in range(len(ds)):
        ex = ds.sample(i)
        assert ex.level_db >= -50.0 and ex.track.path.name != "b.wav"
        assert data.level_db(ex.audio.numpy()) == pytest.approx(ex.level_db)
    only_silent = ExcerptDataset([Track(tmp_path / "silent" / "b.wav", "s")], cfg)
    assert float(only_silent[0].abs().max()) == 0.0  # bounded retries, then the loudest attempt
    assert data.level_db(np.zeros((2, 10))) == -np.inf


def test_unreadable_tracks_are_skipped(tmp_path: Path) -> None:
    good = tone(tmp_path / "good.wav", seconds=1.0)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    cfg = ExcerptConfig(excerpt_s=0.2, sample_rate_hz=16000)
    ds = ExcerptDataset([Track(bad, "b"), Track(good, "g")], cfg, num_excerpts=6)
    assert all(ds.sample(i).track.path == good for i in range(6))
    with pytest.raises(RuntimeError, match="no readable track"):
        ExcerptDataset([Track(bad, "b")], cfg).sample(0)


def test_reproducible_from_seed_and_epoch(tmp_path: Path) -> None:
    for k in range(4):
        tone(tmp_path / f"album{k}" / "t.wav", seconds=3.0, freq=200.0 + 100 * k)
    cfg = ExcerptConfig(excerpt_s=0.25, sample_rate_hz=16000, seed=123)
    ds1 = data.FolderDataset(tmp_path, cfg, num_excerpts=8)
    ds2 = data.FolderDataset(tmp_path, cfg, num_excerpts=8)
    backwards = [ds2.sample(i) for i in reversed(range(8))][::-1]  # access order does not matter
    forwards = [ds1.sample(i) for i in range(8)]
    for a, b in zip(forwards, backwards):
        assert torch.equal(a.audio, b.audio) and a.start_s == b.start_s and a.track == b.track
    # every track once per epoch in the first n_tracks items (per-epoch permutation)
    assert sorted(str(e.track.path) for e in forwards[:4]) == sorted(str(t.path) for t in ds1.tracks)
    ds1.set_epoch(1)
    epoch1 = [ds1.sample(i) for i in range(8)]
    assert any(a.start_s != b.start_s for a, b in zip(forwards, epoch1))
    ds1.set_epoch(0)
    assert torch.equal(ds1[3], forwards[3].audio)
    other_seed = data.FolderDataset(tmp_path, ExcerptConfig(excerpt_s=0.25, sample_rate_hz=16000, seed=7))
    assert any(other_seed.sample(i).start_s != forwards[i].start_s for i in range(4))
    with pytest.raises(IndexError):
        ds1[8]
    with pytest.raises(ValueError):
        ds1.set_epoch(-1)


def test_dataset_splits_do_not_leak(tmp_path: Path) -> None:
    for k in range(12):
        tone(tmp_path / f"album{k:02d}" / "t.wav", seconds=0.5, sr=8000)
    cfg = ExcerptConfig(excerpt_s=0.1, sample_rate_hz=8000)
    train = data.FolderDataset(tmp_path, cfg, split="train", val_fraction=0.3)
    val = data.FolderDataset(tmp_path, cfg, split="val", val_fraction=0.3)
    assert set(train.groups).isdisjoint(val.groups)
    assert len(train.groups) + len(val.groups) == 12 and val.groups
    with pytest.raises(ValueError, match="no tracks"):
        data.FolderDataset(tmp_path, cfg, split="val", val_fraction=0.0)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ExcerptConfig(excerpt_s=0)
    with pytest.raises(ValueError):
        ExcerptConfig(sample_rate_hz=-1)
    with pytest.raises(ValueError):
        ExcerptConfig(channels="surround")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ExcerptConfig(max_tries=0)
    with pytest.raises(ValueError):
        ExcerptDataset([Track(Path("/x.wav"), "g")], ExcerptConfig(), num_excerpts=0)
    with pytest.raises(ValueError):
        data.resample(np.zeros((1, 4)), 0, 44100)
