"""errors.warn and its sinks: a warning made in a worker thread reaches the sink of the context
that started the worker, whatever another thread does to the process-wide warnings filters."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from xentrace_cli.background import Background
from xentrace_cli.errors import XenlatWarning, hold_warnings, warn, warnings_to


@contextmanager
def another_thread_ignoring_warnings() -> Iterator[None]:
    """A thread inside ``catch_warnings(); simplefilter("ignore")`` (what pandas' dtype checks
    do) for as long as the block runs."""
    inside, leave = threading.Event(), threading.Event()

    def sit() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=sit)
    thread.start()
    inside.wait(10)
    try:
        yield
    finally:
        leave.set()
        thread.join()


def test_the_warnings_module_loses_a_warning_while_another_thread_ignores() -> None:
    # why the sink exists: the filters are one state for every thread
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with another_thread_ignoring_warnings():
            Background(lambda: warn(XenlatWarning("lost"))).result()
    assert caught == []


def test_a_workers_warning_reaches_the_sink_while_another_thread_ignores() -> None:
    got: list[Warning] = []
    with warnings_to(got.append), another_thread_ignoring_warnings():
        Background(lambda: warn(XenlatWarning("kept"))).result()
    assert [str(w) for w in got] == ["kept"]


def test_each_context_keeps_its_own_sink() -> None:
    # two batch sets analyzed in threads side by side: each one's workers warn into its own
    sinks: dict[str, list[Warning]] = {"a": [], "b": []}
    both_in = threading.Barrier(2)

    def one_set(name: str) -> None:
        with warnings_to(sinks[name].append):
            both_in.wait(10)
            jobs = [Background(lambda i=i: warn(XenlatWarning(f"{name}{i}"))) for i in range(5)]
            for job in jobs:
                job.result()

    threads = [threading.Thread(target=one_set, args=(n,)) for n in sinks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, sinks["a"])) == [f"a{i}" for i in range(5)]
    assert sorted(map(str, sinks["b"])) == [f"b{i}" for i in range(5)]


def test_held_warnings_stay_in_the_holding_thread() -> None:
    # a worker started inside a hold block warns at once: the block may be over by then
    got: list[Warning] = []
    with warnings_to(got.append), hold_warnings() as held:
        warn(XenlatWarning("held"))
        Background(lambda: warn(XenlatWarning("worker"))).result()
    assert [str(w) for w in held] == ["held"]
    assert [str(w) for w in got] == ["worker"]


def test_without_a_sink_it_is_a_python_warning() -> None:
    # scripts and notebooks filter xenlat's warnings as any other
    with pytest.warns(XenlatWarning, match="plain"):
        warn(XenlatWarning("plain"))


def test_a_sink_may_raise_in_the_worker_for_the_caller() -> None:
    # --strict: the sink raises where the warning is made; the worker hands it to its caller
    def strict(warning: Warning) -> None:
        raise warning

    with warnings_to(strict), pytest.raises(XenlatWarning, match="cut"):
        Background(lambda: warn(XenlatWarning("cut"))).result()


def test_deferred_warnings_go_out_when_the_block_is_left() -> None:
    # a library call's warnings made while a thread of its own ignores warnings: delivered
    # (through the warnings module, no sink) once the call is done, in their order
    from xentrace_cli.errors import deferred_warnings

    with pytest.warns(XenlatWarning) as caught, deferred_warnings(), \
            another_thread_ignoring_warnings():
        warn(XenlatWarning("first"))
        Background(lambda: warn(XenlatWarning("second"))).result()
    assert [str(w.message) for w in caught] == ["first", "second"]


def test_deferred_warnings_leave_a_sink_alone() -> None:
    from xentrace_cli.errors import deferred_warnings

    got: list[Warning] = []
    with warnings_to(got.append), deferred_warnings():
        warn(XenlatWarning("at once"))
        assert [str(w) for w in got] == ["at once"]


def test_a_blocks_own_error_wins_over_a_warning_made_an_error() -> None:
    from xentrace_cli.errors import InputError, deferred_warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", XenlatWarning)
        with pytest.raises(InputError, match="bad log") as raised, deferred_warnings():
            warn(XenlatWarning("cut short"))
            raise InputError("x.strace", "bad log")
        assert raised.value.__context__ is None
        with pytest.raises(XenlatWarning, match="cut short"), deferred_warnings():
            warn(XenlatWarning("cut short"))  # no error of its own: the warning raised
