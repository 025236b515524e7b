"""``automaster album TRACK... -o DIR`` / ``automaster album --playlist album.txt -o DIR``.

Masters a set of songs as one release: sequence, fades, gaps or cross-fades, one gain
structure (``--loudness album``) or every track to the target (``--loudness track``),
a continuous album file, per-track files cut from it, a CUE sheet and a report. See
``automaster/album/__init__.py`` for the steps and README's "Album" section.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Sequence

from automaster.errors import AutomasterError, OutputError, UserError, one_line

EPILOG = """\
examples:
  automaster album 01.wav 02.wav 03.flac -o release/
  automaster album --playlist album.txt -o release/ --crossfade 3 --platform apple-music
  automaster album *.wav -o release/ --sequence auto --cohesion 0.5 --loudness album
  automaster album --playlist album.txt -o release/ --bit-depth 16 --ddp

Outputs in DIR: album.wav, "NN - TITLE.wav" per track (joined, they equal album.wav),
album.cue, album.json, album.png; with --ddp the folder DDP/ (a DDP 2.00 image for CD
replication, read back and verified). Playlist format: see automaster/album/playlist.py.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see automaster album --help)")


def build_parser() -> argparse.ArgumentParser:
    from automaster.platforms import PLATFORMS

    p = _Parser(prog="automaster album", description="Master several songs as one album.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tracks", nargs="*", metavar="TRACK", help="input audio files, in order")
    p.add_argument("--playlist", metavar="FILE", help="order and per-track options (.txt or "
                   ".json; see automaster/album/playlist.py)")
    p.add_argument("-o", "--output", metavar="DIR", help="output folder (created if missing)")
    g = p.add_argument_group("sequence and transitions")
    g.add_argument("--sequence", choices=("keep", "auto"), default="keep",
                   help="keep the given order (default) or propose one by energy")
    g.add_argument("--gap", type=float, default=2.0, metavar="S",
                   help="silence between tracks (default 2)")
    g.add_argument("--crossfade", type=float, metavar="S",
                   help="equal-power cross-fade between tracks instead of gaps")
    g.add_argument("--fade-in", type=float, default=0.0, metavar="S", help="fade-in per track")
    g.add_argument("--fade-out", type=float, default=0.0, metavar="S",
                   help="fade-out per track")
    g = p.add_argument_group("loudness")
    g.add_argument("--target", type=float, metavar="LUFS", help="default -14")
    g.add_argument("--platform", metavar="NAME", help="loudness preset: " + ", ".join(PLATFORMS))
    g.add_argument("--ceiling", type=float, metavar="DBTP", help="default -1")
    g.add_argument("--loudness", choices=("album", "track"), default="album",
                   help="album (default): one gain structure, relative loudness kept; "
                        "track: every track to the target")
    g = p.add_argument_group("processing")
    g.add_argument("--cohesion", type=float, default=0.0, metavar="0..1",
                   help="pull each track's settings toward the album mean (default 0)")
    g.add_argument("--intensity", type=float, default=1.0, metavar="0..1")
    g.add_argument("--reference", metavar="REF",
                   help="match every track to a reference master's sound; without --target "
                        "or --platform the album gets the reference's loudness")
    g.add_argument("--model", metavar="NAME|PATH", help="checkpoint name or path")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    g.add_argument("--downmix", action="store_true",
                   help="fold tracks with more than two channels down to stereo")
    from automaster.cli import add_restore_arguments

    add_restore_arguments(p)  # restoration of each track before it is analysed
    g = p.add_argument_group("output")
    g.add_argument("--format", choices=("wav", "flac", "aiff"), default="wav")
    g.add_argument("--bit-depth", choices=("16", "24", "32f"), help="default 24")
    g.add_argument("--sample-rate", type=int, metavar="HZ",
                   help="album rate (default: the first track's)")
    g.add_argument("--codec-safe", action="store_true",
                   help="encode the album as MP3 128/320k and Opus 96/160k, decode, and lower "
                        "the limiter until every decoded true peak meets --ceiling (what "
                        "streaming services transcode to; about 4 encodes' time per try)")
    g.add_argument("--ddp", action="store_true",
                   help="also write DIR/DDP/, a DDP 2.00 image for CD replication (44.1 kHz "
                        "16-bit; at most 99 tracks of at least 4 s, 79:57:74 in all)")
    g.add_argument("--force", action="store_true", help="replace album files already in DIR")
    g.add_argument("-q", "--quiet", action="store_true")
    return p


