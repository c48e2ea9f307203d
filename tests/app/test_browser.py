"""``videoseg-o3 app`` in a real headless browser: Debian's Chromium driven by Playwright.

The app runs as the real command in a subprocess on a free loopback port. The tests upload a
generated video, type a query, press Segment and read the page the way a visitor would; the turn
cards are checked against the ``turns.json`` the page offers for download, the keyframe
thumbnails against frames decoded straight from the uploaded file with PyAV, and the overlay
against what the browser itself could decode. Playwright's own browser download is not used:
``scripts/install.sh`` installs Debian's ``chromium`` (skipped only when the install was told not
to touch system packages, ``VIDEOSEG_SYSTEM_PACKAGES=0``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tolerances import TOL

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# Headless and offline: no GPU, no QUIC, no first-run, update, sync or background traffic.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
START_TIMEOUT_S = 240  # import torch + transformers + gradio, load the checkpoint, render one example
RUN_TIMEOUT_MS = 240_000  # one request on a shared 2-core machine


def _require_browser_stack() -> None:
    missing = []
    for module in ("gradio", "playwright"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the Python package {module}")
    if not CHROMIUM.exists():
        if os.environ.get("VIDEOSEG_SYSTEM_PACKAGES") == "0" and not missing:
            pytest.skip(f"{CHROMIUM} is absent and VIDEOSEG_SYSTEM_PACKAGES=0 told the install not to add it (apt-get install chromium)")
        missing.append(f"Debian's chromium ({CHROMIUM})")
    if missing:
        pytest.fail(f"browser tests need {', '.join(missing)}: run `bash scripts/install.sh` (as root for chromium)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AppServer:
    process: subprocess.Popen
    port: int
    url: str = ""
    workdir: Path | None = None
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "".join(self.lines[-60:])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def server(app_ckpt: Path):
    _require_browser_stack()
    port = _free_port()
    command = [sys.executable, "-m", "videoseg_o3", "app", "--ckpt", str(app_ckpt), "--port", str(port),
               "--device", "cpu", "--examples", "1", "--max-frames", "64"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    app = AppServer(process, port)
    ready = threading.Event()

    def pump() -> None:
        for line in process.stdout:
            app.lines.append(line)
            found = re.search(r"serving (http://\S+) \(uploads and outputs in (\S+),", line)
            if found:
                app.url, app.workdir = found.group(1), Path(found.group(2))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(START_TIMEOUT_S) or not app.url:
        app.stop()
        pytest.fail(f"the app did not start (exit code {process.poll()}):\n{app.log()}")
    yield app
    app.stop()


@pytest.fixture(scope="module")
def browser():
    _require_browser_stack()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="videoseg-o3-chromium-") as profile, sync_playwright() as pw:
        # launch_persistent_context owns --user-data-dir (a fresh profile per test module).
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


class Page:
    """A page of the app with every host it contacted recorded."""

    def __init__(self, browser, server: AppServer) -> None:
        self.page = browser.new_page()
        self.hosts: set[str] = set()
        self.page.on("request", self._record)
        self.page.goto(server.url)
        self.page.wait_for_selector("#segment", timeout=60_000)

    def _record(self, request) -> None:
        found = re.match(r"^(?:https?|wss?)://([^/]+)", request.url)
        if found:
            self.hosts.add(found.group(1))

    def upload(self, path: Path) -> None:
        with self.page.expect_response(lambda r: "/upload" in r.url and r.request.method == "POST", timeout=60_000):
            self.page.locator("#video-input input[type=file]").set_input_files(str(path))

    def watch_progress(self) -> None:
        """Record whether the propagation progress bar ever shows on the overlay panel (it may be
        up for only a second, so a MutationObserver watches instead of a poll)."""
        self.page.evaluate(
            "() => { window.sawProgress = false; new MutationObserver(() => {"
            " const o = document.querySelector('#overlay');"
            " if (o && o.innerText.includes('Propagating the mask')) window.sawProgress = true;"
            " }).observe(document.body, {subtree: true, childList: true, characterData: true}); }"
        )

    def segment(self, query: str, scripted: list[str] | None = None) -> None:
        self.page.locator("#query textarea").fill(query)
        if scripted:
            self.page.get_by_text("Replay a reasoning path").click()
            self.page.locator("#scripted textarea").fill("\n".join(scripted))
        self.page.locator("#segment").click()

    def wait_for_outputs(self) -> None:
        """Until the browser has decoded the overlay's first frame and both downloads are listed."""
        self.page.wait_for_function(
            "() => { const v = document.querySelector('#overlay video');"
            " return v !== null && v.readyState >= 1 && v.videoWidth > 0; }",
            timeout=RUN_TIMEOUT_MS,
        )
        self.page.wait_for_function("() => document.querySelectorAll('#downloads a[href]').length >= 2", timeout=60_000)

    def download(self, name: str) -> bytes:
        links = self.page.locator("#downloads a[href]")
        hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
        (href,) = [h for h in hrefs if h.split("?")[0].endswith("/" + name)]
        response = self.page.request.get(href if href.startswith("http") else self.page.url.rstrip("/") + href)
        assert response.ok, f"{name}: HTTP {response.status}"
        return response.body()


