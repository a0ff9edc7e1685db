"""Compiled neuron kernels: the IF/LIF/PLIF, ALIF and CUBA time loops in C++ (``neurons.cpp``, ``adaptive.cpp``),
with the torch-op loop as fallback, and Lava's integer LIF for ``lava-emu`` (``fixed.cpp``, numpy fallback).

``make`` builds the extension once per machine (``python -m nasflow.kernels.build``: the machine's compiler
against the venv's own torch, through ``torch.utils.cpp_extension``, into ``nasflow/kernels/_build/``). At run
time ``ops()`` imports that build if it exists and matches the current source (its SHA-256 is stored beside it);
otherwise, or when ``NASFLOW_KERNELS=torch`` forces it, nasflow runs the torch-op loop and says so once.
``backend()`` names the active one (``nasflow --version`` prints it).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

__all__ = ["BUILD_DIR", "ENV", "NAME", "SOURCES", "backend", "describe", "ops", "source_digest", "using_torch_loop",
           "why_fallback"]

ENV = "NASFLOW_KERNELS"
NAME = "nasflow_neurons"
SOURCES = tuple(Path(__file__).with_name(n) for n in ("neurons.cpp", "adaptive.cpp", "fixed.cpp", "common.h"))
"""The kernel's sources (the first holds the module definition; the header is part of the digest)."""
BUILD_DIR = Path(__file__).with_name("_build")

_state: dict[str, object] = {}


def source_digest() -> str:
    """SHA-256 of the kernel sources (a build is used only for the sources it was built from)."""
    h = hashlib.sha256()
    for path in SOURCES:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _load() -> tuple[ModuleType | None, str | None]:
    if os.environ.get(ENV, "").strip().lower() == "torch":
        return None, f"{ENV}=torch forces the torch-op loop"
    built = sorted(BUILD_DIR.glob(f"{NAME}*.so"))
    digest = BUILD_DIR / "source.sha256"
    if not built or not digest.exists():
        return None, "the compiled neuron kernel is not built (run `make kernels` or `python -m nasflow.kernels.build`)"
    if digest.read_text().strip() != source_digest():
        return None, "the compiled neuron kernel was built from another source (rebuild: `make kernels`)"
    import torch  # noqa: F401  (the extension links against the loaded libtorch)

    try:
        loader = importlib.machinery.ExtensionFileLoader(NAME, str(built[0]))
        spec = importlib.util.spec_from_loader(NAME, loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    except (ImportError, OSError) as err:
        return None, f"the compiled neuron kernel does not load ({err}); rebuild it with `make kernels`"
    return module, None


def ops() -> ModuleType | None:
    """The compiled kernel module, or None (the torch-op loop; warned once with the reason)."""
    if "ops" not in _state:
        module, why = _load()
        _state["ops"], _state["why"] = module, why
        if module is None and not os.environ.get(ENV, "").strip().lower() == "torch":
            warnings.warn(f"nasflow: {why}; using the slower torch-op neuron loop", RuntimeWarning, stacklevel=2)
    return _state["ops"]  # type: ignore[return-value]


def backend() -> str:
    """``"compiled"`` or ``"torch"``: which neuron loop runs."""
    return "compiled" if ops() is not None else "torch"


def why_fallback() -> str | None:
    """Why the torch-op loop runs (None when the compiled kernel does)."""
    ops()
    return _state.get("why")  # type: ignore[return-value]


def describe() -> str:
    """One line for ``nasflow --version``: the active neuron loop and, for the fallback, why."""
    why = why_fallback()
    return "neuron loop: compiled kernel" if why is None else f"neuron loop: torch ops ({why})"


@contextlib.contextmanager
def using_torch_loop() -> Iterator[None]:
    """Run the torch-op loop inside the block even when the compiled kernel is built (equivalence tests)."""
    ops()
    saved = dict(_state)
    _state["ops"], _state["why"] = None, "using_torch_loop()"
    try:
        yield
    finally:
        _state.clear()
        _state.update(saved)
