"""The evolution engine on the toy space: parents never change, duplicates are rejected, the state file
resumes exactly (after a finished generation and after a crash mid-generation), a 2-rank gloo run equals the
single-process run, the chosen-subnet rules, the outputs, and bad state files."""
import copy
import csv
import json

import pytest

from src.search import evolution_state
from src.search.evolution import Evolution, EvolutionSettings, run_evolution
from src.search.evolution_report import choose_subnet, write_outputs
from src.search.evolution_state import Record, load_state
from tests.evolution_toy import ToyOps, ToySpec, toy_evaluate
from tests.test_search_ddp import run_on_two_ranks

SETTINGS = EvolutionSettings(population=8, generations=3, seed=3)


def quiet(_):
    pass


def run(path, settings=SETTINGS, evaluate=toy_evaluate, ops=None):
    return run_evolution(ops or ToyOps(), evaluate, settings, str(path), log=quiet)


def state_json(path):
    with open(path) as f:
        return json.load(f)


def test_run_evaluates_every_generation_once(tmp_path):
    calls = []
    state = run(tmp_path / "s.json", evaluate=lambda s: calls.append(s.key()) or toy_evaluate(s))
    assert state.generation == 3 and not state.pending and len(state.population) == 8
    assert len(calls) == len(set(calls)) == len(state.evaluated)  # each subnet evaluated exactly once
    assert {r.generation for r in state.evaluated.values()} == {0, 1, 2, 3}
    assert len(state.evaluated) == 8 * 4  # the toy space (4096 subnets) never runs out
    saved = state_json(tmp_path / "s.json")
    assert saved == state.to_dict()


def test_parents_never_change(tmp_path):
    evo = Evolution(ToyOps(), toy_evaluate, SETTINGS, str(tmp_path / "s.json"), log=quiet)
    evo.run()
    parents = [evo.subnet(k) for k in evo.state.population]
    before = copy.deepcopy([p.to_dict() for p in parents])
    evo.state.generation += 1
    children = evo._children()
    assert [p.to_dict() for p in parents] == before
    assert not any(c is p for c in children for p in parents)


def test_an_operation_that_edits_its_parent_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="changed its parent"):
        run(tmp_path / "s.json", ops=ToyOps(in_place_mutation=True))


def test_duplicates_are_rejected_until_the_space_runs_out(tmp_path):
    tiny = ToyOps(ToySpec(modules=2, max_depth=2, bits=1))  # 2 * 2 * 2 = 8 subnets
    calls = []
    settings = EvolutionSettings(population=3, generations=5, seed=0, mutation_prob=0.5, max_tries=200)
    state = run(tmp_path / "s.json", settings, lambda s: calls.append(s.key()) or toy_evaluate(s), tiny)
    assert len(calls) == len(set(calls)) == len(state.evaluated) == 8  # all of them, none twice
    assert state.generation == 5 and len(state.population) == 3


@pytest.mark.parametrize("crash_at", [None, 13])
def test_state_resumes_exactly(tmp_path, crash_at):
    run(tmp_path / "full.json")
    path = tmp_path / "part.json"
    if crash_at is None:  # stop after generation 1, then continue to 3
        run(path, EvolutionSettings(population=8, generations=1, seed=3))
        assert state_json(path)["generation"] == 1
    else:  # the process dies inside generation 1 (13th evaluation), then the same command again
        calls = []

        def dying(s):
            if len(calls) == crash_at:
                raise KeyboardInterrupt
            calls.append(s.key())
            return toy_evaluate(s)
        with pytest.raises(KeyboardInterrupt):
            run(path, evaluate=dying)
        partial = state_json(path)
        assert partial["generation"] == 1 and len(partial["evaluated"]) == crash_at
    redone = []
    run(path, evaluate=lambda s: redone.append(s.key()) or toy_evaluate(s))
    assert state_json(path) == state_json(tmp_path / "full.json")
    if crash_at is not None:
        assert len(redone) == 32 - crash_at  # nothing evaluated twice


def test_resume_refuses_other_settings(tmp_path):
    run(tmp_path / "s.json", EvolutionSettings(population=8, generations=1, seed=3))
    with pytest.raises(ValueError, match=r"s\.json: settings\.seed is 3, this run asks for 4"):
        run(tmp_path / "s.json", EvolutionSettings(population=8, generations=2, seed=4))


@pytest.mark.parametrize("kwargs, message", [(dict(population=0), "population must be in"),
                                             (dict(mutation_prob=1.5), "mutation_prob must be in"),
                                             (dict(generations=-1), "generations must be in")])
def test_settings_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EvolutionSettings(**kwargs)


def test_a_failing_evaluation_is_one_line_naming_the_subnet(tmp_path):
    def bad(s):
        return float("nan"), 0.5
    with pytest.raises(ValueError, match=r"evaluating subnet d\d+_f\d+: got flops nan"):
        run(tmp_path / "s.json", evaluate=bad)


# ------------------------------------------------------------------ distributed
def _two_rank_worker(rank, path, log_dir):
    keys = []

    def evaluate(s):
        keys.append(s.key())
        return toy_evaluate(s)
    run_evolution(ToyOps(), evaluate, SETTINGS, path, log=quiet)
    with open(f"{log_dir}/rank{rank}.json", "w") as f:
        json.dump(keys, f)


