"""train.py / test.py runs in their own processes, for tools that retrain or fine-tune many networks."""
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def run_script(args, log_path, threads=None) -> str:
    """A train.py / test.py run in its own process from the repository root (stderr and stdout to
    `log_path`; `threads`: its OMP_NUM_THREADS, else inherited); returns its stdout's last line."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    with open(log_path, "w") as log:
        proc = subprocess.run([sys.executable] + [str(a) for a in args], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=log, text=True, env=env)
        log.write(proc.stdout)
    if proc.returncode != 0:
        raise ChildProcessError(f"{' '.join(map(str, args[:3]))} failed (exit {proc.returncode}); see {log_path}")
    return proc.stdout.strip().splitlines()[-1]


def finished(run_dir, epochs: int) -> bool:
    """The training run in `run_dir` completed all `epochs` (an interrupted one is redone from the start)."""
    last = Path(run_dir) / "last.pth"
    return last.is_file() and torch.load(last, map_location="cpu", weights_only=True).get("epoch") == epochs


def tested_score(last_line: str, expected: str = "") -> float:
    """The value of test.py's last line '<score name> <value>' (the name checked when `expected` is given)."""
    parts = last_line.split()
    if len(parts) != 2 or (expected and parts[0] != expected):
        raise ChildProcessError(f"test.py printed '{last_line}', expected '{expected or '<score>'} <value>'")
    return float(parts[1])