def _options(args: argparse.Namespace):
    from automaster.album.master import AlbumOptions

    def check(name: str, v: float | None, lo: float, hi: float) -> None:
        if v is not None and not (math.isfinite(v) and lo <= v <= hi):
            raise UserError(f"{name} must be between {lo:g} and {hi:g}, got {v:g}")

    from automaster.cli import _resolve_loudness

    target, ceiling = _resolve_loudness(args)  # --platform, then the single-track defaults
    # None: the reference's loudness, known once it is measured (run)
    if target is not None and not (math.isfinite(target) and -70.0 < target <= 0.0):
        raise UserError(f"--target must be between -70 and 0 LUFS, got {target:g}")
    check("--ceiling", ceiling, -30.0, 0.0)
    check("--gap", args.gap, 0.0, 600.0)
    check("--crossfade", args.crossfade, 0.0, 600.0)
    check("--fade-in", args.fade_in, 0.0, 600.0)
    check("--fade-out", args.fade_out, 0.0, 600.0)
    check("--cohesion", args.cohesion, 0.0, 1.0)
    check("--intensity", args.intensity, 0.0, 1.0)
    if args.sample_rate is not None and not 8000 <= args.sample_rate <= 192000:
        raise UserError(f"--sample-rate must be between 8000 and 192000 Hz, got "
                        f"{args.sample_rate}")
    if args.crossfade and args.gap != 2.0:
        raise UserError("--gap and --crossfade are alternatives; give one")
    from automaster.io import output_subtype

    # --format flac --bit-depth 32f: refused now, not after the whole album is mastered
    output_subtype({"wav": "WAV", "flac": "FLAC", "aiff": "AIFF"}[args.format], args.bit_depth)
    from automaster.cli import check_restore_arguments

    check_restore_arguments(args)
    try:
        threads = max(1, int(os.environ.get("AUTOMASTER_THREADS", "1") or 1))
    except ValueError:
        raise UserError("AUTOMASTER_THREADS must be a positive integer") from None
    return AlbumOptions(target_lufs=math.nan if target is None else target, ceiling_dbtp=ceiling, loudness=args.loudness,
                        cohesion=args.cohesion, sequence=args.sequence,
                        gap=0.0 if args.crossfade else args.gap,
                        crossfade=args.crossfade or 0.0, fade_in=args.fade_in,
                        fade_out=args.fade_out, intensity=args.intensity, model=args.model,
                        device=args.device, sample_rate=args.sample_rate,
                        downmix=args.downmix, format=args.format, bit_depth=args.bit_depth,
                        threads=threads, restore=args.restore, denoise=args.denoise,
                        mono_bass_hz=args.mono_bass, codec_safe=args.codec_safe)


