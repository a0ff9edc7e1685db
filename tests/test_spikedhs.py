"""SpikeDHS cell search and DGS: mixing, gradients, decoding, genotypes, DGS updates, export, resume, main job."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from nasflow.models import create_model
from nasflow.snn.dhs import SPIKEDHS_NEURON
from nasflow.spaces.spikedhs import (
    CellGenotype,
    Genotype,
    SpikeDHSSpace,
    decode_cell,
    edge_index,
    format_genotype,
    parse_genotype,
)
from nasflow.strategies.spikedhs import RelaxedDHSCell, SpikeDHSStrategy, op_fanout
from nasflow.train.dgs import DGS, TEMPERATURES, select_temperature

PAPER = ("paper:normal=conv3x3@1+skip@0,conv5x5@2+avg_pool3x3@1,dil_conv3x3@3+skip@2;"
         "reduce=conv3x3@0+skip@1,avg_pool3x3@0+skip@2,conv5x5@1+conv3x3@3")
RELEASED = ("released:normal=snn_b3@1+skip@0,snn_b5@2+snn_b3@1,skip@3+snn_b3@2;"
            "reduce=snn_b3@0+skip@1,snn_b5@0+skip@2,snn_b3@1+snn_b5@3")


def _cell(preset: str, double: bool = False) -> tuple[RelaxedDHSCell, list, list]:
    torch.manual_seed(0)
    space = SpikeDHSSpace(preset=preset, nodes=3)
    cell = RelaxedDHSCell(space, [3], [3], 3, reduction=False, reduction_prev=False, neuron=SPIKEDHS_NEURON)
    cell = cell.double() if double else cell
    dtype = torch.float64 if double else torch.float32
    s0 = [(torch.rand(2, 2, 3, 4, 4) < 0.5).to(dtype)]
    s1 = [(torch.rand(2, 2, 3, 4, 4) < 0.5).to(dtype)]
    return cell, s0, s1


def test_membrane_mixing_feeds_one_neuron_the_weighted_bn_currents():
    cell, s0, s1 = _cell("paper")
    cell.eval()  # BN with running statistics: the same op output on every call
    ops = cell.ops
    w = torch.softmax(torch.randn(len(edge_index(3)), len(ops)), -1)
    seen = []
    hook = cell.nodes[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        cell(s0, s1, w, [])
    hook.remove()
    states = [cell.pre0(s0), cell.pre1(s1)]
    want = sum(w[e, i] * cell.edges[f"n0_{k}"][op](states[k])
               for e, (_, k) in enumerate(edge_index(3)[:2]) for i, op in enumerate(ops) if op != "zero")
    torch.testing.assert_close(seen[0], want)
    assert "zero" in ops and len(cell.nodes) == 3  # one neuron per node, zero contributes nothing


def test_spike_mixing_is_the_weighted_spike_sum():
    cell, s0, s1 = _cell("released")
    cell.eval()
    w = torch.softmax(torch.randn(len(edge_index(3)), len(cell.ops)), -1)
    with torch.no_grad():
        nodes = cell(s0, s1, w, [])
        states = [cell.pre0(s0), cell.pre1(s1)]
        node0 = sum(w[e, i] * cell.edges[f"n0_{k}"][op](states[k])
                    for e, (_, k) in enumerate(edge_index(3)[:2]) for i, op in enumerate(cell.ops))
    assert cell.nodes is None
    torch.testing.assert_close(nodes[0], node0)
    spikes = cell.edges["n0_0"]["snn_b3"](states[0])
    assert set(torch.unique(spikes).tolist()) <= {0.0, 1.0}  # each op fires with its own neuron


def test_alpha_gradient_matches_finite_differences():
    cell, s0, s1 = _cell("released", double=True)
    cell.eval()
    alpha = torch.randn(len(edge_index(3)), len(cell.ops), dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, 2, 3, 4, 4, dtype=torch.float64)

    def loss(a):
        return (cell(s0, s1, torch.softmax(a, -1), [])[0] * r).sum()

    (grad,) = torch.autograd.grad(loss(alpha), alpha)
    eps = 1e-6
    fd = torch.zeros_like(alpha)
    with torch.no_grad():
        for idx in np.ndindex(*alpha.shape):
            a = alpha.detach().clone()
            a[idx] += eps
            up = loss(a)
            a[idx] -= 2 * eps
            fd[idx] = (up - loss(a)) / (2 * eps)
    assert grad[:2].abs().sum() > 0  # node 0's two edges carry gradient
    torch.testing.assert_close(grad, fd, atol=1e-6, rtol=1e-5)


def test_decoding_hand_set_alpha():
    ops = ("conv3x3", "conv5x5", "dil_conv3x3", "avg_pool3x3", "skip", "zero")
    a = np.zeros((9, 6))
    a[0, 0] = 1.0  # node 0 <- s0: conv3x3; node 0 <- s1: all equal -> first op
    a[2, 5] = 5.0  # node 1 <- s0: mostly zero -> weakest edge, dropped
    a[3, 1] = 2.0  # node 1 <- s1: conv5x5
    a[4, 4] = 1.0  # node 1 <- node 0: skip
    a[5, 2] = 1.0  # node 2 <- s0: dil_conv3x3
    a[8, 3] = 3.0  # node 2 <- node 1: avg_pool3x3
    cell = decode_cell(a.tolist(), ops, 3)
    assert cell.format() == "conv3x3@0+conv3x3@1,conv5x5@1+skip@2,dil_conv3x3@0+avg_pool3x3@3"


def test_genotype_round_trip_and_bad_input():
    g = parse_genotype(PAPER)
    assert format_genotype(g) == PAPER and parse_genotype(str(g)) == g and hash(g) == hash(parse_genotype(PAPER))
    assert isinstance(g.normal, CellGenotype) and g.nodes == 3
    assert parse_genotype(RELEASED).preset == "released"
    bad = {
        "paper:normal=conv3x3@1": "normal=",
        "spike:normal=skip@0+skip@1,skip@0+skip@2,skip@0+skip@3;reduce=x": "preset",
        PAPER.replace("conv5x5@2", "conv7x7@2"): "conv7x7",
        PAPER.replace("skip@2;", "skip@9;"): "cannot read input 9",
        PAPER.replace("conv3x3@1+", "conv3x3+"): "op@input",
        PAPER.replace("paper:", "released:"): "not ops of the 'released' preset",
    }
    for text, match in bad.items():
        with pytest.raises(ValueError, match=match):
            parse_genotype(text)
    with pytest.raises(ValueError, match="3 or 4 nodes"):
        SpikeDHSSpace(nodes=5)
    with pytest.raises(ValueError, match="unknown SpikeDHS preset"):
        SpikeDHSSpace(preset="dhs")
    with pytest.raises(ValueError, match="unknown SpikeDHS op"):
        SpikeDHSSpace(ops=("conv3x3", "maxpool"))
    with pytest.raises(ValueError, match="do not belong"):
        SpikeDHSSpace(ops=("snn_b3", "skip"))
    assert Genotype("paper", g.normal, g.reduce) == g


def test_op_fanout_golden():
    # 2x2 map, 3x3 window with padding 1: every input reaches all 4 outputs (x C output channels).
    assert op_fanout("conv3x3", 1, (2, 2), 1) == 4.0
    assert op_fanout("conv3x3", 2, (2, 2), 1) == 8.0
    assert op_fanout("skip", 4, (4, 4), 1) == 1.0 and op_fanout("zero", 4, (4, 4), 1) == 0.0
    # skip at stride 2 (conv1x1): only the even positions (1 in 4) feed an output, C of them each.
    assert op_fanout("skip", 2, (4, 4), 2) == pytest.approx(2 * 4 / 16)
    # depthwise 3x3 average on 3x3: corner 4, edge 6, centre 9 windows -> (4*4 + 4*6 + 9) / 9
    assert op_fanout("avg_pool3x3", 5, (3, 3), 1) == pytest.approx((16 + 24 + 9) / 9)


def test_dgs_update_hand_worked_and_clamped():
    spec = TEMPERATURES["dspike"]
    batches = [[0.1, 0.2, 0.2, 0.3, 0.2], [0.3, 0.1, 0.2, 0.2, 0.2]]  # softmax(α_b) after each of two batches
    acc = np.sum(batches, axis=0)  # [0.4, 0.3, 0.4, 0.5, 0.4] -> δ = +0.2
    assert select_temperature(3.0, acc, spec) == pytest.approx(3.2)
    assert select_temperature(1.1, [0.9, 0.1, 0, 0, 0], spec) == 1.0  # 1.1 - 0.4 clamps at 1
    assert select_temperature(5.9, [0, 0, 0, 0.1, 0.9], spec) == 6.0  # 5.9 + 0.4 clamps at 6
    assert select_temperature(2.0, [0.2] * 5, spec) == pytest.approx(1.6)  # ties: the first candidate


def test_dgs_round_moves_only_the_temperature():
    torch.manual_seed(0)
    model = create_model("spikedhs", arch=PAPER, in_shape=(1, 8, 8), num_classes=10, channels=2, steps=2, layers=3)
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dgs = DGS(model, ["stem", "cells.2"], batches=2)
    row = dgs.search([(x, y), (x, y), (x, y)], F.cross_entropy, lr=0.1, device=torch.device("cpu"), epoch=5)
    for name in ("stem", "cells.2"):
        moved = round(row[name]["after"] - 3.0, 6)
        assert moved in (-0.4, -0.2, 0.0, 0.2, 0.4) and len(row[name]["weights"]) == 5
        assert sum(row[name]["weights"]) == pytest.approx(2.0, rel=1e-5)  # two batches of softmax
    assert model.stem.sn.surrogate.b == pytest.approx(row["stem"]["after"])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=f"DGS changed {k}")
    with pytest.raises(ValueError, match="not a module"):
        DGS(model, ["stem2"])
    with pytest.raises(ValueError, match="needs neurons and trainable weights"):
        DGS(model, ["readout"])


def test_decoded_network_exports_and_inherits_weights(tmp_path):
    from exporters.nir_export import to_nir
    from exporters.nir_torch import simulate
    from hwmodels import hw_report

    torch.manual_seed(0)
    for arch in (PAPER, RELEASED):
        model = create_model("spikedhs", arch=arch, in_shape=(1, 8, 8), num_classes=10, channels=3, steps=3).eval()
        x = torch.rand(2, 1, 8, 8)
        with torch.no_grad():
            seq = model.forward_sequence(x)
        graph = to_nir(model, dt=1e-3)
        assert type(graph.nodes["readout"]).__name__ == "I"
        act = simulate(graph, x.unsqueeze(0).expand(3, *x.shape).numpy(), dt=1e-3)
        np.testing.assert_allclose(act["readout"], seq.numpy(), atol=1e-5)
        report = hw_report(graph, "loihi", activity=act)
        assert report.energy_per_sample_j > 0
        skip = graph.nodes["cells.0.edges.n0_0"]  # skip@0 into node 0: one fixed synapse per neuron
        assert type(skip).__name__ == "Conv2d" and np.array_equal(np.asarray(skip.weight).ravel(), np.ones(3))
        row = next(r for r in report.layers if r["layer"] == "cells.0.nodes.0")
        assert "cells.0.edges.n0_0" in row["inputs"]
    strategy = SpikeDHSStrategy((1, 8, 8), 10, channels=2, steps=2)
    net = strategy.relax(SpikeDHSSpace(layers=3))
    decoded = strategy.decoded_network()
    j_k = decoded.cells[0].genotype[1][0]
    torch.testing.assert_close(decoded.cells[0].edges[f"n1_{j_k[1]}"].state_dict(),
                               net.cells[0].edges[f"n1_{j_k[1]}"][j_k[0]].state_dict())


def _tiny(tmp_path, name: str, epochs: int, **kw):
    from nasflow.spikedhs_search import SpikeDHSConfig, run_spikedhs_search

    cfg = SpikeDHSConfig(channels=2, steps=2, layers=3, epochs=2, warmup=1, batch_size=8, max_samples=16,
                         retrain_epochs=0, progress=False, device="cpu", cost="energy:loihi", lam_hw=0.5, **kw)
    out = run_spikedhs_search(cfg, tmp_path / name) if epochs == 2 else None
    if epochs == 1:  # a search killed after its first epoch, then run again: the same α as one run
        from nasflow.spikedhs_search import search_loaders
        from nasflow.strategies.intraining import run_in_training

        loaders = search_loaders(cfg)
        st = SpikeDHSStrategy(loaders.spec.image_shape, 10, channels=2, steps=2, epochs=2, warmup=1,
                              lam_hw=0.5, device="cpu")
        run_in_training(st, cfg.space(), loaders, tmp_path / name, 1, seed=0, progress=False)
        out = run_spikedhs_search(cfg, tmp_path / name)
    return out


def test_search_resumes_to_the_same_alpha(tmp_path):
    whole = _tiny(tmp_path, "whole", 2)
    resumed = _tiny(tmp_path, "resumed", 1)
    assert whole["best"]["arch"] == resumed["best"]["arch"]
    assert whole["best"]["arch_weights"] == resumed["best"]["arch_weights"]
    assert whole["schema_version"] and whole["trajectory"][-1]["hw_term"] > 0
    parse_genotype(whole["best"]["arch"])


def test_cli_refuses_bad_input(tmp_path):
    cases = {("--nodes", "5"): "3 or 4 nodes", ("--preset", "dhs"): "unknown SpikeDHS preset",
             ("--ops", "conv3x3,maxpool"): "unknown SpikeDHS op", ("--lambda-hw", "1"): "needs a hardware cost",
             ("--cost", "latency:loihi"): "energy:CHIP", ("--retrain-channels", "0"): "retrain_channels=0"}
    for args, match in cases.items():
        p = subprocess.run([sys.executable, "-m", "nasflow.cli", "search", "spikedhs", *args, "--out",
                            str(tmp_path / "x")], capture_output=True, text=True)
        assert p.returncode == 2 and match in p.stderr, (args, p.stderr)
    p = subprocess.run([sys.executable, "-m", "nasflow.cli", "train", "--set", "model.name=spikedhs", "--arch",
                        PAPER.replace("skip@2;", "skip@7;"), "--out", str(tmp_path / "t")], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "cannot read input 7" in p.stderr


@pytest.mark.slow
def test_spikedhs_runs_the_main_job(tmp_path):
    from nasflow.pipeline import load_pipeline_config, run_pipeline

    sets = {"space": "spikedhs", "spikedhs.epochs": 1, "spikedhs.warmup": 0, "spikedhs.retrain_epochs": 1,
            "spikedhs.layers": 3, "spikedhs.batch_size": 32, "model.channels": 2, "model.steps": 3,
            "progress": False, "retrain.epochs": 1, "retrain.progress": False, "lava.samples": 4,
            "lava.fixed_point": False}
    report = run_pipeline(load_pipeline_config(None, sets), tmp_path / "dhs", log=lambda _m: None)
    parse_genotype(report["winner"]["arch"])
    assert report["winner"]["lava_min_precision"] >= 0.999 and report["winner"]["lava_min_recall"] >= 0.999
    assert report["winner"]["energy_per_sample_j"] > 0
    steps = json.loads((tmp_path / "dhs" / "steps" / "simulate.json").read_text())
    values = steps["result"]["winner"]["lava_compare"]["values"]["readout"]
    assert values["max_abs_error"] <= 1e-4 * max(1.0, values["max_abs_reference"])
