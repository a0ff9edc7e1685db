"""Import third-party packages that talk at import time, without letting them talk to the terminal.

lava-dl prints a notice about the Prophesee dataset toolbox (to stdout, where it mixes with the JSON the
commands print) whenever ``lava.lib.dl`` is imported, and torch's C++-extension module prints CUDA probing
lines to stderr on a machine without a CUDA runtime. Neither says anything about the user's run. Importing
those modules once, early, with both output streams captured at the file-descriptor level (so prints from C
code and child processes are caught too), leaves them in ``sys.modules``: the exporters' own imports later
are then silent. The captured text is shown only when the import fails, because then it may hold the reason.

Python warnings are not filtered here: nasflow's own warnings (lossy mappings, legacy NIR files, fallbacks)
must reach the user, and warnings raised while a noisy module is imported are captured with its output.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator

__all__ = ["LAVA_DL_MODULES", "captured_output", "preload_lava_dl", "quiet_import"]

# torch's extension loader first: lava-dl's slayer imports it, and it probes for CUDA when imported.
LAVA_DL_MODULES = ("torch.utils.cpp_extension", "lava.lib.dl.slayer", "lava.lib.dl.netx")


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Capture everything written to stdout and stderr (Python objects and file descriptors 1 and 2).

    Yields a list that holds the captured text once the block has finished.
    """
    result: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    py_buffer = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = []
        try:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                except OSError:  # no such descriptor (a detached process): nothing to capture there
                    continue
                os.dup2(sink.fileno(), fd)
            with contextlib.redirect_stdout(py_buffer), contextlib.redirect_stderr(py_buffer):
                yield result
        finally:
            for stream in (sys.stdout, sys.stderr):
                _flush(stream)
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            result.append(py_buffer.getvalue() + sink.read().decode(errors="replace"))


def _flush(stream: object) -> None:
    try:
        stream.flush()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        pass


def quiet_import(name: str) -> bool:
    """Import module ``name`` with its output captured; True when it is importable.

    On failure the captured output is written to stderr and False is returned: the caller's own import
    raises later, where the command turns it into its usual error message.
    """
    if name in sys.modules:
        return True
    failed = False
    with captured_output() as text:
        try:
            importlib.import_module(name)
        except Exception:  # any import-time failure: the later real import reports it
            failed = True
    if failed and text and text[0].strip():
        sys.stderr.write(text[0])
    return not failed


def preload_lava_dl() -> bool:
    """Import lava-dl (netx) and torch's extension loader quietly; True when all of them are importable.

    Lava fixes the multiprocessing start method when it is imported, so the exporters' guard for that runs
    first; when it refuses, nothing is imported and the exporters report the problem themselves.
    """
    from exporters.lava.runtime import ensure_lava_importable

    try:
        ensure_lava_importable()
    except Exception:  # the start method is unusable: the caller's own guard reports it
        return False
    return all([quiet_import(name) for name in LAVA_DL_MODULES])
