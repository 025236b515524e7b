"""Album building blocks without the mastering chain: playlist parsing, the timeline on
CD frames, equal-power cross-fades, the cross-fade and cut true-peak fixes, CUE times,
the level plan, and the sequence analysis (tempo, key, energy order).

References are independent: levels by numpy RMS, true peak by 4x ``resample_poly``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.signal import resample_poly

from automaster.album import assemble as asm
from automaster.album.cue import CueTrack, cue_sheet, read_cue
from automaster.album.levels import album_loudness_estimate, plan_levels
from automaster.album.playlist import parse_json, parse_text, read_playlist, unique_titles
from automaster.album.sequence import analyze, propose_order
from automaster.errors import UserError

SR = 44100


def tp_db(x: np.ndarray) -> float:
    return 20 * math.log10(np.abs(resample_poly(np.asarray(x, np.float64), 4, 1, axis=-1)).max())


# ---------------------------------------------------------------------------- playlist
def test_text_playlist(tmp_path):
    text = """# my album
@title Night Drive
@performer The Band
@catalog 0123456789012

a.wav | title=Intro | fade_in=1.5 | gap=0
sub/b.flac | title=Song "Two" | crossfade=4 | isrc=US-ABC-24-00001 | offset=-1.5
c.wav
"""
    p = tmp_path / "album.txt"
    p.write_text(text)
    pl = read_playlist(p)
    assert (pl.title, pl.performer, pl.catalog) == ("Night Drive", "The Band", "0123456789012")
    assert [t.path for t in pl.tracks] == [tmp_path / "a.wav", tmp_path / "sub/b.flac",
                                           tmp_path / "c.wav"]
    a, b, c = pl.tracks
    assert (a.title, a.fade_in, a.gap, a.crossfade) == ("Intro", 1.5, 0.0, None)
    assert (b.crossfade, b.isrc, b.offset, b.title) == (4.0, "USABC2400001", -1.5, 'Song "Two"')
    assert c.title is None and c.gap is None and c.offset == 0.0


def test_json_playlist_matches_text(tmp_path):
    doc = {"title": "X", "tracks": [{"file": "a.wav", "title": "A", "gap": 3},
                                    "b.wav", {"file": "c.wav", "fade_out": 2.5}]}
    p = tmp_path / "album.json"
    p.write_text(json.dumps(doc))
    pl = read_playlist(p)
    pt = parse_text("@title X\na.wav|title=A|gap=3\nb.wav\nc.wav | fade_out=2.5\n", "t", tmp_path)
    assert pl.title == pt.title == "X"
    for a, b in zip(pl.tracks, pt.tracks):
        assert a == b


@pytest.mark.parametrize("text, words", [
    ("a.wav | tempo=3", "unknown track option"),
    ("a.wav | gap=1 | crossfade=2", "not both"),
    ("a.wav | gap=-1", "between 0"),
    ("a.wav | gap=abc", "must be a number"),
    ("a.wav | isrc=XX", "ISRC"),
    ("@catalog 123", "13 digits"),
    ("@colour red", "unknown album field"),
    ("a.wav | title", "key=value"),
])
def test_playlist_errors(text, words):
    with pytest.raises(UserError, match=words) as e:
        parse_text(text, "pl.txt")
    assert "pl.txt:1" in str(e.value)


def test_json_playlist_errors():
    with pytest.raises(UserError, match="tracks"):
        parse_json({"songs": []}, "x.json")
    with pytest.raises(UserError, match="unknown track option"):
        parse_json([{"file": "a.wav", "volume": 3}], "x.json")


def test_json_playlist_lone_surrogate_is_refused():
    """json.loads turns "\\ud800" into a lone surrogate: no file name, CUE or JSON can hold
    it (it was an internal UnicodeEncodeError after the whole album was mastered)."""
    import json

    data = json.loads('[{"file": "a.wav", "title": "a\\ud800b"}]')
    with pytest.raises(UserError, match="title .* not valid Unicode"):
        parse_json(data, "x.json")


def test_playlist_that_is_not_utf8_says_so(tmp_path):
    p = tmp_path / "album.txt"
    p.write_bytes(b"@title caf\xe9\na.wav\n")  # Latin-1, as an old editor saves it
    with pytest.raises(UserError, match="not UTF-8 text .*0xe9.*save the playlist as UTF-8"):
        read_playlist(p)


def test_title_from_a_file_name_that_is_not_utf8_is_valid_text():
    import os

    from automaster.album.playlist import title_from_name

    title = title_from_name(os.fsdecode(b"caf\xe9"))
    assert title == "caf\ufffd"
    cue_sheet("album.wav", SR, [CueTrack(title, 0, 0)]).encode("utf-8")


def test_track_file_names_fit_the_255_byte_limit():
    """100 CJK characters are 300 bytes of UTF-8: a title's file name is cut by bytes too
    (it failed with an internal LibsndfileError after the whole album was mastered)."""
    from automaster.album.output import track_filenames
    from automaster.album.playlist import safe_filename

    for title in ("夜" * 100, "é" * 130, "x" * 300, "🎵" * 70):
        name = safe_filename(title)
        assert 0 < len(name.encode("utf-8")) <= 200 and title.startswith(name)
        for f in track_filenames([title] * 100, ".aiff"):
            assert len(f.encode("utf-8")) <= 255


def test_unique_titles():
    titles, notes = unique_titles(["Song", "song", "Intro", "Song"])
    assert titles == ["Song", "song (2)", "Intro", "Song (3)"]
    assert len(notes) == 2


# ---------------------------------------------------------------------------- timeline
def test_layout_on_frames():
    lengths = [SR * 3 + 123, SR * 2 + 7, SR * 4 + 311, SR * 3]
    trans = [asm.Transition(gap=1.3), asm.Transition(crossfade=0.7), asm.Transition(gap=0.0)]
    lay = asm.plan_layout(lengths, SR, trans, [(0.0, 0.0)] * 4)
    frame = SR // 75
    t = lay.tracks
    assert [p.cut % frame for p in t] == [0, 0, 0, 0]
    assert lay.frames % frame == 0 and lay.frames >= t[-1].music_end
    # gap: lengthened by less than one frame, music starts at the cut, pregap after music
    gap = t[1].music_start - t[0].music_end
    assert 1.3 * SR <= gap < 1.3 * SR + frame
    assert t[1].cut == t[1].music_start
    assert t[1].pregap is not None and t[0].music_end <= t[1].pregap < t[0].music_end + frame
    # cross-fade: overlap within a frame of 0.7 s, the cut at its exact middle
    ov = t[1].music_end - t[2].music_start
    assert ov == t[1].xfade_out == t[2].xfade_in and abs(ov - 0.7 * SR) <= frame
    assert 2 * t[2].cut == t[1].music_end + t[2].music_start
    # gap 0: joined, the cut within half a frame of the join
    assert t[3].music_start == t[2].music_end
    assert abs(t[3].cut - t[2].music_end) <= frame // 2
    # files tile the album
    assert t[0].cut == 0 and all(a.end == b.cut for a, b in zip(t, t[1:]))
    assert t[-1].end == lay.frames


def _level_db(x: np.ndarray, start: int, n: int) -> float:
    seg = x[:, start:start + n].astype(np.float64)
    return 10 * math.log10(np.mean(seg ** 2))


@pytest.mark.parametrize("correlated", [False, True])
def test_equal_power_crossfade_no_dip(correlated):
    rng = np.random.default_rng(1)
    n = SR * 3
    lay = asm.plan_layout([n, n], SR, [asm.Transition(crossfade=1.0)], [(0, 0), (0, 0)])
    xf = lay.tracks[0].xfade_out
    a = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
    b = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
    if correlated:  # the same material on both sides of the crossing
        b = np.roll(a, -(n - xf), axis=1)
    album = asm.assemble([a, b], lay)
    start, stop = lay.tracks[1].music_start, lay.tracks[0].music_end
    ref = _level_db(album, start - SR // 2, SR // 2)  # before the crossing
    win = SR // 20
    levels = [_level_db(album, s, win) - ref for s in range(start, stop - win, win)]
    assert min(levels) > -1.0, levels
    if correlated:  # amplitudes add: +3 dB at the middle, no more
        assert 2.5 < max(levels) <= 3.1
    else:
        assert max(levels) < 1.0


def test_fades_shape():
    x = np.ones((1, SR), np.float32)
    lay = asm.plan_layout([SR], SR, [], [(0.25, 0.5)])
    y = asm.assemble([x], lay)[0]
    t = (np.arange(SR // 4) + 0.5) / (SR // 4)
    np.testing.assert_allclose(y[:SR // 4], np.sin(np.pi / 2 * t), atol=1e-6)
    assert y[SR // 2 - 1] == 1.0 and y[SR - 1] < 0.01


def test_crossfade_overlap_limited_under_ceiling():
    rng = np.random.default_rng(2)
    n = SR * 2
    base = rng.standard_normal((2, n))
    base *= 10 ** (-1.2 / 20) / np.abs(resample_poly(base, 4, 1, axis=-1)).max()  # -1.2 dBTP
    a = base.astype(np.float32)
    lay = asm.plan_layout([n, n], SR, [asm.Transition(crossfade=1.0)], [(0, 0), (0, 0)])
    b = np.roll(a, -(n - lay.tracks[0].xfade_out), axis=1)  # correlated: +3 dB in the overlap
    album = asm.assemble([a, b], lay)
    assert tp_db(album) > 0.5
    fixed = asm.limit_overlaps(album, lay, -1.0)
    assert len(fixed) == 1
    assert tp_db(album) <= -1.0 + 1e-3
    # outside the overlap and its ramp the tracks are untouched
    np.testing.assert_array_equal(album[:, :lay.tracks[1].music_start - SR // 10],
                                  a[:, :lay.tracks[1].music_start - SR // 10])


def test_cut_inside_music_checked_alone():
    # one continuous sine under the ceiling, split without a gap so the cut falls on its
    # crest: each file played alone ends / starts with a step whose interpolated overshoot
    # passes the ceiling, though the album does not
    n = SR
    lay = asm.plan_layout([n, n], SR, [asm.Transition(gap=0.0)], [(0.2, 0), (0, 0.2)])
    c = lay.tracks[1].cut
    t = np.arange(2 * n)
    s = (10 ** (-1.05 / 20) * np.cos(2 * np.pi * 100.0 * (t - c) / SR)).astype(np.float32)
    x = np.stack([s, s])
    album = asm.assemble([x[:, :n], x[:, n:]], lay)
    assert tp_db(album) <= -1.0
    before = max(tp_db(album[:, :c]), tp_db(album[:, c:]))
    assert before > -1.0
    fixes = asm.fix_cut_edges(album, lay, -1.0)
    assert fixes and fixes[0]["dip_db"] < 1.5  # a step at -1.05 dBFS overshoots by ~1 dB
    after = max(tp_db(album[:, :c]), tp_db(album[:, c:]))
    assert after <= -1.0 + 1e-3
    far = slice(c + SR // 10, 2 * n - SR // 4)  # untouched away from the cut and fade
    np.testing.assert_array_equal(album[:, far], x[:, far])


def test_cue_times_are_frames():
    tracks = [CueTrack("A", 0), CueTrack("B", 588 * 301, pregap=588 * 220, isrc="USABC2400001"),
              CueTrack('C "x"', 588 * 4500 + 588 * 74)]
    text = cue_sheet("album.wav", SR, tracks, title="T", catalog="0123456789012")
    assert "CATALOG 0123456789012" in text and 'FILE "album.wav" WAVE' in text
    got = read_cue(text)
    assert [g["index"][1] * 588 for g in got] == [t.start for t in tracks]
    assert got[1]["index"][0] * 588 == tracks[1].pregap and got[1]["isrc"] == "USABC2400001"
    assert "INDEX 01 01:00:74" in text  # 4574 frames = 60 s + 74 frames


# ---------------------------------------------------------------------------- levels
def test_album_plan_keeps_differences_and_hits_target():
    rng = np.random.default_rng(3)
    # 100 ms hop energies of three tracks at -10, -17.2 and -12 LUFS (steady)
    levels = [-10.0, -17.2, -12.0]
    hops = [np.full(300, 10 ** ((L + 0.691) / 10)) * (1 + 0.01 * rng.standard_normal(300))
            for L in levels]
    plan = plan_levels("album", -14.0, levels, [0.0, 0.0, 0.0], hops)
    d_in = np.diff(levels)
    np.testing.assert_allclose(np.diff(plan.planned_lufs), d_in, atol=1e-9)
    est = album_loudness_estimate(hops, [p - L for p, L in zip(plan.planned_lufs, levels)])
    assert est == pytest.approx(-14.0 + 0.5, abs=0.02)  # aims a little high, trimmed later
    plan_t = plan_levels("track", -14.0, levels, [0.0, -2.0, 0.0], hops)
    assert plan_t.planned_lufs == [-14.0, -16.0, -14.0]


# ---------------------------------------------------------------------------- sequence
def _click_track(bpm: float, seconds: float, level: float, bright: bool, seed: int):
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = np.zeros(n)
    period = 60.0 / bpm
    burst = rng.standard_normal(int(0.03 * SR)) * np.exp(-np.arange(int(0.03 * SR)) / 200)
    if not bright:
        burst = np.convolve(burst, np.ones(40) / 40, mode="same")
    for k in range(int(seconds / period)):
        s = int(k * period * SR)
        x[s:s + burst.size] += burst[:n - s]
    x += 0.05 * np.sin(2 * np.pi * 110 * np.arange(n) / SR)
    x *= level / np.abs(x).max()
    return np.stack([x, x]).astype(np.float32)


def test_tempo_and_key():
    from automaster.metering import measure

    x = _click_track(128.0, 12.0, 0.5, True, 0)
    f = analyze(x, SR, measure(x, SR, true_peak=False).integrated_lufs)
    assert f.tempo_bpm == pytest.approx(128.0, abs=2.0)
    t = np.arange(8 * SR) / SR  # A minor triad with octaves: A, C, E
    chord = sum(np.sin(2 * np.pi * f0 * t) for f0 in (220.0, 261.63, 329.63, 440.0, 523.25))
    y = np.stack([chord, chord]).astype(np.float32) * 0.1
    g = analyze(y, SR, -20.0)
    assert g.key == "A minor"


def test_auto_sequence_orders_by_energy():
    from automaster.metering import measure

    specs = [(70, 0.05, False), (170, 0.9, True), (100, 0.3, False), (140, 0.7, True),
             (60, 0.02, False)]
    feats = []
    for i, (bpm, lvl, bright) in enumerate(specs):
        x = _click_track(bpm, 8.0, lvl, bright, i)
        feats.append(analyze(x, SR, measure(x, SR, true_peak=False).integrated_lufs))
    energies = [f.energy for f in feats]
    assert energies[1] > energies[3] > energies[2] > energies[0]  # clearly different
    order, reasons = propose_order(feats)
    assert order[0] == 1 and "opens" in reasons[0]
    e = [energies[i] for i in order]
    steps = np.sign(np.diff(e))
    assert list(steps) == [-1, 1, -1, 1]  # alternating down / up
    assert np.mean(e[:2]) > np.mean(e[-2:])  # strongest early


@pytest.mark.filterwarnings("error")
def test_pngs_draw_titles_the_font_lacks_without_warnings(tmp_path):
    """A CJK or emoji title or file name: the bundled font draws boxes, and matplotlib's
    "Glyph missing" warnings (two stderr lines per glyph) are not shown."""
    from automaster.album.report import draw_album
    from automaster.report import draw_report

    draw_report({"output": "歌 🎵.wav"}, tmp_path / "one.png")
    draw_album({"album": {"file": "album.wav", "title": "夜 🎵", "loudness_mode": "album",
                          "target_lufs": -14.0}, "tracks": []}, str(tmp_path / "album.png"))
    assert (tmp_path / "one.png").stat().st_size > 0 and (tmp_path / "album.png").stat().st_size > 0
