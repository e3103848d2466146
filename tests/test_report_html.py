"""Tests of the HTML report (report/html.py): content, determinism, downsampling, Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import BLACK_STALLS, SCENARIO_SET, make_analysis

from xentrace_cli.cli import main
from xentrace_cli.outputs import html as report_html
from xentrace_cli.outputs.html import render_html_report, write_html_report

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def figure_data(page_html: str, div_id: str) -> list[dict]:
    """The trace list handed to Plotly.newPlot for one figure."""
    start = page_html.index(f'Plotly.newPlot("{div_id}", ')
    rest = page_html[start:].split(",", 1)[1].lstrip()
    data, _ = json.JSONDecoder().raw_decode(rest)
    return data


def test_report_is_self_contained_and_deterministic(tmp_path):
    analysis = make_analysis(stalls=BLACK_STALLS)
    one = write_html_report(analysis, tmp_path / "one.html").read_bytes()
    two = write_html_report(make_analysis(stalls=BLACK_STALLS), tmp_path / "two.html")
    assert one == two.read_bytes()
    text = one.decode()
    assert not re.search(r"<script[^>]+src=", text)
    assert not re.search(r"<link[^>]+href=", text)
    assert 'data-anomalies="5"' in text and 'data-packets="200"' in text
    assert "5 anomalous packets: socket_read ×5" in text
    for section in ("waterfall", "timeline", "distributions", "alignment", "worst", "notes"):
        assert f'<section id="{section}">' in text
    assert "Hand-made analysis for tests." in text


def test_anomalies_are_in_the_charts_and_the_table():
    analysis = make_analysis(stalls=BLACK_STALLS)
    text = render_html_report(analysis)
    timeline = figure_data(text, "fig-timeline")
    marks = next(t for t in timeline if t["name"] == "anomalies")
    t0 = analysis.table["t_irq"].min()
    expected_x = sorted(round(analysis.table.loc[i, "t_irq"] - t0, 6) for i in BLACK_STALLS)
    assert sorted(marks["x"]) == pytest.approx(expected_x, abs=1e-6)
    assert marks["y"] == pytest.approx(
        [round(analysis.table.loc[i, "socket_read_us"], 3) for i in BLACK_STALLS])
    assert {row[1] for row in marks["customdata"]} == {"vcpu_runnable"}
    waterfall = figure_data(text, "fig-waterfall-rx")
    read = next(t for t in waterfall if t["name"] == "socket_read")
    assert read["marker"]["pattern"]["shape"].count("/") == len(BLACK_STALLS)
    rows = re.findall(r'<tr data-row="(\d+)" class="anomaly" data-anomaly="socket_read">',
                      text)
    assert sorted(int(r) for r in rows) == sorted(BLACK_STALLS)


def test_merged_interval_and_alignment_shown():
    text = render_html_report(make_analysis(xentrace=False))
    names = [t["name"] for t in figure_data(text, "fig-waterfall-rx")]
    assert "backend_to_guest (merged)" in names and "remap" not in names
    assert '<td class="text quality-bounded">bounded</td>' in text
    assert "ring and remap are merged into backend_to_guest" in text


def test_large_analysis_is_downsampled_keeping_every_anomaly():
    stalls = tuple(range(1000, 60_000, 6_000))  # 10 stalls spread over 60 000 packets
    analysis = make_analysis(60_000, stalls=stalls)
    text = render_html_report(analysis)
    timeline = figure_data(text, "fig-timeline")
    for trace in timeline:
        if trace["name"] != "anomalies":
            assert len(trace["x"]) <= 3 * report_html.TIME_BUCKETS
    marks = next(t for t in timeline if t["name"] == "anomalies")
    assert len(marks["x"]) == len(stalls)
    assert "each stage shows the min, median and max" in text
    waterfall = figure_data(text, "fig-waterfall-rx")
    assert len({y for t in waterfall for y in t["y"]}) <= (
        report_html.WATERFALL_WORST + report_html.WATERFALL_NORMAL + len(stalls))
    assert len(text) < 8_000_000


def test_downsample_keeps_min_median_max():
    x = np.arange(10_000, dtype=float)
    y = np.sin(x) * 100 + 200
    y[5_000] = 10_000.0  # a spike must survive
    dx, dy = report_html._downsample(x, y)
    assert len(dx) <= 3 * report_html.TIME_BUCKETS
    assert dy.max() == 10_000.0 and dy.min() == pytest.approx(y.min())


def test_cli_report(runner, monkeypatch, tmp_path):
    import xentrace_cli.cli as cli

    monkeypatch.setattr(cli, "_run_analysis",
                        lambda *a, **k: make_analysis(stalls=BLACK_STALLS))
    out = tmp_path / "report.html"
    result = runner.invoke(main, ["report", "guest.pcap", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert out.read_text().startswith("<!DOCTYPE html>")


# --- in a real browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(chromium: str):
    """Headless Debian Chromium driven by playwright (no browser download)."""
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    problems: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: problems.append(f"console.{msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)

    def route(r):
        if not r.request.url.startswith(("file:", "data:", "blob:")):
            requests.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)
    started = time.perf_counter()
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length"
                           " >= 3", timeout=30_000)
    return page, problems, requests, time.perf_counter() - started


def test_console_capture_sees_errors(browser, tmp_path):
    """The error capture used below does catch a script error and a console error."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('seen');"
                   "null.boom();</script></body></html>", encoding="utf-8")
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: problems.append(f"console.{msg.type}: {msg.text}"))
    page.goto(bad.as_uri(), wait_until="load")
    page.close()
    assert any("seen" in p for p in problems) and any("pageerror" in p for p in problems)


