"""``automaster IN [IN ...] -o OUT``: master audio files from the command line.

Arguments, paths and files are validated before anything heavy (numpy, torch, the model)
is imported, so ``--help`` and usage errors are instant. User errors print one line,
``automaster: error: FILE: problem``, and exit with status 2; no traceback is shown
(set AUTOMASTER_DEBUG=1 to see one for internal errors, which exit with status 1).
Ctrl-C, SIGTERM and SIGHUP stop a run the same way: one line, exit status 128 + the signal
number, and no temporary output left behind (a SIGKILLed run's hidden ``.part`` file is
removed by the next run that writes the same output).

Environment: AUTOMASTER_THREADS (torch/numba threads while mastering, default 1),
AUTOMASTER_METER_THREAD=0 (meter inline instead of on a second thread),
AUTOMASTER_TIMING=1 (per-stage seconds on stderr), AUTOMASTER_DEBUG_PASSES=1 (the
loudness search's passes on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from automaster.errors import AutomasterError, OutputError, UserError, one_line
from automaster.platforms import PLATFORMS, get_platform, platform_table

DEFAULT_TARGET_LUFS = -14.0
DEFAULT_CEILING_DBTP = -1.0
LOAD_INTO_MEMORY_BYTES = 192 << 20

EPILOG = """\
examples:
  automaster mix.wav -o master.wav
  automaster mix.wav -o master.flac --platform apple-music --bit-depth 16
  automaster a.wav b.flac -o masters/ --report
  automaster mix.wav -o master.wav --reference pro_master.wav
  automaster mix.wav -o master.wav --restore dc,clicks --denoise 0.5 --mono-bass 120
  automaster mix.wav -o master.wav --params-out s.json     # then edit s.json and:
  automaster mix.wav -o master2.wav --params-in s.json --force
  automaster album a.wav b.wav c.wav -o release/           # an album: see automaster album --help
  automaster serve                                         # the web app: see automaster serve --help

Loudness: --target (default -14 LUFS) or a --platform preset (--list-platforms); the true
peak stays under --ceiling (default -1 dBTP). With --reference and no --target/--platform
the reference's loudness is matched. Output format follows the extension (.wav .flac .aiff,
lossy .ogg .opus .mp3); --bit-depth defaults to 24 (TPDF dither when reducing to 16/24-bit
PCM). A lossy output is decoded and measured, and the limiter's ceiling lowered until the
decoded true peak meets the ceiling; --codec-safe does the same check against MP3 128/320k
and Opus 96/160k for any output.

Restoration runs first, on the whole input: --restore auto (default) repairs DC offset and
rumble, mains hum, clicks, clipped peaks and inverted polarity where they are detected;
--restore off skips it; --restore dc,hum,clicks,clipping,polarity picks fixes. Hiss is
reduced only with --denoise AMOUNT (0..1), otherwise reported. The report lists findings.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see automaster --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = _Parser(prog="automaster", description="Master audio files: analyse the mix, predict "
                "the mastering chain's settings, render, normalize loudness under a true-peak "
                "ceiling, write.", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="IN", help="input audio file(s)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output file, or an existing folder (required with several inputs)")
    g = p.add_argument_group("loudness")
    g.add_argument("--target", type=float, metavar="LUFS",
                   help=f"integrated loudness target (default {DEFAULT_TARGET_LUFS:g})")
    g.add_argument("--platform", metavar="NAME", help="loudness preset: " + ", ".join(PLATFORMS))
    g.add_argument("--ceiling", type=float, metavar="DBTP",
                   help=f"true-peak ceiling (default {DEFAULT_CEILING_DBTP:g})")
    g.add_argument("--list-platforms", action="store_true", help="print the platform presets")
    g = p.add_argument_group("processing")
    g.add_argument("--intensity", type=float, default=1.0, metavar="0..1",
                   help="blend from the identity setting (0) to the chosen setting (1)")
    g.add_argument("--reference", metavar="REF", help="match a reference master's sound")
    g.add_argument("--model", metavar="NAME|PATH", help="checkpoint name or path")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to run (default auto: CUDA when present)")
    g.add_argument("--params-in", metavar="FILE.json",
                   help="render with these settings (skips prediction)")
    g.add_argument("--params-out", metavar="FILE.json",
                   help="write the chosen settings (physical units)")
    g.add_argument("--stereo", action="store_true", help="upmix mono input to stereo")
    g.add_argument("--downmix", action="store_true",
                   help="fold inputs with more than two channels down to stereo")
    g.add_argument("--allow-truncated", action="store_true",
                   help="master a WAV whose header announces more audio than the file holds "
                        "(refused by default), using what is there")
    add_restore_arguments(p)
    g = p.add_argument_group("output")
    g.add_argument("--bit-depth", choices=("16", "24", "32f"),
                   help="16, 24 (default) or 32f; n/a for .ogg .opus .mp3")
    g.add_argument("--sample-rate", type=int, metavar="HZ",
                   help="output sample rate (default: the input's)")
    g.add_argument("--format", choices=("wav", "flac", "aiff", "ogg", "opus", "mp3"),
                   help="output format in folder mode (default: the input's when writable, "
                        "else wav)")
    g.add_argument("--codec-safe", action="store_true",
                   help="encode the master as MP3 128/320k and Opus 96/160k, decode, and lower "
                        "the limiter's ceiling until every decoded true peak meets the ceiling")
    g.add_argument("--report", action="store_true",
                   help="also write OUT.report.json and OUT.report.png")
    g.add_argument("--force", action="store_true", help="overwrite existing output files")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar, no summary lines (errors and warnings still shown)")
    g.add_argument("--version", action="version", version="automaster 0.1.0")
    return p


