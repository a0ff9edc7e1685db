"""JSON result files: the one schema-version constant, the one conversion to JSON types, the one writer.

Result files (``hw.json``, ``report.json``, ``steps/<step>.json``, ``search.json``, ``result.json``, ...)
are written through :func:`write_json`, so numpy values, paths and typed results serialise the same way in
all of them and a killed process never leaves half a file behind. Standard library and numpy only: ``hwmodels``
uses this module and must stay importable without torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from exporters.core.faults import fault_point

__all__ = ["SCHEMA_VERSION", "md_text", "to_jsonable", "write_json"]

SCHEMA_VERSION = 1
"""The ``schema_version`` of every nasflow result file. One number for all of them, so that a reader checks
one value, and a change of any file's layout is one visible bump here."""


def _key(k: Any) -> str:
    """A dict key as ``json.dumps`` writes it (``True`` → ``"true"``, ``1.5`` → ``"1.5"``); numpy scalars as
    their Python values; anything else by ``str``."""
    if isinstance(k, str):
        return k
    if isinstance(k, np.generic):
        k = k.item()
    if k is None or isinstance(k, (bool, int, float)):
        return json.dumps(k)
    return str(k)


def to_jsonable(obj: Any) -> Any:
    """``obj`` with only JSON types left (dict with str keys, list, str, int, float, bool, None).

    numpy scalars become Python scalars (``.item()``: float32 widens to the same float ``json`` would write
    for it) and arrays nested lists; tuples become lists and sets sorted lists (a set has no order, and a
    result file should not change from run to run); paths become strings; dataclasses that define
    ``to_dict`` (the typed results) are written as that dict. Float values keep ``json``'s handling (NaN and
    infinities are written as ``NaN``/``Infinity``). Anything else raises ``TypeError`` naming its type, as
    ``json.dumps`` would, rather than being written as a string nobody can read back.
    """
    if obj is None or isinstance(obj, (str, bool, int, float)) and not isinstance(obj, np.generic):
        return obj
    if isinstance(obj, dict):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        items = [to_jsonable(v) for v in obj]
        try:
            return sorted(items)
        except TypeError:  # mixed types have no natural order: sort by type, then by their JSON text
            return sorted(items, key=lambda v: (type(v).__name__, json.dumps(v, sort_keys=True)))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type) and callable(getattr(obj, "to_dict", None)):
        return to_jsonable(obj.to_dict())
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2, trailing_newline: bool = False) -> Path:
    """Write ``to_jsonable(obj)`` to ``path`` atomically; returns the path.

    The text goes to a temporary file in the same directory (the same file system, so the rename is atomic),
    is flushed and fsynced, then replaces ``path`` with ``os.replace``: a reader, or a run resumed after a
    kill, sees the old file or the whole new one, never a truncated one. Parent directories are created.
    ``indent`` and ``trailing_newline`` keep each file's established layout (``hw.json``: indent 1 and a
    final newline; ``report.json`` and the step files: indent 2, none).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(obj), indent=indent) + ("\n" if trailing_newline else "")
    # A unique name opened with "x" (not tempfile.mkstemp, whose files are private: 0600) so the result gets
    # the usual permissions of a new file, as Path.write_text gave it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        fault_point("json")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# Underscores stay: ids such as fc_sn are common, and CommonMark never emphasises inside a word.
_MD_SPECIAL = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "`": "\\`", "*": "\\*",
                             "[": "\\[", "]": "\\]", "\\": "\\\\", "\n": " ", "\r": " "})


def md_text(value: object) -> str:
    """``value`` as literal text in a Markdown file: a node id, layer name or architecture string from an input
    file (``<script>``, ``|`` that would split a table row, emphasis, links) renders as the characters it holds."""
    return str(value).translate(_MD_SPECIAL)
