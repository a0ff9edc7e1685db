"""SpikeDHS's layer trellis: path rules, path probabilities and Viterbi decoding against hand-worked β."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from nasflow.spaces.trellis import MOVES, RELEASED_PATH, Trellis, check_path, level_sizes, path_log_prob, viterbi

DOWN, SAME, UP = (m for m, _ in enumerate(MOVES))


def _beta(trellis: Trellis, probs: dict[tuple[int, int], dict[int, float]]) -> list:
    """β whose move softmax gives ``probs[(layer, level)] = {target level: p}`` (log p as logits)."""
    beta = [[[0.0] * len(MOVES) for _ in range(trellis.levels)] for _ in range(trellis.layers)]
    for (layer, level), dist in probs.items():
        for dst, p in dist.items():
            m = [i for i, (_, d) in enumerate(MOVES) if level + d == dst][0]
            beta[layer][level][m] = math.log(p)
    return beta


def _all_paths(trellis: Trellis) -> list[tuple[int, ...]]:
    out = []
    for path in itertools.product(range(trellis.levels), repeat=trellis.layers):
        try:
            out.append(check_path(path, trellis))
        except ValueError:
            pass
    return out


def test_viterbi_finds_the_hand_worked_path_greedy_misses():
    t = Trellis(layers=3, levels=2, rates=(2, 2))
    beta = _beta(t, {(0, 0): {0: 0.6, 1: 0.4},
                     (1, 0): {0: 0.55, 1: 0.45}, (1, 1): {1: 0.9, 0: 0.1},
                     (2, 0): {0: 0.5, 1: 0.5}, (2, 1): {1: 0.8, 0: 0.2}})
    # greedy: 0 (0.6), 0 (0.55), then 0.5 -> 0.165; the best path is 1, 1, 1: 0.4 · 0.9 · 0.8 = 0.288
    assert viterbi(beta, t) == (1, 1, 1)
    assert math.exp(path_log_prob(beta, (1, 1, 1), t)) == pytest.approx(0.288)
    assert math.exp(path_log_prob(beta, (0, 0, 0), t)) == pytest.approx(0.165)
    assert sum(math.exp(path_log_prob(beta, p, t)) for p in _all_paths(t)) == pytest.approx(1.0)


def test_move_probabilities_are_a_softmax_over_the_valid_moves_only():
    t = Trellis(layers=2, levels=3, rates=(2, 2, 2))
    beta = [[[1.0, 2.0, 3.0] for _ in range(3)] for _ in range(2)]
    top = t.move_probs(beta, 1, 0)  # from level 0: down or same (up is invalid)
    assert set(top) == {0, 1}
    assert top[1] == pytest.approx(math.exp(1) / (math.exp(1) + math.exp(2)))
    mid = t.move_probs(beta, 1, 1)
    assert set(mid) == {0, 1, 2} and sum(mid.values()) == pytest.approx(1.0)
    assert set(t.move_probs(beta, 1, 2)) == {1, 2}


def test_a_trellis_without_up_moves_decodes_and_checks_only_non_decreasing_paths():
    t = Trellis(layers=3, levels=2, rates=(2, 2), up=False)
    assert t.moves(1) == [1] and t.moves(0) == [0, 1] and not t.can_move(1, 0) and t.can_move(0, 1)
    beta = [[[0.0, 0.0, 5.0] for _ in range(2)] for _ in range(3)]  # up strongly preferred where it existed
    beta[0][0] = [1.0, 0.0, 0.0]  # the first move goes down: 1 / (1 + e^-1) ≈ 0.73
    assert viterbi(beta, t) == (1, 1, 1)
    assert viterbi(beta, Trellis(layers=3, levels=2, rates=(2, 2))) == (1, 0, 0)  # the same β with up moves
    with pytest.raises(ValueError, match="no up moves"):
        check_path((0, 1, 0), t)
    assert sum(math.exp(path_log_prob(beta, p, t)) for p in [(0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1)]) \
        == pytest.approx(1.0)


def test_viterbi_equals_brute_force_and_respects_the_level_constraint():
    rng = random.Random(0)
    t = Trellis(layers=6, levels=4)
    paths = _all_paths(t)
    for _ in range(20):
        beta = [[[rng.gauss(0, 2) for _ in MOVES] for _ in range(t.levels)] for _ in range(t.layers)]
        best = viterbi(beta, t)
        assert path_log_prob(beta, best, t) == pytest.approx(max(path_log_prob(beta, p, t) for p in paths))
        assert best[0] <= 1 and all(abs(a - b) <= 1 for a, b in itertools.pairwise(best))
        assert all(k in t.reachable(layer) for layer, k in enumerate(best))


def test_the_released_path_is_a_valid_path_of_the_default_trellis():
    assert check_path(RELEASED_PATH, Trellis()) == RELEASED_PATH


def test_the_released_path_maps_onto_other_trellises_by_relative_depth():
    from nasflow.spaces.trellis import released_path

    assert released_path(Trellis(layers=8, levels=4)) == RELEASED_PATH
    assert released_path(Trellis(layers=6, levels=3)) == (0, 0, 1, 1, 2, 2)  # floor(i·8/6) = 0,1,2,4,5,6
    assert released_path(Trellis(layers=8, levels=2)) == (0, 0, 1, 1, 1, 1, 1, 1)  # capped at the last level
    assert released_path(Trellis(layers=4, levels=3)) == (0, 1, 1, 2)  # floor(i·8/4) = 0,2,4,6


def test_a_path_that_jumps_two_levels_is_refused_clearly():
    with pytest.raises(ValueError, match=r"jumps from level 0 at layer 1 to level 2 at layer 2.*at most one"):
        check_path((0, 0, 2, 2, 2, 2, 2, 2), Trellis())
    with pytest.raises(ValueError, match=r"jumps from the stem"):
        check_path((2, 2, 2, 2, 2, 2, 2, 2), Trellis())
    with pytest.raises(ValueError, match="needs 8 levels"):
        check_path((0, 1), Trellis())
    with pytest.raises(ValueError, match="outside 0..3"):
        check_path((0, 1, 2, 3, 4, 3, 2, 1), Trellis())


def test_level_sizes_and_too_many_levels_for_the_input():
    assert level_sizes(48, (3, 2, 2, 2)) == [16, 8, 4, 2]
    assert Trellis().sizes(48) == [16, 8, 4, 2]
    with pytest.raises(ValueError, match=r"input of 8 pixels allows 0 trellis level.*divisible by 3"):
        Trellis().sizes(8)
    with pytest.raises(ValueError, match=r"input of 12 pixels allows 3 trellis level\(s\).*--levels 3"):
        Trellis().sizes(12)
    with pytest.raises(ValueError, match="4 levels need 4 down-sampling rates"):
        Trellis(levels=4, rates=(2, 2))


def test_trellis_arch_round_trips_and_decodes_alpha_and_beta():
    from nasflow.spaces.spikedhs import SpikeDHSSpace, edge_index
    from nasflow.spaces.trellis import TrellisSpace, parse_trellis_arch

    text = "paper:cell=conv3x3@1+skip@0,conv5x5@2+avg_pool3x3@1,dil_conv3x3@3+skip@2;path=0,0,1,1,1,2,2,2"
    arch = parse_trellis_arch(text, Trellis())
    assert str(arch) == text and arch.path == RELEASED_PATH and hash(arch) == hash(parse_trellis_arch(text))
    with pytest.raises(ValueError, match="jumps"):
        parse_trellis_arch(text.replace("path=0,0,1", "path=0,0,2"), Trellis())
    with pytest.raises(ValueError, match="'PRESET:cell=...;path=l0,l1,...'"):
        parse_trellis_arch("paper:cell=conv3x3@1+skip@0")
    with pytest.raises(ValueError, match="not ops of the 'released' preset"):
        parse_trellis_arch(text.replace("paper:", "released:"))
    space = TrellisSpace(SpikeDHSSpace(), Trellis(layers=3, levels=2, rates=(2, 2)))
    ops = space.cells.ops
    alpha = [[0.0] * len(ops) for _ in edge_index(3)]
    for e, (j, k) in enumerate(edge_index(3)):
        if k in (j, j + 1):  # the two latest inputs of every node, conv3x3
            alpha[e][ops.index("conv3x3")] = 2.0
    beta = _beta(space.trellis, {(0, 0): {0: 0.6, 1: 0.4}, (1, 0): {0: 0.55, 1: 0.45}, (1, 1): {1: 0.9, 0: 0.1},
                                 (2, 0): {0: 0.5, 1: 0.5}, (2, 1): {1: 0.8, 0: 0.2}})
    decoded = space.decode(alpha, beta)
    assert str(decoded) == "paper:cell=conv3x3@0+conv3x3@1,conv3x3@1+conv3x3@2,conv3x3@2+conv3x3@3;path=1,1,1"
    assert space.fingerprint()["trellis"] == {"layers": 3, "levels": 2, "rates": [2, 2]}
