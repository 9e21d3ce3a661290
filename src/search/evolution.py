"""NSGA-II evolutionary search on the (FLOPs, metric) Pareto front, resumable and shared across ranks.

Generic over the search space: `ops` is any object with the `SpaceOps` methods (the ScaleNAS space in
src/search/scale_ops.py, a toy space in the tests), `evaluate(subnet) -> (flops, metric)` is supplied by the caller.

One run:
1. generation 0: `population` subnets sampled over `ops.groups()` (round robin), duplicates (by key) redrawn;
2. every candidate of the newest generation is evaluated: in a single process one after the other, under
   torchrun each rank evaluates every world_size-th one and the results are gathered on every rank (no job
   queue, no file lock); the state file is rewritten (rank 0) after every round of world_size evaluations;
3. the candidates join the population, and the best `population` survive by (front rank, crowding distance);
4. generations 1..N: children = mutate(crossover(a, b)) of two binary-tournament parents, redrawn while their
   key has been seen (at most `max_tries` draws per child), evaluated and merged as in 2-3.
The state after every step is in the state file (src/search/evolution_state.py); a rerun on the same file
continues exactly where it stopped (also with a larger --generations). Everything is drawn from one
random.Random seeded with `seed`, so a run is a function of its settings and the evaluations.
Space operations must return new objects: the engine checks after every child that its parents' dicts are
unchanged (ScaleNAS' crossover shared module dicts by reference and its mutation edited them in place).
"""
import copy
import math
import os
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Protocol, Sequence, Tuple

from src.architecture.limits import MAX_GENERATIONS, MAX_POPULATION, MAX_SEED, MAX_TRIES
from src.search.evolution_state import SETTINGS, EvolutionState, Record, load_state
from src.search.pareto import front_ranks, rank_and_crowding, survivors, tournament
from src.utils.distributed import all_gather_object, barrier, get_rank, get_world_size, is_main


class SpaceOps(Protocol):
    """What the engine needs of a search space (subnets are opaque to it)."""

    def groups(self) -> Sequence[Any]: ...  # sampling groups of the initial population
    def sample(self, rng: random.Random, group: Any) -> Any: ...
    def crossover(self, a: Any, b: Any, rng: random.Random, prob: float) -> Any: ...  # a new subnet
    def mutate(self, a: Any, rng: random.Random, prob: float) -> Any: ...  # a new subnet
    def key(self, subnet: Any) -> str: ...  # canonical string: equal keys = the same subnet
    def to_dict(self, subnet: Any) -> dict: ...
    def from_dict(self, d: dict, path: str) -> Any: ...  # raises FieldError naming `path` when malformed


Evaluate = Callable[[Any], Tuple[float, float]]


@dataclass(frozen=True)
class EvolutionSettings:
    population: int = 20  # subnets kept per generation (and drawn per generation)
    generations: int = 3  # generations after the initial population
    seed: int = 0
    crossover_prob: float = 0.25  # per-module probability handed to ops.crossover
    mutation_prob: float = 0.2  # per-choice probability handed to ops.mutate
    max_tries: int = 100  # draws per wanted subnet before the space counts as exhausted

    def __post_init__(self):
        """The bounds the state file is read back with (so that a run can always be resumed)."""
        for name, lo, hi in (("population", 1, MAX_POPULATION), ("generations", 0, MAX_GENERATIONS),
                             ("seed", 0, MAX_SEED), ("crossover_prob", 0.0, 1.0), ("mutation_prob", 0.0, 1.0),
                             ("max_tries", 1, MAX_TRIES)):
            if not lo <= getattr(self, name) <= hi:
                raise ValueError(f"evolution setting {name} must be in [{lo}, {hi}], got {getattr(self, name)}")


