"""The second-order Hessian-vector product grad_alpha <grad_w L(w, alpha), z> by reverse-over-forward AD.

One forward pass carries dual weights (w, tangent z) with `torch.autograd.forward_ad`; the loss's tangent is
<grad_w L, z>, a function of alpha recorded by ordinary autograd (`tangent_loss`), and one backward of it gives
the product. No graph of the backward pass is built, unlike the double backward of SEARCH.HESSIAN `exact`.

PyTorch's forward-AD rules of batch norm and layer norm (training mode) give the right tangent, but the
backward of that tangent is wrong: the native rules fail a gradcheck of the tangent (torch 2.14); those of
softmax, log-softmax and cross entropy modify a saved tensor in place, so their tangent cannot be
differentiated at all. Inside `CompositeNormalisations` they run as compositions of elementary ops instead,
whose rules are exact. Running statistics are not updated there; callers wrap the pass in `preserved_buffers`.
"""
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.func import functional_call
from torch.overrides import TorchFunctionMode


def _batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    shape = [1, -1] + [1] * (x.dim() - 2)
    if training or running_mean is None:
        return _normalise(x, [0] + list(range(2, x.dim())), weight, bias, eps, shape)
    return _scale_shift(x - running_mean.reshape(shape), torch.rsqrt(running_var + eps).reshape(shape), weight,
                        bias, shape)


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = list(range(x.dim() - len(normalized_shape), x.dim()))
    return _normalise(x, dims, weight, bias, eps, list(normalized_shape))


def _normalise(x, dims, weight, bias, eps, shape):
    centred = x - x.mean(dims, keepdim=True)
    return _scale_shift(centred, torch.rsqrt((centred * centred).mean(dims, keepdim=True) + eps), weight, bias, shape)


def _scale_shift(centred, inv_std, weight, bias, shape):
    y = centred * (inv_std if weight is None else inv_std * weight.reshape(shape))
    return y if bias is None else y + bias.reshape(shape)


def _shifted(x, dim, dtype):
    """x - max(x) along `dim` (the max held constant: (log-)softmax does not depend on it)."""
    if dim is None:
        raise NotImplementedError("SEARCH.HESSIAN forward_mode: softmax without an explicit dim")
    x = x if dtype is None else x.to(dtype)
    return x - x.detach().amax(dim, keepdim=True)


def _softmax(x, dim=None, *_, dtype=None, **__):
    e = _shifted(x, dim, dtype).exp()
    return e / e.sum(dim, keepdim=True)


def _log_softmax(x, dim=None, *_, dtype=None, **__):
    shifted = _shifted(x, dim, dtype)
    return shifted - shifted.exp().sum(dim, keepdim=True).log()


def _cross_entropy(x, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                   label_smoothing=0.0):
    """Class-index targets, no class weights (the losses of this code base); anything else is refused."""
    if weight is not None or size_average is not None or reduce is not None or target.is_floating_point():
        raise NotImplementedError("SEARCH.HESSIAN forward_mode: cross_entropy with class weights, legacy reduction "
                                  "arguments or soft targets is not supported; use SEARCH.HESSIAN exact")
    logp = _log_softmax(x, 1)
    valid = target != ignore_index
    loss = -logp.gather(1, target.masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * logp.mean(1)
    loss = loss * valid
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / valid.sum()


_COMPOSITES = {F.batch_norm: _batch_norm, F.layer_norm: _layer_norm, F.cross_entropy: _cross_entropy,
               F.softmax: _softmax, torch.softmax: _softmax, torch.Tensor.softmax: _softmax,
               F.log_softmax: _log_softmax, torch.log_softmax: _log_softmax, torch.Tensor.log_softmax: _log_softmax}


class CompositeNormalisations(TorchFunctionMode):
    """Batch norm, layer norm, (log-)softmax and cross entropy as elementary ops, so reverse-over-forward AD
    through them is exact."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return _COMPOSITES.get(func, func)(*args, **(kwargs or {}))


def tangent_loss(core, criterion, batch, weights: dict, z_names, z) -> torch.Tensor:
    """<grad_w L(w, alpha), z> as a function of the arch parameters of `core` (its backward is the product)."""
    with fwAD.dual_level(), CompositeNormalisations():
        params = {n: w.detach() for n, w in weights.items()}
        params.update((n, fwAD.make_dual(weights[n].detach(), zi)) for n, zi in zip(z_names, z))
        tangent = fwAD.unpack_dual(criterion(functional_call(core, params, (batch["image"],)), batch)).tangent
    if tangent is None or not tangent.requires_grad:  # no path from z or from alpha to the loss: the product is 0
        return torch.zeros((), requires_grad=True)
    return tangent
