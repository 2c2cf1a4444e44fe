"""The deploy tool's errors. Each carries the exit code the CLI returns."""

from __future__ import annotations

from typing import Optional


class DeployError(Exception):
    """A problem the operator can act on; the message says what and how."""

    exit_code = 1

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return "{}\n  hint: {}".format(text, self.hint) if self.hint else text


class DeploymentFailed(DeployError):
    """The core reported ``Failure`` for a deployment."""

    exit_code = 3


class DeploymentTimedOut(DeployError):
    """The deployment did not finish within ``--timeout``."""

    exit_code = 4
