"""The terminal view of ``xenlat check --dataset``: one line per set, then what failed (rich)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from ..outputs.gate_table import VERDICT_STYLES, render_gate


def render_fleet_gate(result: Any, console: Any) -> None:
    """Print a ``fleet_gate.FleetGateResult``: a table of the sets, each failed check with its
    worst packets, the pooled checks as ``check`` shows them, and the verdict line."""
    table = Table(title="xenlat check --dataset", title_justify="left")
    table.add_column("set", overflow="fold")
    table.add_column("Xen host")
    table.add_column("date")
    table.add_column("packets", justify="right")
    table.add_column("checks", justify="right")
    table.add_column("verdict")
    for verdict in result.sets:
        summary, gate_result = verdict.summary, verdict.result
        failed = len(gate_result.failures)
        word = "fail" if failed else "pass"
        table.add_row(Text(f"{summary['set']} {str(summary['set_id'])[:8]}"),
                      Text(str(summary["xen_host"])), Text(str(summary["date"])),
                      Text(str(int(summary["packets"]))),
                      Text(f"{len(gate_result.checks) - failed}/{len(gate_result.checks)}"),
                      Text(word, style=VERDICT_STYLES[word]))
    console.print(table)
    for verdict in result.failed_sets:
        for check in verdict.result.failures:
            console.print(Text(f"{verdict.label}: {check.verdict}: {check.message}",
                               style=VERDICT_STYLES.get(check.verdict, "")))
            for packet in check.worst:
                console.print(Text(f"  worst: {packet}"))
    if result.pooled is not None:
        console.print(Text("all sets together:"))
        render_gate(result.pooled, console)
    word = "PASSED" if result.passed else "FAILED"
    console.print(Text(f"{word}: {result.summary}",
                       style="bold green" if result.passed else "bold red"))
