"""The evolution engine's SpaceOps (src/search/evolution.py) over the ScaleNAS space (src/architecture/scale/).

Sampling draws from the one-shot groups (fusion percentage x depth range, + the sandwich ends); mutation
always gets the space's spec, so depths are redrawn from the whole depth list (not only the depths the
parent happens to use); a subnet read back from a state file is checked against the spec.
"""
import random
from typing import List, Sequence

from src.architecture.scale.space import Group, ScaleSpaceSpec, crossover, mutate, sample_subnet
from src.architecture.scale.subnet import ScaleSubnet, parse_subnet


class ScaleSpaceOps:
    def __init__(self, spec: ScaleSpaceSpec, groups: Sequence[Group]):
        self.spec, self.group_list = spec, list(groups)

    def groups(self) -> List[Group]:
        return self.group_list

    def sample(self, rng: random.Random, group: Group) -> ScaleSubnet:
        fusion_pct, depth_choices = group
        return sample_subnet(self.spec, rng, fusion_pct, depth_choices)

    def crossover(self, a: ScaleSubnet, b: ScaleSubnet, rng: random.Random, prob: float) -> ScaleSubnet:
        return crossover(a, b, rng, prob)

    def mutate(self, a: ScaleSubnet, rng: random.Random, prob: float) -> ScaleSubnet:
        return mutate(a, rng, prob, self.spec)

    def key(self, subnet: ScaleSubnet) -> str:
        return subnet.key()

    def to_dict(self, subnet: ScaleSubnet) -> dict:
        return subnet.to_dict()

    def from_dict(self, d: dict, path: str) -> ScaleSubnet:
        return parse_subnet(d, path, self.spec)
