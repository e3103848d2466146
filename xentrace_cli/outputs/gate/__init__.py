"""The CI gate: budgets, baselines, the verdict of ``xenlat check``, JUnit XML and annotations.

A *limit* is one comparison of a measured statistic with a bound. Limits come from budgets
(``'socket_read.p99 < 2ms'``, ``'tx.ring.p99.9 < 50us'``: the grammar of :mod:`.grammar`,
documented for users in docs/ci-example.md), on the command line or in a budgets TOML file
(:mod:`.budgets_file`), and from a saved baseline (:mod:`.baseline`: each compared statistic
may grow by the tolerance, and always by a small absolute floor). :func:`evaluate`
(:mod:`.verdict`) turns an analysis, or a plain statistics mapping, and limits into a
:class:`GateResult`.

Layer: an output of the pipeline. Imports the model, the statistics and ``result.Analysis``;
never the pipeline itself, rich or click.
"""

from .baseline import (
    BASELINE_FLOOR_US,
    BASELINE_FORMAT,
    BASELINE_KIND,
    BASELINE_STATISTICS,
    COMPARED_KEYS,
    DEFAULT_TOLERANCE,
    BaselineSettings,
    baseline_document,
    baseline_limits,
    load_baseline,
    measured_stats,
)
from .budgets_file import (
    BUDGETS_FILE_NAME,
    collect_budgets,
    default_budgets_file,
    read_budgets_file,
)
from .grammar import (
    DIRECTION_NAMES,
    GRAMMAR_DOC,
    OPERATORS,
    Limit,
    parse_budget,
    parse_stat_key,
    parse_tolerance,
)
from .verdict import (
    WORST_PACKETS,
    BaselineInfo,
    Check,
    GateResult,
    describe_packet,
    evaluate,
    evaluate_stats,
    limit_stats,
)

__all__ = [
    "BASELINE_FLOOR_US", "BASELINE_FORMAT", "BASELINE_KIND", "BASELINE_STATISTICS",
    "BUDGETS_FILE_NAME", "COMPARED_KEYS", "DEFAULT_TOLERANCE", "DIRECTION_NAMES", "GRAMMAR_DOC",
    "OPERATORS", "WORST_PACKETS", "BaselineInfo", "BaselineSettings", "Check", "GateResult",
    "Limit", "baseline_document", "baseline_limits", "collect_budgets", "default_budgets_file",
    "describe_packet", "evaluate", "evaluate_stats", "limit_stats", "load_baseline",
    "measured_stats", "parse_budget", "parse_stat_key", "parse_tolerance", "read_budgets_file",
]
