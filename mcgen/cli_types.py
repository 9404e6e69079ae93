"""Argparse value types shared by the command-line programs (``mcgen demo``, ``mcgen reproduce``): an option
is checked when the command line is read, before any work starts."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["int_at_least"]


def int_at_least(minimum: int, what: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``minimum``.

    Parameters
    ----------
    minimum : int
        The smallest value accepted.
    what : str, default=""
        What the value is, added to the error message (e.g. ``"training epochs"``).

    Returns
    -------
    callable
        ``parse(text) -> int``, raising :class:`argparse.ArgumentTypeError` with a message that names the
        bound and the value given.
    """
    about = f" ({what})" if what else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer{about}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{about}, got {value}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse
