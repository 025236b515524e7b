"""DDP 2.00 image of the album (``automaster album --ddp``, automaster/album/ddp.py).

References are independent of the module's constants: the byte offsets and values of
DDPID, DDPMS and the PQ descriptor are written out by hand below from the public
description of the format (ddp-reverse-eng ``spec/ddp2.md`` sections 3-6 and its
cue2ddp reference fileset ``exp/003-track2-pregap``); the CUE sheet (cue.py), soundfile
and numpy read the positions and samples; scipy's ``resample_poly`` checks the 44.1 kHz
rendition.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from automaster.album import assemble as asm
from automaster.album.cue import CueTrack, cue_sheet, read_cue
from automaster.album.ddp import (CdLayout, CdTrack, album_cd_layout, pq_descriptor,
                                  read_ddp, red_book_problem, rendition_note,
                                  verify_ddp, write_album_ddp, write_ddp)
from automaster.cli import main
from automaster.io import quantize
from automaster.testing import synth_mix

SR = 44100
ISRCS = ["USABC2400001", "USABC2400002", None]
CATALOG = "0123456789012"


def field(record: bytes, first: int, last: int) -> str:
    """Bytes first..last (inclusive, as the spec's tables give them) as text."""
    return record[first:last + 1].decode("ascii")


def number(record: bytes, first: int, last: int) -> int:
    return int(field(record, first, last).strip())


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    """Three tracks: a 1.5 s gap after the first, a 0.6 s cross-fade after the second,
    written as a DDP from the album's 16-bit samples."""
    rng = np.random.default_rng(7)
    lengths = [int(5.2 * SR), int(6.1 * SR), int(5.5 * SR)]
    layout = asm.plan_layout(lengths, SR, [asm.Transition(gap=1.5),
                                           asm.Transition(crossfade=0.6), asm.Transition()],
                             [(0.0, 0.0)] * 3)
    tracks = [(0.3 * rng.standard_normal((2, n))).astype(np.float32) for n in lengths]
    x16 = quantize(asm.assemble(tracks, layout), 16, np.random.default_rng(1)).T  # (n, 2)
    cd = album_cd_layout([p.cut for p in layout.tracks], [p.pregap for p in layout.tracks],
                         layout.frames, SR, ISRCS, CATALOG)
    folder = tmp_path_factory.mktemp("ddp") / "DDP"
    written = write_ddp(folder, cd, (x16[s:s + 30000] for s in range(0, len(x16), 30000)))
    cue = cue_sheet("album.wav", SR, [CueTrack(f"T{k}", p.cut, p.pregap, None, i)
                                      for k, (p, i) in enumerate(zip(layout.tracks, ISRCS))],
                    catalog=CATALOG)
    return {"layout": layout, "cd": cd, "x16": x16, "folder": folder, "written": written,
            "cue": read_cue(cue)}


def test_round_trip_positions_codes_and_audio(album):
    img = verify_ddp(album["written"], album["cd"])
    layout, cue = album["layout"], album["cue"]
    assert img.catalog == CATALOG and len(img.tracks) == 3
    assert layout.tracks[1].pregap is not None and layout.tracks[2].pregap is None
    for k, (t, p, c, isrc) in enumerate(zip(img.tracks, layout.tracks, cue, ISRCS), 1):
        assert t.isrc == isrc
        # PQ absolute times = the CUE sheet's times + track 1's 2 s (150 frame) pregap
        assert t.start == c["index"][1] + 150
        assert t.start * 588 == p.cut + 150 * 588
        assert img.start_sample(k) == p.cut
        if k == 1:
            assert t.pregap == 0  # track 1: INDEX 00 at 00:00:00, the image's start
        elif 0 in c["index"]:
            assert t.pregap == c["index"][0] + 150 and img.pregap_sample(k) == p.pregap
        else:
            assert t.pregap is None  # the cross-fade: no gap, no INDEX 00
        assert not t.copy_permitted and not t.pre_emphasis
    assert img.lead_out == 150 + layout.frames // 588  # Layout.frames: album samples
    # the audio, read independently of the reader: raw little-endian int16 after 2 s
    raw = np.fromfile(img.image_path, dtype="<i2").reshape(-1, 2)
    assert raw.shape[0] == 150 * 588 + layout.frames
    assert not raw[:150 * 588].any()
    np.testing.assert_array_equal(raw[150 * 588:], album["x16"])
    np.testing.assert_array_equal(np.concatenate(list(img.program_blocks(12345))),
                                  album["x16"])
    # the checksum file, as md5sum writes it
    lines = (album["folder"] / "CHECKSUM.MD5").read_text().splitlines()
    for line in lines:
        digest, name = line.split(" *")
        assert hashlib.md5((album["folder"] / name).read_bytes()).hexdigest() == digest
    assert [ln.split(" *")[1] for ln in lines] == ["DDPID", "DDPMS", "PQDESCR", "IMAGE.DAT"]


def test_fields_at_spec_offsets(album):
    d = album["folder"]
    ddpid = (d / "DDPID").read_bytes()
    assert len(ddpid) == 128
    assert field(ddpid, 0, 7) == "DDP 2.00"
    assert field(ddpid, 8, 20) == CATALOG  # UPC/EAN
    assert field(ddpid, 87, 88) == "CD"    # disc type
    assert field(ddpid, 21, 86).strip() == "" and field(ddpid, 89, 127).strip() == ""

    ms = (d / "DDPMS").read_bytes()
    image_size = (d / "IMAGE.DAT").stat().st_size
    pq_bytes = (d / "PQDESCR").read_bytes()
    assert len(ms) == 256
    pq, main = ms[:128], ms[128:]
    for p in (pq, main):
        assert field(p, 0, 3) == "VVVM" and number(p, 71, 73) == 17  # DSI width
    assert field(pq, 4, 5) == "S0" and field(pq, 30, 37) == "PQ DESCR"
    assert number(pq, 14, 21) == len(pq_bytes)                 # DSL: bytes
    assert field(pq, 74, 90).rstrip() == "PQDESCR"
    assert field(pq, 38, 70).strip() == ""                     # CDM..ISRC blank
    assert field(main, 4, 5) == "D0"
    assert number(main, 14, 21) * 2352 == image_size            # DSL: sectors
    assert field(main, 30, 37).strip() == ""                   # no subcode kind
    assert field(main, 38, 39) == "DA" and field(main, 40, 40) == "7"  # CD-DA, 2352 B
    assert number(main, 46, 49) == 150                         # PRE2: track 1's pregap
    assert field(main, 74, 90).rstrip() == "IMAGE.DAT"
    assert field(main, 91, 127).strip() == ""

    entries = [pq_bytes[i:i + 64] for i in range(0, len(pq_bytes), 64)]
    got = [(field(e, 4, 5), field(e, 6, 7), field(e, 10, 15)) for e in entries]
    cue = album["cue"]

    def mmssff(frames: int) -> str:
        m, r = divmod(frames, 75 * 60)
        return f"{m:02d}{r // 75:02d}{r % 75:02d}"

    want = [("00", "00", "000000"), ("01", "00", "000000"), ("01", "01", "000200"),
            ("02", "00", mmssff(cue[1]["index"][0] + 150)),
            ("02", "01", mmssff(cue[1]["index"][1] + 150)),
            ("03", "01", mmssff(cue[2]["index"][1] + 150)),
            ] + [("AA", "01", mmssff(150 + album["layout"].frames // 588))] * 2
    assert got == want
    for e in entries:
        assert field(e, 0, 3) == "VVVS" and field(e, 8, 9).strip() == ""  # hours blank
        assert field(e, 16, 17) == "01" and field(e, 45, 63).strip() == ""
    assert field(entries[0], 32, 44) == CATALOG                # UPC on the lead-in
    assert field(entries[1], 20, 31) == ISRCS[0]               # ISRC on a track's first
    assert field(entries[2], 20, 31).strip() == ""
    assert field(entries[3], 20, 31) == ISRCS[1]
    assert field(entries[5], 20, 31).strip() == ""


def test_pq_descriptor_matches_cue2ddp_reference():
    """The PQ streams of cue2ddp's reference filesets (ddp-reverse-eng exp/003-track2-pregap:
    track 2's INDEX 00 at 00:08:00, INDEX 01 at 00:10:00 of a 20 s file; exp/005)."""
    def entry(track: str, index: str, time: str) -> bytes:
        return (f"VVVS{track}{index}  {time}01" + " " * 46).encode("ascii")

    want = b"".join([entry("00", "00", "000000"), entry("01", "00", "000000"),
                     entry("01", "01", "000200"), entry("02", "00", "001000"),
                     entry("02", "01", "001200"), entry("AA", "01", "002200"),
                     entry("AA", "01", "002200")])
    layout = CdLayout((CdTrack(0), CdTrack(10 * 75, 8 * 75)), 20 * 75)
    assert pq_descriptor(layout) == want
    # exp/005-isrc-upc: one 10 s track with an ISRC, a UPC on the lead-in
    want = (b"VVVS0000  00000001" + b" " * 14 + b"0123456789012" + b" " * 19
            + b"VVVS0100  00000001  USABC1234567" + b" " * 32
            + entry("01", "01", "000200") + entry("AA", "01", "001200") * 2)
    layout = CdLayout((CdTrack(0, None, "USABC1234567"),), 10 * 75, "0123456789012")
    assert pq_descriptor(layout) == want


def test_reader_reads_cue2ddp_fileset(tmp_path):
    """cue2ddp's fileset of ddp-reverse-eng exp/014-three-tracks (space-padded numbers,
    the PQ descriptor named SD, an INDEX 02): DDPMS and SD as recorded there, its DDPID
    layout (no UPC), and a silent 2250-sector image."""
    d = tmp_path / "cue2ddp"
    d.mkdir()
    (d / "DDPID").write_bytes(b"DDP 2.00" + b" " * 79 + b"CD" + b" " * 39)
    (d / "DDPMS").write_bytes(
        (b"VVVMS0" + b" " * 13 + b"640" + b" " * 8 + b"PQ DESCR" + b" " * 33 + b" 17"
         + b"SD".ljust(17) + b" " * 37)
        + (b"VVVMD0" + b" " * 12 + b"2250" + b" " * 16 + b"DA71" + b" " * 5 + b"150"
           + b" " * 21 + b" 17" + b"IMAGE.DAT".ljust(17) + b" " * 37))
    pq = [("00", "00", "000000"), ("01", "00", "000000"), ("01", "01", "000200"),
          ("02", "00", "001000"), ("02", "01", "001100"), ("02", "02", "001500"),
          ("03", "00", "002000"), ("03", "01", "002200"), ("AA", "01", "003000"),
          ("AA", "01", "003000")]
    (d / "SD").write_bytes(b"".join(f"VVVS{t}{i}  {a}01".ljust(64).encode() for t, i, a in pq))
    with open(d / "IMAGE.DAT", "wb") as f:
        f.truncate(2250 * 2352)
    img = read_ddp(d)
    assert img.catalog is None and img.lead_out == 2250 and img.pq_path.name == "SD"
    assert [t.index for t in img.tracks] == [{0: 0, 1: 150}, {0: 750, 1: 825, 2: 1125},
                                             {0: 1500, 1: 1650}]
    assert [img.start_sample(k) for k in (1, 2, 3)] == [0, 675 * 588, 1500 * 588]
    assert img.program_samples == 2100 * 588


def _copy(album, tmp_path) -> Path:
    d = tmp_path / "DDP"
    shutil.copytree(album["folder"], d)
    return d


def _patch(path: Path, offset: int, data: bytes) -> None:
    b = bytearray(path.read_bytes())
    b[offset:offset + len(data)] = data
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("damage, words", [
    (lambda d: (d / "IMAGE.DAT").write_bytes((d / "IMAGE.DAT").read_bytes()[:-2352]),
     "IMAGE.DAT is .* bytes; DDPMS says"),
    (lambda d: _patch(d / "IMAGE.DAT", 150 * 2352 + 1000, b"\x01\x02"), "MD5"),
    (lambda d: (d / "PQDESCR").write_bytes((d / "PQDESCR").read_bytes()[:-10]),
     "PQDESCR is .* bytes"),
    (lambda d: _patch(d / "DDPMS", 128, b"VVVX"), "no VVVM marker"),
    (lambda d: _patch(d / "DDPMS", 128 + 38, b"10"), "not audio"),
    (lambda d: _patch(d / "DDPID", 0, b"DDP 1.01"), "level"),
    (lambda d: (d / "DDPID").unlink(), "DDPID is missing"),
    (lambda d: (d / "PQDESCR").unlink(), "PQDESCR is missing"),
    (lambda d: _patch(d / "PQDESCR", 4 * 64 + 10, b"000100"), "not after the previous"),
    (lambda d: _patch(d / "PQDESCR", 6 * 64 + 4, b"03"), "track 03 index 01 out of sequence"),
    (lambda d: _patch(d / "PQDESCR", 7 * 64 + 10, b"000001"), "lead-out"),
    (lambda d: _patch(d / "PQDESCR", 2 * 64 + 12, b"7"), "not a CD time"),
    (lambda d: _patch(d / "PQDESCR", 2 * 64 + 16, b"41"), "data track"),
])
def test_malformed_fileset_refused(album, tmp_path, damage, words):
    d = _copy(album, tmp_path)
    damage(d)
    with pytest.raises(ValueError, match=words):
        read_ddp(d)


def test_verification_catches_audio_and_code_differences(album, tmp_path):
    d = _copy(album, tmp_path)
    # a changed sample in second 3 of the album, with a matching MD5 file: the reader
    # accepts the fileset, the verification against the album's samples does not
    _patch(d / "IMAGE.DAT", (150 * 588 + 3 * SR + 5) * 4, b"\x11\x22")
    lines = (d / "CHECKSUM.MD5").read_text().splitlines()
    lines[3] = hashlib.md5((d / "IMAGE.DAT").read_bytes()).hexdigest() + " *IMAGE.DAT"
    (d / "CHECKSUM.MD5").write_text("\n".join(lines) + "\n")
    read_ddp(d)
    moved = album["written"]
    moved = type(moved)(d, moved.files, moved.md5, moved.digests, moved.sectors)
    with pytest.raises(ValueError, match="differs .* in second 3 "):
        verify_ddp(moved, album["cd"])
    other = CdLayout(album["cd"].tracks[:2] + (CdTrack(album["cd"].tracks[2].start,
                                                       None, "USABC2400009"),),
                     album["cd"].frames, CATALOG)
    with pytest.raises(ValueError, match="track 03: ISRC None"):
        verify_ddp(album["written"], other)


def test_red_book_limits(tmp_path):
    ok = CdLayout((CdTrack(0), CdTrack(300)), 600)
    assert red_book_problem(ok) is None
    short = CdLayout((CdTrack(0), CdTrack(299)), 900)  # track 1: 3.99 s
    assert "at least 4 s" in red_book_problem(short, ["Intro", "Song"])
    assert "'Intro'" in red_book_problem(short, ["Intro", "Song"])
    many = CdLayout(tuple(CdTrack(300 * k) for k in range(100)), 30000)
    assert "1 to 99" in red_book_problem(many)
    assert red_book_problem(CdLayout(many.tracks[:99], 29700)) is None
    limit = (79 * 60 + 57) * 75 + 74
    assert red_book_problem(CdLayout((CdTrack(0),), limit)) is None
    assert "79:57:74" in red_book_problem(CdLayout((CdTrack(0),), limit + 1))
    with pytest.raises(ValueError, match="at least 4 s"):
        write_ddp(tmp_path / "DDP", short, iter([]))
    assert not (tmp_path / "DDP").exists()


def test_rendition_48k_mono(tmp_path):
    """A 48 kHz float mono album: resampled with the project's resampler, both channels,
    16-bit TPDF; positions on the same CD frames. Reference: the two sines evaluated at
    44.1 kHz."""
    sr = 48000
    n1, n2 = 5 * sr, int(4.5 * sr)
    layout = asm.plan_layout([n1, n2], sr, [asm.Transition(gap=1.0), asm.Transition()],
                             [(0.0, 0.0)] * 2)
    def sines(t: np.ndarray) -> np.ndarray:
        return 0.4 * np.sin(2 * np.pi * 997.0 * t) + 0.2 * np.sin(2 * np.pi * 5003.0 * t)

    x = sines(np.arange(layout.frames) / sr).astype(np.float32)[None, :]
    cd = album_cd_layout([p.cut for p in layout.tracks], [p.pregap for p in layout.tracks],
                         layout.frames, sr, [None, None], None)
    doc = write_album_ddp(tmp_path / "DDP", x, sr, cd, None, "PCM_24")
    assert doc["verified"] and "resampled from 48000 Hz" in doc["audio_source"]
    assert "mono on both channels" in doc["audio_source"]
    img = read_ddp(tmp_path / "DDP")
    assert img.catalog is None and img.tracks[1].pregap is not None
    for k, p in enumerate(layout.tracks, 1):
        assert img.start_sample(k) == p.cut * 44100 // sr  # same CD frame
    y = np.concatenate(list(img.program_blocks())).astype(np.float64) / 32768.0
    assert y.shape[0] == layout.frames * 44100 // sr
    np.testing.assert_array_equal(y[:, 0], y[:, 1])
    ref = sines(np.arange(y.shape[0]) / 44100.0)
    inner = slice(5000, y.shape[0] - 5000)  # away from the signal's abrupt ends
    err = y[inner, 0] - ref[inner]
    # TPDF dither + rounding alone: 0.5 LSB RMS = 1.53e-5 (measured 1.53e-5)
    assert math.sqrt(np.mean(err ** 2)) < 2e-5
    assert rendition_note(44100, "PCM_16", 2) is None
    assert "TPDF" in rendition_note(44100, "PCM_24", 2)


# ---------------------------------------------------------------------------- the CLI
def _tracks(d: Path, spec: list[tuple[str, float]]) -> list[Path]:
    out = []
    for k, (name, sec) in enumerate(spec):
        p = d / f"{name}.wav"
        sf.write(str(p), synth_mix(sec, SR, 2, -20.0 + k, seed=k + 1).T, SR, subtype="PCM_24")
        out.append(p)
    return out


def test_cli_ddp_end_to_end(tmp_path, capsys, monkeypatch):
    from automaster.album import ddp as ddp_module
    from automaster.album import master as album_master
    from automaster.album.output import write_album_folder
    from automaster.errors import OutputError

    results = []
    real_master = album_master.master_album
    monkeypatch.setattr(album_master, "master_album",
                        lambda *a, **k: results.append(real_master(*a, **k)) or results[-1])
    a, b = _tracks(tmp_path, [("first", 4.3), ("second", 4.4)])
    pl = tmp_path / "album.txt"
    pl.write_text(f"@catalog {CATALOG}\n{a} | title=One | gap=1.2\n"
                  f"{b} | title=Two | isrc=USABC2400002\n")
    out = tmp_path / "out"
    code = main(["album", "--playlist", str(pl), "-o", str(out), "--bit-depth", "16",
                 "--ddp", "--restore", "off", "-q"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "rendition" not in err  # 44.1 kHz 16-bit: the DDP carries album.wav's samples
    d = out / "DDP"
    assert sorted(p.name for p in d.iterdir()) == ["CHECKSUM.MD5", "DDPID", "DDPMS",
                                                   "IMAGE.DAT", "PQDESCR"]
    doc = json.loads((out / "album.json").read_text())
    rec = doc["ddp"]
    assert rec["verified"] is True and rec["folder"] == "DDP"
    for name, digest in rec["md5"].items():
        assert hashlib.md5((d / name).read_bytes()).hexdigest() == digest
    img = read_ddp(d)
    cue = read_cue((out / "album.cue").read_text())
    assert img.catalog == CATALOG and [t.isrc for t in img.tracks] == [None, "USABC2400002"]
    for k, (t, c, j) in enumerate(zip(img.tracks, cue, doc["tracks"]), 1):
        assert img.start_sample(k) == j["start_sample"]
        assert t.start == c["index"][1] + 150
        assert (t.pregap == c["index"][0] + 150) if k > 1 else t.pregap == 0
    album_wav, sr = sf.read(str(out / "album.wav"), dtype="int16", always_2d=True)
    assert sr == SR
    np.testing.assert_array_equal(np.concatenate(list(img.program_blocks())), album_wav)

    # the same album written again: --force replaces the DDP; a failed verification
    # leaves nothing (no DIR, no temporary folder)
    res = results[0]
    (d / "IMAGE.DAT").write_bytes(b"stale")
    write_album_folder(res, out, "wav", "16", force=True, ddp=True)
    assert read_ddp(d).sectors == img.sectors
    before = sorted(p.name for p in tmp_path.iterdir())

    def broken(written, layout):
        raise ValueError("DDP verification failed: simulated")
    monkeypatch.setattr(ddp_module, "verify_ddp", broken)
    with pytest.raises(OutputError, match="simulated"):
        write_album_folder(res, tmp_path / "other", "wav", "16", ddp=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cli_ddp_refusals_before_work(tmp_path, capsys):
    short, long_ = _tracks(tmp_path, [("short", 3.0), ("long", 5.0)])
    out = tmp_path / "out"
    code = main(["album", str(short), str(long_), "-o", str(out), "--gap", "0", "--ddp"])
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "--ddp" in errors[0] and "at least 4 s" in errors[0]
    assert "analysing" not in err and not out.exists()
    pl = tmp_path / "many.txt"
    pl.write_text("".join(f"{long_}\n" for _ in range(100)))
    code = main(["album", "--playlist", str(pl), "-o", str(out), "--ddp"])
    _, err = capsys.readouterr()
    assert code == 2 and "100 tracks" in err and not out.exists()
    out.mkdir()
    (out / "DDP").mkdir()
    (out / "DDP" / "notes.txt").write_text("mine")
    code = main(["album", str(long_), "-o", str(out), "--ddp"])
    _, err = capsys.readouterr()
    assert code == 2 and "not an album DDP image" in err
    assert (out / "DDP" / "notes.txt").read_text() == "mine"
