"""The ``groupcam`` command line: a table of commands, one module each.

Each command module has ``NAME``, ``HELP`` and ``DESCRIPTION``, ``add_arguments(parser)``
and ``run(args) -> int`` (the exit status). A new command is a new module and a
new row of :data:`COMMANDS`; docs/architecture.md says more.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from groupcam_core import GroupCAMError, __version__

from . import compare, demo, explain
from .arguments import UsageError

__all__ = ["COMMANDS", "main"]

#: The commands, in the order ``groupcam --help`` lists them.
COMMANDS: tuple[ModuleType, ...] = (demo, compare, explain)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="groupcam", description="Group-CAM visual explanations for image classifiers."
    )
    parser.add_argument("--version", action="version", version=f"groupcam {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        sub = commands.add_parser(
            command.NAME,
            help=command.HELP,
            description=command.DESCRIPTION,
            **getattr(command, "PARSER_OPTIONS", {}),
        )
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    # TensorFlow's C++ start-up lines (CPU features, missing CUDA) are not the user's concern;
    # a user who wants them sets TF_CPP_MIN_LOG_LEVEL.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as error:
        print(f"groupcam {args.command}: error: {error}", file=sys.stderr)
        return 2
    except GroupCAMError as error:
        print(f"groupcam: error: {error}", file=sys.stderr)
        return 1
