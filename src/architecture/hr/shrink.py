"""Physical removal of slimmed structure, exact in eval mode, with optimizer-state slicing.

What a zero gate leaves behind is folded, so the shrunk network computes what the masked one did:
- a hidden channel whose depthwise-BN scale is 0 outputs relu(beta) everywhere; that constant, through the
  path's last 1x1 conv, is subtracted from the running mean of the block's shared BN (in training mode
  the BN removes a constant anyway); a path without channels is dropped;
- a block without paths keeps its skip; the shared BN applied to 0 goes to the block's `folded_bias`;
- tokens with a zero gate are removed exactly (see transformer.py); with no token left the transformer's
  constant output goes to `folded_bias`;
- an HRT FFN hidden channel whose depthwise-BN scale is 0 outputs gelu(beta): through the FFN's last 1x1
  conv it is subtracted from the running mean of the FFN's output BN, as for a kernel path; with no channel
  left the FFN's constant output goes to the HRT part's `folded_bias` and the FFN (and its LayerNorm) go;
- an inert cross-scale fusion edge (no path, no transformer, no skip) is a constant: it is added to the
  `folded_bias` of the i->i edge it is summed with and removed;
- the top branch (then the next one, ...) whose blocks are all inert, whose incoming edges are all inert and
  that feeds no other branch is a constant map: it is removed and returns that constant (`dead_branch_{b}`).

`Surgery` records every sliced parameter, so `remap_optimizer` slices the optimizer's per-parameter
state (momentum, Adam moments) the same way, in place, and drops the state of removed parameters.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.architecture.hr.inverted_residual import HRTPart, InvertedResidual, KernelPath
from src.architecture.hr.supernet import HRSupernet
from src.architecture.hr.transformer import TokenTransformer


def _index(t: Tensor, idx: Sequence[Optional[Tensor]]) -> Tensor:
    for dim, ix in enumerate(idx):
        if ix is not None:
            t = t.index_select(dim, ix.to(t.device))
    return t


class Surgery:
    """Slices parameters and buffers, remembering which elements of which original parameter survive."""

    def __init__(self):
        self._origin: Dict[nn.Parameter, Tuple[nn.Parameter, List[Optional[Tensor]]]] = {}

    def take(self, module: nn.Module, name: str, dim: int, index: Tensor) -> None:
        """Keep entries `index` along `dim` of `module.<name>` (a parameter or a buffer)."""
        old = getattr(module, name)
        data = old.detach().index_select(dim, index)
        if not isinstance(old, nn.Parameter):
            setattr(module, name, data)
            return
        new = nn.Parameter(data, requires_grad=old.requires_grad)
        source, idx = self._origin.pop(old, (old, [None] * old.dim()))
        idx = list(idx)
        idx[dim] = index if idx[dim] is None else idx[dim][index]
        self._origin[new] = (source, idx)
        setattr(module, name, new)

    def slice_like(self, param: nn.Parameter, tensor: Tensor) -> Tensor:
        """`tensor` (shaped like the original of `param`) sliced as `param` was; unchanged if it was not."""
        _, idx = self._origin.get(param, (None, None))
        return tensor if idx is None else _index(tensor, idx)

    def remap_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        """In place: sliced parameters replace their originals (state sliced alike), removed ones leave."""
        by_source = {id(src): (new, idx) for new, (src, idx) in self._origin.items()}
        live = {id(p) for p in model.parameters()}
        for group in optimizer.param_groups:
            kept = []
            for p in group["params"]:
                state = optimizer.state.pop(p, None)
                new, idx = by_source.get(id(p), (p, None))
                if id(new) not in live:
                    continue
                if state is not None:
                    optimizer.state[new] = state if idx is None else {
                        k: _index(v, idx) if torch.is_tensor(v) and v.shape == p.shape else v
                        for k, v in state.items()}
                kept.append(new)
            group["params"] = kept


def bn_at_zero(bn: nn.BatchNorm2d) -> Tensor:
    """Eval-mode output of `bn` for an all-zero input (per channel)."""
    return (bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)).detach()


def _take_bn(bn: nn.BatchNorm2d, index: Tensor, surgery: Surgery) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        surgery.take(bn, name, 0, index)
    bn.num_features = len(index)


def _take_conv(conv: nn.Conv2d, index: Tensor, dim: int, surgery: Surgery) -> None:
    surgery.take(conv, "weight", dim, index)
    if conv.bias is not None and (dim == 0 or conv.groups > 1):
        surgery.take(conv, "bias", 0, index)
    if conv.groups > 1:
        conv.groups = conv.in_channels = conv.out_channels = len(index)
    elif dim == 0:
        conv.out_channels = len(index)
    else:
        conv.in_channels = len(index)


def _take_hidden(expand: nn.Conv2d, expand_bn: nn.BatchNorm2d, dw: nn.Conv2d, dw_bn: nn.BatchNorm2d,
                 project: nn.Conv2d, index: Tensor, surgery: Surgery) -> None:
    """Keep hidden channels `index` of a 1x1 -> BN -> depthwise -> BN -> 1x1 chain (a path, an HRT FFN)."""
    _take_conv(expand, index, 0, surgery)
    _take_bn(expand_bn, index, surgery)
    _take_conv(dw, index, 0, surgery)
    _take_bn(dw_bn, index, surgery)
    _take_conv(project, index, 1, surgery)


def _shrink_path(path: KernelPath, index: Tensor, surgery: Surgery) -> None:
    _take_hidden(path.expand, path.expand_bn, path.dw, path.dw_bn, path.project, index, surgery)


def _shrink_tokens(t: TokenTransformer, index: Tensor, surgery: Surgery) -> None:
    _take_conv(t.tokenize, index, 0, surgery)
    _take_bn(t.token_bn, index, surgery)
    surgery.take(t, "gate", 0, index)
    surgery.take(t, "queries", 0, index)
    _take_conv(t.project, index, 1, surgery)


def _shrink_ffn(hrt: HRTPart, keep: Tensor, surgery: Surgery) -> None:
    """Keep the FFN hidden channels marked True; fold the dead ones' constants (see the module docstring)."""
    expand, expand_bn, _, dw, dw_bn, _, project, out_bn, _ = hrt.ffn.net
    dead = ~keep
    if not dead.any():
        return
    out_bn.running_mean -= project.weight[:, dead, 0, 0] @ F.gelu(dw_bn.bias[dead])
    if not keep.any():
        hrt.folded_bias += F.gelu(bn_at_zero(out_bn) + out_bn.weight * project.bias
                                  / torch.sqrt(out_bn.running_var + out_bn.eps))
        hrt.ffn = hrt.norm2 = None
        return
    _take_hidden(expand, expand_bn, dw, dw_bn, project, keep.nonzero().flatten(), surgery)


