"""The one project error type and the documented exit codes.

Every expected failure raises :class:`HadeployError` with a message (what is wrong and
where) and a hint (how to fix it). The CLI's single handler prints both and exits with
``code``; no traceback is shown for these.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes are part of the CLI's contract (docs/cli.md)."""

    OK = 0
    FAILED = 1  # the operation ran and failed (a host unhealthy, Ansible failed, ...)
    BAD_INPUT = 2  # invalid configuration or arguments
    REFUSED = 3  # a safety guard refused the operation
    LOCKED = 4  # another run holds the deployment's lock
    VERIFY_FAILED = 5  # the change was made but could not be verified
    ENVIRONMENT = 6  # a required tool/service is missing or unreachable
    NOT_AVAILABLE = 7  # the feature/target is not available (yet)
    CHANGES = 8  # plan --detailed-exitcode: 'up' would change something, or drift was found
    ABORTED = 130  # the user declined a confirmation or interrupted


class HadeployError(Exception):
    def __init__(self, message: str, *, hint: str | None = None,
                 code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return self.message
