"""The NIR core (``exporters.core``): the kind table, conventions, the one padding rule, flattening and the
population compiler that the torch reference, Lava, netx and the hardware models share."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from exporters.core.compile import LinearPath, compile_graph
from exporters.core.conventions import Conventions
from exporters.core.errors import NIRFormatError
from exporters.core.kinds import FIRING_TYPES, KINDS, LINEAR_TYPES, NEURON_TYPES, SPIKING_TYPES, kind_of
from exporters.core.shapes import conv_pads, infer_shapes
from exporters.core.traversal import flatten_graph


def _inp(*shape: int) -> nir.Input:
    return nir.Input(input_type={"input": np.array(shape)})


def _out(*shape: int) -> nir.Output:
    return nir.Output(output_type={"output": np.array(shape)})


def _lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
                   v_reset=np.zeros(n))


def _affine(n_out: int, n_in: int, seed: int = 0) -> nir.Affine:
    rng = np.random.default_rng(seed)
    return nir.Affine(weight=rng.normal(size=(n_out, n_in)), bias=np.zeros(n_out))


# ----------------------------------------------------------------------------------------------- kinds


def test_kind_table_sets():
    """Threshold is a spiking population that neither keeps state nor resets; LI/I/CubaLI are read-outs."""
    assert set(FIRING_TYPES) == {"IF", "LIF", "CubaLIF"}
    assert set(SPIKING_TYPES) == {"IF", "LIF", "CubaLIF", "Threshold"}
    assert set(NEURON_TYPES) == {"IF", "LIF", "CubaLIF", "Threshold", "LI", "I", "CubaLI"}
    assert set(LINEAR_TYPES) == {"Affine", "Linear", "Conv1d", "Conv2d", "Scale", "Flatten", "SumPool2d", "AvgPool2d"}
    assert not set(NEURON_TYPES) & set(LINEAR_TYPES)
    # every class nir defines that nasflow reads is in the table, named as nir names it
    for name in KINDS:
        assert hasattr(nir, name), name
    with pytest.raises(NIRFormatError, match=r"node 'x': unknown NIR node type 'Bogus'"):
        kind_of("Bogus", "x")


# ----------------------------------------------------------------------------------------------- conventions


def test_conventions_round_trip_and_resolution():
    conv = Conventions(dt=1e-3, threshold=">=", reset="to_v_reset", v_init="v_reset",
                       threshold_overrides={"b": ">"}, reset_overrides={"c": "subtract"}, v_init_nodes={"a": -0.5})
    meta = conv.to_metadata()
    assert meta == {"dt": 1e-3, "conventions": {"reset": "to_v_reset", "threshold": ">=", "v_init": "v_reset",
                                                "threshold_overrides": {"b": ">"},
                                                "reset_overrides": {"c": "subtract"}, "v_init_nodes": {"a": -0.5}}}
    assert Conventions.from_metadata(meta) == conv
    # HDF5 hands strings back as bytes and scalars as arrays
    raw = {"dt": np.array(1e-3), "conventions": {"threshold": b">=", "reset": b"to_v_reset", "v_init": b"v_reset",
                                                 "threshold_overrides": {"b": b">"},
                                                 "reset_overrides": {"c": b"subtract"},
                                                 "v_init_nodes": {"a": np.array(-0.5)}}}
    assert Conventions.from_metadata(raw) == conv
    assert (conv.for_node("a").threshold, conv.for_node("a").reset, conv.for_node("a").v0) == (">=", "to_v_reset", -0.5)
    assert conv.for_node("b").threshold == ">" and conv.for_node("c").reset == "subtract"
    assert conv.for_node("b").v0 == 0.0


def test_conventions_defaults_and_refusals():
    nir_default = Conventions.from_metadata({})
    assert (nir_default.dt, nir_default.for_node("x").threshold, nir_default.for_node("x").reset) == \
        (None, ">", "to_v_reset")
    with pytest.raises(NIRFormatError, match=r"node 'x': unknown conventions threshold='=>'"):
        Conventions(threshold="=>").for_node("x")
    with pytest.raises(NIRFormatError, match="'dt' must be a positive number"):
        Conventions.from_metadata({"dt": -1.0})
    with pytest.raises(TypeError):
        Conventions().threshold_overrides["x"] = ">"  # frozen all the way down


# ----------------------------------------------------------------------------------------------- padding


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("kernel,dilation", [(3, 1), (2, 1), (4, 1), (3, 2), (4, 3)])
def test_same_padding_matches_torch(kernel: int, dilation: int):
    """One padding rule: conv_pads('same') padded explicitly reproduces torch's own padding='same'."""
    x = torch.randn(1, 2, 9, 7, dtype=torch.float64)
    w = torch.randn(3, 2, kernel, kernel, dtype=torch.float64)
    (top, bottom), (left, right) = conv_pads("same", (kernel, kernel), (dilation, dilation))
    want = F.conv2d(x, w, padding="same", dilation=dilation)
    got = F.conv2d(F.pad(x, (left, right, top, bottom)), w, dilation=dilation)
    assert torch.allclose(got, want) and got.shape[2:] == x.shape[2:]
    assert conv_pads("valid", (kernel,), (dilation,)) == ((0, 0),)
    assert conv_pads(np.array([1, 2]), (3, 3), (1, 1)) == ((1, 1), (2, 2))


