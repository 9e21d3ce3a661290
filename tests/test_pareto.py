"""NSGA-II sorting on hand-made (flops, metric) points: ranks, crowding distance, truncation, tournament."""
import math
import random

from src.search.pareto import crowding_distances, dominates, front_ranks, rank_and_crowding, survivors, tournament

INF = math.inf


def test_dominates_minimises_flops_and_maximises_metric():
    assert dominates((1, 0.5), (2, 0.5)) and dominates((1, 0.6), (1, 0.5)) and dominates((1, 0.6), (2, 0.4))
    assert not dominates((1, 0.5), (1, 0.5))  # equal points do not dominate each other
    assert not dominates((1, 0.4), (2, 0.5)) and not dominates((2, 0.5), (1, 0.4))


def test_front_ranks_with_ties_and_duplicates():
    pts = [(1, 0.1),   # 0: cheapest -> front
           (2, 0.5),   # 1: front
           (2, 0.5),   # 2: duplicate of 1 -> front too
           (3, 0.5),   # 3: same metric, more flops than 1 -> rank 1
           (3, 0.9),   # 4: front
           (2, 0.3),   # 5: dominated by 1 (same flops, lower metric) -> rank 1
           (4, 0.2),   # 6: dominated by 5 (rank 1) and 1 -> rank 2
           (1, 0.1)]   # 7: duplicate of 0 -> front
    assert front_ranks(pts) == [0, 0, 0, 1, 0, 1, 2, 0]
    assert front_ranks([]) == []
    assert front_ranks([(5, 0.5)]) == [0]


def test_crowding_distance_by_hand():
    pts = [(1, 0.1), (2, 0.4), (4, 0.5), (8, 0.9)]  # one front
    d = crowding_distances(pts, [0, 1, 2, 3])
    assert d[0] == INF and d[3] == INF
    # flops range 7, metric range 0.8: point 1: (4-1)/7 + (0.5-0.1)/0.8; point 2: (8-2)/7 + (0.9-0.4)/0.8
    assert math.isclose(d[1], 3 / 7 + 0.4 / 0.8) and math.isclose(d[2], 6 / 7 + 0.5 / 0.8)
    # members given in another order: distances follow the members' order
    assert crowding_distances(pts, [2, 0]) == [INF, INF]


def test_crowding_distance_duplicates_and_flat_objective():
    pts = [(1, 0.1), (1, 0.1), (2, 0.5), (3, 0.9), (3, 0.9)]
    d = crowding_distances(pts, [0, 1, 2, 3, 4])
    assert d[:2] == [INF, INF] and d[3:] == [INF, INF]  # every point at an extreme
    assert math.isclose(d[2], (3 - 1) / 2 + (0.9 - 0.1) / 0.8)
    flat = [(1, 0.5), (2, 0.5), (3, 0.5)]  # metric range 0: only flops contributes
    assert crowding_distances(flat, [0, 1, 2]) == [INF, INF, INF]  # all share the metric's min = max
    assert crowding_distances([(1, 0.5)], [0]) == [INF]


def test_survivors_fill_fronts_then_cut_by_crowding():
    pts = [(1, 0.1), (2, 0.4), (4, 0.5), (8, 0.9),  # front (0..3)
           (3, 0.2), (5, 0.45), (9, 0.6)]          # rank 1 (4..6)
    ranks, crowd = rank_and_crowding(pts)
    assert ranks == [0, 0, 0, 0, 1, 1, 1]
    assert survivors(pts, 4) == [0, 3, 2, 1]  # extremes (inf, by index), then larger crowding first
    assert survivors(pts, 6) == [0, 3, 2, 1, 4, 6]  # the rank-1 extremes beat its middle point
    assert survivors(pts, 100) == [0, 3, 2, 1, 4, 6, 5]


def test_tournament_prefers_rank_then_crowding_and_is_seeded():
    ranks, crowd = [1, 0, 0], [INF, 0.5, 2.0]
    rng = random.Random(0)
    wins = [tournament(ranks, crowd, rng) for _ in range(300)]
    assert set(wins) == {1, 2}  # index 0 (rank 1) never wins: it always meets a rank-0 point
    assert wins.count(2) > wins.count(1)  # 2 beats 1 by crowding; 1 only wins against 0
    rng2 = random.Random(0)
    assert wins == [tournament(ranks, crowd, rng2) for _ in range(300)]
    assert tournament([0], [INF], random.Random(0)) == 0