def add_restore_arguments(p: argparse.ArgumentParser) -> None:
    """--restore, --denoise, --mono-bass (shared with ``automaster album``)."""
    from automaster.restore_options import FIXES, MONO_BASS_HZ

    g = p.add_argument_group("restoration (before mastering)")
    g.add_argument("--restore", default="auto", metavar="auto|off|" + ",".join(FIXES),
                   help="repair DC/rumble, hum, clicks, clipping and polarity where detected "
                        "(auto, the default), nothing (off), or only the listed fixes")
    g.add_argument("--denoise", type=float, metavar="AMOUNT",
                   help="reduce hiss by spectral gating, 0..1 (default: hiss is only "
                        "reported)")
    g.add_argument("--mono-bass", type=float, metavar="HZ",
                   help=f"keep the low end mono below HZ ({MONO_BASS_HZ[0]:g}-"
                        f"{MONO_BASS_HZ[1]:g}; for vinyl and clubs)")


def check_restore_arguments(args: argparse.Namespace) -> None:
    """Normalize args.restore/denoise/mono_bass in place; UserError for a bad value."""
    from automaster.restore_options import check_restore_options

    try:
        args.restore, args.denoise, args.mono_bass = check_restore_options(
            args.restore, args.denoise, args.mono_bass, getattr(args, "sample_rate", None))
    except ValueError as e:
        raise UserError(str(e)) from None


def restoration_enabled(args: argparse.Namespace) -> bool:
    return args.restore != "off" or args.denoise is not None or args.mono_bass is not None


@dataclass
class Plan:
    """One input file and where its results go."""

    input: Path
    output: Path
    info: Any = None  # automaster.io.AudioInfo
    source: Any = None  # (Source, FileSource to close | None), opened ahead of time
    error: UserError | None = None  # raised when opening ahead of time


class _Preload:
    """Imports torch and the pipeline's modules on a background thread."""

    def __init__(self, restore: bool = False) -> None:
        import threading

        self.restore = restore
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="automaster-preload",
                                        daemon=True)

    def _run(self) -> None:
        try:
            import torch  # noqa: F401

            import automaster.pipeline  # noqa: F401
            import dsp.chain  # noqa: F401  (dsp imports its modules lazily)
            import model.checkpoint  # noqa: F401
            if self.restore:
                import automaster.restore  # noqa: F401  (numpy/scipy stages, ~1 s)
        except BaseException as e:  # re-raised on the main thread
            self.error = e

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()


def _err(message: str) -> None:
    _say(f"automaster: error: {one_line(message)}", err=True)


