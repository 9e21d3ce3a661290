"""NSGA-II sorting on (FLOPs, metric) points: fewer FLOPs and a higher metric are better.

`front_ranks` is the fast non-dominated sort (rank 0 = the Pareto front; equal points never dominate each
other, so duplicates share a rank). `crowding_distances` is NSGA-II's density measure inside one front
(every point at an objective's extreme gets infinity, duplicates included). `survivors` keeps the best `n`
by (rank, -crowding), `tournament` draws a parent by a binary tournament on the same order. All of them
break remaining ties by index, so the result is a function of the input order alone.
"""
import math
import random
from typing import List, Sequence, Tuple

Point = Tuple[float, float]  # (flops, metric)


def dominates(a: Point, b: Point) -> bool:
    """`a` is no worse than `b` in both objectives and better in one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def front_ranks(points: Sequence[Point]) -> List[int]:
    """Non-domination rank of every point (0 = not dominated by any point; rank k = dominated only by
    points of ranks < k), by Deb et al.'s fast non-dominated sort (O(n^2))."""
    n = len(points)
    dominated_by = [0] * n  # how many points dominate i
    dominating = [[] for _ in range(n)]  # the points i dominates
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominating[i].append(j)
                dominated_by[j] += 1
            elif dominates(points[j], points[i]):
                dominating[j].append(i)
                dominated_by[i] += 1
    ranks = [0] * n
    front = [i for i in range(n) if dominated_by[i] == 0]
    rank = 0
    while front:
        nxt = []
        for i in front:
            ranks[i] = rank
            for j in dominating[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    nxt.append(j)
        front, rank = sorted(nxt), rank + 1
    return ranks


def crowding_distances(points: Sequence[Point], members: Sequence[int]) -> List[float]:
    """Crowding distance of each of `members` (indices into `points`, one front), in their order: the sum
    over both objectives of (next - previous value) / (max - min) in that objective's sorted order; points
    at an objective's minimum or maximum get infinity (all of them when several share it)."""
    dist = {i: 0.0 for i in members}
    for obj in (0, 1):
        order = sorted(members, key=lambda i: (points[i][obj], i))
        lo, hi = points[order[0]][obj], points[order[-1]][obj]
        for i in order:
            if points[i][obj] in (lo, hi):
                dist[i] = math.inf
        if hi == lo:
            continue
        for prev, cur, nxt in zip(order, order[1:], order[2:]):
            if not math.isinf(dist[cur]):
                dist[cur] += (points[nxt][obj] - points[prev][obj]) / (hi - lo)
    return [dist[i] for i in members]


def rank_and_crowding(points: Sequence[Point]) -> Tuple[List[int], List[float]]:
    """Rank of every point and its crowding distance within its own front."""
    ranks = front_ranks(points)
    crowd = [0.0] * len(points)
    for r in set(ranks):
        members = [i for i in range(len(points)) if ranks[i] == r]
        for i, d in zip(members, crowding_distances(points, members)):
            crowd[i] = d
    return ranks, crowd


def survivors(points: Sequence[Point], n: int) -> List[int]:
    """Indices of the `n` best points by (rank, -crowding, index): whole fronts first, the last front cut
    by crowding distance (NSGA-II's truncation), in that order."""
    ranks, crowd = rank_and_crowding(points)
    return sorted(range(len(points)), key=lambda i: (ranks[i], -crowd[i], i))[:n]


def tournament(ranks: Sequence[int], crowd: Sequence[float], rng: random.Random) -> int:
    """Binary tournament: two distinct indices drawn from `rng`; the lower rank wins, then the larger
    crowding distance, then the first drawn."""
    if len(ranks) == 1:
        return 0
    i, j = rng.sample(range(len(ranks)), 2)
    return j if (ranks[j], -crowd[j]) < (ranks[i], -crowd[i]) else i
