"""Build a free-music training corpus from Debian's free game-music packages.

Usage::

    python -m train.corpus --out ~/.cache/automaster/corpus            # build / resume
    python -m train.corpus --out DIR --packages ufoai-music,nexuiz-music
    python -m train.corpus --out DIR --summary                         # hours per package
    python -m train.corpus --out DIR --extracted PKGDIR --package NAME  # an already `dpkg -x`-ed tree

Each package is fetched with ``apt-get download`` (no root needed once ``apt-get update``
has run) and its data tarball is streamed with ``dpkg-deb --fsys-tarfile`` -- the same
extraction ``dpkg -x`` performs, but only music-like members are written to disk, so the
3.2 GB ``public.zip`` of 0ad-data is the only large temporary file.

What counts as music: an audio file (``.ogg .oga .opus .flac .wav .mp3``, or an
extension-less file whose header is Ogg/FLAC/RIFF-WAVE/MP3, as in blobwars-data) whose
directory path contains a music-like component (``music``, ``soundtrack``, ``cdtracks``;
an archive's own name counts, e.g. ``0music.pk3``) and that lasts at least
``--min-duration`` seconds (20 s by default: drops jingles and stingers). ``.zip`` and
``.pk3`` archives are opened and searched the same way. OpenClonk's packed ``.ocg/.ocd``
groups are *not* zip files (they are C4Group: gzip with a scrambled header) and hold
sound effects only; Debian ships OpenClonk's ``Music.ocg`` as a plain directory, which
is handled like any other folder.

Files are copied byte for byte (no transcoding). Layout of ``--out``::

    debs/                           downloaded .deb files (removed when done unless --keep-debs)
    audio/<package>/<path>          music files; an archive's members live under a folder
                                    named like the archive (".../0music.pk3/music/x.ogg")
    licenses/<package>.copyright    the package's debian/copyright, verbatim
    state/<package>.json            completion record: reruns skip finished packages
    manifest.jsonl                  the manifest (below), rewritten after each package

Manifest format: JSON Lines (UTF-8), one object per music file, keys:

    file            path relative to the corpus root, e.g. "audio/nexuiz-music/nexuiz/data/
                    music.pk3/sound/cdtracks/stairs.ogg"
    package         Debian package name (the split/grouping key for training)
    version         Debian package version
    source          path inside the package; an archive member is "<archive>!<member>"
    license         short licence of that file from debian/copyright ("GPL-2+", "CC-BY-SA-3.0")
    copyright       copyright holder(s) from the matching debian/copyright stanza, or ""
    duration_s      duration in seconds (float)
    sample_rate_hz  sample rate (int)
    channels        channel count (int)
    format          libsndfile "FORMAT/SUBTYPE", e.g. "OGG/VORBIS"

Licences come from a machine-readable (DEP-5) debian/copyright when there is one: the
last ``Files:`` stanza whose pattern matches the file wins (patterns are matched against
path suffixes, with leading source-tree folders such as ``data/`` allowed to be absent).
Packages with a free-form copyright file use the summary recorded in :data:`PACKAGES`,
which was read from that file by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

import soundfile as sf

LOG = logging.getLogger("train.corpus")

DEFAULT_CORPUS_DIR = Path.home() / ".cache" / "automaster" / "corpus"
MANIFEST_NAME = "manifest.jsonl"
MANIFEST_FIELDS = (
    "file",
    "package",
    "version",
    "source",
    "license",
    "copyright",
    "duration_s",
    "sample_rate_hz",
    "channels",
    "format",
)
AUDIO_EXTENSIONS = frozenset({".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3"})
ARCHIVE_EXTENSIONS = frozenset({".zip", ".pk3"})
MUSIC_DIR_RE = re.compile(r"music|soundtrack|cdtrack", re.IGNORECASE)
DEFAULT_MIN_DURATION_S = 20.0
_STATE_VERSION = 1
_COPY_CHUNK = 1 << 20


class CorpusError(RuntimeError):
    """A corpus build step failed (download, extraction, bad arguments)."""


@dataclasses.dataclass(frozen=True)
class PackageSpec:
    """A Debian package that ships free music.

    fallback_license: licence summary used when debian/copyright is not DEP-5 or has no
    stanza matching a file (read from the package's copyright file by hand).
    """

    name: str
    fallback_license: str


PACKAGES: dict[str, PackageSpec] = {
    spec.name: spec
    for spec in (
        PackageSpec("ufoai-music", "GPL-2+"),
        PackageSpec("wesnoth-1.16-music", "GPL-2+"),  # free-form copyright: GPL-2 or later
        PackageSpec("0ad-data", "CC-BY-SA-3.0"),
        PackageSpec("hedgewars-data", "GPL-2"),
        PackageSpec("widelands-data", "GPL-2+"),
        PackageSpec("supertux-data", "GPL-2+"),
        PackageSpec("nexuiz-music", "GPL-2+"),  # free-form copyright: GPL-2 or later
        PackageSpec("singularity-music", "CC-BY-SA-3.0"),  # free-form: CC Attribution-ShareAlike 3.0
        PackageSpec("warzone2100-music", "GPL-2+"),
        PackageSpec("blobwars-data", "GPL-2+"),
        PackageSpec("openclonk-data", "CC-BY-3.0"),  # free-form: game content CC-BY-3.0 (some CC0)
    )
}


# --------------------------------------------------------------------------- licences


@dataclasses.dataclass(frozen=True)
class CopyrightStanza:
    """One ``Files:`` paragraph of a DEP-5 debian/copyright file."""

    patterns: tuple[str, ...]
    license: str
    copyright: str


def _parse_paragraphs(text: str) -> list[dict[str, str]]:
    """Split RFC-822-like text into paragraphs of ``{field_lower: value}``."""
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
            continue
        if line[0] in " \t":
            if key is not None:
                current[key] += "\n" + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        current[key] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def parse_dep5(text: str) -> list[CopyrightStanza] | None:
    """Parse a machine-readable debian/copyright; None if ``text`` is free-form."""
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    if not re.match(r"(?i)format:\s*\S*(dep5|copyright-format)", first):
        return None
    stanzas = []
    for para in _parse_paragraphs(text):
        if "files" not in para or "license" not in para:
            continue
        patterns = tuple(para["files"].split())
        license_name = para["license"].split("\n", 1)[0].strip()
        holders = [h.strip() for h in para.get("copyright", "").split("\n") if h.strip() not in ("", ".")]
        if patterns and license_name:
            stanzas.append(CopyrightStanza(patterns, license_name, "; ".join(holders)))
    return stanzas


def _pattern_variants(pattern: str) -> list[str]:
    """The pattern plus versions without leading literal folders ("data/music/*" -> "music/*")."""
    parts = pattern.strip("/").split("/")
    variants = ["/".join(parts)]
    for k in range(1, len(parts) - 1):
        rest = parts[k:]
        if any(ch in rest[0] for ch in "*?["):
            break
        variants.append("/".join(rest))
    return variants


def dep5_pattern_matches(pattern: str, path: str) -> bool:
    """Whether a DEP-5 ``Files:`` pattern matches an installed path (by path suffix)."""
    parts = PurePosixPath(path).parts
    suffixes = ["/".join(parts[i:]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(s, v) for v in _pattern_variants(pattern) for s in suffixes)


def resolve_license(stanzas: list[CopyrightStanza] | None, path: str, fallback: str) -> tuple[str, str]:
    """(licence, copyright holders) for ``path``: the last matching stanza, else ``fallback``."""
    if stanzas:
        for stanza in reversed(stanzas):
            if any(dep5_pattern_matches(p, path) for p in stanza.patterns):
                return stanza.license, stanza.copyright
    return fallback, ""


# --------------------------------------------------------------------------- selection


def sniff_audio_extension(head: bytes) -> str | None:
    """File extension implied by an audio header (first >= 12 bytes), or None."""
    if head.startswith(b"OggS"):
        return ".ogg"
    if head.startswith(b"fLaC"):
        return ".flac"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return ".wav"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return ".mp3"
    return None


def is_music_path(path: str) -> bool:
    """Whether a folder (or archive) on ``path`` looks like a music folder."""
    return any(MUSIC_DIR_RE.search(part) for part in PurePosixPath(path).parts[:-1])


def is_audio_candidate(path: str) -> bool:
    """Music-folder file with an audio extension or no extension at all (sniffed later)."""
    suffix = PurePosixPath(path).suffix.lower()
    return is_music_path(path) and (suffix in AUDIO_EXTENSIONS or suffix == "")


def is_archive(path: str) -> bool:
    """Whether ``path`` names a zip-compatible archive (.zip, .pk3)."""
    return PurePosixPath(path).suffix.lower() in ARCHIVE_EXTENSIONS


def corpus_relpath(path: str) -> str:
    """Shorten an installed path for the corpus tree ("usr/share/games/x/..." -> "x/...")."""
    p = path.lstrip("./")
    for prefix in ("usr/share/games/", "usr/share/", "usr/lib/games/", "usr/games/"):
        if p.startswith(prefix):
            return p[len(prefix) :]
    return p


# --------------------------------------------------------------------------- sources


@dataclasses.dataclass
class Entry:
    """A regular file of a package: installed path (no leading "./"), size, opener."""

    path: str
    size: int
    open: Callable[[], IO[bytes]]


def iter_deb_entries(deb: Path) -> Iterator[Entry]:
    """Stream the regular files of a .deb's data tarball (``dpkg-deb --fsys-tarfile``).

    Entries must be consumed in order (tar stream): read an entry before asking for the next.
    """
    if shutil.which("dpkg-deb") is None:
        raise CorpusError("dpkg-deb not found; install dpkg (Debian/Ubuntu only)")
    proc = subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    if proc.stdout is None or proc.stderr is None:  # pragma: no cover - PIPE always gives both
        raise CorpusError("could not start dpkg-deb")
    finished = False
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name[2:] if member.name.startswith("./") else member.name.lstrip("/")

                def _open(m: tarfile.TarInfo = member) -> IO[bytes]:
                    handle = tar.extractfile(m)
                    if handle is None:  # pragma: no cover - isfile() guarantees a handle
                        raise CorpusError(f"cannot read {m.name} from {deb}")
                    return handle

                yield Entry(name, member.size, _open)
        finished = True
    except tarfile.TarError as exc:
        raise CorpusError(f"cannot read the data tarball of {deb}: {exc}") from exc
    finally:
        if not finished:
            proc.kill()
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        code = proc.wait()
        if finished and code != 0:
            raise CorpusError(f"dpkg-deb --fsys-tarfile {deb} failed ({code}): {err}")


def iter_tree_entries(root: Path) -> Iterator[Entry]:
    """Regular files under an extracted package tree (e.g. from ``dpkg -x``), sorted."""
    if not root.is_dir():
        raise CorpusError(f"not a directory: {root}")
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(root).as_posix()
            yield Entry(rel, path.stat().st_size, lambda p=path: p.open("rb"))


# --------------------------------------------------------------------------- extraction


@dataclasses.dataclass
class _Job:
    package: str
    version: str
    out: Path
    min_duration_s: float
    tmp: Path
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    copyright_text: str | None = None
    skipped_short: int = 0
    skipped_bad: int = 0


def _copy_stream(src: IO[bytes], dest: Path) -> None:
    """Copy ``src`` to ``dest`` atomically (temp file + rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with tmp.open("wb") as fh:
        shutil.copyfileobj(src, fh, _COPY_CHUNK)
    os.replace(tmp, dest)


def probe_audio(path: Path) -> dict[str, Any] | None:
    """Duration/rate/channels/format of a decodable audio file; None if libsndfile fails."""
    try:
        info = sf.info(str(path))
        with sf.SoundFile(str(path)) as fh:
            fh.read(min(4096, max(fh.frames, 1)), dtype="float32")
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        LOG.warning("undecodable, skipped: %s (%s)", path, exc)
        return None
    if info.samplerate <= 0 or info.frames <= 0 or info.channels <= 0:
        return None
    return {
        "duration_s": round(info.frames / info.samplerate, 3),
        "sample_rate_hz": int(info.samplerate),
        "channels": int(info.channels),
        "format": f"{info.format}/{info.subtype}",
    }


def _add_audio(job: _Job, source: str, license_path: str, corpus_path: str, size: int,
               opener: Callable[[], IO[bytes]]) -> None:
    """Copy one candidate into the corpus, probe it and record it (or drop it)."""
    rel = PurePosixPath("audio", job.package, corpus_relpath(corpus_path))
    dest = job.out / rel
    existing = [dest] + ([dest.with_name(dest.name + ext) for ext in AUDIO_EXTENSIONS] if not rel.suffix else [])
    done = next((p for p in existing if p.is_file() and p.stat().st_size == size), None)
    if done is None:
        with opener() as src:
            head = src.read(16)
            ext = sniff_audio_extension(head)
            if ext is None:
                return  # not audio (e.g. an extension-less text file in a music folder)
            if not rel.suffix:
                dest = dest.with_name(dest.name + ext)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".part")
            with tmp.open("wb") as fh:
                fh.write(head)
                shutil.copyfileobj(src, fh, _COPY_CHUNK)
            os.replace(tmp, dest)
    else:
        dest = done
    meta = probe_audio(dest)
    if meta is None:
        job.skipped_bad += 1
        dest.unlink(missing_ok=True)
        return
    if meta["duration_s"] < job.min_duration_s:
        job.skipped_short += 1
        dest.unlink(missing_ok=True)
        return
    job.records.append(
        {
            "file": dest.relative_to(job.out).as_posix(),
            "package": job.package,
            "version": job.version,
            "source": source,
            "license_path": license_path,
            **meta,
        }
    )


def _add_archive(job: _Job, entry: Entry) -> None:
    """Search a zip/pk3 archive for music and add its music members."""
    job.tmp.mkdir(parents=True, exist_ok=True)
    local = job.tmp / PurePosixPath(entry.path).name
    with entry.open() as src:
        _copy_stream(src, local)
    try:
        if not zipfile.is_zipfile(local):
            LOG.info("%s: %s is not a zip archive, skipped", job.package, entry.path)
            return
        with zipfile.ZipFile(local) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                member = info.filename.lstrip("/")
                logical = f"{entry.path}/{member}"
                if not is_audio_candidate(logical):
                    continue
                license_path = str(PurePosixPath(entry.path).parent / member)
                _add_audio(job, f"{entry.path}!{member}", license_path, logical, info.file_size,
                           lambda i=info: archive.open(i))
    except zipfile.BadZipFile as exc:
        LOG.warning("%s: bad archive %s skipped (%s)", job.package, entry.path, exc)
    finally:
        local.unlink(missing_ok=True)


def collect_music(entries: Iterable[Entry], package: str, version: str, out: Path,
                  min_duration_s: float = DEFAULT_MIN_DURATION_S,
                  fallback_license: str | None = None) -> list[dict[str, Any]]:
    """Copy the music found in a package's files into ``out`` and return manifest records.

    ``entries`` come from :func:`iter_deb_entries` or :func:`iter_tree_entries`. The
    package's ``usr/share/doc/<package>/copyright`` is saved to ``out/licenses`` and used
    to fill the ``license``/``copyright`` fields.
    """
    if min_duration_s < 0:
        raise ValueError(f"min_duration_s must be >= 0, got {min_duration_s}")
    spec = PACKAGES.get(package)
    fallback = fallback_license or (spec.fallback_license if spec else "unknown")
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix=".tmp-", dir=_ensure_dir(out)) as tmp:
        job = _Job(package, version, out, min_duration_s, Path(tmp))
        copyright_path = f"usr/share/doc/{package}/copyright"
        for entry in entries:
            if entry.path == copyright_path:
                with entry.open() as fh:
                    job.copyright_text = fh.read().decode("utf-8", errors="replace")
            elif is_archive(entry.path):
                _add_archive(job, entry)
            elif is_audio_candidate(entry.path):
                _add_audio(job, entry.path, entry.path, entry.path, entry.size, entry.open)
    if job.copyright_text is None:
        LOG.warning("%s: no %s in the package; licence falls back to %s", package, copyright_path, fallback)
    else:
        lic_dir = _ensure_dir(out / "licenses")
        (lic_dir / f"{package}.copyright").write_text(job.copyright_text, encoding="utf-8")
    stanzas = parse_dep5(job.copyright_text) if job.copyright_text else None
    records = []
    for rec in sorted(job.records, key=lambda r: r["file"]):
        license_name, holders = resolve_license(stanzas, rec.pop("license_path"), fallback)
        records.append({k: rec[k] if k in rec else None for k in MANIFEST_FIELDS}
                       | {"license": license_name, "copyright": holders})
    LOG.info("%s: %d music files kept, %d shorter than %.0f s, %d undecodable", package,
             len(records), job.skipped_short, min_duration_s, job.skipped_bad)
    return records


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- packages


