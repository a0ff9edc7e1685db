"""Event-level precision/recall and accuracy on hand-made rasters (golden values counted by hand)."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from exporters.equivalence import accuracy_from_output, compare_activity, neuron_nodes


def _raster(spikes: list[tuple[int, int, int]], shape=(4, 2, 3)) -> np.ndarray:
    a = np.zeros(shape, dtype=np.float32)
    for t, b, n in spikes:
        a[t, b, n] = 1
    return a


def test_precision_recall_by_hand():
    ref = {"l1": _raster([(0, 0, 0), (1, 0, 1), (2, 1, 2), (3, 1, 0)])}
    # one matched (0,0,0); (1,0,1) shifted one step later (a miss and a false spike); (2,1,2) missing;
    # (3,1,0) matched; one extra spike (0,1,1)
    cand = {"l1": _raster([(0, 0, 0), (2, 0, 1), (3, 1, 0), (0, 1, 1)])}
    out = compare_activity(ref, cand)
    e = out["nodes"]["l1"]
    assert (e["reference_spikes"], e["candidate_spikes"], e["matched"]) == (4, 4, 2)
    assert e["precision"] == pytest.approx(0.5) and e["recall"] == pytest.approx(0.5)


def test_totals_and_identical_and_empty():
    a = _raster([(0, 0, 0), (1, 1, 1)])
    ref = {"a": a, "b": _raster([(2, 0, 2)]), "quiet": np.zeros((4, 2, 3))}
    cand = {"a": a.copy(), "b": np.zeros((4, 2, 3)), "quiet": _raster([(1, 0, 0)])}
    out = compare_activity(ref, cand, nodes=["a", "b", "quiet"])
    assert out["nodes"]["a"]["precision"] == out["nodes"]["a"]["recall"] == 1.0
    assert out["nodes"]["b"]["precision"] == 1.0 and out["nodes"]["b"]["recall"] == 0.0  # emitted nothing wrong
    assert out["nodes"]["quiet"]["precision"] == 0.0 and out["nodes"]["quiet"]["recall"] == 1.0
    t = out["total"]
    assert (t["reference_spikes"], t["candidate_spikes"], t["matched"]) == (3, 3, 2)
    assert t["precision"] == pytest.approx(2 / 3) and t["recall"] == pytest.approx(2 / 3)
    assert out["min_precision"] == 0.0 and out["min_recall"] == 0.0


def test_default_nodes_are_binary_ones_and_graph_selects_neurons():
    ref = {"spk": _raster([(0, 0, 0)]), "analog": np.full((4, 2, 3), 0.3)}
    assert list(compare_activity(ref, ref)["nodes"]) == ["spk"]
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}),
                            "spk": nir.IF(r=np.ones(3), v_threshold=np.ones(3), v_reset=np.zeros(3))},
                     edges=[("input", "spk")], type_check=False)
    assert neuron_nodes(g) == ["spk"]
    assert list(compare_activity(ref, ref, g)["nodes"]) == ["spk"]


def test_errors_name_the_node():
    ref = {"l1": _raster([(0, 0, 0)])}
    with pytest.raises(ValueError, match="node 'l1' is missing from the candidate"):
        compare_activity(ref, {}, nodes=["l1"])
    with pytest.raises(ValueError, match="node 'l1': reference activity .* differ in shape"):
        compare_activity(ref, {"l1": np.zeros((3, 2, 3))}, nodes=["l1"])
    with pytest.raises(ValueError, match="node 'l1': the candidate activity is not binary"):
        compare_activity(ref, {"l1": np.full((4, 2, 3), 0.5)}, nodes=["l1"])


def test_accuracy_from_output_sums_over_time():
    out = np.zeros((3, 4, 2))
    out[0, :, 0] = 1.0          # step 0 votes class 0 for every sample
    out[1:, 1:, 1] = 1.0        # steps 1-2 vote class 1 for samples 1..3 (2 votes beat 1)
    assert accuracy_from_output({"o": out}, [0, 1, 1, 0], "o") == pytest.approx(0.75)
    with pytest.raises(ValueError, match="output node 'x' is not in the activity"):
        accuracy_from_output({"o": out}, [0, 1, 1, 0], "x")
    with pytest.raises(ValueError, match="B = 3 labels"):
        accuracy_from_output({"o": out}, [0, 1, 1], "o")
