"""SNASNet space: matrix notation, connectivity rules, sampling, cell equations and the macro network."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from torch.nn import functional as F

from nasflow.models import create_model, load_model, save_model
from nasflow.snn.activity import ActivityMonitor
from nasflow.snn.cells import SNASCell, SpikingConvOp
from nasflow.spaces.snasnet import (
    RELEASED_CELLS,
    SNASNET_NEURON,
    CellError,
    canonical_cell,
    cell_kind,
    format_cell,
    parse_cell,
    sample_cell,
    search_space_size,
)


def test_matrix_notation_round_trip() -> None:
    for text in RELEASED_CELLS.values():
        assert format_cell(parse_cell(text)) == text
    m = parse_cell("0303,0030,2002,0200")
    assert m[0][3] == 3 and m[2][0] == 2 and m[3][1] == 2  # [2][0]: backward edge 2 → 0
    assert cell_kind("0303 0030 2002 0200") == "backward" and cell_kind("0303 0030 0002 0000") == "forward"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0303 0030 2002", "4 rows of 4 digits"),
        ("0303 0030 2002 02000", "4 rows of 4 digits"),
        ("0303 0030 2002 02x0", r"\['x'\] are not ops"),
        ("0305 0030 2002 0200", r"\['5'\] are not ops"),
        ("1303 0030 2002 0200", r"\[0\]\[0\] must be 0"),
        ("0303 3030 2002 0200", "nodes 0 and 1 have both"),
        ("0100 0000 0000 0000", "no path from the input"),
        ("0000 0000 0000 0000", "no path from the input"),
    ],
)
def test_malformed_cells_get_clear_errors(text: str, match: str) -> None:
    with pytest.raises(CellError, match=match):
        parse_cell(text)


def test_pruning_drops_nodes_off_every_input_output_path() -> None:
    # Node 2 feeds nothing, so node 1 (which only feeds node 2) goes too.
    assert format_cell(canonical_cell("0303 0030 0000 0000")) == "0003 0000 0000 0000"
    # A backward edge 2 → 0 puts nodes 1 and 2 on a data-flow path (2 → 0 → 3, one step later).
    assert format_cell(canonical_cell("0303 0030 2000 0000")) == "0303 0030 2000 0000"
    # Node 1 reached only through a backward edge from node 3 stays.
    assert format_cell(canonical_cell("0003 0010 0001 0200")) == "0003 0010 0001 0200"


def test_sampler_follows_the_rules_and_is_deterministic() -> None:
    for kind in ("forward", "backward"):
        rng = random.Random(3)
        cells = [sample_cell(rng, kind) for _ in range(300)]
        assert cells == [sample_cell(r, kind) for r in [random.Random(3)] for _ in range(300)]
        for m in cells:
            assert m[0][3] != 0 and canonical_cell(m) == m
            for i, j in itertools.combinations(range(4), 2):
                assert not (m[i][j] and m[j][i])
            if kind == "forward":
                assert all(m[i][j] == 0 for i in range(4) for j in range(i))
        kinds = {cell_kind(m) for m in cells}
        assert kinds == ({"forward"} if kind == "forward" else {"forward", "backward"})
    # Brute force over the forward space: every upper-triangle assignment with [0][3] != 0.
    count = sum(1 for ops in itertools.product(range(5), repeat=6) if ops[2])
    assert search_space_size("forward") == count == 12_500
    assert search_space_size("backward") == 4 * 9**5


# ---------------------------------------------------------------------------------------------
# Cell equations against a step-by-step reference written from REFERENCE.md §3 and §1.
# ---------------------------------------------------------------------------------------------
def _lif_step(v: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SNASNet's LIF: τ = 4/3 with decay_input (H = 0.25 V + 0.75 X), fire on H > 1, reset to 0."""
    h = v + (x - v) * 0.75
    s = (h > 1.0).float()
    return s, h * (1 - s)


def _ref_op(op, x: torch.Tensor, state: dict, key) -> torch.Tensor:
    if isinstance(op, SpikingConvOp):
        s, state[key] = _lif_step(state.get(key, torch.zeros_like(x)), x)
        conv, bn = op.conv.module
        y = F.conv2d(s, conv.weight, None, padding=conv.padding)
        return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    if isinstance(op, torch.nn.Identity):
        return x
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def _reference(cell: SNASCell, x: torch.Tensor) -> torch.Tensor:
    """n_0 = x + fb_0; n_j = Σ_i<j F_ij(n_i) + fb_j; fb_j(t+1) = Σ_k>j B_kj(n_k(t)) — one step at a time."""
    m = cell.matrix
    state: dict = {}
    fb = [torch.zeros_like(x[0]) for _ in range(4)]
    outs = []
    for t in range(x.shape[0]):
        nodes = [x[t] + fb[0]]
        for j in range(1, 4):
            total = fb[j].clone()
            for i in range(j):
                if m[i][j] and any(e.src == i and e.dst == j for e in cell.edges):
                    total = total + _ref_op(cell.ops[f"e{i}_{j}"], nodes[i], state, (i, j))
            nodes.append(total)
        outs.append(nodes[3])
        fb = [torch.zeros_like(x[0]) for _ in range(4)]
        for k in range(4):
            for j in range(k):
                if m[k][j]:
                    fb[j] = fb[j] + _ref_op(cell.ops[f"e{k}_{j}"], nodes[k], state, (k, j))
    return torch.stack(outs)


