"""The status page in a real headless browser (Debian's chromium driven by Playwright).

Each test runs ``edge-agent simulate --serve`` as a real process and opens the
page. What the charts drew is checked on the canvas itself (pixel colours),
the incident marker in the DOM, and every string from the device or from
ServiceNow must arrive as text, never as markup. Set EDGE_AGENT_UPDATE_DOCS=1
to refresh the README's screenshot (docs/status-page.png).
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from conftest import new_secret
from helpers import wait_until
from test_status_commands import Served, _summary

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "status-page.png"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("needs Debian's chromium: apt-get install chromium chromium-driver")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Page:
    """A page with its console errors, requests and response sizes recorded."""

    def __init__(self, browser, url, width=1100, height=1300, **context):
        self.context = browser.new_context(viewport={"width": width, "height": height}, **context)
        self.page = self.context.new_page()
        self.errors, self.requests, self.sizes = [], [], {}
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfinished", self._finished)
        self.page.goto(url)

    def _finished(self, request):
        if "/events" not in request.url:
            response = request.response()
            if response is not None:
                self.sizes[request.url] = len(response.body())

    # As functions, not strings: the page's CSP forbids eval, which string predicates use.
    def js(self, expression):
        return self.page.evaluate("() => (" + expression + ")")

    def wait(self, expression, timeout=20000):
        self.page.wait_for_function("() => (" + expression + ")", timeout=timeout)

    def close(self):
        self.context.close()


# Canvas pixels inside a rectangle: how many show the tint (composited over the white page).
PIXELS = """([metric, rect, tint]) => {
  const canvas = document.querySelector('#chart-' + metric + ' canvas');
  const ctx = canvas.getContext('2d');
  let tinted = 0, total = 0;
  for (let i = 1; i < 10; i++) {
    for (let j = 1; j < 4; j++) {
      const x = Math.round(rect.x + rect.width * i / 10), y = Math.round(rect.y + rect.height * j / 4);
      const [r0, g0, b0, a0] = ctx.getImageData(x, y, 1, 1).data;
      const a = a0 / 255, r = r0 * a + 255 * (1 - a), g = g0 * a + 255 * (1 - a), b = b0 * a + 255 * (1 - a);
      total += 1;
      if (tint === 'red' ? r > g + 12 && r > b + 12 && r > 200 : r > b + 20 && g > b + 8) tinted += 1;
    }
  }
  return [tinted, total];
}"""


@pytest.fixture(scope="module")
def ended(tmp_path_factory):
    """One finished virtual run, served on: a humid spell, ServiceNow down 5 of its minutes."""
    state = tmp_path_factory.mktemp("ended")
    served = Served(
        ["simulate", "--fast", "--json", "--outage", "60:300", "--serve", "0",
         "--state-dir", str(state)]
    )  # fmt: skip
    try:
        yield served, _summary(served)
    finally:
        assert served.stop() == 0


@pytest.fixture(scope="module")
def stuck(tmp_path_factory):
    """A finished run that left the most text in the tables: a ramp still breaching at the end,
    ServiceNow down throughout (an open episode, its action pending with the error)."""
    state = tmp_path_factory.mktemp("stuck")
    served = Served(
        ["simulate", "--fast", "--scenario", "ramp", "--outage", "0:100000", "--serve", "0",
         "--set", "deviceId=pi-" + "cellar-north-wing-" * 3 + "7", "--state-dir", str(state)]
    )  # fmt: skip
    try:
        assert wait_until(lambda: "still serving" in served.text("stdout"), 60), served.lines
        yield served
    finally:
        assert served.stop() == 1  # actions left in the outbox


def test_the_page_charts_readings_limits_episodes_and_incident_markers(browser, ended, tmp_path):
    served, summary = ended
    page = Page(browser, served.url)
    try:
        page.wait("window.edgeStatus.drawn.humidity && window.edgeStatus.drawn.humidity.markers")
        page.wait("window.edgeStatus.drawn.humidity.markers.length > 0")
        points = page.js("window.edgeStatus.data.humidity.filter(v => v !== null).length")
        assert points == summary["readings_published"] == 180
        drawn = page.js("window.edgeStatus.drawn")
        # The humidity limit's hysteresis band and the temperature one are drawn...
        assert [b["side"] for b in drawn["humidity"]["bands"]] == ["upper"]
        assert drawn["temperature"]["bands"] and not drawn["pressure"]["bands"]
        band = drawn["humidity"]["bands"][0]
        tinted, total = page.page.evaluate(PIXELS, ["humidity", band, "orange"])
        assert tinted >= total * 0.6, (tinted, total)
        # ...the breach episode is shaded from its start to its recovery...
        (episode,) = drawn["humidity"]["episodes"]
        state = page.js("window.edgeStatus.state()")
        assert episode["id"] == state["episodes"][0]["id"]
        tinted, total = page.page.evaluate(PIXELS, ["humidity", episode, "red"])
        assert tinted >= total * 0.6, (tinted, total)
        before = dict(episode, x=band["x"] + 2, width=episode["x"] - band["x"] - 4)
        assert page.page.evaluate(PIXELS, ["humidity", before, "red"])[0] == 0  # not shaded
        # ...and the incident marker names the incident and links to its record.
        number = state["episodes"][0]["incident"]["number"]
        marker = page.page.locator("#chart-humidity a.incident-marker")
        assert marker.text_content() == number == "INC0010001"
        href = marker.get_attribute("href")
        assert href.startswith("http://127.0.0.1:") and "incident.do%3Fsys_id%3D" in href
        assert page.page.locator("#incidents").text_content().count(number) == 2
        # Everything served by the device itself, and small.
        assert not page.errors, page.errors
        assert all(url.startswith(served.url) for url in page.requests), page.requests
        assert sum(page.sizes.values()) <= 150 * 1024, page.sizes
        page.page.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)
        if os.environ.get("EDGE_AGENT_UPDATE_DOCS") == "1":
            page.page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True)
        assert (tmp_path / "status-page.png").stat().st_size > 20_000
    finally:
        page.close()


# Elements wider than their box where that box clips or scrolls, and the page's own overflow.
SIDEWAYS = """() => {
  const cut = [];
  document.querySelectorAll('body *').forEach(e => {
    const style = getComputedStyle(e);
    if (style.overflowX !== 'visible' && e.scrollWidth > e.clientWidth + 1)
      cut.push(e.tagName + '#' + e.id + ' ' + e.scrollWidth + '>' + e.clientWidth);
    const box = e.getBoundingClientRect();
    if (box.width && box.right > window.innerWidth + 1) cut.push(e.tagName + '#' + e.id + ' right ' + box.right);
  });
  return [document.documentElement.scrollWidth - window.innerWidth, cut];
}"""
SHOWN = """() => {
  const active = [...document.querySelectorAll('.ranges button.active')].map(b => b.dataset.range);
  const x = window.edgeStatus.charts.humidity.plot.scales.x, ts = window.edgeStatus.data.ts;
  return [active, x.max - x.min, ts[ts.length - 1] - ts[0]];
}"""


@pytest.mark.parametrize("width, height", [(390, 844), (1280, 900)])
def test_every_panel_fits_and_the_active_range_is_the_range_shown(
    browser, ended, stuck, width, height
):
    page = Page(browser, stuck.url, width=width, height=height)
    try:  # an open episode, a pending action with its error, long ids: nothing cut or scrolled
        page.wait("document.querySelectorAll('#open-episodes tr').length > 1")
        page.wait("document.querySelectorAll('#outbox-actions tr').length > 1")
        overflow, cut = page.page.evaluate(SIDEWAYS)
        assert overflow <= 0 and cut == [], (overflow, cut)
        assert not page.errors, page.errors
    finally:
        page.close()
    served, _ = ended
    page = Page(browser, served.url, width=width, height=height)
    try:
        page.wait("window.edgeStatus.drawn.ticks.length > 0")
        page.wait("document.querySelectorAll('#incidents tr').length > 1")
        overflow, cut = page.page.evaluate(SIDEWAYS)
        assert overflow <= 0 and cut == [], (overflow, cut)  # no panel scrolls or cuts sideways
        # A 15-minute run: the shortest range that holds it is chosen, and that is what is shown.
        active, shown, span = page.page.evaluate(SHOWN)
        assert active == ["900"] and shown == 900 and 0 < span <= 900
        for button, seconds in (("1 h", 3600), ("all", span), ("6 h", 21600)):
            page.page.get_by_role("button", name=button, exact=True).click()
            page.wait("window.edgeStatus.charts.humidity.plot.scales.x.max - "
                      "window.edgeStatus.charts.humidity.plot.scales.x.min === {}".format(seconds))  # fmt: skip
            active, shown, _ = page.page.evaluate(SHOWN)
            assert (active, shown) == ([str(seconds) if button != "all" else "all"], seconds)
        assert not page.errors, page.errors
    finally:
        page.close()


def test_one_time_format_one_word_per_thing_and_the_end_of_the_run_said(browser, ended):
    from zoneinfo import ZoneInfo

    served, summary = ended
    zone = ZoneInfo("Asia/Kolkata")  # GMT+5:30: a viewer's zone that is not the server's
    page = Page(browser, served.url, locale="de-DE", timezone_id="Asia/Kolkata")
    try:
        page.wait("window.edgeStatus.drawn.ticks.length > 0")
        page.wait("document.querySelectorAll('#incidents tr').length > 1")
        state = page.js("window.edgeStatus.state()")

        def local(ts):
            return datetime.fromtimestamp(ts, zone).strftime("%H:%M:%S") + " GMT+5:30"

        # Every time: the viewer's locale (24 h in German) and zone, the zone written out.
        incidents = page.page.locator("#incidents").inner_text()
        for incident in state["incidents"]:
            assert local(incident["at"]) in incidents
        sensor = page.page.locator("#sensor").inner_text()
        assert local(state["sensor"]["last_reading_at"]) in sensor
        ticks = page.js("window.edgeStatus.drawn.ticks")
        assert ticks and all(
            t["label"] == datetime.fromtimestamp(t["ts"], zone).strftime("%H:%M") for t in ticks
        ), ticks
        text = page.page.locator("body").inner_text()
        assert "AM" not in text and "PM" not in text and "Times in your zone, GMT+5:30." in text
        # The run is over: not "healthy", not "live"; the functions stopped.
        assert page.page.locator("#health").text_content() == "unhealthy"
        assert page.page.locator("#live").text_content() == "run ended (exit 0): not live"
        reasons = page.page.locator("#reasons").inner_text()
        assert "the run has ended (exit 0: " in reasons and "stopped (final report sent)" in reasons
        assert "reported 0 s before the run ended (stopped)" in sensor
        # The lookup that found nothing is an answer, not an error; an outage is "unreachable"
        # on the page, on the console and in the metric help.
        delivery = page.page.locator("#delivery")
        calls = delivery.locator("dd", has_text="GET 404")
        assert "GET 404 (nothing found) \u00d71" in calls.inner_text()
        assert calls.get_attribute("class") in (None, "")
        assert "unreachable" in delivery.locator("dd", has_text="\u2192").inner_text()
        assert "no_answer" not in text and "Error" not in text
        assert "ServiceNow unreachable at http://127.0.0.1:" in served.text("stderr")
        metrics = requests.get(served.url + "metrics", timeout=5).text
        (help_line,) = [
            line for line in metrics.splitlines()
            if line.startswith("# HELP edge_agent_servicenow_requests_total")
        ]  # fmt: skip
        assert "unreachable" in help_line and "nothing found" in help_line
        assert summary["outages"] and summary["retries"] > 0
        assert not page.errors, page.errors
    finally:
        page.close()


class HostileServiceNow(BaseHTTPRequestHandler):
    """A Table API that answers with markup in the incident number (one incident at a time)."""

    number = "INC<img src=x onerror=window.__snow=1><b>7</b>"
    sys_id = "0123456789abcdef0123456789abcdef"
    created = {}  # the last created record, as the agent reads it back

    def _answer(self, status, result):
        body = json.dumps({"result": result}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, **changes):
        record = {"sys_id": self.sys_id, "number": self.number, "state": "1"}
        record.update(HostileServiceNow.created, **changes)
        return record

    def do_GET(self):
        if self.path.split("?")[0].endswith("/" + self.sys_id):
            self._answer(200, self._record())  # read before resolving
        else:
            self._answer(200, [])  # the lookup before a create finds nothing

    def do_POST(self):
        sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        HostileServiceNow.created = {"correlation_id": sent.get("correlation_id", "")}
        self._answer(201, self._record())

    def do_PATCH(self):
        sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._answer(200, self._record(state=sent.get("state", "1")))

    def log_message(self, *args):
        pass


def test_markup_from_the_device_or_from_servicenow_is_shown_as_text(browser, tmp_path):
    snow = ThreadingHTTPServer(("127.0.0.1", 0), HostileServiceNow)
    threading.Thread(target=snow.serve_forever, daemon=True).start()
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"username": "u", "password": new_secret()}))
    device = '<img src=x onerror="window.__pwned=1">&amp;<b>bold</b>'
    served = Served(
        [
            "simulate",
            "--fast",
            "--serve",
            "0",
            "--state-dir",
            str(tmp_path / "state"),
            "--snow-url",
            "http://127.0.0.1:{}".format(snow.server_address[1]),
            "--secret-file",
            str(secret),
            "--set",
            "deviceId=" + device,
        ]
    )
    page = None
    try:
        assert wait_until(lambda: "still serving" in served.text("stdout"), 30), served.lines
        page = Page(browser, served.url)
        page.wait("document.querySelector('#chart-humidity a.incident-marker') !== null")
        page.wait("document.querySelectorAll('#incidents tr').length > 1")
        assert page.page.locator("#device").text_content() == device
        marker = page.page.locator("#chart-humidity a.incident-marker")
        assert marker.text_content() == HostileServiceNow.number
        assert marker.get_attribute("href").endswith("sys_id%3D" + HostileServiceNow.sys_id)
        assert HostileServiceNow.number in page.page.locator("#incidents").text_content()
        # Nothing of it became an element, and nothing ran.
        assert page.js("document.querySelectorAll('img, b').length") == 0
        assert page.js("typeof window.__pwned") == "undefined"
        assert page.js("typeof window.__snow") == "undefined"
        assert device in page.js("document.title")
        assert not page.errors, page.errors
    finally:
        if page is not None:
            page.close()
        served.stop()
        snow.shutdown()
        snow.server_close()


def test_the_page_follows_a_real_time_run_live(browser, tmp_path):
    served = Served(
        [
            "simulate",
            "--period",
            "0.25",
            "--duration",
            "40",
            "--scenario",
            "steady",
            "--serve",
            "0",
            "--state-dir",
            str(tmp_path),
        ],
    )
    page = None
    try:
        page = Page(browser, served.url)
        page.js("window.__same_page = true")
        page.wait("window.edgeStatus.data.ts.length >= 3")
        seen = page.js("window.edgeStatus.data.ts.length")
        # New readings arrive over Server-Sent Events, without a reload.
        page.wait("window.edgeStatus.data.ts.length >= {}".format(seen + 8))
        assert page.js("window.__same_page") is True
        assert page.page.locator("#live").text_content() == "live"
        assert page.page.locator("#health").text_content() == "healthy"
        ts = page.js("window.edgeStatus.data.ts")
        assert ts == sorted(set(ts))  # in order, none twice
    finally:
        if page is not None:
            page.close()
        served.stop()
