"""Mastering jobs of the web app: each render is the ``automaster`` command itself, run as
a worker process (``python -m automaster ...``), so every option and every error is the
CLI's.

A job owns a private folder ``ROOT/ID/`` (mode 0700) inside the server's private
temporary folder: ``in/01.wav ...`` (uploads under names the server chose, never the
client's), ``ref.<ext>``, and one ``outN/`` folder per render (the newest successful one
is served; an older one is removed when a newer one succeeds). At most ``max_running``
workers run at once (others wait as ``queued``); a new render of a job stops the one in
flight; deleting a job or shutting down kills its worker (SIGTERM, then SIGKILL) and
removes its folder; jobs not looked at for ``ttl_s`` seconds are removed.

Progress comes from the CLI: AUTOMASTER_PROGRESS_FILE (one JSON line, rewritten) for
single files and batches, the ``album: analysing|mastering ...`` lines on stdout for
albums.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import automaster
from automaster.errors import SettingsError
from automaster.settings import parse_settings

ERROR_PREFIX = "automaster: error: "
AUDIO_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".mp3",
                  ".opus", ".m4a"}
FORMATS = ("wav", "flac", "aiff", "ogg", "opus", "mp3")
LOSSY_FORMATS = ("ogg", "opus", "mp3")  # encoded, decoded and measured by the CLI; no bit depth
ALBUM_FORMATS = ("wav", "flac", "aiff")
BIT_DEPTHS = ("16", "24", "32f")
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg",
               "aiff": "audio/aiff", "opus": "audio/ogg", "mp3": "audio/mpeg"}
NAME_MAX = 100
# the package's parent: the worker imports the same automaster as the server
_CODE_ROOT = str(Path(automaster.__file__).resolve().parent.parent)


def display_name(client_name: str | None, fallback: str) -> str:
    """A client-sent file name made fit for display only (last path component, no
    control characters, at most NAME_MAX characters). It is never used as a path."""
    name = (client_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip().strip(".")
    return name[:NAME_MAX] or fallback


def safe_suffix(client_name: str | None) -> str:
    """The client name's extension when it is a known audio one, else ``.audio``."""
    suffix = Path(display_name(client_name, "x")).suffix.lower()
    return suffix if suffix in AUDIO_SUFFIXES else ".audio"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)  # whatever the umask
    return path


def _num(value: Any, what: str, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {str(value)[:40]!r}") from None
    if not lo <= v <= hi:  # also refuses NaN
        raise ValueError(f"{what} must be between {lo:g} and {hi:g}, got {v:g}")
    return v


@dataclass
class Input:
    path: Path
    name: str  # for display only


@dataclass
class Job:
    id: str
    dir: Path
    inputs: list[Input] = field(default_factory=list)
    reference: Input | None = None
    options: dict[str, str] = field(default_factory=dict)  # CLI option name -> value
    album: bool = False
    album_options: dict[str, Any] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # album: input indices, running order
    format: str = "wav"
    bit_depth: str = "24"
    status: str = "queued"
    progress: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    version: int = 0  # renders started
    out: Path | None = None  # the newest successful render's folder
    out_format: str | None = None
    out_bit_depth: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, float] | None = None
    settings_edited: bool = False
    proc: subprocess.Popen | None = None
    touched: float = field(default_factory=time.monotonic)
    deleted: bool = False

    @property
    def kind(self) -> str:
        return "album" if self.album else ("single" if len(self.inputs) == 1 else "batch")


