"""Error text for DataError, and the progress messages of a load.

The CLI prints a DataError on one line, so wrapped library errors are flattened. Progress messages (data found,
decoded, cached) go to the ``report`` callable that ``load_dataset`` was given, for the whole load, without
every loader passing it on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_REPORT: ContextVar[Callable[[str], None] | None] = ContextVar("resnetlab_data_report", default=None)


def one_line(err: BaseException | str) -> str:
    """The error's text with every run of whitespace, newlines included, collapsed to one space."""
    return " ".join(str(err).split())


@contextmanager
def reporting(report: Callable[[str], None] | None) -> Iterator[None]:
    """Send the messages of the load inside this block to ``report`` (None: keep quiet)."""
    token = _REPORT.set(report)
    try:
        yield
    finally:
        _REPORT.reset(token)


def say(message: str) -> None:
    """One progress message to the current load's ``report``, if any."""
    report = _REPORT.get()
    if report is not None:
        report(message)


def is_reporting() -> bool:
    return _REPORT.get() is not None
