"""Hardware plots read as a reader sees them: the traffic heatmap's axes, integer ticks, per-core layer names,
tile subdivision and units, and the energy bars' µJ axis, from the matplotlib figures of real hw reports."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from exporters.nir_torch import simulate
from hwmodels import hw_report
from hwmodels.report import HwReport
from nasflow.hw_plots import format_count, plot_layer_energy, plot_traffic_heatmap, traffic_rows


def _graph(sizes: tuple[int, ...], names: tuple[str, ...]) -> nir.NIRGraph:
    """input → (Affine → LIF) per name, with weights strong enough that every layer spikes."""
    rng = np.random.default_rng(0)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([sizes[0]])})}
    edges, prev = [], "input"
    for i, name in enumerate(names):
        n_in, n_out = sizes[i], sizes[i + 1]
        nodes[f"fc{i}"] = nir.Affine(rng.normal(0, 2.5 / np.sqrt(n_in), (n_out, n_in)), np.full(n_out, 0.3))
        nodes[name] = nir.LIF(tau=np.full(n_out, 2e-3), r=np.ones(n_out), v_leak=np.zeros(n_out),
                              v_threshold=np.ones(n_out))
        edges += [(prev, f"fc{i}"), (f"fc{i}", name)]
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array([sizes[-1]])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def _report(sizes: tuple[int, ...], names: tuple[str, ...], chip: str = "loihi", active: bool = True) -> HwReport:
    graph = _graph(sizes, names)
    if not active:
        return hw_report(graph, chip)
    x = (np.random.default_rng(1).random((8, 2, sizes[0])) < 0.3).astype(np.float32)
    return hw_report(graph, chip, activity=simulate(graph, x))


# Loihi: encoder.lif needs two cores (1,200 neurons > 1,024 per core), the others one each: four cores, one tile.
FOUR = ((64, 1200, 60, 10), ("encoder.lif", "hidden.lif", "readout_lif"))
# Six 200-neuron layers, a core each: two tiles of four cores (the second half empty).
SIX = ((64,) + (200,) * 6, tuple(f"block{i}.lif" for i in range(6)))


def _texts(ax) -> list[str]:
    return [t.get_text().replace("\n", "") for t in ax.texts]


@pytest.fixture(scope="module")
def four() -> dict:
    return _report(*FOUR)


def test_heatmap_names_each_core_on_its_tile(four, tmp_path):
    rows = traffic_rows(four)
    assert [r["layer"] for r in rows] == ["encoder.lif", "encoder.lif", "hidden.lif", "readout_lif"]
    assert {(r["x"], r["y"]) for r in rows} == {(0, 0)}  # four cores share Loihi's first tile
    fig = plot_traffic_heatmap(four, tmp_path / "traffic.png")
    assert (tmp_path / "traffic.png").stat().st_size > 10_000
    ax, bar = fig.axes
    assert ax.get_xlabel() == "tile x (mesh column)" and ax.get_ylabel() == "tile y (mesh row)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0"]
    assert bar.get_ylabel() == "received messages / sample"
    title = ax.get_title()
    assert title.startswith("loihi: messages received per core") and "4 cores per tile" in title
    texts = _texts(ax)
    for layer, cores in (("encoder.lif", 2), ("hidden.lif", 1), ("readout_lif", 1)):
        assert texts.count(layer) == cores, texts
    counts = [format_count(r["messages_in_per_sample"]) for r in rows]
    assert [t for t in texts if t in counts] == counts  # every core also prints its count, in core order
    assert format_count(1301.25) == "1,301" and format_count(26.25) == "26.2" and format_count(0) == "0"
    # The tile is subdivided 2 x 2: the four names sit at two distinct x and two distinct y inside tile (0, 0).
    spots = [t.get_position() for t in ax.texts if "lif" in t.get_text()]
    assert len({round(x, 3) for x, _ in spots}) == 2 and len({round(y, 3) for _, y in spots}) == 2
    assert all(-0.5 < x < 0.5 and -0.5 < y < 0.5 for x, y in spots)


def test_heatmap_spans_tiles_with_integer_ticks(tmp_path):
    report = _report(*SIX)
    assert report.cores_used == 6 and report.mesh == {"width": 2, "height": 1}
    ax = plot_traffic_heatmap(report, tmp_path / "six.png").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0"]
    assert sorted(t for t in _texts(ax) if t.startswith("block")) == [f"block{i}.lif" for i in range(6)]
    assert "6 cores, 4 cores per tile" in ax.get_title()


def test_heatmap_of_an_accelerator_and_of_capacity_only(tmp_path):
    report = _report(*FOUR, chip="generic-45nm-int8")
    ax = plot_traffic_heatmap(report, tmp_path / "gen.png").axes[0]
    assert ax.get_xlabel().startswith("core x") and "one block per layer" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert [t for t in _texts(ax) if "lif" in t] == ["encoder.lif", "hidden.lif", "readout_lif"]

    fig = plot_traffic_heatmap(_report(*FOUR, active=False), tmp_path / "cap.png")
    assert len(fig.axes) == 1, "no colour bar without traffic"
    assert "capacity only" in fig.axes[0].get_title()
    assert sorted(_texts(fig.axes[0])) == ["encoder.lif", "encoder.lif", "hidden.lif", "readout_lif"]


def test_long_layer_names_keep_their_distinctive_tail():
    names = ("stem.conv.neuron", "features.0.block.branch_a.conv_bn_pair.second_stage.neuron_layer", "readout")
    report = _report((64, 100, 100, 10), names, chip="generic-45nm-int8")
    labels = [t.get_text() for t in plot_traffic_heatmap(report).axes[0].texts
              if not t.get_text().replace(",", "").replace(".", "").isdigit()]
    assert len(labels) == 3 and all(line for label in labels for line in label.split("\n"))
    assert labels[0].replace("\n", "") == "stem.conv.neuron" and labels[2] == "readout"
    long = labels[1].replace("\n", "")
    assert long.startswith("…") and long.endswith("second_stage.neuron_layer") and long[1:] in names[1]


def test_energy_bars_are_in_microjoules_per_layer(four, tmp_path):
    fig = plot_layer_energy(four, tmp_path / "energy.png")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "energy (µJ / sample)"
    assert ax.get_xlabel() == "layer (in network order)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["encoder.lif", "hidden.lif", "readout_lif"]
    total_uj = sum(p.get_height() for p in ax.patches)
    expected = sum(sum(r["energy_j"].values()) for r in four.layers) * 1e6
    assert total_uj == pytest.approx(expected, rel=1e-9) and 0.1 < total_uj < 1e3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == four.terms_included
