"""``lava-emu`` against ``lava-fixed``: identical rasters and voltages on every graph family the Lava backend runs
(interop fixtures, a block of every AutoSNN type, SNASNet cells with cycles, SpikeDHS, CUBA neurons with biases and
read-outs, graded input, Lava's raw timing), golden values of Lava's integer LIF step, the same refusals."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from _paths import INTEROP
from test_lava_backend import DT, lif_input_train, representable_graph, residual_graph, spikes

from exporters import lava as lb
from exporters.core.kinds import FIRING_TYPES, node_type
from exporters.lava.emulate import lava_dense_weights, lif_fixed_run, lif_fixed_step
from exporters.nir_export import to_nir


def _loud(model: torch.nn.Module) -> torch.nn.Module:
    """Untrained nets are nearly silent: larger weights and BN biases make every layer spike."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Conv2d | torch.nn.Linear):
                mod.weight.mul_(2.0)
            if isinstance(mod, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                mod.bias.fill_(1.2)
    return model.eval()


def _analog(steps: int, b: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, b, 1, 8, 8)).astype(np.float32).repeat(steps, axis=0)


def _autosnn() -> tuple[nir.NIRGraph, np.ndarray, float | None]:
    from nasflow.models import create_model

    torch.manual_seed(0)
    m = _loud(create_model("autosnn", arch="SRB_k3,SCB_k5,SRB_k5,SCB_k3,skip", in_shape=(1, 8, 8), channels=4,
                           steps=6))
    return to_nir(m, dt=1e-3), _analog(6, 3), None


def _spikedhs() -> tuple[nir.NIRGraph, np.ndarray, float | None]:
    from nasflow.models import create_model

    torch.manual_seed(0)
    m = _loud(create_model("spikedhs", in_shape=(1, 8, 8), channels=4, steps=4))
    return to_nir(m, dt=1e-3), _analog(4, 2), None


def _snasnet(cell: str) -> tuple[nir.NIRGraph, np.ndarray, float | None]:
    import test_snasnet_export as se

    return to_nir(se.build(cell)), se.nir_input(se.inputs(seed=7)), None


def _cuba_readout() -> tuple[nir.NIRGraph, np.ndarray, float | None]:
    """CubaLIF with biases (carried by the constant source) and '>=' firing into a CubaLI voltage read-out."""
    rng = np.random.default_rng(2)
    n, m = 7, 3

    def cuba(k: int, li: bool = False) -> nir.NIRNode:
        p = dict(tau_syn=np.full(k, 2e-3), tau_mem=np.full(k, 4e-3), r=np.full(k, 2.0), v_leak=np.full(k, 0.1),
                 w_in=np.full(k, 1.5))
        if li:
            return nir.CubaLI(**p)
        return nir.CubaLIF(**p, v_threshold=np.full(k, 0.6), v_reset=np.zeros(k))

    nodes = {
        "input": nir.Input(input_type={"input": np.array([5])}),
        "a": nir.Affine(weight=rng.normal(1.0, 1.5, (n, 5)), bias=rng.normal(0.2, 0.1, n)),
        "c1": cuba(n),
        "b": nir.Affine(weight=rng.normal(0.5, 1.0, (m, n)), bias=np.full(m, 0.3)),
        "r": cuba(m, li=True),
        "output": nir.Output(output_type={"output": np.array([m])}),
    }
    edges = [("input", "a"), ("a", "c1"), ("c1", "b"), ("b", "r"), ("r", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3, "conventions": {"threshold": ">="}})
    return g, spikes(rng, (40, 3, 5), 0.4), None


def _graded_conv() -> tuple[nir.NIRGraph, np.ndarray, float | None]:
    """The Sinabs CNN fed graded (8-bit) values instead of spikes: 24-bit messages into the first Conv."""
    g = nir.read(INTEROP / "cnn_sinabs.nir")
    x = np.random.default_rng(3).random((6, 2, 2, 34, 34)).astype(np.float32) * (np.random.default_rng(4).random(
        (6, 2, 2, 34, 34)) < 0.1)
    return g, x, DT


