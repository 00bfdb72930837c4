"""Cry recordings in the console, as a person uses them: drop recordings on the page, watch
each upload's progress bar and then its analysis status move live, open one, and read it
in the editor (waveform and spectrogram on one time axis, episodes where the analysis put
them, zoom, selection and playback), its statistics, and its exports. Also: a recording
over the direct-upload threshold going straight to storage, and the list's filters and
paging."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import time

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.audio.synth import cry, wav_bytes
from tests.browser.conftest import canvas_is_drawn, shot, signed_in
from tests.conftest import Client

pytestmark = pytest.mark.browser

SR = 22_050
# two units 0.3 s apart (one episode), then one 2.4 s later (a second episode)
NIGHT = (
    "night.wav",
    wav_bytes(cry(SR, 7.0, [(0.5, 1.5, 450), (1.8, 2.6, 500), (5.0, 6.2, 550)]), SR),
)
NAP = ("nap.wav", wav_bytes(cry(SR, 5.0, [(1.0, 2.5, 480)], seed=3), SR))
ANALYSED = 120_000  # ms: two analyses on a busy two-core machine
WAIT = 30_000

DROP = """([files]) => {
  const dt = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
    dt.items.add(new File([bytes], f.name, { type: "audio/wav" }));
  }
  return dt;
}"""

DRAWN = """(sel) => { const c = document.querySelector(sel); if (!c || !c.width) return false;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 4; i < d.length; i += 4)
    if (d[i] !== d[0] || d[i+1] !== d[1] || d[i+2] !== d[2] || d[i+3] !== d[3]) return true;
  return false; }"""

# mean luminance (0 black .. 255 white) of a 3-px column of the spectrogram's plot area at
# fraction ``k`` of its width, between ``lo`` and ``hi`` of its height from the bottom
COLUMN = """([k, lo, hi]) => {
  const c = document.querySelector('[data-testid="spectrogram"]');
  const layer = document.querySelector('[data-testid="plot-layer"]').getBoundingClientRect();
  const box = c.getBoundingClientRect(), s = c.width / box.width;
  const plotTop = 0, plotH = layer.bottom - box.top;  // the plot area ends where the axis begins
  const x = Math.round((layer.left - box.left + k * layer.width) * s);
  const y0 = Math.round((plotTop + plotH * (1 - hi)) * s), y1 = Math.round((plotTop + plotH * (1 - lo)) * s);
  const d = c.getContext('2d').getImageData(x - 1, y0, 3, y1 - y0).data;
  let sum = 0; for (let i = 0; i < d.length; i += 4) sum += (d[i] + d[i+1] + d[i+2]) / 3;
  return sum / (d.length / 4); }"""


# every value the analysis progress bar shows, in order (a MutationObserver on the page)
RECORD_PROGRESS = """() => {
  window.__progress = [];
  const note = () => {
    const bar = document.querySelector('[data-testid="analysis-progress"] [role="progressbar"]');
    const v = bar && Number(bar.getAttribute("aria-valuenow"));
    if (bar && window.__progress[window.__progress.length - 1] !== v) window.__progress.push(v);
  };
  new MutationObserver(note).observe(document.body,
    { subtree: true, childList: true, attributes: true, attributeFilter: ["aria-valuenow"] });
}"""


def drop(page, files: list[tuple[str, bytes]]) -> None:
    """Drop ``files`` on the drop zone as a file manager does: dragenter, dragover, drop."""
    dt = page.evaluate_handle(
        DROP, [[{"name": n, "b64": base64.b64encode(b).decode()} for n, b in files]]
    )
    for kind in ("dragenter", "dragover", "drop"):
        page.dispatch_event('[data-testid="dropzone"]', kind, {"dataTransfer": dt})


def visible(page) -> tuple[float, float]:
    r = page.get_by_test_id("visible-range")
    return float(r.get_attribute("data-start")), float(r.get_attribute("data-end"))


def assert_regions_where_analysed(page, episodes: list[dict]) -> None:
    """Each episode's region covers exactly its times on the plot's time axis (1.5 px)."""
    v0, v1 = visible(page)
    layer = page.get_by_test_id("plot-layer").bounding_box()
    regions = page.get_by_test_id("episode-region")
    shown = [e for e in episodes if e["end_time"] > v0 and e["start_time"] < v1]
    expect(regions).to_have_count(len(shown))
    for k, ep in enumerate(shown):
        box = regions.nth(k).bounding_box()
        a, b = max(ep["start_time"], v0), min(ep["end_time"], v1)
        x = layer["x"] + (a - v0) / (v1 - v0) * layer["width"]
        w = (b - a) / (v1 - v0) * layer["width"]
        assert abs(box["x"] - x) <= 1.5 and abs(box["width"] - w) <= 1.5, (ep, box, (x, w))


def x_at(page, t: float) -> float:
    v0, v1 = visible(page)
    layer = page.get_by_test_id("plot-layer").bounding_box()
    return layer["x"] + (t - v0) / (v1 - v0) * layer["width"]


def test_drop_two_recordings_watch_them_analysed_and_read_one(page, stack, tmp_path):
    me = Client(stack)
    signed_in(page, me, "/recordings")
    expect(page.get_by_text("No recordings yet")).to_be_visible()
    expect(page.get_by_test_id("live")).to_have_text("live")  # following user:<id> already

    drop(page, [NIGHT, NAP])
    items = page.get_by_test_id("upload-item")
    expect(items).to_have_count(2)
    for k in range(2):
        expect(items.nth(k).get_by_role("progressbar")).to_have_attribute(
            "aria-valuenow", "100", timeout=WAIT
        )
        expect(items.nth(k)).to_have_attribute("data-route", "api")  # small: through the API
        expect(items.nth(k)).to_have_attribute("data-state", "uploaded", timeout=WAIT)
    shot(page, "recordings-upload")

    # the list fills and each status moves to completed with no reload: news over the socket
    rows = page.get_by_test_id("recording-row")
    expect(rows).to_have_count(2, timeout=WAIT)
    for name, _ in (NIGHT, NAP):
        row = rows.filter(has_text=name)
        expect(row.get_by_test_id("row-status")).to_have_text("completed", timeout=ANALYSED)
    for k in range(2):
        expect(items.nth(k).locator(".status")).to_have_text("completed")
    expect(rows.filter(has_text="night.wav")).to_contain_text("7.0 s")
    shot(page, "recordings-list")

    files = me.http.get("/audio-files/").json()["files"]
    night = next(f for f in files if f["original_filename"] == "night.wav")
    doc = me.http.get(f"/analysis/{night['id']}/result").json()
    data = doc["result_data"]
    episodes = data["cry_episodes"]
    assert len(episodes) == 2

    page.get_by_role("link", name="night.wav").first.click()
    expect(page).to_have_url(f"{stack.base}/#/recordings/{night['id']}")
    expect(page.get_by_test_id("recording-status")).to_have_text("completed")
    expect(page.get_by_test_id("episode-count")).to_have_text("2")

    # the editor: both panels drawn, the regions where the analysis put them
    for sel in ('[data-testid="waveform"]', '[data-testid="spectrogram"]'):
        page.wait_for_function(DRAWN, arg=sel)
        assert canvas_is_drawn(page, sel)
    assert visible(page) == (0, 7.0)
    assert_regions_where_analysed(page, episodes)
    units = sum(u["unit_count"] for u in data["cry_units"].values())
    expect(page.get_by_test_id("unit-region")).to_have_count(units)
    # the spectrogram is dark (energy 300-3000 Hz) inside an episode, pale in the silence
    spec = me.http.get(f"/visualization/{night['id']}/spectrogram").json()
    top = spec["frequencies"][-1]
    band = (300 / top, 3000 / top)
    inside = page.evaluate(COLUMN, [1.0 / 7.0, *band])
    silence = page.evaluate(COLUMN, [4.0 / 7.0, *band])
    assert inside < silence - 30, (inside, silence)

    # zoom: buttons halve the span about its middle, the wheel zooms about the pointer
    page.get_by_role("button", name="Zoom in").click()
    expect(page.get_by_test_id("visible-range")).to_have_text("1.750 \u2013 5.250 s")
    assert_regions_where_analysed(page, episodes)
    layer = page.get_by_test_id("plot-layer").bounding_box()
    page.mouse.move(x_at(page, 2.0), layer["y"] + layer["height"] / 2)
    page.mouse.wheel(0, -400)
    expect(page.get_by_test_id("visible-range")).not_to_have_text("1.750 \u2013 5.250 s")
    v0, v1 = visible(page)
    assert v1 - v0 < 3.5 and v0 < 2.0 < v1
    assert_regions_where_analysed(page, episodes)
    page.get_by_role("button", name="Show all").click()
    expect(page.get_by_test_id("visible-range")).to_have_text("0.000 \u2013 7.000 s")

    # select the first episode by dragging across it, zoom to it, play it
    first = episodes[0]
    y = layer["y"] + layer["height"] / 2
    page.mouse.move(x_at(page, first["start_time"]), y)
    page.mouse.down()
    page.mouse.move(x_at(page, (first["start_time"] + first["end_time"]) / 2), y, steps=4)
    page.mouse.move(x_at(page, first["end_time"]), y, steps=4)
    page.mouse.up()
    expect(page.get_by_test_id("selection-range")).to_contain_text("Selection")
    text = page.get_by_test_id("selection-range").inner_text()
    a, b = (float(s) for s in text.split("Selection ")[1].split(" s")[0].split(" \u2013 "))
    assert abs(a - first["start_time"]) < 0.02 and abs(b - first["end_time"]) < 0.02
    with page.expect_response(lambda r: r.url.endswith(f"/audio-files/{night['id']}/stream")) as r:
        page.get_by_role("button", name="Play selection").click()
    assert r.value.status == 200
    expect(page.get_by_test_id("playback")).to_contain_text(f"Playing {a:.3f} \u2013 {b:.3f} s")
    page.get_by_role("button", name="Zoom to selection").click()
    v0, v1 = visible(page)
    assert abs(v0 - a) <= 5e-4 and abs(v1 - b) <= 5e-4  # (the text shows milliseconds)
    assert_regions_where_analysed(page, episodes)
    page.get_by_role("button", name="Show all").click()

    # statistics of each episode: the API's numbers
    for k in range(len(episodes)):
        page.get_by_role("button", name=f"E{k + 1}", exact=True).click()
        expect(page.get_by_test_id("stats")).to_have_attribute("data-episode", str(k))
        stats, cu = data["statistics"][f"episode_{k}"], data["cry_units"][f"episode_{k}"]
        for feature in ("f0", "f1", "intensity"):
            for col in ("mean", "median", "min", "max"):
                shown = float(page.get_by_test_id(f"stat-{feature}-{col}").inner_text())
                assert abs(shown - stats[feature][col]) <= 0.051, (k, feature, col, shown)
        for key in ("cryCE", "unvoicedCE"):
            shown = float(page.get_by_test_id(f"stat-{key}").inner_text())
            assert abs(shown - cu[key]) <= 0.0006, (k, key, shown)
    assert abs(data["statistics"]["episode_1"]["f0"]["median"] - 550) < 11
    shot(page, "recordings-analysis")

    # exports, as the API names and fills them
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export CSV").click()
    assert dl.value.suggested_filename == f"analysis_results_{night['id']}.csv"
    dl.value.save_as(tmp_path / "a.csv")
    text = (tmp_path / "a.csv").read_text()
    assert text.startswith(f"# audio_file_id={night['id']} ")
    rows_csv = list(csv.reader(io.StringIO(text.split("\n", 2)[2])))
    frames = sum(len(v) for v in data["acoustic_features"].values())
    assert rows_csv[0][:4] == ["episode", "episode_start", "episode_end", "time"]
    assert len([r for r in rows_csv[1:] if r]) == frames
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export JSON").click()
    assert dl.value.suggested_filename == f"analysis_results_{night['id']}.json"
    dl.value.save_as(tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text()) == doc

    # analysed again: the progress bar moves with the file's progress events over the
    # socket (the page never polls), and the view fills with the new result at the end
    page.evaluate(RECORD_PROGRESS)
    page.get_by_role("button", name="Analyse again").click()
    expect(page.get_by_test_id("recording-status")).to_have_text("processing")
    expect(page.get_by_test_id("recording-status")).to_have_text("completed", timeout=ANALYSED)
    seen = page.evaluate("window.__progress")
    assert any(0 < v < 100 for v in seen), seen  # only progress events carry these
    assert seen == sorted(seen), json.dumps(seen)
    again = me.http.get(f"/analysis/{night['id']}/result").json()
    assert again["analyzed_at"] != doc["analyzed_at"]
    expect(page.get_by_test_id("episode-region")).to_have_count(2)
    page.wait_for_function(DRAWN, arg='[data-testid="spectrogram"]')


def test_a_large_recording_goes_straight_to_storage(page, stack, tmp_path):
    """Over 4 MB: a presigned POST from the browser straight to storage (the local stack
    allows its own pages in the emulator's CORS rules and its console's CSP); it is
    registered and analysed, and the list shows it."""
    me = Client(stack)
    sr = 48_000
    x = cry(sr, 24.0, [(1.0, 2.2, 470), (2.5, 3.4, 520)], seed=5)
    big = tmp_path / "long night.wav"
    big.write_bytes(wav_bytes(x, sr, channels=2))
    assert big.stat().st_size > 4_000_000
    signed_in(page, me, "/recordings")
    expect(page.get_by_test_id("live")).to_have_text("live")

    page.get_by_test_id("file-input").set_input_files(str(big))
    item = page.get_by_test_id("upload-item")
    expect(item).to_have_attribute("data-state", "uploaded", timeout=60_000)
    expect(item.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(item).to_have_attribute("data-route", "presigned-post")
    expect(item.locator(".notice")).to_have_count(0)  # no fallback through the API
    row = page.get_by_test_id("recording-row").filter(has_text="long night.wav")
    expect(row.get_by_test_id("row-status")).to_have_text("completed", timeout=ANALYSED)
    f = me.http.get("/audio-files/").json()["files"][0]
    assert (f["original_filename"], f["channels"], f["sample_rate"]) == ("long night.wav", 2, sr)
    row.get_by_role("link", name="long night.wav").click()
    expect(page.get_by_test_id("episode-region")).to_have_count(1)  # 0.3 s apart: one episode
    page.wait_for_function(DRAWN, arg='[data-testid="spectrogram"]')


def test_list_filters_by_status_and_tag_and_pages(page, stack):
    """21 recordings too short to analyse (each fails at once, with the reason) and one
    tagged: status and tag filters, and two pages."""
    me = Client(stack)
    blip = wav_bytes(np.zeros(int(SR * 0.03)), SR)
    for batch in range(3):
        n = 10 if batch < 2 else 1
        r = me.http.post(
            "/audio-files/upload/batch",
            files=[("files", (f"blip{batch}-{i}.wav", blip, "audio/wav")) for i in range(n)],
        )
        assert r.status_code == 201 and not r.json()["errors"], r.text
    ok = me.http.post("/audio-files/upload", files={"file": NAP}).json()["file"]
    tag = me.http.post("/tags/", json={"name": "night feed"}).json()
    assert me.http.post(f"/tags/{ok['id']}/tags/{tag['id']}").status_code == 200

    signed_in(page, me, "/recordings")
    expect(page.get_by_test_id("list-total")).to_have_text("22 recordings")
    expect(page.get_by_test_id("recording-row")).to_have_count(20)
    expect(page.get_by_test_id("pager")).to_contain_text("Page 1 of 2")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_test_id("recording-row")).to_have_count(2)
    expect(page.get_by_test_id("pager")).to_contain_text("Page 2 of 2")

    page.get_by_test_id("filter-tag").select_option(label="night feed")
    rows = page.get_by_test_id("recording-row")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("nap.wav")
    expect(rows).to_contain_text("night feed")
    expect(page.get_by_test_id("pager")).to_have_count(0)
    expect(rows.get_by_test_id("row-status")).to_have_text("completed", timeout=ANALYSED)

    # 21 analyses queue behind each other on a busy machine: the filter is tried once the
    # API says they all ended (the page follows them live meanwhile)
    def failed() -> int:
        files = me.http.get("/audio-files/", params={"limit": 100}).json()["files"]
        return sum(f["status"] == "failed" for f in files)

    deadline = time.monotonic() + 600
    while failed() < 21:
        assert time.monotonic() < deadline, f"{failed()} of 21 analyses ended"
        time.sleep(1)
    page.get_by_role("button", name="Clear filters").click()
    page.get_by_test_id("filter-status").select_option("failed")
    expect(page.get_by_test_id("list-total")).to_have_text("21 recordings of 22", timeout=ANALYSED)
    expect(page.get_by_test_id("recording-row").first).to_contain_text("too short to analyse")
    page.get_by_test_id("filter-tag").select_option(label="night feed")
    expect(page.get_by_text("No recording matches these filters.")).to_be_visible()


def test_news_that_came_under_another_filter_does_not_bring_its_list_back(page, stack):
    """Live news schedules a reload of the list (300 ms later, once for a burst). If the
    user changes the filter before it is due, the reload lists what the view shows now,
    not what it showed when the news came. The page's clock is paused so that the reload
    cannot run before the filter changes; the list it then reads has one recording more
    than the server's (added by the route), so the view visibly changes when it lands."""
    me = Client(stack)
    blip = wav_bytes(np.zeros(int(SR * 0.03)), SR)  # too short: its analysis fails at once

    def upload(name: str) -> dict:
        r = me.http.post("/audio-files/upload", files={"file": (name, blip, "audio/wav")})
        assert r.status_code == 201, r.text
        return r.json()["file"]

    def failed(file_id: int) -> bool:
        return me.http.get(f"/audio-files/{file_id}").json()["status"] == "failed"

    def until(condition, what: str) -> None:
        deadline = time.monotonic() + ANALYSED / 1000
        while not condition():
            assert time.monotonic() < deadline, what
            page.wait_for_timeout(200)  # (Playwright's events, the frames, come in meanwhile)

    kept = upload("kept.wav")
    tag = me.http.post("/tags/", json={"name": "kept"}).json()
    assert me.http.post(f"/tags/{kept['id']}/tags/{tag['id']}").status_code == 200
    until(lambda: failed(kept["id"]), "the first analysis to end")

    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f))))
    page.clock.install()
    signed_in(page, me, f"/recordings?tag={tag['id']}")
    total = page.get_by_test_id("list-total")
    expect(total).to_have_text("1 recording of 1")
    expect(page.get_by_test_id("live")).to_have_text("live")
    page.clock.pause_at(int(time.time() * 1000) + 1_000)  # from now on timers wait for run_for

    # News of another recording under the tag filter: a reload is now due.
    other = upload("other.wav")
    said = re.compile(rf'"file_id":\s*{other["id"]}\b')
    until(lambda: any(said.search(f) and "failed" in f for f in frames), "the other's news")
    # The user changes the filter before the reload is due.
    page.get_by_role("button", name="Clear filters").click()
    page.get_by_test_id("filter-status").select_option("failed")
    expect(total).to_have_text("2 recordings of 2")

    def one_more(route) -> None:  # the due reload's list: the server's, and one more failed
        response = route.fetch()
        body = response.json()
        extra = {**body["files"][0], "id": 10**9, "tags": []}
        extra.update(filename="extra.wav", original_filename="extra.wav")
        route.fulfill(
            response=response,
            json={**body, "files": [*body["files"], extra], "total": body["total"] + 1},
        )

    page.route("**/audio-files/?skip=0&limit=1000", one_more)
    page.clock.run_for(1_000)  # the reload the news scheduled runs now
    expect(total).not_to_have_text("2 recordings of 2")
    expect(total).to_have_text("3 recordings of 3")  # the status filter's; the tag's: 1 of 3
