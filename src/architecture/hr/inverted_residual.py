"""Searchable multi-kernel inverted-residual block (HR-NAS).

Parallel kernel paths, each of its own hidden width h_k:
    1x1 (inp -> h_k) BN ReLU -> k x k depthwise (carries the stride) BN ReLU -> 1x1 (h_k -> oup),
summed, then one shared BN; plus the skip ("identity", "conv" = grouped 1x1 with the stride + BN, or
"none"), plus an optional token transformer on the residual path, plus `folded_bias` (a buffer holding the
constant output of parts removed by shrinking; zero in a fresh supernet). A stride-1, inp == oup block may
end with an HRFormer block (`HRTPart`: window attention + ConvFFN) applied to that output.

Gates: the BN scale after each depthwise conv (one gate group per kernel path), the transformer's
token gates and the BN scale after the HRT FFN's depthwise conv. A block without paths is its skip
(+ folded_bias, + its HRT part): depth is searched implicitly.
"""
import math
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from src.architecture.fabric.depthwise import DepthwiseConv2d
from src.architecture.hr.hrt_block import HRTBlock
from src.architecture.hr.transformer import TokenTransformer

SKIPS = ("identity", "conv", "none")


class KernelPath(nn.Module):
    """One kernel path; its hidden channels are the atomic units of slimming (gate: `dw_bn.weight`)."""

    def __init__(self, inp: int, hidden: int, oup: int, kernel_size: int, stride: int):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel size must be odd and positive, got {kernel_size}")
        self.kernel_size = kernel_size
        self.expand = nn.Conv2d(inp, hidden, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(hidden)
        self.dw = DepthwiseConv2d(hidden, kernel_size, stride)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, oup, 1, bias=False)

    @property
    def hidden(self) -> int:
        return self.dw_bn.num_features

    def forward(self, x: Tensor) -> Tensor:
        # in-place ReLU: a BN does not save its output for its backward, so the ReLU may overwrite it (README "Speed")
        x = torch.relu_(self.expand_bn(self.expand(x)))
        return self.project(torch.relu_(self.dw_bn(self.dw(x))))


class HRTPart(HRTBlock):
    """An HRT block ending a searchable block, plus `folded_bias` (the constant output of a removed FFN).
    Its FFN's hidden channels are slimmed like a kernel path's (gate: `ffn.net.4.weight`, the BN scale after
    the depthwise conv); with no channel left the FFN is gone and the attention residual stays."""

    def __init__(self, dim: int, heads: int, window: int, ffn: int):
        super().__init__(dim, heads, window, ffn_hidden=ffn)
        self.register_buffer("folded_bias", torch.zeros(dim))

    @property
    def ffn_hidden(self) -> int:
        return 0 if self.ffn is None else self.ffn.net[4].num_features

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + self.folded_bias.view(1, -1, 1, 1)

    def spec(self) -> Dict:
        return {"heads": self.attn.num_heads, "window": self.attn.window_size, "ffn": self.ffn_hidden}


