"""The socket call table of a guest application's log, whatever its kind.

:func:`read_socket_log` tells an strace log (:mod:`.strace`) from a plain CSV / JSON Lines log
(:mod:`.socklog`) by content and reads it into the same table. Apart from both readers so that
the plain-log reader can build on strace's table (its columns, bounds, finishing step) with
no import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pandas as pd

from ..errors import check_readable
from .socklog import read_plain_log
from .strace import _read_strace, sniff_format  # the strace reader's entry point


def read_socket_log(path: str | os.PathLike[str], *,
                    on_progress: Callable[[int, int], None] | None = None,
                    data: bool = True) -> pd.DataFrame:
    """Read an strace log or a plain CSV / JSON Lines read log into the socket call table.

    The kind of file is told by content (``frame.attrs["format"]``: ``strace``, ``csv`` or
    ``jsonl``). ``on_progress(done_bytes, total_bytes)`` is called after each chunk.
    ``data=False``: strace strings are not decoded and the ``data`` column is all None (the
    analyzer needs byte counts, not bytes; decoding is a Python step per call).
    """
    check_readable(path)
    kind = sniff_format(path)
    if kind == "strace":
        return _read_strace(path, on_progress, data)
    return read_plain_log(path, kind, on_progress=on_progress)