def _warn(message: str) -> None:
    _say(f"automaster: warning: {one_line(message)}", err=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _check_writable_dir(folder: Path, what: str) -> None:
    if not folder.exists():
        raise OutputError(f"{what} folder does not exist", folder)
    if not folder.is_dir():
        raise OutputError(f"{what} folder is not a folder", folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{what} folder is not writable", folder)


def _check_new_file(path: Path, force: bool) -> None:
    name_bytes = len(path.name.encode("utf-8", "surrogateescape"))
    if name_bytes > 255:  # e.g. OUT.report.json of a long OUT: refused now, not after the master
        raise OutputError(f"file name too long ({name_bytes} bytes of UTF-8; file systems "
                          f"allow 255)", path)
    if path.is_dir():
        raise OutputError("is a folder", path)
    if path.exists() and not force:
        raise OutputError("already exists (use --force to overwrite)", path)


def _validate_numbers(args: argparse.Namespace) -> None:
    from math import isfinite

    if args.target is not None and not (isfinite(args.target) and -70.0 < args.target <= 0.0):
        raise UserError(f"--target must be between -70 and 0 LUFS, got {args.target:g}")
    if args.ceiling is not None and not (isfinite(args.ceiling) and -30.0 <= args.ceiling <= 0.0):
        raise UserError(f"--ceiling must be between -30 and 0 dBTP, got {args.ceiling:g}")
    if not (isfinite(args.intensity) and 0.0 <= args.intensity <= 1.0):
        raise UserError(f"--intensity must be between 0 and 1, got {args.intensity:g}")
    if args.sample_rate is not None and not 8000 <= args.sample_rate <= 192000:
        raise UserError(f"--sample-rate must be between 8000 and 192000 Hz, got {args.sample_rate}")
    if args.params_in and args.reference:
        raise UserError("--params-in and --reference cannot be combined (the settings file "
                        "already fixes the chain)")
    if args.params_in and args.model:
        raise UserError("--params-in and --model cannot be combined (no prediction is made)")
    check_restore_arguments(args)


def _plan_outputs(args: argparse.Namespace) -> list[Plan]:
    from automaster.io import EXTENSIONS, FORMAT_EXTENSION, output_format

    inputs = [Path(p) for p in args.inputs]
    out = Path(args.output)
    folder_mode = len(inputs) > 1 or out.is_dir() or args.output.endswith(os.sep)
    plans: list[Plan] = []
    if folder_mode:
        _check_writable_dir(out, "output")
        seen: dict[Path, Path] = {}
        for inp in inputs:
            if args.format:
                ext = FORMAT_EXTENSION[args.format.upper()]
            else:
                ext = inp.suffix.lower() if inp.suffix.lower() in EXTENSIONS else ".wav"
            target = out / (inp.stem + ext)
            if target in seen:
                raise OutputError(f"two inputs ({seen[target]} and {inp}) would both be written "
                                  f"to this file", target)
            seen[target] = inp
            plans.append(Plan(inp, target))
    else:
        if args.format:
            raise UserError("--format applies to folder output; for one file, choose the "
                            "output extension")
        _check_writable_dir(out.parent if str(out.parent) else Path("."), "output")
        output_format(out)
        plans.append(Plan(inputs[0], out))
    return plans


def _preflight(args: argparse.Namespace) -> tuple[list[Plan], list[tuple[Path, UserError]]]:
    """Check inputs and outputs; returns (good plans, [(input, error)] for bad inputs)."""
    from automaster.io import check_input_info, output_format, output_subtype, probe
    from automaster.report import report_paths

    plans = _plan_outputs(args)
    good, bad = [], []
    for plan in plans:
        try:
            plan.info = probe(plan.input)
            check_input_info(plan.info, downmix=args.downmix,
                             allow_truncated=args.allow_truncated)
            if plan.info.truncated:
                _warn(f"{plan.input}: {plan.info.truncation_message()}; mastering what is there")
            output_subtype(output_format(plan.output), args.bit_depth)
            if _same_file(plan.input, plan.output):
                raise OutputError("is the input file itself; choose another output path",
                                  plan.output)
            for other, what in ((args.reference, "--reference"), (args.params_in, "--params-in")):
                if other and _same_file(Path(other), plan.output):
                    raise OutputError(f"is the {what} file; choose another output path",
                                      plan.output)
            _check_new_file(plan.output, args.force)
            if args.report:
                for extra in report_paths(plan.output):
                    _check_new_file(extra, args.force)
            good.append(plan)
        except UserError as e:
            bad.append((plan.input, e))
    return good, bad


def _resolve_loudness(args: argparse.Namespace) -> tuple[float | None, float]:
    target, ceiling = args.target, args.ceiling
    if args.platform:
        try:
            preset = get_platform(args.platform)
        except KeyError as e:
            raise UserError(str(e.args[0])) from None
        target = preset.target_lufs if target is None else target
        ceiling = preset.ceiling_dbtp if ceiling is None else ceiling
    if target is None and not getattr(args, "reference", None):
        target = DEFAULT_TARGET_LUFS
    if ceiling is None:
        ceiling = DEFAULT_CEILING_DBTP
    return target, ceiling


class _ProgressFile:
    """AUTOMASTER_PROGRESS_FILE=PATH: the current file's progress as one JSON line
    ``{"file": LABEL, "done": FRAMES, "total": FRAMES, "stage": NAME}``, rewritten (temp
    file + rename) at most every 0.2 s, for a program that runs this command (the web
    app's worker, automaster/web/jobs.py)."""

    def __init__(self, label: str) -> None:
        self.path = os.environ.get("AUTOMASTER_PROGRESS_FILE") or None
        self.label, self.done, self.total, self.stage, self.last = label, 0, 0, "", 0.0

    def update(self, force: bool = False) -> None:
        import time

        now = time.monotonic()
        if self.path is None or (not force and now - self.last < 0.2):
            return
        self.last = now
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"file": self.label, "done": self.done, "total": self.total,
                           "stage": self.stage}, f)
            os.replace(tmp, self.path)
        except OSError:  # progress is informative only; never fail the master for it
            pass


