"""python -m aot_loss demo: the demo (AOT and DPO on a small preference task).
python -m aot_loss compare A.jsonl B.jsonl ...: test whether one model's scores dominate another's.
python -m aot_loss info: versions, native library and backends.
python -m aot_loss --version: the installed version."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch to a subcommand."""
    from . import _info, compare, demo
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="python -m aot_loss", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"aot-loss {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {
        demo: "train AOT and DPO on a small preference task",
        compare: "test whether one model's scores dominate another's (almost stochastic dominance)",
    }
    parsers = {}
    for module, text in helps.items():
        name = module.__name__.rpartition(".")[2]
        parsers[name] = commands.add_parser(
            name, help=text, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(parsers[name])
    commands.add_parser("info", help="versions, native library and backends")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo.run(demo.check_args(parsers["demo"], args))
    elif args.command == "compare":
        compare.run(parsers["compare"], args)
    else:
        _info.main()


if __name__ == "__main__":
    main(sys.argv[1:])
