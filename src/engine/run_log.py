"""A run's records: console + log file, metrics CSV, arch-values CSV, TensorBoard. Only rank 0 writes."""
import csv
import logging
import os
import sys

from torch.utils.tensorboard import SummaryWriter


def flatten_arch_state(state: dict) -> dict:
    """{'parts.0.alpha': [[..]]} -> {'parts.0.alpha[0,1]': v, ...} (scalar per column)."""
    flat = {}

    def walk(name, index, value):
        if isinstance(value, list):
            for i, v in enumerate(value):
                walk(name, index + (i,), v)
        else:
            flat[f"{name}[{','.join(map(str, index))}]"] = float(value)

    for name, value in state.items():
        walk(name, (), value)
    return flat


class CsvLog:
    """Appends rows to a CSV whose columns are fixed by the first row (resume-safe: appends to an existing file)."""

    def __init__(self, path: str):
        self.path = path
        self.columns = None
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            with open(path, newline="") as f:
                self.columns = next(csv.reader(f))

    def write(self, row: dict) -> None:
        if self.columns is None:
            self.columns = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self.columns])


class RunLog:
    def __init__(self, out_dir: str, enabled: bool = True, name: str = "train"):
        self.enabled = enabled
        self.logger = logging.getLogger(f"fabricnas.{name}.{out_dir}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.tb = None
        if not enabled:
            return
        os.makedirs(out_dir, exist_ok=True)
        fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
        for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(os.path.join(out_dir, f"{name}.log"))):
            handler.setFormatter(fmt)
            self.logger.addHandler(handler)
        self.csv = {"train": CsvLog(os.path.join(out_dir, "metrics.csv")),
                    "eval": CsvLog(os.path.join(out_dir, "eval.csv"))}
        self.arch = CsvLog(os.path.join(out_dir, "arch_values.csv"))
        self.tb = SummaryWriter(os.path.join(out_dir, "tb"))

    def info(self, msg: str) -> None:
        if self.enabled:
            self.logger.info(msg)

    def scalars(self, row: dict, step: int, kind: str = "train") -> None:
        """One row of training (metrics.csv) or evaluation (eval.csv) metrics, also to TensorBoard."""
        if not self.enabled:
            return
        self.csv[kind].write({"step": step, **row})
        for k, v in row.items():
            if isinstance(v, (int, float)):
                self.tb.add_scalar(k, v, step)

    def arch_values(self, state: dict, step: int, epoch: int, extra: dict = None) -> None:
        """Softmaxed arch values at an arch step, with `extra` scalars (entropy, ...) (CSV + TensorBoard)."""
        if not self.enabled or not state:
            return
        flat = flatten_arch_state(state)
        self.arch.write({"step": step, "epoch": epoch, **(extra or {}), **flat})
        for k, v in flat.items():
            self.tb.add_scalar(f"arch/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)
