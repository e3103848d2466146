"""The verdict of ``xenlat check``: each limit against measured statistics, and its outputs.

:func:`evaluate` compares an :class:`~xentrace_cli.pipeline.result.Analysis` — or a plain statistics
mapping, ``{"ring": {"p99": …, "count": …}, "tx.ring": …}`` as ``stats.stage_stats`` gives —
with limits and returns a :class:`GateResult`, whose outputs (JSON, JUnit, GitHub
annotations) are byte-identical for the same inputs: no "now" timestamps, fixed ordering,
values rounded to 1 ns. Statistics are computed for exactly what the limits name, any
percentile included.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd

from ...model import STAGES, TX_STAGES, Sources, format_flow, stage_column
from ...pipeline.result import Analysis
from ...pipeline.stats import COUNT_STATISTICS, direction_rows, stage_stats
from ...units import format_duration
from .baseline import round_value
from .grammar import OPERATORS, Limit

#: How many of the worst packets a failing check names.
WORST_PACKETS: int = 3
#: A duration statistic may lie this far (µs) below 0 beyond its packets' uncertainty and
#: still be a measurement: the resolution of a µs capture.
NEGATIVE_SLACK_US: float = 1.0
#: A statistics mapping: key → statistic → value.
Stats = Mapping[str, Mapping[str, Any]]

_SHOWN_RELATION = {-1: "<", 0: "=", 1: ">"}
_DIRECTION_WORD = {"rx": "received", "tx": "transmitted"}


@dataclasses.dataclass(frozen=True)
class Check:
    """The outcome of one limit."""

    limit: Limit
    measured: float | None
    """The statistic (None when the stage has no measurement)."""
    verdict: str
    """``pass``, ``fail``, ``not measured`` (a failure) or ``skipped`` (optional, unmeasured)."""
    message: str
    """One line saying what was compared and why it passed or failed."""
    worst: tuple[str, ...] = ()
    """The worst packets of the stage, described, when the check failed."""

    @property
    def failed(self) -> bool:
        """Whether this check breaks the gate."""
        return self.verdict in ("fail", "not measured")


@dataclasses.dataclass
class BaselineInfo:
    """Which baseline a result was compared with, and how."""

    file: str
    tolerance: float
    floor_us: float
    stats: tuple[str, ...]
    stages: tuple[str, ...] = ()
    """The statistics keys compared, in order."""

    def describe(self) -> str:
        """One sentence for the output."""
        return (f"baseline {self.file}: {', '.join(self.stats)} per stage may grow by "
                f"{self.tolerance:.0%} and, below that, by {format_duration(self.floor_us)} "
                f"(smaller changes are not regressions)")


@dataclasses.dataclass
class GateResult:
    """The verdict of ``xenlat check``."""

    checks: list[Check]
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    baseline: BaselineInfo | None = None
    packets: int = 0
    budgets_file: str | None = None
    """The budgets file the limits came from, if any (said, since ``check`` finds one by
    itself)."""

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return not any(check.failed for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        """The checks that break the gate."""
        return [check for check in self.checks if check.failed]

    @property
    def skipped(self) -> int:
        """How many optional checks found their stage unmeasured."""
        return sum(check.verdict == "skipped" for check in self.checks)

    @property
    def summary(self) -> str:
        """``2 of 3 checks passed, 1 failed``."""
        failed, skipped = len(self.failures), self.skipped
        passed = len(self.checks) - failed - skipped
        text = f"{passed} of {len(self.checks)} checks passed"
        if failed:
            text += f", {failed} failed"
        if skipped:
            text += f", {skipped} skipped"
        return text

    def annotations(self) -> list[str]:
        """GitHub Actions workflow commands, one ``::error`` line per failed check."""
        lines = []
        for check in self.failures:
            title = f"xenlat {check.limit.source}: {check.limit.text}"
            text = check.message
            if check.worst:
                text += f" (worst packets: {'; '.join(check.worst)})"
            lines.append(f"::error title={_escape_property(title)}::{_escape_data(text)}")
        return lines

    def to_document(self) -> dict[str, Any]:
        """The JSON document of ``check --format json``."""
        return {
            "passed": self.passed,
            "summary": self.summary,
            "packets": self.packets,
            "sources": dict(self.sources),
            "budgets_file": self.budgets_file,
            "baseline": None if self.baseline is None else {
                "file": self.baseline.file, "tolerance": self.baseline.tolerance,
                "floor_us": self.baseline.floor_us, "stats": list(self.baseline.stats),
                "stages": list(self.baseline.stages), "rule": self.baseline.describe(),
            },
            "checks": [{
                "name": check.limit.name,
                "text": check.limit.text,
                "source": check.limit.source,
                "stage": check.limit.stage,
                "stat": check.limit.stat,
                "op": check.limit.op,
                "limit": round_value(check.limit.value),
                "baseline_value": round_value(check.limit.baseline_value),
                "unit": "count" if check.limit.is_count else "us",
                "optional": check.limit.optional,
                "measured": round_value(check.measured),
                "verdict": check.verdict,
                "message": check.message,
                "worst_packets": list(check.worst),
            } for check in self.checks],
        }

    def to_junit(self) -> str:
        """JUnit XML: one testsuite, one testcase per check (valid against junit-10.xsd)."""
        out = ['<?xml version="1.0" encoding="UTF-8"?>',
               f'<testsuite name="xenlat check" tests="{len(self.checks)}" '
               f'failures="{len(self.failures)}" errors="0" skipped="{self.skipped}">',
               "  <properties>"]
        properties = [(f"source.{name}", value) for name, value in self.sources.items()]
        properties.append(("packets", str(self.packets)))
        if self.budgets_file is not None:
            properties.append(("budgets_file", self.budgets_file))
        if self.baseline is not None:
            properties.append(("baseline", self.baseline.describe()))
        for name, value in properties:
            out.append(f"    <property name={quoteattr(name)} value={quoteattr(value)}/>")
        out.append("  </properties>")
        for check in self.checks:
            head = (f'  <testcase classname="xenlat.{check.limit.source}" '
                    f"name={quoteattr(check.limit.text)}")
            if check.verdict == "pass":
                out.append(f"{head}/>")
                continue
            out.append(f"{head}>")
            if check.verdict == "skipped":
                out.append(f"    <skipped message={quoteattr(check.message)}/>")
            else:
                body = [check.message, f"measured: {check.limit.format_value(check.measured)}",
                        f"limit: {check.limit.bound}"]
                if check.limit.baseline_value is not None:
                    body.append(f"baseline: {check.limit.format_value(check.limit.baseline_value)}")
                body.extend(f"worst packet: {packet}" for packet in check.worst)
                kind = "not-measured" if check.verdict == "not measured" else check.limit.source
                out.append(f"    <failure type={quoteattr(kind)} "
                           f"message={quoteattr(check.message)}>{escape(chr(10).join(body))}"
                           "</failure>")
            out.append("  </testcase>")
        out.append("</testsuite>")
        return "\n".join(out) + "\n"


def evaluate(analysis: Analysis | Stats, limits: Sequence[Limit],
             baseline: BaselineInfo | None = None, *,
             budgets_file: str | None = None) -> GateResult:
    """Compare an analysis (or a statistics mapping) with every limit, in order."""
    if not isinstance(analysis, Analysis):
        return evaluate_stats(analysis, limits, baseline=baseline, budgets_file=budgets_file)
    table = analysis.table
    return evaluate_stats(limit_stats(table, limits), limits, table=table,
                          sources=analysis.sources, packets=len(table), baseline=baseline,
                          budgets_file=budgets_file)


def limit_stats(table: pd.DataFrame, limits: Sequence[Limit]) -> dict[str, dict[str, Any]]:
    """The statistics ``limits`` compare, computed from an analysis table."""
    keys = list(dict.fromkeys(limit.stage for limit in limits))
    return stage_stats(table, keys, [limit.stat for limit in limits])


def evaluate_stats(stats: Stats, limits: Sequence[Limit], *, table: pd.DataFrame | None = None,
                   sources: Sources | None = None, packets: int = 0,
                   baseline: BaselineInfo | None = None,
                   budgets_file: str | None = None) -> GateResult:
    """Compare statistics with every limit, in order. ``table`` (the analysis table the
    statistics come from) lets a failing check name its worst packets."""
    checks = [_check(stats, limit, table) for limit in limits]
    return GateResult(
        checks=checks,
        sources={} if sources is None else {
            name: Path(str(getattr(sources, name))).name for name in sources.present},
        baseline=_baseline_info(limits) if baseline is None else baseline,
        packets=int(packets), budgets_file=budgets_file)


def _baseline_info(limits: Sequence[Limit]) -> BaselineInfo | None:
    """How the baseline comparisons among ``limits`` were made (for the output's explanation)."""
    compared = [lim for lim in limits if lim.source == "baseline"]
    if not compared:
        return None
    first = compared[0]
    return BaselineInfo(file=first.baseline_file or "", tolerance=first.tolerance or 0.0,
                        floor_us=first.floor_us or 0.0,
                        stats=tuple(dict.fromkeys(lim.stat for lim in compared)),
                        stages=tuple(dict.fromkeys(lim.stage for lim in compared)))


def _check(stats: Stats, limit: Limit, table: pd.DataFrame | None) -> Check:
    entry = stats.get(limit.stage)
    count = 0 if entry is None else int(entry.get("count") or 0)
    if entry is None or (limit.stat != "count" and count == 0):
        reason = _why_not_measured(table, limit)
        if limit.optional:
            return Check(limit, None, "skipped", f"{limit.name} not measured ({reason}); "
                         "skipped: the budget is optional")
        return Check(limit, None, "not measured",
                     f"{limit.name} not measured ({reason}); add the missing source or mark "
                     "the budget optional")
    measured = entry.get(limit.stat)
    if measured is None or not math.isfinite(float(measured)):
        return Check(limit, None, "not measured", f"{limit.name} not measured: the statistics "
                     f"hold no {limit.stat} for {limit.stage}")
    value = float(measured)
    slack = 0.0 if value >= 0 else _negative_slack_us(table, limit)  # (a pass over the table)
    if limit.stat not in COUNT_STATISTICS and value < -slack:
        # no latency is negative beyond its uncertainty: the clocks or the captures' roles
        # are wrong, so the stage was not measured, whatever the bound says (and whether or
        # not it is optional)
        return Check(limit, None, "not measured",
                     f"{limit.name} not measured: it came out negative "
                     f"({format_duration(value)}, beyond its uncertainty "
                     f"±{format_duration(slack)}), which no latency is; the sources' clocks or "
                     "capture points do not fit (see the analysis notes)")
    ok = OPERATORS[limit.op](value, limit.value)
    if ok:
        return Check(limit, value, "pass", _message(limit, value, ok))
    worst = () if table is None else _worst_packets(table, limit)
    return Check(limit, value, "fail", _message(limit, value, ok), worst)


def _negative_slack_us(table: pd.DataFrame | None, limit: Limit) -> float:
    """How far below 0 a duration statistic may lie and still be a measurement: the largest
    uncertainty of the packets it summarizes, plus the 1 µs of a capture's resolution (what
    the analysis itself lets through); 1 µs without a table."""
    column = stage_column(limit.stage_name)
    if table is None or "uncertainty_us" not in table.columns or column not in table.columns:
        return NEGATIVE_SLACK_US
    rows = direction_rows(table, limit.direction) & table[column].notna().to_numpy()
    uncertainty = pd.to_numeric(table["uncertainty_us"], errors="coerce").to_numpy(float)[rows]
    uncertainty = uncertainty[~np.isnan(uncertainty)]
    return (float(uncertainty.max()) if uncertainty.size else 0.0) + NEGATIVE_SLACK_US


def _message(limit: Limit, value: float, ok: bool) -> str:
    shown = f"{limit.name} = {limit.format_value(value)}"
    if limit.source != "baseline":
        relation = _SHOWN_RELATION[int(np.sign(value - limit.value))]
        return f"{shown} {relation} {limit.format_value(limit.value)}"
    detail = (f"baseline {limit.format_value(limit.baseline_value)}, limit "
              f"{limit.format_value(limit.value)}")
    return (f"{shown} {'within' if ok else 'regressed beyond'} the baseline ({detail}: "
            f"+{limit.tolerance or 0:.0%}, at least +{format_duration(limit.floor_us)})")


def _why_not_measured(table: pd.DataFrame | None, limit: Limit) -> str:
    if table is None:
        return "not among the statistics given"
    way, name = limit.direction, limit.stage_name
    column = stage_column(name)
    if column not in table.columns:
        return f"no {column} column: the sources given do not cover this stage"
    if len(table) == 0:
        return "the analysis has no packet"
    if not direction_rows(table, way).any():
        return f"the analysis has no {_DIRECTION_WORD[way]} packet"
    packet = "packet" if way == "rx" else f"{_DIRECTION_WORD[way]} packet"
    stages = STAGES if way == "rx" else TX_STAGES
    if name in stages:
        start, end = stages[name]
        return f"no {packet} has both its {start} and {end} checkpoints"
    if name == "total":
        return f"no {packet} has two checkpoints: one capture alone gives no stage"
    return f"no {packet} has this interval"


def _worst_packets(table: pd.DataFrame, limit: Limit) -> tuple[str, ...]:
    column = stage_column(limit.stage_name)
    if column not in table.columns or limit.stat == "count" or len(table) == 0:
        return ()
    values = pd.to_numeric(table[column], errors="coerce")
    values = values[direction_rows(table, limit.direction)]
    if limit.op in (">", ">="):  # a lower bound broke: the fastest packets are the story
        picked = values.nsmallest(WORST_PACKETS)
    else:
        picked = values.nlargest(WORST_PACKETS)
    rows = table.loc[picked.index]
    return tuple(describe_packet(row, values.loc[index])
                 for (index, row) in rows.iterrows())


def describe_packet(row: pd.Series, value_us: float | None = None) -> str:
    """``10.0.0.2:11211→10.0.0.1:40000 seq 1234 len 100: 103 ms (vcpu_runnable)``."""
    def get(name: str) -> Any:
        value = row.get(name)
        return "?" if value is None or (isinstance(value, float) and math.isnan(value)) \
            or value is pd.NA else value
    text = (f"{format_flow(get('src'), get('sport'), get('dst'), get('dport'), '→')} "
            f"seq {get('seq')} len {get('len')}")
    if value_us is not None and not (isinstance(value_us, float) and math.isnan(value_us)):
        text += f": {format_duration(float(value_us))}"
    cause = row.get("cause")
    if isinstance(cause, str) and cause:
        text += f" ({cause})"
    return text


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
