"""The ScaleNAS search space (`ScaleSpaceSpec`) and the pure operations on its subnets.

Layout (HRNet-like, see supernet.py): a stem to 1/4, then stage s (s = 0, 1, ...) with s + 1 branches of
`widths[:s + 1]` channels and `modules[s]` searchable modules; in a module every branch runs up to
`max_depth` blocks, and after each block d a branch may receive every other branch (fusion bits). A subnet
picks each branch's depth from `depth_list` and the bits (subnet.py).

Operations (all pure: inputs are never changed, new subnets are returned): `sample_subnet`, `largest`,
`smallest` (the sandwich ends), `groups` (fusion-percentage x depth-range groups, + the sandwich ends),
`subnet_for_step` (a function of (seed, step) only: the same on every rank and after a resume),
`crossover` (module-wise) and `mutate` (fusion bits and depths). The ScaleNAS release never mutated depths
and let crossover / mutation edit its parents through shared lists; frozen tuples rule both out here.
"""
import random
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

from src.architecture.fields import FieldError, Obj, SpecError, join
from src.architecture.limits import MAX_CHANNELS, MAX_HR_BRANCHES, MAX_KERNEL, MAX_KERNEL_PATHS, MAX_SCALE_DEPTH, \
    MAX_SCALE_MODULES
from src.architecture.scale.subnet import ModuleChoice, ScaleSubnet, check_subnet

BLOCKS = ("basic", "inverted_residual")  # HRNet's BasicBlock (torchvision), HR-NAS's InvertedResidual
SPACE_KEYS = ("stem_channels", "widths", "modules", "max_depth", "depth_list", "block", "kernel_sizes",
              "expand_ratio")
Group = Tuple[float, Tuple[int, ...]]  # (fusion percentage, depths to draw from)


@dataclass(frozen=True)
class ScaleSpaceSpec:
    stem_channels: int
    widths: Tuple[int, ...]  # branch b runs at stride 4 * 2^b
    modules: Tuple[int, ...]  # searchable modules of stage s (s + 1 branches); one entry per width
    max_depth: int  # blocks per branch and module in the supernet
    depth_list: Tuple[int, ...]  # depths a subnet may pick (sorted, distinct, <= max_depth)
    block: str = "basic"
    kernel_sizes: Tuple[int, ...] = (3,)  # inverted_residual: kernel paths
    expand_ratio: float = 2.0  # inverted_residual: hidden channels of a path = ratio x width

    def __post_init__(self):
        """The space's rules; a broken one raises SpecError(field, what is wrong)."""
        def bad(field, msg):
            raise SpecError(field, msg)
        if not 1 <= len(self.widths) <= MAX_HR_BRANCHES or min(self.widths) < 1:
            bad("widths", f"must be 1 to {MAX_HR_BRANCHES} widths >= 1, got {list(self.widths)}")
        if len(self.modules) != len(self.widths) or min(self.modules) < 0 or not 1 <= sum(self.modules) \
                <= MAX_SCALE_MODULES:
            bad("modules", f"must be one count >= 0 per width ({len(self.widths)}), 1 to {MAX_SCALE_MODULES} in "
                f"all, got {list(self.modules)}")
        if not 1 <= self.max_depth <= MAX_SCALE_DEPTH:
            bad("max_depth", f"must be in 1..{MAX_SCALE_DEPTH}, got {self.max_depth}")
        if not self.depth_list or list(self.depth_list) != sorted(set(self.depth_list)) or \
                not 1 <= self.depth_list[0] <= self.depth_list[-1] <= self.max_depth:
            bad("depth_list", f"must be sorted distinct depths in 1..max_depth ({self.max_depth}), got "
                f"{list(self.depth_list)}")
        if self.block not in BLOCKS:
            bad("block", f"'{self.block}' is not one of {list(BLOCKS)}")
        if not self.kernel_sizes or any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            bad("kernel_sizes", f"must be odd sizes >= 1, got {list(self.kernel_sizes)}")
        if not self.expand_ratio > 0:
            bad("expand_ratio", f"must be > 0, got {self.expand_ratio}")

    def module_branches(self) -> Tuple[int, ...]:
        """Branches of every module, in order."""
        return tuple(s + 1 for s, n in enumerate(self.modules) for _ in range(n))

    def to_dict(self) -> dict:
        return {"stem_channels": self.stem_channels, "widths": list(self.widths), "modules": list(self.modules),
                "max_depth": self.max_depth, "depth_list": list(self.depth_list), "block": self.block,
                "kernel_sizes": list(self.kernel_sizes), "expand_ratio": self.expand_ratio}

    @classmethod
    def from_config(cls, node) -> "ScaleSpaceSpec":
        """From a config node with the MODEL.SCALE keys (src/config/defaults.py)."""
        return cls(int(node.STEM_CHANNELS), tuple(int(w) for w in node.WIDTHS), tuple(int(m) for m in node.MODULES),
                   int(node.MAX_DEPTH), tuple(int(d) for d in node.DEPTH_LIST), str(node.BLOCK),
                   tuple(int(k) for k in node.KERNEL_SIZES), float(node.EXPAND_RATIO))