def _frames_with_pyav(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _png_from_data_uri(uri: str) -> np.ndarray:
    from PIL import Image

    assert uri.startswith("data:image/png;base64,"), uri[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_upload_query_segment_shows_each_turn_then_overlay_and_downloads(server, browser, clip, tmp_path: Path) -> None:
    """The whole visit, with the clip's ground-truth reasoning path replayed (teacher forcing) so
    the cards hold real select/answer turns. Guards: one card per turn in turns.json with its
    action, interval (text and timeline band at s/N..(e+1)/N of the width), keyframe thumbnail
    (the uploaded video's own frame), thinking (the turn's <think> block); an overlay the browser
    can play; a progress bar during propagation; downloads whose masks agree with the summary; no
    request leaves the machine."""
    visit = Page(browser, server)
    page = visit.page
    visit.upload(clip.path)
    visit.watch_progress()
    visit.segment(clip.query, clip.turns)
    visit.wait_for_outputs()
    assert page.evaluate("() => window.sawProgress"), "no propagation progress bar was shown"

    record = json.loads(visit.download("turns.json"))
    n = clip.num_frames
    assert record["query"] == clip.query and record["scripted_turns"] is True and record["num_frames"] == n
    assert [t["text"] for t in record["turns"]] == clip.turns
    cards = page.locator("#turn-cards .vso3-card")
    assert cards.count() == len(record["turns"]) == len(clip.turns)
    frames = _frames_with_pyav(clip.path)
    assert len(frames) == n
    for i, turn in enumerate(record["turns"]):
        card = cards.nth(i)
        assert card.get_attribute("data-action") == turn["action"] == ("answer" if i == n_last(record) else "select")
        text = card.inner_text()
        start, end = turn["interval"]
        assert f"Turn {i + 1}" in text and f"frames {start} to {end}" in text and f"keyframe {turn['keyframe']}" in text
        band = card.locator(".tl-interval")
        assert float(band.get_attribute("x")) == pytest.approx(start * 1000 / n)
        assert float(band.get_attribute("width")) == pytest.approx((end - start + 1) * 1000 / n)
        assert int(card.locator(".tl-keyframe").get_attribute("data-frame")) == turn["keyframe"]
        thinking = card.locator(".vso3-think").inner_text()
        assert thinking.startswith("Step 1:") and f"<think>{thinking}</think>" in turn["text"]
        thumb = card.locator("img.vso3-thumb")
        assert thumb.evaluate("img => img.complete && img.naturalWidth") == clip.width
        atol, _ = TOL["app_thumbnail_vs_pyav_u8"]
        shown = _png_from_data_uri(thumb.get_attribute("src")).astype(int)
        assert np.abs(shown - frames[turn["keyframe"]].astype(int)).max() <= atol

    status = page.locator("#status").inner_text()
    assert f"SAM2 conditioned on frame {record['anchor_frame']}" in status
    assert f"{record['foreground_frames']}/{n} frames with foreground" in status
    assert page.evaluate("() => document.querySelector('#overlay video').videoWidth") == clip.width

    from PIL import Image

    with zipfile.ZipFile(io.BytesIO(visit.download("masks.zip"))) as archive:
        names = sorted(archive.namelist())
        masks = np.stack([np.asarray(Image.open(io.BytesIO(archive.read(name)))) for name in names])
    assert names == [f"masks/{i:05d}.png" for i in range(n)] and masks.shape == (n, clip.height, clip.width)
    assert int((masks > 0).reshape(n, -1).any(1).sum()) == record["foreground_frames"] > 0

    assert visit.hosts == {f"127.0.0.1:{server.port}"}, f"requests left the machine: {visit.hosts}"
    shot = Path(os.environ.get("VIDEOSEG_APP_SCREENSHOT") or tmp_path / "app.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.close()


def n_last(record: dict) -> int:
    return len(record["turns"]) - 1


def test_model_choosing_its_own_turn_shows_the_invalid_turn_and_its_reason(server, browser, clip) -> None:
    """A random checkpoint writes no protocol turn: the page shows that turn as invalid with the
    parser's reason (as in turns.json) and says why there is no mask, instead of failing."""
    visit = Page(browser, server)
    visit.upload(clip.path)
    visit.segment(clip.query)
    visit.wait_for_outputs()
    record = json.loads(visit.download("turns.json"))
    assert record["scripted_turns"] is False and record["error"]
    cards = visit.page.locator("#turn-cards .vso3-card")
    assert cards.count() == len(record["turns"]) >= 1
    last = record["turns"][-1]
    card = cards.nth(len(record["turns"]) - 1)
    assert card.get_attribute("data-action") == last["action"] == "invalid"
    assert card.locator(".vso3-reason").inner_text() == last["error"]
    assert "No mask:" in visit.page.locator("#status").inner_text()
    visit.page.close()


def test_picking_an_example_fills_video_query_and_reasoning_path(server, browser) -> None:
    visit = Page(browser, server)
    example = visit.page.get_by_text(re.compile(r"^test_00000: "))
    query = example.inner_text().split(": ", 1)[1]
    example.click()
    visit.page.wait_for_function(
        "q => document.querySelector('#query textarea').value === q", arg=query, timeout=60_000)
    visit.page.wait_for_selector("#video-input video", timeout=60_000)
    visit.page.get_by_text("Replay a reasoning path").click()
    scripted = visit.page.locator("#scripted textarea").input_value().splitlines()
    assert scripted and all(turn.startswith("<think>") for turn in scripted)
    assert scripted[-1].endswith("</answer>")
    visit.page.close()


def test_empty_query_gets_a_message_not_a_trace(server, browser) -> None:
    visit = Page(browser, server)
    visit.page.locator("#segment").click()
    message = visit.page.locator("#status .vso3-message.error")
    message.wait_for(timeout=60_000)
    text = message.inner_text()
    assert "The query is empty. Type a question" in text and "No video. Upload a video file" in text
    assert "Traceback" not in visit.page.content()
    visit.page.close()


def test_a_file_that_is_not_a_video_gets_a_message(server, browser, tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are notes, not a video")
    visit = Page(browser, server)
    visit.upload(fake)
    visit.segment("the red circle")
    message = visit.page.locator("#status .vso3-message.error")
    message.wait_for(timeout=60_000)
    assert "'notes.mp4' could not be read as a video" in message.inner_text()
    assert "Traceback" not in visit.page.content()
    visit.page.close()


def test_stopping_the_app_removes_uploads_and_outputs(server) -> None:
    """Runs last in this module. Guards: SIGTERM stops the server cleanly and the temporary folder
    holding every upload and output is gone; the model was loaded once for all the requests above."""
    assert server.workdir is not None and server.workdir.is_dir()
    assert any((server.workdir / "runs").iterdir()), "the requests above should have written outputs"
    assert server.stop() == 0, server.log()
    assert not server.workdir.exists()
    deadline = time.time() + 5
    while "stopped; temporary files removed" not in "".join(server.lines) and time.time() < deadline:
        time.sleep(0.1)
    log = "".join(server.lines)
    assert log.count("videoseg-o3 app: loading") == 1 and "stopped; temporary files removed" in log
