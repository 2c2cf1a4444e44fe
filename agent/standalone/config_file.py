"""``edge-agent run --config FILE``: the options and variables of a run, from an INI file.

The file holds what the command line holds: ``[run]`` the connection and run
options (keys are the long option names without ``--``), ``[variables]`` the
function variables ``--set`` sets. Explicit command-line options beat the
file, and the file beats environment variables (``AWS_IOT_THING_NAME``,
``EDGE_AGENT_SECRET_FILE``, ``EDGE_AGENT_SENSOR``), as Powertools parameters
let explicit arguments beat the environment.

Why INI (:mod:`configparser`): ``edge-agent run`` runs on the Pi's own Python
(3.9 on Raspberry Pi OS 11 Bullseye, 3.11 on 12 Bookworm) and device code
imports on 3.8; :mod:`tomllib` exists only from 3.11, so TOML would need a
third-party parser or would be refused on Bullseye. INI is read by the
standard library of every one of them, takes comments, and is what
``/etc/*.conf`` files on a Pi look like.

Every unknown section or key and every bad value is refused before anything
runs, as ``FILE:LINE: [section] key: what is wrong``. Relative paths are
relative to the file's folder.
"""

from __future__ import annotations

import configparser
import os
import re
from typing import Callable, Dict, List, NamedTuple, NoReturn, Optional, Tuple

from ..config import check_values, suggest
from ..errors import ConfigError
from ..variables import VARIABLES_BY_NAME

RUN_SECTION = "run"
VARIABLES_SECTION = "variables"
PROTOCOLS = ("3.1.1", "5", "auto")
LOG_LEVELS = ("debug", "info", "warning", "error")


class Option(NamedTuple):
    """One key of ``[run]``: the ``run`` option it stands for and how its value is read."""

    dest: str  # the argparse destination
    kind: str  # "text", "path", "url", "int", "choice", "address"
    help: str
    choices: Tuple[str, ...] = ()


def _sensor_backends() -> Tuple[str, ...]:
    from ..sensors import BACKENDS

    return tuple(BACKENDS)


# The keys of [run], in the order the documentation lists them.
RUN_OPTIONS: Dict[str, Option] = {
    "endpoint": Option("endpoint", "text", "AWS IoT Core data endpoint, HOST[:PORT]"),
    "mqtt": Option("mqtt", "url", "any MQTT broker instead: mqtt://host or mqtts://host[:port]"),
    "cert": Option("cert", "path", "device certificate (PEM)"),
    "key": Option("key", "path", "device private key (PEM)"),
    "ca": Option("ca", "path", "CA certificate of the broker"),
    "thing": Option("thing", "text", "thing name; also the device id"),
    "client-id": Option("client_id", "text", "MQTT client id (default: the thing name)"),
    "protocol": Option("protocol", "choice", "MQTT version", PROTOCOLS),
    "sensor": Option("sensor", "choice", "sensor backend", ()),  # choices: the sensor table
    "secret-file": Option("secret_file", "path", "the ServiceNow secret file"),
    "state-dir": Option("state_dir", "path", "where episode state and the outbox live"),
    "spool-file": Option("spool_file", "path", "SQLite file for messages waiting for the broker"),
    "spool-bytes": Option("spool_bytes", "int", "spool size in bytes"),
    "status": Option("status", "address", "serve the status page at HOST:PORT"),
    "log-level": Option("log_level", "choice", "log level", LOG_LEVELS),
}


class ConfigFile(NamedTuple):
    """What a config file says: ``[run]`` values by argparse destination, and ``[variables]``."""

    path: str
    options: Dict[str, object]
    variables: Dict[str, str]


