"""The terminal table of ``xenlat check``: budget, measured, limit, verdict (rich)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

#: Verdict → rich style (colour shows only when the console is a terminal).
VERDICT_STYLES: dict[str, str] = {
    "pass": "green", "fail": "bold red", "not measured": "bold red", "skipped": "yellow",
}


def render_gate(result: Any, console: Any) -> None:
    """Print a ``gate.GateResult`` as one table, the verdict line and the baseline rule."""
    table = Table(title="xenlat check", title_justify="left", show_lines=False)
    table.add_column("check", overflow="fold")
    table.add_column("measured", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("verdict")
    for check in result.checks:
        limit = check.limit
        if limit.source == "baseline":
            name, bound = limit.name, f"≤ {limit.format_value(limit.value)}"
            saved = limit.format_value(limit.baseline_value)
        else:
            name, bound, saved = limit.text, limit.bound, ""
        table.add_row(Text(name), Text(limit.format_value(check.measured)), Text(bound),
                      Text(saved),
                      Text(check.verdict, style=VERDICT_STYLES.get(check.verdict, "")))
    console.print(table)
    for check in result.checks:
        if check.verdict != "pass":
            console.print(Text(f"{check.verdict}: {check.message}",
                               style=VERDICT_STYLES.get(check.verdict, "")))
            for packet in check.worst:
                console.print(Text(f"  worst: {packet}"))
    if result.budgets_file is not None:
        console.print(Text(f"budgets from {result.budgets_file}"))
    if result.baseline is not None:
        console.print(Text(result.baseline.describe()))
    verdict = "PASSED" if result.passed else "FAILED"
    console.print(Text(f"{verdict}: {result.summary}",
                       style="bold green" if result.passed else "bold red"))
