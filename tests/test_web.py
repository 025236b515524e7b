"""The web app's HTTP API (automaster/web/) through Starlette's in-process TestClient.

Every render is the real CLI in a worker process, on an 8 s excerpt of the bundled
example. Independent references: pyloudnorm for the downloaded master's loudness; the
CLI run directly (``automaster.cli.main``) for the error messages a failed job shows.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("starlette", reason="the web extra is not installed (pip install 'automaster[web]')")
pytest.importorskip("python_multipart", reason="the web extra is not installed")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from starlette.testclient import TestClient  # noqa: E402

from automaster.web.app import cli_options, create_app  # noqa: E402
from automaster.web.jobs import JobManager  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "automaster" / "examples" / "example.ogg"
TOKEN = "test-token-123"
BASE = "http://127.0.0.1:8765"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RENDER_TIMEOUT_S = 900  # a loaded 2-core machine; a quiet one takes a few seconds


def lufs(path_or_bytes) -> float:
    import pyloudnorm

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    x, sr = sf.read(src, dtype="float64", always_2d=True)
    return pyloudnorm.Meter(sr).integrated_loudness(x)


@pytest.fixture(scope="module")
def excerpt(tmp_path_factory) -> Path:
    x, sr = sf.read(str(EXAMPLE), dtype="float32", always_2d=True)
    path = tmp_path_factory.mktemp("web") / "excerpt.wav"
    sf.write(str(path), x[8 * sr:16 * sr], sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def client():
    app = create_app(token=TOKEN, host="127.0.0.1", port=8765, max_upload_bytes=8 << 20,
                     max_running=2, ttl_s=3600)
    with TestClient(app, base_url=BASE) as c:
        c.manager = app.jobs
        yield c
    assert not app.jobs.root.exists(), "shutdown must remove every job's files"


def wait(client, jid: str, version: int = 1) -> dict:
    deadline = time.monotonic() + RENDER_TIMEOUT_S
    while time.monotonic() < deadline:
        st = client.get(f"/api/jobs/{jid}", headers=AUTH).json()
        if st["version"] >= version and st["status"] in ("done", "failed"):
            return st
        time.sleep(0.2)
    raise AssertionError(f"job {jid} did not finish: {st}")


def upload(client, name: str, data: bytes, **fields) -> str:
    r = client.post("/api/jobs", headers=AUTH, files=[("file", (name, data, "audio/wav"))],
                    data={k: str(v) for k, v in fields.items()})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def cli_error(tmp_path: Path, name: str, data: bytes, *args: str) -> str:
    """The one-line error of the CLI itself on the same input, with its path shown as the
    uploaded name (as the web app shows it)."""
    import contextlib

    from automaster.cli import main

    src = tmp_path / name
    src.write_bytes(data)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([str(src), "-o", str(tmp_path / "out.wav"), *args])
    assert code == 2
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("automaster: error: ")]
    assert len(lines) == 1, err.getvalue()
    return lines[0][len("automaster: error: "):].replace(str(src), name)


# ---------------------------------------------------------------------------- master
def test_upload_master_download_and_edit(client, excerpt):
    jid = upload(client, "My Song (final).wav", excerpt.read_bytes(), target=-16)
    st = wait(client, jid)
    assert st["status"] == "done", st["error"]
    assert st["kind"] == "single" and st["progress"] == 1.0
    report = st["report"]
    assert report["target_lufs"] == -16.0
    assert set(report["settings_in_words"]) == {"Tone", "Dynamics", "Color", "Stereo", "Loudness"}
    r = client.get(f"/api/jobs/{jid}/master", headers=AUTH, params={"download": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    from urllib.parse import unquote

    assert unquote(r.headers["content-disposition"]).endswith("My Song (final) (master).wav")
    measured = lufs(r.content)
    assert abs(measured - (-16.0)) <= 0.5, measured
    info = sf.info(io.BytesIO(r.content))
    assert info.subtype == "PCM_24" and info.duration == pytest.approx(8.0, abs=1e-3)
    original = client.get(f"/api/jobs/{jid}/original", headers=AUTH)
    assert original.content == excerpt.read_bytes()
    doc = client.get(f"/api/jobs/{jid}/file/settings.json", headers=AUTH).json()
    assert doc["settings"] == st["settings"]

    # edit one setting: the same --params-in path as the CLI, FLAC 16-bit this time
    edited = dict(st["settings"], **{"eq.low_shelf.gain_db": 3.0})
    r = client.post(f"/api/jobs/{jid}/settings", headers=AUTH,
                    json={"settings": edited, "format": "flac", "bit_depth": "16"})
    assert r.status_code == 200, r.text
    st2 = wait(client, jid, version=2)
    assert st2["status"] == "done", st2["error"]
    assert st2["settings"]["eq.low_shelf.gain_db"] == pytest.approx(3.0)
    assert st2["report"]["source"] == "params-in"
    assert any(line.startswith("Low shelf +3.0 dB")
               for line in st2["report"]["settings_in_words"]["Tone"])
    r = client.get(f"/api/jobs/{jid}/master", headers=AUTH)
    assert r.headers["content-type"] == "audio/flac"
    assert sf.info(io.BytesIO(r.content)).subtype == "PCM_16"
    assert abs(lufs(r.content) - (-16.0)) <= 0.5
    # the first render's folder is gone, the job's folder holds only its own files
    job_dir = client.manager.root / jid
    assert sorted(p.name for p in job_dir.iterdir()) == ["in", "out2"]

    r = client.delete(f"/api/jobs/{jid}", headers=AUTH)
    assert r.status_code == 200 and not job_dir.exists()
    assert client.get(f"/api/jobs/{jid}", headers=AUTH).status_code == 404


# ---------------------------------------------------------------------------- errors
def test_corrupt_upload_fails_with_the_cli_message(client, tmp_path):
    data = b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200)
    jid = upload(client, "broken.wav", data)
    st = wait(client, jid)
    assert st["status"] == "failed"
    assert st["error"] == cli_error(tmp_path, "broken.wav", data)
    assert "broken.wav" in st["error"] and str(client.manager.root) not in st["error"]
    assert client.get(f"/api/jobs/{jid}/master", headers=AUTH).status_code == 404


def test_too_short_and_bad_option_fail_with_the_cli_message(client, tmp_path):
    buf = io.BytesIO()
    sf.write(buf, np.zeros((4410, 2), np.float32) + 0.1, 44100, format="WAV", subtype="PCM_16")
    short = buf.getvalue()
    st = wait(client, upload(client, "short.wav", short))
    assert st["status"] == "failed" and "too short" in st["error"]
    assert st["error"] == cli_error(tmp_path, "short.wav", short)
    st = wait(client, upload(client, "short.wav", short, target=5))
    assert st["status"] == "failed"
    assert st["error"] == cli_error(tmp_path, "short.wav", short, "--target", "5")
    # the server keeps running
    assert client.get("/api/platforms", headers=AUTH).status_code == 200


def test_bad_requests_get_readable_errors(client):
    r = client.post("/api/jobs", headers=AUTH, data={"target": "-14"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]
    r = client.post("/api/jobs", headers=AUTH, files=[("file", ("a.wav", b"x", "audio/wav"))],
                    data={"format": "mp4"})
    assert r.status_code == 400 and "format" in r.json()["error"]
    r = client.post("/api/jobs", headers=AUTH, files=[("evil", ("a.wav", b"x", "audio/wav"))])
    assert r.status_code == 400 and "unexpected file field" in r.json()["error"]
    assert client.get("/api/jobs/nope", headers=AUTH).status_code == 404
    assert client.get("/api/jobs/nope/master", headers=AUTH).status_code == 404
    assert client.manager.jobs.keys() <= {p.name for p in client.manager.root.iterdir()}


# ---------------------------------------------------------------------------- safety
def test_token_and_host_are_required(client):
    assert client.get("/api/platforms").status_code == 403
    assert client.get("/api/platforms", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/api/platforms", params={"token": "wrong"}).status_code == 403
    assert client.get("/api/platforms", params={"token": TOKEN}).status_code == 200
    assert client.get("/static/app.js").status_code == 403
    r = client.post("/api/jobs", files=[("file", ("a.wav", b"x", "audio/wav"))])
    assert r.status_code == 403
    # DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own Host
    r = client.get("/api/platforms", headers={**AUTH, "Host": "evil.example:8765"})
    assert r.status_code == 400
    r = client.get("/api/platforms", headers={**AUTH, "Host": "127.0.0.1:9999"})
    assert r.status_code == 400
    assert client.get("/api/platforms", headers={**AUTH, "Host": "localhost:8765"}).status_code == 200
    # the page opened with ?token= sets a strict, HttpOnly cookie that later requests carry
    page = client.get("/", params={"token": TOKEN})
    assert page.status_code == 200 and "<script src=\"/static/app.js\">" in page.text
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    client.cookies.set("automaster_token", TOKEN)
    r = client.get("/static/app.js")
    assert r.status_code == 200
    client.cookies.clear()


def test_oversized_upload_is_refused_and_leaves_nothing(client):
    before = set(client.manager.root.iterdir())
    big = b"\0" * (9 << 20)  # the client fixture's limit is 8 MB
    r = client.post("/api/jobs", headers=AUTH, files=[("file", ("big.wav", big, "audio/wav"))])
    assert r.status_code == 413 and "too large" in r.json()["error"]

    # without Content-Length (chunked): stopped while streaming
    def chunks():
        boundary = b"b0undary"
        yield b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"file\"; " \
            b"filename=\"big.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        for _ in range(10):
            yield b"\0" * (1 << 20)
        yield b"\r\n--" + boundary + b"--\r\n"

    r = client.post("/api/jobs", headers={**AUTH, "Content-Type": "multipart/form-data; boundary=b0undary"},
                    content=chunks())
    assert r.status_code == 413
    assert set(client.manager.root.iterdir()) == before


@pytest.mark.parametrize("name", ["../../../../tmp/evil.wav", "..\\..\\evil.wav", "/etc/passwd",
                                  "a/../../b.wav", "..", "\x00\n.wav"])
def test_traversal_file_names_are_harmless(client, name, tmp_path):
    parent = client.manager.root.parent
    before = set(parent.iterdir())
    jid = upload(client, name, b"not audio at all")
    job = client.manager.get(jid)
    assert [p.name for p in (job.dir / "in").iterdir()] == [job.inputs[0].path.name]
    assert job.inputs[0].path.name in ("01.wav", "01.audio")
    assert "/" not in job.inputs[0].name and "\\" not in job.inputs[0].name
    st = wait(client, jid)
    assert st["status"] == "failed" and "not a readable audio file" in st["error"]
    assert set(parent.iterdir()) == before
    assert not Path("/tmp/evil.wav").exists() and not (parent / "evil.wav").exists()
    client.delete(f"/api/jobs/{jid}", headers=AUTH)


def test_private_folders_and_ttl(tmp_path):
    m = JobManager(max_running=1, ttl_s=60, root=tmp_path)
    try:
        assert (m.root.stat().st_mode & 0o777) == 0o700
        job = m.new_job()
        assert (job.dir.stat().st_mode & 0o777) == 0o700
        assert m.reap(now=time.monotonic() + 30) == []
        job.status = "done"
        assert m.reap(now=time.monotonic() + 61) == [job.id]
        assert not job.dir.exists()
    finally:
        m.close()
    assert not m.root.exists()


# ---------------------------------------------------------------------------- command lines
def test_form_fields_become_the_cli_options(tmp_path):
    m = JobManager(max_running=1, root=tmp_path)
    try:
        job = m.new_job()
        job.inputs = [type("I", (), {"path": job.dir / "in" / "01.wav", "name": "a.wav"})()]
        m.set_options(job, {"platform": "apple-music", "ceiling": "-2", "intensity": "0.5",
                            "restore": "off", "format": "flac", "bit_depth": "16"})
        out = job.dir / "out1"
        out.mkdir()
        argv = m.command(job, out)
        assert argv[1:3] == ["-m", "automaster"]
        joined = " ".join(argv[3:])
        for part in ("--platform apple-music", "--ceiling -2.0", "--intensity 0.5",
                     "--restore off", "--bit-depth 16", "--report", "--params-out"):
            assert part in joined, joined
        assert argv[argv.index("-o") + 1].endswith("master.flac")
        # album=1 -> the album subcommand with a playlist in the chosen order
        job.inputs.append(type("I", (), {"path": job.dir / "in" / "02.wav", "name": "b.wav"})())
        m.set_options(job, {"album": "1", "crossfade": "3", "fade_out": "1", "sequence": "auto"})
        argv = m.command(job, out)
        assert argv[3] == "album" and "--crossfade" in argv and "--gap" not in argv
        assert argv[argv.index("--sequence") + 1] == "auto"
        assert "--codec-safe" not in argv
        m.set_options(job, {"album": "1", "codec_safe": "1"})  # the album takes it too
        assert "--codec-safe" in m.command(job, out)
        playlist = json.loads((out / "playlist.json").read_text())
        assert [t["title"] for t in playlist["tracks"]] == ["a", "b"]
        # lossy outputs carry no bit depth; --codec-safe only for lossless ones (a lossy
        # output is always checked after decoding); --denoise reaches the CLI
        job.inputs = job.inputs[:1]
        m.set_options(job, {"format": "opus", "codec_safe": "1", "denoise": "0.5", "bit_depth": "16"})
        argv = m.command(job, out)
        assert argv[argv.index("-o") + 1].endswith("master.opus")
        assert "--bit-depth" not in argv and "--codec-safe" not in argv
        assert argv[argv.index("--denoise") + 1] == "0.5"
        m.set_options(job, {"format": "wav", "codec_safe": "on"})
        assert "--codec-safe" in m.command(job, out)
        with pytest.raises(ValueError, match="denoise"):
            m.set_options(job, {"denoise": "2"})
        with pytest.raises(ValueError):
            m.set_options(job, {"restore": "maybe"})
        with pytest.raises(ValueError):
            m.set_options(job, {"target": "loud"})
    finally:
        m.close()


def test_page_controls_denoise_and_codec_safe_are_accepted(client, excerpt):
    """The page sends denoise and codec_safe as form fields (app.js formData): the upload
    must take them (it refused the whole job with "unknown field 'denoise'")."""
    r = client.post("/api/jobs", headers=AUTH,
                    files=[("file", ("a.wav", excerpt.read_bytes(), "audio/wav"))],
                    data={"denoise": "0.5", "codec_safe": "1"})
    assert r.status_code == 200, r.text
    job = client.manager.get(r.json()["id"])
    assert job.options["denoise"] == "0.5" and job.options["codec_safe"] == "1"
    client.delete(f"/api/jobs/{job.id}", headers=AUTH)


def test_non_finite_settings_are_refused_and_the_job_stays_readable(client, excerpt):
    """Python's json reads NaN and 1e400 (inf): an edit holding one was accepted, the job's
    settings became NaN and every later GET /api/jobs/{id} was a 500 (Starlette's JSON
    refuses NaN), so the page could no longer show the job."""
    jid = upload(client, "a.wav", excerpt.read_bytes())
    for body in (b'{"settings": {"eq.low_shelf.gain_db": NaN}}',
                 b'{"settings": {"eq.low_shelf.gain_db": 1e400}}'):
        r = client.post(f"/api/jobs/{jid}/settings", headers=AUTH, content=body)
        assert r.status_code == 400 and "finite" in r.json()["error"], r.text
        assert client.get(f"/api/jobs/{jid}", headers=AUTH).status_code == 200
    client.delete(f"/api/jobs/{jid}", headers=AUTH)


def test_a_failed_settings_edit_shows_the_settings_of_the_master_still_served(client, excerpt):
    """An edit the CLI refuses (an unknown parameter) fails the re-render; the job used to
    show the refused settings beside the older master it still serves (QA)."""
    jid = upload(client, "a.wav", excerpt.read_bytes())
    st = wait(client, jid)
    assert st["status"] == "done", st["error"]
    r = client.post(f"/api/jobs/{jid}/settings", headers=AUTH,
                    json={"settings": dict(st["settings"], **{"eq.no_such_band.gain_db": 1.0})})
    assert r.status_code == 200, r.text
    st2 = wait(client, jid, version=2)
    assert st2["status"] == "failed" and "no_such_band" in st2["error"]
    assert st2["settings"] == st["settings"] and st2["ready"]
    client.delete(f"/api/jobs/{jid}", headers=AUTH)


def test_a_batch_with_one_unreadable_file_keeps_the_masters_it_made(client, excerpt):
    """The CLI masters the files it can and exits 2 naming the one it refused; the web job
    used to fail as a whole and throw the good masters away (QA)."""
    data = excerpt.read_bytes()
    r = client.post("/api/jobs", headers=AUTH,
                    files=[("file", ("bad.wav", b"RIFF1234WAVEjunk", "audio/wav")),
                           ("file", ("good.wav", data, "audio/wav"))])
    assert r.status_code == 200, r.text
    jid = r.json()["id"]
    st = wait(client, jid)
    assert st["status"] == "failed" and "bad.wav" in st["error"] and st["ready"], st
    assert st["report"][0] is None and st["report"][1]["after"]["integrated_lufs"] == pytest.approx(-14.0, abs=0.5)
    good = client.get(f"/api/jobs/{jid}/master", headers=AUTH, params={"track": 2})
    assert good.status_code == 200 and abs(lufs(good.content) + 14.0) <= 0.5
    assert client.get(f"/api/jobs/{jid}/master", headers=AUTH, params={"track": 1}).status_code == 404
    client.delete(f"/api/jobs/{jid}", headers=AUTH)


def test_settings_body_nested_too_deeply_is_a_400(client, excerpt):
    """JSON nested deeper than Python's parser goes raises RecursionError, which is not a
    ValueError: the settings request was a 500 instead of "the body must be JSON"."""
    jid = upload(client, "a.wav", excerpt.read_bytes())
    r = client.post(f"/api/jobs/{jid}/settings", headers=AUTH,
                    content=b"[" * 30000 + b"]" * 30000)
    assert r.status_code == 400 and "JSON" in r.json()["error"], r.text
    # and a body far larger than any settings document is cut off while it streams in
    r = client.post(f"/api/jobs/{jid}/settings", headers=AUTH, content=b" " * (1 << 20) + b"{}")
    assert r.status_code == 413 and "KiB" in r.json()["error"], r.text
    client.delete(f"/api/jobs/{jid}", headers=AUTH)


def test_album_with_a_reference_matches_it(client, tmp_path):
    """The page sends the reference whatever the mode; the album command takes --reference
    (it was refused before it did): every track is matched to it and, with no target
    given, the album gets the reference's loudness."""
    from automaster.testing import synth_mix

    files = _song_files(((-24.0, 1), (-20.0, 2)))
    buf = io.BytesIO()
    sf.write(buf, synth_mix(5.0, 44100, level_db=-17.0, seed=7).T, 44100, format="WAV", subtype="PCM_16")
    ref = buf.getvalue()
    r = client.post("/api/jobs", headers=AUTH, data={"album": "1", "gap": "1"},
                    files=files + [("reference", ("ref.wav", ref, "audio/wav"))])
    assert r.status_code == 200, r.text
    jid = r.json()["id"]
    st = wait(client, jid)
    assert st["status"] == "done", st["error"]
    doc = st["report"]
    assert doc["album"]["reference"]["file"].endswith("ref.wav")
    assert all(t["setting_source"].startswith("reference") for t in doc["tracks"])
    album = client.get(f"/api/jobs/{jid}/master", headers=AUTH)
    assert abs(lufs(album.content) - lufs(ref)) <= 0.5
    client.delete(f"/api/jobs/{jid}", headers=AUTH)


