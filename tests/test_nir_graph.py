"""Graph structure (order, back edges, shapes) on hand-built graphs, and clear errors for bad NIR input."""

from __future__ import annotations

import random
import shutil
import warnings
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
from _paths import INTEROP

from exporters.core.errors import NIRFormatError
from exporters.core.shapes import infer_shapes
from exporters.core.traversal import back_edges, input_ids, output_ids, predecessors, topological_order
from exporters.nir_io import LegacyResetWarning, read_nir, write_nir


def _scale(n: int = 1) -> nir.Scale:
    return nir.Scale(scale=np.ones(n))


def _g(nodes: dict, edges: list) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _inp(*shape: int) -> nir.Input:
    return nir.Input(input_type={"input": np.array(shape)})


def _out(*shape: int) -> nir.Output:
    return nir.Output(output_type={"output": np.array(shape)})


# ----------------------------------------------------------------------------------------------- ordering


def test_chain_and_residual_diamond_order():
    g = _g({"out": _out(1), "b": _scale(), "a": _scale(), "input": _inp(1)},
           [("a", "b"), ("input", "a"), ("b", "out")])
    assert topological_order(g) == ["input", "a", "b", "out"]
    assert back_edges(g) == set()
    # residual: input → a → b → c, input → c (fan-in); c must come after both
    d = _g({"input": _inp(1), "a": _scale(), "b": _scale(), "c": _scale()},
           [("input", "c"), ("input", "a"), ("a", "b"), ("b", "c")])
    order = topological_order(d)
    assert order.index("c") > order.index("b") > order.index("a") and back_edges(d) == set()
    assert predecessors(d, "c") == ["input", "b"]


def test_cycles_and_self_loops_are_back_edges():
    g = _g({"input": _inp(1), "fc": _scale(), "lif": _scale(), "rec": _scale(), "fc2": _scale(), "self": _scale()},
           [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "fc2"), ("fc2", "self"),
            ("self", "self")])
    assert back_edges(g) == {("rec", "lif"), ("self", "self")}
    order = topological_order(g)
    assert order[:3] == ["input", "fc", "lif"] and order.index("rec") > order.index("lif")
    assert predecessors(g, "lif") == ["fc", "rec"]
    assert predecessors(g, "lif", include_back=False) == ["fc"]


def test_dfs_follows_edge_order_to_pick_the_back_edge():
    # a two-node cycle entered from either side: the node entered first keeps the forward edge
    nodes = {"input": _inp(1), "a": _scale(), "b": _scale()}
    assert back_edges(_g(nodes, [("input", "a"), ("input", "b"), ("a", "b"), ("b", "a")])) == {("b", "a")}
    assert back_edges(_g(nodes, [("input", "b"), ("input", "a"), ("a", "b"), ("b", "a")])) == {("a", "b")}


@pytest.mark.parametrize("seed", range(20))
def test_random_graphs_order_is_topological_without_back_edges(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 12)
    names = ["input"] + [f"n{i}" for i in range(n)]
    edges = [(rng.choice(names), rng.choice(names[1:])) for _ in range(rng.randint(n, 3 * n))]
    g = _g({k: (_inp(1) if k == "input" else _scale()) for k in names}, edges)
    order, back = topological_order(g), back_edges(g)
    assert sorted(order) == sorted(names)
    pos = {k: i for i, k in enumerate(order)}
    for s, d in edges:
        if (s, d) in back:
            assert pos[s] >= pos[d]  # a back edge goes against the order (self-loops included)
        else:
            assert pos[s] < pos[d]


def test_input_and_output_ids():
    g = _g({"x2": _inp(1), "o": _out(1), "x1": _inp(1)}, [("x2", "o"), ("x1", "o")])
    assert input_ids(g) == ["x2", "x1"] and output_ids(g) == ["o"]


# ------------------------------------------------------------------------------------------------- shapes