def parse_space(value, path: str) -> ScaleSpaceSpec:
    o = Obj(value, path, SPACE_KEYS)
    values = dict(
        stem_channels=o.integer("stem_channels", 1, MAX_CHANNELS),
        widths=tuple(o.integers("widths", 1, MAX_CHANNELS, MAX_HR_BRANCHES, min_len=1)),
        modules=tuple(o.integers("modules", 0, MAX_SCALE_MODULES, MAX_HR_BRANCHES, min_len=1)),
        max_depth=o.integer("max_depth", 1, MAX_SCALE_DEPTH),
        depth_list=tuple(o.integers("depth_list", 1, MAX_SCALE_DEPTH, MAX_SCALE_DEPTH, min_len=1)),
        block=o.string("block", BLOCKS),
        kernel_sizes=tuple(o.integers("kernel_sizes", 1, MAX_KERNEL, MAX_KERNEL_PATHS, min_len=1)),
        expand_ratio=o.number("expand_ratio", 0.0, 64.0))
    try:
        return ScaleSpaceSpec(**values)
    except SpecError as exc:
        raise FieldError(join(path, exc.field), str(exc)) from None


# ------------------------------------------------------------------ sandwich ends and sampling
def _uniform(spec: ScaleSpaceSpec, depth: int, bit: int) -> ScaleSubnet:
    return ScaleSubnet(tuple(
        ModuleChoice((depth,) * n, tuple(tuple(tuple(1 if k == i else bit for k in range(n)) for _ in range(depth))
                                         for i in range(n)))
        for n in spec.module_branches()))


def largest(spec: ScaleSpaceSpec) -> ScaleSubnet:
    """Every branch at the largest listed depth, every fusion bit on."""
    return _uniform(spec, spec.depth_list[-1], 1)


def smallest(spec: ScaleSpaceSpec) -> ScaleSubnet:
    """Every branch at the smallest listed depth, no cross-branch fusion."""
    return _uniform(spec, spec.depth_list[0], 0)


def _bits(rng: random.Random, n: int, i: int, pct: float) -> Tuple[int, ...]:
    return tuple(1 if k == i else int(rng.random() < pct) for k in range(n))


def sample_subnet(spec: ScaleSpaceSpec, rng: random.Random, fusion_pct: float,
                  depth_choices: Sequence[int]) -> ScaleSubnet:
    """Each branch's depth drawn from `depth_choices` (a subset of the depth list), each cross-branch bit of
    its blocks on with probability `fusion_pct` (0: none, 1: all)."""
    choices = tuple(depth_choices)
    if not choices or any(d not in spec.depth_list for d in choices):
        raise ValueError(f"depth choices {list(choices)} must be a non-empty subset of the depth list "
                         f"{list(spec.depth_list)}")
    if not 0.0 <= fusion_pct <= 1.0:
        raise ValueError(f"fusion percentage must be in [0, 1], got {fusion_pct}")
    mods = []
    for n in spec.module_branches():
        depths = tuple(rng.choice(choices) for _ in range(n))
        mods.append(ModuleChoice(depths, tuple(tuple(_bits(rng, n, i, fusion_pct) for _ in range(depths[i]))
                                               for i in range(n))))
    return ScaleSubnet(tuple(mods))


@dataclass(frozen=True)
class OneShotSettings:
    """How one-shot training samples (ONESHOT.* of src/config/defaults.py)."""
    group_sampling: bool = True
    sandwich: bool = True
    fusion_options: Tuple[float, ...] = (0.2, 0.5, 0.8)
    depth_options: Tuple[Tuple[int, ...], ...] = ()  # () = consecutive pairs of the depth list
    kd_ratio: float = 1.0

    @classmethod
    def from_config(cls, node) -> "OneShotSettings":
        """From a config node with the ONESHOT keys."""
        return cls(bool(node.GROUP_SAMPLING), bool(node.SANDWICH), tuple(float(f) for f in node.FUSION_OPTIONS),
                   tuple(tuple(int(d) for d in ds) for ds in node.DEPTH_OPTIONS), float(node.KD_RATIO))


