"""Errors a user can act on. Commands turn them into one line on stderr and an exit status."""

from __future__ import annotations


class SposError(Exception):
    """A failure with a one-line, user-facing message.

    ``exit_code`` is 2 for bad input (the user must change something) and 1 for other failures.
    """

    exit_code = 1


class BadInputError(SposError):
    """Malformed or inconsistent input: model.json, weights, tables, data, constraints."""

    exit_code = 2
