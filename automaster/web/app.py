"""The web app's HTTP side (Starlette): the page, its static files and the job API.

API (every request carries the session token; see security.py):

- ``POST /api/jobs``: multipart, ``file`` (one or more), optional ``reference``, options
  as form fields with the CLI's names (``target platform ceiling intensity restore``,
  ``denoise codec_safe format bit_depth``; ``album=1`` with ``gap crossfade fade_in
  fade_out sequence loudness``). The body is streamed to the job's private folder and
  refused past the upload limit (413). Returns ``{"id": ...}``.
- ``GET /api/jobs/{id}``: status ``queued|running|done|failed``, progress 0..1, the CLI's
  error message, warnings, and when a render is there the report (single: the
  ``--report`` JSON; batch: a list of them; album: ``album.json``) and the settings.
- ``GET /api/jobs/{id}/master[?track=N]``, ``/original[?track=N]``, ``/reference``:
  audio (``&download=1``: as an attachment).
- ``GET /api/jobs/{id}/file/{name}``: settings.json, report.json, report.png, album.cue,
  album.json, album.png, ddp.zip (after a render with the album option ``ddp``).
- ``POST /api/jobs/{id}/settings``: JSON ``{"settings": {...}}`` (single file: the
  ``--params-in`` path), ``{"album": {"order": [...], "gap": ..., ...}}`` (album),
  ``"format"``/``"bit_depth"``; re-renders.
- ``DELETE /api/jobs/{id}``: stops its worker and removes its files.
- ``GET /api/platforms``, ``GET /api/chain``: the loudness presets and the chain's
  parameter ranges, for the page's controls.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import automaster
from automaster.web.jobs import MEDIA_TYPES, Input, Job, JobManager, display_name, safe_suffix
from automaster.web.security import Guard, allowed_hosts

STATIC = Path(__file__).resolve().parent / "static"
MAX_FILES = 50
MAX_FIELD_BYTES = 4096
MAX_FIELDS = 64
SETTINGS_MAX_BYTES = 64 << 10
FORM_FIELDS = {"target", "platform", "ceiling", "intensity", "restore", "denoise", "codec_safe",
               "format", "bit_depth", "album", "gap", "crossfade", "fade_in", "fade_out",
               "sequence", "loudness", "ddp"}


class UploadTooLarge(Exception):
    pass


class BadUpload(Exception):
    pass


class _Upload:
    """python-multipart callbacks writing file parts straight into the job's folder under
    names chosen here (``in/01.wav``, ``ref.flac``); text parts are kept as form fields."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.fields: dict[str, str] = {}
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._fd: int | None = None
        self._pending: tuple[str, Input] | None = None
        self._text: tuple[str, bytearray] | None = None

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self._begin, "on_header_field": self._hfield,
                "on_header_value": self._hvalue, "on_header_end": self._hend,
                "on_headers_finished": self._headers_done, "on_part_data": self._data,
                "on_part_end": self._end}

    def _begin(self) -> None:
        self._headers, self._field, self._value = {}, b"", b""
        self._pending, self._text = None, None

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _hend(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_done(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in params:
            client = params[b"filename"].decode("utf-8", "replace")
            if not client:  # a file input left empty
                return
            job = self.job
            if name == "file":
                if len(job.inputs) >= MAX_FILES:
                    raise BadUpload(f"at most {MAX_FILES} files per job")
                k = len(job.inputs) + 1
                path = job.dir / "in" / f"{k:02d}{safe_suffix(client)}"
                item = Input(path, display_name(client, f"track {k}"))
            elif name == "reference":
                if job.reference is not None:
                    raise BadUpload("one reference per job")
                path = job.dir / f"ref{safe_suffix(client)}"
                item = Input(path, display_name(client, "reference"))
            else:
                raise BadUpload(f"unexpected file field {name[:40]!r} (use file or reference)")
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._pending = (name, item)
        else:
            if name not in FORM_FIELDS:
                raise BadUpload(f"unknown field {name[:40]!r}")
            if len(self.fields) >= MAX_FIELDS:
                raise BadUpload("too many fields")
            self._text = (name, bytearray())

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._fd is not None:
            view = memoryview(data)[start:end]
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        elif self._text is not None:
            self._text[1].extend(data[start:end])
            if len(self._text[1]) > MAX_FIELD_BYTES:
                raise BadUpload(f"field {self._text[0]!r} is too long")

    def _end(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            name, item = self._pending  # type: ignore[misc]
            if name == "file":
                self.job.inputs.append(item)
            else:
                self.job.reference = item
        elif self._text is not None:
            self.fields[self._text[0]] = self._text[1].decode("utf-8", "replace").strip()
        self._pending, self._text = None, None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _track(request: Request) -> int | None:
    t = request.query_params.get("track")
    if t in (None, ""):
        return None
    if not re.fullmatch(r"\d{1,4}", t):
        raise ValueError("track must be a positive integer")
    return int(t)


def _download_name(stem: str, suffix: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9 ._()-]+", "_", stem).strip(" ._") or "master"
    return f"{safe[:80]}{suffix}"


def cli_options() -> dict[str, list[str]]:
    """The long options the installed CLI knows, per command (``master`` and ``album``):
    the page offers a control (restoration, ...) only where the CLI has its option."""
    from automaster.album.cli import build_parser as album_parser
    from automaster.cli import build_parser

    def names(p: Any) -> list[str]:
        return sorted(o for a in p._actions for o in a.option_strings if o.startswith("--"))

    return {"master": names(build_parser()), "album": names(album_parser())}


def create_app(*, token: str, host: str = "127.0.0.1", port: int = 8765,
               jobs: JobManager | None = None, max_upload_bytes: int = 1 << 30,
               max_running: int = 2, ttl_s: float = 3600.0) -> Any:
    """The ASGI app (Starlette wrapped in the Host/token guard). ``jobs`` defaults to a
    new JobManager, closed (workers stopped, files removed) at shutdown."""
    manager = jobs or JobManager(max_running=max_running, ttl_s=ttl_s)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            yield
        finally:
            await run_in_threadpool(manager.close)

    def job_or_404(request: Request) -> Job:
        job = manager.get(request.path_params["job_id"])
        if job is None:
            raise LookupError
        return job

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def platforms(request: Request) -> Response:
        from automaster.platforms import PLATFORMS

        return JSONResponse([{"name": p.name, "target_lufs": p.target_lufs,
                              "ceiling_dbtp": p.ceiling_dbtp, "notes": p.notes}
                             for p in PLATFORMS.values()])

    async def info(request: Request) -> Response:
        return JSONResponse({"version": automaster.__version__, "options": cli_options(),
            "max_upload_bytes": max_upload_bytes})

    async def chain(request: Request) -> Response:
        try:
            return JSONResponse(await run_in_threadpool(manager.chain_ranges))
        except Exception as e:  # reported to the page, the server keeps running
            return _error(500, str(e))

    async def create_job(request: Request) -> Response:
        ctype, params = parse_options_header(request.headers.get("content-type", ""))
        if ctype != b"multipart/form-data" or not params.get(b"boundary"):
            return _error(400, "send multipart/form-data with a file field")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_upload_bytes:
            return _error(413, f"upload too large ({int(length)} bytes; the limit is "
                               f"{max_upload_bytes} bytes, see automaster serve --max-upload-mb)")
        try:
            job = manager.new_job()
        except RuntimeError as e:
            return _error(503, str(e))
        sink = _Upload(job)
        parser = MultipartParser(params[b"boundary"], sink.callbacks())
        total = 0
        try:
            async for chunk in request.stream():
                total += len(chunk)
                if total > max_upload_bytes:
                    raise UploadTooLarge
                parser.write(chunk)
            parser.finalize()
            if not job.inputs:
                raise BadUpload("no audio file in the upload (field 'file')")
            manager.set_options(job, sink.fields)
        except UploadTooLarge:
            sink.close()
            manager.delete(job.id)
            return _error(413, f"upload too large (the limit is {max_upload_bytes} bytes, see "
                               f"automaster serve --max-upload-mb)")
        except (BadUpload, ValueError) as e:
            sink.close()
            manager.delete(job.id)
            return _error(400, str(e))
        except Exception as e:  # a malformed multipart body, a disk error
            sink.close()
            manager.delete(job.id)
            return _error(400, f"cannot read the upload ({type(e).__name__}: {e})")
        manager.render(job)
        return JSONResponse({"id": job.id})

    async def get_job(request: Request) -> Response:
        return JSONResponse(manager.state(job_or_404(request)))

    async def delete_job(request: Request) -> Response:
        ok = await run_in_threadpool(manager.delete, request.path_params["job_id"])
        return JSONResponse({"deleted": True}) if ok else _error(404, "no such job")

    def audio_response(request: Request, path: Path, stem: str) -> Response:
        fmt = path.suffix.lower().lstrip(".")
        media = MEDIA_TYPES.get({"aif": "aiff", "wave": "wav", "oga": "ogg"}.get(fmt, fmt),
                                "application/octet-stream")
        if request.query_params.get("download"):
            return FileResponse(path, media_type=media,
                                filename=_download_name(stem, path.suffix.lower()))
        return FileResponse(path, media_type=media)

    async def master(request: Request) -> Response:
        job = job_or_404(request)
        try:
            track = _track(request)
        except ValueError as e:
            return _error(400, str(e))
        path = manager.master_path(job, track)
        if path is None:
            return _error(404, "no master yet" if job.out is None else "no such track")
        if job.album:
            stem = path.stem
        else:
            src = job.inputs[(track or 1) - 1]
            stem = f"{Path(src.name).stem} (master)"
        return audio_response(request, path, stem)

    async def original(request: Request) -> Response:
        job = job_or_404(request)
        try:
            item = manager.original_path(job, _track(request))
        except ValueError as e:
            return _error(400, str(e))
        if item is None:
            return _error(404, "no such track")
        return audio_response(request, item.path, Path(item.name).stem)

    async def reference(request: Request) -> Response:
        job = job_or_404(request)
        if job.reference is None:
            return _error(404, "this job has no reference")
        return audio_response(request, job.reference.path, Path(job.reference.name).stem)

    async def result_file(request: Request) -> Response:
        job = job_or_404(request)
        name = request.path_params["name"]
        path = manager.result_file(job, name)
        if path is None:
            return _error(404, "no such file (yet)")
        media = {".json": "application/json", ".png": "image/png", ".zip": "application/zip",
                 ".cue": "text/plain; charset=utf-8"}.get(path.suffix, "application/octet-stream")
        if request.query_params.get("download"):
            base = Path(job.inputs[0].name).stem if not job.album else "album"
            return FileResponse(path, media_type=media, filename=_download_name(
                f"{base} {path.stem}" if not job.album else path.stem, path.suffix))
        return FileResponse(path, media_type=media)

    async def settings(request: Request) -> Response:
        job = job_or_404(request)
        raw = bytearray()
        async for chunk in request.stream():  # 28 numbers and a few options: 64 KiB is ample
            raw += chunk
            if len(raw) > SETTINGS_MAX_BYTES:
                return _error(413, f"the settings body is larger than {SETTINGS_MAX_BYTES // 1024} KiB")
        try:
            body = json.loads(bytes(raw) or b"{}")
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            return _error(400, "the body must be JSON")
        try:
            await run_in_threadpool(manager.edit, job, body)
        except ValueError as e:
            return _error(400, str(e))
        return JSONResponse({"id": job.id, "version": job.version})

    def wrap(handler):
        async def inner(request: Request) -> Response:
            try:
                return await handler(request)
            except LookupError:
                return _error(404, "no such job (it may have expired)")
        return inner

    routes = [
        Route("/", index),
        Route("/api/platforms", platforms),
        Route("/api/info", info),
        Route("/api/chain", chain),
        Route("/api/jobs", create_job, methods=["POST"]),
        Route("/api/jobs/{job_id}", wrap(get_job), methods=["GET"]),
        Route("/api/jobs/{job_id}", wrap(delete_job), methods=["DELETE"]),
        Route("/api/jobs/{job_id}/master", wrap(master)),
        Route("/api/jobs/{job_id}/original", wrap(original)),
        Route("/api/jobs/{job_id}/reference", wrap(reference)),
        Route("/api/jobs/{job_id}/file/{name}", wrap(result_file)),
        Route("/api/jobs/{job_id}/settings", wrap(settings), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.jobs = manager
    wildcard = host in ("", "0.0.0.0", "::", "[::]")
    guarded = Guard(app, token, allowed_hosts(host, port), wildcard_ips=wildcard)
    guarded.jobs = manager  # type: ignore[attr-defined]
    return guarded