class _Bar:
    """tqdm-backed pipeline.Progress for one file (audio seconds on the x axis)."""

    def __init__(self, label: str, sample_rate: int, enabled: bool) -> None:
        self.file = _ProgressFile(label)
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=0, desc=label, unit="s", unit_scale=1.0 / sample_rate,
                            leave=False, file=sys.stderr, dynamic_ncols=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
        self.label = label

    def stage(self, name: str, frames: int) -> None:
        f = self.file
        if not f.total:
            f.total = 4 * frames
        elif f.done + frames > f.total:
            f.total = f.done + frames
        f.stage = name
        f.update(force=True)
        if self.bar is not None:
            if not self.bar.total:  # analyse, render, limit, write: about four passes
                self.bar.total = 4 * frames
            elif self.bar.n + frames > self.bar.total:  # an extra limiter pass
                self.bar.total = self.bar.n + frames
            self.bar.set_description_str(f"{self.label} [{name}]")
            self.bar.refresh()

    def advance(self, frames: int) -> None:
        self.file.done += frames
        self.file.update()
        if self.bar is not None:
            self.bar.update(frames)

    def close(self) -> None:
        self.file.update(force=True)
        if self.bar is not None:
            self.bar.close()


_BARS_ACTIVE = [False]


def printable(message: str, stream: Any) -> str:
    """``message`` as ``stream`` can encode it: a file name that is not UTF-8 reaches Python
    as surrogate escapes, which a strict UTF-8 stdout (any UTF-8 locale but C) refuses; such
    characters are written as backslash escapes, as Python's stderr does."""
    enc = getattr(stream, "encoding", None) or "utf-8"
    try:
        message.encode(enc)
        return message
    except UnicodeEncodeError:
        return message.encode(enc, "backslashreplace").decode(enc, "replace")
    except LookupError:
        return message


def _say(message: str, err: bool = False) -> None:
    """Print a line without tearing an active progress bar."""
    stream = sys.stderr if err else sys.stdout
    message = printable(message, stream)
    if _BARS_ACTIVE[0]:
        from tqdm import tqdm

        tqdm.write(message, file=stream)
        stream.flush()
    else:
        print(message, file=stream, flush=True)