def test_album_with_codec_safe_is_accepted(client, excerpt):
    """The album command has --codec-safe now: an album job asking for it is accepted (it
    was refused with a 400 while the command had no such check), and GET /api/info lists
    the option, which is what enables the page's checkbox in album mode."""
    info = client.get("/api/info", headers=AUTH).json()
    assert "--codec-safe" in info["options"]["album"]
    data = excerpt.read_bytes()
    r = client.post("/api/jobs", headers=AUTH, data={"album": "1", "codec_safe": "1"},
                    files=[("file", ("a.wav", data, "audio/wav")), ("file", ("b.wav", data, "audio/wav"))])
    assert r.status_code == 200, r.text
    client.delete(f"/api/jobs/{r.json()['id']}", headers=AUTH)


def test_restore_reaches_the_cli(client, excerpt):
    """The page's restoration checkbox sends restore=auto|off (enabled because GET
    /api/info lists --restore); the CLI runs with it and its findings reach the report.
    (restore=off on the command line: test_form_fields_become_the_cli_options.)"""
    assert "--restore" in cli_options()["master"] and "--restore" in cli_options()["album"]
    assert "--restore" in client.get("/api/info", headers=AUTH).json()["options"]["master"]
    st = wait(client, upload(client, "r.wav", excerpt.read_bytes(), restore="auto"))
    assert st["status"] == "done", st["error"]
    restoration = st["report"]["restoration"]
    assert restoration["mode"] == "auto"
    problems = {f["problem"] for f in restoration["findings"]}
    assert {"dc", "hum", "clicks", "clipping", "polarity"} <= problems, problems
    client.delete(f"/api/jobs/{st['id']}", headers=AUTH)


