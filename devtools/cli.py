"""The ``edge-agent`` command: one table of commands, one handler each.

Each row of :data:`COMMANDS` names a command, its one-line help, the function
that adds its options to its parser, and its handler (``module:function``,
imported only when that command runs, so ``edge-agent run`` on a Pi loads
neither the simulation nor boto3). A handler takes the parsed options and the
command's parser (for ``parser.error``) and returns the exit status. The
commands with a command line of their own (``deploy``, ``standin``, ``bench``)
have no options here: their handler gets the rest of the line as it was typed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple


class Command(NamedTuple):
    name: str
    help: str
    handler: str  # "module:function": (args, parser) -> int, or (argv) -> int with own_line
    arguments: Optional[str] = None  # "module:function" adding the options to the parser
    own_line: bool = False  # the handler parses the rest of the line itself
    dash_values: Sequence[str] = ()  # options whose value may start with "-"


COMMANDS = (
    Command(
        "simulate",
        "run both functions on this laptop (fake sensor, ServiceNow stand-in)",
        "devtools.simulate_cmd:handle",
        "devtools.simulate_cmd:add_arguments",
        dash_values=("--outage", "--at"),
    ),
    Command(
        "run",
        "run both functions on this device without Greengrass",
        "agent.standalone.run:handle",
        "agent.standalone.run:add_arguments",
    ),
    Command(
        "check-servicenow",
        "check the instance, credentials, roles and CI before the first breach",
        "agent.standalone.check_cmd:handle",
        "agent.standalone.check_cmd:add_arguments",
    ),
    Command(
        "outbox",
        "show the anomaly function's outbox and whether actions were lost; requeue dead letters",
        "devtools.outbox_cmd:handle",
        "devtools.outbox_cmd:add_arguments",
    ),
    Command(
        "status",
        "the state dir on one screen: episodes, outbox, locks",
        "devtools.status_cmd:handle",
        "devtools.status_cmd:add_arguments",
    ),
    Command(
        "config-table",
        "print every function variable: its function, default and meaning",
        "devtools.cli:print_config_table",
        "devtools.cli:config_table_arguments",
    ),
    Command(
        "standin",
        "run the local ServiceNow stand-in (see standin --help)",
        "devtools.servicenow_standin.cli:main",
        own_line=True,
    ),
    Command(
        "deploy",
        "Greengrass deploy commands (see deploy --help)",
        "deploy.cli:main",
        own_line=True,
    ),
    Command("bench", "run the benchmark suite", "benchmarks.run:main", own_line=True),
)


def main(argv: Optional[List[str]] = None) -> int:
    """The ``edge-agent`` entry point; see the exit-code table in docs/cli.md."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        # Piped into head and the reader left: stop quietly, without "[Errno 32] Broken pipe".
        from devtools.console import silence

        silence(sys.stdout)
        return 1


def _main(argv: List[str]) -> int:
    chosen = next((c for c in COMMANDS if argv and argv[0] == c.name), None)
    if chosen is not None and chosen.own_line:
        run_own_line: Any = _resolve(chosen.handler)
        return int(run_own_line(argv[1:]))
    parser, command_parser = build_parser(chosen)
    if chosen is not None and chosen.dash_values:
        argv = join_dash_values(argv, chosen.dash_values)
    args, extra = parser.parse_known_args(argv)
    assert chosen is not None and command_parser is not None  # argparse exits otherwise
    if extra:  # named by the command's parser, whose --help lists its options
        command_parser.syntax_error("unrecognized arguments: " + " ".join(extra))
    handle: Any = _resolve(chosen.handler)
    return int(handle(args, command_parser))


def build_parser(
    chosen: Optional[Command] = None,
) -> Tuple[argparse.ArgumentParser, Optional[argparse.ArgumentParser]]:
    """The ``edge-agent`` parser, every command listed; only ``chosen``'s options are added
    (each command's options import what they need: choices, defaults)."""
    from agent.standalone.arguments import CommandParser

    parser = CommandParser(
        prog="edge-agent",
        description="The edge agent: simulate it on a laptop, run it on a device without "
        "Greengrass, look at its state, deploy it.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command_parser = None
    for command in COMMANDS:
        child = sub.add_parser(
            command.name, help=command.help, description=command.help, add_help=not command.own_line
        )
        if command is chosen:
            command_parser = child
            if command.arguments:
                _resolve(command.arguments)(child)
    return parser, command_parser


class _Version(argparse.Action):
    """``--version``: the package's version, looked up only when asked for (importing
    ``importlib.metadata`` cost every ``edge-agent`` process 0.1-0.4 s)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings,
            dest=dest,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show program's version number and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print("{} {}".format(parser.prog, package_version()))
        parser.exit()


def package_version() -> str:
    """The installed package's version (its metadata), or say it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("edge-agent")
    except metadata.PackageNotFoundError:
        return "(not installed: run from a checkout without pip install)"


def join_dash_values(argv: List[str], options: Sequence[str]) -> List[str]:
    """``--outage -60:600`` as ``--outage=-60:600``, so the value reaches its check."""
    joined: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if (
            arg in options
            and i + 1 < len(argv)
            and argv[i + 1].startswith("-")
            and ":" in argv[i + 1]
        ):
            joined.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        joined.append(arg)
        i += 1
    return joined


def config_table_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edge-agent config-table``."""
    parser.add_argument(
        "--format",
        choices=("text", "markdown"),
        help="text: one block per variable, wrapped to the terminal; markdown: the table "
        "docs/configuration.md has (default: text in a terminal, markdown when piped)",
    )
    parser.add_argument(
        "--markdown",
        dest="format",
        action="store_const",
        const="markdown",
        help="the same as --format markdown",
    )


def print_config_table(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``edge-agent config-table``: every variable, for a person, or the table of
    docs/configuration.md."""
    from agent.config import markdown_table

    chosen = getattr(args, "format", None) or ("text" if sys.stdout.isatty() else "markdown")
    print(markdown_table() if chosen == "markdown" else text_table())
    return 0


def text_table(width: Optional[int] = None) -> str:
    """The variables as a person reads them in a terminal: name, function, default, meaning."""
    import shutil
    import textwrap

    from agent.config import VARIABLES

    width = width or min(shutil.get_terminal_size((100, 24)).columns, 100)
    name_width = max(len(var.name) for var in VARIABLES)
    blocks = []
    for var in VARIABLES:
        default = "unset" if var.default is None else (var.default or '""')
        head = "{:<{w}}  {:<7}  default {}".format(var.name, var.function, default, w=name_width)
        meaning = textwrap.fill(
            var.help, width=max(width, 40), initial_indent="    ", subsequent_indent="    "
        )
        blocks.append(head + "\n" + meaning)
    return "\n".join(blocks)


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


if __name__ == "__main__":
    raise SystemExit(main())
