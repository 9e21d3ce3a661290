"""Does the search beat random architectures? Search, draw FLOPs-matched random fabrics, retrain all, test.

    python tools/search_vs_random.py --cfg configs/synthetic_search_demo.yaml --seeds 0 1 2 --random 5 \
        [--retrain-epochs 10] [--inherit] [--retrain-seeds 1] [--jobs 2] [--out output/search_vs_random] \
        [--flops-tol 0.05] [--last-step] [KEY VALUE ...]

For every seed:
1. `searched`: train.py --cfg CFG SEED s (the config's strategy), which ends with Prune -> genotype.json;
2. `none`: the uniform derivation: the searched supernet's weights with every arch logit 0, derived with the
   same DERIVE settings (with magnitude selection this is what a search that learned nothing would pick);
3. `random`: arch logits drawn as N(0, 1) (generator seeded by seed and draw), derived with the same DERIVE
   settings, accepted when the derived FLOPs are within +-flops-tol of the searched fabric's (rejection
   sampling over at most --max-draws draws; a shortfall is reported, never filled with unmatched draws);
4. every candidate is retrained with one recipe: train.py --genotype G SEED s SEARCH.STRATEGY none
   TRAIN.EPOCHS E TRAIN.LR_SCHEDULE cosine (the demo's retrain schedule), the same seed and data order;
   by default from scratch (the unbiased check: no candidate starts from weights trained under the searched
   arch values), or with --inherit from the seed's supernet checkpoint, every candidate taking the weights of
   the modules it kept (the one-shot check: cheap, since a short retrain already ranks, but the supernet's
   weights were trained under the searched arch values, which may favour the searched fabric);
   with --last-step, also `laststep`: the same search derived from its last arch step's values instead of the
   mean of its last DERIVE.AVERAGE_ARCH_STEPS steps (what `tools/export_genotype.py --average-steps 1` writes),
   retrained with the same recipe: an ablation of the averaged derivation on the same searches;
5. test.py --flip-test on the last checkpoint (a fixed number of epochs, no choice by the test set);
6. with --retrain-seeds K, every candidate is retrained K times, repeat k with SEED s + 1000 k (data order
   and the initialisation of what it does not inherit), and its AP is the mean of its repeats; the spread of
   one candidate's repeats is the protocol's retrain noise, reported beside the gaps it must resolve.
The searches run one after another; the retrains of all seeds then run --jobs at a time. Seeds may also run
as separate processes on the same --out (results.json is updated under a lock, keeping the others' rows).
Writes OUT/results.json (one row per candidate and repeat; a rerun skips finished ones, so a rerun with a
larger --retrain-seeds only adds the new repeats), OUT/table.md (AP mean +- std per kind,
params, FLOPs, per seed (with how many random draws the searched fabric beats), the chance that the random
protocol matches the search (`chance_random_matches`), and per candidate the input strides reaching each
output) and OUT/ap_vs_flops.png (searched fabrics highlighted).
"""
import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from src.architecture.genotype.genotype import load_genotype, save_genotype
from src.config.loader import load_config
from src.engine.checkpoint import load_model_weights
from src.engine.cli import run_cli
from src.engine.runs import finished, run_script, tested_score
from src.engine.search_outputs import derive, genotype_from_checkpoint
from src.network_factory.from_genotype import build_from_genotype_file
from src.network_factory.registry import build_model
from src.utils.atomic import update_json_locked, write_json_atomic
from src.utils.flops import count_flops, count_params

KINDS = ["searched", "laststep", "none", "random"]


def _size(cfg, genotype_path):
    net = build_from_genotype_file(cfg, genotype_path)
    w, h = cfg.MODEL.INPUT_SIZE
    return count_params(net), count_flops(net, (1, 3, int(h), int(w)))


