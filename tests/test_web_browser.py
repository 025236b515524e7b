"""End to end in a real headless browser: ``automaster serve`` in its own process, the page
driven by Playwright in Debian's Chromium (never a downloaded browser build): upload an
8 s excerpt, wait for the master, A/B, edit one setting and see the master re-rendered,
download it and measure its loudness with pyloudnorm.

The screenshot after the first master goes to the test's temporary folder; with
AUTOMASTER_UPDATE_SCREENSHOT=1 also to automaster/web/static/screenshot.png (the README's).
Skips, with the reason, only where Playwright or a Chromium executable is missing
(CI installs both: .ci/env.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "automaster" / "examples" / "example.ogg"
SCREENSHOT = ROOT / "automaster" / "web" / "static" / "screenshot.png"
RENDER_TIMEOUT_MS = 900_000  # a loaded 2-core machine; a quiet one takes seconds


def _chromium() -> str | None:
    for c in (os.environ.get("AUTOMASTER_CHROMIUM"), "/usr/bin/chromium",
              "/usr/bin/chromium-browser", shutil.which("chromium")):
        if c and os.access(c, os.X_OK):
            return c
    return None


pytest.importorskip("starlette", reason="the web extra is not installed (pip install 'automaster[web]')")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install playwright)")
CHROMIUM = _chromium()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium executable (apt-get "
                                 "install chromium, or set AUTOMASTER_CHROMIUM)")]


@pytest.fixture(scope="module")
def server():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.Popen([sys.executable, "-m", "automaster", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=str(ROOT))
    try:
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/\?token=\S+)", line)
        assert m, f"no address printed: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        yield m.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()


def test_page_masters_compares_edits_and_downloads(server, tmp_path):
    import pyloudnorm

    x, sr = sf.read(str(EXAMPLE), dtype="float32", always_2d=True)
    mix = tmp_path / "my mix.wav"
    sf.write(str(mix), x[8 * sr:16 * sr], sr, subtype="PCM_16")

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--autoplay-policy=no-user-gesture-required", "--no-sandbox"])
        try:
            # bypass_csp: Playwright's wait_for_function evaluates strings, which the app's
            # Content-Security-Policy (script-src 'self') forbids, as it should
            page = browser.new_page(viewport={"width": 1100, "height": 1250}, bypass_csp=True,
                                    accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server)
            page.wait_for_function("document.querySelectorAll('#platform option').length > 5")
            page.set_input_files("#files", str(mix))
            page.click("#start")
            page.wait_for_function("['done', 'failed'].includes(document.body.dataset.status)",
                                   timeout=RENDER_TIMEOUT_MS)
            assert page.text_content("#error").strip() == ""
            assert page.evaluate("document.body.dataset.status") == "done"
            page.wait_for_function("window.automaster.buf.B !== null && window.automaster.buf.A !== null",
                                   timeout=120_000)

            # A/B: both play from the same position, loudness-matched by the measured LUFS
            page.click("#play")
            assert page.evaluate("window.automaster.hearing") == "B"
            page.click("#ab")
            assert page.evaluate("window.automaster.hearing") == "A"
            assert page.get_attribute("#ab", "aria-pressed") == "false"
            state = page.evaluate("({g: window.automaster.gains, l: window.automaster.lufs,"
                                  " n: window.automaster.nodes.src.length})")
            assert state["n"] == 2
            la, lb = state["l"]["A"], state["l"]["B"]
            ga, gb = state["g"]["A"], state["g"]["B"]
            assert max(ga, gb) == pytest.approx(1.0)
            import math

            assert la + 20 * math.log10(ga) == pytest.approx(lb + 20 * math.log10(gb), abs=1e-6)
            page.click("#play")  # pause
            SCREENSHOT_TMP = tmp_path / "screenshot.png"
            page.screenshot(path=str(SCREENSHOT_TMP), full_page=False)
            if os.environ.get("AUTOMASTER_UPDATE_SCREENSHOT"):  # 128 colours: a small PNG
                from PIL import Image

                with Image.open(SCREENSHOT_TMP) as im:
                    im.convert("RGB").quantize(128).save(SCREENSHOT, optimize=True)

            # edit one setting: the low shelf to +3 dB -> re-rendered through --params-in
            slider = page.locator("input[data-param='eq.low_shelf.gain_db']")
            slider.evaluate("(e) => { e.value = String((3 + 6) / 12); "
                            "e.dispatchEvent(new Event('input')); e.dispatchEvent(new Event('change')); }")
            page.wait_for_function("document.body.dataset.version === '2' && "
                                   "document.body.dataset.status === 'done'",
                                   timeout=RENDER_TIMEOUT_MS)
            tone = page.text_content("[data-group='Tone'] ul")
            assert "Low shelf +3.0 dB" in tone, tone
            assert page.input_value("input[data-param='eq.low_shelf.gain_db']") == "0.75"

            # download the master
            with page.expect_download() as dl:
                page.click("#download-master")
            path = tmp_path / "downloaded.wav"
            dl.value.save_as(str(path))
            assert dl.value.suggested_filename == "my mix (master).wav"
            assert errors == []
        finally:
            browser.close()
    y, ysr = sf.read(str(path), dtype="float64", always_2d=True)
    assert y.shape[0] == 8 * sr
    measured = pyloudnorm.Meter(ysr).integrated_loudness(y)
    assert abs(measured - (-14.0)) <= 0.5, measured


def test_page_album_ddp_download(server, tmp_path):
    """Album on the page: two tracks, then the DDP button renders the album again with
    --ddp and downloads the zipped DDP 2.00 fileset, which reads back with two tracks."""
    import zipfile

    from automaster.album.ddp import read_ddp

    x, sr = sf.read(str(EXAMPLE), dtype="float32", always_2d=True)
    paths = []
    for k, start in enumerate((2, 12)):
        p = tmp_path / f"side {k + 1}.wav"
        sf.write(str(p), x[start * sr:(start + 6) * sr], sr, subtype="PCM_16")
        paths.append(str(p))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(bypass_csp=True, accept_downloads=True)
            page.set_default_timeout(180_000)   # a loaded 2-core machine (the whole suite)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server)
            page.wait_for_function("document.querySelectorAll('#platform option').length > 5")
            page.set_input_files("#files", paths)
            page.check("#album")
            page.click("#start")
            page.wait_for_function("['done', 'failed'].includes(document.body.dataset.status)",
                                   timeout=RENDER_TIMEOUT_MS)
            assert page.text_content("#error").strip() == ""
            with page.expect_download(timeout=RENDER_TIMEOUT_MS) as dl:
                page.click("#download-ddp")
            zpath = tmp_path / "ddp.zip"
            dl.value.save_as(str(zpath))
            assert dl.value.suggested_filename.endswith(".zip")
            assert errors == []
        finally:
            browser.close()
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(tmp_path / "x")
    assert len(read_ddp(tmp_path / "x" / "DDP").tracks) == 2
