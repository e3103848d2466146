"""background.Background: the value of a call run in a thread, or what it raised."""

from __future__ import annotations

import threading

import pytest

from xentrace_cli.background import Background


def test_result_is_the_calls_value_computed_in_another_thread() -> None:
    main = threading.get_ident()
    job = Background(lambda: (threading.get_ident(), sum(range(1000))))
    ident, total = job.result()
    assert ident != main
    assert total == 499_500  # 999 * 1000 / 2
    assert job.result() == (ident, total)  # asked again: the same value


def test_result_raises_what_the_call_raised() -> None:
    def fail() -> int:
        raise ValueError("bad span")

    job = Background(fail)
    job.wait()  # waiting alone does not raise
    with pytest.raises(ValueError, match="bad span"):
        job.result()