def _derive_with_logits(cfg, supernet_ckpt, draw, path):
    """Genotype of the supernet (weights of the search) with arch logits from `draw(shape)`."""
    model = build_model(cfg)
    load_model_weights(model, supernet_ckpt)
    with torch.no_grad():
        for p in model.arch_parameters():
            p.copy_(draw(p.shape))
    _, genotype = derive(cfg, model, log_fn=lambda s: None)
    save_genotype(genotype, path)
    return path


def candidates_of_seed(cfg_file, opts, seed, n_random, tol, max_draws, out, bar, last_step=False):
    """[(kind, name, genotype path)] for one seed: searched, (with `last_step`) laststep, none, and the
    FLOPs-matched random ones."""
    sdir = out / f"seed{seed}"
    search_dir = sdir / "search"
    if not (search_dir / "genotype.json").is_file():
        bar.set_description(f"seed {seed}: search")
        sdir.mkdir(parents=True, exist_ok=True)
        run_script(["train.py", "--cfg", cfg_file, *opts, "SEED", seed, "OUTPUT_DIR", search_dir], sdir / "search.log")
    scfg = load_config(cfg_file, list(opts) + ["SEED", str(seed)])
    ckpt = search_dir / "last.pth"
    found = [("searched", "searched", search_dir / "genotype.json")]
    if last_step:
        last_path = sdir / "laststep.json"
        if not last_path.is_file():
            save_genotype(genotype_from_checkpoint(scfg, ckpt, log_fn=lambda s: None, average_steps=1)[1], last_path)
        found.append(("laststep", "laststep", last_path))
    none_path = sdir / "none.json"
    if not none_path.is_file():
        _derive_with_logits(scfg, ckpt, torch.zeros, none_path)
    found.append(("none", "none", none_path))
    _, target = _size(scfg, search_dir / "genotype.json")
    accepted = sorted(sdir.glob("random_*.json"))  # a rejected draw is deleted as soon as it is measured
    state_path = sdir / "draws.json"
    tried = json.loads(state_path.read_text())["tried"] if state_path.is_file() else 0
    while len(accepted) < n_random and tried < max_draws:
        bar.set_description(f"seed {seed}: random draw {tried}")
        gen = torch.Generator().manual_seed(seed * 100003 + tried)
        path = sdir / f"random_{tried:04d}.json"
        _derive_with_logits(scfg, ckpt, lambda shape: torch.randn(shape, generator=gen), path)
        tried += 1
        if abs(_size(scfg, path)[1] / target - 1) <= tol:
            accepted.append(path)
        else:
            path.unlink()
        write_json_atomic(str(state_path), {"tried": tried})
    found += [("random", p.stem, p) for p in accepted[:n_random]]
    return found, tried


REPEAT_SEED_STRIDE = 1000


def retrain_and_test(cfg_file, opts, seed, name, genotype, epochs, out, threads=None, inherit=False, repeat=0):
    """Retrains one candidate (from scratch, or from the seed's supernet with `inherit`; repeat k with SEED
    seed + 1000 k), then test.py with flip test on its last checkpoint; returns the AP."""
    run = out / f"seed{seed}" / (f"retrain_{name}" + (f"_rep{repeat}" if repeat else ""))
    run.mkdir(parents=True, exist_ok=True)
    common = [*opts, "SEED", seed + REPEAT_SEED_STRIDE * repeat, "SEARCH.STRATEGY", "none", "TRAIN.LR_SCHEDULE", "cosine",
              "OUTPUT_DIR", run]
    if not finished(run, epochs):
        supernet = ["--inherit", out / f"seed{seed}" / "search" / "last.pth"] if inherit else []
        run_script(["train.py", "--cfg", cfg_file, "--genotype", genotype, *supernet, *common, "TRAIN.EPOCHS", epochs,
                    "TRAIN.EVAL_INTERVAL", epochs], run / "train_stdout.log", threads)
    last = run_script(["test.py", "--cfg", cfg_file, "--genotype", genotype, "--ckpt", run / "last.pth",
                       "--flip-test", *common], run / "test_stdout.log", threads)
    return tested_score(last, "AP")


def _read_results(path):
    return json.loads(path.read_text())["results"] if path.is_file() else []


