"""Tests of the static waterfall (report/plot.py) and the packet selection it shares."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from report_fixtures import BLACK_STALLS, make_analysis, make_table

from xentrace_cli.cli import main
from xentrace_cli.errors import OptionError
from xentrace_cli.outputs.plot import plot_waterfall
from xentrace_cli.outputs.waterfall import intervals, segments, select_packets

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


def _both_directions():
    """Four received rows from make_table and two sent rows built by hand: tx stages
    socket_write 10, vmm 5, ring 7, remap 3, driver_domain 2 µs from t_write."""
    import pandas as pd

    rx = make_table(4)
    t_write = 1_700_000_000.5 + np.arange(2) * 0.01
    points = {"t_write": 0.0, "t_guest": 10.0, "t_dom0_run": 15.0, "t_copy": 22.0,
              "t_backend": 25.0, "t_phys": 27.0}
    tx = pd.DataFrame({"src": "10.0.0.2", "sport": 40000, "dst": "10.0.0.1", "dport": 11211,
                       "proto": 6, "direction": "tx", "seq": [1, 2], "len": 50,
                       **{k: t_write + v * 1e-6 for k, v in points.items()},
                       "socket_write_us": 10.0, "vmm_us": 5.0, "ring_us": 7.0,
                       "remap_us": 3.0, "driver_domain_us": 2.0, "total_us": 27.0,
                       "anomaly": ["", "ring"], "cause": ""})
    return pd.concat([rx, tx], ignore_index=True)


def test_intervals_and_bars_keep_the_directions_apart():
    table = _both_directions()
    rx = [iv.key for iv in intervals(table, "rx")]
    tx = [iv.key for iv in intervals(table, "tx")]
    assert rx == ["vmm", "driver_domain", "ring", "remap", "socket_read"]
    assert tx == ["tx.socket_write", "tx.vmm", "tx.ring", "tx.remap", "tx.driver_domain"]
    bars = segments(table, table.index)
    sent = bars[bars["row"] == 5].set_index("key")
    # the transmit ring starts at dom0_run, 15 µs after the write (not at backend)
    assert sent.loc["tx.ring", "start_us"] == pytest.approx(15.0, abs=0.5)  # float s
    assert sent.loc["tx.driver_domain", "start_us"] == pytest.approx(25.0, abs=0.5)
    assert bool(sent.loc["tx.ring", "anomalous"]) and not bool(sent.loc["tx.vmm", "anomalous"])
    # a received row gets no transmit bar and the other way round
    assert set(bars[bars["row"] == 0]["key"]) == set(rx)
    assert set(sent.index) == set(tx)


def test_plot_draws_one_panel_per_direction(tmp_path):
    analysis = make_analysis()
    analysis.table = _both_directions()
    path = plot_waterfall(analysis, tmp_path / "both.svg")
    texts = " ".join("".join(t.itertext()) for t in ET.parse(path).getroot().iter(f"{SVG}text"))
    assert "received (rx): 4 of 4 shown" in texts and "sent (tx): 2 of 2 shown" in texts
    assert "⚠ tx.ring 7 µs" in texts


def test_one_capture_plot_shows_the_exchanges(tmp_path):
    import pandas as pd

    analysis = make_analysis(4)
    table = analysis.table
    for column in [c for c in table.columns if c.endswith("_us")] + ["t_irq", "t_dom0_run",
                                                                      "t_backend", "t_copy",
                                                                      "t_guest_wake",
                                                                      "t_guest_run", "t_read",
                                                                      "t_phys"]:
        table[column] = np.nan
    table["request_to_response_us"] = [90.0, 95.0, 100.0, 80.0]
    table["response_to_next_us"] = [3000.0, 2500.0, 103_000.0, np.nan]
    table["anomaly"] = ["", "", "response_to_next", ""]
    analysis.table = pd.DataFrame(table)
    path = plot_waterfall(analysis, tmp_path / "lone.svg")
    texts = " ".join("".join(t.itertext()) for t in ET.parse(path).getroot().iter(f"{SVG}text"))
    assert "exchanges (one capture" in texts and "4 of 4 packets shown" in texts
    assert "⚠ response_to_next 103.0 ms" in texts
    assert "no packet with a measured stage" not in texts