CASES = {
    "lif_norse": lambda: (nir.read(INTEROP / "lif_norse.nir"), lif_input_train().reshape(1000, 1, 1), DT),
    "cnn_sinabs": lambda: (nir.read(INTEROP / "cnn_sinabs.nir"),
                           spikes(np.random.default_rng(0), (12, 2, 2, 34, 34), 0.15), DT),
    "braille_recurrent": lambda: (nir.read(INTEROP / "braille_noDelay_bias_zero.nir"),
                                  spikes(np.random.default_rng(1), (40, 3, 12), 0.3), DT),
    "residual_fan_in": lambda: (residual_graph(), spikes(np.random.default_rng(3), (30, 3, 6), 0.5), None),
    "representable": lambda: (representable_graph(), spikes(np.random.default_rng(5), (25, 2, 6), 0.5), None),
    "autosnn_every_block": _autosnn,
    "spikedhs": _spikedhs,
    "snasnet_forward": lambda: _snasnet("0303 0030 0003 0000"),
    "snasnet_released_cycles": lambda: _snasnet("0303 0030 2002 0200"),
    "snasnet_back_skip": lambda: _snasnet("0411 0040 0002 0100"),
    "snasnet_fed_back_only": lambda: _snasnet("0023 3001 0400 0000"),  # a node fed by a Delay alone
    "snasnet_delay_chain": lambda: _snasnet("0303 0030 1000 0030"),  # Delay → skip → Delay on one cycle: 2-step lag
    "cuba_bias_readout": _cuba_readout,
    "graded_conv_input": _graded_conv,
}


def _firing(graph: nir.NIRGraph, act: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(v.sum()) for k, v in act.items() if node_type(graph.nodes[k]) in FIRING_TYPES}


@pytest.mark.parametrize("case", sorted(CASES))
def test_emulator_equals_lava_fixed_point(case: str) -> None:
    graph, x, dt = CASES[case]()
    v_ref: dict[str, np.ndarray] = {}
    v_emu: dict[str, np.ndarray] = {}
    ref = lb.simulate(graph, x, dt=dt, fixed_point=True, voltages=v_ref, timeout_s=300)
    emu = lb.emulate(graph, x, dt=dt, voltages=v_emu)
    assert sorted(emu) == sorted(ref)
    for nid in ref:
        np.testing.assert_array_equal(emu[nid], ref[nid], err_msg=f"{case}: node {nid}")
    assert sorted(v_emu) == sorted(v_ref)
    for nid in v_ref:  # membranes too, integer for integer (both in NIR units from Lava's integers)
        np.testing.assert_array_equal(v_emu[nid], v_ref[nid], err_msg=f"{case}: voltage of {nid}")
    fired = _firing(graph, ref)
    assert sum(fired.values()) >= 4, fired  # the comparison is not vacuous (the LIF fixture fires 4 times)


def test_raw_lava_timing_is_emulated_too() -> None:
    graph, x, _ = CASES["residual_fan_in"]()
    ref = lb.simulate(graph, x, fixed_point=True, align=False)
    emu = lb.emulate(graph, x, align=False)
    aligned = lb.emulate(graph, x)
    np.testing.assert_array_equal(emu["n2"], ref["n2"])
    assert not np.array_equal(emu["n2"], aligned["n2"])


def test_main_job_models_equal_lava_fixed_point_on_digits() -> None:
    """The seed-0 winner and the all-SCB_k3 baseline of the main job, on 24 digits test samples (all 360 in
    ``benchmarks/lava_emu.py``)."""
    from test_pins import _export_case

    from nasflow.data import make_loaders

    xs, _ = next(iter(make_loaders("digits", 24, seed=0, augment=False).test))
    x = xs.unsqueeze(0).expand(8, *xs.shape).contiguous().numpy()
    for role in ("winner", "baseline"):
        graph = _export_case(role)
        ref = lb.simulate(graph, x, fixed_point=True, timeout_s=300)
        emu = lb.emulate(graph, x)
        for nid in ref:
            np.testing.assert_array_equal(emu[nid], ref[nid], err_msg=f"{role}: node {nid}")
        assert sum(_firing(graph, ref).values()) > 1000


def test_samples_are_independent_as_after_lava_resets() -> None:
    graph, x, dt = CASES["braille_recurrent"]()
    both = lb.emulate(graph, x, dt=dt)
    alone = lb.emulate(graph, x[:, 1:2], dt=dt)
    np.testing.assert_array_equal(both["lif2"][:, 1:2], alone["lif2"])


