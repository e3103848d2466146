"""The budget grammar: ``[rx.|tx.]STAGE.STAT OP VALUE UNIT [optional]`` → a :class:`Limit`.

Written down once, for users, in ``docs/ci-example.md`` ("Budgets"); this module is its only
parser, and baseline files and ``--baseline-stage`` name stages with the same keys
(:func:`parse_stat_key`). A budget that does not parse raises ``ValueError`` saying what is
wrong: the caller decides whether that is a usage error (``--budget``) or an invalid input
(a budgets file).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import re
from collections.abc import Callable

from ...model import (
    LONE_INTERVALS,
    MERGED_INTERVALS,
    STAGES,
    TX_INTERVALS,
    TX_STAGES,
    split_stat_key,
    stat_key,
)
from ...pipeline.stats import COUNT_STATISTICS, parse_statistic
from ...units import format_duration, parse_duration_us

#: Where the grammar is written for users (``--help`` and messages point there).
GRAMMAR_DOC = "docs/ci-example.md"
#: Comparison operators a budget may use.
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
}
#: What a key may name in each direction, in path order: the five stages, the intervals that
#: stand for several of them when a source is missing, what one capture alone measures, total.
DIRECTION_NAMES: dict[str, tuple[str, ...]] = {
    "rx": (*STAGES, *MERGED_INTERVALS, *LONE_INTERVALS, "total"),
    "tx": (*TX_STAGES, *TX_INTERVALS, *LONE_INTERVALS, "total"),
}
#: The largest count a budget may name (a packet count fits in int64).
MAX_COUNT = 2**63 - 1

_BUDGET = re.compile(r"^(?P<left>[A-Za-z0-9_.]+)\s*(?P<op><=|>=|==|<|>)\s*(?P<value>[^<>=\s].*)$")
_LEFT = re.compile(r"^(?P<key>[A-Za-z0-9_.]+?)\.(?P<stat>[A-Za-z0-9_]+(?:\.[0-9]+)?)$")
_OPTIONAL = re.compile(r"\s+optional$", re.IGNORECASE)
_DURATION = re.compile(r"(?P<number>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"
                       r"(?P<unit>ns|us|µs|μs|ms|s)?")
_FORM = "[rx.|tx.]STAGE.STAT OP VALUE UNIT, e.g. 'socket_read.p99 < 2ms' or 'tx.ring.p99 < 50us'"


@dataclasses.dataclass(frozen=True)
class Limit:
    """One comparison the gate makes: ``<key>.<stat> <op> <value>``."""

    stage: str
    """The statistics key (``model.stat_key``): ``ring`` (receive), ``tx.ring``, ``total``,
    ``backend_to_guest``, ``tx.guest_to_backend``, ``request_to_response`` …"""
    stat: str
    """A canonical statistic name (``stats.parse_statistic``): ``p99``, ``p99.9``, ``max``…"""
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
        """``socket_read.p99``, ``tx.ring.p99.9``."""
        return f"{self.stage}.{self.stat}"

    @property
    def direction(self) -> str:
        """``rx`` or ``tx``."""
        return split_stat_key(self.stage)[0]

    @property
    def stage_name(self) -> str:
        """The stage or interval without its direction: ``ring`` for ``tx.ring``."""
        return split_stat_key(self.stage)[1]

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


def parse_budget(text: str) -> Limit:
    """``'socket_read.p99 < 2ms'``, ``'tx.ring.p99.9 <= 50us optional'`` → a Limit.

    Raises ValueError naming what is wrong.
    """
    stripped = text.strip()
    optional = bool(_OPTIONAL.search(stripped))
    if optional:
        stripped = _OPTIONAL.sub("", stripped)
    match = _BUDGET.match(stripped)
    left = _LEFT.match(match.group("left")) if match else None
    if not match or not left:
        raise ValueError(f"budget {text!r}: write {_FORM} (OP one of < <= > >= ==)")
    op, value_text = match.group("op"), match.group("value").strip()
    try:
        key = parse_stat_key(left.group("key"))
        stat = parse_statistic(left.group("stat"))
        value = parse_bound(stat, value_text)
    except ValueError as exc:
        raise ValueError(f"budget {text!r}: {exc}") from None
    return Limit(stage=key, stat=stat, op=op, value=value, optional=optional,
                 text=f"{match.group('left')} {op} {value_text}" + (" optional" * optional))


def parse_bound(stat: str, text: str) -> float:
    """The bound of a budget on ``stat``: a duration with its unit (µs), or a count."""
    if stat in COUNT_STATISTICS:
        if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > MAX_COUNT:
            raise ValueError(f"{stat} is a number of packets (0, 1, 2 …), not {text!r}")
        return float(int(text))
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (write e.g. 150us, 2ms, 0.1s)")
    if match.group("unit") is None:
        raise ValueError(f"{text!r} has no unit: write {text}us, {text}ms or {text}s")
    unit = match.group("unit").replace("μ", "µ")  # Greek mu as the micro sign
    value = parse_duration_us(f"{match.group('number')}{unit}")
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite duration")
    return value


def parse_stat_key(text: str) -> str:
    """``'tx.ring'`` → ``'tx.ring'``; ``'rx.ring'`` and ``'ring'`` → ``'ring'``.

    Raises ValueError when the name is not a stage, interval or ``total`` of its direction,
    saying why (``socket_write`` is transmit-only, ``socket_read`` receive-only).
    """
    way, name = split_stat_key(text)
    if name in DIRECTION_NAMES[way]:
        return stat_key(name, way)
    raise ValueError(_wrong_stage(text, way, name))


def _wrong_stage(text: str, way: str, name: str) -> str:
    """Why ``text`` (direction ``way``, stage ``name``) is not a key."""
    other = "tx" if way == "rx" else "rx"
    if name in ("rx", "tx", ""):
        return f"{text!r} names no stage: write {name or way}.STAGE.STAT"
    if name == "socket_write" and way == "rx":
        return ("socket_write is a transmit stage (write → guest), so a received packet has "
                "none: write tx.socket_write")
    if name == "socket_read" and way == "tx":
        return ("socket_read is a receive stage (guest → read): a transmitted packet is "
                "written, not read; its first stage is tx.socket_write")
    if name in DIRECTION_NAMES[other]:
        if other == "tx":
            return f"{name} is a transmit interval: write tx.{name}"
        return f"{name} is a receive interval, there is no {text}: write {name} (rx is the default)"
    listing = ", ".join(stat_key(n, way) for n in DIRECTION_NAMES[way])
    more = f"; transmit: tx.STAGE (see {GRAMMAR_DOC})" if way == "rx" else ""
    return f"unknown stage {text!r}; one of {listing}{more}"


def parse_tolerance(text: str) -> float:
    """``'20%'`` → 0.2. Raises ValueError."""
    match = re.fullmatch(r"\s*([0-9]{1,12}(?:\.[0-9]{1,12})?|\.[0-9]{1,12})\s*%\s*", str(text))
    if not match:
        raise ValueError(f"tolerance {text!r}: write a percentage, e.g. 20%")
    return float(match.group(1)) / 100.0
