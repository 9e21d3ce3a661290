"""The resumable state of an evolutionary search: one JSON file, rewritten atomically after every step.

    {"format": "fabricnas-evolution/1",
     "settings": {"population", "seed", "crossover_prob", "mutation_prob", "max_tries"},
     "generation": g,            # the newest generation drawn (0 = the initial population)
     "population": [key, ...],   # the current population (before generation g is merged while pending)
     "pending": [{"key", "subnet"}, ...],  # generation g's candidates not yet merged (evaluated or not)
     "evaluated": [{"key", "generation", "flops", "metric", "subnet"}, ...],  # in evaluation order
     "rng": [version, [625 ints], gauss_next]}   # random.Random state after drawing generation g

Subnets are kept as their dicts here (the space's `to_dict`) and parsed back by the caller's `from_dict`.
A file that is missing a field, holds a wrong type or is too large stops with one line naming the file and
the field.
"""
import json
import os
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from src.architecture.fields import FieldError, Obj, as_int, as_list, as_num, as_str, join
from src.architecture.limits import (MAX_EVALUATED, MAX_EVOLUTION_STATE_BYTES, MAX_GENERATIONS, MAX_KEY_LEN,
                                     MAX_POPULATION, MAX_SEED, MAX_TRIES)
from src.utils.atomic import write_json_atomic

FORMAT = "fabricnas-evolution/1"
SETTINGS = ("population", "seed", "crossover_prob", "mutation_prob", "max_tries")
_MT_WORDS = 625  # Mersenne Twister state: 624 words + position


@dataclass
class Record:
    """One evaluated subnet."""
    key: str
    generation: int
    flops: float
    metric: float
    subnet: dict

    def to_dict(self) -> dict:
        return {"key": self.key, "generation": self.generation, "flops": self.flops, "metric": self.metric,
                "subnet": self.subnet}


@dataclass
class EvolutionState:
    settings: dict
    generation: int = 0
    population: List[str] = field(default_factory=list)
    pending: List[dict] = field(default_factory=list)  # {"key", "subnet"}
    evaluated: Dict[str, Record] = field(default_factory=dict)  # key -> record, in evaluation order
    rng_state: Optional[tuple] = None

    def to_dict(self) -> dict:
        version, words, gauss = self.rng_state
        return {"format": FORMAT, "settings": dict(self.settings), "generation": self.generation,
                "population": list(self.population), "pending": [dict(p) for p in self.pending],
                "evaluated": [r.to_dict() for r in self.evaluated.values()],
                "rng": [version, list(words), gauss]}

    def save(self, path: str) -> str:
        return write_json_atomic(path, self.to_dict())

    def subnet_dict(self, key: str) -> dict:
        """The stored dict of an evaluated or pending subnet."""
        if key in self.evaluated:
            return self.evaluated[key].subnet
        return next(p["subnet"] for p in self.pending if p["key"] == key)


def _key(value, path: str) -> str:
    return as_str(value, path, max_len=MAX_KEY_LEN)


def _rng_state(value, path: str) -> tuple:
    version, words, gauss = as_list(value, path, 3, 3)
    as_int(version, join(path, 0), 0, 2**31)
    words = as_list(words, join(path, 1), _MT_WORDS, _MT_WORDS)
    for i, w in enumerate(words):
        as_int(w, join(join(path, 1), i), 0, 2**32 - 1)
    if gauss is not None:
        as_num(gauss, join(path, 2), -float("inf"))
    state = (version, tuple(words), gauss)
    try:
        random.Random().setstate(state)
    except (ValueError, TypeError) as exc:
        raise FieldError(path, f"not a random.Random state ({exc})") from None
    return state


def _settings(value, path: str) -> dict:
    o = Obj(value, path, SETTINGS)
    return {"population": o.integer("population", 1, MAX_POPULATION), "seed": o.integer("seed", 0, MAX_SEED),
            "crossover_prob": o.number("crossover_prob", 0.0, 1.0),
            "mutation_prob": o.number("mutation_prob", 0.0, 1.0),
            "max_tries": o.integer("max_tries", 1, MAX_TRIES)}


def parse_state(value, parse_subnet: Callable[[dict, str], object]) -> EvolutionState:
    """Check a state document; `parse_subnet(d, path)` checks each stored subnet (raising FieldError)."""
    o = Obj(value, "", ["format", "settings", "generation", "population", "pending", "evaluated", "rng"])
    o.string("format", [FORMAT])
    state = EvolutionState(settings=_settings(o.raw("settings"), "settings"),
                           generation=o.integer("generation", 0, MAX_GENERATIONS),
                           rng_state=_rng_state(o.raw("rng"), "rng"))
    for i, item in enumerate(o.array("evaluated", MAX_EVALUATED)):
        path = join("evaluated", i)
        r = Obj(item, path, ["key", "generation", "flops", "metric", "subnet"])
        rec = Record(_key(r.raw("key"), r.field("key")), r.integer("generation", 0, state.generation),
                     r.number("flops", 0.0), r.number("metric", -float("inf")), r.mapping("subnet"))
        if rec.key in state.evaluated:
            raise FieldError(r.field("key"), f"subnet {rec.key!r} evaluated twice")
        parse_subnet(rec.subnet, r.field("subnet"))
        state.evaluated[rec.key] = rec
    for i, item in enumerate(o.array("pending", MAX_POPULATION)):
        p = Obj(item, join("pending", i), ["key", "subnet"])
        key = _key(p.raw("key"), p.field("key"))
        if any(q["key"] == key for q in state.pending):
            raise FieldError(p.field("key"), f"subnet {key!r} pending twice")
        parse_subnet(p.mapping("subnet"), p.field("subnet"))
        state.pending.append({"key": key, "subnet": p.raw("subnet")})
    population = o.array("population", MAX_POPULATION)
    for i, key in enumerate(population):
        path = join("population", i)
        if _key(key, path) not in state.evaluated:
            raise FieldError(path, f"subnet {key!r} is not among the evaluated ones")
    if len(set(population)) != len(population):
        raise FieldError("population", "keys must be distinct")
    state.population = list(population)
    return state


def load_state(path: str, parse_subnet: Callable[[dict, str], object]) -> EvolutionState:
    """Read and check a state file; every error is one line naming the file (and the field)."""
    size = os.path.getsize(path)
    if size > MAX_EVOLUTION_STATE_BYTES:
        raise ValueError(f"evolution state {path} has {size} bytes, above {MAX_EVOLUTION_STATE_BYTES} "
                         "(limits.MAX_EVOLUTION_STATE_BYTES)")
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"evolution state {path} is not valid JSON: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise ValueError(f"evolution state {path} is not valid JSON: nested too deeply") from None
    try:
        return parse_state(value, parse_subnet)
    except FieldError as exc:
        raise ValueError(f"evolution state {path}: field '{exc.field}': {exc.msg}") from None
    except ValueError as exc:  # a space parser's own error
        raise ValueError(f"evolution state {path}: {str(exc).splitlines()[0]}") from None
