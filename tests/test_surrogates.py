"""Surrogate gradients (REFERENCE.md §1) against the formulas evaluated independently with ``math``."""

from __future__ import annotations

import math

import pytest
import torch

from nasflow.snn.surrogate import (
    SURROGATES,
    ATan,
    Dspike,
    Sigmoid,
    SuperSpike,
    Surrogate,
    Triangle,
    heaviside,
    make_surrogate,
)

POINTS = [-2.0, -0.7, -0.5, -0.3, -0.1, 0.0, 0.05, 0.2, 0.45, 0.5, 0.55, 1.0, 3.0]


def _sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _atan(x, alpha):
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


def _sigmoid(x, alpha):
    return alpha * _sig(alpha * x) * (1 - _sig(alpha * x))


def _triangle(x, w):
    return max(0.0, 1 - abs(x) / w) / w


def _superspike(x, beta):
    return 1 / (1 + beta * abs(x)) ** 2


def _dspike(x, b):
    u = x + 0.5  # SpikeDHS writes it for the membrane u with threshold 0.5: window 0 < u < 1
    if not 0 < u < 1:
        return 0.0
    return b / (2 * math.tanh(b / 2)) * (1 - math.tanh(b * (u - 0.5)) ** 2)


CASES = [
    (ATan(2.0), lambda x: _atan(x, 2.0)),
    (ATan(4.0), lambda x: _atan(x, 4.0)),
    (Sigmoid(4.0), lambda x: _sigmoid(x, 4.0)),
    (Sigmoid(1.5), lambda x: _sigmoid(x, 1.5)),
    (Triangle(1.0), lambda x: _triangle(x, 1.0)),
    (Triangle(0.5), lambda x: _triangle(x, 0.5)),
    (SuperSpike(10.0), lambda x: _superspike(x, 10.0)),
    (SuperSpike(1.0), lambda x: _superspike(x, 1.0)),
    (Dspike(3.0), lambda x: _dspike(x, 3.0)),
    (Dspike(5.0), lambda x: _dspike(x, 5.0)),
]


def _autograd(surrogate: Surrogate, points, strict=False):
    x = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    s = surrogate(x, strict)
    (g,) = torch.autograd.grad(s.sum(), x)
    return s, g


@pytest.mark.parametrize("surrogate,formula", CASES, ids=[repr(c[0]) for c in CASES])
def test_autograd_equals_formula(surrogate, formula):
    _, g = _autograd(surrogate, POINTS)
    expected = [formula(p) for p in POINTS]
    assert g.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # grad() (used by the fused neuron kernels) is the same function.
    assert surrogate.grad(torch.tensor(POINTS, dtype=torch.float64)).tolist() == pytest.approx(expected, rel=1e-12)


def test_autograd_chains_the_upstream_gradient():
    x = torch.tensor([-0.5, 0.0, 0.25], dtype=torch.float64, requires_grad=True)
    up = torch.tensor([2.0, -3.0, 0.5], dtype=torch.float64)
    (g,) = torch.autograd.grad((ATan(2.0)(x) * up).sum(), x)
    assert g.tolist() == pytest.approx([2.0 * _atan(-0.5, 2.0), -3.0 * 1.0, 0.5 * _atan(0.25, 2.0)], rel=1e-12)


def test_hand_values():
    """A few values worked out by hand rather than by the formula helpers above."""
    # ATan α = 2: g(x) = 1/(1 + (πx)²): g(0) = 1, g(1/π) = 1/2, g(-1/π) = 1/2.
    _, g = _autograd(ATan(2.0), [0.0, 1 / math.pi, -1 / math.pi])
    assert g.tolist() == pytest.approx([1.0, 0.5, 0.5], rel=1e-12)
    # Sigmoid α = 4 at 0: 4 · ½ · ½ = 1.
    _, g = _autograd(Sigmoid(4.0), [0.0])
    assert g.item() == pytest.approx(1.0, rel=1e-12)
    # Triangle w = .5: peak 1/w = 2 at 0, half of it (1) at ±.25, 0 from |x| = .5 on.
    _, g = _autograd(Triangle(0.5), [0.0, 0.25, -0.25, 0.5, -0.75])
    assert g.tolist() == [2.0, 1.0, 1.0, 0.0, 0.0]
    # SuperSpike β = 10: 1 at 0, 1/(1 + 1)² = .25 at ±.1, 1/(1 + 10)² at 1.
    _, g = _autograd(SuperSpike(10.0), [0.0, 0.1, -0.1, 1.0])
    assert g.tolist() == pytest.approx([1.0, 0.25, 0.25, 1 / 121], rel=1e-12)
    # Dspike b = 3 at the threshold (u = .5): 3/(2 tanh 1.5) = 1.6574...; 0 outside 0 < u < 1.
    _, g = _autograd(Dspike(3.0), [0.0, -0.5, 0.5, 0.6, -0.6, 2.0])
    assert g[0].item() == pytest.approx(1.657187089473768, rel=1e-12)
    assert g[1:].tolist() == [0.0] * 5