def _random_bn(cell: SNASCell) -> None:
    g = torch.Generator().manual_seed(5)
    for mod in cell.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.3)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.5 + 0.5)


@pytest.mark.parametrize(
    "text",
    [
        "0312 0041 0003 0000",  # forward: every op type (multi-step path)
        "0303 0030 2002 0200",  # released CIFAR-10 cell: backward 2 → 0 and 3 → 1
        "0003 1030 4002 0200",  # backward skip 1 → 0, backward pool 2 → 0; node 1 fed only by 3 → 1
    ],
)
def test_cell_matches_step_by_step_reference(text: str) -> None:
    torch.manual_seed(0)
    cell = SNASCell(parse_cell(text), 3, SNASNET_NEURON.build).eval()
    _random_bn(cell)
    x = torch.randn(6, 2, 3, 5, 5) * 2
    with torch.no_grad():
        got, want = cell(x), _reference(cell, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert cell.recurrent == (cell_kind(text) == "backward")
    # Feedback matters: the same cell without its backward edges gives another output.
    if cell.recurrent:
        upper = [[v if i < j else 0 for j, v in enumerate(row)] for i, row in enumerate(parse_cell(text))]
        upper[0][3] = upper[0][3] or 1
        assert not torch.allclose(got, _reference(cell_without_backward(cell, upper), x))


def cell_without_backward(cell: SNASCell, upper) -> SNASCell:
    plain = SNASCell(upper, cell.channels, SNASNET_NEURON.build).eval()
    plain.load_state_dict({k: v for k, v in cell.state_dict().items() if k in plain.state_dict()}, strict=False)
    return plain


def test_structure_lists_edges_for_the_exporter_and_gradients_flow_through_feedback() -> None:
    cell = SNASCell(parse_cell("0303 0030 2002 0200"), 2, SNASNET_NEURON.build)
    rows = [(s, d, type(m).__name__, b) for s, d, m, b in cell.structure()]
    assert rows == [(0, 1, "SpikingConvOp", False), (0, 3, "SpikingConvOp", False), (1, 2, "SpikingConvOp", False),
                    (2, 0, "SpikingConvOp", True), (2, 3, "SpikingConvOp", False), (3, 1, "SpikingConvOp", True)]
    assert {n for n, _ in cell.named_modules() if n.endswith(".sn")} == {
        "ops.e0_1.sn", "ops.e0_3.sn", "ops.e1_2.sn", "ops.e2_0.sn", "ops.e2_3.sn", "ops.e3_1.sn"}
    x = torch.rand(4, 3, 2, 4, 4) * 4
    cell.train()
    cell(x).sum().backward()
    back = cell.ops["e2_0"].conv.module[0].weight.grad
    assert back is not None and back.abs().sum() > 0
    with ActivityMonitor(cell) as mon:
        cell(x)
    layer = mon.summary()["layers"]["ops.e2_0.sn"]  # called once per step, counted as one pass of T steps
    assert layer["neuron_updates_per_sample"] == 2 * 4 * 4 * 4


@pytest.mark.parametrize("reduction", ["code", "paper"])
def test_macro_network_builds_runs_and_round_trips(reduction: str, tmp_path) -> None:
    torch.manual_seed(0)
    net = create_model("snasnet", cell="0303 0030 2002 0200", in_shape=(1, 8, 8), num_classes=10, channels=4,
                       steps=3, reduction=reduction, second_pool=2, classifier_bn=True)
    x = torch.rand(5, 1, 8, 8)
    assert net(x).shape == (5, 10) and net.forward_sequence(x).shape == (3, 5, 10)
    assert hasattr(net, "reduce_bn") == (reduction == "code")
    net.eval()
    save_model(tmp_path / "m.pt", net, "snasnet")
    loaded, _ = load_model(tmp_path / "m.pt")
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    with pytest.raises(ValueError, match="second_pool"):
        create_model("snasnet", in_shape=(1, 8, 8), channels=4, second_pool=3)
    with pytest.raises(ValueError, match=r"expects input of shape"):
        net(torch.rand(5, 1, 9, 9))
