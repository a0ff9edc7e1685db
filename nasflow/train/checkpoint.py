"""Checkpoints that are written atomically and read back safely (``weights_only=True``)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from exporters.core.faults import fault_point

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "nasflow-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or not one that nasflow wrote."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors, dicts, lists, numbers, strings only) to ``path`` atomically.

    The file is written next to its destination and renamed into place, so an interrupted
    write never leaves a truncated checkpoint behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        fault_point("checkpoint")  # a kill here leaves the previous checkpoint; ENOSPC here keeps it too
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a nasflow checkpoint with ``weights_only=True`` (no arbitrary code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, UnicodeDecodeError,
            TypeError, KeyError, ValueError, IndexError, AttributeError) as err:  # a damaged file reaches torch's
        # unpickler, which fails in many ways
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt, truncated, or not written by torch.save): "
            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is a torch file but not a nasflow checkpoint (no format={CHECKPOINT_FORMAT!r} marker); "
            "train a model with `nasflow train` to get one"
        )
    if data.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by a newer nasflow (checkpoint version {data['version']})")
    return data