@pytest.mark.slow  # ~17 s on 2 busy cores: two spawned processes importing torch
@pytest.mark.timeout(180)
def test_two_gloo_ranks_equal_one_process(tmp_path):
    run(tmp_path / "single.json")
    run_on_two_ranks(_TwoRanks(str(tmp_path / "ddp.json"), str(tmp_path)), tmp_path)
    assert state_json(tmp_path / "ddp.json") == state_json(tmp_path / "single.json")
    k0, k1 = (json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1))
    assert not set(k0) & set(k1) and len(k0) == len(k1) == 16  # the 32 evaluations split evenly


class _TwoRanks:
    """Picklable body for mp.spawn."""

    def __init__(self, path, log_dir):
        self.path, self.log_dir = path, log_dir

    def __call__(self, rank):
        _two_rank_worker(rank, self.path, self.log_dir)


# ------------------------------------------------------------------ chosen subnet and outputs
def _records():
    return [Record("a", 0, 1.0, 0.30, {}), Record("b", 0, 2.0, 0.50, {}), Record("c", 1, 3.0, 0.50, {}),
            Record("d", 1, 4.0, 0.70, {}), Record("e", 2, 2.0, 0.50, {})]


def test_choose_by_flops_limit_or_metric_target():
    recs = _records()
    assert choose_subnet(recs, max_flops=3.5).key == "b"  # best metric under 3.5; b/c/e tie: fewer flops, key
    assert choose_subnet(recs, max_flops=4.0).key == "d"  # the limit is inclusive
    assert choose_subnet(recs, min_metric=0.5).key == "b"  # fewest flops reaching 0.5; b/e tie: key
    assert choose_subnet(recs, min_metric=0.6).key == "d"
    assert choose_subnet(recs).key == "d"  # no rule: the best metric
    with pytest.raises(ValueError, match=r"no evaluated subnet has FLOPs <= 0.5 \(fewest: 1\)"):
        choose_subnet(recs, max_flops=0.5)
    with pytest.raises(ValueError, match=r"no evaluated subnet reaches metric 0.9 \(best: 0.7\)"):
        choose_subnet(recs, min_metric=0.9)
    with pytest.raises(ValueError, match="not both"):
        choose_subnet(recs, max_flops=1, min_metric=0.1)


def test_outputs(tmp_path):
    state = run(tmp_path / "s.json")
    limit = sorted(r.flops for r in state.evaluated.values())[10]
    chosen_record, paths = write_outputs(state, str(tmp_path / "out"), max_flops=limit)
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["key"] for r in rows] == list(state.evaluated)
    assert list(rows[0]) == ["generation", "key", "flops", "metric", "front_rank"]
    assert any(r["front_rank"] == "0" for r in rows) and any(r["front_rank"] != "0" for r in rows)
    chosen = state_json(paths["chosen"])
    assert chosen["rule"] == {"max_flops": limit} and chosen["flops"] <= limit
    assert chosen_record.to_dict() == {k: v for k, v in chosen.items() if k != "rule"}
    assert chosen["metric"] == max(r.metric for r in state.evaluated.values() if r.flops <= limit)
    assert ToyOps().from_dict(chosen["subnet"], "subnet").key() == chosen["key"]
    with open(paths["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ bad state files
def _load(path):
    return load_state(str(path), ToyOps().from_dict)


def _broken(tmp_path, edit):
    run(tmp_path / "s.json", EvolutionSettings(population=4, generations=1, seed=0))
    value = state_json(tmp_path / "s.json")
    edit(value)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(value))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda v: v.pop("rng"), r"field 'rng': missing"),
    (lambda v: v.update(generation="1"), r"field 'generation': must be int"),
    (lambda v: v["evaluated"][2].update(flops=-1), r"field 'evaluated\[2\]\.flops': must be a finite number"),
    (lambda v: v["evaluated"][1]["subnet"].update(depths=[9, 1, 1]), r"field 'evaluated\[1\]\.subnet\.depths'"),
    (lambda v: v["population"].append("nope"), r"field 'population\[4\]': subnet 'nope' is not among"),
    (lambda v: v["rng"][1].pop(), r"field 'rng\[1\]': must have 625 to 625 items"),
    (lambda v: v["settings"].update(population=0), r"field 'settings\.population': must be in"),
    (lambda v: v.update(format="other"), r"field 'format'"),
])
def test_bad_state_file_is_one_line_naming_file_and_field(tmp_path, edit, message):
    path = _broken(tmp_path, edit)
    with pytest.raises(ValueError, match=r"^evolution state .*bad\.json: " + message) as exc:
        _load(path)
    assert "\n" not in str(exc.value)


def test_malformed_or_oversized_state_file(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    path.write_text('{"format": ')
    with pytest.raises(ValueError, match=r"evolution state .*s\.json is not valid JSON"):
        _load(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"s\.json: field '': must be an object, got list"):
        _load(path)
    path.write_text("{}" + " " * 100)
    monkeypatch.setattr(evolution_state, "MAX_EVOLUTION_STATE_BYTES", 50)
    with pytest.raises(ValueError, match=r"s\.json has 102 bytes, above 50"):
        _load(path)
    monkeypatch.undo()
    path.write_text("nope")
    with pytest.raises(ValueError, match=r"s\.json is not valid JSON"):  # a rerun on it says the same
        run(path)