class InvertedResidual(nn.Module):
    """inp -> oup with `stride`; `channels[i]` hidden channels on the path of kernel `kernel_sizes[i]`;
    `hrt` ({"heads", "window", "ffn"} or None) adds an `HRTPart` after the output (stride 1, inp == oup)."""

    def __init__(self, inp: int, oup: int, stride: int, kernel_sizes: Sequence[int], channels: Sequence[int],
                 skip: str = "identity", tokens: int = 0, grid: int = 8, hrt: Optional[Dict] = None):
        super().__init__()
        if skip not in SKIPS:
            raise ValueError(f"unknown skip '{skip}' (one of {', '.join(SKIPS)})")
        if skip == "identity" and (stride != 1 or inp != oup):
            raise ValueError(f"identity skip needs stride 1 and inp == oup (got {inp}->{oup}, stride {stride})")
        if len(kernel_sizes) != len(channels) or any(c < 1 for c in channels):
            raise ValueError(f"kernel_sizes {list(kernel_sizes)} and channels {list(channels)} must pair up, "
                             "with at least one channel per path")
        self.inp, self.oup, self.stride, self.skip_kind = inp, oup, stride, skip
        self.paths = nn.ModuleList(KernelPath(inp, c, oup, k, stride) for k, c in zip(kernel_sizes, channels))
        self.bn = nn.BatchNorm2d(oup) if len(self.paths) else None
        if skip == "conv":
            self.skip = nn.Sequential(nn.Conv2d(inp, oup, 1, stride, groups=math.gcd(inp, oup), bias=False),
                                      nn.BatchNorm2d(oup))
        else:
            self.skip = nn.Identity() if skip == "identity" else None
        self.transformer = TokenTransformer(inp, oup, tokens, grid) if tokens > 0 else None
        self.register_buffer("folded_bias", torch.zeros(oup))
        if hrt is not None and (stride != 1 or inp != oup):
            raise ValueError(f"an HRT part needs stride 1 and inp == oup (got {inp}->{oup}, stride {stride})")
        self.hrt = None if hrt is None else HRTPart(oup, hrt["heads"], hrt["window"], hrt["ffn"])

    # channels_last: oneDNN's depthwise and 1x1 convs, BN and ReLU run 2-3x faster forward + backward on CPU
    # than on NCHW (bench/hr_block.py compares the two by switching this attribute); a no-op when the
    # previous block already produced this layout
    memory_format = torch.channels_last

    def forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        out_hw = (-(-x.shape[-2] // self.stride), -(-x.shape[-1] // self.stride))
        terms = []
        if len(self.paths):
            y = self.paths[0](x)
            for path in self.paths[1:]:
                y = y + path(x)
            terms.append(self.bn(y))
        if self.skip is not None:
            terms.append(self.skip(x))
        if self.transformer is not None:
            terms.append(self.transformer(x, out_hw))
        out = sum(terms) if terms else x.new_zeros(x.shape[0], self.oup, *out_hw)
        out = out + self.folded_bias.view(1, -1, 1, 1)
        return out if self.hrt is None else self.hrt(out)

    # -- slimming protocol
    def named_gate_groups(self) -> List[Tuple[str, str, nn.Parameter]]:
        """(module name, kind, gate vector) per group: a "channel" group per path ("paths.i"), the "token"
        group ("transformer"), then the HRT FFN's "channel" group ("hrt.ffn")."""
        groups = [(f"paths.{i}", "channel", path.dw_bn.weight) for i, path in enumerate(self.paths)]
        if self.transformer is not None:
            groups.append(("transformer", "token", self.transformer.gate))
        if self.hrt is not None and self.hrt.ffn is not None:
            groups.append(("hrt.ffn", "channel", self.hrt.ffn.net[4].weight))
        return groups

    def gate_groups(self) -> List[Tuple[str, nn.Parameter]]:
        """(kind, gate vector) per group, in `named_gate_groups` order."""
        return [(kind, gate) for _, kind, gate in self.named_gate_groups()]

    def named_gates(self) -> Iterator[Tuple[str, nn.Parameter]]:
        """(parameter name, gate) per group, e.g. "paths.0.dw_bn.weight", "transformer.gate"."""
        for module_name, _, gate in self.named_gate_groups():
            suffix = next(n for n, p in self.get_submodule(module_name).named_parameters() if p is gate)
            yield f"{module_name}.{suffix}", gate

    @property
    def inert(self) -> bool:
        """True when the output no longer depends on the input beyond the skip (no path, transformer, HRT)."""
        return not len(self.paths) and self.transformer is None and self.hrt is None

    def spec(self) -> Dict:
        """JSON-able description (the per-block entry of a genotype); "hrt" only when the block has one."""
        spec = {"in": self.inp, "out": self.oup, "stride": self.stride, "skip": self.skip_kind,
                "kernels": [p.kernel_size for p in self.paths], "channels": [p.hidden for p in self.paths],
                "tokens": 0 if self.transformer is None else self.transformer.tokens}
        if self.hrt is not None:
            spec["hrt"] = self.hrt.spec()
        return spec
