"""Writing the album folder: everything goes to a hidden temporary folder first and is
moved into place only when complete, so a failure or an interruption leaves nothing. The
staging folder (``.DIR.<pid>@<host>.<random>.album`` beside DIR) of a run that was killed
outright (SIGKILL, power loss) is removed by the next album run to DIR, as a single
master's ``.part`` file is (:func:`automaster.io.remove_stale_parts`).

Fixed names: ``album.wav`` (or .flac/.aiff with ``--format``), ``NN - TITLE.wav`` per
track, ``album.cue``, ``album.json``, ``album.png``, and with ``--ddp`` the folder ``DDP``
(a DDP 2.00 image for CD replication, :mod:`automaster.album.ddp`, verified by reading
it back before anything is moved into place).

Bit-exact cuts: the album is quantized once (TPDF dither, seeded, as ``automaster.io``)
into ``album.wav``; the track files are then cut from that file's samples, so joined
back together they equal ``album.wav`` sample for sample, dither included.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from automaster.album.cue import CueTrack, cue_sheet
from automaster.album.playlist import safe_filename
from automaster.errors import OutputError, one_line

FORMAT_EXT = {"wav": ".wav", "flac": ".flac", "aiff": ".aiff"}
FIXED = ("album.cue", "album.json", "album.png")
DDP_FOLDER = "DDP"
BLOCK = 1 << 20
STAGING_SUFFIX = ".album"  # the staging folder: .DIR.<pid>@<host>.<random>.album


def track_filenames(titles: list[str], ext: str) -> list[str]:
    width = max(2, len(str(len(titles))))
    return [f"{k:0{width}d} - {safe_filename(t)}{ext}" for k, t in enumerate(titles, 1)]


def output_names(titles: list[str], fmt: str) -> list[str]:
    ext = FORMAT_EXT[fmt]
    return ["album" + ext, *FIXED, *track_filenames(titles, ext)]


_OWN_EXT = (".wav", ".flac", ".aiff")


def existing_outputs(folder: Path) -> list[str]:
    """Files in ``folder`` that an album run writes: album.{wav,flac,aiff,cue,json,png}
    and "NN - TITLE.{wav,flac,aiff}". Only these are replaced with --force."""
    if not folder.is_dir():
        return []
    own = {"album" + e for e in (*_OWN_EXT, ".cue", ".json", ".png")}
    out = []
    for p in folder.iterdir():
        n = p.name
        if n == DDP_FOLDER and is_own_ddp(p):
            out.append(n)
            continue
        number, sep, _ = n.partition(" - ")
        if n in own or (sep and number.isdigit() and len(number) >= 2
                        and n.lower().endswith(_OWN_EXT)):
            out.append(n)
    return sorted(out)


def is_own_ddp(path: Path) -> bool:
    """A DDP folder an album run wrote: a folder holding a DDPID file and nothing but files."""
    return path.is_dir() and not path.is_symlink() and (path / "DDPID").is_file() \
        and all(p.is_file() for p in path.iterdir())


def foreign_ddp(folder: Path) -> bool:
    """``folder/DDP`` exists but is not an album DDP image (never replaced)."""
    p = folder / DDP_FOLDER
    return (p.exists() or p.is_symlink()) and not is_own_ddp(p)


def cd_layout(res: Any):
    """The album's CD layout (:class:`automaster.album.ddp.CdLayout`)."""
    from automaster.album.ddp import album_cd_layout

    return album_cd_layout([p.cut for p in res.layout.tracks],
                           [p.pregap for p in res.layout.tracks], res.layout.frames,
                           res.sample_rate, [t.spec.isrc for t in res.tracks],
                           res.playlist.catalog)