def _threads() -> int:
    try:
        return max(1, int(os.environ.get("AUTOMASTER_THREADS", "1") or 1))
    except ValueError:
        raise UserError("AUTOMASTER_THREADS must be a positive integer") from None


def _open_source(plan: Plan, args: argparse.Namespace):
    """Input file -> processing Source (channel mapping, resampling, in memory if small)."""
    import numpy as np

    from automaster.io import (ChannelMapSource, FileSource, ResampledSource, downmix_matrix,
                               materialize)

    src: Any = FileSource(plan.input)
    raw = src
    if src.channels > 2:
        src = ChannelMapSource(src, downmix_matrix(src.channels))
    elif src.channels == 1 and args.stereo:
        src = ChannelMapSource(src, np.ones((2, 1), dtype=np.float32))
    if args.sample_rate and args.sample_rate != src.sample_rate:
        src = ResampledSource(src, args.sample_rate)
    if src.frames * src.channels * 4 <= LOAD_INTO_MEMORY_BYTES:
        try:
            src = materialize(src)
        finally:
            raw.close()
        return src, None
    return src, raw


def _master_one(plan: Plan, args: argparse.Namespace, shared: dict[str, Any]) -> dict[str, Any]:
    """Master one file; returns the params-out entry."""
    from automaster.io import AudioWriter
    from automaster.pipeline import Job, describe, master_source
    from automaster.settings import settings_document

    if plan.error is not None:
        raise plan.error
    src, raw = plan.source if plan.source is not None else _open_source(plan, args)
    plan.source = None
    bar = _Bar(plan.input.name, src.sample_rate, shared["progress"])
    job = Job(target_lufs=shared["target"], ceiling_dbtp=shared["ceiling"],
              intensity=args.intensity, settings=shared["settings"],
              settings_path=args.params_in, reference=shared["reference"],
              reference_name=args.reference or "reference", model=shared["model"],
              device=shared["device"], detail=args.report, name=str(plan.input),
              tmp_dir=str(plan.output.parent), notify=shared["notify"], threads=_threads(),
              restore=args.restore, denoise=args.denoise, mono_bass_hz=args.mono_bass)
    from automaster.translate.deliver import master_to_file, needs_codec_loop

    try:
        if needs_codec_loop(plan.output, args.codec_safe):  # lossy output or --codec-safe
            result = master_to_file(src, job, plan.output, args.bit_depth,
                                    codec_safe=args.codec_safe, progress=bar)
        else:
            with AudioWriter(plan.output, src.sample_rate, src.channels, args.bit_depth,
                             frames_hint=src.frames) as writer:
                result = master_source(src, job, writer.write, bar, rewind=writer.rewind)
    finally:
        bar.close()
        if raw is not None:
            raw.close()
    if job.model is not None and not isinstance(job.model, (str, os.PathLike)):
        shared["model"] = job.model  # loaded once, reused for the next files
    for w in result.report.get("warnings", []):
        _warn(f"{plan.input}: {w}")
    if args.report:
        from automaster.report import report_paths, write_report
        from automaster.translate.systems import analyze_file

        try:
            # playback models on the file as written (decoded, for a lossy one)
            result.report.setdefault("translation", {})["playback"] = analyze_file(plan.output)
            write_report(plan.output, result.report, result.settings)
        except (KeyboardInterrupt, _Terminated):
            # the master and its report are one result: an interrupt between them would
            # leave a master without (or, with --force, beside an older) report
            for path in (plan.output, *report_paths(plan.output)):
                try:
                    path.unlink()
                except OSError:
                    pass
            raise
    if os.environ.get("AUTOMASTER_TIMING"):
        print(f"automaster: timing: {plan.input}: {result.report.get('timings_s')}",
              file=sys.stderr)
    if not args.quiet:
        r = result.report
        _say(f"{plan.input}: {describe(r['before'])} -> {describe(r['after'])}  [{plan.output}]")
        from automaster.pipeline import restoration_lines

        for line in restoration_lines(r.get("restoration")):
            _say(f"{plan.input}: restoration: {line}")
        from automaster.translate.deliver import codec_summary

        line = codec_summary(r)
        if line:
            _say(f"{plan.input}: {line}")
    return settings_document(result.settings, input=str(plan.input), output=str(plan.output),
                             source=result.report.get("source"),
                             target_lufs=result.report.get("target_lufs"),
                             ceiling_dbtp=result.report.get("ceiling_dbtp"),
                             intensity=args.intensity, sample_rate=src.sample_rate)