def test_same_padding_shapes_and_reference_simulation():
    """A 'same' conv with an even kernel: shape inference and the torch reference agree with torch."""
    from exporters.nir_torch import simulate

    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 1, 4, 4))
    g = nir.NIRGraph(nodes={"input": _inp(1, 6, 6), "conv": nir.Conv2d(input_shape=(6, 6), weight=w, stride=1,
                                                                       padding="same", dilation=1, groups=1,
                                                                       bias=np.zeros(2)),
                            "output": _out(2, 6, 6)},
                     edges=[("input", "conv"), ("conv", "output")], type_check=False)
    assert infer_shapes(g)["conv"] == (2, 6, 6)
    x = rng.normal(size=(1, 1, 1, 6, 6))
    got = simulate(g, x)["conv"][0]
    want = F.conv2d(torch.from_numpy(x[0]), torch.from_numpy(w), padding="same").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ----------------------------------------------------------------------------------------------- compiler


def _recurrent_residual() -> nir.NIRGraph:
    """input → fc1 → lif1 → fc2 → lif2 → out, a residual input → skip → lif2 and a recurrence lif2 → rec → lif1."""
    return nir.NIRGraph(
        nodes={"input": _inp(3), "fc1": _affine(4, 3), "lif1": _lif(4), "fc2": _affine(4, 4, 1),
               "skip": nir.Linear(weight=np.eye(4, 3)), "lif2": _lif(4), "rec": _affine(4, 4, 2),
               "scale": nir.Scale(scale=np.full(4, 0.5)), "out": _out(4)},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("input", "skip"),
               ("skip", "scale"), ("scale", "lif2"), ("lif2", "rec"), ("rec", "lif1"), ("lif2", "out")],
        metadata={"dt": 1e-3}, type_check=False)


def test_compiler_populations_and_paths():
    c = compile_graph(_recurrent_residual())
    assert list(c.populations) == ["lif1", "lif2"]
    assert c.populations["lif1"].shape == (4,) and c.populations["lif1"].kind.fires
    assert c.paths_into("lif1") == [LinearPath("input", "lif1", ("fc1",), 0), LinearPath("lif2", "lif1", ("rec",), 1)]
    assert c.paths_into("lif2") == [LinearPath("lif1", "lif2", ("fc2",), 0),
                                    LinearPath("input", "lif2", ("skip", "scale"), 0)]
    assert c.paths_into("out") == [LinearPath("lif2", "out", (), 0)]
    assert c.conventions.dt == 1e-3 and compile_graph(_recurrent_residual(), dt=2e-3).conventions.dt == 2e-3


def test_compiler_refuses_a_linear_only_cycle():
    g = nir.NIRGraph(nodes={"input": _inp(2), "a": nir.Scale(scale=np.ones(2)), "b": nir.Scale(scale=np.ones(2)),
                            "lif": _lif(2)},
                     edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "lif")], metadata={"dt": 1e-3},
                     type_check=False)
    with pytest.raises(NIRFormatError, match="a cycle through linear nodes only"):
        compile_graph(g).paths_into("lif")


def test_nested_graphs_are_flattened_for_every_consumer():
    """A nested graph means the same as its flattened form for the hardware model, too."""
    from hwmodels import hw_report

    inner = nir.NIRGraph(nodes={"i": _inp(3), "fc": _affine(4, 3), "lif": _lif(4), "o": _out(4)},
                         edges=[("i", "fc"), ("fc", "lif"), ("lif", "o")], type_check=False)
    outer = nir.NIRGraph(nodes={"input": _inp(3), "block": inner, "fc2": _affine(2, 4, 3), "lif2": _lif(2),
                                "output": _out(2)},
                         edges=[("input", "block"), ("block", "fc2"), ("fc2", "lif2"), ("lif2", "output")],
                         metadata={"dt": 1e-3}, type_check=False)
    flat = flatten_graph(outer)
    assert set(flat.nodes) == {"input", "block.i", "block.fc", "block.lif", "block", "fc2", "lif2", "output"}
    c = compile_graph(outer)
    assert list(c.populations) == ["block.lif", "lif2"]
    assert c.paths_into("lif2") == [LinearPath("block.lif", "lif2", ("block", "fc2"), 0)]
    assert hw_report(outer, "loihi").to_dict()["layers"] == hw_report(flat, "loihi").to_dict()["layers"]


def test_lava_linear_ops_use_the_same_padding_rule():
    """Lava's collapsed paths resolve 'same' by the core's rule; an uneven 'same' (even kernel) is refused."""
    from exporters.lava import LavaBackendError, apply_linear

    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 1, 5, 5))
    w = rng.normal(size=(3, 1, 3, 3))
    conv = nir.Conv2d(input_shape=(5, 5), weight=w, stride=1, padding="same", dilation=1, groups=1,
                      bias=np.zeros(3))
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same").numpy()
    np.testing.assert_allclose(apply_linear(conv, "conv", x), want, rtol=1e-12)
    even = nir.Conv2d(input_shape=(5, 5), weight=rng.normal(size=(3, 1, 2, 2)), stride=1, padding="same",
                      dilation=1, groups=1, bias=np.zeros(3))
    with pytest.raises(LavaBackendError, match=r"node 'even' \(Conv2d\): padding 'same' pads unevenly"):
        apply_linear(even, "even", x)