@torch.no_grad()
def shrink_block(block: InvertedResidual, keeps: Sequence[Tensor], surgery: Surgery) -> None:
    """Keep the units marked True in `keeps` (bool masks in `block.gate_groups()` order)."""
    names = [name for name, _, _ in block.named_gate_groups()]
    if "hrt.ffn" in names:
        _shrink_ffn(block.hrt, keeps[names.index("hrt.ffn")], surgery)
    n_paths = len(block.paths)
    kept = []
    for path, keep in zip(block.paths, keeps[:n_paths]):
        dead = ~keep
        if dead.any():
            block.bn.running_mean -= path.project.weight[:, dead, 0, 0] @ torch.relu(path.dw_bn.bias[dead])
            if keep.any():
                _shrink_path(path, keep.nonzero().flatten(), surgery)
        if keep.any():
            kept.append(path)
    if len(kept) < n_paths:
        block.paths = nn.ModuleList(kept)
    if not kept and block.bn is not None:
        block.folded_bias += bn_at_zero(block.bn)
        block.bn = None
    if block.transformer is not None:
        keep = keeps[n_paths]
        if not keep.any():
            block.folded_bias += bn_at_zero(block.transformer.out_bn)
            block.transformer = None
        elif not keep.all():
            _shrink_tokens(block.transformer, keep.nonzero().flatten(), surgery)


def _branch_removable(net: HRSupernet, b: int) -> bool:
    for stage in net.stages:
        if b < len(stage.parallel) and not all(blk.inert for blk in stage.parallel[b]):
            return False
        for key, edge in stage.fuse.edges.items():
            j, i = map(int, key.split("_"))
            if (i == b and not edge.inert) or (j == b and i < b):
                return False
    return True


@torch.no_grad()
def prune_dead_structure(net: HRSupernet, probe_hw: Tuple[int, int] = (64, 64)) -> Dict[str, List[str]]:
    """Remove inert cross-scale fusion edges and dead top branches of `net` (exact in eval mode)."""
    removed_edges, removed_branches = [], []
    for s, stage in enumerate(net.stages):
        edges = stage.fuse.edges
        for key in list(edges.keys()):
            j, i = map(int, key.split("_"))
            if j != i and i < stage.fuse.n_in and edges[key].inert and edges[key].skip is None:
                edges[f"{i}_{i}"].folded_bias += edges[key].folded_bias
                del edges[key]
                removed_edges.append(f"stages.{s}.fuse.edges.{key}")
    dead = []
    while net.num_branches - len(dead) > 1 and _branch_removable(net, net.num_branches - 1 - len(dead)):
        dead.append(net.num_branches - 1 - len(dead))
    if dead:
        modes = {m: m.training for m in net.modules()}
        net.eval()
        probe = next(net.parameters()).new_zeros(1, 3, *probe_hw)
        outs = net(probe)
        for m, mode in modes.items():
            m.train(mode)
        for b in dead:
            for stage in net.stages:
                if b < len(stage.parallel):
                    del stage.parallel[b]
                for key in [k for k in stage.fuse.edges if b in map(int, k.split("_"))]:
                    del stage.fuse.edges[key]
                stage.fuse.n_in, stage.fuse.n_out = min(stage.fuse.n_in, b), min(stage.fuse.n_out, b)
            net.register_buffer(f"dead_branch_{b}", outs[b][0, :, 0, 0].clone())
            removed_branches.append(str(b))
        net.num_branches -= len(dead)
    return {"edges": removed_edges, "branches": removed_branches}
