"""Values from the command line of ``edge-agent run`` and ``simulate``, checked before anything runs."""

from __future__ import annotations

from typing import Dict, Iterable

from ..config import check_assignments
from ..credentials import Credentials
from ..errors import ConfigError, SecretError


def parse_assignments(items: Iterable[str], option: str = "--set") -> Dict[str, str]:
    """``["NAME=VALUE", ...]`` from the command line as a dict; ValueError names a bad item.

    Every name must be a function variable (a misspelt one gets a "did you
    mean"), and every value non-empty: a typo must not silently leave the
    default in place.
    """
    variables: Dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError("{} takes NAME=VALUE, got {!r}".format(option, item))
        variables[name] = value
    try:
        check_assignments(variables, option)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return variables


def check_secret_file(path: str) -> Credentials:
    """Read and parse a ServiceNow secret file before anything runs.

    The shape is checked by the anomaly function's own parser, so a file it
    would refuse at the first delivery (no password, a list, half an OAuth
    client) is refused here at once. :class:`ConfigError` names the file
    and the field; the values never appear in it.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None
    try:
        return Credentials.from_secret_string(text, f"secret file {path}")
    except SecretError as exc:
        raise ConfigError(
            '{} (expected {{"username": ..., "password": ...}}, or {{"client_id": ..., '
            '"client_secret": ...}} for OAuth)'.format(exc)
        ) from None