class JobManager:
    """The jobs of one server; thread-safe; see the module doc."""

    def __init__(self, max_running: int = 2, ttl_s: float = 3600.0,
                 root: str | os.PathLike | None = None, python: str | None = None) -> None:
        if max_running < 1:
            raise ValueError("max_running must be at least 1")
        self.root = Path(tempfile.mkdtemp(prefix="automaster-web-", dir=root))
        os.chmod(self.root, 0o700)
        self.python = python or sys.executable
        self.ttl_s = float(ttl_s)
        self.jobs: dict[str, Job] = {}
        self.lock = threading.RLock()
        self.slots = threading.BoundedSemaphore(max_running)
        self.closed = False
        self._ranges: dict[str, Any] | None = None
        self._reaper = threading.Thread(target=self._reap_loop, name="automaster-web-ttl",
                                        daemon=True)
        self._reaper.start()

    # ------------------------------------------------------------------ jobs
    def new_job(self) -> Job:
        with self.lock:
            if self.closed:
                raise RuntimeError("the server is shutting down")
            jid = secrets.token_hex(8)
            job = Job(jid, _private_dir(self.root / jid))
            _private_dir(job.dir / "in")
            self.jobs[jid] = job
            return job

    def get(self, jid: str) -> Job | None:
        with self.lock:
            job = self.jobs.get(jid)
            if job is not None:
                job.touched = time.monotonic()
            return job

    def delete(self, jid: str) -> bool:
        with self.lock:
            job = self.jobs.pop(jid, None)
            if job is None:
                return False
            job.deleted = True
            proc = job.proc
        _stop(proc)
        shutil.rmtree(job.dir, ignore_errors=True)
        return True

    def close(self) -> None:
        """Stop every worker and remove every file (server shutdown)."""
        with self.lock:
            self.closed = True
            ids = list(self.jobs)
        for jid in ids:
            self.delete(jid)
        shutil.rmtree(self.root, ignore_errors=True)

    def _reap_loop(self) -> None:
        while not self.closed:
            time.sleep(min(30.0, max(1.0, self.ttl_s / 4)))
            self.reap()

    def reap(self, now: float | None = None) -> list[str]:
        """Delete jobs idle for longer than the TTL (not while a worker runs)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            old = [j.id for j in self.jobs.values()
                   if now - j.touched > self.ttl_s and j.status not in ("queued", "running")]
        for jid in old:
            self.delete(jid)
        return old

    # ------------------------------------------------------------------ options
    def set_options(self, job: Job, form: dict[str, str]) -> None:
        """Form fields (the CLI's names) -> the job's options; ValueError on a bad one.
        Values are checked only as far as needed to build a command line: the CLI checks
        ranges and combinations and its message is the job's error."""
        o: dict[str, str] = {}
        for key in ("target", "ceiling", "intensity"):
            if form.get(key, "") != "":
                _num(form[key], key, -1e6, 1e6)
                o[key] = str(float(form[key]))
        if form.get("platform", "") != "":
            if not re.fullmatch(r"[A-Za-z0-9 _-]{1,40}", form["platform"]):
                raise ValueError("platform: letters, digits, '-' and '_' only")
            o["platform"] = form["platform"]
        if form.get("restore", "") != "":
            if form["restore"] not in ("auto", "off"):
                raise ValueError("restore must be auto or off")
            o["restore"] = form["restore"]
        if form.get("denoise", "") != "":
            _num(form["denoise"], "denoise", 0.0, 1.0)
            o["denoise"] = str(float(form["denoise"]))
        if form.get("codec_safe", "") in ("1", "true", "on", "yes"):
            o["codec_safe"] = "1"
        job.options = o
        job.album = form.get("album", "") in ("1", "true", "on", "yes")
        fmt = form.get("format", "") or "wav"
        if fmt not in (ALBUM_FORMATS if job.album else FORMATS):
            raise ValueError(f"format must be one of {', '.join(ALBUM_FORMATS if job.album else FORMATS)}")
        job.format = fmt
        bd = form.get("bit_depth", "") or "24"
        if bd not in BIT_DEPTHS:
            raise ValueError("bit_depth must be 16, 24 or 32f")
        job.bit_depth = bd
        if job.album:
            if job.reference is not None and not _album_takes("--reference"):
                raise ValueError("a reference track applies to single files and batches; "
                                 "the album command has no --reference (remove the reference "
                                 "or master the files without 'album')")
            if o.get("codec_safe") and not _album_takes("--codec-safe"):
                raise ValueError("codec-safe applies to single files and batches; the album "
                                 "command has no --codec-safe (untick it, or master the files "
                                 "without 'album')")
            job.album_options = self._album_options(form, {"sequence": "keep", "gap": 2.0})
            job.order = list(range(len(job.inputs)))

    @staticmethod
    def _album_options(body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        a = dict(current)
        for key in ("gap", "crossfade", "fade_in", "fade_out"):
            if key in body and body[key] not in ("", None):
                a[key] = _num(body[key], key, 0.0, 600.0)
            elif key in body:
                a.pop(key, None)
        if body.get("sequence") not in (None, ""):
            if body["sequence"] not in ("keep", "auto"):
                raise ValueError("sequence must be keep or auto")
            a["sequence"] = body["sequence"]
        if "ddp" in body:   # a DDP 2.00 image for CD replication (--ddp), on request
            if not isinstance(body["ddp"], bool) and body["ddp"] not in ("0", "1"):
                raise ValueError("ddp must be true or false")
            a["ddp"] = body["ddp"] in (True, "1")
        if body.get("loudness") not in (None, ""):
            if body["loudness"] not in ("album", "track"):
                raise ValueError("loudness must be album or track")
            a["loudness"] = body["loudness"]
        if a.get("crossfade"):
            a.pop("gap", None)
        return a

    def edit(self, job: Job, body: dict[str, Any]) -> None:
        """POST /settings: edited chain settings (single file), album options and order
        (album), output format/bit depth (all). Re-renders. ValueError on a bad body."""
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        fmt, bd = body.get("format"), body.get("bit_depth")
        if fmt is not None and fmt not in (ALBUM_FORMATS if job.album else FORMATS):
            raise ValueError("unknown format")
        if bd is not None and str(bd) not in BIT_DEPTHS:
            raise ValueError("bit_depth must be 16, 24 or 32f")
        settings = body.get("settings")
        if settings is not None:
            if job.kind != "single":
                raise ValueError("settings can be edited for a single-file job only")
            if not isinstance(settings, dict) or not all(
                    isinstance(k, str) and isinstance(v, (int, float))
                    and not isinstance(v, bool) for k, v in settings.items()):
                raise ValueError("settings must be an object of {parameter name: number}")
            try:  # the CLI's own check: NaN and 1e400 (inf) parse as JSON numbers here
                settings = parse_settings(settings)
            except SettingsError as e:
                raise ValueError(f"settings: {e.message}") from None
        album = body.get("album")
        if album is not None:
            if not job.album:
                raise ValueError("album options apply to an album job only")
            if not isinstance(album, dict):
                raise ValueError("album must be an object")
            opts = self._album_options(album, job.album_options)
            order = album.get("order")
            if order is not None:
                if (not isinstance(order, list) or sorted(order) != list(range(len(job.inputs)))):
                    raise ValueError("order must list every input index once")
                job.order = [int(i) for i in order]
            job.album_options = opts
        if fmt is not None:
            job.format = fmt
        if bd is not None:
            job.bit_depth = str(bd)
        if settings is not None:
            job.settings = {k: float(v) for k, v in settings.items()}
            job.settings_edited = True
        self.render(job)

    # ------------------------------------------------------------------ command line
    def command(self, job: Job, out: Path) -> list[str]:
        """The worker's argv (``python -m automaster ...``) for the job's next render."""
        argv = [self.python, "-m", "automaster"]
        o = job.options
        if job.album:
            playlist = {"tracks": [{"file": str(job.inputs[i].path),
                                    "title": Path(job.inputs[i].name).stem or f"Track {k}"}
                                   for k, i in enumerate(job.order, 1)]}
            plist = out / "playlist.json"
            plist.write_text(json.dumps(playlist, indent=1), encoding="utf-8")
            argv += ["album", "--playlist", str(plist), "-o", str(out / "album"),
                     "--format", job.format, "--bit-depth", job.bit_depth]
            a = job.album_options
            for key in ("gap", "crossfade", "fade_in", "fade_out"):
                if key in a:
                    argv += [f"--{key.replace('_', '-')}", repr(float(a[key]))]
            argv += ["--sequence", a.get("sequence", "keep")]
            if a.get("ddp"):
                argv += ["--ddp"]
            if a.get("loudness"):
                argv += ["--loudness", a["loudness"]]
            for key in ("target", "platform", "ceiling", "intensity", "restore", "denoise"):
                if key in o:
                    argv += [f"--{key}", o[key]]
            if job.reference is not None:  # refused up front unless the album command takes it
                argv += ["--reference", str(job.reference.path)]
            if o.get("codec_safe"):  # likewise
                argv += ["--codec-safe"]
            return argv
        argv += [str(i.path) for i in job.inputs]
        if job.kind == "single":
            argv += ["-o", str(out / f"master.{job.format}")]
        else:
            argv += ["-o", str(out) + os.sep, "--format", job.format]
        if job.format not in LOSSY_FORMATS:
            argv += ["--bit-depth", job.bit_depth]
        argv += ["--report", "--params-out", str(out / "settings.json")]
        for key in ("target", "platform", "ceiling", "restore", "denoise"):
            if key in o:
                argv += [f"--{key}", o[key]]
        if o.get("codec_safe") and job.format not in LOSSY_FORMATS:
            argv += ["--codec-safe"]  # a lossy output is always checked after decoding
        if job.settings_edited and job.settings is not None:
            # the edited settings are final: no prediction, no intensity blend on top, no
            # reference match; the loudness the first render aimed at is kept
            doc = {"format": "automaster-settings", "version": 1, "settings": job.settings}
            path = out / "settings-in.json"
            path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
            argv += ["--params-in", str(path)]
            first = job.result.get("report") or {}
            if "target" not in o and "platform" not in o and first.get("target_lufs") is not None:
                argv += ["--target", repr(float(first["target_lufs"]))]
        else:
            if "intensity" in o:
                argv += ["--intensity", o["intensity"]]
            if job.reference is not None:
                argv += ["--reference", str(job.reference.path)]
        return argv

    # ------------------------------------------------------------------ rendering
    def render(self, job: Job) -> None:
        """Start a render of the job (stopping one in flight)."""
        with self.lock:
            if job.deleted or self.closed:
                return
            job.version += 1
            version = job.version
            old = job.proc
            job.status, job.progress, job.error = "queued", 0.0, None
        _stop(old)
        threading.Thread(target=self._run, args=(job, version), daemon=True,
                         name=f"automaster-web-{job.id}-{version}").start()

    def _current(self, job: Job, version: int) -> bool:
        return job.version == version and not job.deleted and not self.closed

    def _run(self, job: Job, version: int) -> None:
        with self.slots:
            with self.lock:
                if not self._current(job, version):
                    return
                out = job.dir / f"out{version}"
                _private_dir(out)
                progress_file = out / "progress.json"
                try:
                    argv = self.command(job, out)
                except OSError as e:
                    job.status, job.error = "failed", f"cannot prepare the job ({e})"
                    return
                env = dict(os.environ)
                env["AUTOMASTER_PROGRESS_FILE"] = str(progress_file)
                env["PYTHONPATH"] = os.pathsep.join(
                    p for p in (_CODE_ROOT, env.get("PYTHONPATH", "")) if p)
                env.pop("AUTOMASTER_DEBUG", None)  # errors as one line, not a traceback
                env.setdefault("OMP_NUM_THREADS", "1")
                env.setdefault("MKL_NUM_THREADS", "1")
                stderr_path = out / "stderr.txt"
                with open(stderr_path, "wb") as err:
                    proc = subprocess.Popen(argv, cwd=str(job.dir), env=env,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=err, start_new_session=True)
                job.proc = proc
                job.status, job.progress = "running", 0.02
            watcher = threading.Thread(target=self._watch_progress,
                                       args=(job, version, proc, progress_file), daemon=True)
            watcher.start()
            album_steps = [0]
            for raw in proc.stdout or ():  # album progress lines; drained for every kind
                line = raw.decode("utf-8", "replace").strip()
                if job.album and line.startswith("album: "):
                    album_steps[0] += 1
                    total = 2 * len(job.inputs) + 1
                    with self.lock:
                        if self._current(job, version):
                            job.progress = max(job.progress,
                                               min(0.95, 0.05 + 0.9 * album_steps[0] / total))
            rc = proc.wait()
            watcher.join()
            self._finish(job, version, proc, rc, out, stderr_path)

    def _watch_progress(self, job: Job, version: int, proc: subprocess.Popen,
                        path: Path) -> None:
        names = [i.path.name for i in job.inputs]
        while proc.poll() is None:
            time.sleep(0.25)
            if job.album:
                continue
            try:
                p = json.loads(path.read_text(encoding="utf-8"))
                frac = min(1.0, p["done"] / p["total"]) if p.get("total") else 0.0
                k = names.index(p["file"]) if p.get("file") in names else 0
            except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
                continue
            with self.lock:
                if self._current(job, version):
                    job.progress = max(job.progress,
                                       min(0.98, 0.05 + 0.93 * (k + frac) / len(names)))

    def _finish(self, job: Job, version: int, proc: subprocess.Popen, rc: int, out: Path,
                stderr_path: Path) -> None:
        try:
            err_text = stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            err_text = ""
        with self.lock:
            if job.proc is proc:
                job.proc = None
            if not self._current(job, version):
                shutil.rmtree(out, ignore_errors=True)
                return
            messages = [self._readable(job, ln) for ln in err_text.splitlines()]
            errors = [m[len(ERROR_PREFIX):] for m in messages if m.startswith(ERROR_PREFIX)]
            job.warnings = [m.split(": ", 1)[1] for m in messages
                            if m.startswith(("automaster: warning: ", "automaster: note: "))]
            # a batch whose CLI mastered some files and refused others (exit 2) keeps what
            # was mastered: the job is "failed" with the refusals as its error, and ready
            batch_partial = rc > 0 and job.kind == "batch"
            result = self._collect(job, out) if rc == 0 or batch_partial else None
            partial = batch_partial and result is not None
            if rc != 0 or result is None:
                job.status = "failed"
                if errors:
                    job.error = "; ".join(errors) if partial else errors[-1]
                elif rc < 0:
                    job.error = f"the worker was stopped (signal {-rc})"
                else:
                    tail = [m for m in messages if m.strip()][-1:] or ["no message"]
                    job.error = f"mastering failed (exit status {rc}): {tail[0]}"
                if not partial:
                    if job.kind == "single" and job.result:
                        # the master still served is the previous one: show its settings,
                        # not the ones this render was refused with
                        job.settings = (job.result.get("settings_doc") or {}).get("settings")
                    shutil.rmtree(out, ignore_errors=True)
                    return
            previous = job.out
            job.out, job.result = out, result
            job.out_format, job.out_bit_depth = job.format, job.bit_depth
            if job.kind == "single":
                job.settings = (result.get("settings_doc") or {}).get("settings")
            if job.album:
                seq = (result.get("album") or {}).get("sequence") or {}
                order = seq.get("order")
                if isinstance(order, list) and sorted(order) == list(range(1, len(job.order) + 1)):
                    job.order = [job.order[p - 1] for p in order]
                job.album_options["sequence"] = "keep"
            if not partial:
                job.status = "done"
            job.progress = 1.0
        if previous is not None and previous != out:
            shutil.rmtree(previous, ignore_errors=True)

    def _readable(self, job: Job, line: str) -> str:
        """A CLI line with the job's private paths replaced by the uploaded names."""
        pairs = [(str(i.path), i.name) for i in job.inputs]
        if job.reference is not None:
            pairs.append((str(job.reference.path), job.reference.name))
        for path, name in sorted(pairs, key=lambda p: -len(p[0])):
            line = line.replace(path, name)
        return line.replace(str(job.dir) + os.sep, "").replace(str(job.dir), "")

    def _collect(self, job: Job, out: Path) -> dict[str, Any] | None:
        def load(path: Path) -> Any:
            return json.loads(path.read_text(encoding="utf-8"))

        try:
            if job.album:
                folder = out / "album"
                doc = load(folder / "album.json")
                return {"album": doc, "files": sorted(p.name for p in folder.iterdir())}
            if job.kind == "single":
                master = out / f"master.{job.format}"
                return {"outputs": [master.name],
                        "report": load(out / f"{master.name}.report.json"),
                        "settings_doc": load(out / "settings.json")}
            names = [f"{i.path.stem}.{job.format}" for i in job.inputs]
            # a file the CLI refused has no output: None in its place (a partial batch)
            done = [n if (out / n).is_file() and (out / f"{n}.report.json").is_file() else None for n in names]
            if not any(done):
                return None
            return {"outputs": done,
                    "reports": [load(out / f"{n}.report.json") if n else None for n in done],
                    "settings_doc": load(out / "settings.json") if (out / "settings.json").is_file() else None}
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ files
    def master_path(self, job: Job, track: int | None) -> Path | None:
        """The rendered file: the master (single), track N (batch, album; 1-based) or the
        continuous album file (album, no track)."""
        if job.out is None:
            return None
        if job.album:
            doc = job.result["album"]
            folder = job.out / "album"
            if track is None:
                name = doc["album"]["file"]
            else:
                tracks = doc["tracks"]
                if not 1 <= track <= len(tracks):
                    return None
                name = tracks[track - 1]["file"]
            return _inside(folder, name)
        outputs = job.result["outputs"]
        k = 1 if track is None else track
        if not 1 <= k <= len(outputs) or outputs[k - 1] is None:
            return None  # (a file a partial batch could not master)
        return _inside(job.out, outputs[k - 1])

    def original_path(self, job: Job, track: int | None) -> Input | None:
        if job.album and job.out is not None and track is not None:
            tracks = job.result["album"]["tracks"]
            if not 1 <= track <= len(tracks):
                return None
            src = tracks[track - 1].get("input")
            return next((i for i in job.inputs if str(i.path) == src), None)
        k = 1 if track is None else track
        return job.inputs[k - 1] if 1 <= k <= len(job.inputs) else None

    def result_file(self, job: Job, name: str) -> Path | None:
        """Named result files: settings.json, report.json, report.png; album.cue,
        album.json, album.png, ddp.zip (the album's DDP folder, zipped on first request)."""
        if job.out is None:
            return None
        if job.album:
            if name == "ddp.zip":
                return _zip_folder(job.out / "album" / "DDP", job.out / "ddp.zip")
            return _inside(job.out / "album", name) if name in ("album.cue", "album.json",
                                                                 "album.png") else None
        if job.kind != "single":
            return _inside(job.out, "settings.json") if name == "settings.json" else None
        master = job.result["outputs"][0]
        table = {"settings.json": "settings.json", "report.json": f"{master}.report.json",
                 "report.png": f"{master}.report.png"}
        return _inside(job.out, table[name]) if name in table else None

    # ------------------------------------------------------------------ state
    def state(self, job: Job) -> dict[str, Any]:
        with self.lock:
            s: dict[str, Any] = {
                "id": job.id, "kind": job.kind, "status": job.status,
                "progress": round(job.progress, 3), "error": job.error,
                "warnings": job.warnings, "version": job.version,
                "files": [{"index": k + 1, "name": i.name} for k, i in enumerate(job.inputs)],
                "reference": None if job.reference is None else job.reference.name,
                "options": job.options, "format": job.format, "bit_depth": job.bit_depth,
                "ready": job.out is not None,
                "output_format": job.out_format, "output_bit_depth": job.out_bit_depth,
            }
            if job.album:
                s["album_options"] = job.album_options
                s["order"] = [{"index": i + 1, "name": job.inputs[i].name} for i in job.order]
            r = job.result
            if job.out is not None:
                if job.album:
                    s["report"] = r.get("album")
                elif job.kind == "single":
                    s["report"] = r.get("report")
                    s["settings"] = job.settings
                else:
                    s["report"] = r.get("reports")
            return s

    def chain_ranges(self) -> dict[str, Any]:
        """The chain's parameter table {name: {low, high, scale, unit}}, asked once of a
        worker process (the server itself never imports torch)."""
        with self.lock:
            if self._ranges is not None:
                return self._ranges
        code = ("import json; from dsp import MasteringChain; c = MasteringChain(44100); "
                "print(json.dumps({n: c.ranges[n].to_dict() for n in c.param_names}))")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_CODE_ROOT, env.get("PYTHONPATH", "")) if p)
        res = subprocess.run([self.python, "-c", code], capture_output=True, env=env,
                             timeout=600, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise RuntimeError("cannot read the chain's parameter ranges: "
                               + res.stderr.decode("utf-8", "replace").strip()[-300:])
        ranges = json.loads(res.stdout.decode("utf-8").strip().splitlines()[-1])
        with self.lock:
            self._ranges = ranges
        return ranges


def _album_takes(option: str) -> bool:
    """Whether the installed album command has ``option`` (a web server running against an
    older album command refuses what it would not take)."""
    from automaster.album.cli import build_parser

    return any(option in a.option_strings for a in build_parser()._actions)


def _zip_folder(folder: Path, dest: Path) -> Path | None:
    """``dest``: a zip of ``folder``'s plain files under the folder's name (stored, not
    compressed: CD audio does not compress), written once through a temporary name; None
    when the folder is missing."""
    import zipfile

    if dest.is_file():
        return dest
    if not folder.is_dir() or folder.is_symlink():
        return None
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with zipfile.ZipFile(part, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for p in sorted(folder.iterdir()):
                if p.is_file() and not p.is_symlink():
                    z.write(p, f"{folder.name}/{p.name}")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _inside(folder: Path, name: str) -> Path | None:
    """folder/name when name is a plain file name of a file in folder, else None."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    p = folder / name
    return p if p.is_file() and p.resolve().parent == folder.resolve() else None


def _stop(proc: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    """SIGTERM the worker's process group (the CLI cleans up its temporary files), then
    SIGKILL if it has not exited after ``grace_s``."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