def run(args: argparse.Namespace) -> int:
    from automaster.album.playlist import Playlist, make_track, read_playlist

    if not args.output:
        raise UserError("no output folder given: use -o DIR")
    if args.playlist and args.tracks:
        raise UserError("give tracks or --playlist, not both")
    if args.playlist:
        playlist = read_playlist(args.playlist)
    elif args.tracks:
        playlist = Playlist([make_track(t, {}, t) for t in args.tracks])
    else:
        raise UserError("no tracks given (see automaster album --help)")
    if args.ddp and len(playlist.tracks) > 99:
        raise UserError(f"--ddp: {len(playlist.tracks)} tracks; a CD holds at most 99")
    opts = _options(args)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise OutputError("exists and is not a folder", out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError("the output's parent folder is missing or not writable", out)
    from automaster.album.output import existing_outputs, foreign_ddp

    if args.ddp and foreign_ddp(out):
        raise OutputError("holds a 'DDP' that is not an album DDP image; move it away", out)
    clash = existing_outputs(out)
    if clash and not args.force:
        raise OutputError(f"already holds album files ({', '.join(clash[:3])}); use --force "
                          f"to replace them", out)
    for spec in playlist.tracks:
        if out.is_dir() and spec.path.resolve().parent == out.resolve() \
                and spec.path.name in clash:
            raise OutputError(f"holds the input {spec.path.name!r}, which the album would "
                              f"replace; choose another folder", out)

    from automaster.album.master import master_album, prepare, transitions_for
    from automaster.cli import printable
    from automaster.album.output import write_album_folder

    # every file and (in the given order) every transition checked before the heavy part
    checked, sr, channels = prepare(Playlist(list(playlist.tracks)), opts)
    transitions = transitions_for(checked, opts) if opts.sequence == "keep" else None

    def say(message: str, err: bool = False) -> None:
        if err or not args.quiet:
            stream = sys.stderr if err else sys.stdout
            print(printable(message, stream), file=stream, flush=True)

    def note(message: str) -> None:
        say(f"automaster: note: {one_line(message)}", err=True)

    if args.reference:
        from automaster.album.master import load_reference

        load_reference(args.reference, opts, channels, note)
    if args.ddp:
        _check_cd(checked, transitions, sr, playlist)
        from automaster.album.ddp import rendition_note
        from automaster.io import output_subtype

        line = rendition_note(sr, output_subtype(opts.format.upper(), opts.bit_depth), channels)
        if line:
            note(line)

    res = master_album(playlist, opts, notify=note,
                       progress=None if args.quiet else (lambda m: say(f"album: {m}")))
    if args.ddp:  # the exact timeline, before anything is written
        from automaster.album.ddp import red_book_problem
        from automaster.album.output import cd_layout

        problem = red_book_problem(cd_layout(res), [t.title for t in res.tracks])
        if problem:
            raise UserError(f"--ddp: {problem}")
        say("album: writing the DDP image and reading it back")
    import time

    t0 = time.perf_counter()
    doc = write_album_folder(res, out, opts.format, opts.bit_depth, force=args.force,
                             ddp=args.ddp)
    res.timings["write"] = round(time.perf_counter() - t0, 3)
    if os.environ.get("AUTOMASTER_TIMING"):
        print(f"automaster: timing: album: {res.timings}", file=sys.stderr)
    for w in res.warnings:
        say(f"automaster: warning: {one_line(w)}", err=True)
    if not args.quiet:
        a = doc["album"]
        if opts.sequence == "auto":
            say("sequence (auto):")
            for s in doc["sequence"]["tracks"]:
                say(f"  {s['number']:2d}. {s['title']}  [was {s['given_position']}]  energy "
                    f"{s['energy']}, {s['loudness_lufs']} LUFS, {s['tempo_bpm']} BPM, "
                    f"{s['key']}: {s['reason']}")
        for t in doc["tracks"]:
            say(f"  {t['file']}: {t['start_s']:.2f} s +{t['duration_s']:.2f} s, "
                f"{t['input_measurement']['integrated_lufs']} -> {t['lufs']} LUFS, "
                f"{t['true_peak_dbtp']} dBTP")
            from automaster.pipeline.restoration import restoration_lines

            for line in restoration_lines(t.get("restoration")):
                say(f"    restoration: {line}")
        say(f"{out}: album {a['integrated_lufs']} LUFS, {a['true_peak_dbtp']} dBTP, "
            f"{a['duration_s']:.1f} s, track loudness spread {a['input_loudness_spread_lu']} "
            f"-> {a['track_loudness_spread_lu']} LU ({opts.loudness} mode)")
        from automaster.translate.deliver import codec_summary

        line = codec_summary(doc)
        if line:
            say(f"  {line}")
        if "ddp" in doc:
            d = doc["ddp"]
            say(f"{out / d['folder']}: DDP 2.00, {len(d['tracks'])} tracks, lead-out "
                f"{d['lead_out']}, verified (read back: PQ times, ISRCs, catalog, audio); "
                f"MD5s in {d['checksum_file']}")
    return 0


def _check_cd(tracks, transitions, sr: int, playlist) -> None:
    """--ddp before the heavy part: the Red Book limits on the timeline that the inputs'
    lengths give in the given order (the mastered timeline is checked again before
    writing; with ``--sequence auto`` only then, as the order is not known yet)."""
    from automaster.album.assemble import Transition, plan_layout
    from automaster.album.ddp import album_cd_layout, red_book_problem

    if transitions is None:
        return
    lengths = [int(round(t.info.frames * sr / t.info.sample_rate)) for t in tracks]
    try:
        layout = plan_layout(lengths, sr, transitions + [Transition()],
                             [(t.fade_in, t.fade_out) for t in tracks])
    except ValueError:
        return  # the album reports it with its own message
    cd = album_cd_layout([p.cut for p in layout.tracks], [p.pregap for p in layout.tracks],
                         layout.frames, sr, [t.spec.isrc for t in tracks], playlist.catalog)
    problem = red_book_problem(cd, [t.title for t in tracks])
    if problem:
        raise UserError(f"--ddp: {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    """``automaster album ...`` (argv without the leading "album"); returns the exit status."""
    def err(message: str) -> None:
        print(f"automaster: error: {one_line(message)}", file=sys.stderr, flush=True)

    try:
        args = build_parser().parse_args(list(argv) if argv is not None else None)
        return run(args)
    except SystemExit as e:  # --help
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
    except KeyboardInterrupt:
        err("interrupted; no album files were written")
        return 130
    except AutomasterError as e:
        err(str(e))
        return e.exit_code
    except Exception as e:
        if type(e).__name__ == "CheckpointError":
            err(str(e))
            return 2
        if os.environ.get("AUTOMASTER_DEBUG"):
            raise
        err(f"internal error: {type(e).__name__}: {e}")
        return 1
