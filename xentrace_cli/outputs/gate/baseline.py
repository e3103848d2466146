"""Baseline files: the statistics ``xenlat baseline`` saves and ``check --baseline`` compares.

A baseline is JSON: ``kind``, ``format``, the xenlat version, the source file names, the packet
count and ``stages``: per statistics key (``ring``, ``tx.ring``, ``backend_to_guest`` — the
keys of :func:`~xentrace_cli.outputs.gate.grammar.parse_stat_key`) the statistics of that stage. No
date, so that the same captures write the same bytes.

The gate fails closed: a file that is not exactly such a document — a statistic that is a
string, a list, NaN, null where the stage was measured, a number beyond any latency, a key no
xenlat writes, JSON nested past reason, an unknown kind or format — is an ``InputError``
naming the file and the value, never a comparison silently left out. Format 1 files keep
working: unprefixed keys are the receive direction, and the transmit intervals that files
written before the transmit split named without a prefix are read as the transmit keys they
were.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ... import __version__
from ...errors import InputError, check_readable
from ...model import MERGED_INTERVALS, STAGES, TX_INTERVALS, TX_STAGES, stat_key
from ...pipeline.result import Analysis
from ...pipeline.stats import (
    COUNT_STATISTICS,
    DEFAULT_KEYS,
    DEFAULT_PERCENTILES,
    direction_rows,
    parse_statistic,
    stage_stats,
)
from .grammar import DIRECTION_NAMES, MAX_COUNT, Limit, parse_stat_key

#: Identifies a baseline document and its layout version.
BASELINE_KIND = "xenlat-baseline"
BASELINE_FORMAT = 1
#: Statistics a baseline comparison checks by default.
BASELINE_STATISTICS: tuple[str, ...] = ("p50", "p90", "p99", "max")
#: A baseline statistic may always grow by this much (µs), whatever the tolerance: clock
#: resolution and scheduling noise make a 3 µs → 4 µs change meaningless.
BASELINE_FLOOR_US: float = 20.0
#: Default allowed regression against a baseline (a fraction).
DEFAULT_TOLERANCE: float = 0.20
#: What a baseline comparison covers unless told otherwise, in path order: per direction its
#: five stages, the intervals that stand in for them when a source is missing, and total —
#: not what one capture alone measures (``request_to_response``, ``response_to_next``).
COMPARED_KEYS: tuple[str, ...] = tuple(
    stat_key(name, way) for way, names in (
        ("rx", (*STAGES, *MERGED_INTERVALS, "total")),
        ("tx", (*TX_STAGES, *TX_INTERVALS, "total")))
    for name in names)
#: A baseline or budgets file larger than this is not one (they hold a few dozen entries).
MAX_FILE_BYTES = 16 << 20
#: The largest duration (µs) a baseline may hold: about 31 years.
MAX_DURATION_US = 1e15
#: Format-1 files written before the transmit split named the transmit intervals without a
#: direction (they were only ever measured on transmitted segments).
LEGACY_TX_KEYS: dict[str, str] = {
    "write_to_guest": "tx.socket_write", "backend_to_phys": "tx.driver_domain",
    "guest_to_backend": "tx.guest_to_backend", "write_to_backend": "tx.write_to_backend",
    "write_to_phys": "tx.write_to_phys", "guest_to_phys": "tx.guest_to_phys",
}
_TOP_KEYS = frozenset({"kind", "format", "xenlat_version", "sources", "packets", "stages"})


@dataclasses.dataclass(frozen=True)
class BaselineSettings:
    """How a baseline is compared; None means "not said here" (see :meth:`over`)."""

    file: Path | None = None
    tolerance: float | None = None
    """Allowed relative growth (0.2 for 20 %)."""
    floor_us: float | None = None
    """Growth always allowed, µs."""
    stats: tuple[str, ...] | None = None
    """Canonical statistic names compared (durations only)."""
    stages: tuple[str, ...] | None = None
    """Statistics keys compared; None: :data:`COMPARED_KEYS` the baseline measured."""

    def over(self, other: BaselineSettings | None) -> BaselineSettings:
        """These settings, each one not said here taken from ``other``."""
        if other is None:
            return self
        return BaselineSettings(**{
            f.name: getattr(other, f.name) if getattr(self, f.name) is None
            else getattr(self, f.name) for f in dataclasses.fields(self)})

    def limits(self) -> list[Limit]:
        """Read the file and make one limit per compared (stage, statistic)."""
        if self.file is None:
            raise ValueError("no baseline file")
        return baseline_limits(
            load_baseline(self.file),
            DEFAULT_TOLERANCE if self.tolerance is None else self.tolerance,
            BASELINE_FLOOR_US if self.floor_us is None else self.floor_us,
            self.stats or BASELINE_STATISTICS, str(self.file), stages=self.stages)


def measured_stats(analysis: Analysis, percentiles: Sequence[str] = DEFAULT_PERCENTILES,
                   ) -> dict[str, dict[str, float | int | None]]:
    """Stage statistics of an analysis (each direction's stages and total), with the intervals
    (merged, ``<from>_to_<to>``, and lone-capture ones) that these sources measure."""
    table = analysis.table
    intervals = []
    for way, names in DIRECTION_NAMES.items():
        rows = direction_rows(table, way)
        intervals += [stat_key(name, way) for name in names
                      if "_to_" in name and f"{name}_us" in table.columns
                      and table[f"{name}_us"][rows].notna().any()]
    return stage_stats(table, [*DEFAULT_KEYS, *sorted(intervals)],
                       [*DEFAULT_PERCENTILES, *percentiles])


def baseline_document(analysis: Analysis, percentiles: Sequence[str] = ()) -> dict[str, Any]:
    """What ``xenlat baseline`` saves: stage statistics (the default percentiles and
    ``percentiles``), source names, version; no date."""
    return {
        "kind": BASELINE_KIND,
        "format": BASELINE_FORMAT,
        "xenlat_version": __version__,
        "sources": {name: Path(str(getattr(analysis.sources, name))).name
                    for name in analysis.sources.present},
        "packets": int(len(analysis.table)),
        "stages": {stage: {stat: round_value(value) for stat, value in entry.items()}
                   for stage, entry in measured_stats(analysis, percentiles).items()},
    }


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read a baseline document, checking every value; ``InputError`` when it is not exactly
    one. ``stages`` of the result is keyed by canonical statistics keys."""
    path = Path(path)
    document = _parse_json(path, read_small_text(path, "a baseline"))
    if (not isinstance(document, dict) or document.get("kind") != BASELINE_KIND
            or not isinstance(document.get("stages"), dict)):
        raise InputError(path, "not a baseline written by 'xenlat baseline'")
    version = document.get("format")
    if type(version) is not int or version != BASELINE_FORMAT:
        raise InputError(path, f"baseline format {_shown(version)} is not one this xenlat "
                         f"reads ({BASELINE_FORMAT}); rewrite it with 'xenlat baseline'")
    _check_header(path, document)
    stages: dict[str, dict[str, Any]] = {}
    for raw_key, entry in document["stages"].items():
        key = _stage_key(path, raw_key)
        if key in stages:
            raise InputError(path, f"stages: {raw_key!r} repeats stage {key!r}")
        stages[key] = _checked_entry(path, raw_key, entry)
    return {**document, "stages": stages}


def _check_header(path: Path, document: dict[str, Any]) -> None:
    unknown = set(document) - _TOP_KEYS
    if unknown:
        raise InputError(path, f"unknown key(s) {', '.join(sorted(unknown))}; a baseline "
                         f"holds {', '.join(sorted(_TOP_KEYS))}")
    if not isinstance(document.get("xenlat_version", ""), str):
        raise InputError(path, f"xenlat_version = {_shown(document['xenlat_version'])}: "
                         "expected a string")
    sources = document.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise InputError(path, f"sources = {_shown(sources)}: expected file names by source")
    packets = document.get("packets", 0)
    if type(packets) is not int or not 0 <= packets <= MAX_COUNT:
        raise InputError(path, f"packets = {_shown(packets)}: expected a number of packets")


def _stage_key(path: Path, raw_key: str) -> str:
    try:
        return parse_stat_key(LEGACY_TX_KEYS.get(raw_key, raw_key))
    except ValueError as exc:
        raise InputError(path, f"stages: {exc}") from None


def _checked_entry(path: Path, key: str, entry: Any) -> dict[str, Any]:
    """One stage's statistics, every value of the right kind (``InputError`` otherwise)."""
    if not isinstance(entry, dict):
        raise InputError(path, f"stages.{key} = {_shown(entry)}: expected a table of "
                         "statistics")
    count = entry.get("count")
    if type(count) is not int or not 0 <= count <= MAX_COUNT:
        raise InputError(path, f"stages.{key}.count = {_shown(count)}: expected a number of "
                         "packets")
    for stat, value in entry.items():
        try:
            canonical = parse_statistic(stat)
        except ValueError as exc:
            raise InputError(path, f"stages.{key}: {exc}") from None
        if canonical != stat:
            raise InputError(path, f"stages.{key}: write the statistic {stat!r} as "
                             f"{canonical!r}")
        where = f"stages.{key}.{stat} = {_shown(value)}"
        if stat in COUNT_STATISTICS:
            if type(value) is not int or not 0 <= value <= MAX_COUNT:
                raise InputError(path, f"{where}: expected a number of packets")
        elif count == 0:
            if value is not None:
                raise InputError(path, f"{where}: the stage was not measured (count 0), so "
                                 "its statistics are null")
        elif type(value) not in (int, float) or not abs(value) <= MAX_DURATION_US:
            # (NaN and infinities fail the comparison; an int of any size compares exactly)
            raise InputError(path, f"{where}: expected a duration in µs (a finite number "
                             f"within ±{MAX_DURATION_US:.0e})")
    return entry


def baseline_limits(document: dict[str, Any], tolerance: float, floor_us: float,
                    stats: Sequence[str], file: str,
                    stages: Sequence[str] | None = None) -> list[Limit]:
    """One limit per compared (stage, statistic): ``≤ max(b·(1+tol), b+floor)``.

    ``document`` is :func:`load_baseline`'s. ``stages`` None compares the
    :data:`COMPARED_KEYS` the baseline measured; named stages must have been measured. A
    compared statistic the baseline lacks is an ``InputError``: the gate never skips it.
    """
    limits = []
    for key in _compared_keys(document, stages, file):
        entry = document["stages"][key]
        for stat in stats:
            saved = entry.get(stat)
            if saved is None:
                raise InputError(file, f"stage {key!r} has no {stat}: save it with "
                                 f"'xenlat baseline … --stat {stat}'")
            bound = max(saved * (1.0 + tolerance), saved + floor_us)
            limits.append(Limit(
                stage=key, stat=stat, op="<=", value=bound, source="baseline",
                baseline_value=float(saved), tolerance=tolerance, floor_us=floor_us,
                baseline_file=file,
                text=f"{key}.{stat} vs baseline"))  # stable across baseline refreshes
    return limits


def _compared_keys(document: dict[str, Any], stages: Sequence[str] | None,
                   file: str) -> list[str]:
    saved = document["stages"]
    if stages is None:
        keys = [key for key in COMPARED_KEYS if saved.get(key, {}).get("count", 0) > 0]
        if not keys:
            raise InputError(file, "no stage, merged interval or total was measured in this "
                             "baseline: compare what it holds by name, e.g. "
                             "--baseline-stage request_to_response")
        return keys
    for key in stages:
        if key not in saved:
            raise InputError(file, f"the baseline has no stage {key!r}")
        if saved[key]["count"] == 0:
            raise InputError(file, f"stage {key!r} was not measured in this baseline "
                             "(count 0): there is nothing to compare with")
    return list(stages)


def _parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_repeated_keys)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not a baseline: invalid JSON ({exc.msg})",
                         line=exc.lineno) from None
    except _RepeatedKey as exc:
        raise InputError(path, f"not a baseline: key {exc.args[0]!r} appears twice") from None
    except RecursionError:
        raise InputError(path, "not a baseline: JSON nested too deeply") from None
    except ValueError as exc:  # an integer too long to convert
        raise InputError(path, f"not a baseline: {exc}") from None


class _RepeatedKey(ValueError):
    """A JSON object names the same key twice."""


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _RepeatedKey(key)
        result[key] = value
    return result


def read_small_text(path: Path, what: str) -> str:
    """The UTF-8 text of a small readable file (``InputError`` otherwise, naming ``what``)."""
    check_readable(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(path, f"over {MAX_FILE_BYTES >> 20} MiB: too large for {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not {what} (not UTF-8 text)", offset=exc.start) from None


def _shown(value: Any) -> str:
    """A value as the file wrote it, cut short."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def round_value(value: Any) -> float | int | None:
    """Round µs values to 1 ns so that documents do not depend on float noise."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, 3)