def _key(r):
    """(seed, name, repeat) of a results row (rows written before repeats existed are repeat 0)."""
    return r["seed"], r["name"], r.get("repeat", 0)


def _add_result(path, record, meta):
    """Adds `record` to the results file, keeping what other runs (other seeds, started separately on the
    same --out) wrote meanwhile; returns all results."""
    def update(current):
        kept = [r for r in (current or {"results": []})["results"] if _key(r) != _key(record)]
        rows = sorted(kept + [record], key=lambda r: (r["seed"], KINDS.index(r["kind"]), r["name"], _key(r)[2]))
        return {**meta, "results": rows}
    return update_json_locked(str(path), update)["results"]


def per_candidate(results):
    """One row per (seed, name): its AP the mean over its repeats, `aps` the repeats' APs in repeat order."""
    merged = {}
    for r in sorted(results, key=_key):
        row = merged.setdefault(r["seed"], {}).setdefault(r["name"], {**r, "aps": []})
        row["aps"].append(r["ap"])
    rows = [row for by_name in merged.values() for row in by_name.values()]
    for row in rows:
        row.pop("repeat", None)
        row["ap"] = float(np.mean(row["aps"]))
    return sorted(rows, key=lambda r: (r["seed"], KINDS.index(r["kind"]), r["name"]))


def retrain_noise(candidates):
    """Pooled std of one candidate's repeats (ddof 1) and the number of candidates with >= 2 repeats, or None."""
    repeated = [np.asarray(c["aps"]) for c in candidates if len(c["aps"]) > 1]
    if not repeated:
        return None
    dof = sum(len(a) - 1 for a in repeated)
    return float(np.sqrt(sum(((a - a.mean()) ** 2).sum() for a in repeated) / dof)), len(repeated)


def chance_random_matches(searched, randoms, max_exact=1_000_000, samples=200_000):
    """The chance that the random protocol does at least as well as the search: pick one of each seed's random
    draws (uniformly, independently of the other seeds) and compare the picks' mean AP with the mean AP of the
    seeds' searched fabrics (ties count for random). `searched[i]` and `randoms[i]` are seed i's searched AP
    and random draws' APs. This is the p-value of a permutation test of "the search is no better than a
    random draw". Exact over all combinations when there are at most `max_exact`, else estimated from
    `samples` seeded picks. Returns (chance, combinations, exact)."""
    target = float(np.sum(searched)) - 1e-9
    randoms = [np.asarray(r, dtype=float) for r in randoms]
    combinations = int(np.prod([len(r) for r in randoms]))
    if combinations <= max_exact:
        sums = np.zeros(1)
        for r in randoms:
            sums = np.add.outer(sums, r).ravel()
        return float(np.mean(sums >= target)), combinations, True
    rng = np.random.default_rng(0)
    sums = sum(rng.choice(r, samples) for r in randoms)
    return float(np.mean(sums >= target)), combinations, False


def _input_strides(genotype_path) -> str:
    """Per fabric output, the strides of the input maps that reach it (as in the prune report), e.g.
    "16, 32 / 32 / 4"."""
    fabrics = load_genotype(genotype_path).arch.fabrics()
    return " / ".join(", ".join(map(str, spec.input_strides(o))) for _, _, spec in fabrics for o in spec.outputs)


