"""The live page in a real headless Chromium (Debian's ``chromium``, driven by Playwright),
fed by the simulator through a real Receiver. Leaves a screenshot in ``test-artifacts/``."""

from __future__ import annotations

import re
import time

import pytest
from browsing import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, needs_chromium
from streams import wait_until

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("aiohttp")

from sunspec import Receiver, StatusBoard  # noqa: E402
from sunspec.sim import SimulatedStream, TypeIII  # noqa: E402
from sunspec.web import serve  # noqa: E402

pytestmark = needs_chromium


@pytest.fixture
def live():
    """Simulated stream in real time, 32-spectrum frames (~31 frames/s), two type III bursts."""
    bursts = [TypeIII(t0=2.0, amplitude=30.0), TypeIII(t0=7.0, amplitude=60.0, f_start_mhz=70)]
    stream = SimulatedStream(port=0, nint=32, ntime_gulp=128, bursts=bursts,
                             wait_subscribers=1, seed=7, beam=3)
    stream.start()
    board = StatusBoard()
    rx = Receiver(endpoint=stream.endpoint, buffer_length=500, product="I",
                  status_board=board).start()
    server = serve(rx, port=0, status=rx.get_buffer_status)
    board.add("web", server.status)
    try:
        yield stream, rx, server
    finally:
        server.stop()
        rx.stop()
        stream.stop()


def canvas_digest(page) -> str:
    return page.evaluate("""() => {
        const d = document.getElementById('waterfall').toDataURL();
        let h = 0;
        for (let i = 0; i < d.length; i++) h = (h * 31 + d.charCodeAt(i)) >>> 0;
        return h + ':' + d.length;
    }""")


def test_live_page_in_chromium(live):
    stream, rx, server = live
    assert wait_until(lambda: rx.get_buffer_status()["frames_held"] >= 400, 30), stream.status()
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.on("console", lambda m: m.type == "error"
                    and problems.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(server.url)
            page.wait_for_function("document.getElementById('conn').textContent === 'live'")

            # the status panel shows a frame rate near the stream's (~31/s)
            page.wait_for_function(
                "parseFloat(document.getElementById('st-rate').textContent) > 5", timeout=10000)
            rate = page.text_content("#st-rate")
            assert re.fullmatch(r"\d+\.\d\d /s", rate), rate
            assert page.text_content("#st-lost") == "0"
            assert page.text_content("#st-endpoint") == stream.endpoint
            page.wait_for_function("document.getElementById('st-viewers').textContent === '1'")
            # the header's beam number; no beam index for a one-beam frame
            assert page.text_content("#title") == "beam 3 · product I · 2 channels averaged"

            # the waterfall changes as rows arrive
            first = canvas_digest(page)
            assert wait_until(lambda: canvas_digest(page) != first, 5)

            # a hover reads out time, frequency and value
            box = page.locator("#waterfall").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.4)
            readout = page.text_content("#readout")
            assert re.search(r"\d\d:\d\d:\d\d UTC .* MHz .* dB", readout), readout
            page.mouse.move(0, 0)

            # pause freezes the picture, resume catches up
            page.click("#pause")
            assert page.text_content("#conn") == "paused"
            time.sleep(0.3)
            frozen = canvas_digest(page)
            time.sleep(0.8)
            assert canvas_digest(page) == frozen
            page.click("#pause")
            assert wait_until(lambda: canvas_digest(page) != frozen, 5)

            # colour map, linear scale and manual levels all redraw without errors
            page.select_option("#cmap", "inferno")
            page.select_option("#scale", "lin")
            page.fill("#lo", "0")
            page.fill("#hi", "5e5")
            page.press("#hi", "Enter")
            assert not page.is_checked("#auto")
            page.check("#auto")
            page.select_option("#scale", "db")
            page.select_option("#cmap", "viridis")
            time.sleep(1.5)  # let the waterfall advance past the pause and settle the levels

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser_live_view.png"))
        finally:
            browser.close()
    assert problems == []
    st = rx.get_buffer_status()
    assert st["lost"] == 0 and st["web"]["dropped_rows"] == 0


def test_a_page_opened_on_a_stopped_stream_sets_levels_and_says_stalled():
    """Only the backfill arrives (the stream has stopped): the levels come from it, the
    waterfall is not one colour, and the badge turns from "live" to "stalled"."""
    import numpy as np
    from streams import RawPublisher

    pub = RawPublisher()
    rx = Receiver(endpoint=pub.endpoint, buffer_length=200, stall_timeout=600).start()
    server = serve(rx, port=0, status=rx.get_buffer_status)
    problems: list[str] = []
    try:
        pub.wait_subscriber()
        chans = 1 + np.arange(256)
        for i in range(120):
            f = np.zeros((1, 256, 4), np.float32)
            f[0, :, 0] = 1e5 * chans * (1 + 0.5 * np.sin(i / 9.0))
            pub.send(f)
        assert wait_until(lambda: rx.status()["frames_received"] == 120, 10)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
                page.goto(server.url)
                page.wait_for_function("document.getElementById('hi').value !== ''")
                lo, hi = float(page.input_value("#lo")), float(page.input_value("#hi"))
                assert hi > lo
                page.wait_for_function(
                    "document.getElementById('conn').textContent === 'stalled'", timeout=15000)
                colours = page.evaluate("""() => {
                    const cv = document.getElementById('waterfall');
                    const ctx = cv.getContext('2d');
                    const d = ctx.getImageData(0, 0, cv.width, cv.height).data;
                    const seen = new Set();
                    for (let i = 0; i < d.length; i += 28) {
                        seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
                    }
                    return seen.size;
                }""")
                assert colours > 50, colours
                assert page.text_content("#st-health") == "ok"
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "browser_stalled_view.png"))
            finally:
                browser.close()
    finally:
        server.stop()
        rx.stop()
        pub.close()
    assert problems == []
