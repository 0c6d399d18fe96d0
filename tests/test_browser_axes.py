"""The live page in a real headless Chromium with any spectrometer's stream: an e-CALLISTO-like
axis (192 uneven channels, 92 down to 20 MHz), values in dB, missing channels, a replay, and
a burst detector's events and background. The stream is a hand-built StreamSource around a
real RingBuffer; the page talks to a real WebServer. Leaves a screenshot in test-artifacts/."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from browsing import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, needs_chromium
from streams import wait_until

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("aiohttp")

from sunspec import clock  # noqa: E402
from sunspec.ring import RingBuffer  # noqa: E402
from sunspec.source import wait_for_ring  # noqa: E402
from sunspec.web import serve  # noqa: E402

pytestmark = needs_chromium

NCHAN, NROWS = 192, 240
T0 = 1.7158e9  # 2024-05-16 UTC
MISSING = list(range(60, 66))  # channels the sender declared missing


def callisto_axis() -> np.ndarray:
    """192 channel centres from 92 down to 20 MHz, spaced unevenly (denser at the top)."""
    x = np.linspace(0.0, 1.0, NCHAN)
    return (92.0 - 72.0 * x**1.6) * 1e6


class HandSource:
    """A StreamSource around a real RingBuffer, filled by the test."""

    def __init__(self, name: str, freqs_hz: np.ndarray | None, info: dict, nrows: int = NROWS):
        self.name = name
        self.stream_info = {"name": name, **info}
        nfreq = NCHAN if freqs_hz is None else len(freqs_hz)
        self.ring: RingBuffer | None = RingBuffer(nrows, nfreq, freqs_hz=freqs_hz)

    def wait_for_ring(self, timeout: float | None = None) -> RingBuffer | None:
        return wait_for_ring(self, timeout)

    def push(self, data: np.ndarray, t0: float = T0, step: float = 0.25) -> None:
        ring = self.ring
        assert ring is not None
        for row in data:
            t = t0 + ring.total * step
            ring.data[ring.spare_row] = row
            ring.commit(clock.unix_to_tag(t), t, ring.total, time.time())


def callisto_rows(n: int) -> np.ndarray:
    """dB values: a sloped background of 40-60 dB plus a drifting burst; missing channels."""
    rng = np.random.default_rng(5)
    data = 40.0 + 20.0 * np.linspace(0, 1, NCHAN)[None, :] + rng.normal(0, 0.5, (n, NCHAN))
    for r in range(100, 112):  # a type III-like drift: higher channel index later
        data[r, 20 + 10 * (r - 100): 40 + 10 * (r - 100)] += 15.0
    data[:, MISSING] = np.nan
    return data.astype(np.float32)


def iso(t: float) -> str:
    return np.datetime_as_string(np.datetime64(int(t * 1000), "ms"), unit="ms") + "Z"


def events_for(freqs_mhz: np.ndarray, snr: float, revision: int) -> list[dict]:
    return [
        {"schema": 1, "id": "GAURI-20240516T000025-III-0a1b2c3d", "revision": revision,
         "final": revision > 0, "type": "III", "start_utc": iso(T0 + 100 * 0.25),
         "end_utc": iso(T0 + 112 * 0.25), "chan_high": 20, "chan_low": 150,
         "f_high_mhz": float(freqs_mhz[20]), "f_low_mhz": float(freqs_mhz[150]), "snr": snr},
        {"schema": 1, "id": "GAURI-20240516T000040-II-99887766", "revision": 0, "final": False,
         "type": "II", "start_utc": iso(T0 + 160 * 0.25), "end_utc": iso(T0 + 220 * 0.25),
         "chan_high": 80, "chan_low": 120, "f_high_mhz": float(freqs_mhz[80]),
         "f_low_mhz": float(freqs_mhz[120]), "snr": 7.25},
    ]


@pytest.fixture
def callisto():
    freqs = callisto_axis()
    src = HandSource("GAURI", freqs, {
        "unit": "dB", "instrument": "e-CALLISTO", "station": "GAURI", "replay": True,
        "source": "GAURI_20240516_000000_59.fit.gz", "axis": "explicit", "product": "I",
        "factor": 1})
    src.push(callisto_rows(NROWS))
    state = {"snr": 12.5, "revision": 0}
    level = (40.0 + 20.0 * np.linspace(0, 1, NCHAN)).astype(np.float32)

    def events(n: int) -> list[dict]:
        return events_for(freqs / 1e6, state["snr"], state["revision"])[-n:]

    def excess(data: np.ndarray) -> np.ndarray:  # dB in, dB above a known level out
        return np.asarray(data, np.float32) - level

    server = serve(src, port=0, events=events, excess_db=excess)
    try:
        yield src, server, state, freqs / 1e6, level
    finally:
        server.stop()


def test_uneven_descending_db_axis_events_and_background_in_chromium(callisto):
    src, server, state, freqs, level = callisto
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.goto(server.url)
            page.wait_for_function(f"state.count === {NROWS}")
            # a replay, badged so, with its file; instrument and station in the title
            page.wait_for_function("document.getElementById('conn').textContent === 'replay'")
            assert "GAURI_20240516_000000_59.fit.gz" in page.get_attribute("#conn", "title")
            assert "GAURI_20240516_000000_59.fit.gz" in page.text_content("#replay")
            title = page.text_content("#title")
            assert "e-CALLISTO" in title and "GAURI" in title
            # dB values as they are: no 10 log10 on top, and no linear choice for them
            assert page.evaluate("[...document.getElementById('scale').options]"
                                 ".map(o => o.value)") == ["db"]
            lo, hi = float(page.input_value("#lo")), float(page.input_value("#hi"))
            assert 35 < lo < hi < 80, (lo, hi)

            # frequency ticks: labelled 20..92 MHz, each where the real axis has it
            ticks = page.evaluate("freqTickList(600, true)")
            labels = [float(t["label"]) for t in ticks]
            assert labels and min(labels) >= 20 and max(labels) <= 92, labels
            assert min(labels) <= 30 and max(labels) >= 80, labels
            for t in ticks:  # the fraction of the axis holds the channel of that frequency
                f = float(t["label"])
                ch = int(np.argmin(np.abs(freqs - f)))
                frac_of_ch = 1 - (ch + 0.5) / NCHAN  # descending: channel 0 at the top
                assert abs(t["frac"] - frac_of_ch) <= 1.0 / NCHAN + 1e-9, (f, t, ch)

            # hover a channel: the read-out gives its own frequency and its dB value
            box = page.locator("#waterfall").bounding_box()
            wf = page.evaluate("WF")
            ph = box["height"] - wf["top"] - wf["bottom"]
            pw = box["width"] - wf["left"] - wf["right"]

            row = 180

            def hover(ch: int) -> str:
                y = box["y"] + wf["top"] + ph * (ch + 0.5) / NCHAN  # descending: 0 at top
                x = box["x"] + wf["left"] + pw * (row + 0.5) / NROWS
                page.mouse.move(x, y)
                return page.text_content("#readout")

            for ch in (0, 37, 150, NCHAN - 1):
                text = hover(ch)
                assert f"{freqs[ch]:.3f} MHz" in text, (ch, text)
                value = float(re.search(r"MHz\s+(-?[\d.]+) dB", text).group(1))
                assert abs(value - float(src.ring.latest(NROWS).data[row, ch])) < 0.3, text
            assert "missing" in hover(MISSING[2])
            # missing channels are drawn in the gap grey, not a colour of the map
            gap = page.evaluate(f"""() => {{
                const px = state.offCtx.getImageData(5, pixelRow({MISSING[1]}), 1, 1).data;
                return [px[0], px[1], px[2]];
            }}""")
            assert gap in ([92, 92, 92], [128, 128, 128]), gap

            # events: a marker and a list entry each; a revision updates the same one
            page.wait_for_function("document.querySelectorAll('#events-body tr').length === 2")
            rows = page.locator("#events-body tr").all_text_contents()
            assert any("II" in r and "7.25" in r for r in rows), rows
            assert any("III" in r and "12.5" in r for r in rows), rows
            boxes = page.evaluate("""() => {
                const cv = document.getElementById('waterfall'), r = cv.getBoundingClientRect();
                const pw = r.width - WF.left - WF.right, ph = r.height - WF.top - WF.bottom;
                const cols = columnsByTime();
                return [...state.events.values()].map(e => eventBox(e, cols, pw, ph));
            }""")
            assert len(boxes) == 2 and all(b is not None for b in boxes), boxes
            iii = boxes[[e["type"] for e in events_for(freqs, 0, 0)].index("III")]
            # the III spans rows 100..112 of 240 and channels 20..150 (0 at the top)
            assert abs(iii["x0"] - (wf["left"] + pw * 100 / NROWS)) <= pw / NROWS + 1
            assert abs(iii["top"] - (wf["top"] + ph * 20 / NCHAN)) <= ph / NCHAN + 1
            assert abs(iii["bottom"] - (wf["top"] + ph * 151 / NCHAN)) <= ph / NCHAN + 1
            state.update(snr=20.0, revision=1)
            page.wait_for_function("[...document.querySelectorAll('#events-body tr')]"
                                   ".some(r => r.textContent.includes('20'))")
            assert page.locator("#events-body tr").count() == 2

            # the background-subtracted view: dB above the detector's level
            page.wait_for_function("state.bg !== null && !document.getElementById('excess')"
                                   ".disabled")
            page.check("#excess")
            text = hover(37)
            value = float(re.search(r"MHz\s+(-?[\d.]+) dB above background", text).group(1))
            want = float(src.ring.latest(NROWS).data[row, 37]) - float(level[37])
            assert abs(value - want) < 0.3, (text, want)
            page.mouse.move(0, 0)
            page.uncheck("#excess")
            time.sleep(0.3)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser_callisto_view.png"))
        finally:
            browser.close()
    assert problems == []


def test_the_page_picks_one_of_several_streams(callisto):
    """Two streams on one server: the select lists both, and switching shows the other
    stream's rows and metadata (a linear stream with uniform channels, live)."""
    src, _server, _state, _freqs, _level = callisto
    other = HandSource("beam2", np.linspace(30e6, 80e6, 64), {"unit": "linear", "beam": 2,
                                                             "product": "XX", "factor": 2},
                       nrows=50)
    other.push((1e6 * (1 + np.arange(64)) * np.ones((20, 1))).astype(np.float32))
    problems: list[str] = []
    with serve([src, other], port=0) as server, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.goto(server.url)
            page.wait_for_function(f"state.count === {NROWS}")
            assert page.is_visible("#stream")
            assert page.evaluate("[...document.getElementById('stream').options]"
                                 ".map(o => o.value)") == ["GAURI", "beam2"]
            page.select_option("#stream", "beam2")
            page.wait_for_function("state.nfreq === 64 && state.count === 20")
            page.wait_for_function("document.getElementById('conn').textContent === 'live'"
                                   " || document.getElementById('conn').textContent === "
                                   "'stalled'")
            assert "beam 2" in page.text_content("#title")
            assert "stream=beam2" in page.url
            assert page.evaluate("[...document.getElementById('scale').options]"
                                 ".map(o => o.value)") == ["db", "lin"]
            assert wait_until(lambda: server.status()["streams"]["beam2"]["viewers"] == 1
                              and server.status()["streams"]["GAURI"]["viewers"] == 0)
        finally:
            browser.close()
    assert problems == []