def read_config_file(path: str) -> ConfigFile:
    """Read and check ``path``; raise :class:`ConfigError` naming the file, line and key."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    return parse_config_text(text, path)


def parse_config_text(text: str, path: str) -> ConfigFile:
    """The checked contents of a config file whose text is ``text`` (``path`` names it)."""
    parser = configparser.ConfigParser(
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=("#",),
        interpolation=None,  # a '%' in a value is a '%'
        empty_lines_in_values=False,
        default_section="\x00none",  # no [DEFAULT] section merged into the others
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # variables are camelCase
    try:
        parser.read_string(text, source=path)
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            "{}:{}: a key before any section; start the file with [run] or [variables]".format(
                path, exc.lineno
            )
        ) from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: [{exc.section}] appears twice") from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}: [{exc.section}] {exc.option}: set twice in this section"
        ) from None
    except configparser.ParsingError as exc:
        lineno, line = exc.errors[0]
        raise ConfigError(
            "{}:{}: not a 'key = value' line: {}".format(path, lineno, line.strip()[:80])
        ) from None
    lines = _line_numbers(text)
    base = os.path.dirname(os.path.abspath(path))
    options: Dict[str, object] = {}
    variables: Dict[str, str] = {}
    for section in parser.sections():
        where = _Where(path, section, lines)
        if section not in (RUN_SECTION, VARIABLES_SECTION):
            raise ConfigError(
                "{}:{}: unknown section [{}]; the sections are [run] and [variables]".format(
                    path, lines.get((section, None), 0), section
                )
            )
        for key, raw in parser.items(section):
            value = raw.strip()
            if section == RUN_SECTION:
                dest, parsed = _run_option(key, value, base, where)
                options[dest] = parsed
            else:
                _check_variable(key, value, where)
                variables[key] = value
    if "endpoint" in options and "mqtt" in options:
        _Where(path, RUN_SECTION, lines).fail("mqtt", "give endpoint or mqtt, not both")
    try:
        check_values(variables)  # each value, and the checks across them (low limit < limit)
    except ConfigError as exc:
        # The message names the variable first (``humidLowLimit (60) must be below ...``).
        found = [
            (match.start(), name)
            for name in variables
            for match in [re.search(r"\b%s\b" % re.escape(name), str(exc))]
            if match
        ]
        if found:
            _Where(path, VARIABLES_SECTION, lines).fail(min(found)[1], str(exc))
        raise ConfigError(f"{path}: [variables]: {exc}") from None
    return ConfigFile(path, options, variables)


def merged_options(config: ConfigFile, given: Dict[str, object]) -> Dict[str, object]:
    """The file's ``[run]`` values for the options the command line left unset (``None``).

    ``endpoint`` and ``mqtt`` are one setting, where the messages go: either on
    the command line replaces both in the file.
    """
    taken: Dict[str, object] = {}
    broker_given = given.get("endpoint") is not None or given.get("mqtt") is not None
    for dest, value in config.options.items():
        if dest in ("endpoint", "mqtt") and broker_given:
            continue
        if given.get(dest) is None:
            taken[dest] = value
    return taken


def assignments(config: ConfigFile, given: List[str]) -> List[str]:
    """``--set`` items: the file's variables first, so the command line's win."""
    return ["{}={}".format(name, value) for name, value in config.variables.items()] + list(given)


class _Where:
    """Names the file, line, section and key of a bad entry."""

    def __init__(self, path: str, section: str, lines: Dict[Tuple[str, Optional[str]], int]):
        self.path = path
        self.section = section
        self.lines = lines

    def fail(self, key: str, message: str) -> NoReturn:
        line = self.lines.get((self.section, key), self.lines.get((self.section, None), 0))
        raise ConfigError(f"{self.path}:{line}: [{self.section}] {key}: {message}")


def _run_option(key: str, value: str, base: str, where: _Where) -> Tuple[str, object]:
    option = RUN_OPTIONS.get(key)
    if option is None:
        import difflib  # deferred: only a misspelt key pays for it

        guess = difflib.get_close_matches(key.lower(), list(RUN_OPTIONS), n=1, cutoff=0.75)
        hint = f"; did you mean {guess[0]}?" if guess else ""
        if key in VARIABLES_BY_NAME:
            hint = "; it is a variable: put it under [variables]"
        where.fail(
            key, "unknown key{} (the keys of [run]: {})".format(hint, ", ".join(RUN_OPTIONS))
        )
    _check_shape(key, value, where)
    reader = _READERS[option.kind]
    choices = option.choices or (_sensor_backends() if key == "sensor" else ())
    try:
        return option.dest, reader(value, base, choices)
    except ValueError as exc:
        where.fail(key, str(exc))


def _check_variable(name: str, value: str, where: _Where) -> None:
    if name not in VARIABLES_BY_NAME:
        guess = suggest(name)
        if guess is None and name in RUN_OPTIONS:
            hint = "; it is an option of the run: put it under [run]"
        else:
            hint = f"; did you mean {guess}?" if guess else ""
        where.fail(name, f"unknown variable{hint} (edge-agent config-table lists every variable)")
    _check_shape(name, value, where)


def _check_shape(key: str, value: str, where: _Where) -> None:
    if "\n" in value:
        where.fail(key, "the value continues on the next line (indented); keep it on one line")
    if not value:
        where.fail(key, "has no value; give one, or leave the key out for the default")


def _text(value: str, base: str, choices: Tuple[str, ...]) -> str:
    return value


def _path(value: str, base: str, choices: Tuple[str, ...]) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def _url(value: str, base: str, choices: Tuple[str, ...]) -> str:
    if not re.match(r"^mqtts?://[^/\s]+", value):
        raise ValueError(f"expected mqtt://host[:port] or mqtts://host[:port], got {value!r}")
    return value


def _int(value: str, base: str, choices: Tuple[str, ...]) -> int:
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise ValueError(f"expected a whole number of bytes, got {value!r}") from None
    if number < 1:
        raise ValueError(f"must be 1 or more, got {number}")
    return number


def _choice(value: str, base: str, choices: Tuple[str, ...]) -> str:
    if value.lower() not in choices:
        raise ValueError("expected one of {}, got {!r}".format(", ".join(choices), value))
    return value.lower()


def _address(value: str, base: str, choices: Tuple[str, ...]) -> str:
    from ..status.settings import parse_address

    parse_address(value, "status")
    return value


_READERS: Dict[str, Callable[[str, str, Tuple[str, ...]], object]] = {
    "text": _text,
    "path": _path,
    "url": _url,
    "int": _int,
    "choice": _choice,
    "address": _address,
}

_SECTION_LINE = re.compile(r"^\[(?P<name>[^\]]+)\]")
_KEY_LINE = re.compile(r"^(?P<key>[^\s=#;\[][^=]*?)\s*=")


def _line_numbers(text: str) -> Dict[Tuple[str, Optional[str]], int]:
    """Where each section header and each key is: ``{(section, key or None): line}``.

    configparser keeps no line numbers, so the file is scanned again with the
    same rules (keys start at the line's beginning, ``=`` delimits).
    """
    found: Dict[Tuple[str, Optional[str]], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _SECTION_LINE.match(line.strip())
        if header and not line[:1].isspace():
            section = header.group("name").strip()
            found.setdefault((section, None), number)
            continue
        key = _KEY_LINE.match(line)
        if key and section:
            found.setdefault((section, key.group("key").strip()), number)
    return found
