"""A toy search space with the ScaleNAS space's function names (for the evolution engine's tests).

A subnet is a list of depths (one per module, 1..max_depth) and a list of fusion bits; `parse_subnet`,
`sample_subnet`, `crossover`, `mutate` and `groups` have the signatures the engine's ScaleNAS adapter calls,
and every operation returns a new subnet. `toy_evaluate` is a deterministic (flops, metric) with a trade-off.
"""
import random
import zlib
from dataclasses import dataclass
from typing import List

from src.architecture.fields import Obj


@dataclass(frozen=True)
class ToySpec:
    modules: int = 3
    max_depth: int = 4
    bits: int = 6


@dataclass
class ToySubnet:
    depths: List[int]
    fuse: List[bool]

    def to_dict(self) -> dict:
        return {"depths": list(self.depths), "fuse": list(self.fuse)}

    def key(self) -> str:
        return "d" + "".join(map(str, self.depths)) + "_f" + "".join("1" if b else "0" for b in self.fuse)


def parse_subnet(d, path: str, spec: ToySpec) -> ToySubnet:
    o = Obj(d, path, ["depths", "fuse"])
    return ToySubnet(o.integers("depths", 1, spec.max_depth, spec.modules, spec.modules),
                     o.booleans("fuse", spec.bits, spec.bits))


def groups(spec: ToySpec):
    return [(pct, choices) for pct in (0.2, 0.8) for choices in ([1, 2], [spec.max_depth - 1, spec.max_depth])]


def sample_subnet(spec: ToySpec, rng: random.Random, fusion_pct: float, depth_choices) -> ToySubnet:
    return ToySubnet([rng.choice(depth_choices) for _ in range(spec.modules)],
                     [rng.random() < fusion_pct for _ in range(spec.bits)])


def crossover(a: ToySubnet, b: ToySubnet, rng: random.Random, prob: float) -> ToySubnet:
    take = [rng.random() < prob for _ in a.depths]
    return ToySubnet([db if t else da for da, db, t in zip(a.depths, b.depths, take)],
                     [fb if rng.random() < prob else fa for fa, fb in zip(a.fuse, b.fuse)])


def mutate(a: ToySubnet, rng: random.Random, prob: float, spec: ToySpec = ToySpec()) -> ToySubnet:
    return ToySubnet([rng.randint(1, spec.max_depth) if rng.random() < prob else d for d in a.depths],
                     [(not f) if rng.random() < prob else f for f in a.fuse])


def toy_evaluate(s: ToySubnet):
    flops = 1e6 * sum(s.depths) + 3e5 * sum(s.fuse)
    noise = (zlib.crc32(s.key().encode()) % 1000) / 1e5
    return flops, 1 - 0.8 ** sum(s.depths) + 0.015 * sum(s.fuse) + noise


class ToyOps:
    """The engine's SpaceOps over the toy functions (as src/search/scale_ops.py wraps the ScaleNAS ones)."""

    def __init__(self, spec: ToySpec = ToySpec(), in_place_mutation: bool = False):
        self.spec, self.in_place = spec, in_place_mutation

    def groups(self):
        return groups(self.spec)

    def sample(self, rng, group):
        return sample_subnet(self.spec, rng, *group)

    def crossover(self, a, b, rng, prob):
        if self.in_place:  # the ScaleNAS defect: the child shares the parent's lists ...
            return ToySubnet(a.depths, a.fuse)
        return crossover(a, b, rng, prob)

    def mutate(self, a, rng, prob):
        if self.in_place:  # ... and mutation edits them
            a.depths[0] = a.depths[0] % self.spec.max_depth + 1
            return a
        return mutate(a, rng, prob, self.spec)

    def key(self, s):
        return s.key()

    def to_dict(self, s):
        return s.to_dict()

    def from_dict(self, d, path):
        return parse_subnet(d, path, self.spec)
