"""ONNX export of a network without a search space (a genotype's derived network, HRFormer), checked against
PyTorch with onnxruntime and timed in both (tools/export_onnx.py is the command line).

Exporter: the TorchScript one, `torch.onnx.export(..., dynamo=False)` at opset 17, with a dynamic batch axis.
On the tiny test networks it exports in 1-3 s where the torch.export-based one (`dynamo=True`, which needs
onnxscript) takes 25-75 s, and the latter fails on hr_dense unless the example batch is >= 2 (0/1
specialisation). Height and width are fixed at the config's input size: shape arithmetic on them (HRT window
padding, odd-size upsampling) is traced as constants, so tracer warnings are silenced; the parity check at
batches 1, 2 and 3 is what vouches for the graph.

The file is written atomically, and only once onnxruntime loads it and its outputs on random inputs match
PyTorch's: max |onnxruntime - PyTorch| <= ATOL + RTOL * max |PyTorch|. What cannot be exported (a model with
arch parameters, an op the exporter rejects, outputs that do not match) raises a one-line ValueError and
leaves nothing behind.
"""
import contextlib
import os
import sys
import time
import warnings
from typing import Callable, Dict, Sequence

import numpy as np
import torch
from torch import nn

from src.architecture.arch_params import arch_parameter_names
from src.utils.atomic import atomic_write

OPSET = 17
INPUT = "image"
RTOL, ATOL = 1e-4, 1e-6  # of the largest PyTorch output magnitude; absolute floor
CHECK_BATCHES = (1, 2, 3)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_exportable(model: nn.Module) -> None:
    """Refuse a model that still has arch parameters (a supernet)."""
    arch = arch_parameter_names(model)
    if arch:
        raise ValueError(f"{type(model).__name__} has {len(arch)} arch parameters (e.g. {arch[0]}): a supernet "
                         "cannot be exported, export the derived network of its genotype")


def ort_session(path: str, threads: int):
    """A CPU onnxruntime session of `path` running on `threads` intra-op threads."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise ValueError(f"onnxruntime cannot load the exported model: {_first_line(exc)}") from None


@contextlib.contextmanager
def _quiet_stdout():
    """Discard what is written to file descriptor 1: the TorchScript exporter's C++ log dumps the whole graph
    there when it fails (stdout is the tool's JSON)."""
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def _export(model: nn.Module, path: str, x: torch.Tensor, output: str) -> None:
    with torch.no_grad():
        y = model(x)
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{type(model).__name__} returns {type(y).__name__}, not one tensor: cannot export")
    axes = {INPUT: {0: "batch"}, output: {0: "batch"}}
    try:
        with torch.no_grad(), warnings.catch_warnings(), _quiet_stdout():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), path, input_names=[INPUT], output_names=[output], opset_version=OPSET,
                              dynamic_axes=axes, dynamo=False)
    except Exception as exc:  # the exporter raises many kinds (unsupported op, symbolic and tracing errors)
        raise ValueError(f"cannot export {type(model).__name__} to ONNX: {_first_line(exc)}") from None


@torch.no_grad()
def check_parity(model: nn.Module, path: str, image_shape: Sequence[int], threads: int = 1,
                 batches: Sequence[int] = CHECK_BATCHES, seed: int = 0) -> Dict:
    """Run the ONNX file and the model on standard-normal inputs of each batch size in `batches`; raise when
    max |difference| exceeds ATOL + RTOL * max |PyTorch output|. Returns the differences and the tolerance
    (the relative difference is max |difference| / max |PyTorch output|)."""
    session = ort_session(path, threads)
    gen = torch.Generator().manual_seed(seed)
    worst = scale = 0.0
    for n in batches:
        x = torch.randn(n, *image_shape, generator=gen)
        ref = model(x).float().cpu().numpy()
        got = session.run(None, {INPUT: x.numpy()})[0]
        if got.shape != ref.shape:
            raise ValueError(f"onnxruntime output shape {list(got.shape)} differs from PyTorch's {list(ref.shape)}")
        worst = max(worst, float(np.abs(got - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
    tolerance = ATOL + RTOL * scale
    result = {"max_abs_diff": worst, "max_rel_diff": worst / scale if scale else worst, "tolerance": tolerance,
              "rtol": RTOL, "atol": ATOL, "batches": list(batches)}
    if not worst <= tolerance:  # NaN fails too
        raise ValueError(f"onnxruntime's outputs differ from PyTorch's by {worst:.3g}, above the tolerance "
                         f"{tolerance:.3g}")
    return result


def export_onnx(model: nn.Module, path: str, image_shape: Sequence[int], output: str = "output",
                threads: int = 1) -> Dict:
    """Export `model` (eval mode; input [batch, *image_shape]) to `path` and check it (`check_parity`);
    the file appears only when both succeed. Returns the parity report."""
    check_exportable(model)
    model.eval()
    report = {}

    def write(tmp: str) -> None:
        _export(model, tmp, torch.randn(1, *image_shape), output)
        report.update(check_parity(model, tmp, image_shape, threads))

    atomic_write(path, write)
    return report


def best_ms(fns: Dict[str, Callable[[], object]], runs: int = 10, warmup: int = 2) -> Dict[str, float]:
    """Best-of-`runs` milliseconds per call of each function, the functions taking turns within each round
    (a change of load hits them alike)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], (time.perf_counter() - t0) * 1e3)
    return best


@torch.no_grad()
def latency(model: nn.Module, path: str, image_shape: Sequence[int], threads: int, runs: int = 10) -> Dict:
    """ms per image at batch 1 (best of `runs`) in PyTorch and in onnxruntime, both on `threads` threads."""
    session = ort_session(path, threads)
    x = torch.randn(1, *image_shape)
    feed = {INPUT: x.numpy()}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ms = best_ms({"pytorch": lambda: model(x), "onnxruntime": lambda: session.run(None, feed)}, runs)
    finally:
        torch.set_num_threads(previous)
    return {"pytorch_ms": ms["pytorch"], "onnxruntime_ms": ms["onnxruntime"],
            "ratio": ms["onnxruntime"] / ms["pytorch"], "threads": threads, "runs": runs}
