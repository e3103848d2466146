"""Exit codes, the exceptions library code raises, and the warnings it emits.

Library modules never print: they raise an ``InputError`` for input they cannot use and emit a
``XenlatWarning`` (through :func:`warn`) for input they could salvage. The CLI turns both into
one line on stderr and an exit code, in one place (``cli.py``).

A warning goes to the sink the caller installed (:func:`warnings_to`: the CLI's, a batch set's),
else through :mod:`warnings` (a script or notebook filters it as any other). The sink is not the
:mod:`warnings` module because that module's filters are one process-wide state: a library
entering ``warnings.catch_warnings()`` in one thread (pandas does, in its dtype checks) silences
another thread's warnings while inside, and puts back stale filters when it leaves.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


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

#: Where :func:`warn` sends a warning in this context (see :func:`warnings_to`); None: to
#: :func:`warnings.warn`.
_SINK: contextvars.ContextVar[Callable[[Warning], None] | None] = contextvars.ContextVar(
    "xenlat_warning_sink", default=None)


def warn(warning: Warning, stacklevel: int = 2) -> None:
    """Emit ``warning``: held if this context holds its warnings (:func:`hold_warnings`), else
    to this context's sink (:func:`warnings_to`), else through ``warnings.warn``. The sink
    may raise it instead (``--strict``)."""
    held = _HELD.get()
    if held is not None:
        held.append(warning)
        return
    sink = _SINK.get()
    if sink is not None:
        sink(warning)
    else:
        warnings.warn(warning, stacklevel=stacklevel + 1)


@contextlib.contextmanager
def warnings_to(sink: Callable[[Warning], None]) -> Iterator[None]:
    """Send :func:`warn`'s warnings to ``sink`` in this context, and in the worker threads
    started from it through :func:`carried`."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


@contextlib.contextmanager
def deferred_warnings() -> Iterator[None]:
    """Without a sink (a script, a notebook, a test): the block's warnings, from any of its
    threads, given to ``warnings.warn`` by the thread that leaves the block, in the order they
    were made. The block must not leave a worker running: then no thread of its own can be
    inside a library's ``catch_warnings`` (pandas') when they go, and none is dropped. A
    filter that makes one an error raises it then, after the block's work; an error of the
    block's own is raised instead (its warnings shown, or dropped if made errors). With a
    sink (the command line's): nothing changes, the sink shows them as they come."""
    if _SINK.get() is not None:
        yield
        return
    made: list[Warning] = []
    token = _SINK.set(made.append)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        _SINK.reset(token)
        for warning in made:  # the block's own error wins over a warning made an error
            with contextlib.suppress(Warning) if failed else contextlib.nullcontext():
                warn(warning, stacklevel=4)


def warning_sink(deliver: Callable[[Warning], None], strict: bool) -> Callable[[Warning], None]:
    """A sink for :func:`warnings_to` handing each warning to ``deliver``; ``strict``
    (``--strict``): a truncated input is raised where it is found instead."""
    def sink(warning: Warning) -> None:
        if strict and isinstance(warning, TruncatedInput):
            raise warning
        deliver(warning)

    return sink


def warning_line(message: Warning | str, category: type[Warning]) -> str:
    """A warning as the command line words it: xenlat's by its message alone, a library's
    own with its class's name."""
    if issubclass(category, XenlatWarning):
        return str(message)
    return f"{category.__name__}: {message}"


def carried(call: Callable[P, T]) -> Callable[P, T]:
    """``call``, to be run in another thread with this thread's warnings sink: a new thread
    starts with an empty context, and its warnings would bypass the sink. Held warnings are
    not carried: a worker's warnings go out at once unless the worker holds its own (the
    block that held them may have ended by the time the worker warns)."""
    sink = _SINK.get()

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        token = _SINK.set(sink)
        try:
            return call(*args, **kwargs)
        finally:
            _SINK.reset(token)

    return run


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
