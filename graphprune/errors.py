"""Errors that graphprune reports to its users.

`BadInput` means the user's model, file or options cannot be used; the CLI prints its
message on one line and exits with code 2. `ToleranceError` (exit code 3): the pruned
model runs but is outside the user's --tolerance, so it was not written. Anything else
escaping a pass is an internal error (exit code 1).
"""

from __future__ import annotations


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, for one-line error reports."""
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


class GraphpruneError(Exception):
    """Base class of the errors graphprune raises on purpose."""

    exit_code = 1


class BadInput(GraphpruneError):
    """The input model, a file or an option is unusable; the message says why."""

    exit_code = 2


class VerificationError(GraphpruneError):
    """A pruned model failed verification; it was not written."""

    exit_code = 1


class ToleranceError(GraphpruneError):
    """The pruned model works but changed more than --tolerance allows; it was not written."""

    exit_code = 3