def test_lif_step_golden_values() -> None:
    """Lava's integer LIF by hand: decays round the magnitude down (towards 0), input and threshold shift by 6."""
    u = np.array([1000, -1000, 2**23 - 10], dtype=np.int64)
    v = np.array([-5000, 5000, 0], dtype=np.int64)
    a_in = np.array([3, -3, 100], dtype=np.int64)
    bias = np.array([64, 0, 0], dtype=np.int64)
    s = lif_fixed_step(u, v, a_in, du=409, dv=100, bias=bias, vth_eff=100 << 6)
    # u: 1000·(4096 − 410) = 3,686,000 → >> 12 = 899 (of 899.9), + 3·64 = 1091; the negative one mirrors it.
    # u[2]: (2^23 − 10)·3686 >> 12 = 7,548,919, + 6,400 = 7,555,319 (no wrap below 2^23).
    assert u.tolist() == [1091, -1091, 7555319]
    # v: −5000·3996 = −19,980,000 → −(19,980,000 >> 12) = −4877, + 1091 + 64 = −3722; 5000 → 4877 − 1091 = 3786.
    # v[2] = 7,555,319 > 6,400: fires and resets to 0.
    assert v.tolist() == [-3722, 3786, 0] and s.tolist() == [False, False, True]


def test_lif_step_wraps_u_and_clips_v_as_lava_does() -> None:
    u = np.array([2**23 - 1], dtype=np.int64)
    v = np.array([2**23 - 1], dtype=np.int64)
    s = lif_fixed_step(u, v, np.array([2**16]), du=4095, dv=0, bias=np.zeros(1, np.int64), vth_eff=2**23)
    # du + 1 = 4096: u decays to 0, then 2^16 << 6 = 2^22; v = (2^23 − 1) + 2^22 clips to 2^23 − 1.
    assert u.tolist() == [2**22] and v.tolist() == [2**23 - 1] and not s[0]
    u = np.array([2**23 - 2**20], dtype=np.int64)
    lif_fixed_step(u, np.zeros(1, np.int64), np.array([2**15]), du=0, dv=0, bias=np.zeros(1, np.int64),
                   vth_eff=2**23)
    # (2^23 − 2^20)·4095 >> 12 = 2^23 − 2^20 − 1792 exactly, + 2^15 << 6 = 2^21 exceeds 2^23: wraps by 2^24.
    assert u.tolist() == [2**23 - 2**20 - 1792 + 2**21 - 2**24]


def test_dense_weights_follow_lavas_sign_rule() -> None:
    mixed = np.array([[127, -127, 300, -300, 5]])
    assert lava_dense_weights(mixed).tolist() == [[126, -128, 254, -256, 4]]  # clip to 9 bits, drop the LSB
    assert lava_dense_weights(np.array([[127, 3, 300]])).tolist() == [[127, 3, 255]]  # excitatory: 8 bits
    assert lava_dense_weights(np.array([[-127, -3, -300]])).tolist() == [[-127, -3, -255]]


def _refusal(fn, *args, **kw) -> str:
    with pytest.raises(lb.LavaBackendError) as err:
        fn(*args, **kw)
    return str(err.value)


def test_refusals_are_those_of_lava_fixed() -> None:
    g = residual_graph()
    g.nodes["n1"].v_reset = np.full(5, 0.2)
    x = spikes(np.random.default_rng(0), (4, 1, 6), 0.5)
    msg = _refusal(lb.emulate, g, x)
    assert "'n1'" in msg and "v_reset" in msg
    assert msg == _refusal(lb.simulate, g, x, fixed_point=True)
    g = residual_graph()
    g.nodes["n2"].tau = np.array([1e-3, 2e-3, 1e-3, 1e-3])
    msg = _refusal(lb.emulate, g, x)
    assert "'n2'" in msg and "tau" in msg and msg == _refusal(lb.simulate, g, x, fixed_point=True)
    msg = _refusal(lb.emulate, residual_graph(), x[:, :, :4])
    assert "'input'" in msg and msg == _refusal(lb.simulate, residual_graph(), x[:, :, :4], fixed_point=True)


def test_weights_beyond_fixed_point_range_are_refused_by_node() -> None:
    g = residual_graph()
    g.nodes["b"].weight = g.nodes["b"].weight * 1e6  # weight / threshold far beyond 8 bits << 7 over 17 bits
    x = spikes(np.random.default_rng(0), (4, 1, 6), 0.5)
    msg = _refusal(lb.emulate, g, x)
    assert "'n2'" in msg and "threshold" in msg
    assert msg == _refusal(lb.simulate, g, x, fixed_point=True)


