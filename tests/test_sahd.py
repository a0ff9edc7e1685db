"""SAHD and Hamming kernels pinned to hand-computed examples; the vectorised path against the definition."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nasflow.evaluators.sahd import (
    KernelAccumulator,
    SAHDConfig,
    SAHDScorer,
    kernel_matrix,
    layer_kernels,
    logdet_score,
)
from nasflow.snn.neurons import LIF

# Three samples, four neurons, one step: n = (2, 1, 0), r = (0.5, 0.75, 1),
# d_H = {12: 1, 13: 2, 23: 1}, p = {12: 0.5, 13: 0.5, 23: 0.25}, p_ii = (0.5, 0.375, 0).
CODES = torch.tensor([[[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.float32)
TINY = 1e-12


def test_paper_kernel_by_hand() -> None:
    k = layer_kernels(CODES, SAHDConfig(eps=TINY))[0]
    # K_ij = N - α/p_ij · d_H: 4 - 0.5/0.5·1 = 3; 4 - 0.5/0.5·2 = 2; 4 - 0.5/0.25·1 = 2; diagonal 4.
    want = torch.tensor([[4.0, 3.0, 2.0], [3.0, 4.0, 2.0], [2.0, 2.0, 4.0]], dtype=torch.float64)
    torch.testing.assert_close(k, want, rtol=0, atol=1e-9)
    # det = 4(16-4) - 3(12-4) + 2(6-8) = 20
    assert logdet_score(k) == pytest.approx(math.log(20.0), abs=1e-9)


def test_code_normalisation_by_hand() -> None:
    k = layer_kernels(CODES, SAHDConfig(normalisation="code"))[0]
    # α / (N p + 1e-3): pairs 12 and 13 have N p = 2, pair 23 has N p = 1.
    assert k[0, 1] == pytest.approx(4 - 0.5 / 2.001 * 1)
    assert k[0, 2] == pytest.approx(4 - 0.5 / 2.001 * 2)
    assert k[1, 2] == pytest.approx(4 - 0.5 / 1.001 * 1)
    assert torch.equal(k.diagonal(), torch.full((3,), 4.0, dtype=torch.float64))


def test_hamming_baseline_by_hand() -> None:
    k = layer_kernels(CODES, SAHDConfig(kernel="hamming"))[0]
    want = torch.tensor([[4.0, 3.0, 2.0], [3.0, 4.0, 3.0], [2.0, 3.0, 4.0]], dtype=torch.float64)
    assert torch.equal(k, want)


def test_eps_sits_next_to_p_and_guards_silent_pairs() -> None:
    # ε is added to p: with ε = 0.5 the pair (1, 2) gets 4 - 0.5/(0.5 + 0.5)·1 = 3.5.
    assert layer_kernels(CODES, SAHDConfig(eps=0.5))[0, 0, 1] == pytest.approx(3.5)
    # Two silent samples: p = 0 and d_H = 0; the guard keeps K = N instead of 0/0.
    silent = torch.zeros(1, 2, 5)
    for cfg in (SAHDConfig(), SAHDConfig(normalisation="code")):
        k = layer_kernels(silent, cfg)[0]
        assert torch.isfinite(k).all() and torch.equal(k, torch.full((2, 2), 5.0, dtype=torch.float64))


def test_sum_and_mean_over_layers_and_steps() -> None:
    second = torch.tensor([[[1, 0], [0, 1], [1, 1]], [[0, 0], [0, 0], [0, 0]]], dtype=torch.float32)
    k_a = layer_kernels(CODES, SAHDConfig(kernel="hamming"))[0]
    # Layer B, N = 2, step 0: d_H = {12: 2, 13: 1, 23: 1}; step 1: all zero → K = 2 everywhere.
    k_b0 = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [1.0, 1.0, 2.0]], dtype=torch.float64)
    k_b1 = torch.full((3, 3), 2.0, dtype=torch.float64)
    total = k_a + k_b0 + k_b1
    assert torch.equal(kernel_matrix([CODES, second], SAHDConfig(kernel="hamming")), total)
    mean = kernel_matrix([CODES, second], SAHDConfig(kernel="hamming", combine="mean"))
    torch.testing.assert_close(mean, total / 3)  # three kernels: one step of A, two of B
    # The mean shifts log det by B·log(#kernels): the reason it can reorder cells of different depth.
    assert logdet_score(mean) == pytest.approx(logdet_score(total) - 3 * math.log(3))


@pytest.mark.parametrize("cfg", [SAHDConfig(), SAHDConfig(normalisation="code"), SAHDConfig(kernel="hamming")])
def test_vectorised_sum_equals_the_definition(cfg: SAHDConfig) -> None:
    g = torch.Generator().manual_seed(0)
    codes = (torch.rand(5, 12, 300, generator=g) < 0.2).float()
    codes[0, :3] = 0  # silent samples
    codes[1, 3, :] = 0
    codes[1, 3, 7] = 1  # one spike: tiny p, where rounding would show
    codes[2, 4:6] = 1  # saturated samples
    acc = KernelAccumulator(cfg, dedupe=False)
    acc.add(codes)
    torch.testing.assert_close(acc.kernel(), layer_kernels(codes, cfg).sum(0), rtol=1e-6, atol=1e-6)


class _TwoLIF(nn.Module):
    def __init__(self, same_input: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 20)
        self.a, self.b = LIF(tau=4 / 3, strict=True), LIF(tau=4 / 3, strict=True)
        self.same_input = same_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (3 * self.fc(x)).unsqueeze(0).expand(3, -1, -1)
        return self.a(h) + self.b(h if self.same_input else -h)


def test_scorer_hooks_every_lif_and_reuses_identical_codes() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 6)
    for same in (True, False):
        model = _TwoLIF(same)
        with torch.no_grad():
            h = (3 * model.fc(x)).unsqueeze(0).expand(3, -1, -1)
            codes = [model.a(h).flatten(2), model.b(h if same else -h).flatten(2)]
        want = logdet_score(kernel_matrix(codes))
        fast = SAHDScorer(dedupe=True).score(model, [x])
        plain = SAHDScorer(dedupe=False).score(model, [x])
        assert fast.scores["sahd-paper-sum"] == pytest.approx(want, rel=1e-9)
        assert plain.scores["sahd-paper-sum"] == pytest.approx(want, rel=1e-9)
        assert fast.reused_per_batch == (1 if same else 0) and fast.kernels_per_batch == 6
        assert fast.spikes_per_sample == pytest.approx(float(sum(c.sum() for c in codes)) / 16)


def test_several_configs_from_one_pass_match_single_runs() -> None:
    torch.manual_seed(1)
    model, x = _TwoLIF(False), [torch.randn(8, 6), torch.randn(8, 6)]
    cfgs = [SAHDConfig(), SAHDConfig(normalisation="code", combine="mean"), SAHDConfig(kernel="hamming")]
    together = SAHDScorer(cfgs).score(model, x).scores
    for cfg in cfgs:
        assert together[cfg.name] == pytest.approx(SAHDScorer(cfg).score(model, x).scores[cfg.name], rel=1e-12)


def test_bad_input_is_named() -> None:
    model = _TwoLIF(False)
    with pytest.raises(ValueError, match="empty"):
        SAHDScorer().score(model, [])
    with pytest.raises(ValueError, match="at least 2 samples"):
        SAHDScorer().score(model, [torch.randn(1, 6)])
    with pytest.raises(ValueError, match="no spiking neurons"):
        SAHDScorer().score(nn.Linear(6, 2), [torch.randn(4, 6)])
    with pytest.raises(ValueError, match="normalisation"):
        SAHDConfig(normalisation="paperish")
    with pytest.raises(ValueError, match=r"\[steps, batch, neurons\]"):
        layer_kernels(torch.zeros(3, 4))
