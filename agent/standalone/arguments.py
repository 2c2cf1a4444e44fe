"""Values from the command line of ``edge-agent run`` and ``simulate``, checked before anything runs."""

from __future__ import annotations

import argparse
from typing import Any, Dict, Iterable, NoReturn

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


class CommandParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, not a usage dump before the message.

    A value the handler refuses (``parser.error`` after parsing: a misspelt
    ``--set`` name) is one line naming what is wrong; a command line argparse
    cannot parse (an unknown option) gets a pointer to ``--help`` on that line.
    The exit status stays 2.
    """

    _parsing = False

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        return self._while_parsing(super().parse_known_args, *args, **kwargs)

    def parse_args(self, *args: Any, **kwargs: Any) -> Any:
        return self._while_parsing(super().parse_args, *args, **kwargs)

    def _while_parsing(self, parse: Any, *args: Any, **kwargs: Any) -> Any:
        was, self._parsing = self._parsing, True
        try:
            return parse(*args, **kwargs)
        finally:
            self._parsing = was

    def error(self, message: str) -> NoReturn:
        if self._parsing:
            self.syntax_error(message)
        self.exit(2, "{}: error: {}\n".format(self.prog, message))

    def syntax_error(self, message: str) -> NoReturn:
        """A command line this parser cannot parse: the message and where the options are."""
        self.exit(
            2, "{}: error: {} ({} --help lists the options)\n".format(self.prog, message, self.prog)
        )


LOG_LEVELS = ("debug", "info", "warning", "error")


def add_log_arguments(parser: argparse.ArgumentParser, verbose: str) -> None:
    """``--log-level LEVEL``, and ``-v`` as its shorthand for ``verbose`` (a level)."""
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="log level: {} ".format(", ".join(LOG_LEVELS))
        + "(-v is --log-level {})".format(verbose),
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_const",
        const=verbose,
        dest="verbose_level",
        help=f"--log-level {verbose}",
    )


def log_level(args: argparse.Namespace, default: str) -> int:
    """The :mod:`logging` level the options ask for: ``--log-level``, else ``-v``, else ``default``."""
    import logging

    name = getattr(args, "log_level", None) or getattr(args, "verbose_level", None) or default
    level: int = getattr(logging, name.upper())
    return level