def test_compiled_fixed_point_loop_equals_the_numpy_steps() -> None:
    """``nasflow/kernels/fixed.cpp`` against the numpy path (:func:`lif_fixed_step`) on inputs of every mode that
    wrap ``u``, clip ``v``, overflow int32 and the 24-bit Conv output, and fire (the suite runs with the kernel
    built; the forced fallback compares the numpy path with itself)."""
    from nasflow import kernels

    rng = np.random.default_rng(0)
    t_len, b, n = 12, 3, 50
    a_int = rng.integers(-2**17, 2**17, (t_len, b, n)).astype(np.int64)
    a_int[:, 0, :5] = 2**30  # beyond 24 bits after the shift: int32 wrap of a_in << 6
    conv = rng.integers(-2**21, 2**21, (t_len, b, n)).astype(np.float32)  # << 3 leaves 24 bits: wraps
    dense = rng.integers(-2**26, 2**26, (t_len, b, n)).astype(np.float64)  # << 7 leaves 32 bits: int32 wrap
    inputs = [(torch.from_numpy(a_int), 0, 2, 0), (torch.from_numpy(conv), 3, 1, 1),
              (torch.from_numpy(dense), 7, 0, 0)]
    bias = rng.integers(-4096, 4096, n).astype(np.int64) << 3
    for du, dv in ((0, 0), (409, 100), (4095, 4095)):
        u0 = rng.integers(-2**23 + 1, 2**23, (b, n)).astype(np.int64)
        v0 = rng.integers(-2**23 + 1, 2**23, (b, n)).astype(np.int64)
        u1, v1, u2, v2 = u0.copy(), v0.copy(), u0.copy(), v0.copy()
        s1, r1 = lif_fixed_run(inputs, u1, v1, du, dv, bias, 3000 << 6, t_len)
        with kernels.using_torch_loop():
            s2, r2 = lif_fixed_run(inputs, u2, v2, du, dv, bias, 3000 << 6, t_len)
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(u1, u2)
        np.testing.assert_array_equal(v1, v2)
        assert s1.any() and not s1.all()


@pytest.mark.parametrize("case", ["braille_recurrent", "autosnn_every_block", "cuba_bias_readout"])
def test_emulator_is_the_same_on_the_numpy_path(case: str) -> None:
    from nasflow import kernels

    graph, x, dt = CASES[case]()
    fast = lb.emulate(graph, x, dt=dt, voltages=(v_fast := {}))
    with kernels.using_torch_loop():
        slow = lb.emulate(graph, x, dt=dt, voltages=(v_slow := {}))
    for nid in fast:
        np.testing.assert_array_equal(fast[nid], slow[nid], err_msg=nid)
    for nid in v_fast:
        np.testing.assert_array_equal(v_fast[nid], v_slow[nid], err_msg=nid)


CONV_GEOMETRIES = [(1, (1, 1), (1, 1), (1, 1), 3), (1, (2, 2), (0, 0), (1, 1), 2), (2, (2, 1), (2, 1), (2, 1), 3),
                   (1, (1, 1), (2, 2), (1, 1), 5)]


@pytest.mark.parametrize("groups,stride,padding,dilation,k", CONV_GEOMETRIES)
def test_event_driven_conv_equals_torch_conv(groups: int, stride: tuple, padding: tuple, dilation: tuple,
                                              k: int) -> None:
    from nasflow import kernels

    ops = kernels.ops()
    if ops is None:
        pytest.skip(f"compiled kernel not active: {kernels.why_fallback()}")
    rng = np.random.default_rng(1)
    x = torch.from_numpy((rng.random((6, 4, 9, 7)) < 0.2).astype(np.float32))
    w = torch.from_numpy(rng.integers(-128, 127, (6, 4 // groups, k, k)).astype(np.float32))
    o, cg = w.shape[:2]
    wt = w.reshape(groups, o // groups, cg, k, k).permute(0, 2, 3, 4, 1).contiguous()
    got = ops.spike_conv(x, wt, o, *stride, *padding, *dilation, groups)
    ref = torch.nn.functional.conv2d(x.double(), w.double(), stride=stride, padding=padding, dilation=dilation,
                                     groups=groups)
    assert torch.equal(got.double(), ref)
