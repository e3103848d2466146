"""Tests of the static waterfall (report/plot.py) and the packet selection it shares."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from report_fixtures import BLACK_STALLS, make_analysis, make_table

from xentrace_cli.cli import main
from xentrace_cli.errors import OptionError
from xentrace_cli.report.plot import plot_waterfall
from xentrace_cli.report.waterfall import intervals, segments, select_packets

SVG = "{http://www.w3.org/2000/svg}"


def test_png_is_valid_and_reproducible(tmp_path):
    import matplotlib.image

    analysis = make_analysis(stalls=BLACK_STALLS)
    one = plot_waterfall(analysis, tmp_path / "one.png")
    two = plot_waterfall(analysis, tmp_path / "two.PNG")
    data = one.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data == two.read_bytes()
    pixels = matplotlib.image.imread(one)
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 800


def test_svg_names_stages_and_marks_anomalies(tmp_path):
    analysis = make_analysis(stalls=BLACK_STALLS)
    path = plot_waterfall(analysis, tmp_path / "w.svg")
    again = plot_waterfall(analysis, tmp_path / "again.svg")
    assert path.read_bytes() == again.read_bytes()
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    texts = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    for stage in ("vmm", "driver_domain", "ring", "remap", "socket_read"):
        assert stage in texts
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    for row in BLACK_STALLS:
        assert f"anomaly-socket_read-{row}" in ids
        assert f"anomaly-label-socket_read-{row}" in ids
    assert not any(i.startswith("anomaly-remap") for i in ids)
    assert texts.count("(vcpu_runnable)") == len(BLACK_STALLS)
    assert "<dc:date>" not in path.read_text()


def test_merged_interval_is_drawn(tmp_path):
    path = plot_waterfall(make_analysis(xentrace=False), tmp_path / "w.svg")
    texts = " ".join("".join(t.itertext()) for t in ET.parse(path).getroot().iter(f"{SVG}text"))
    assert "backend_to_guest (merged)" in texts
    assert "remap" not in texts.replace("backend_to_guest", "")


def test_wrong_suffix_is_option_error(tmp_path):
    with pytest.raises(OptionError, match=r"w\.pdf: the plot is written as PNG or SVG"):
        plot_waterfall(make_analysis(), tmp_path / "w.pdf")
    assert not (tmp_path / "w.pdf").exists()


def test_empty_analysis_still_draws(tmp_path):
    analysis = make_analysis()
    analysis.table = analysis.table.iloc[0:0]
    path = plot_waterfall(analysis, tmp_path / "empty.svg")
    assert "no packet with a measured stage" in path.read_text()


def test_selection_keeps_every_anomaly_and_the_worst():
    table = make_table(5000, stalls=(7, 2500, 4999))
    rows = select_packets(table, worst=10, normal=10)
    assert {7, 2500, 4999} <= set(rows)
    assert set(table["total_us"].nlargest(10).index) <= set(rows)
    assert len(rows) <= 3 + 10 + 10
    times = table.loc[rows, "t_irq"].to_numpy()
    assert np.all(np.diff(times) > 0)  # time order


def test_segments_lay_out_stages_from_the_first_checkpoint():
    table = make_table(10, stalls=(3,))
    bars = segments(table, table.index)
    assert [iv.name for iv in intervals(table)] == ["vmm", "driver_domain", "ring", "remap",
                                                    "socket_read"]
    row3 = bars[bars["row"] == 3].set_index("interval")
    # socket_read starts where vmm + driver_domain + ring + remap end (t_guest − t_irq)
    expected = sum(table.loc[3, f"{s}_us"] for s in ("vmm", "driver_domain", "ring", "remap"))
    assert row3.loc["socket_read", "start_us"] == pytest.approx(expected, abs=0.5)
    assert row3.loc["vmm", "start_us"] == 0
    assert bool(row3.loc["socket_read", "anomalous"]) and not bool(row3.loc["ring",
                                                                           "anomalous"])


def test_cli_analyze_plot_wrong_suffix_exits_2(runner, monkeypatch, tmp_path):
    import xentrace_cli.cli as cli

    monkeypatch.setattr(cli, "_run_analysis", lambda *a, **k: make_analysis())
    result = runner.invoke(main, ["analyze", "guest.pcap", "--plot", str(tmp_path / "w.jpg"),
                                  "--format", "json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("xenlat: error: ")
    assert "name the file *.png or *.svg" in result.stderr


def test_unwritable_path_is_option_error(tmp_path):
    with pytest.raises(OptionError, match=r"no-such-dir/w\.png: cannot write the plot"):
        plot_waterfall(make_analysis(), tmp_path / "no-such-dir" / "w.png")