@pytest.mark.parametrize("b", [1.0, 3.0, 5.0])
def test_dspike_integrates_to_one_over_its_window(b):
    """Trapezoid rule over 0 < u < 1 (x = u - .5 in (-.5, .5)); nothing outside the window."""
    x = torch.linspace(-0.5, 0.5, 20001, dtype=torch.float64)[1:-1]
    g = Dspike(b).grad(x)
    assert torch.trapezoid(g, x).item() == pytest.approx(1.0, abs=1e-4)
    outside = torch.cat([torch.linspace(-3, -0.5, 101, dtype=torch.float64), torch.linspace(0.5, 3, 101)])
    assert Dspike(b).grad(outside.double()).abs().max().item() == 0.0


@pytest.mark.parametrize("surrogate", [ATan(2.0), Sigmoid(4.0), Triangle(1.0), SuperSpike(10.0)])
def test_surrogate_areas(surrogate):
    """ATan, Sigmoid and Triangle are derivatives of a 0 → 1 step (unit area); SuperSpike as written
    in §1 (peak 1 at x = 0) has area 2/β instead."""
    x = torch.linspace(-200, 200, 400001, dtype=torch.float64)
    area = torch.trapezoid(surrogate.grad(x), x).item()
    # SuperSpike's tails decay as 1/(β²x²): area over [-L, L] = 2/β · (1 - 1/(1 + βL)) ~ 2/β; β = 10 gives .2.
    expected = 2 / 10.0 * (1 - 1 / (1 + 10.0 * 200)) if isinstance(surrogate, SuperSpike) else 1.0
    assert area == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("surrogate", [c[0] for c in CASES], ids=[repr(c[0]) for c in CASES])
def test_forward_is_heaviside_with_strict_choice(surrogate):
    pts = [-1.0, -1e-7, 0.0, 1e-7, 0.5]
    s_ge, _ = _autograd(surrogate, pts, strict=False)
    s_gt, _ = _autograd(surrogate, pts, strict=True)
    assert s_ge.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]  # Θ(x) = x >= 0 (SpikingJelly, AutoSNN)
    assert s_gt.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]  # Θ(x) = x > 0 (NIR, Lava, snnTorch)
    assert surrogate(torch.zeros(3)).dtype == torch.float32
    assert surrogate(torch.zeros(3), True).sum().item() == 0.0
    assert surrogate(torch.zeros(3)).sum().item() == 3.0  # default is non-strict


def test_heaviside_function():
    x = torch.tensor([-0.5, 0.0, 0.5])
    assert heaviside(x, strict=False).tolist() == [0.0, 1.0, 1.0]
    assert heaviside(x, strict=True).tolist() == [0.0, 0.0, 1.0]
    assert heaviside(x.double(), True).dtype == torch.float64


def test_make_surrogate_by_name():
    assert make_surrogate("atan") == ATan(2.0)
    assert make_surrogate("ATan", alpha=3.0) == ATan(3.0)
    assert make_surrogate("dspike", b=5.0) == Dspike(5.0)
    assert make_surrogate("triangle", width=0.5) == Triangle(0.5)
    assert set(SURROGATES) == {"atan", "sigmoid", "triangle", "superspike", "dspike"}
    with pytest.raises(ValueError, match="unknown surrogate"):
        make_surrogate("relu")


def test_defaults_and_hashable():
    assert ATan().alpha == 2.0
    assert Dspike().b == 3.0
    # frozen dataclasses: usable as dict keys and safe to share between neurons
    assert len({ATan(2.0), ATan(2.0), Sigmoid()}) == 2
    with pytest.raises(AttributeError):
        ATan().alpha = 3.0  # type: ignore[misc]
