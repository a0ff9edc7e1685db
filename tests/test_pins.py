"""Regression pins: today's exported graphs, simulations and hardware reports, bit for bit.

Refactoring the NIR readers, the Lava backend or the hardware models must not change a single spike or joule.
This module pins, for the main job's two trained digits models (`tests/golden/models/`: the seed-0 winner and
the `all-SCB_k3` baseline of `nasflow run`) and for the interop fixtures:

* the NIR graph `to_nir` writes from the trained `model.pt` (every node, parameter and edge);
* every node's output on the torch reference, Lava floating point and Lava fixed point, for the first 8 digits
  test samples (or seeded random input for the fixtures);
* the whole `hw_report` on Loihi (and Speck for the Sinabs CNN) from the reference activity.

Spike trains are pinned as bits (`tests/golden/pins.npz`), so a failure says which node and how many spikes moved;
exported parameters as SHA-256 digests of their bytes with dtype and shape; real-valued node outputs (currents,
read-out voltages) by their shape and moments (`tests/golden/pins.json`), compared to 1e-6 of the array's
magnitude Σ|x|: torch's float32 convolutions may pick other kernels for other memory alignments or loads, so
two runs of the same code can differ in the last bit of a current (seen on the stem conv of a fresh clone and
of a loaded machine: Σx of 65,536 currents moved by 2e-4 out of Σ|x| = 56,218; no spike moved). All of it is written
only by ``python tests/test_pins.py --write``, and only when a change of behaviour is intended and explained
in the commit. The torch reference runs in float32 with torch's default
threads, like the main job, so the pins hold for one machine type: on a CPU with other vector kernels a conv
may round differently, and the pins are re-written there once, after checking the old code gives the new values.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest
from _paths import INTEROP, ROOT

GOLDEN = ROOT / "tests" / "golden"
MODELS = ("winner", "baseline")
SAMPLES = 8
DT = 1e-3


def _digits_input() -> np.ndarray:
    from nasflow.data import make_loaders

    loaders = make_loaders("digits", SAMPLES, seed=0, augment=False)
    x, _ = next(iter(loaders.test))
    return x[:SAMPLES].unsqueeze(0).expand(8, *x[:SAMPLES].shape).contiguous().numpy().astype(np.float32)


def _fixture(name: str) -> nir.NIRGraph:
    from exporters.nir_io import LegacyResetWarning, read_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacyResetWarning)
        return read_nir(INTEROP / name)


def _fixture_input(name: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, name)))
    steps = {"cnn_sinabs.nir": 12, "braille_noDelay_bias_zero.nir": 40, "lif_norse.nir": 200}[name]
    rate = {"cnn_sinabs.nir": 0.08, "braille_noDelay_bias_zero.nir": 0.3, "lif_norse.nir": 0.2}[name]
    return (rng.random((steps, 2, *shape)) < rate).astype(np.float32)


def _cases() -> dict[str, tuple[nir.NIRGraph, np.ndarray, float | None, tuple[str, ...]]]:
    """name → (graph, input [T, B, ...], dt, chips)."""
    from exporters.core.shapes import infer_shapes
    from exporters.core.traversal import input_ids

    cases = {}
    x = _digits_input()
    for role in MODELS:
        cases[role] = (_export_case(role), x, DT, ("loihi",))
    for name, chips in (("cnn_sinabs.nir", ("loihi", "speck")), ("braille_noDelay_bias_zero.nir", ("loihi",)),
                        ("lif_norse.nir", ("loihi",))):
        graph = _fixture(name)
        shape = tuple(int(s) for s in infer_shapes(graph)[input_ids(graph)[0]])
        dt = 1e-4 if name != "cnn_sinabs.nir" else None
        cases[name] = (graph, _fixture_input(name, shape), dt, chips)
    return cases


def _is_binary(a: np.ndarray) -> bool:
    return bool(a.size) and bool(np.isin(a, (0.0, 1.0)).all())


def _bits(a: np.ndarray) -> np.ndarray:
    """A binary array as its shape followed by its packed bits."""
    return np.concatenate([np.array(a.shape, dtype=np.int64).view(np.uint8), np.packbits(a.astype(bool))])


def _moments(a: np.ndarray) -> list[float]:
    """Shape-independent fingerprint of a real-valued array: size, Σx, Σ|x|, Σx², max|x| and non-zeros."""
    a = np.asarray(a, dtype=np.float64)
    return [float(a.size), float(a.sum()), float(np.abs(a).sum()), float((a * a).sum()),
            float(np.abs(a).max(initial=0.0)), float(np.count_nonzero(a))]


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return f"{a.dtype.str}{list(a.shape)}:" + hashlib.sha256(a.tobytes()).hexdigest()


def _activities(graph: nir.NIRGraph, x: np.ndarray, dt: float | None) -> tuple[dict[str, dict], dict[str, str]]:
    """Every node's output per backend, and the refusal message of a backend that cannot run the graph."""
    from exporters import lava
    from exporters.nir_torch import simulate

    out, refused = {"torch": simulate(graph, x, dt=dt)}, {}
    for backend, fixed in (("lava", False), ("lava_fixed", True)):
        try:
            out[backend] = lava.simulate(graph, x, dt=dt, fixed_point=fixed, timeout_s=300)
        except lava.LavaBackendError as err:
            refused[backend] = str(err)
    return out, refused


def _hw(graph: nir.NIRGraph, activity: dict[str, np.ndarray], chip: str) -> dict[str, Any]:
    """The report as users get it: hw.json and hw.md written by ``write_report``."""
    import tempfile

    from hwmodels import hw_report, write_report

    with tempfile.TemporaryDirectory() as tmp:
        path = write_report(hw_report(graph, chip, activity=activity), tmp)
        return {"json": json.loads(path.read_text()), "md": (path.parent / "hw.md").read_text()}