def groups(spec_or_cfg: Union[ScaleSpaceSpec, object], settings: Optional[OneShotSettings] = None) -> List[Group]:
    """The sampling groups of one-shot training, in order: every (fusion option, depth range) pair (with
    group sampling; without it, every fusion option with the whole depth list), then with the sandwich rule
    the smallest (0.0, (min depth,)) and largest (1.0, (max depth,)) subnets. A config (with MODEL.SCALE and
    ONESHOT) may stand for the spec and the settings; a spec alone takes the default settings."""
    if isinstance(spec_or_cfg, ScaleSpaceSpec):
        spec = spec_or_cfg
    else:
        spec = ScaleSpaceSpec.from_config(spec_or_cfg.MODEL.SCALE)
        settings = settings or OneShotSettings.from_config(spec_or_cfg.ONESHOT)
    s = settings or OneShotSettings()
    dl = spec.depth_list
    ranges = s.depth_options or (tuple(zip(dl, dl[1:])) if len(dl) > 1 else (dl,))
    for r in ranges:
        if not r or any(d not in dl for d in r):
            raise ValueError(f"ONESHOT.DEPTH_OPTIONS entry {list(r)} is not a non-empty subset of the depth list "
                             f"{list(dl)}")
    if any(not 0.0 <= f <= 1.0 for f in s.fusion_options):
        raise ValueError(f"ONESHOT.FUSION_OPTIONS must lie in [0, 1], got {list(s.fusion_options)}")
    if s.group_sampling:
        out = [(float(f), tuple(r)) for f in s.fusion_options for r in ranges]
    else:
        out = [(float(f), tuple(dl)) for f in s.fusion_options]
    if s.sandwich:
        out += [(0.0, (dl[0],)), (1.0, (dl[-1],))]
    if not out:
        raise ValueError("one-shot sampling has no group: set ONESHOT.FUSION_OPTIONS or ONESHOT.SANDWICH")
    return out


def step_rng(seed: int, step: int) -> random.Random:
    """The generator of one-shot step `step`: seeded by the text of (seed, step), the same in every process."""
    return random.Random(f"scalenas/{int(seed)}/{int(step)}")


def subnet_for_step(spec: ScaleSpaceSpec, seed: int, step: int, groups: Sequence[Group]) -> ScaleSubnet:
    """The subnet trained at `step`: group step mod len(groups), sampled with `step_rng(seed, step)`."""
    fusion_pct, depths = groups[step % len(groups)]
    return sample_subnet(spec, step_rng(seed, step), fusion_pct, depths)


# ------------------------------------------------------------------ evolution
def crossover(a: ScaleSubnet, b: ScaleSubnet, rng: random.Random, prob: float) -> ScaleSubnet:
    """A child taking each module from `b` with probability `prob`, else from `a` (parents unchanged)."""
    if [len(m.depths) for m in a.modules] != [len(m.depths) for m in b.modules]:
        raise ValueError("crossover needs two subnets of the same supernet")
    return ScaleSubnet(tuple(mb if rng.random() < prob else ma for ma, mb in zip(a.modules, b.modules)))


def mutate(a: ScaleSubnet, rng: random.Random, prob: float, spec: Optional[ScaleSpaceSpec] = None) -> ScaleSubnet:
    """A mutant of `a` (unchanged): every branch's depth is redrawn from the depth list with probability
    `prob` (new blocks get fusion bits on with probability 1/2, dropped blocks lose theirs), then every
    cross-branch bit flips with probability `prob`. Depths come from `spec.depth_list`; without `spec`, from
    the depths `a` already uses (all from the list)."""
    allowed = tuple(spec.depth_list) if spec is not None else tuple(sorted({d for m in a.modules for d in m.depths}))
    mods = []
    for m in a.modules:
        n = len(m.depths)
        depths = tuple(rng.choice(allowed) if rng.random() < prob else d for d in m.depths)
        fusion = []
        for i in range(n):
            rows = list(m.fusion[i][:depths[i]]) + [_bits(rng, n, i, 0.5) for _ in range(depths[i] - m.depths[i])]
            fusion.append(tuple(tuple(b if k == i or rng.random() >= prob else 1 - b for k, b in enumerate(bits))
                                for bits in rows))
        mods.append(ModuleChoice(depths, tuple(fusion)))
    child = ScaleSubnet(tuple(mods))
    return check_subnet(child, spec) if spec is not None else child
