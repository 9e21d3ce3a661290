"""The activation pattern of one forward, recorded and replayed: finite differences at a fixed pattern.

A ReLU network's gradient jumps where a pre-activation crosses 0, and a max pool's where its argmax moves.
DARTS' central difference [grad_alpha L(w + Rz) - grad_alpha L(w - Rz)] / 2R straddles such kinks: every
unit that flips between the two points adds its jump / 2R, and the number of flips shrinks only in
proportion to R, so the estimate does not converge as R -> 0. Autograd's Hessian-vector product is the
derivative at w's own pattern (a ReLU's derivative is its mask, its second derivative 0).

`record()` notes, in call order, the mask of every ReLU (in the activation's dtype: multiplying by a bool
mask is several times slower), the mask and clamped values of every ReLU6 / hardtanh, the argmax of every 2-D
max pool, and the CPU RNG state the forward started from. Inside `replay()` the same calls apply the recorded
mask (x * mask, plus the clamped values) and gather at the recorded argmax, from the same RNG state (dropout
draws the same masks). The replayed loss is then a smooth function of w that equals the real one at w, and
its finite differences converge to autograd's product. Other piecewise-linear activations and pools are
refused while recording (their kinks would not be frozen). Kinks that only a parameter or a normaliser can
reach (`abs` of a gate, `amax` before a softmax, a `clamp_min` guard) are not frozen: a perturbation of norm
FD_EPS does not cross them in practice. A training-mode batch norm over very few values per channel (batch 2
at a 1x1 map) is smooth but nearly kinked, and a finite difference is not accurate there: recording notes the
fewest values per channel (`nearly_kinked`).
"""
from contextlib import contextmanager
from typing import List

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_RELUS = (F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_)
_CLAMPS = (F.relu6, F.hardtanh, F.hardtanh_)  # pass-through between two bounds, constant outside
_ALWAYS_INPLACE = (torch.relu_, torch.Tensor.relu_, F.hardtanh_)
_INPLACE_POSITION = {F.relu: 1, F.relu6: 1, F.hardtanh: 3}  # where the positional `inplace` argument sits
FEW_BN_VALUES = 8  # a training-mode batch norm over fewer values per channel is nearly kinked
_REFUSED = (F.hardswish, F.hardsigmoid, F.leaky_relu, F.leaky_relu_, F.prelu, F.rrelu, F.threshold, F.threshold_,
            F.max_pool1d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
            F.fractional_max_pool2d, F.max_pool2d_with_indices)


def _inplace(func, args, kwargs) -> bool:
    if func in _ALWAYS_INPLACE:
        return True
    position = _INPLACE_POSITION.get(func)
    return bool(kwargs.get("inplace", args[position] if position is not None and len(args) > position else False))


def _clamp_bounds(func, args, kwargs):
    if func is F.relu6:
        return 0.0, 6.0
    options = {**dict(zip(("min_val", "max_val"), args[1:3])), **kwargs}
    return options.get("min_val", -1.0), options.get("max_val", 1.0)


def _max_pool_args(args, kwargs) -> dict:
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    return {**dict(zip(names, args[1:])), **kwargs}


def _bn_values_per_channel(args, kwargs) -> float:
    """Values per channel a batch norm normalises over (infinite in eval mode: running statistics)."""
    x, training = args[0], kwargs.get("training", args[5] if len(args) > 5 else False)
    return x.numel() // x.shape[1] if training and x.dim() > 1 else float("inf")


class _PatternMode(TorchFunctionMode):
    def __init__(self, pattern: "ActivationPattern", recording: bool):
        super().__init__()
        self.pattern, self.recording, self.position = pattern, recording, 0

    def _next(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        entries = self.pattern.entries
        if self.position >= len(entries) or entries[self.position][:2] != (kind, x.shape):
            raise RuntimeError(f"activation pattern: call {self.position} ({kind} of shape {tuple(x.shape)}) does "
                               "not match the recorded forward")
        self.position += 1
        return entries[self.position - 1][2]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELUS or func in _CLAMPS:  # y = x * mask + constant, piecewise
            x = args[0]
            if self.recording:
                if func in _RELUS:
                    out = func(*args, **kwargs)
                    entry = (torch.sign(out.detach()), None)  # the mask in x's dtype, 0 or 1
                else:
                    low, high = _clamp_bounds(func, args, kwargs)
                    mask = ((x > low) & (x < high)).to(x.dtype)  # before an in-place op changes x
                    out = func(*args, **kwargs)
                    entry = (mask, out.detach() * (1 - mask))
                self.pattern.entries.append(("piecewise", x.shape, entry))
                return out
            mask, constant = self._next("piecewise", x)
            if _inplace(func, args, kwargs):
                x.mul_(mask)
                return x if constant is None else x.add_(constant)
            return x * mask if constant is None else torch.addcmul(constant, x, mask)
        if func is F.max_pool2d:
            x, options = args[0], _max_pool_args(args, kwargs)
            with_indices = options.pop("return_indices", False)
            if self.recording:
                out, indices = F.max_pool2d_with_indices(x, return_indices=True, **options)
                self.pattern.entries.append(("max_pool2d", x.shape, indices))
            else:
                indices = self._next("max_pool2d", x)
                out = x.flatten(2).gather(2, indices.flatten(2)).view(indices.shape)
            return (out, indices) if with_indices else out
        if self.recording and func is F.batch_norm:
            self.pattern.fewest_bn_values = min(self.pattern.fewest_bn_values, _bn_values_per_channel(args, kwargs))
        if self.recording and func in _REFUSED:
            raise NotImplementedError(f"SEARCH.HESSIAN finite_difference cannot freeze the kinks of "
                                      f"{getattr(func, '__name__', func)}; use SEARCH.HESSIAN forward_mode")
        return func(*args, **kwargs)


class ActivationPattern:
    """ReLU / ReLU6 masks and max-pool argmaxes of one forward (`record`), applied to later forwards (`replay`)."""

    def __init__(self):
        self.entries: List[tuple] = []
        self.rng_state = None
        self.fewest_bn_values = float("inf")  # the fewest values per channel a training-mode batch norm normalised

    @property
    def nearly_kinked(self) -> bool:
        """A batch norm normalised fewer than FEW_BN_VALUES values per channel: a finite difference is inaccurate."""
        return self.fewest_bn_values < FEW_BN_VALUES

    @contextmanager
    def record(self):
        self.entries.clear()
        self.rng_state, self.fewest_bn_values = torch.get_rng_state(), float("inf")
        with _PatternMode(self, recording=True):
            yield self

    @contextmanager
    def replay(self):
        if self.rng_state is None:
            raise RuntimeError("activation pattern: replay() before record()")
        mode = _PatternMode(self, recording=False)
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            with mode:
                yield self
        if mode.position != len(self.entries):
            raise RuntimeError(f"activation pattern: the replayed forward made {mode.position} of the "
                               f"{len(self.entries)} recorded calls")
