"""Fixed-width text tables drawn as rich draws its default table, without rich.

Why: ``xenlat trace`` prints a few hundred one-line cells. rich measures, wraps and styles
each cell through its segment machinery (about 0.4 s on the corpus trace, more than reading
the trace) and costs ~0.1 s to import; these tables need none of that: a column is as wide as
its widest cell. The text is byte-for-byte what rich prints to a pipe or a file
(``tests/test_text_table.py`` compares the two on generated tables): the heavy-head box, one
space of padding, the title left-justified and wrapped at the table's width as rich wraps it.
On a terminal (``styled``) the title is italic and the header and marked cells bold, as rich
styles them; unlike rich, nothing is squeezed or folded to the terminal's width (a line
wider than the screen runs on, as it does in a pager or a file).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

_BOLD, _ITALIC, _RESET = "\x1b[1m", "\x1b[3m", "\x1b[0m"
_WORD = re.compile(r"\s*\S+\s*")


def cell_len(text: str) -> int:
    """Terminal cells ``text`` takes: wide East Asian characters two, combining marks and
    control characters none, every other character one."""
    if text.isascii() and text.isprintable():
        return len(text)
    return sum(_char_cells(c) for c in text)


def _char_cells(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Cc", "Cf", "Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


@dataclass
class Cell:
    """A cell that prints bold on a terminal (rich's ``Text(..., style="bold")``)."""

    text: str
    bold: bool = False


@dataclass
class TextTable:
    """A titled table of one-line cells: ``justify`` per column ``"left"`` or ``"right"``.
    An empty title draws no title line; ``show_header=False`` neither the header row nor its
    width (rich's ``Table(show_header=False)``: a light top edge)."""

    title: str
    headers: Sequence[str]
    justify: list[str]
    rows: list[Sequence[str | Cell]] = field(default_factory=list)
    show_header: bool = True

    def add_row(self, *cells: str | Cell) -> None:
        self.rows.append(cells)

    def lines(self, styled: bool = False) -> list[str]:
        """The table's lines (no newline), the title's first."""
        cells = [[c if isinstance(c, Cell) else Cell(c) for c in row] for row in self.rows]
        widths = [cell_len(h) if self.show_header else 0 for h in self.headers]
        for row in cells:
            for k, cell in enumerate(row):
                widths[k] = max(widths[k], cell_len(cell.text))
        width = sum(widths) + 3 * len(widths) + 1
        title = [_pad(line, width, "left") for line in wrap(self.title, width)] \
            if self.title else []
        out = [_ITALIC + t + _RESET if styled else t for t in title]
        if not self.show_header:
            out.append("┌" + "┬".join("─" * (w + 2) for w in widths) + "┐")
        else:
            out.append("┏" + "┳".join("━" * (w + 2) for w in widths) + "┓")
            out.append(self._row([Cell(h, bold=True) for h in self.headers], widths, "┃",
                                 styled))
            out.append("┡" + "╇".join("━" * (w + 2) for w in widths) + "┩")
        out.extend(self._row(row, widths, "│", styled) for row in cells)
        out.append("└" + "┴".join("─" * (w + 2) for w in widths) + "┘")
        return out

    def _row(self, row: Sequence[Cell], widths: list[int], bar: str, styled: bool) -> str:
        parts = []
        for cell, w, justify in zip(row, widths, self.justify, strict=True):
            text = _pad(cell.text, w, justify)
            parts.append(_BOLD + text + _RESET if styled and cell.bold and cell.text else text)
        return bar + " " + f" {bar} ".join(parts) + " " + bar


def _pad(text: str, width: int, justify: str) -> str:
    gap = " " * max(width - cell_len(text), 0)
    return gap + text if justify == "right" else text + gap


def wrap(text: str, width: int) -> list[str]:
    """``text`` broken into lines of at most ``width`` cells where rich breaks it: between
    words (a word's trailing spaces stay with it), a word wider than a line cut into pieces;
    spaces past the width dropped."""
    lines: list[str] = []
    line = ""
    for match in _WORD.finditer(text):
        word = match.group(0)
        bare = cell_len(word.rstrip())
        if cell_len(line) + bare <= width:
            line += word
            continue
        if bare > width:
            pieces = _chop(word, width)
            if line:
                lines.append(line)
            lines.extend(pieces[:-1])
            line = pieces[-1]
        elif line:
            lines.append(line)
            line = word
        else:
            line = word
    if line or not lines:
        lines.append(line)
    return [_fit(line, width) for line in lines]


def _chop(word: str, width: int) -> list[str]:
    """A word cut into pieces of ``width`` cells (the last may be shorter)."""
    pieces, piece, used = [], "", 0
    for char in word:
        cells = _char_cells(char)
        if used + cells > width and piece:
            pieces.append(piece)
            piece, used = "", 0
        piece += char
        used += cells
    pieces.append(piece)
    return pieces


def _fit(line: str, width: int) -> str:
    """Trailing spaces that run past ``width`` dropped (rich's ``rstrip_end``)."""
    excess = len(line) - width
    if excess <= 0:
        return line
    spaces = len(line) - len(line.rstrip())
    return line[: len(line) - min(spaces, excess)]