def test_report_renders_in_chromium(browser, tmp_path):
    analysis = make_analysis(3000, stalls=(40, 41, 1200, 1201, 2900))
    path = write_html_report(analysis, tmp_path / "report.html")
    page, problems, requests, seconds = _open(browser, path)
    try:
        assert problems == []
        assert requests == []  # offline: nothing fetched
        assert seconds < 30
        anomalies = page.evaluate("""() => {
            const fig = document.getElementById('fig-timeline');
            const trace = fig.data.find(t => t.name === 'anomalies');
            return trace.x.length;
        }""")
        assert anomalies == 5
        # the plotted anomaly marks exist as SVG points
        points = page.evaluate("""() => {
            const fig = document.getElementById('fig-timeline');
            const i = fig.data.findIndex(t => t.name === 'anomalies');
            return fig.querySelectorAll('.scatterlayer .trace')[i]
                      .querySelectorAll('.point').length;
        }""")
        assert points == 5
        assert page.locator("#worst-table tr.anomaly").count() == 5
        bars = page.evaluate("document.querySelectorAll('#fig-waterfall-rx .bars .point').length")
        assert bars > 100
        # the table sorts when its header is clicked (the report's own script ran)
        page.locator("#worst-table th", has_text="t (s)").click()
        rows = [int(r) for r in page.locator("#worst-table tbody tr")
                .evaluate_all("rows => rows.map(r => r.dataset.row)")]
        times = analysis.table.loc[rows, "t_irq"].tolist()
        assert times == sorted(times, reverse=True)
        page.locator("#worst-table th", has_text="t (s)").click()
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        extra = os.environ.get("XENLAT_REPORT_SCREENSHOT")
        if extra:
            shutil.copyfile(shot, extra)
    finally:
        page.close()


