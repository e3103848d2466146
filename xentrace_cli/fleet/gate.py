"""``xenlat check --dataset``: the CI gate over every set of a fleet dataset.

The same limits as ``xenlat check`` (``gate.parse_budget``, budgets files, baselines), judged
the same way (``gate.evaluate``), twice over: on each set of the dataset alone (its packet
rows, read back from the dataset: the statistics are those ``check`` gives the set's sources),
and, for the ``--budget-all`` limits, on the packets of all the sets pooled (a p99 over the
fleet, not a p99 of p99s). The outcome keeps one ``gate.GateResult`` per set and one for the
pool; the JUnit file has one test suite per set and one for the pool, one test case per set
and limit, each as ``check`` writes it.

The pooled check reads only the columns its limits need (plus the direction, the anomaly
labels and what names a packet), so its memory grows with the number of packets, not with
the width of the table.
"""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..model import Sources, split_stat_key, stage_column
from ..outputs import gate
from ..pipeline.result import Analysis
from .dataset import read_set_packets, read_summaries, select_sets

#: Columns the pooled check reads besides its limits' own: direction and anomaly labels (the
#: statistics), and what names a packet (the worst packets of a failed check).
POOLED_COLUMNS: tuple[str, ...] = ("direction", "anomaly", "cause", "src", "sport", "dst",
                                   "dport", "seq", "len", "total_us")


@dataclasses.dataclass
class SetVerdict:
    """The gate's result on one set of the dataset."""

    summary: dict[str, Any]
    """The set's row of the ``sets`` table (``set``, ``set_id``, ``xen_host``, ``date`` …)."""
    result: gate.GateResult

    @property
    def label(self) -> str:
        """``s1 (xen-a 2026-12-06, 34c04857)``: the set's name, host, date and identity."""
        s = self.summary
        return f"{s['set']} ({s['xen_host']} {s['date']}, {str(s['set_id'])[:8]})"


@dataclasses.dataclass
class FleetGateResult:
    """The verdict of ``xenlat check --dataset``."""

    dataset: str
    sets: list[SetVerdict]
    pooled: gate.GateResult | None = None
    """The ``--budget-all`` limits on all the sets' packets together (None without any)."""

    @property
    def results(self) -> list[gate.GateResult]:
        """Every gate result, the sets' then the pool's."""
        return [v.result for v in self.sets] + ([self.pooled] if self.pooled else [])

    @property
    def passed(self) -> bool:
        """True when no check of any set, nor of the pool, failed."""
        return all(r.passed for r in self.results)

    @property
    def failed_sets(self) -> list[SetVerdict]:
        """The sets with a failed check."""
        return [v for v in self.sets if not v.result.passed]

    @property
    def summary(self) -> str:
        """``2 of 3 sets passed, 1 failed; all sets: 1 of 1 checks passed``."""
        text = f"{len(self.sets) - len(self.failed_sets)} of {len(self.sets)} sets passed"
        if self.failed_sets:
            text += f", {len(self.failed_sets)} failed"
        if self.pooled is not None:
            text += f"; all sets: {self.pooled.summary}"
        return text

    def annotations(self) -> list[str]:
        """``gate``'s ``::error`` lines, each message saying which set (or the pool) broke."""
        lines = []
        for label, result in self._labelled():
            for line in result.annotations():
                head, sep, text = line.partition("::")[2].partition("::")
                lines.append(f"::{head}{sep}{label}: {text}")
        return lines

    def _labelled(self) -> list[tuple[str, gate.GateResult]]:
        out = [(f"set {v.label}", v.result) for v in self.sets]
        if self.pooled is not None:
            out.append(("all sets", self.pooled))
        return out

    def to_document(self) -> dict[str, Any]:
        """The JSON document of ``check --dataset --format json``."""
        return {
            "dataset": self.dataset,
            "passed": self.passed,
            "summary": self.summary,
            "sets": [{**_identity(v.summary), **v.result.to_document()} for v in self.sets],
            "all": None if self.pooled is None else self.pooled.to_document(),
        }

    def to_junit(self) -> str:
        """JUnit XML: ``<testsuites>`` of one suite per set (and one for all sets), each the
        suite ``check`` writes, its cases' class names saying the set."""
        root = ET.Element("testsuites", {"name": "xenlat check --dataset"})
        totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        suites = [(f"set {v.label}", f"xenlat.set.{v.summary['set']}", v.result,
                   _identity(v.summary)) for v in self.sets]
        if self.pooled is not None:
            suites.append(("all sets", "xenlat.all", self.pooled, {"sets": len(self.sets)}))
        for name, classname, result, properties in suites:
            suite = ET.fromstring(result.to_junit())
            suite.set("name", name)
            for case in suite.iter("testcase"):  # xenlat.budget → xenlat.set.s1.budget
                kind = case.get("classname", "").removeprefix("xenlat.")
                case.set("classname", f"{classname}.{kind}".rstrip("."))
            holder = suite.find("properties")
            if holder is None:
                holder = ET.Element("properties")
                suite.insert(0, holder)
            known = {p.get("name") for p in holder.iter("property")}
            for key, value in properties.items():
                if key in known:
                    continue
                ET.SubElement(holder, "property", {"name": key, "value": str(value)})
            for key in totals:
                totals[key] += int(suite.get(key) or 0)
            root.append(suite)
        for key, value in totals.items():
            if key != "skipped":
                root.set(key, str(value))
        ET.indent(root)
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                + ET.tostring(root, encoding="unicode") + "\n")


def _identity(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("set", "set_id", "xen_host", "date", "directory", "packets")
    out = {key: _plain(summary[key]) for key in keys}
    out["started"] = pd.Timestamp(summary["started"]).isoformat()
    return out


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def check_dataset(dataset: str | os.PathLike[str], limits: Sequence[gate.Limit],
                  pooled_limits: Sequence[gate.Limit] = (), *,
                  hosts: Sequence[str] = ()) -> FleetGateResult:
    """Judge each set of ``dataset`` by ``limits`` and all its sets' packets together by
    ``pooled_limits`` (only the sets of ``hosts``, when given). Raises ``InputError`` when
    ``dataset`` is not one."""
    summaries = select_sets(read_summaries(dataset), hosts)
    columns = _pooled_columns(pooled_limits)
    verdicts, pooled_parts = [], []
    for summary in summaries.to_dict("records"):
        table = read_set_packets(dataset, summary)
        sources = Sources(**{name: Path(name) for name in summary["sources"]})
        verdicts.append(SetVerdict(summary, gate.evaluate(Analysis(table, sources), limits)))
        if pooled_limits:
            pooled_parts.append(table[[c for c in columns if c in table.columns]])
    pooled = None
    if pooled_limits:
        table = pd.concat(pooled_parts, ignore_index=True) if pooled_parts else pd.DataFrame(
            columns=list(columns))
        pooled = gate.evaluate(Analysis(table, Sources()), pooled_limits)
    return FleetGateResult(str(dataset), verdicts, pooled)


def _pooled_columns(limits: Sequence[gate.Limit]) -> list[str]:
    wanted = [stage_column(split_stat_key(limit.stage)[1]) for limit in limits]
    return list(dict.fromkeys([*wanted, *POOLED_COLUMNS]))
