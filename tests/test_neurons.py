"""Neurons (REFERENCE.md §1) against hand-computed trajectories, and the fused path against the step loop.

Every golden list below was worked out by hand from the §1 equations (the arithmetic is in the comments);
inputs and time constants are dyadic so the float32 values are exact and ``==`` is meaningful. Each input
lands exactly on the threshold at least once, so ``>=`` and ``>`` give different spike trains.
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from nasflow.snn.neurons import ALIF, CUBA, IF, LIF, PLIF, NeuronState
from nasflow.snn.surrogate import ATan, Sigmoid

HARD0, HARD_NEG, SOFT = 0.0, -0.5, None


def _run_golden(neuron, x, h_expected, s_expected, v_last_expected):
    """Check forward_steps (H and S) and forward (S and final V) against hand-computed lists."""
    xt = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 1)
    s, h, last = neuron.forward_steps(xt)
    assert h.flatten().tolist() == h_expected
    assert s.flatten().tolist() == s_expected
    assert last.v.item() == v_last_expected
    s_fused = neuron(xt)
    assert s_fused.flatten().tolist() == s_expected
    assert neuron.last_state.v.item() == v_last_expected


# (label, factory, x, H, S, V after the last step)
GOLDEN = [
    # ---------------- IF: H = V + X ----------------
    # hard, v_reset = 0, >=: .5 | 1 fires -> 0 | .25 | 1.25 fires -> 0 | -.25 | .5
    ("IF hard0 >=", lambda: IF(v_reset=HARD0, strict=False),
     [0.5, 0.5, 0.25, 1.0, -0.25, 0.75],
     [0.5, 1.0, 0.25, 1.25, -0.25, 0.5], [0, 1, 0, 1, 0, 0], 0.5),
    # same input, >: .5 | 1 stays -> V = 1 | 1.25 fires -> 0 | 1 stays | .75 | 1.5 fires -> 0
    ("IF hard0 >", lambda: IF(v_reset=HARD0, strict=True),
     [0.5, 0.5, 0.25, 1.0, -0.25, 0.75],
     [0.5, 1.0, 1.25, 1.0, 0.75, 1.5], [0, 0, 1, 0, 0, 1], 0.0),
    # hard, v_reset = -.5 (V starts at -.5), >=: 0 | 1 fires -> -.5 | 0 | .25 | 1.25 fires -> -.5 | .25
    ("IF hard-.5 >=", lambda: IF(v_reset=HARD_NEG, strict=False),
     [0.5, 1.0, 0.5, 0.25, 1.0, 0.75],
     [0.0, 1.0, 0.0, 0.25, 1.25, 0.25], [0, 1, 0, 0, 1, 0], 0.25),
    # >: 0 | 1 stays | 1.5 fires -> -.5 | -.25 | .75 | 1.5 fires -> -.5
    ("IF hard-.5 >", lambda: IF(v_reset=HARD_NEG, strict=True),
     [0.5, 1.0, 0.5, 0.25, 1.0, 0.75],
     [0.0, 1.0, 1.5, -0.25, 0.75, 1.5], [0, 0, 1, 0, 0, 1], -0.5),
    # soft (V = H - 1·S), >=: .5 | 1 fires -> 0 | .75 | 1.25 fires -> .25 | 1 fires -> 0 | 2.5 fires -> 1.5
    ("IF soft >=", lambda: IF(v_reset=SOFT, strict=False),
     [0.5, 0.5, 0.75, 0.5, 0.75, 2.5],
     [0.5, 1.0, 0.75, 1.25, 1.0, 2.5], [0, 1, 0, 1, 1, 1], 1.5),
    # >: .5 | 1 stays | 1.75 -> .75 | 1.25 -> .25 | 1 stays | 3.5 -> 2.5
    ("IF soft >", lambda: IF(v_reset=SOFT, strict=True),
     [0.5, 0.5, 0.75, 0.5, 0.75, 2.5],
     [0.5, 1.0, 1.75, 1.25, 1.0, 3.5], [0, 0, 1, 1, 0, 1], 2.5),
    # ---------------- LIF τ = 2, decay_input: H = V + (X - (V - v_reset))/2 ----------------
    # hard 0: H = (V + X)/2. >=: 1 fires -> 0 | .5 | .75 | .875 | .6875 | 1.09375 fires -> 0
    ("LIF di hard0 >=", lambda: LIF(tau=2.0, decay_input=True, v_reset=HARD0, strict=False),
     [2.0, 1.0, 1.0, 1.0, 0.5, 1.5],
     [1.0, 0.5, 0.75, 0.875, 0.6875, 1.09375], [1, 0, 0, 0, 0, 1], 0.0),
    # >: 1 | 1 | 1 | 1 | .75 | 1.125 fires -> 0
    ("LIF di hard0 >", lambda: LIF(tau=2.0, decay_input=True, v_reset=HARD0, strict=True),
     [2.0, 1.0, 1.0, 1.0, 0.5, 1.5],
     [1.0, 1.0, 1.0, 1.0, 0.75, 1.125], [0, 0, 0, 0, 0, 1], 0.0),
    # hard -.5: H = V/2 + X/2 - .25, V0 = -.5.
    # >=: -.25+1.5-.25 = 1 fires -> -.5 | -.25+.5-.25 = 0 | 0+1-.25 = .75 | .375+1.25-.25 = 1.375 fires -> -.5
    #     | -.25+0-.25 = -.5 | -.25+1.5-.25 = 1 fires -> -.5
    ("LIF di hard-.5 >=", lambda: LIF(tau=2.0, decay_input=True, v_reset=HARD_NEG, strict=False),
     [3.0, 1.0, 2.0, 2.5, 0.0, 3.0],
     [1.0, 0.0, 0.75, 1.375, -0.5, 1.0], [1, 0, 0, 1, 0, 1], -0.5),
    # >: 1 | .5+.5-.25 = .75 | .375+1-.25 = 1.125 fires -> -.5 | -.25+1.25-.25 = .75 | .375-.25 = .125
    #    | .0625+1.5-.25 = 1.3125 fires -> -.5
    ("LIF di hard-.5 >", lambda: LIF(tau=2.0, decay_input=True, v_reset=HARD_NEG, strict=True),
     [3.0, 1.0, 2.0, 2.5, 0.0, 3.0],
     [1.0, 0.75, 1.125, 0.75, 0.125, 1.3125], [0, 0, 1, 0, 0, 1], -0.5),
    # soft (leak to 0): H = (V + X)/2, V = H - S.
    # >=: 1 fires -> 0 | .5 | 1.75 fires -> .75 | .875 | .4375 | 1.21875 fires -> .21875
    ("LIF di soft >=", lambda: LIF(tau=2.0, decay_input=True, v_reset=SOFT, strict=False),
     [2.0, 1.0, 3.0, 1.0, 0.0, 2.0],
     [1.0, 0.5, 1.75, 0.875, 0.4375, 1.21875], [1, 0, 1, 0, 0, 1], 0.21875),
    # >: 1 | 1 | 2 fires -> 1 | 1 | .5 | 1.25 fires -> .25
    ("LIF di soft >", lambda: LIF(tau=2.0, decay_input=True, v_reset=SOFT, strict=True),
     [2.0, 1.0, 3.0, 1.0, 0.0, 2.0],
     [1.0, 1.0, 2.0, 1.0, 0.5, 1.25], [0, 0, 1, 0, 0, 1], 0.25),
    # ---------------- LIF τ = 2, no decay_input: H = V - (V - v_reset)/2 + X ----------------
    # hard 0: H = V/2 + X. >=: .5 | .25+.75 = 1 fires | .5 | .25+1 = 1.25 fires | .25 | .125+.5 = .625
    ("LIF nodi hard0 >=", lambda: LIF(tau=2.0, decay_input=False, v_reset=HARD0, strict=False),
     [0.5, 0.75, 0.5, 1.0, 0.25, 0.5],
     [0.5, 1.0, 0.5, 1.25, 0.25, 0.625], [0, 1, 0, 1, 0, 0], 0.625),
    # >: .5 | 1 stays | .5+.5 = 1 stays | .5+1 = 1.5 fires | .25 | .625
    ("LIF nodi hard0 >", lambda: LIF(tau=2.0, decay_input=False, v_reset=HARD0, strict=True),
     [0.5, 0.75, 0.5, 1.0, 0.25, 0.5],
     [0.5, 1.0, 1.0, 1.5, 0.25, 0.625], [0, 0, 0, 1, 0, 0], 0.625),
    # hard -.5: H = V/2 - .25 + X, V0 = -.5.
    # >=: -.25-.25+1.5 = 1 fires -> -.5 | -.5+1 = .5 | .25-.25+.25 = .25 | .125-.25+1 = .875
    #     | .4375-.25+.5 = .6875 | .34375-.25+.75 = .84375
    ("LIF nodi hard-.5 >=", lambda: LIF(tau=2.0, decay_input=False, v_reset=HARD_NEG, strict=False),
     [1.5, 1.0, 0.25, 1.0, 0.5, 0.75],
     [1.0, 0.5, 0.25, 0.875, 0.6875, 0.84375], [1, 0, 0, 0, 0, 0], 0.84375),
    # >: 1 stays | .5-.25+1 = 1.25 fires -> -.5 | -.5+.25 = -.25 | -.125-.25+1 = .625 | .3125-.25+.5 = .5625
    #    | .28125-.25+.75 = .78125
    ("LIF nodi hard-.5 >", lambda: LIF(tau=2.0, decay_input=False, v_reset=HARD_NEG, strict=True),
     [1.5, 1.0, 0.25, 1.0, 0.5, 0.75],
     [1.0, 1.25, -0.25, 0.625, 0.5625, 0.78125], [0, 1, 0, 0, 0, 0], 0.78125),
    # soft: H = V/2 + X, V = H - S.
    # >=: 1 fires -> 0 | .5 | .25+.75 = 1 fires -> 0 | .5 | .25+1.5 = 1.75 fires -> .75 | .375+.25 = .625
    ("LIF nodi soft >=", lambda: LIF(tau=2.0, decay_input=False, v_reset=SOFT, strict=False),
     [1.0, 0.5, 0.75, 0.5, 1.5, 0.25],
     [1.0, 0.5, 1.0, 0.5, 1.75, 0.625], [1, 0, 1, 0, 1, 0], 0.625),
    # >: 1 | .5+.5 = 1 | .5+.75 = 1.25 fires -> .25 | .125+.5 = .625 | .3125+1.5 = 1.8125 fires -> .8125
    #    | .40625+.25 = .65625
    ("LIF nodi soft >", lambda: LIF(tau=2.0, decay_input=False, v_reset=SOFT, strict=True),
     [1.0, 0.5, 0.75, 0.5, 1.5, 0.25],
     [1.0, 1.0, 1.25, 0.625, 1.8125, 0.65625], [0, 0, 1, 0, 1, 0], 0.65625),
    # ---------------- ALIF τ = 2 (decay_input), β = .5, ρ = .5: θ[t] = 1 + .5 a[t], a[t] = .5 a[t-1] + S[t-1] ----
    # hard 0, >=:
    #  t0 a=0     θ=1       H=(0+2)/2 = 1       fires -> 0
    #  t1 a=1     θ=1.5     H=(0+3)/2 = 1.5     fires (exactly on θ) -> 0
    #  t2 a=1.5   θ=1.75    H=(0+2.5)/2 = 1.25  no
    #  t3 a=.75   θ=1.375   H=(1.25+2)/2=1.625  fires -> 0
    #  t4 a=1.375 θ=1.6875  H=(0+2)/2 = 1       no
    #  t5 a=.6875 θ=1.34375 H=(1+3)/2 = 2       fires -> 0
    ("ALIF hard0 >=", lambda: ALIF(tau=2.0, beta=0.5, rho=0.5, v_reset=HARD0, strict=False),
     [2.0, 3.0, 2.5, 2.0, 2.0, 3.0],
     [1.0, 1.5, 1.25, 1.625, 1.0, 2.0], [1, 1, 0, 1, 0, 1], 0.0),
    # hard 0, >:
    #  t0 a=0 θ=1 H=1 no | t1 a=0 θ=1 H=(1+3)/2=2 fires | t2 a=1 θ=1.5 H=1.25 no
    #  t3 a=.5 θ=1.25 H=1.625 fires | t4 a=1.25 θ=1.625 H=1 no | t5 a=.625 θ=1.3125 H=2 fires
    ("ALIF hard0 >", lambda: ALIF(tau=2.0, beta=0.5, rho=0.5, v_reset=HARD0, strict=True),
     [2.0, 3.0, 2.5, 2.0, 2.0, 3.0],
     [1.0, 2.0, 1.25, 1.625, 1.0, 2.0], [0, 1, 0, 1, 0, 1], 0.0),
    # hard -.5 (H = V/2 + X/2 - .25, V0 = -.5), >=:
    #  t0 a=0     θ=1       H=-.25+1.5-.25 = 1     fires -> -.5
    #  t1 a=1     θ=1.5     H=-.25+1.5-.25 = 1     no
    #  t2 a=.5    θ=1.25    H=.5+1.5-.25 = 1.75    fires -> -.5
    #  t3 a=1.25  θ=1.625   H=-.25+1-.25 = .5      no
    #  t4 a=.625  θ=1.3125  H=.25+1-.25 = 1        no
    #  t5 a=.3125 θ=1.15625 H=.5+1.5-.25 = 1.75    fires -> -.5
    ("ALIF hard-.5 >=", lambda: ALIF(tau=2.0, beta=0.5, rho=0.5, v_reset=HARD_NEG, strict=False),
     [3.0, 3.0, 3.0, 2.0, 2.0, 3.0],
     [1.0, 1.0, 1.75, 0.5, 1.0, 1.75], [1, 0, 1, 0, 0, 1], -0.5),
    # hard -.5, >:
    #  t0 a=0 θ=1 H=1 no | t1 a=0 θ=1 H=.5+1.5-.25 = 1.75 fires -> -.5 | t2 a=1 θ=1.5 H=1 no
    #  t3 a=.5 θ=1.25 H=.5+1-.25 = 1.25 (exactly on θ) no | t4 a=.25 θ=1.125 H=.625+1-.25 = 1.375 fires -> -.5
    #  t5 a=1.125 θ=1.5625 H=-.25+1.5-.25 = 1 no
    ("ALIF hard-.5 >", lambda: ALIF(tau=2.0, beta=0.5, rho=0.5, v_reset=HARD_NEG, strict=True),
     [3.0, 3.0, 3.0, 2.0, 2.0, 3.0],
     [1.0, 1.75, 1.0, 1.25, 1.375, 1.0], [0, 1, 0, 0, 1, 0], 1.0),
    # soft: V = H - θ[t]·S (the adaptive threshold is what is subtracted), leak to 0, >=:
    #  t0 θ=1 H=1 fires -> 0 | t1 θ=1.5 H=1.5 fires -> 0 | t2 θ=1.75 H=1.25 no
    #  t3 θ=1.375 H=1.625 fires -> .25 | t4 θ=1.6875 H=(.25+2)/2=1.125 no
    #  t5 θ=1.34375 H=(1.125+3)/2=2.0625 fires -> .71875
    ("ALIF soft >=", lambda: ALIF(tau=2.0, beta=0.5, rho=0.5, v_reset=SOFT, strict=False),
     [2.0, 3.0, 2.5, 2.0, 2.0, 3.0],
     [1.0, 1.5, 1.25, 1.625, 1.125, 2.0625], [1, 1, 0, 1, 0, 1], 0.71875),
    # soft, >:
    #  t0 a=0 θ=1 H=1 no | t1 a=0 θ=1 H=(1+3)/2 = 2 fires -> 1 | t2 a=1 θ=1.5 H=(1+2.5)/2 = 1.75 fires -> .25
    #  t3 a=1.5 θ=1.75 H=(.25+2)/2 = 1.125 no | t4 a=.75 θ=1.375 H=(1.125+2)/2 = 1.5625 fires -> .1875
    #  t5 a=1.375 θ=1.6875 H=(.1875+3)/2 = 1.59375 no
    ("ALIF soft >", lambda: ALIF(tau=2.0, beta=0.5, rho=0.5, v_reset=SOFT, strict=True),
     [2.0, 3.0, 2.5, 2.0, 2.0, 3.0],
     [1.0, 2.0, 1.75, 1.125, 1.5625, 1.59375], [0, 1, 1, 0, 1, 0], 1.59375),
    # ---------------- CUBA du = dv = .5: u = u/2 + x; H = v/2 + u + bias ----------------
    # hard 0, > (Lava's convention):
    #  u: 1, .5, .75, .375, 1.1875, .59375
    #  H: 1 no | .5+.5 = 1 no | .5+.75 = 1.25 fires -> 0 | .375 | .1875+1.1875 = 1.375 fires -> 0 | .59375
    ("CUBA hard0 >", lambda: CUBA(du=0.5, dv=0.5, v_reset=HARD0, strict=True),
     [1.0, 0.0, 0.5, 0.0, 1.0, 0.0],
     [1.0, 1.0, 1.25, 0.375, 1.375, 0.59375], [0, 0, 1, 0, 1, 0], 0.59375),
    # hard 0, >=: H: 1 fires -> 0 | .5 | .25+.75 = 1 fires -> 0 | .375 | .1875+1.1875 = 1.375 fires | .59375
    ("CUBA hard0 >=", lambda: CUBA(du=0.5, dv=0.5, v_reset=HARD0, strict=False),
     [1.0, 0.0, 0.5, 0.0, 1.0, 0.0],
     [1.0, 0.5, 1.0, 0.375, 1.375, 0.59375], [1, 0, 1, 0, 1, 0], 0.59375),
    # hard -.5, >: v and u start at 0 (CUBA's rest: v decays towards 0, not towards v_reset); spikes reset v to -.5.
    #  u: 1, 1, .5, .25, .125, .0625
    #  H: 1 no | .5+1 = 1.5 fires -> -.5 | -.25+.5 = .25 | .125+.25 = .375 | .1875+.125 = .3125 | .15625+.0625 = .21875
    ("CUBA hard-.5 >", lambda: CUBA(du=0.5, dv=0.5, v_reset=HARD_NEG, strict=True),
     [1.0, 0.5, 0.0, 0.0, 0.0, 0.0],
     [1.0, 1.5, 0.25, 0.375, 0.3125, 0.21875], [0, 1, 0, 0, 0, 0], 0.21875),
    # hard -.5, >=: H: 1 fires -> -.5 | -.25+1 = .75 | .375+.5 = .875 | .4375+.25 = .6875 | .34375+.125 = .46875
    #  | .234375+.0625 = .296875
    ("CUBA hard-.5 >=", lambda: CUBA(du=0.5, dv=0.5, v_reset=HARD_NEG, strict=False),
     [1.0, 0.5, 0.0, 0.0, 0.0, 0.0],
     [1.0, 0.75, 0.875, 0.6875, 0.46875, 0.296875], [1, 0, 0, 0, 0, 0], 0.296875),
    # soft with bias, du = 1 (u = x), dv = .5, bias = .25: H = v/2 + x + .25, V = H - S.
    #  >:  .75 | .375+.375+.25 = 1 no | .5+.25+.25 = 1 no | .5+.25 = .75 | .375+.25 = .625
    #      | .3125+.75+.25 = 1.3125 fires -> .3125
    ("CUBA soft bias >", lambda: CUBA(du=1.0, dv=0.5, bias=0.25, v_reset=SOFT, strict=True),
     [0.5, 0.375, 0.25, 0.0, 0.0, 0.75],
     [0.75, 1.0, 1.0, 0.75, 0.625, 1.3125], [0, 0, 0, 0, 0, 1], 0.3125),
    #  >=: .75 | 1 fires -> 0 | 0+.25+.25 = .5 | .25+.25 = .5 | .5 | .25+.75+.25 = 1.25 fires -> .25
    ("CUBA soft bias >=", lambda: CUBA(du=1.0, dv=0.5, bias=0.25, v_reset=SOFT, strict=False),
     [0.5, 0.375, 0.25, 0.0, 0.0, 0.75],
     [0.75, 1.0, 0.5, 0.5, 0.5, 1.25], [0, 1, 0, 0, 0, 1], 0.25),
]


@pytest.mark.parametrize("label,factory,x,h,s,v_last", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_trajectories(label, factory, x, h, s, v_last):
    _run_golden(factory(), x, h, s, v_last)


# PLIF with τ0 = 2 has w0 = -ln(1) = 0 and 1/τ = sigmoid(0) = .5: the LIF τ = 2 golden lists apply unchanged.
PLIF_GOLDEN = [g for g in GOLDEN if g[0].startswith("LIF")]


@pytest.mark.parametrize("label,factory,x,h,s,v_last", PLIF_GOLDEN, ids=[g[0] for g in PLIF_GOLDEN])
def test_plif_tau0_2_matches_lif_tau_2(label, factory, x, h, s, v_last):
    lif = factory()
    plif = PLIF(tau0=2.0, decay_input=lif.decay_input, v_reset=lif.v_reset, strict=lif.strict)
    assert plif.w.item() == 0.0
    assert torch.sigmoid(plif.w).item() == 0.5
    _run_golden(plif, x, h, s, v_last)


@pytest.mark.parametrize("tau0", [1.5, 2.0, 3.0, 10.0])
def test_plif_initial_w(tau0):
    plif = PLIF(tau0=tau0)
    assert plif.w.item() == pytest.approx(-math.log(tau0 - 1.0), abs=1e-7)
    assert plif.tau_value == pytest.approx(tau0, rel=1e-6)
    # τ0 = 3: w0 = -ln 2 and 1/τ = 1/(1 + e^{ln 2}) = 1/3.
    if tau0 == 3.0:
        assert plif.w.item() == pytest.approx(-0.6931471805599453, abs=1e-7)
        assert plif.inv_tau().item() == pytest.approx(1 / 3, abs=1e-7)


def test_plif_w_is_a_single_learnable_parameter():
    plif = PLIF(tau0=2.0)
    params = list(plif.parameters())
    assert len(params) == 1 and params[0] is plif.w and params[0].numel() == 1


def test_alif_state_carries_adaptation():
    # a[t] = ρ a[t-1] + S[t-1]: after spikes at t0 and t1 (golden "ALIF hard0 >="), state aux holds (a[1], S[1]).
    n = ALIF(tau=2.0, beta=0.5, rho=0.5, v_reset=0.0, strict=False)
    _, _, last = n.forward_steps(torch.tensor([2.0, 3.0]).reshape(2, 1, 1))
    assert last.aux[0].item() == 1.0  # a[1] = .5·0 + S[0]
    assert last.aux[1].item() == 1.0  # S[1]


# ---------------------------------------------------------------------------------------------------------------
# Fused forward() against the per-step reference loop, every option combination.
# ---------------------------------------------------------------------------------------------------------------
def _make(kind, v_reset, strict, detach):
    common = dict(v_reset=v_reset, strict=strict, detach_reset=detach, v_threshold=0.75)
    if kind == "IF":
        return IF(**common)
    if kind == "LIF_di":
        return LIF(tau=4.0 / 3.0, decay_input=True, **common)
    if kind == "LIF_nodi":
        return LIF(tau=3.0, decay_input=False, **common)
    if kind == "PLIF_di":
        n = PLIF(tau0=2.0, decay_input=True, **common)
    elif kind == "PLIF_nodi":
        n = PLIF(tau0=2.0, decay_input=False, **common)
    with torch.no_grad():
        n.w.fill_(0.3)  # away from w0 = 0 so that 1/τ is not a round number
    return n


KINDS = ["IF", "LIF_di", "LIF_nodi", "PLIF_di", "PLIF_nodi"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("v_reset", [HARD0, HARD_NEG, SOFT], ids=["hard0", "hard-.5", "soft"])
@pytest.mark.parametrize("strict", [False, True], ids=[">=", ">"])
@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detached"])
def test_fused_matches_steps(kind, v_reset, strict, detach):
    gen = torch.Generator().manual_seed(zlib.crc32(repr((kind, v_reset, strict, detach)).encode()))
    x = (torch.rand(12, 3, 5, generator=gen, dtype=torch.float64) * 2.3 - 0.3).requires_grad_()
    w_s = torch.randn(12, 3, 5, generator=gen, dtype=torch.float64)
    w_v = torch.randn(3, 5, generator=gen, dtype=torch.float64)

    neuron = _make(kind, v_reset, strict, detach).double()
    # Step loop (autograd through every step) is the reference.
    s_ref, _, last_ref = neuron.forward_steps(x)
    loss_ref = (s_ref * w_s).sum() + (last_ref.v * w_v).sum()
    params = [x] + ([neuron.w] if hasattr(neuron, "w") else [])
    g_ref = torch.autograd.grad(loss_ref, params)

    s = neuron(x)
    loss = (s * w_s).sum() + (neuron.last_state.v * w_v).sum()
    g = torch.autograd.grad(loss, params)

    assert 0 < s.sum() < s.numel()  # the test input makes some, not all, neurons fire
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(neuron.last_state.v, last_ref.v, rtol=1e-12, atol=1e-12)
    for a, b in zip(g, g_ref):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_fused_matches_steps_other_surrogate_and_stateful(kind):
    """Stateful calls continue from the carried state (gradients flow into the earlier call too)."""
    gen = torch.Generator().manual_seed(7)
    x = (torch.rand(10, 2, 4, generator=gen, dtype=torch.float64) * 1.4 - 0.2).requires_grad_()
    neuron = _make(kind, HARD0, False, False).double()
    neuron.surrogate = Sigmoid(alpha=3.0)
    s_ref, _, _ = neuron.forward_steps(x)
    params = [x] + ([neuron.w] if hasattr(neuron, "w") else [])
    g_ref = torch.autograd.grad((s_ref * torch.arange(10.0, dtype=torch.float64).view(10, 1, 1)).sum(), params)

    neuron.stateful = True
    neuron.reset()
    s = torch.cat([neuron(x[:4]), neuron(x[4:])])
    g = torch.autograd.grad((s * torch.arange(10.0, dtype=torch.float64).view(10, 1, 1)).sum(), params)
    assert torch.equal(s, s_ref)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_stateless_call_starts_from_rest():
    n = IF(v_reset=0.0)
    x = torch.full((2, 1, 1), 0.75)
    assert n(x).flatten().tolist() == [0.0, 1.0]
    assert n(x).flatten().tolist() == [0.0, 1.0]  # no carried state


def test_stateful_shape_mismatch_raises():
    n = LIF(stateful=True)
    n(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="reset"):
        n(torch.zeros(2, 5, 4))
    n.reset()
    n(torch.zeros(2, 5, 4))


def test_detach_reset_gradient_by_hand():
    """One IF neuron, hard reset to 0, ATan(α=2), x = [1, 0]: H0 = 1 fires (>=), H1 = V0 + 0 = 0.

    dS1/dx0 = g(H1 - 1) · dH1/dV0 · dV0/dH0 with g(-1) = 1/(1 + π²) and g(0) = 1.
    Attached: dV0/dH0 = (1 - S0) + (v_reset - H0)·g(0) = 0 + (0 - 1)·1 = -1.  Detached: 1 - S0 = 0.
    """
    g_m1 = 1.0 / (1.0 + math.pi**2)
    for detach, expected in ((False, -g_m1), (True, 0.0)):
        n = IF(v_reset=0.0, strict=False, detach_reset=detach, surrogate=ATan(2.0))
        x = torch.tensor([1.0, 0.0], dtype=torch.float64).reshape(2, 1, 1).requires_grad_()
        for s in (n.forward_steps(x)[0], n(x)):
            (gx,) = torch.autograd.grad(s[1].sum(), x)
            assert gx.flatten()[0].item() == pytest.approx(expected, abs=1e-12)
            assert gx.flatten()[1].item() == pytest.approx(g_m1, abs=1e-12)  # dS1/dx1 = g(H1 - 1)


def test_plif_w_gradient_by_hand():
    """PLIF(τ0 = 2, decay_input), one step, x = 1: H = sigmoid(w)·x = .5 (below threshold 1, no reset).

    dS/dw = g(H - 1) · x · sigmoid'(0) = [1/(1 + (π·(-.5))²)] · 1 · .25 (ATan, α = 2).
    """
    n = PLIF(tau0=2.0, surrogate=ATan(2.0))
    x = torch.ones(1, 1, 1)
    expected = 0.25 / (1.0 + (math.pi * 0.5) ** 2)
    for s in (n.forward_steps(x)[0], n(x)):
        (gw,) = torch.autograd.grad(s.sum(), n.w)
        assert gw.item() == pytest.approx(expected, rel=1e-6)


def test_neuron_state_is_named_tuple():
    st = NeuronState(torch.zeros(1))
    assert st.aux is None and st.v.shape == (1,)


# ---------------------------------------------------------------------------------------------------------------
# Bad input and bad parameters.
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "factory", [IF, LIF, lambda: PLIF(tau0=2.0), ALIF, CUBA], ids=["IF", "LIF", "PLIF", "ALIF", "CUBA"]
)
def test_one_dimensional_input_raises(factory):
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        factory()(torch.zeros(6))


@pytest.mark.parametrize("tau", [0.5, 0.0, -2.0, float("nan")])
def test_lif_tau_below_one_raises(tau):
    with pytest.raises(ValueError, match="tau"):
        LIF(tau=tau)


def test_lif_tau_one_passes_input_through():
    # τ = 1 with decay_input: H = V + (X - V) = X (no memory).
    n = LIF(tau=1.0, decay_input=True, v_reset=0.0)
    _, h, _ = n.forward_steps(torch.tensor([0.5, 0.25, 0.75]).reshape(3, 1, 1))
    assert h.flatten().tolist() == [0.5, 0.25, 0.75]


@pytest.mark.parametrize("tau0", [1.0, 0.5])
def test_plif_tau0_not_above_one_raises(tau0):
    with pytest.raises(ValueError):
        PLIF(tau0=tau0)


@pytest.mark.parametrize("kw", [dict(du=-0.1), dict(du=1.5), dict(dv=2.0)])
def test_cuba_decay_out_of_range_raises(kw):
    with pytest.raises(ValueError):
        CUBA(**kw)
