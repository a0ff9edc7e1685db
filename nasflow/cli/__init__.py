"""``nasflow`` command line: one entry point with subcommands, one module per command group.

* ``train``: BPTT training (``nasflow.cli.train``);
* ``search autosnn`` / ``search snasnet``: architecture search (``nasflow.cli.search``, ``nasflow.cli.snasnet``);
* ``run``: the main job and its summary screen (``nasflow.cli.run``);
* ``export`` / ``simulate``: NIR and netx export, backend simulation (``nasflow.cli.export``, ``nasflow.cli.simulate``);
* ``hw``: chip mapping and cost (``nasflow.cli.hw``).

Every subcommand parser sets ``handler`` (parsed args → exit status). Errors a user can fix (bad config, missing
data, unknown names, bad checkpoints) print one clear line and exit with status 2 instead of a traceback. Help
texts are plain prose: argparse prints them as they are, so they carry no reStructuredText markup.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nasflow import __version__
from nasflow.cli.export import add_export_parser
from nasflow.cli.hw import add_hw_parser
from nasflow.cli.netx_import import add_import_parser
from nasflow.cli.run import add_run_parser, summary_screen
from nasflow.cli.search import add_search_parser
from nasflow.cli.simulate import add_simulate_parser
from nasflow.cli.train import add_train_parser

__all__ = ["build_parser", "main", "summary_screen"]

DESCRIPTION = (
    "Search, train, export and cost spiking neural networks: architecture search (AutoSNN, SNASNet), "
    "BPTT training, export to NIR and lava-dl netx, simulation on torch and Lava, and neuromorphic chip "
    "cost models."
)
EPILOG = (
    "Run 'nasflow COMMAND --help' for the options of a command. Errors you can fix (a bad config, missing "
    "data, an unknown name) print one line and exit with status 2. A killed train or search continues when "
    "the same command is run again, a killed run with 'nasflow run --resume'."
)


class _Version(argparse.Action):
    """``--version``: the version and which neuron loop runs (checked only when asked: it may import torch)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # type: ignore[override]
        import warnings

        from nasflow import kernels

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            line = kernels.describe()
        print(f"nasflow {__version__}\n{line}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``nasflow`` argument parser (subcommands)."""
    parser = argparse.ArgumentParser(prog="nasflow", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action=_Version, nargs=0, help="print nasflow's version and neuron loop")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_train_parser, add_search_parser, add_run_parser, add_export_parser, add_import_parser,
                add_simulate_parser, add_hw_parser):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nasflow`` command."""
    from exporters.core.process import die_with_parent
    from nasflow.data import DatasetNotFoundError
    from nasflow.train.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    die_with_parent()  # forked helpers (Lava, data loaders) exit when this process dies, even by SIGKILL
    try:
        return args.handler(args)
    except (ValueError, KeyError, DatasetNotFoundError, CheckpointError, FloatingPointError, OSError) as err:
        print(f"nasflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nasflow {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
