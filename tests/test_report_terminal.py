"""The terminal report's exchanges table on a hand-made lone-capture analysis."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from rich.console import Console

from xentrace_cli.model import Sources
from xentrace_cli.outputs.terminal import render_analysis
from xentrace_cli.pipeline.result import Analysis


def _flows() -> pd.DataFrame:
    """Two IPv6 connections. Flow A: its largest gap (6.15 s) is NOT flagged, a smaller one
    (40 ms) is. Flow B comes second in the file but holds the worst flagged gap (103 ms)."""
    a = ("2001:db8::5", 40000, "2001:db8::1", 80, 6)
    b = ("2001:db8::5", 40001, "2001:db8::1", 80, 6)
    rows = [
        (*a, 1_000.0, 6_150_000.0, "", ""),
        (*a, 1_000.0, 40_100.0, "response_to_next", "≈40 ms"),
        (*b, 900.0, 103_000.0, "response_to_next", "≈100 ms"),
        (*b, 950.0, 2_000.0, "", ""),
    ]
    frame = pd.DataFrame(rows, columns=["src", "sport", "dst", "dport", "proto",
                                        "request_to_response_us", "response_to_next_us",
                                        "anomaly", "stall"])
    frame["retransmissions"] = 0
    frame["t_request"] = np.arange(len(frame), dtype=float)
    return frame


def _render(top: int) -> str:
    analysis = Analysis(table=pd.DataFrame({"direction": pd.Series(dtype=str)}),
                        sources=Sources(), flows=_flows())
    out = io.StringIO()
    render_analysis(analysis, Console(file=out, width=120, color_system=None), top=top)
    return out.getvalue()


def test_flows_worst_first_with_their_own_stall() -> None:
    text = _render(top=10)
    lines = [line for line in text.splitlines() if "[2001:db8::5]:" in line]
    # flow A holds the largest gap (6.15 s) and is listed first; its stall label is not
    # borrowed from the smaller flagged exchange
    assert lines[0].split()[0] == "[2001:db8::5]:40000"
    assert "6.15 s" in lines[0] and "≈40 ms" not in lines[0]
    assert lines[1].split()[0] == "[2001:db8::5]:40001"
    assert "103.0 ms ≈100 ms" in lines[1]


def test_top_keeps_the_worst_flow() -> None:
    lines = [line for line in _render(top=1).splitlines() if "[2001:db8::5]:" in line]
    assert len(lines) == 1 and "6.15 s" in lines[0]


def _flow_lines(flows: pd.DataFrame, top: int) -> list[str]:
    analysis = Analysis(table=pd.DataFrame({"direction": pd.Series(dtype=str)}),
                        sources=Sources(), flows=flows)
    out = io.StringIO()
    render_analysis(analysis, Console(file=out, width=120, color_system=None), top=top)
    return [line for line in out.getvalue().splitlines() if "10.0.0.5:" in line]


def test_many_flows_the_worst_shown_ties_in_order_of_appearance() -> None:
    """3,000 connections of two exchanges each (one connection per request pair, as a client
    that reconnects): the ten whose worst gap is largest, largest first; flows whose worst
    gaps are equal keep the order in which they first appear."""
    n = 3000
    worst_us = np.array([1_000.0 + (k * 7919) % 2000 for k in range(n)])  # ties: k, k+2000
    rows = []
    for k in range(n):
        flow = ("10.0.0.5", 20000 + k, "10.0.0.1", 11211, 6)
        rows += [(*flow, 50.0, worst_us[k]), (*flow, 40.0, 100.0)]
    flows = pd.DataFrame(rows, columns=["src", "sport", "dst", "dport", "proto",
                                        "request_to_response_us", "response_to_next_us"])
    flows = flows.assign(anomaly="", stall="", retransmissions=0,
                         t_request=np.arange(len(flows), dtype=float))
    # by hand: the largest worst gap first; among equal ones the lower port (seen first)
    expected = sorted(range(n), key=lambda k: (-worst_us[k], k))[:10]
    lines = _flow_lines(flows, top=10)
    assert [int(line.split()[0].split(":")[1]) for line in lines] == \
        [20000 + k for k in expected]
    assert len({worst_us[k] for k in expected}) < 10  # the ties are exercised


def test_numbers_one_unit_and_decimals_per_column() -> None:
    from xentrace_cli.outputs.numbers import column_format

    fmt = column_format([4.2, 107_013.4, 43.0], uncertainty_us=8.0)
    assert (fmt.unit, fmt.digits) == ("ms", 3)  # ±8 µs: the last digit is a µs
    assert [fmt(v) for v in (4.2, 107_013.4, 43.0)] == ["0.004", "107.013", "0.043"]
    coarse = column_format([150.0, 2_500.0], uncertainty_us=400.0)
    assert coarse(2_500.0) == "2.5"  # ±400 µs: never more precise than 0.1 ms
    micro = column_format([4.0, 61.0])
    assert (micro.unit, micro(61.0), micro(float("nan"))) == ("µs", "61", "–")


def test_piped_report_is_not_cut_at_80_columns(runner) -> None:
    from pathlib import Path

    from xentrace_cli.cli import main

    sample = Path(__file__).resolve().parent.parent / "sample_pcaps" / "black-0.1s"
    result = runner.invoke(main, ["analyze", str(sample), "--no-progress"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) > 120  # not wrapped at 80
    note = next(line for line in lines if line.startswith("• guest clock:"))
    assert note.rstrip().endswith(")")  # the whole note on one line
    assert any(line.startswith(" tx.socket_write") for line in lines)
    narrow = runner.invoke(main, ["analyze", str(sample), "--no-progress", "--width", "80"])
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80


def test_link_local_ipv6_endpoints_are_printed_not_read_as_markup() -> None:
    """Rich reads "[fe80::5]" in a str cell as a style tag and drops it: a guest's link-local
    or unique-local (fd00::/8) endpoints must show as written."""
    flows = _flows()
    flows["src"] = "fe80::5"
    flows["dst"] = "fd00:abcd::1"
    analysis = Analysis(table=pd.DataFrame({"direction": pd.Series(dtype=str)}),
                        sources=Sources(), flows=flows)
    out = io.StringIO()
    render_analysis(analysis, Console(file=out, width=120, color_system=None), top=10)
    lines = [line for line in out.getvalue().splitlines() if ":40000 →" in line]
    assert lines and lines[0].split()[:3] == ["[fe80::5]:40000", "→", "[fd00:abcd::1]:80"]


def test_worst_packets_anomalous_first_then_the_largest_totals_ties_in_table_order() -> None:
    """The worst packets: the anomalous ones (largest total first), then the largest totals
    of the others, equal totals in table order; by hand on 12 packets, top 5."""
    total = [5.0, 9.0, 9.0, 1.0, 9.0, 7.0, 3.0, 9.0, 2.0, 8.0, 6.0, 4.0]
    n = len(total)
    table = pd.DataFrame({
        "src": "10.0.0.1", "sport": np.arange(40000, 40000 + n), "dst": "10.0.0.5",
        "dport": 80, "direction": "rx", "seq": 1, "len": 100,
        "frame": np.arange(1, n + 1), "ring_us": total, "total_us": total,
        "uncertainty_us": 0.0, "anomaly": ["", "", "", "ring", "", "", "ring", "", "", "",
                                           "", ""]})
    out = io.StringIO()
    render_analysis(Analysis(table=table, sources=Sources()),
                    Console(file=out, width=120, color_system=None), top=5)
    worst = out.getvalue().split("Worst 5 packets")[1]
    frames = [int(line.split()[1]) for line in worst.splitlines()
              if line.startswith("frame ")]
    assert frames == [7, 4, 2, 3, 5]