def write_album_folder(res: Any, out_dir: Path, fmt: str = "wav", bit_depth: str | None = None,
                       force: bool = False, ddp: bool = False) -> dict[str, Any]:
    """Write every output into ``out_dir`` (created when missing). Returns the report.
    With ``ddp``, also the DDP image in ``DDP/``, read back and verified."""
    from automaster.album.report import album_document, draw_album
    from automaster.io import output_subtype

    ext = FORMAT_EXT[fmt]
    container = {"wav": "WAV", "flac": "FLAC", "aiff": "AIFF"}[fmt]
    subtype = output_subtype(container, bit_depth)
    if container == "WAV" and res.album.size * 4 > 0xFFFF0000:
        container = "RF64"
    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    from automaster.io import remove_stale_parts, temp_prefix

    # a SIGKILLed run's staging folder (a whole album.wav) goes; a live run's stays
    remove_stale_parts(out_dir, STAGING_SUFFIX, folders=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out_dir), suffix=STAGING_SUFFIX,
                                    dir=parent))
    except OSError as e:
        raise OutputError(f"cannot create a temporary folder ({one_line(e)})", parent) from None
    try:
        audio_name = "album" + ext
        _write_album_audio(res.album, res.sample_rate, tmp / audio_name, container, subtype)
        files = track_filenames([t.title for t in res.tracks], ext)
        _cut_tracks(tmp / audio_name, res.layout, [tmp / f for f in files], container, subtype)
        ddp_doc = None
        if ddp:
            from automaster.album.ddp import write_album_ddp

            try:
                ddp_doc = write_album_ddp(tmp / DDP_FOLDER, res.album, res.sample_rate,
                                          cd_layout(res), tmp / audio_name, subtype)
            except ValueError as e:
                raise OutputError(f"DDP image not written: {one_line(e)}", out_dir) from None
        cue = cue_sheet(audio_name, res.sample_rate,
                        [CueTrack(t.title, p.cut, p.pregap, t.spec.performer, t.spec.isrc)
                         for t, p in zip(res.tracks, res.layout.tracks)],
                        title=res.playlist.title, performer=res.playlist.performer,
                        catalog=res.playlist.catalog)
        (tmp / "album.cue").write_text(cue, encoding="utf-8")
        doc = album_document(res, files, audio_name)
        doc["album"]["format"] = f"{container}/{subtype}"
        if ddp_doc is not None:
            doc["ddp"] = ddp_doc
        (tmp / "album.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n",
                                        encoding="utf-8")
        draw_album(doc, str(tmp / "album.png"))
        _move_into_place(tmp, out_dir, force)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write the album ({one_line(e)})", out_dir) from None
        raise
    return doc


def _write_album_audio(album: np.ndarray, sr: int, path: Path, container: str,
                       subtype: str) -> None:
    import soundfile as sf

    from automaster.io import DITHER_SEED, quantize, sf_path

    bits = {"PCM_16": 16, "PCM_24": 24}.get(subtype)
    rng = np.random.default_rng(DITHER_SEED)
    with sf.SoundFile(sf_path(path), "w", samplerate=sr, channels=album.shape[0], format=container,
                      subtype=subtype) as f:
        for s in range(0, album.shape[1], BLOCK):
            block = album[:, s:s + BLOCK]
            if bits is None:
                f.write(np.ascontiguousarray(block.T, dtype=np.float32))
            else:
                q = quantize(block, bits, rng)
                if bits == 24:
                    q = q << 8  # libsndfile keeps the top 24 bits of int32 data
                f.write(np.ascontiguousarray(q.T))


def _cut_tracks(album_path: Path, layout: Any, paths: list[Path], container: str,
                subtype: str) -> None:
    """Copy each track's span of the written album file, sample for sample."""
    import soundfile as sf

    from automaster.io import sf_path

    dtype = "float32" if subtype == "FLOAT" else ("int16" if subtype == "PCM_16" else "int32")
    with sf.SoundFile(sf_path(album_path)) as src:
        for p, path in zip(layout.tracks, paths):
            src.seek(p.cut)
            with sf.SoundFile(sf_path(path), "w", samplerate=src.samplerate, channels=src.channels,
                              format="WAV" if container == "RF64" else container,
                              subtype=subtype) as dst:
                left = p.end - p.cut
                while left > 0:
                    data = src.read(min(BLOCK, left), dtype=dtype, always_2d=True)
                    if data.shape[0] == 0:
                        raise OSError("the album file ended early")
                    dst.write(data)
                    left -= data.shape[0]


def _move_into_place(tmp: Path, out_dir: Path, force: bool) -> None:
    mask = os.umask(0)
    os.umask(mask)
    for p in tmp.iterdir():
        if p.is_dir():  # DDP/
            os.chmod(p, 0o777 & ~mask)
            for q in p.iterdir():
                os.chmod(q, 0o666 & ~mask)
        else:
            os.chmod(p, 0o666 & ~mask)
    if not out_dir.exists():
        os.chmod(tmp, 0o777 & ~mask)
        os.rename(tmp, out_dir)  # atomic: the folder appears complete
        return
    if (tmp / DDP_FOLDER).exists() and foreign_ddp(out_dir):
        raise OutputError(f"holds a {DDP_FOLDER!r} that is not an album DDP image; move it "
                          f"away", out_dir)
    clash = existing_outputs(out_dir)
    if clash and not force:
        raise OutputError(f"already holds album files ({', '.join(clash[:3])}"
                          f"{', ...' if len(clash) > 3 else ''}); use --force to replace them",
                          out_dir)
    for name in clash:  # --force: the old album's files go, so no stale track is left
        if name == DDP_FOLDER:
            shutil.rmtree(out_dir / name)
        else:
            (out_dir / name).unlink(missing_ok=True)
    for p in sorted(tmp.iterdir()):
        os.replace(p, out_dir / p.name)
    tmp.rmdir()
