"""The plain tables of ``xenlat trace`` against rich's own rendering of the same tables.

rich is the ground truth: ``outputs.text_table`` promises rich's default table (heavy head,
padding, a left title wrapped at the table's width) byte for byte as rich prints it to a file.
"""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table
from rich.text import Text

from xentrace_cli.outputs.text_table import Cell, TextTable, cell_len, wrap

# Characters the trace tables print (ASCII, the units' µ and –, the bars, ·) and a few
# wider or stranger ones (a wide CJK character, an accent).
_CHARS = st.sampled_from(list("abcXYZ019 ,.:;()->_%/") + ["µ", "–", "·", "▁", "█", "é", "界"])
_CELL = st.text(_CHARS, max_size=14).map(lambda s: s.strip() or "x")
_TITLE = st.text(st.sampled_from(list("abcdefghij  ()-;:") + ["µ"]), min_size=1, max_size=90)


def _rich(title: str, headers: list[str], justify: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    # Text, not str: text_table prints what it is given, where rich would read a str as
    # markup and emoji codes (a title ":a:" became 🅰)
    table = Table(title=Text(title), title_justify="left")
    for header, side in zip(headers, justify, strict=True):
        table.add_column(Text(header), justify=side)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(Text(c) for c in row))
    Console(file=out, width=10_000, color_system=None, highlight=False).print(table)
    return out.getvalue()


@st.composite
def _tables(draw: st.DrawFn) -> tuple[str, list[str], list[str], list[list[str]]]:
    ncol = draw(st.integers(1, 5))
    headers = draw(st.lists(st.text(_CHARS, max_size=8).map(str.strip), min_size=ncol,
                            max_size=ncol))
    justify = draw(st.lists(st.sampled_from(["left", "right"]), min_size=ncol, max_size=ncol))
    rows = draw(st.lists(st.lists(_CELL, min_size=ncol, max_size=ncol), max_size=6))
    return draw(_TITLE), headers, justify, rows


@settings(max_examples=150, deadline=None)
@given(_tables())
def test_same_text_as_rich(spec: tuple[str, list[str], list[str], list[list[str]]]) -> None:
    title, headers, justify, rows = spec
    ours = TextTable(title, headers, justify, [list(r) for r in rows])
    assert "\n".join(ours.lines()) + "\n" == _rich(title, headers, justify, rows)


def test_emoji_code_and_brackets_printed_as_written() -> None:
    """Hypothesis found the title ":a:" (rich's emoji code for 🅰): text_table prints it as
    written, as rich does for a Text. File names and event names can hold such codes."""
    title, headers, rows = ":a: [b]", [":c:"], [["[d]"]]
    ours = TextTable(title, headers, ["left"], [list(r) for r in rows])
    assert "\n".join(ours.lines()) + "\n" == _rich(title, headers, ["left"], rows)
    assert ours.lines()[0].rstrip() == ":a: [b]" and ":c:" in ours.lines()[2]


def test_title_wrapped_where_rich_wraps_it() -> None:
    # by hand: a 10-cell table; words keep their trailing space, a word too long is cut
    table = TextTable("an empty one with a long title over it", ["a", "bb"], ["left", "right"])
    assert table.lines()[:4] == ["an empty  ", "one with a", "long title", "over it   "]
    assert table.lines()[4:] == ["┏━━━┳━━━━┓", "┃ a ┃ bb ┃", "┡━━━╇━━━━┩", "└───┴────┘"]
    assert wrap("abcdefghijklmn xy", 5) == ["abcde", "fghij", "klmn ", "xy"]


def test_cells_and_style() -> None:
    assert cell_len("1.20 µs") == 7 and cell_len("界x") == 3 and cell_len("e\u0301") == 1
    table = TextTable("t", ["n", "v"], ["left", "right"])
    table.add_row("d1v0", Cell("1 s STOPS EARLY", bold=True))
    plain, styled = table.lines(), table.lines(styled=True)
    assert plain[4] == "│ d1v0 │ 1 s STOPS EARLY │"
    assert styled[0] == "\x1b[3m" + "t".ljust(4 + 15 + 3 * 2 + 1) + "\x1b[0m"  # the width
    assert styled[4] == "│ d1v0 │ \x1b[1m1 s STOPS EARLY\x1b[0m │"
    assert styled[2] == "┃ \x1b[1mn   \x1b[0m ┃ \x1b[1m              v\x1b[0m ┃"