def test_infer_shapes_conv_pool_flatten_affine():
    conv = nir.Conv2d(input_shape=None, weight=np.zeros((4, 1, 3, 3)), stride=2, padding=1, dilation=1, groups=1,
                      bias=np.zeros(4))
    dw = nir.Conv2d(input_shape=(4, 4), weight=np.zeros((4, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=4,
                    bias=np.zeros(4))
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    flat = nir.Flatten(input_type={"input": np.array([4, 2, 2])}, start_dim=0, end_dim=-1)
    g = _g({"input": _inp(1, 8, 8), "conv": conv, "dw": dw, "pool": pool, "flat": flat,
            "fc": nir.Affine(weight=np.zeros((3, 16)), bias=np.zeros(3)), "output": _out(3)},
           [("input", "conv"), ("conv", "dw"), ("dw", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "output")])
    assert infer_shapes(g) == {"input": (1, 8, 8), "conv": (4, 4, 4), "dw": (4, 4, 4), "pool": (4, 2, 2),
                               "flat": (16,), "fc": (3,), "output": (3,)}


@pytest.mark.parametrize(
    ("nodes", "edges", "match"),
    [
        ({"input": _inp(4), "fc": nir.Affine(weight=np.zeros((3, 5)), bias=np.zeros(3))}, [("input", "fc")],
         r"node 'fc' \(Affine\): weight \(3, 5\) expects inputs of size 5, got shape \(4,\)"),
        ({"input": _inp(4), "a": _scale(4), "b": nir.Affine(weight=np.zeros((3, 4)), bias=np.zeros(3)),
          "c": _scale(4)}, [("input", "a"), ("input", "b"), ("a", "c"), ("b", "c")],
         r"node 'c': inputs have different shapes"),
        ({"input": _inp(4), "lif": nir.IF(r=np.ones(3), v_threshold=np.ones(3), v_reset=np.zeros(3))},
         [("input", "lif")], r"node 'lif' \(IF\): parameter r has shape \(3,\)"),
        ({"a": _scale(4)}, [], r"no Input node"),
        ({"input": _inp(4), "o": _out(5)}, [("input", "o")], r"node 'o' \(Output\): declared input shape \(5,\)"),
        ({"input": _inp(4)}, [("input", "ghost")], r"refers to node 'ghost'"),
    ],
    ids=["affine", "fan-in", "per-neuron", "no-input", "output", "dangling-edge"],
)
def test_shape_errors_name_the_node(nodes, edges, match):
    with pytest.raises(NIRFormatError, match=match):
        infer_shapes(_g(nodes, edges))


# ------------------------------------------------------------------------------------------------- files


def _write_small(path: Path) -> Path:
    g = _g({"input": _inp(2), "fc": nir.Affine(weight=np.eye(2), bias=np.ones(2)), "output": _out(2)},
           [("input", "fc"), ("fc", "output")])
    g.metadata = {"dt": 1e-3, "conventions": {"threshold": ">="}}
    return write_nir(path, g)


def test_write_read_round_trip_keeps_metadata(tmp_path):
    g = read_nir(_write_small(tmp_path / "g.nir"))
    assert float(g.metadata["dt"]) == 1e-3 and g.metadata["conventions"]["threshold"] == ">="
    np.testing.assert_array_equal(g.nodes["fc"].bias, [1, 1])


def test_missing_truncated_and_non_hdf5_files(tmp_path):
    with pytest.raises(NIRFormatError, match=r"nope\.nir: no such NIR file"):
        read_nir(tmp_path / "nope.nir")
    (tmp_path / "text.nir").write_text("not hdf5 at all")
    with pytest.raises(NIRFormatError, match=r"text\.nir: not a readable NIR file"):
        read_nir(tmp_path / "text.nir")
    data = _write_small(tmp_path / "full.nir").read_bytes()
    (tmp_path / "cut.nir").write_bytes(data[: len(data) // 2])
    with pytest.raises(NIRFormatError, match=r"cut\.nir: not a readable NIR file \(truncated"):
        read_nir(tmp_path / "cut.nir")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=[1, 2])
    with pytest.raises(NIRFormatError, match=r"other\.h5: HDF5 file without a 'node' group"):
        read_nir(tmp_path / "other.h5")


def test_unknown_node_type_no_input_and_shape_mismatch_in_files(tmp_path):
    path = _write_small(tmp_path / "u.nir")
    with h5py.File(path, "r+") as f:
        del f["node/nodes/fc/type"]
        f["node/nodes/fc"].create_dataset("type", data=b"Spiky")
    with pytest.raises(NIRFormatError, match=r"u\.nir: node 'fc' has unknown NIR type 'Spiky'"):
        read_nir(path)
    path = _write_small(tmp_path / "n.nir")
    with h5py.File(path, "r+") as f:
        del f["node/nodes/input/type"], f["node/nodes/input/shape"]
        f["node/nodes/input"].create_dataset("type", data=b"Scale")
        f["node/nodes/input"].create_dataset("scale", data=np.ones(2))
    with pytest.raises(NIRFormatError, match=r"n\.nir: graph has no Input node"):
        read_nir(path)
    path = _write_small(tmp_path / "s.nir")
    with h5py.File(path, "r+") as f:
        del f["node/nodes/fc/weight"]
        f["node/nodes/fc"].create_dataset("weight", data=np.ones((2, 3)))
    with pytest.raises(NIRFormatError, match=r"s\.nir: node 'fc' \(Affine\): weight \(2, 3\)"):
        read_nir(path)


def test_write_refuses_inconsistent_graph(tmp_path):
    bad = _g({"input": _inp(4), "fc": nir.Affine(weight=np.zeros((3, 5)), bias=np.zeros(3))}, [("input", "fc")])
    with pytest.raises(NIRFormatError, match=r"bad\.nir: refusing to write.*node 'fc'"):
        write_nir(tmp_path / "bad.nir", bad)
    assert not (tmp_path / "bad.nir").exists()


def test_legacy_files_read_with_reset_to_zero(tmp_path):
    shutil.copy(INTEROP / "cnn_sinabs.nir", tmp_path / "c.nir")
    with pytest.warns(LegacyResetWarning, match=r"nir 0\.2\.0 .*reset by subtraction"):
        g = read_nir(tmp_path / "c.nir")
    assert g.metadata["legacy_reset"] == "1,10,12,3,6"
    assert all(np.all(g.nodes[k].v_reset == 0) for k in ("1", "3", "6", "10", "12"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a current file with v_reset gives no warning
        _write_small(tmp_path / "new.nir")
        read_nir(tmp_path / "new.nir")
