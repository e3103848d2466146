"""Where a table is written: a file, or stdout for none or ``-`` (``-o -``).

Shared by :mod:`.tables` (pyarrow's writers, JSON) and :mod:`.packet_csv` (numpy's CSV of a
small capture), which imports nothing heavier than this.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def opened_output(out: str | os.PathLike[str] | None) -> Iterator[IO[bytes]]:
    """The file ``out`` opened for writing (binary), or stdout for None or ``-`` (a path
    object of ``-`` too: click gives ``Path("-")``), flushed on the way out."""
    if out is None or os.fspath(out) == "-":
        try:
            yield sys.stdout.buffer
        finally:
            sys.stdout.buffer.flush()
    else:
        with open(out, "wb") as fh:
            yield fh
