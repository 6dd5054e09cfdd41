"""``crunet`` command: one sub-command per module; each module has ``add_parser(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from crunet.errors import CrunetError

# Sub-command modules, imported lazily so that `crunet models` does not pay for the trainer's imports.
COMMANDS = {
    "models": "crunet.cli.models_cmd",
    "table": "crunet.cli.table_cmd",
    "gbtd": "crunet.cli.gbtd_cmd",
    "factorize": "crunet.cli.factorize_cmd",
    "train": "crunet.cli.train_cmd",
    "compress": "crunet.cli.compress_cmd",
    "recipe": "crunet.cli.recipe_cmd",
    "eval": "crunet.cli.eval_cmd",
    "predict": "crunet.cli.predict_cmd",
    "bench": "crunet.cli.bench_cmd",
    "export": "crunet.cli.export_cmd",
    "convert-mxnet": "crunet.cli.convert_mxnet_cmd",
    "study": "crunet.cli.study_cmd",
}


class CliError(CrunetError):
    """An error the user can fix: printed as one line, exit status 2."""


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crunet", description="Parameter-sharing residual networks.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = [a for a in argv if not a.startswith("-")][:1]
    for name, module in COMMANDS.items():
        if wanted and wanted[0] in COMMANDS and name != wanted[0]:
            subparsers.add_parser(name, help=f"see crunet {name} --help")
            continue
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except BrokenPipeError:  # the reader went away (`crunet study list tier3 | head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141  # 128 + SIGPIPE, what a shell reports for a process killed by the broken pipe
    except (CrunetError, OSError) as err:  # CrunetError: every error a user can cause; anything else is a bug
        if os.environ.get("CRUNET_DEBUG") or not (isinstance(err, CrunetError) or _on_user_path(err, args)):
            raise
        print(f"crunet {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # TrainingInterrupted says where the resumable checkpoint is
        print(f"crunet {args.command}: {_one_line(err) or 'interrupted'}", file=sys.stderr)
        return 130


def _on_user_path(err: OSError, args: argparse.Namespace) -> bool:
    """``err`` is about a file the user named, or one inside a folder the user named (a run directory, --data)."""
    if err.filename is None:
        return False
    failed = Path(os.path.abspath(err.filename))
    given = [v for value in vars(args).values() for v in (value if isinstance(value, list) else [value])
             if isinstance(v, (str, os.PathLike))]
    return any(failed == (p := Path(os.path.abspath(v))) or p in failed.parents for v in given if str(v))


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