def test_serve_without_the_extra_says_how_to_install(monkeypatch, capsys):
    import automaster.web.serve as serve
    from automaster.cli import main

    monkeypatch.setattr(serve, "missing_extra", lambda: "starlette")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'automaster[web]'" in err[0], err



@pytest.mark.parametrize("value", ["inf", "1e400"])
def test_serve_refuses_an_infinite_upload_limit(capsys, value):
    """--max-upload-mb inf passed the '> 0' check and crashed with OverflowError (a
    traceback) converting it to bytes, after the port was bound."""
    from automaster.cli import main

    assert main(["serve", "--max-upload-mb", value, "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-upload-mb" in err[0], err


def _song_files(levels_and_seeds) -> list:
    """Upload fields ("file", ("song K.wav", 4 s synthetic mix as 16-bit WAV, type))."""
    from automaster.testing import synth_mix

    files = []
    for k, (level, seed) in enumerate(levels_and_seeds):
        buf = io.BytesIO()
        sf.write(buf, synth_mix(4.0, 44100, level_db=level, seed=seed).T, 44100, format="WAV",
                 subtype="PCM_16")
        files.append(("file", (f"song {k + 1}.wav", buf.getvalue(), "audio/wav")))
    return files


def test_album_job_orders_and_exports(client, tmp_path):
    files = _song_files(((-24.0, 1), (-18.0, 2)))
    r = client.post("/api/jobs", headers=AUTH, files=files,
                    data={"album": "1", "gap": "1", "format": "flac", "bit_depth": "16"})
    assert r.status_code == 200, r.text
    jid = r.json()["id"]
    st = wait(client, jid)
    assert st["status"] == "done", st["error"]
    assert st["kind"] == "album"
    doc = st["report"]
    assert [t["title"] for t in doc["tracks"]] == ["song 1", "song 2"]
    album = client.get(f"/api/jobs/{jid}/master", headers=AUTH)
    assert album.headers["content-type"] == "audio/flac"
    assert abs(lufs(album.content) - (-14.0)) <= 0.5
    t2 = client.get(f"/api/jobs/{jid}/master", headers=AUTH, params={"track": 2})
    y, _ = sf.read(io.BytesIO(t2.content), always_2d=True)
    assert y.shape[0] == doc["tracks"][1]["frames"]
    assert client.get(f"/api/jobs/{jid}/master", headers=AUTH, params={"track": 3}).status_code == 404
    cue = client.get(f"/api/jobs/{jid}/file/album.cue", headers=AUTH).text
    assert 'TITLE "song 2"' in cue
    # reorder (drag and drop on the page) and re-render
    r = client.post(f"/api/jobs/{jid}/settings", headers=AUTH,
                    json={"album": {"order": [1, 0], "gap": 0.5}})
    assert r.status_code == 200, r.text
    st = wait(client, jid, version=2)
    assert st["status"] == "done", st["error"]
    assert [t["title"] for t in st["report"]["tracks"]] == ["song 2", "song 1"]
    assert [o["name"] for o in st["order"]] == ["song 2.wav", "song 1.wav"]
    orig = client.get(f"/api/jobs/{jid}/original", headers=AUTH, params={"track": 1})
    assert orig.content == files[1][1][1]
    client.delete(f"/api/jobs/{jid}", headers=AUTH)


def test_album_ddp_download(client, tmp_path):
    """The album's DDP image: the album option ddp renders with --ddp, and ddp.zip holds
    the verified DDP 2.00 fileset (read back with the project's reader)."""
    import zipfile

    from automaster.album.ddp import read_ddp
    from automaster.testing import synth_mix

    files = []
    for k, (level, seed) in enumerate(((-22.0, 3), (-19.0, 4))):
        buf = io.BytesIO()
        sf.write(buf, synth_mix(5.0, 44100, level_db=level, seed=seed).T, 44100, format="WAV",
                 subtype="PCM_16")
        files.append(("file", (f"cd {k + 1}.wav", buf.getvalue(), "audio/wav")))
    r = client.post("/api/jobs", headers=AUTH, files=files, data={"album": "1", "gap": "2"})
    jid = r.json()["id"]
    st = wait(client, jid)
    assert st["status"] == "done", st["error"]
    assert "ddp" not in st["report"]
    assert client.get(f"/api/jobs/{jid}/file/ddp.zip", headers=AUTH).status_code == 404
    r = client.post(f"/api/jobs/{jid}/settings", headers=AUTH, json={"album": {"ddp": True}})
    assert r.status_code == 200, r.text
    st = wait(client, jid, version=2)
    assert st["status"] == "done", st["error"]
    assert st["report"]["ddp"]["verified"] is True
    z = client.get(f"/api/jobs/{jid}/file/ddp.zip", headers=AUTH, params={"download": 1})
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        names = sorted(zf.namelist())
        assert {"DDP/DDPID", "DDP/DDPMS", "DDP/IMAGE.DAT", "DDP/PQDESCR"} <= set(names)
        out = tmp_path
        zf.extractall(out)
    image = read_ddp(out / "DDP")
    assert len(image.tracks) == 2
    assert client.post(f"/api/jobs/{jid}/settings", headers=AUTH,
                       json={"album": {"ddp": "maybe"}}).status_code == 400
    client.delete(f"/api/jobs/{jid}", headers=AUTH)
