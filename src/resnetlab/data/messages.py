"""Error text for DataError: the CLI prints the message on one line, so wrapped library errors are flattened."""

from __future__ import annotations


def one_line(err: BaseException | str) -> str:
    """The error's text with every run of whitespace, newlines included, collapsed to one space."""
    return " ".join(str(err).split())
