"""The terminal report's exchanges table on a hand-made lone-capture analysis."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from rich.console import Console

from xentrace_cli.model import Sources
from xentrace_cli.report.terminal import render_analysis
from xentrace_cli.result import Analysis


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
