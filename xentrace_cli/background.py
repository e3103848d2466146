"""A call run in a thread of its own while the caller works on (numpy lets go of the GIL in
its long loops: on two cores the two run at once).

What ``concurrent.futures`` gives, without its import (it brings ``logging``: tens of ms
that ``xenlat trace`` on a small file would pay for nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import carried

T = TypeVar("T")


class Background(Generic[T]):
    """``call()`` started in a daemon thread (with the caller's warnings sink:
    :func:`.errors.carried`); :meth:`result` waits for it and returns its value, or raises
    what it raised. :meth:`wait` only waits (before closing what it uses)."""

    def __init__(self, call: Callable[[], T]) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=carried(self._run), args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], T]) -> None:
        try:
            self._value = call()
        except BaseException as error:  # handed to the caller by result()
            self._error = error

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> T:
        self.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set when no error was raised