class Evolution:
    def __init__(self, ops: SpaceOps, evaluate: Evaluate, settings: EvolutionSettings, state_path: str,
                 log: Callable[[str], None] = print):
        self.ops, self.evaluate, self.settings, self.path = ops, evaluate, settings, state_path
        self.log = log if is_main() else (lambda s: None)
        self.rng = random.Random(settings.seed)
        self.subnets: Dict[str, Any] = {}
        recorded = {k: v for k, v in asdict(settings).items() if k in SETTINGS}
        resume = os.path.exists(state_path)
        barrier()  # every rank has looked before rank 0 may write a fresh file
        if resume:
            self.state = load_state(state_path, ops.from_dict)
            for name, value in recorded.items():
                if self.state.settings[name] != value:
                    raise ValueError(f"evolution state {state_path}: settings.{name} is {self.state.settings[name]}, "
                                     f"this run asks for {value} (use a new output directory or the same setting)")
            self.rng.setstate(self.state.rng_state)
            self.log(f"resuming {state_path}: generation {self.state.generation}, "
                     f"{len(self.state.evaluated)} evaluated, {len(self.state.pending)} pending")
        else:
            self.state = EvolutionState(settings=recorded)
            self._draw(self._initial())

    # ------------------------------------------------------------------ run
    def run(self) -> EvolutionState:
        """Evaluate and merge what is pending, then draw, evaluate and merge generations up to `generations`."""
        while True:
            if self.state.pending:
                self._evaluate_pending()
                self._merge()
            if self.state.generation >= self.settings.generations:
                return self.state
            self.state.generation += 1
            self._draw(self._children())

    def _save(self) -> None:
        self.state.rng_state = self.rng.getstate()
        if is_main():
            self.state.save(self.path)
        barrier()

    def _draw(self, subnets: Sequence[Any]) -> None:
        for s in subnets:
            key = self.ops.key(s)
            self.subnets[key] = s
            self.state.pending.append({"key": key, "subnet": self.ops.to_dict(s)})
        self._save()

    def subnet(self, key: str) -> Any:
        if key not in self.subnets:
            self.subnets[key] = self.ops.from_dict(self.state.subnet_dict(key), "subnet")
        return self.subnets[key]

    # ------------------------------------------------------------------ drawing
    def _new(self, draw: Callable[[], Any], seen: set) -> Any:
        """The first of at most `max_tries` draws whose key is not in `seen` (added to it), or None."""
        for _ in range(self.settings.max_tries):
            s = draw()
            key = self.ops.key(s)
            if key not in seen:
                seen.add(key)
                return s
        return None

    def _initial(self) -> list:
        groups = list(self.ops.groups())
        if not groups:
            raise ValueError("the search space has no sampling groups")
        seen, out = set(), []
        for i in range(self.settings.population):
            group = groups[i % len(groups)]
            s = self._new(lambda: self.ops.sample(self.rng, group), seen)
            if s is None:
                self.log(f"generation 0: no new subnet in group {group!r} after {self.settings.max_tries} draws")
            else:
                out.append(s)
        self.log(f"generation 0: {len(out)} subnets sampled over {len(groups)} groups")
        return out

    def _child(self, parents: list, ranks, crowd) -> Any:
        a = parents[tournament(ranks, crowd, self.rng)]
        b = parents[tournament(ranks, crowd, self.rng)]
        before = [copy.deepcopy(self.ops.to_dict(p)) for p in (a, b)]
        child = self.ops.mutate(self.ops.crossover(a, b, self.rng, self.settings.crossover_prob),
                                self.rng, self.settings.mutation_prob)
        if [self.ops.to_dict(p) for p in (a, b)] != before:
            raise RuntimeError("a crossover or mutation changed its parent (space operations must return new subnets)")
        return child

    def _children(self) -> list:
        g = self.state.generation
        parents = [self.subnet(k) for k in self.state.population]
        ranks, crowd = rank_and_crowding(self._points(self.state.population))
        seen = set(self.state.evaluated)
        out = []
        while len(out) < self.settings.population:
            child = self._new(lambda: self._child(parents, ranks, crowd), seen)
            if child is None:
                self.log(f"generation {g}: only {len(out)} new children "
                         f"(no unseen subnet in {self.settings.max_tries} draws)")
                break
            out.append(child)
        return out

    # ------------------------------------------------------------------ evaluation and selection
    def _evaluate_one(self, key: str):
        """(flops, metric), or an error line (so that every rank still joins the gather)."""
        try:
            flops, metric = self.evaluate(self.subnet(key))
            flops, metric = float(flops), float(metric)
        except (ValueError, RuntimeError) as exc:
            return f"evaluating subnet {key}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        if not (math.isfinite(flops) and math.isfinite(metric) and flops >= 0):
            return f"evaluating subnet {key}: got flops {flops}, metric {metric} (need finite, flops >= 0)"
        return flops, metric

    def _evaluate_pending(self) -> None:
        todo = [p for p in self.state.pending if p["key"] not in self.state.evaluated]
        world, rank = get_world_size(), get_rank()
        for start in range(0, len(todo), world):
            chunk = todo[start:start + world]
            mine = self._evaluate_one(chunk[rank]["key"]) if rank < len(chunk) else None
            results = all_gather_object(mine)
            errors = [r for r in results if isinstance(r, str)]
            if errors:
                raise ValueError(errors[0])
            for p, (flops, metric) in zip(chunk, results):
                self.state.evaluated[p["key"]] = Record(p["key"], self.state.generation, flops, metric, p["subnet"])
            self._save()

    def _points(self, keys: Sequence[str]):
        return [(self.state.evaluated[k].flops, self.state.evaluated[k].metric) for k in keys]

    def _merge(self) -> None:
        candidates = self.state.population + [p["key"] for p in self.state.pending]
        keep = survivors(self._points(candidates), self.settings.population)
        self.state.population = [candidates[i] for i in keep]
        self.state.pending = []
        front = front_ranks(self._points(self.state.population)).count(0)
        self.log(f"generation {self.state.generation}: {len(self.state.evaluated)} evaluated, "
                 f"population {len(self.state.population)}, {front} on its front")
        self._save()


def run_evolution(ops: SpaceOps, evaluate: Evaluate, settings: EvolutionSettings, state_path: str,
                  log: Callable[[str], None] = print) -> EvolutionState:
    """Run (or continue, when `state_path` exists) a search to `settings.generations`; returns the state."""
    return Evolution(ops, evaluate, settings, state_path, log).run()