def _write_params_out(path: Path, docs: list[dict[str, Any]]) -> None:
    from automaster.io import discard_temp_file, new_temp_file, release_temp_file
    from automaster.settings import FORMAT, VERSION

    if len(docs) == 1:
        doc = docs[0]
    else:
        doc = {"format": FORMAT, "version": VERSION,
               "files": {d["input"]: d for d in docs}}
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    tmp = None
    try:
        tmp = new_temp_file(path)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        release_temp_file(tmp)
    except OSError as e:
        if tmp is not None:
            discard_temp_file(tmp)
        raise OutputError(f"cannot write settings ({one_line(e)})", path) from None


def _run(args: argparse.Namespace) -> int:
    if args.list_platforms:
        print(platform_table())
        return 0
    if not args.inputs:
        raise UserError("no input files given (see automaster --help)")
    if not args.output:
        raise UserError("no output given: use -o OUT (a file, or a folder for several inputs)")
    _validate_numbers(args)
    target, ceiling = _resolve_loudness(args)

    settings = None
    if args.params_in:
        from automaster.settings import read_settings_file

        settings = read_settings_file(args.params_in)
    params_out = Path(args.params_out) if args.params_out else None
    if params_out is not None:
        _check_writable_dir(params_out.parent if str(params_out.parent) else Path("."),
                            "--params-out")
        _check_new_file(params_out, args.force)
    reference_info = None
    if args.reference:
        from automaster.io import check_input_info, probe

        reference_info = probe(args.reference)
        check_input_info(reference_info, downmix=True, allow_truncated=args.allow_truncated)
        if reference_info.truncated:
            _warn(f"{args.reference}: {reference_info.truncation_message()}; using what is there")

    plans, bad = _preflight(args)
    for inp, e in bad:
        _err(str(e) if e.path else f"{inp}: {e}")  # e.g. --bit-depth 32f for a .flac output
    if params_out is not None:
        for plan in plans:
            if _same_file(params_out, plan.input) or _same_file(params_out, plan.output):
                raise OutputError("--params-out would overwrite an audio file", params_out)
    if not plans:
        return 2

    # ---- heavy part: numpy/torch/model from here on. torch takes seconds to import: do it
    # on a thread while this one reads the first input (measured: 0.2-0.5 s saved)
    preload = _Preload(restore=restoration_enabled(args))
    preload.start()
    try:
        plans[0].source = _open_source(plans[0], args)
    except UserError as e:
        plans[0].error = e
    preload.join()
    if preload.error is not None:
        raise preload.error
    from automaster.pipeline import compute_threads, load_model, resolve_device

    # one intra-op thread: the chain's tensors are small enough that a second OpenMP thread
    # buys little, and on a busy machine its barrier waits cost up to 10x (measured); set
    # for these calls and for each master (Job.threads), restored after each
    with compute_threads(_threads()):
        device = resolve_device(args.device)
        model = None
        if settings is None:
            model = load_model(args.model, device)  # None: no default checkpoint shipped yet
    reference = None
    if args.reference:
        from automaster.io import FileSource, materialize

        with FileSource(args.reference) as fs:
            from automaster.io import ArraySource, ChannelMapSource, downmix_matrix

            ref_src: Any = fs
            if fs.channels > 2:
                ref_src = ChannelMapSource(fs, downmix_matrix(fs.channels))
            reference = materialize(ref_src)
            if not isinstance(reference, ArraySource):  # pragma: no cover
                raise UserError("cannot load the reference", args.reference)
        from automaster.pipeline import check_reference_level

        check_reference_level(reference, args.reference)  # once, not per input file

    notified: set[str] = set()

    def notify(message: str) -> None:
        if message not in notified:
            notified.add(message)
            _say(f"automaster: note: {one_line(message)}", err=True)

    shared = {"target": target, "ceiling": ceiling, "settings": settings, "model": model,
              "reference": reference, "device": device, "notify": notify,
              "progress": not args.quiet and sys.stderr.isatty()}
    failures = len(bad)
    docs = []
    files_bar = None
    _BARS_ACTIVE[0] = shared["progress"]
    if shared["progress"] and len(plans) > 1:
        from tqdm import tqdm

        files_bar = tqdm(total=len(plans), desc="files", unit="file", file=sys.stderr)
    try:
        for plan in plans:
            try:
                docs.append(_master_one(plan, args, shared))
            except UserError as e:
                _err(str(e) if e.path else f"{plan.input}: {e}")
                failures += 1
            if files_bar is not None:
                files_bar.update(1)
    finally:
        _BARS_ACTIVE[0] = False
        if files_bar is not None:
            files_bar.close()
    if params_out is not None and docs:
        _write_params_out(params_out, docs)
    return 2 if failures else 0


