"""The CI gate: budgets, baselines, the verdict of ``xenlat check``, JUnit XML and annotations.

A *limit* is one comparison of a measured stage statistic with a bound. Limits come from
budgets (``'socket_read.p99 < 2ms'``, on the command line or in a TOML file) and from a saved
baseline (each compared statistic may grow by the tolerance, and always by a small absolute
floor). :func:`evaluate` turns an :class:`~xentrace_cli.result.Analysis` and limits into a
:class:`GateResult`, whose outputs (JSON, JUnit, GitHub annotations) are byte-identical for the
same inputs: no "now" timestamps, fixed ordering, values rounded to 1 ns.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd

from .errors import InputError, check_readable
from .model import (
    CHECKPOINTS,
    LONE_INTERVALS,
    STAGES,
    TX_CHECKPOINTS,
    format_flow,
    stage_column,
    stat_key,
)
from .stats import STATISTICS, direction_rows, stage_stats
from .units import format_duration, parse_duration_us

#: Comparison operators a budget may use.
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
}
#: Statistics that count packets (unitless); the others are durations in µs.
COUNT_STATISTICS: frozenset[str] = frozenset({"count", "anomalies"})
#: Statistics a baseline comparison checks by default.
BASELINE_STATISTICS: tuple[str, ...] = ("p50", "p90", "p99", "max")
#: A baseline statistic may always grow by this much (µs), whatever the tolerance: clock
#: resolution and scheduling noise make a 3 µs → 4 µs change meaningless.
BASELINE_FLOOR_US: float = 20.0
#: Default allowed regression against a baseline (a fraction).
DEFAULT_TOLERANCE: float = 0.20
#: How many of the worst packets a failing check names.
WORST_PACKETS: int = 3
#: Identifies a baseline document and its layout version.
BASELINE_KIND = "xenlat-baseline"
BASELINE_FORMAT = 1

#: A budgets file's ``[baseline]``: path, tolerance, floor (µs), statistics compared.
FileBaseline = tuple[Path, float, float, tuple[str, ...]]

_BUDGET = re.compile(r"^(?P<stage>[A-Za-z0-9_]+)\.(?P<stat>[A-Za-z0-9.]+)\s*"
                     r"(?P<op><=|>=|==|<|>)\s*(?P<value>[^<>=\s].*)$")
_OPTIONAL = re.compile(r"\s+optional$", re.IGNORECASE)
_SHOWN_RELATION = {-1: "<", 0: "=", 1: ">"}


@dataclasses.dataclass(frozen=True)
class Limit:
    """One comparison the gate makes: ``<stage>.<stat> <op> <value>``."""

    stage: str
    """A stage of ``model.STAGES``, ``total``, or a merged interval ``<from>_to_<to>``."""
    stat: str
    """One of ``stats.STATISTICS``."""
    op: str
    """One of ``OPERATORS``."""
    value: float
    """The bound: µs for durations, a number for ``count``/``anomalies``."""
    text: str
    """How the user wrote it (budgets) or how the baseline comparison reads."""
    source: str = "budget"
    """``budget`` or ``baseline``."""
    optional: bool = False
    """When the stage is not measured, skip instead of failing."""
    baseline_value: float | None = None
    """For baseline comparisons: the saved value the bound derives from."""
    tolerance: float | None = None
    """For baseline comparisons: the allowed relative growth."""
    floor_us: float | None = None
    """For baseline comparisons: the growth always allowed (µs)."""
    baseline_file: str | None = None
    """For baseline comparisons: the file the saved value comes from."""

    @property
    def name(self) -> str:
        """``socket_read.p99``."""
        return f"{self.stage}.{self.stat}"

    @property
    def is_count(self) -> bool:
        """True for unitless statistics."""
        return self.stat in COUNT_STATISTICS

    def format_value(self, value: float | None) -> str:
        """A value of this limit's statistic, as people read it."""
        if value is None:
            return "–"
        if self.is_count:
            return f"{value:g}"
        return format_duration(value)

    @property
    def bound(self) -> str:
        """``< 2.00 ms``."""
        return f"{self.op} {self.format_value(self.value)}"


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
            "baseline": None if self.baseline is None else {
                "file": self.baseline.file, "tolerance": self.baseline.tolerance,
                "floor_us": self.baseline.floor_us, "stats": list(self.baseline.stats),
                "rule": self.baseline.describe(),
            },
            "checks": [{
                "name": check.limit.name,
                "text": check.limit.text,
                "source": check.limit.source,
                "stage": check.limit.stage,
                "stat": check.limit.stat,
                "op": check.limit.op,
                "limit": _round(check.limit.value),
                "baseline_value": _round(check.limit.baseline_value),
                "unit": "count" if check.limit.is_count else "us",
                "optional": check.limit.optional,
                "measured": _round(check.measured),
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


# ---------------------------------------------------------------------------------------------
# Budgets


def parse_budget(text: str) -> Limit:
    """``'socket_read.p99 < 2ms'`` (optionally ending in ``optional``) → a Limit.

    Raises ValueError naming what is wrong.
    """
    stripped = text.strip()
    optional = bool(_OPTIONAL.search(stripped))
    if optional:
        stripped = _OPTIONAL.sub("", stripped)
    match = _BUDGET.match(stripped)
    if not match:
        raise ValueError(f"budget {text!r}: write STAGE.STAT OP VALUE, e.g. "
                         "'socket_read.p99 < 2ms' (OP one of < <= > >= ==)")
    stage, stat, op, value_text = match.group("stage", "stat", "op", "value")
    _check_stage(stage, f"budget {text!r}")
    if stat not in STATISTICS:
        raise ValueError(f"budget {text!r}: unknown statistic {stat!r}; one of: "
                         f"{', '.join(STATISTICS)}")
    value_text = value_text.strip()
    if stat in COUNT_STATISTICS:
        try:
            value = float(value_text)
        except ValueError:
            raise ValueError(f"budget {text!r}: {stat} is a number of packets, not "
                             f"{value_text!r}") from None
    else:
        try:
            value = parse_duration_us(value_text)
        except ValueError as exc:
            raise ValueError(f"budget {text!r}: {exc}") from None
    if not math.isfinite(value):
        raise ValueError(f"budget {text!r}: the limit must be a finite number")
    return Limit(stage=stage, stat=stat, op=op, value=value, text=f"{stage}.{stat} {op} "
                 f"{value_text}" + (" optional" if optional else ""), optional=optional)


def _check_stage(stage: str, context: str) -> None:
    if stage in STAGES or stage == "total" or stage in LONE_INTERVALS:
        return
    if "_to_" in stage:
        points = set(CHECKPOINTS) | set(TX_CHECKPOINTS)
        for i in (m.start() for m in re.finditer("_to_", stage)):
            if stage[:i] in points and stage[i + 4:] in points:
                return
    raise ValueError(f"{context}: unknown stage {stage!r}; one of: {', '.join(STAGES)}, total, "
                     "request_to_response, response_to_next (one capture alone), or a merged "
                     "interval such as backend_to_guest")


def parse_tolerance(text: str) -> float:
    """``'20%'`` → 0.2. Raises ValueError."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%\s*", str(text))
    if not match:
        raise ValueError(f"tolerance {text!r}: write a percentage, e.g. 20%")
    return float(match.group(1)) / 100.0


def collect_budgets(budget_strings: Iterable[str], budgets_file: str | Path | None,
                    baseline_file: str | Path | None, tolerance: str | None) -> list[Limit]:
    """Every limit of a ``check``: ``--budget`` strings, then the TOML file, then the baseline.

    ``--baseline`` replaces a baseline the TOML file names (and ``tolerance`` goes with it).
    Raises ValueError for malformed budgets (usage error) and ``InputError`` for a file that
    cannot be read (unreadable input).
    """
    limits = [parse_budget(text) for text in budget_strings]
    file_baseline: FileBaseline | None = None
    if budgets_file is not None:
        file_limits, file_baseline = read_budgets_file(budgets_file)
        limits.extend(file_limits)
    if baseline_file is not None:
        tol = parse_tolerance(tolerance) if tolerance else DEFAULT_TOLERANCE
        limits.extend(baseline_limits(load_baseline(baseline_file), tol, BASELINE_FLOOR_US,
                                      BASELINE_STATISTICS, str(baseline_file)))
    elif file_baseline is not None:
        path, tol, floor_us, stats = file_baseline
        limits.extend(baseline_limits(load_baseline(path), tol, floor_us, stats, str(path)))
    return limits


def read_budgets_file(path: str | Path) -> tuple[list[Limit], FileBaseline | None]:
    """A budgets TOML file → its limits and its ``[baseline]`` (path, tolerance, floor, stats).

    Layout (docs/ci-example.md)::

        [budgets]
        "socket_read.p99" = "< 2ms"
        "total.max" = ["< 50ms", "> 1us"]
        "remap.p99" = "< 500us optional"

        [baseline]
        file = "baseline.json"        # relative to this file's directory
        tolerance = "20%"
        floor = "20us"
        stats = ["p50", "p90", "p99", "max"]
    """
    path = Path(path)
    try:
        document = tomllib.loads(_read_text(path, "not a TOML text file (not UTF-8)"))
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11 puts the position only in the text: "Invalid value (at line 2, column 7)"
        where = re.search(r"\s*\(at line (\d+), column \d+\)$", str(exc))
        problem = str(exc)[:where.start()] if where else str(exc)
        raise InputError(path, f"not valid TOML: {problem}",
                         line=int(where.group(1)) if where else None) from None
    unknown = set(document) - {"budgets", "baseline"}
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; "
                         "expected [budgets] and [baseline]")
    limits: list[Limit] = []
    budgets = document.get("budgets", {})
    if not isinstance(budgets, dict):
        raise ValueError(f"{path}: [budgets] must be a table of \"stage.stat\" = \"< value\"")
    for key, spec in budgets.items():
        for bound in spec if isinstance(spec, list) else [spec]:
            if not isinstance(bound, str):
                raise ValueError(f"{path}: [budgets] {key!r}: write the bound as a string, "
                                 "e.g. \"< 2ms\"")
            try:
                limits.append(parse_budget(f"{key} {bound}"))
            except ValueError as exc:
                raise ValueError(f"{path}: [budgets] {exc}") from None
    baseline = document.get("baseline")
    if baseline is None:
        return limits, None
    if not isinstance(baseline, dict) or "file" not in baseline:
        raise ValueError(f"{path}: [baseline] needs file = \"baseline.json\"")
    unknown = set(baseline) - {"file", "tolerance", "floor", "stats"}
    if unknown:
        raise ValueError(f"{path}: [baseline] unknown key(s) {', '.join(sorted(unknown))}")
    try:
        tol = parse_tolerance(baseline.get("tolerance", f"{DEFAULT_TOLERANCE:.0%}"))
        floor_us = parse_duration_us(str(baseline.get("floor", f"{BASELINE_FLOOR_US}us")))
    except ValueError as exc:
        raise ValueError(f"{path}: [baseline] {exc}") from None
    stats = tuple(baseline.get("stats", BASELINE_STATISTICS))
    bad = [s for s in stats if s not in STATISTICS or s in COUNT_STATISTICS]
    if bad or not stats:
        raise ValueError(f"{path}: [baseline] stats: {bad or 'empty'}; choose among "
                         f"{', '.join(s for s in STATISTICS if s not in COUNT_STATISTICS)}")
    file = Path(str(baseline["file"]))
    if not file.is_absolute():
        file = path.parent / file
    return limits, (file, tol, floor_us, stats)


# ---------------------------------------------------------------------------------------------
# Baselines


def measured_stats(analysis: Any) -> dict[str, dict[str, float | int | None]]:
    """Stage statistics of an analysis, with the merged intervals (``<from>_to_<to>_us``) and
    the lone-capture intervals (``request_to_response_us``, ``response_to_next_us``)."""
    table: pd.DataFrame = analysis.table
    result = dict(analysis.stats)
    # the table has every interval's column (a fixed schema): those these sources measure,
    # per direction
    for way in ("rx", "tx"):
        rows = direction_rows(table, way)
        merged = sorted(stat_key(c[:-3], way) for c in table.columns
                        if c.endswith("_us") and "_to_" in c
                        and stat_key(c[:-3], way) not in result and table[c][rows].notna().any())
        result.update(stage_stats(table, merged))
    return result


def baseline_document(analysis: Any) -> dict[str, Any]:
    """What ``xenlat baseline`` saves: stage statistics, source names, version; no date."""
    from . import __version__

    return {
        "kind": BASELINE_KIND,
        "format": BASELINE_FORMAT,
        "xenlat_version": __version__,
        "sources": {name: Path(str(getattr(analysis.sources, name))).name
                    for name in analysis.sources.present},
        "packets": int(len(analysis.table)),
        "stages": {stage: {stat: _round(value) for stat, value in entry.items()}
                   for stage, entry in measured_stats(analysis).items()},
    }


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read a baseline document; ``InputError`` when it is not one."""
    path = Path(path)
    try:
        document = json.loads(_read_text(path, "not a baseline (not UTF-8 text)"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not a baseline: invalid JSON ({exc.msg})",
                         line=exc.lineno) from None
    if (not isinstance(document, dict) or document.get("kind") != BASELINE_KIND
            or not isinstance(document.get("stages"), dict)):
        raise InputError(path, "not a baseline written by 'xenlat baseline'")
    if document.get("format") != BASELINE_FORMAT:
        raise InputError(path, f"baseline format {document.get('format')!r} is not "
                         f"{BASELINE_FORMAT}; rewrite it with this xenlat's 'xenlat baseline'")
    return document


def baseline_limits(document: dict[str, Any], tolerance: float, floor_us: float,
                    stats: Sequence[str], file: str) -> list[Limit]:
    """One limit per (stage, statistic) the baseline measured: ``≤ max(b·(1+tol), b+floor)``."""
    limits = []
    # path order (the saved document's keys are sorted): stages, other intervals, total
    stages = sorted(document["stages"], key=lambda name: (
        0 if name in STAGES else 2 if name == "total" else 1,
        list(STAGES).index(name) if name in STAGES else 0, name))
    for stage in stages:
        entry = document["stages"][stage]
        if not isinstance(entry, dict):
            raise InputError(file, f"baseline stage {stage!r} is not a table of statistics")
        for stat in stats:
            saved = entry.get(stat)
            if not isinstance(saved, (int, float)) or not math.isfinite(saved):
                continue  # not measured in the baseline: nothing to compare with
            bound = max(saved * (1.0 + tolerance), saved + floor_us)
            limits.append(Limit(
                stage=stage, stat=stat, op="<=", value=bound, source="baseline",
                baseline_value=float(saved), tolerance=tolerance, floor_us=floor_us,
                baseline_file=file,
                text=f"{stage}.{stat} vs baseline"))  # stable across baseline refreshes
    return limits


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate(analysis: Any, limits: Sequence[Limit],
             baseline: BaselineInfo | None = None) -> GateResult:
    """Compare an analysis with every limit, in order."""
    stats = measured_stats(analysis)
    checks = [_check(analysis.table, stats, limit) for limit in limits]
    if baseline is None:
        baseline = _baseline_info(limits)
    return GateResult(
        checks=checks,
        sources={name: Path(str(getattr(analysis.sources, name))).name
                 for name in analysis.sources.present},
        baseline=baseline, packets=int(len(analysis.table)))


def _baseline_info(limits: Sequence[Limit]) -> BaselineInfo | None:
    """How the baseline comparisons among ``limits`` were made (for the output's explanation)."""
    compared = [lim for lim in limits if lim.source == "baseline"]
    if not compared:
        return None
    first = compared[0]
    return BaselineInfo(file=first.baseline_file or "", tolerance=first.tolerance or 0.0,
                        floor_us=first.floor_us or 0.0,
                        stats=tuple(dict.fromkeys(lim.stat for lim in compared)))


def _check(table: pd.DataFrame, stats: dict[str, dict[str, Any]], limit: Limit) -> Check:
    entry = stats.get(limit.stage)
    count = 0 if entry is None else int(entry.get("count") or 0)
    measured = None if entry is None else entry.get(limit.stat)
    if limit.stat != "count" and count == 0:
        reason = _why_not_measured(table, limit.stage)
        if limit.optional:
            return Check(limit, None, "skipped", f"{limit.name} not measured ({reason}); "
                         "skipped: the budget is optional")
        return Check(limit, None, "not measured",
                     f"{limit.name} not measured ({reason}); add the missing source or mark "
                     "the budget optional")
    value = float(measured if measured is not None else 0)
    if limit.stat not in ("count", "anomalies") and value < 0:
        # no latency is negative: the clocks or the captures' roles are wrong, so the stage
        # was not measured, whatever the bound says (and whether or not it is optional)
        return Check(limit, None, "not measured",
                     f"{limit.name} not measured: it came out negative "
                     f"({format_duration(value)}), which no latency is; the sources' clocks "
                     "or capture points do not fit (see the analysis notes)")
    ok = OPERATORS[limit.op](value, limit.value)
    relation = _SHOWN_RELATION[int(np.sign(value - limit.value))]
    shown = f"{limit.name} = {limit.format_value(value)}"
    if limit.source == "baseline":
        detail = (f"baseline {limit.format_value(limit.baseline_value)}, limit "
                  f"{limit.format_value(limit.value)}")
        message = (f"{shown} {'within' if ok else 'regressed beyond'} the baseline ({detail}: "
                   f"+{limit.tolerance or 0:.0%}, at least +{format_duration(limit.floor_us)})")
    else:
        message = f"{shown} {relation} {limit.format_value(limit.value)}"
    if ok:
        return Check(limit, value, "pass", message)
    return Check(limit, value, "fail", message, _worst_packets(table, limit))


def _why_not_measured(table: pd.DataFrame, stage: str) -> str:
    column = stage_column(stage)
    if column not in table.columns:
        return f"no {column} column: the sources given do not cover this stage"
    if len(table) == 0:
        return "the analysis has no packet"
    if stage in STAGES:
        start, end = STAGES[stage]
        return f"no packet has both its {start} and {end} checkpoints"
    if stage == "total":
        return "no packet has two checkpoints: one capture alone gives no stage"
    return "no packet has this interval"


def _worst_packets(table: pd.DataFrame, limit: Limit) -> tuple[str, ...]:
    column = stage_column(limit.stage)
    if column not in table.columns or limit.stat == "count" or len(table) == 0:
        return ()
    values = pd.to_numeric(table[column], errors="coerce")
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


# ---------------------------------------------------------------------------------------------
# Helpers


def _read_text(path: Path, not_utf8: str) -> str:
    """A readable UTF-8 file's text; ``InputError`` (``not_utf8``, at the bad byte) otherwise."""
    check_readable(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, not_utf8, offset=exc.start) from None


def _round(value: Any) -> float | int | None:
    """Round µs values to 1 ns so that documents do not depend on float noise."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, 3)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