def test_cli_report_unwritable_exits_2(runner, monkeypatch, tmp_path):
    import xentrace_cli.cli as cli

    monkeypatch.setattr(cli, "_run_analysis", lambda *a, **k: make_analysis())
    out = tmp_path / "missing" / "report.html"
    result = runner.invoke(main, ["report", "guest.pcap", "-o", str(out)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (f"xenlat: error: {out}: cannot write the report: "
                             "No such file or directory\n")


def test_black_scenario_report_in_chromium(browser, simulated_set, tmp_path):
    """The real pipeline on the simulated black 0.1 s, looked at in a browser: the clock
    alignment's numbers and every stalled packet are on screen, each stall the long bar."""
    from xentrace_cli.pipeline.analyze import analyze_files
    from xentrace_cli.units import format_duration

    directory = simulated_set("black-0.1s", **SCENARIO_SET)   # the gate tests' set too
    analysis = analyze_files(guest=directory / "guest.pcapng",
                             backend=directory / "vif5.0.pcap", phys=directory / "phys.pcap",
                             xentrace=directory / "xentrace.bin",
                             socket_log=directory / "app.strace")
    out = write_html_report(analysis, tmp_path / "black.html")
    assert out.stat().st_size < 2_000_000  # self-contained, and far below the old 5.1 MB
    flagged = int((analysis.table["anomaly"] != "").sum())
    assert flagged > 0
    fit = analysis.alignment["guest->dom0"]
    offset = format_duration(fit["offset_ns"] / 1e3)
    drift = f"{fit['drift_ppm']:+.2f} ppm"
    page, problems, requests, _ = _open(browser, out)
    try:
        assert problems == [] and requests == []
        # the alignment's numbers, visible in its table and in the header's at-a-glance lines
        row = page.locator("#alignment-table tr", has_text="guest->dom0")
        assert row.locator("td.offset").inner_text() == offset
        assert row.locator("td.drift").inner_text() == drift
        assert row.is_visible()
        glance = page.locator("ul.glance li.clock", has_text="guest->dom0")
        assert glance.is_visible() and offset in glance.inner_text()
        # every stalled packet of the waterfall is named where its bar ends, inside the plot
        stalled = page.evaluate("""() => {
            const fig = document.getElementById('fig-waterfall-rx');
            const box = fig.querySelector('.nsewdrag').getBoundingClientRect();
            const labels = Array.from(fig.querySelectorAll('.textpoint text'));
            return labels.map(t => { const r = t.getBoundingClientRect();
                return {text: t.textContent, inside: r.left >= box.left - 1 &&
                        r.right <= box.right + 1 && r.width > 0}; });
        }""")
        shown = figure_data(out.read_text(), "fig-waterfall-rx")
        named = next(t for t in shown if t["name"] == "anomalies")["text"]
        assert len(stalled) == len(named) > 0
        assert all(label["inside"] for label in stalled), stalled
        assert all("⚠ socket_read" in label["text"] or "⚠ remap" in label["text"]
                   for label in stalled)
        # linear axis: a stall's bar is far longer than a normal packet's whole path
        widths = page.evaluate("""() => Array.from(document.querySelectorAll(
            '#fig-waterfall-rx .bars .point path')).map(p => p.getBBox().width)""")
        assert max(widths) > 50 * float(np.median(widths))
        assert page.locator("#worst-table tr.anomaly[data-anomaly='socket_read']").count() > 0
        first = page.locator("#worst-table tbody tr").first
        assert first.is_visible() and "anomaly" in (first.get_attribute("class") or "")
        # the worst-packets table fits the page: no horizontal scrolling
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        extra = os.environ.get("XENLAT_REPORT_SCREENSHOT")
        if extra:
            shutil.copyfile(shot, extra)
    finally:
        page.close()


def test_single_capture_report_shows_what_it_has(tmp_path):
    """One capture alone: no table of '–', no empty waterfall; the exchanges are there."""
    sample = Path(__file__).resolve().parent.parent / "sample_pcaps" / "black-0.1s"
    from xentrace_cli.pipeline.analyze import analyze_files

    analysis = analyze_files(guest=sample / "guest.pcapng")
    text = render_html_report(analysis)
    stats = text[text.index('id="stats-table"'):text.index("</table>",
                                                            text.index('id="stats-table"'))]
    keys = re.findall(r'<tr data-key="([^"]+)">', stats)
    assert keys == ["request_to_response", "response_to_next"]
    assert "–" not in stats
    assert "the split into stages needs a second source" in text
    assert 'id="flows-table"' in text and "fig-timeline" in text


def test_analyze_imports_no_plotting_library():
    """analyze (terminal, CSV, JSON) keeps matplotlib out of its import path."""
    import subprocess
    import sys

    sample = Path(__file__).resolve().parent.parent / "sample_pcaps" / "black-0.1s"
    code = ("import sys; from click.testing import CliRunner; from xentrace_cli.cli import main;"
            f"r = CliRunner().invoke(main, ['analyze', {str(sample)!r}, '--no-progress']);"
            "assert r.exit_code == 0, r.output;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('matplotlib', 'plotly', 'PIL')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