# ---------------------------------------------------------------------------- signals
class _Terminated(BaseException):
    """Raised on the main thread by SIGTERM/SIGHUP, so they unwind like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def _install_signal_handlers() -> dict[int, Any] | None:
    """SIGINT, SIGTERM and SIGHUP raise on the main thread (KeyboardInterrupt for SIGINT,
    _Terminated otherwise); the first one wins and later ones are ignored, so the cleanup
    (temporary files) cannot itself be interrupted. Returns the previous handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    signums = [getattr(signal, n) for n in _STOP_SIGNALS if hasattr(signal, n)]

    def handler(signum: int, frame: Any) -> None:
        for s in signums:
            signal.signal(s, signal.SIG_IGN)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise _Terminated(signum)

    previous: dict[int, Any] = {}
    for s in signums:
        old = signal.getsignal(s)
        if old is signal.SIG_IGN:  # e.g. started under nohup: keep ignoring
            continue
        previous[s] = old
        signal.signal(s, handler)
    return previous


def _restore_signal_handlers(previous: dict[int, Any] | None) -> None:
    import signal

    for s, old in (previous or {}).items():
        signal.signal(s, old if old is not None else signal.SIG_DFL)


def _interrupted(signum: int) -> int:
    """Clean up after an interrupt; returns the exit status (128 + signal number)."""
    import signal

    left = []
    if "automaster.io" in sys.modules:
        left = sys.modules["automaster.io"].discard_temp_files()
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    extra = f"; could not remove {', '.join(left)}" if left else ""
    _err(f"interrupted ({name}){extra}")
    return 128 + signum


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``automaster`` / ``python -m automaster``; returns the exit status."""
    previous = _install_signal_handlers()
    try:
        args = list(argv) if argv is not None else sys.argv[1:]
        if args[:1] == ["album"]:  # ``automaster album ...``: automaster/album/cli.py
            from automaster.album.cli import main as album_main

            return album_main(args[1:])
        if args[:1] == ["serve"]:  # ``automaster serve ...``: the web app, automaster/web/
            from automaster.web.serve import main as serve_main

            return serve_main(args[1:])
        return _main(args)
    except KeyboardInterrupt:  # landed outside _main's own handlers
        return _interrupted(2)
    except _Terminated as e:
        return _interrupted(e.signum)
    finally:
        if "automaster.io" in sys.modules:  # nothing of ours stays behind, whatever happened
            sys.modules["automaster.io"].discard_temp_files()
        _restore_signal_handlers(previous)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return _run(args)
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
    except KeyboardInterrupt:
        return _interrupted(2)
    except _Terminated as e:
        return _interrupted(e.signum)
    except AutomasterError as e:
        _err(str(e))
        return e.exit_code
    except Exception as e:  # CheckpointError and anything unexpected
        if type(e).__name__ == "CheckpointError":
            _err(str(e))
            return 2
        if os.environ.get("AUTOMASTER_DEBUG"):
            raise
        _err(f"internal error: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