def find_deb(debs_dir: Path, package: str) -> Path | None:
    """The newest ``<package>_*.deb`` in ``debs_dir``, if any."""
    found = sorted(debs_dir.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def download_deb(package: str, debs_dir: Path) -> Path:
    """``apt-get download`` a package into ``debs_dir`` (reusing a file already there)."""
    existing = find_deb(debs_dir, package)
    if existing is not None:
        return existing
    if shutil.which("apt-get") is None:
        raise CorpusError("apt-get not found: this corpus builder needs a Debian/Ubuntu system")
    _ensure_dir(debs_dir)
    LOG.info("%s: apt-get download ...", package)
    proc = subprocess.run(["apt-get", "download", package], cwd=debs_dir, capture_output=True, text=True)
    deb = find_deb(debs_dir, package)
    if proc.returncode != 0 or deb is None:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise CorpusError(
            f"`apt-get download {package}` failed (exit {proc.returncode}): {' | '.join(detail)}\n"
            "If the package is unknown or the download 404s, the package lists are missing or stale: "
            "run `apt-get update` (as root) and try again."
        )
    return deb


def deb_version(deb: Path) -> str:
    """The ``Version`` field of a .deb."""
    proc = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CorpusError(f"not a readable .deb: {deb}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _state_path(out: Path, package: str) -> Path:
    return out / "state" / f"{package}.json"


def load_state(out: Path, package: str, min_duration_s: float) -> list[dict[str, Any]] | None:
    """Records of a finished package, or None if it must be (re)built."""
    path = _state_path(out, package)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    if state.get("state_version") != _STATE_VERSION or state.get("min_duration_s") != min_duration_s:
        return None
    records = state.get("records", [])
    if not all((out / r["file"]).is_file() for r in records):
        return None
    return records


def save_state(out: Path, package: str, version: str, min_duration_s: float,
               records: list[dict[str, Any]]) -> None:
    """Mark a package finished (atomic write)."""
    path = _state_path(out, package)
    _ensure_dir(path.parent)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps({"state_version": _STATE_VERSION, "package": package, "version": version,
                               "min_duration_s": min_duration_s, "records": records}, indent=1),
                   encoding="utf-8")
    os.replace(tmp, path)


def build_package(package: str, out: Path, min_duration_s: float = DEFAULT_MIN_DURATION_S,
                  keep_debs: bool = False, force: bool = False) -> list[dict[str, Any]]:
    """Download (if needed) and extract one package's music; skipped when already done."""
    out = Path(out)
    if not force:
        done = load_state(out, package, min_duration_s)
        if done is not None:
            LOG.info("%s: already done (%d files), skipped", package, len(done))
            return done
    deb = download_deb(package, out / "debs")
    version = deb_version(deb)
    LOG.info("%s %s: extracting music from %s", package, version, deb.name)
    records = collect_music(iter_deb_entries(deb), package, version, out, min_duration_s)
    save_state(out, package, version, min_duration_s, records)
    if not keep_debs:
        deb.unlink(missing_ok=True)
    return records


def build_from_tree(root: Path, package: str, out: Path, version: str = "unknown",
                    min_duration_s: float = DEFAULT_MIN_DURATION_S) -> list[dict[str, Any]]:
    """Extract music from an already extracted package tree (``dpkg -x PKG.deb root``)."""
    records = collect_music(iter_tree_entries(Path(root)), package, version, Path(out), min_duration_s)
    save_state(Path(out), package, version, min_duration_s, records)
    return records


# --------------------------------------------------------------------------- manifest


def write_manifest(out: Path) -> Path:
    """Rebuild ``out/manifest.jsonl`` from the finished packages' state files."""
    out = Path(out)
    states = sorted((out / "state").glob("*.json")) if (out / "state").is_dir() else []
    order = {name: i for i, name in enumerate(PACKAGES)}
    states.sort(key=lambda p: (order.get(p.stem, len(order)), p.stem))
    path = out / MANIFEST_NAME
    tmp = path.with_suffix(".jsonl.part")
    with tmp.open("w", encoding="utf-8") as fh:
        for state_file in states:
            for rec in json.loads(state_file.read_text(encoding="utf-8")).get("records", []):
                fh.write(json.dumps({k: rec.get(k) for k in MANIFEST_FIELDS}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Parse a manifest.jsonl; raises ValueError on a malformed line or missing key."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"manifest not found: {path}")
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON: {exc}") from exc
            missing = [k for k in ("file", "package", "duration_s", "sample_rate_hz", "channels") if k not in rec]
            if not isinstance(rec, dict) or missing:
                raise ValueError(f"{path}:{lineno}: missing keys {missing}")
            records.append(rec)
    return records


def summarize(records: Iterable[dict[str, Any]]) -> list[tuple[str, int, float, str]]:
    """Per package: (package, files, hours, licences joined by ',')."""
    table: dict[str, list[Any]] = {}
    for rec in records:
        row = table.setdefault(rec["package"], [0, 0.0, set()])
        row[0] += 1
        row[1] += float(rec["duration_s"]) / 3600.0
        row[2].add(rec.get("license") or "unknown")
    return [(pkg, n, hours, ",".join(sorted(lic))) for pkg, (n, hours, lic) in table.items()]


def format_summary(records: Iterable[dict[str, Any]]) -> str:
    """A text table of files and hours per package, with a total line."""
    rows = summarize(records)
    lines = [f"{'package':<22} {'files':>5} {'hours':>7}  licences"]
    for pkg, n, hours, lic in rows:
        lines.append(f"{pkg:<22} {n:>5} {hours:>7.2f}  {lic}")
    lines.append(f"{'total':<22} {sum(r[1] for r in rows):>5} {sum(r[2] for r in rows):>7.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.corpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_CORPUS_DIR, help="corpus folder (default %(default)s)")
    parser.add_argument("--packages", default=",".join(PACKAGES),
                        help="comma-separated Debian packages (default: all known music packages)")
    parser.add_argument("--min-duration", type=float, default=DEFAULT_MIN_DURATION_S,
                        help="drop music files shorter than this many seconds (default %(default)s)")
    parser.add_argument("--keep-debs", action="store_true", help="keep downloaded .deb files in OUT/debs")
    parser.add_argument("--force", action="store_true", help="rebuild packages already done")
    parser.add_argument("--summary", action="store_true", help="only print hours per package from the manifest")
    parser.add_argument("--extracted", type=Path, help="use an already extracted package tree (dpkg -x output)")
    parser.add_argument("--package", help="package name of --extracted")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    out: Path = args.out.expanduser()
    failures: list[str] = []
    try:
        if args.summary:
            print(format_summary(read_manifest(out / MANIFEST_NAME)))
            return 0
        if args.min_duration < 0:
            raise CorpusError("--min-duration must be >= 0")
        if args.extracted is not None:
            if not args.package:
                raise CorpusError("--extracted needs --package NAME")
            build_from_tree(args.extracted, args.package, out, min_duration_s=args.min_duration)
        else:
            packages = [p.strip() for p in args.packages.split(",") if p.strip()]
            if not packages:
                raise CorpusError("--packages is empty")
            for package in packages:
                try:
                    build_package(package, out, args.min_duration, args.keep_debs, args.force)
                except CorpusError as exc:
                    LOG.error("%s: %s", package, exc)
                    failures.append(package)
                write_manifest(out)
            if failures:
                LOG.error("failed packages: %s", ", ".join(failures))
        manifest = write_manifest(out)
        print(format_summary(read_manifest(manifest)))
        print(f"manifest: {manifest}")
        return 1 if failures else 0
    except (CorpusError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
