"""Exit codes, the exceptions library code raises, and the warnings it emits.

Library modules never print: they raise an ``InputError`` for input they cannot use and emit a
``XenlatWarning`` (through :mod:`warnings`) for input they could salvage. The CLI turns both into
one line on stderr and an exit code, in one place (``cli.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import os
import stat
import warnings
from collections.abc import Iterator


class ExitCode(enum.IntEnum):
    """Process exit codes (DESIGN.md, "Contracts")."""

    OK = 0
    GATE_BREACHED = 1
    USAGE = 2
    BAD_INPUT = 3
    INTERNAL = 4


def describe_place(path: str | os.PathLike[str] | None, offset: int | None = None,
                   line: int | None = None, packet: int | None = None) -> str:
    """``file: offset N (packet K)`` — the prefix every message about an input starts with."""
    parts = [str(path) if path is not None else "<input>"]
    where = []
    if offset is not None:
        where.append(f"offset {offset}")
    if line is not None:
        where.append(f"line {line}")
    if packet is not None:
        where.append(f"packet {packet}")
    if where:
        parts.append(", ".join(where))
    return ": ".join(parts)


class XenlatError(Exception):
    """Base class of the errors xenlat reports to a user without a traceback."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class InputError(XenlatError):
    """An input file that cannot be used: missing, not a known format, corrupt."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str, *,
                 offset: int | None = None, line: int | None = None,
                 packet: int | None = None) -> None:
        self.path = path
        self.problem = problem
        self.offset = offset
        self.line = line
        self.packet = packet
        super().__init__(f"{describe_place(path, offset, line, packet)}: {problem}")


class OptionError(XenlatError):
    """Options that contradict each other or the inputs (a usage error, exit 2)."""

    exit_code = ExitCode.USAGE


class XenlatWarning(UserWarning):
    """Input salvaged with a loss the user must know about."""


class TruncatedInput(XenlatWarning):
    """The input ends in the middle of a record; every whole record before it was kept."""


#: What a path that is not a regular file is, by its ``stat`` type.
_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_readable(path: str | os.PathLike[str]) -> None:
    """Raise ``InputError`` unless ``path`` is an existing, readable, non-empty regular file.

    Readers seek, map or read their input twice, and size their work by the file's size: a
    FIFO or a device (``/dev/zero`` never ends) is refused by name, not read as empty.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except OSError as exc:
        raise InputError(path, f"cannot open: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(path, "is a directory, not a file")
    for test, kind in _NOT_REGULAR:
        if test(st.st_mode):
            raise InputError(path, f"is {kind}, not a regular file: save the data to a file "
                                   "and give that")
    if not os.access(path, os.R_OK):
        raise InputError(path, "permission denied")
    if st.st_size == 0:
        raise InputError(path, "empty file", offset=0)


#: Warnings held back in this context (see :func:`hold_warnings`); None: shown at once.
_HELD: contextvars.ContextVar[list[Warning] | None] = contextvars.ContextVar(
    "xenlat_held_warnings", default=None)


def warn(warning: Warning, stacklevel: int = 2) -> None:
    """``warnings.warn``, unless this context holds its warnings (:func:`hold_warnings`)."""
    held = _HELD.get()
    if held is None:
        warnings.warn(warning, stacklevel=stacklevel + 1)
    else:
        held.append(warning)


@contextlib.contextmanager
def hold_warnings() -> Iterator[list[Warning]]:
    """Collect the warnings :func:`warn` emits in this context (a worker thread's own) instead
    of showing them: the caller shows them later, where a serial run would have shown them, so
    that output stays in one order however the threads run."""
    held: list[Warning] = []
    token = _HELD.set(held)
    try:
        yield held
    finally:
        _HELD.reset(token)
