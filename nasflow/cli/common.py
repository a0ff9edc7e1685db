"""Helpers shared by several commands: ``--set KEY=VALUE`` overrides and search configs from ``--config`` + flags."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

__all__ = ["parse_set", "search_config_mapping"]


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as a mapping; each VALUE is read as YAML (``0.01`` is a float, ``true`` a bool)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE (e.g. train.lr=0.01), got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def search_config_mapping(args: argparse.Namespace, flags: Mapping[str, str]) -> dict[str, Any]:
    """The keys of a search config: the ``--config`` YAML mapping (if given), overridden by the flags given on the
    command line (``flags`` maps an argument's dest to its config key); ``--no-progress`` sets ``progress``."""
    from nasflow.config import load_yaml_mapping

    base: dict[str, Any] = {}
    if args.config:
        base = load_yaml_mapping(args.config)
    base.update({key: getattr(args, flag) for flag, key in flags.items() if getattr(args, flag) is not None})
    if args.no_progress:
        base["progress"] = False
    return base


#: the executor flags of every search command → their config keys
EXECUTOR_FLAGS = {"executor": "executor", "ray_address": "ray_address", "workers": "workers",
                  "threads_per_worker": "threads_per_worker"}


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """``--executor local|ray``, ``--ray-address``, ``--workers``, ``--threads-per-worker`` (README: Ray)."""
    p.add_argument("--executor", choices=["local", "ray"],
                   help="where candidates are evaluated: local (default) or ray (Ray actors; see --ray-address)")
    p.add_argument("--ray-address", help="ray: address of a running cluster (ray start --head prints it; 'auto' for "
                   "the local one); default: start a local Ray for this search and stop it after")
    p.add_argument("--workers", type=int, help="ray: worker actors (default 2)")
    p.add_argument("--threads-per-worker", type=int, help="ray: torch threads per worker (default 1)")