def _graph_arrays(graph: nir.NIRGraph) -> dict[str, np.ndarray]:
    """Every numeric parameter of every node (arrays, and the int tuples conv nodes use for stride, padding, ...)."""
    out = {}
    for nid, node in sorted(graph.nodes.items()):
        for key, value in sorted(vars(node).items()):
            if isinstance(value, (np.ndarray, tuple, list, int, float, np.generic)) and not isinstance(value, bool):
                a = np.asarray(value)
                if a.dtype.kind in "fiub":
                    out[f"{nid}.{key}"] = a.astype(np.int64) if a.dtype.kind in "iub" else a
    return out


def _export_case(role: str) -> nir.NIRGraph:
    from exporters.nir_export import to_nir
    from nasflow.models import load_model

    model, _ = load_model(GOLDEN / "models" / f"{role}.pt")
    return to_nir(model, dt=DT)


def compute() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Everything pinned, computed by the code as it is now."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"export": {}, "hw": {}, "refused": {}, "real": {}}
    for role in MODELS:
        graph = _export_case(role)
        meta["export"][role] = {"types": {k: type(n).__name__ for k, n in sorted(graph.nodes.items())},
                                "edges": sorted(map(list, graph.edges)),
                                "parameters": {k: _digest(v) for k, v in _graph_arrays(graph).items()}}
    for name, (graph, x, dt, chips) in _cases().items():
        acts, refused = _activities(graph, x, dt)
        for backend, why in refused.items():
            meta["refused"][f"{name}/{backend}"] = why
        for backend, act in acts.items():
            for node, a in sorted(act.items()):
                a = np.asarray(a)
                if _is_binary(a):
                    arrays[f"sim/{name}/{backend}/{node}"] = _bits(a)
                else:
                    meta["real"][f"sim/{name}/{backend}/{node}"] = [list(a.shape), _moments(a)]
        for chip in chips:
            meta["hw"][f"{name}@{chip}"] = _hw(graph, acts["torch"], chip)
    return arrays, meta


@pytest.fixture(scope="module")
def computed() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    return compute()


@pytest.fixture(scope="module")
def pinned() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(GOLDEN / "pins.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads((GOLDEN / "pins.json").read_text())


def test_export_of_the_main_job_models_is_pinned(computed, pinned) -> None:
    for role in MODELS:
        now, then = computed[1]["export"][role], pinned[1]["export"][role]
        assert now["types"] == then["types"] and now["edges"] == then["edges"], role
        changed = [k for k in then["parameters"] if now["parameters"].get(k) != then["parameters"][k]]
        assert not changed and now["parameters"].keys() == then["parameters"].keys(), f"{role}: {changed[:10]}"


def test_written_nir_file_reads_back_identical(tmp_path) -> None:
    from exporters.nir_io import read_nir, write_nir

    for role in MODELS:
        graph = _export_case(role)
        write_nir(tmp_path / f"{role}.nir", graph)
        back = read_nir(tmp_path / f"{role}.nir")
        assert {k: _digest(v) for k, v in _graph_arrays(back).items()} == \
            {k: _digest(v) for k, v in _graph_arrays(graph).items()}, role


@pytest.mark.parametrize("backend", ["torch", "lava", "lava_fixed"])
def test_simulations_are_pinned(computed, pinned, backend: str) -> None:
    keys = sorted(k for k in pinned[0] if k.startswith("sim/") and k.split("/")[2] == backend)
    assert keys and sorted(k for k in computed[0] if k.startswith("sim/") and k.split("/")[2] == backend) == keys
    changed = {k: _moved(computed[0][k], pinned[0][k]) for k in keys
               if not np.array_equal(computed[0][k], pinned[0][k])}
    assert not changed, f"{len(changed)} spike trains changed on {backend} (spikes moved): {list(changed.items())[:5]}"
    then = {k: v for k, v in pinned[1]["real"].items() if k.split("/")[2] == backend}
    now = {k: v for k, v in computed[1]["real"].items() if k.split("/")[2] == backend}
    assert now.keys() == then.keys()
    moved = [k for k in then if now[k][0] != then[k][0]
             or not np.allclose(now[k][1], then[k][1], rtol=1e-6, atol=1e-6 * then[k][1][2] + 1e-9)]
    assert moved == [], f"real-valued node outputs changed: {moved[:5]}"


def _moved(a: np.ndarray, b: np.ndarray) -> int:
    """Spikes that differ between two packed trains (shape header included)."""
    if a.shape != b.shape:
        return -1
    return int(np.unpackbits(a ^ b).sum())


def test_backend_refusals_are_pinned(computed, pinned) -> None:
    assert computed[1]["refused"] == pinned[1]["refused"]


def test_hardware_reports_are_pinned(computed, pinned) -> None:
    for case, report in pinned[1]["hw"].items():
        assert computed[1]["hw"][case] == report, f"hw_report changed for {case}"
    assert computed[1]["hw"].keys() == pinned[1]["hw"].keys()


def _write() -> None:
    arrays, meta = compute()
    np.savez_compressed(GOLDEN / "pins.npz", **arrays)
    (GOLDEN / "pins.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(arrays)} arrays to {GOLDEN / 'pins.npz'} and {GOLDEN / 'pins.json'}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python tests/test_pins.py --write   (rewrites the pinned values)")
    sys.path.insert(0, str(Path(__file__).parent))
    _write()
