"""Seconds per iteration and peak memory of every search strategy; prints JSON.

    .venv/bin/python bench/search_step.py [--cfg configs/synthetic_search_demo.yaml] [--iters 2] [--threads 1]

Configs: `demo` = --cfg (default configs/synthetic_search_demo.yaml), and with --configs (default: both) the two
PoseNFS configs at 256x192, batch 8: `mobilenet_v2_cnf3_256x192_b8` (part_cnf, MobileNet-V2 backbone, 3 CNFs)
and `hrnet_w32_cnf5_256x192_b8` (configs/coco/hrnet_w32_cnf5_384x288.yaml: HRNet-W32 backbone, 5 CNFs).
Strategies, as NAME[:SEARCH.HESSIAN][+KEY=VALUE...] (each +KEY=VALUE a config override of that run): the five
(second order with the default SEARCH.HESSIAN, finite_difference), `second_order_gradient:forward_mode` and
`second_order_gradient:exact` (the exact products), and the cheaper methods
`first_order_gradient+SEARCH.PARTIAL_CHANNELS=4` (PC-DARTS partial channels, K = 4) and `gdas` (sampled single path).
Each (config, strategy) runs in its own process on random batches of the config's shape (weight and arch
batch both TRAIN.BATCH_SIZE): one untimed warm-up iteration, then `--iters` timed ones (arch active).
`sec_per_iter` is the best (min) wall time of one `strategy.step`; `cpu_sec_per_iter` its best process
CPU time (with one thread the same on an idle machine, but steadier on a shared one). `peak_rss_mb` is
the growth of the process's peak resident set (getrusage ru_maxrss) over the warm-up and timed steps,
above the peak reached after building the model and the batches: the extra memory a step needs
(activations, gradients, optimizer state, unrolled weights). `second_over_first` = demo second-order
(default SEARCH.HESSIAN) / first-order CPU seconds (`second_over_first_wall`: the same from wall time).
Every (config, strategy) is timed in each of --memory-formats (MEMORY_FORMAT, interleaved);
`channels_last_over_contiguous` is the ratio of their CPU seconds per step.
`hypergradient_cosine`: on the demo model (3 seeds, float32, after 3 weight steps, batch 16), the cosine of
each SEARCH.HESSIAN mode's hypergradient (and of the plain first-order arch gradient) with the unrolled
autograd reference (`unrolled_hypergradient`), min and max over the seeds.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATEGIES = ["none", "random", "sync", "first_order_gradient", "second_order_gradient",
              "second_order_gradient:forward_mode", "second_order_gradient:exact",
              "first_order_gradient+SEARCH.PARTIAL_CHANNELS=4",
              "gdas"]  # NAME[:SEARCH.HESSIAN][+KEY=VALUE...]
DEMO_CFG = "configs/synthetic_search_demo.yaml"
FORMATS = ("contiguous", "channels_last")  # MEMORY_FORMAT values; second_over_first is taken from the last
POSENFS_SHAPE = ["MODEL.INPUT_SIZE", "[192, 256]", "MODEL.SIGMA", "2.0", "TRAIN.BATCH_SIZE", "8"]
# label -> (config file, overrides); the two PoseNFS configs of issue 11's side-by-side table at 256x192, batch 8
CONFIGS = {
    "mobilenet_v2_cnf3_256x192_b8": ("", ["MODEL.NAME", "part_cnf", "MODEL.BACKBONE", "mobilenet_v2",
                                          "MODEL.PARTS.NUM", "3"] + POSENFS_SHAPE),
    "hrnet_w32_cnf5_256x192_b8": ("configs/coco/hrnet_w32_cnf5_384x288.yaml", POSENFS_SHAPE),
}


def _worker(spec: dict) -> dict:
    import torch
    from src.config.loader import load_config
    from src.engine.trainer import place
    from src.network_factory.registry import build_model
    from src.search.strategies import build_strategy
    from src.utils.malloc import keep_freed_memory

    keep_freed_memory()  # the allocator settings of train.py
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    strategy, *overrides = spec["strategy"].split("+")
    name, _, hessian = strategy.partition(":")
    opts = (spec["opts"] + ["SEARCH.STRATEGY", name, "MEMORY_FORMAT", spec["memory_format"]]
            + (["SEARCH.HESSIAN", hessian] if hessian else []) + [x for kv in overrides for x in kv.split("=", 1)])
    cfg = load_config(spec["cfg"], opts)
    model = place(cfg, build_model(cfg), torch.device("cpu"))
    width, height = cfg.MODEL.INPUT_SIZE
    stride, n = cfg.MODEL.HEATMAP_STRIDE, cfg.TRAIN.BATCH_SIZE

    def batch(seed):
        g = torch.Generator().manual_seed(seed)
        return {"image": torch.randn(n, 3, height, width, generator=g),
                "target": torch.rand(n, cfg.MODEL.NUM_JOINTS, height // stride, width // stride, generator=g),
                "target_weight": torch.ones(n, cfg.MODEL.NUM_JOINTS)}

    def criterion(output, b):
        return 0.5 * ((output - b["target"]) ** 2 * b["target_weight"][..., None, None]).mean()

    strategy = build_strategy(cfg, model, criterion)
    batches = [(batch(2 * i), batch(2 * i + 1)) for i in range(spec["iters"] + 1)]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = [], []
    for weight_batch, arch_batch in batches:
        t0, c0 = time.perf_counter(), time.process_time()
        strategy.step(weight_batch, arch_batch, arch_active=True)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"sec_per_iter": round(min(wall[1:]), 4),
            "cpu_sec_per_iter": round(min(cpu[1:]), 4),
            "peak_rss_mb": round((rss_after - rss_before) / 1024, 1),
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
            "batch": n, "input": [width, height]}


def _cosine_worker(spec: dict) -> dict:
    import torch
    import torch.nn.functional as F
    from src.config.loader import load_config
    from src.network_factory.registry import build_model
    from src.search.hypergradient import MODES, compute_hypergradient, unrolled_hypergradient
    from src.search.strategies import build_strategy

    torch.set_num_threads(spec["threads"])
    cfg = load_config(spec["cfg"], ["SEARCH.STRATEGY", "second_order_gradient"])
    width, height = cfg.MODEL.INPUT_SIZE
    stride = cfg.MODEL.HEATMAP_STRIDE

    def batch(seed, n=16):
        g = torch.Generator().manual_seed(seed)
        return {"image": torch.randn(n, 3, height, width, generator=g),
                "target": torch.rand(n, cfg.MODEL.NUM_JOINTS, height // stride, width // stride, generator=g) ** 8,
                "target_weight": torch.ones(n, cfg.MODEL.NUM_JOINTS)}

    def criterion(output, b):
        return 0.5 * ((output - b["target"]) ** 2 * b["target_weight"][..., None, None]).mean()

    cos = {m: [] for m in MODES + ("first_order",)}
    for seed in range(3):
        torch.manual_seed(seed)
        model = build_model(cfg)
        strategy = build_strategy(cfg, model, criterion)
        for i in range(3):
            strategy.weight_step(batch(100 + i))
        model.train()
        wb, ab = batch(1), batch(2)
        ref = unrolled_hypergradient(model, criterion, strategy.weight_optimizer, wb, ab)
        for mode in MODES:
            got = compute_hypergradient(model, criterion, strategy.weight_optimizer, wb, ab, mode, cfg.SEARCH.FD_EPS)
            cos[mode].append(F.cosine_similarity(torch.cat([g.flatten() for g in got.arch_grads]), ref, dim=0).item())
        first = torch.autograd.grad(criterion(model(ab["image"]), ab), model.arch_parameters())
        cos["first_order"].append(F.cosine_similarity(torch.cat([g.flatten() for g in first]), ref, dim=0).item())
    return {"default_mode": cfg.SEARCH.HESSIAN, "fd_eps": cfg.SEARCH.FD_EPS,
            **{m: [round(min(v), 4), round(max(v), 4)] for m, v in cos.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cfg", default=DEMO_CFG, help="demo config")
    parser.add_argument("--iters", type=int, default=2, help="timed iterations per strategy")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS),
                        help="PoseNFS-sized configs timed besides the demo (none: only the demo)")
    parser.add_argument("--memory-formats", nargs="+", default=list(FORMATS), choices=FORMATS,
                        help="MEMORY_FORMAT values timed, interleaved per strategy")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cosine-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    if args.cosine_worker:
        print(json.dumps(_cosine_worker(json.loads(args.cosine_worker))))
        return

    configs = {"demo": (args.cfg, []), **{label: CONFIGS[label] for label in args.configs}}
    results = {"measures": "best-of-iters wall / CPU seconds per strategy.step and peak-RSS growth (MB) over the "
                           f"steps, {args.threads} torch thread(s), one process per run",
               "demo_cfg": args.cfg}
    for label, (cfg_file, opts) in configs.items():
        for fmt in args.memory_formats:
            results.setdefault(fmt, {})[label] = {}
        for name in args.strategies:
            for fmt in args.memory_formats:
                spec = {"cfg": os.path.join(ROOT, cfg_file) if cfg_file else "", "opts": opts, "strategy": name,
                        "iters": args.iters, "threads": args.threads, "memory_format": fmt}
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                                     cwd=ROOT, capture_output=True, text=True)
                if out.returncode != 0:
                    raise RuntimeError(f"{label}/{name}/{fmt} failed:\n{out.stderr[-2000:]}")
                results[fmt][label][name] = json.loads(out.stdout.strip().splitlines()[-1])
    if len(args.memory_formats) == 2:
        results["channels_last_over_contiguous"] = {
            label: {name: round(results["channels_last"][label][name]["cpu_sec_per_iter"]
                                / results["contiguous"][label][name]["cpu_sec_per_iter"], 2) for name in args.strategies}
            for label in configs}
    demo = results[args.memory_formats[-1]]["demo"]
    if "first_order_gradient" in demo and "second_order_gradient" in demo:
        first, second = demo["first_order_gradient"], demo["second_order_gradient"]
        results["second_over_first"] = round(second["cpu_sec_per_iter"] / first["cpu_sec_per_iter"], 2)
        results["second_over_first_wall"] = round(second["sec_per_iter"] / first["sec_per_iter"], 2)
    spec = json.dumps({"cfg": os.path.join(ROOT, args.cfg), "threads": args.threads})
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--cosine-worker", spec], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"hypergradient cosine failed:\n{out.stderr[-2000:]}")
    results["hypergradient_cosine"] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