def write_report(results, out, meta):
    results = per_candidate(results)
    rows = ["| kind | candidates | AP (flip) mean +- std | params (M) | GFLOPs |", "|---|---|---|---|---|"]
    for kind in KINDS:
        rs = [r for r in results if r["kind"] == kind]
        if rs:
            ap = np.array([r["ap"] for r in rs])
            rows.append(f"| {kind} | {len(rs)} | {ap.mean():.4f} +- {ap.std():.4f} | "
                        f"{np.mean([r['params'] for r in rs]) / 1e6:.3f} | {np.mean([r['flops'] for r in rs]) / 1e9:.4f} |")
    last_step = any(r["kind"] == "laststep" for r in results)
    last_cols = (" last-step AP | last-step - random |", "---|---|") if last_step else ("", "")
    rows += ["", "| seed | searched AP | none AP | random AP (mean of n) | searched - random | searched beats |"
             + last_cols[0], "|---|---|---|---|---|---|" + last_cols[1]]
    paired, last_gaps = [], []  # (searched AP, random APs) per seed; last-step AP - mean random per seed
    for seed in sorted({r["seed"] for r in results}):
        by = {k: [r["ap"] for r in results if r["seed"] == seed and r["kind"] == k] for k in KINDS}
        if by["searched"] and by["random"]:
            searched, randoms = by["searched"][0], by["random"]
            paired.append((searched, randoms))
            row = (f"| {seed} | {searched:.4f} | {by['none'][0] if by['none'] else float('nan'):.4f} | "
                   f"{np.mean(randoms):.4f} (n={len(randoms)}) | {searched - np.mean(randoms):+.4f} | "
                   f"{sum(a < searched for a in randoms)} of {len(randoms)} draws |")
            if by["laststep"]:
                last_gaps.append(by["laststep"][0] - np.mean(randoms))
                row += f" {by['laststep'][0]:.4f} | {last_gaps[-1]:+.4f} |"
            elif last_step:
                row += " - | - |"
            rows.append(row)
    if paired:
        gap = np.mean([searched - np.mean(randoms) for searched, randoms in paired])
        rows.append(f"\nsearched - random, averaged over seeds: {gap:+.4f} AP")
        if last_gaps:
            rows.append(f"last-step fabrics - random, averaged over {len(last_gaps)} seeds: {np.mean(last_gaps):+.4f} AP")
        chance, combos, exact = chance_random_matches(*zip(*paired))
        rows.append(f"chance that one random draw per seed matches the searched fabrics' mean AP: {chance:.3f} "
                    f"({'exact over' if exact else 'sampled from'} {combos} combinations)")
    noise = retrain_noise(results)
    if noise:
        rows.append(f"retrain noise (pooled std of one candidate's repeats, {noise[1]} candidates): {noise[0]:.4f} AP")
    rows += ["", "| seed | kind | name | AP (mean of repeats) | repeats | GFLOPs | input strides reaching each output |",
             "|---|---|---|---|---|---|---|"]
    rows += [f"| {r['seed']} | {r['kind']} | {r['name']} | {r['ap']:.4f} | {', '.join(f'{a:.4f}' for a in r['aps'])} | "
             f"{r['flops'] / 1e9:.4f} | {_input_strides(r['genotype'])} |" for r in results]
    rows.append(f"\n{meta}")
    (out / "table.md").write_text("\n".join(rows) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, style in (("random", dict(c="0.6", marker="o")), ("none", dict(c="tab:blue", marker="s")),
                        ("laststep", dict(c="tab:orange", marker="^")), ("searched", dict(c="tab:red", marker="*", s=140))):
        rs = [r for r in results if r["kind"] == kind]
        if not rs:
            continue
        ax.scatter([r["flops"] / 1e9 for r in rs], [r["ap"] for r in rs], label=kind, **style)
    ax.set_xlabel("GFLOPs (derived network)")
    ax.set_ylabel("AP with flip test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ap_vs_flops.png", dpi=120)
    plt.close(fig)
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", required=True, help="search config")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--random", type=int, default=5, help="FLOPs-matched random architectures per seed")
    p.add_argument("--retrain-epochs", type=int, default=10, help="epochs of the one retrain recipe")
    p.add_argument("--inherit", action="store_true", help="retrain from the seed's supernet weights, not from "
                                                          "scratch (see the module docstring)")
    p.add_argument("--retrain-seeds", type=int, default=1, help="retrains per candidate (repeat k: SEED s + 1000 k); "
                                                                "its AP is their mean")
    p.add_argument("--flops-tol", type=float, default=0.05, help="relative FLOPs tolerance of a random draw")
    p.add_argument("--max-draws", type=int, default=2000, help="random draws tried per seed at most")
    p.add_argument("--out", default="output/search_vs_random")
    p.add_argument("--jobs", type=int, default=1, help="retrains run at a time (each with cpu_count // jobs "
                                                       "threads; a run's result depends on its thread count)")
    p.add_argument("--last-step", action="store_true", help="also retrain each search's fabric derived from its "
                                                            "last arch step (needs DERIVE.AVERAGE_ARCH_STEPS >= 2)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every run")
    args = p.parse_args(argv)
    cfg = load_config(args.cfg, args.opts)  # checks the config and the overrides up front
    if args.last_step and cfg.DERIVE.AVERAGE_ARCH_STEPS < 2:
        raise ValueError(f"--last-step needs a search that averages its last arch steps (DERIVE.AVERAGE_ARCH_STEPS "
                         f">= 2, got {cfg.DERIVE.AVERAGE_ARCH_STEPS}): otherwise `searched` is the last step's fabric")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    recipe = "inheriting the supernet, cosine" if args.inherit else "from scratch, cosine"
    if results_path.is_file():
        old = json.loads(results_path.read_text())
        if (old.get("retrain"), old.get("retrain_epochs")) != (recipe, args.retrain_epochs):
            raise ValueError(f"{results_path} holds retrains '{old.get('retrain')}', {old.get('retrain_epochs')} "
                             f"epochs; this run asks '{recipe}', {args.retrain_epochs}: use another --out")
    results = _read_results(results_path)
    if args.retrain_seeds < 1:
        raise ValueError(f"--retrain-seeds must be >= 1, got {args.retrain_seeds}")
    done = {_key(r) for r in results}
    bar = tqdm(total=len(args.seeds) * (args.random + 2 + args.last_step) * args.retrain_seeds, desc="search vs random")
    shortfalls, todo, n_found = [], [], 0
    for seed in args.seeds:
        found, tried = candidates_of_seed(args.cfg, args.opts, seed, args.random, args.flops_tol, args.max_draws, out, bar,
                                          args.last_step)
        n_random = sum(kind == "random" for kind, _, _ in found)
        if n_random < args.random:
            shortfalls.append(f"seed {seed}: only {n_random} of {tried} random draws within "
                              f"+-{args.flops_tol:.0%} FLOPs")
        todo += [(seed, kind, name, genotype, k) for k in range(args.retrain_seeds) for kind, name, genotype in found
                 if (seed, name, k) not in done]
        n_found += len(found) * args.retrain_seeds
    bar.update(n_found - len(todo))  # finished by an earlier run

    def retrain(job):
        seed, kind, name, genotype, repeat = job
        ap = retrain_and_test(args.cfg, args.opts, seed, name, genotype, args.retrain_epochs, out, threads,
                              args.inherit, repeat)
        params, flops = _size(load_config(args.cfg, list(args.opts) + ["SEED", str(seed)]), genotype)
        return {"seed": seed, "kind": kind, "name": name, "repeat": repeat, "genotype": str(genotype),
                "params": params, "flops": flops, "ap": ap}

    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    bar.set_description(f"retrain {len(todo)} candidates, {args.jobs} at a time")
    with ThreadPoolExecutor(args.jobs) as pool:
        for record in pool.map(retrain, todo):  # in order: a rerun continues where this one stopped
            results = _add_result(results_path, record, {"cfg": args.cfg, "opts": args.opts,
                                                         "retrain_epochs": args.retrain_epochs,
                                                         "retrain": recipe, "flops_tol": args.flops_tol})
            bar.update(1)
    bar.close()
    meta = (f"cfg {args.cfg} {' '.join(args.opts)}; retrain {args.retrain_epochs} epochs {recipe}; "
            f"random within +-{args.flops_tol:.0%} FLOPs" + ("; " + "; ".join(shortfalls) if shortfalls else ""))
    print(write_report([r for r in results if r["seed"] in args.seeds], out, meta))  # only this run's seeds
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
