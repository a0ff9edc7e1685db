"""Build the compiled neuron kernel: ``python -m nasflow.kernels.build [--force]`` (``make`` runs it).

Compiles ``neurons.cpp``, ``adaptive.cpp`` and ``fixed.cpp`` with the machine's C++ compiler against the installed torch
(``torch.utils.cpp_extension``, ninja), ``-O3 -ffp-contract=off`` (no fused multiply-adds, so the forward matches
the torch-op loop bit for bit) and OpenMP (``at::parallel_for`` then uses torch's threads). Writes
``nasflow/kernels/_build/`` and the sources' SHA-256 beside the library.
A failed build exits 1 with the compiler's message; nasflow still runs (torch loop).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from nasflow.kernels import BUILD_DIR, NAME, SOURCES, source_digest

__all__ = ["build", "main"]


def build(force: bool = False, verbose: bool = False) -> float:
    """Compile the kernel (skipped when the build matches the source, unless ``force``); returns seconds taken."""
    digest = BUILD_DIR / "source.sha256"
    if not force and digest.exists() and digest.read_text().strip() == source_digest() \
            and list(BUILD_DIR.glob(f"{NAME}*.so")):
        return 0.0
    from torch.utils.cpp_extension import load

    if BUILD_DIR.exists():
        shutil.rmtree(BUILD_DIR)
    BUILD_DIR.mkdir(parents=True)
    t0 = time.perf_counter()
    load(name=NAME, sources=[str(p) for p in SOURCES if p.suffix == ".cpp"], build_directory=str(BUILD_DIR),
         verbose=verbose, with_cuda=False,
         extra_cflags=["-O3", "-ffp-contract=off", "-fopenmp"], extra_ldflags=["-fopenmp"])
    digest.write_text(source_digest() + "\n")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when the build is up to date")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        seconds = build(args.force, args.verbose)
    except Exception as err:  # a compiler or toolchain failure: report it, nasflow falls back at run time
        print(f"nasflow kernels: build failed: {err}", file=sys.stderr)
        return 1
    state = f"built in {seconds:.1f} s" if seconds else "up to date"
    print(f"nasflow kernels: {state} ({BUILD_DIR})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
