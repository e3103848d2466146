"""Where a ``check``'s limits come from: ``--budget`` strings, a budgets TOML file, a baseline.

One rule decides the exit code of what cannot be used: text on the command line that does not
parse (``--budget``, ``--tolerance``, ``--baseline-stage``, ``--baseline-stat``) is a usage
error (``OptionError``, exit 2); a budgets or baseline *file* that cannot be read or holds a
value of the wrong kind — a budget in it that does not parse included — is an invalid input
(``InputError``, exit 3, naming the file and, where it can, the line).

Without ``--budgets-file``, ``check`` reads ``budgets.toml`` from the capture-set directory
it was given, else from the directory of its first source (the guest capture, else
``--backend``, ``--phys``, ``--xentrace``, ``--socket-log``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from ...errors import InputError, OptionError
from ...model import Sources
from ...pipeline.stats import COUNT_STATISTICS, parse_statistic
from .baseline import BaselineSettings, read_small_text
from .grammar import Limit, parse_bound, parse_budget, parse_stat_key, parse_tolerance

#: The file ``check`` picks up beside its sources.
BUDGETS_FILE_NAME = "budgets.toml"
_TABLES = ("budgets", "baseline")
_BASELINE_KEYS = ("file", "tolerance", "floor", "stats", "stages")

T = TypeVar("T")


def default_budgets_file(sources: Sources, capture_set: str | Path | None = None,
                         ) -> Path | None:
    """``budgets.toml`` in the capture set's directory when the sources came from one, else
    in the directory of the first source given; None when there is no such file."""
    if capture_set is not None:
        directory = Path(capture_set)
    else:
        first = next((getattr(sources, name) for name in
                      ("guest", "backend", "phys", "xentrace", "socket_log")
                      if getattr(sources, name) is not None), None)
        if first is None:
            return None
        directory = Path(first).parent
    candidate = directory / BUDGETS_FILE_NAME
    return candidate if candidate.exists() or candidate.is_symlink() else None


def collect_budgets(budget_strings: Iterable[str], budgets_file: str | Path | None,
                    baseline_file: str | Path | None, tolerance: str | None, *,
                    baseline_stats: Iterable[str] = (),
                    baseline_stages: Iterable[str] = ()) -> list[Limit]:
    """Every limit of a ``check``: ``--budget`` strings, then the file's, then the baseline's.

    Each baseline option given here (``baseline_file``, ``tolerance``, ``baseline_stats``,
    ``baseline_stages``) replaces its counterpart in the file's ``[baseline]``. Raises
    ``OptionError`` for what the command line says wrong and ``InputError`` for a file.
    """
    limits = [_option(parse_budget, text, "--") for text in budget_strings]
    stats = tuple(_option(_baseline_stat, text, f"--baseline-stat {text!r}: ")
                  for text in baseline_stats)
    stages = tuple(_option(parse_stat_key, text, f"--baseline-stage {text!r}: ")
                   for text in baseline_stages)
    given = BaselineSettings(
        file=None if baseline_file is None else Path(baseline_file),
        tolerance=None if tolerance is None else _option(parse_tolerance, tolerance, "--"),
        stats=stats or None, stages=stages or None)
    from_file = None
    if budgets_file is not None:
        file_limits, from_file = read_budgets_file(budgets_file)
        limits.extend(file_limits)
    settings = given.over(from_file)
    if settings.file is None:
        if given != BaselineSettings():
            raise OptionError("--tolerance, --baseline-stat and --baseline-stage need a "
                              "baseline: --baseline FILE or [baseline] in the budgets file")
        return limits
    return limits + settings.limits()


def _option(parse: Callable[[str], T], text: str, prefix: str) -> T:
    """``parse(text)``, its ValueError made a usage error: ``prefix`` + the message (the
    messages of ``parse_budget`` and ``parse_tolerance`` start with the option's name)."""
    try:
        return parse(text)
    except ValueError as exc:
        raise OptionError(f"{prefix}{exc}") from None


def _baseline_stat(text: str) -> str:
    stat = parse_statistic(text)
    if stat in COUNT_STATISTICS:
        raise ValueError("a baseline compares durations (p50, p99.9, max, mean), not counts")
    return stat


def read_budgets_file(path: str | Path) -> tuple[list[Limit], BaselineSettings | None]:
    """A budgets TOML file → its limits and its ``[baseline]``; ``InputError`` for anything in
    it that cannot be used. The layout is documented in docs/ci-example.md."""
    path = Path(path)
    text = read_small_text(path, "a budgets file")
    document = _parse_toml(path, text)
    unknown = [name for name in document if name not in _TABLES]
    if unknown:
        raise InputError(path, f"unknown table(s) {', '.join(sorted(unknown))}; expected "
                         "[budgets] and [baseline]", line=_line_of(text, None, unknown[0]))
    if not document:
        raise InputError(path, "holds neither [budgets] nor [baseline]: nothing to check")
    limits = _file_budgets(path, text, document.get("budgets", {}))
    baseline = document.get("baseline")
    if baseline is None:
        return limits, None
    return limits, _file_baseline(path, text, baseline)


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11 puts the position only in the text: "Invalid value (at line 2, column 7)"
        where = re.search(r"\s*\(at line (\d+), column \d+\)$", str(exc))
        problem = str(exc)[:where.start()] if where else str(exc)
        raise InputError(path, f"not valid TOML: {problem}",
                         line=int(where.group(1)) if where else None) from None
    except RecursionError:
        raise InputError(path, "not valid TOML: nested too deeply") from None
    except ValueError as exc:  # an integer too long to convert
        raise InputError(path, f"not valid TOML: {exc}") from None


def _file_budgets(path: Path, text: str, budgets: Any) -> list[Limit]:
    if not isinstance(budgets, dict):
        raise InputError(path, "budgets must be a table: [budgets] then \"stage.stat\" = "
                         "\"< value\"", line=_line_of(text, None, "budgets"))
    limits = []
    for key, spec in budgets.items():
        line = _line_of(text, "budgets", key)
        if isinstance(spec, dict):
            raise InputError(path, f"[budgets] {key}: quote the whole key, e.g. "
                             f"\"{key}.p99\" = \"< 2ms\"", line=line)
        bounds = spec if isinstance(spec, list) else [spec]
        if not bounds or not all(isinstance(b, str) for b in bounds):
            raise InputError(path, f"[budgets] {key!r}: write the bound as a string, e.g. "
                             "\"< 2ms\", or a list of them", line=line)
        for bound in bounds:
            try:
                limits.append(parse_budget(f"{key} {bound}"))
            except ValueError as exc:
                raise InputError(path, f"[budgets] {exc}", line=line) from None
    return limits


def _file_baseline(path: Path, text: str, table: Any) -> BaselineSettings:
    if not isinstance(table, dict) or "file" not in table:
        raise InputError(path, "[baseline] needs file = \"baseline.json\"",
                         line=_line_of(text, None, "baseline"))
    for key in table:
        if key not in _BASELINE_KEYS:
            raise InputError(path, f"[baseline] unknown key {key!r}; one of "
                             f"{', '.join(_BASELINE_KEYS)}", line=_line_of(text, "baseline", key))

    def value(key: str, parse: Callable[[Any], Any]) -> Any:
        if key not in table:
            return None
        try:
            return parse(table[key])
        except ValueError as exc:
            raise InputError(path, f"[baseline] {key}: {exc}",
                             line=_line_of(text, "baseline", key)) from None

    relative = Path(value("file", _text))
    return BaselineSettings(
        file=relative if relative.is_absolute() else path.parent / relative,
        tolerance=value("tolerance", lambda v: parse_tolerance(_text(v))),
        floor_us=value("floor", lambda v: parse_bound("max", _text(v))),
        stats=value("stats", lambda v: _names(v, _baseline_stat)),
        stages=value("stages", lambda v: _names(v, parse_stat_key)))


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a string: write it in quotes")
    return value


def _names(value: Any, parse: Callable[[str], str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{value!r}: expected a non-empty list of strings")
    names = tuple(parse(_text(item)) for item in value)
    if len(set(names)) != len(names):
        raise ValueError(f"{value!r} names one entry twice")
    return names


def _line_of(text: str, table: str | None, key: str) -> int | None:
    """The line where ``key`` is set (inside ``[table]`` when given), for messages."""
    lines = text.splitlines()
    start = 0
    if table is not None:
        header = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]")
        start = next((i + 1 for i, line in enumerate(lines) if header.match(line)), 0)
    pattern = re.compile(rf"^\s*(\[\s*)?[\"']?{re.escape(key)}[\"']?\s*[.=\]]")
    return next((i + 1 for i in range(start, len(lines)) if pattern.match(lines[i])), None)
