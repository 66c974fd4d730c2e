r"""Pruning: zero the least important weights (unstructured) or remove whole neurons and channels (structured).

**Unstructured magnitude pruning** (:func:`prune_magnitude`). The prunable weights are those of
``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` layers (biases only on request). For an ``amount``
:math:`a \in [0, 1)` of :math:`n` weights, the :math:`k = \mathrm{round}(a\,n)` weights of smallest magnitude
:math:`|w|` are set to exactly 0:

.. math:: m_i = \begin{cases} 0 & \text{if } |w_i| \text{ is among the } k \text{ smallest} \\ 1 & \text{otherwise}
          \end{cases}, \qquad w \leftarrow m \odot w .

``scope="global"`` ranks the weights of all layers together (a layer full of small weights loses more of them);
``scope="layer"`` prunes :math:`\mathrm{round}(a\,n_l)` weights in every layer :math:`l`. Ties are broken
deterministically: among equal magnitudes, the weight that comes first (layers in module order, entries in
row-major order) is pruned first. Already-zero weights are the smallest, so ``amount`` is the *total*
sparsity after the call (the usual target of a gradual schedule), not a fraction of what is left. On
weights without ties the masks are exactly those of ``torch.nn.utils.prune.l1_unstructured`` and
``global_unstructured``.

Zeros alone change neither the size of the dense tensors a file stores nor the time a dense matrix product
takes; only a sparse encoding (:func:`mmtutor.regularise.csr_encode`) or structured pruning does.

**Structured pruning** (:func:`prune_channels`). Output channel :math:`c` of a layer (row :math:`c` of a
linear weight :math:`W`, or filter :math:`c` of a convolution) is scored by the :math:`\ell_p` norm of its
weights, :math:`\lVert W_{c,\cdot} \rVert_p`; the :math:`\mathrm{round}(a\,C)` channels with the smallest
scores are *removed*: the layer loses those rows (and bias entries), a batch normalisation after it loses
those features, and the next layer loses the input columns (or input channels) that read them. The result
is a genuinely smaller dense model, whose matrix products do proportionally less work, and it computes
exactly what the original computes when the next layer ignores the removed channels. The kept channels are
those of ``torch.nn.utils.prune.ln_structured(..., dim=0)``, which only masks them.
"""

from __future__ import annotations

import copy
import math
from typing import Iterable

import torch
from torch import nn

__all__ = ["PRUNABLE_TYPES", "prunable_parameters", "prune_magnitude", "apply_masks", "keep_pruned_at_zero",
           "sparsity_report", "channel_norms", "channels_to_keep", "prune_channels", "prune_linear_neurons"]

#: The layer types whose weights this module prunes.
PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


# --------------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------------

def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__}: {value!r}"


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")


def _check_amount(amount) -> float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise TypeError(f"amount must be a number in [0, 1), got {_describe(amount)}")
    if not math.isfinite(amount) or not 0 <= amount < 1:
        raise ValueError(f"amount must be in [0, 1) (the fraction of weights to remove), got {amount!r}")
    return float(amount)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {_describe(value)}")
    return value


def _check_p(p) -> int:
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be 1 (L1 norm) or 2 (L2 norm), got {p!r}")
    return int(p)


def _number_to_prune(amount: float, n: int) -> int:
    """:math:`\\mathrm{round}(a\\,n)` with Python's rounding, the count ``torch.nn.utils.prune`` uses."""
    return round(amount * n)


# --------------------------------------------------------------------------------------------------
# unstructured magnitude pruning
# --------------------------------------------------------------------------------------------------

def _prunable(model: nn.Module, include_bias: bool) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """``(name, layer, tensor)`` for every prunable weight (and bias), each shared tensor once."""
    _check_model(model)
    include_bias = _check_bool("include_bias", include_bias)
    found, seen = [], set()
    for module_name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_TYPES):
            continue
        for attribute in ("weight", "bias") if include_bias else ("weight",):
            tensor = getattr(module, attribute, None)
            if tensor is None or id(tensor) in seen:
                continue
            seen.add(id(tensor))
            found.append((f"{module_name}.{attribute}" if module_name else attribute, module, tensor))
    if not found:
        raise ValueError(f"model must contain a prunable layer ({', '.join(t.__name__ for t in PRUNABLE_TYPES)}), "
                         f"found none in {type(model).__name__}")
    return found


def prunable_parameters(model: nn.Module, include_bias: bool = False) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of every weight (and, if ``include_bias``, bias) of the layers in :data:`PRUNABLE_TYPES`.

    Names are those of ``model.state_dict()`` (``"0.weight"``); layers come in module order, and a tensor
    shared by several layers is listed once. Raises ``ValueError`` if the model has no such layer.
    """
    return [(name, tensor) for name, _, tensor in _prunable(model, include_bias)]


def _keep_mask(magnitude: torch.Tensor, k: int) -> torch.Tensor:
    """A flat boolean mask that drops the ``k`` smallest entries of ``magnitude`` (ties: lowest index first)."""
    keep = torch.ones(magnitude.numel(), dtype=torch.bool, device=magnitude.device)
    if k:
        keep[torch.argsort(magnitude.reshape(-1), stable=True)[:k]] = False
    return keep


@torch.no_grad()
def prune_magnitude(model: nn.Module, amount: float, scope: str = "global",
                    include_bias: bool = False) -> dict[str, torch.Tensor]:
    """Zero the ``amount`` fraction of smallest-magnitude weights of ``model``, in place.

    Parameters
    ----------
    model : nn.Module
        Its ``nn.Linear``/``nn.Conv1d``/``nn.Conv2d`` weights are pruned; other parameters are untouched.
    amount : float
        Fraction in :math:`[0, 1)`; exactly :math:`\\mathrm{round}(a\\,n)` weights are zero afterwards
        (:math:`n` counted over all layers for ``scope="global"``, per layer for ``scope="layer"``) unless
        more than that were zero before.
    scope : {"global", "layer"}
        Rank all weights together, or each layer's weights separately.
    include_bias : bool
        Prune the biases too (ranked with the weights).

    Returns
    -------
    dict
        ``{name: mask}``: boolean tensors shaped like each pruned tensor, ``True`` where a weight is kept;
        pass them to :func:`apply_masks` or :func:`keep_pruned_at_zero` during fine-tuning.
    """
    amount = _check_amount(amount)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    tensors = prunable_parameters(model, include_bias)
    for name, tensor in tensors:
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"model must have finite weights to rank them, found NaN or inf in {name!r}")
    if scope == "layer":
        masks = {name: _keep_mask(t.abs(), _number_to_prune(amount, t.numel())).reshape(t.shape)
                 for name, t in tensors}
    else:
        magnitude = torch.cat([t.detach().abs().reshape(-1) for _, t in tensors])
        flat = _keep_mask(magnitude, _number_to_prune(amount, magnitude.numel()))
        masks, start = {}, 0
        for name, t in tensors:
            masks[name] = flat[start:start + t.numel()].reshape(t.shape)
            start += t.numel()
    for name, t in tensors:
        t.mul_(masks[name])
    return masks


def _check_masks(model: nn.Module, masks) -> dict[str, torch.Tensor]:
    _check_model(model)
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be the dict returned by prune_magnitude, got {_describe(masks)}")
    state = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in state:
            raise ValueError(f"masks must name parameters of model, got unknown name {name!r}")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != state[name].shape:
            raise ValueError(f"masks[{name!r}] must be a bool tensor of shape {tuple(state[name].shape)}, "
                             f"got {_describe(mask)}")
    return {name: state[name] for name in masks}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Multiply each named parameter of ``model`` by its mask, in place (re-zeroes pruned weights)."""
    for name, parameter in _check_masks(model, masks).items():
        parameter.mul_(masks[name])


def keep_pruned_at_zero(model: nn.Module, masks: dict[str, torch.Tensor]) -> list:
    """Register gradient hooks so that fine-tuning never revives a pruned weight; returns the hook handles.

    Each hook multiplies the gradient by the mask, so a pruned weight's gradient is exactly 0. With a fresh
    SGD, Adam or AdamW optimizer (whose moment estimates then stay 0, and whose decoupled weight decay scales
    0 to 0) the weight stays exactly 0, and :func:`mmtutor.train.fit` can be used unchanged. Call
    ``handle.remove()`` on each handle to lift the constraint.
    """
    parameters = _check_masks(model, masks)
    return [parameters[name].register_hook(lambda grad, mask=mask: grad * mask) for name, mask in masks.items()]


def sparsity_report(model: nn.Module, include_bias: bool = False):
    """Exact zeros per prunable tensor and overall, as a :class:`pandas.DataFrame`.

    One row per tensor of :func:`prunable_parameters` with columns ``name``, ``layer`` (the layer type),
    ``shape``, ``numel``, ``zeros`` and ``sparsity`` (``zeros / numel``), then a last row named ``"global"``
    with the totals. A weight counts as zero only if it equals 0.0 exactly.
    """
    import pandas as pd

    rows = []
    for name, layer, tensor in _prunable(model, include_bias):
        zeros = int((tensor == 0).sum())
        rows.append({"name": name, "layer": type(layer).__name__, "shape": str(tuple(tensor.shape)),
                     "numel": tensor.numel(),
                     "zeros": zeros, "sparsity": zeros / tensor.numel()})
    numel, zeros = sum(r["numel"] for r in rows), sum(r["zeros"] for r in rows)
    rows.append({"name": "global", "layer": "", "shape": "", "numel": numel, "zeros": zeros,
                 "sparsity": zeros / numel})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# structured pruning
# --------------------------------------------------------------------------------------------------

def channel_norms(weight: torch.Tensor, p: int = 2) -> torch.Tensor:
    """:math:`\\lVert W_{c,\\cdot}\\rVert_p` for each output channel :math:`c` (dimension 0) of a weight tensor."""
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point() or weight.ndim < 2:
        raise TypeError(f"weight must be a floating-point tensor with >= 2 dimensions, got {_describe(weight)}")
    return torch.linalg.vector_norm(weight.detach().reshape(len(weight), -1), ord=_check_p(p), dim=1)


def channels_to_keep(weight: torch.Tensor, amount: float, p: int = 2) -> torch.Tensor:
    """Sorted indices of the output channels that survive pruning ``amount`` of them by :func:`channel_norms`.

    The :math:`\\mathrm{round}(a\\,C)` channels of smallest norm go (ties: lowest index first); at least one
    channel must remain.
    """
    norms = channel_norms(weight, p)
    amount = _check_amount(amount)
    k = _number_to_prune(amount, len(norms))
    if k >= len(norms):
        raise ValueError(f"amount={amount} would remove all {len(norms)} channels; it must leave at least one")
    return torch.nonzero(_keep_mask(norms, k)).reshape(-1)


def _check_pairs(model: nn.Module, layer_pairs) -> list[tuple[str, str | None, str]]:
    if isinstance(layer_pairs, (str, bytes)) or not isinstance(layer_pairs, Iterable):
        raise TypeError(f"layer_pairs must be a list of (producer, consumer) or (producer, norm, consumer) "
                        f"module names, got {_describe(layer_pairs)}")
    pairs = []
    for pair in layer_pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) not in (2, 3) or \
                not all(isinstance(name, str) for name in pair):
            raise ValueError(f"layer_pairs must hold (producer, consumer) or (producer, norm, consumer) tuples "
                             f"of module names, got {pair!r}")
        pairs.append((pair[0], pair[1], pair[2]) if len(pair) == 3 else (pair[0], None, pair[1]))
    if not pairs:
        raise ValueError("layer_pairs must name at least one (producer, consumer) pair, got none")
    producers = [p for p, _, _ in pairs]
    if len(set(producers)) != len(producers):
        raise ValueError(f"layer_pairs must name each producer once, got {producers}")
    names = dict(model.named_modules())
    for pair in pairs:
        for name in pair:
            if name is not None and name not in names:
                raise ValueError(f"layer_pairs must name modules of model, got unknown name {name!r} "
                                 f"(known: {[n for n in names if n][:12]}...)")
    return pairs


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def _out_size(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def _check_layer_pair(producer_name: str, producer: nn.Module, norm: nn.Module | None, consumer_name: str,
                      consumer: nn.Module) -> int:
    """Validate one pair and return how many consumer inputs each producer channel feeds (1 unless flattened)."""
    for role, name, module in (("producer", producer_name, producer), ("consumer", consumer_name, consumer)):
        if not isinstance(module, PRUNABLE_TYPES):
            raise ValueError(f"layer_pairs: {role} {name!r} must be one of "
                             f"{[t.__name__ for t in PRUNABLE_TYPES]}, got {type(module).__name__}")
        if getattr(module, "groups", 1) != 1:
            raise ValueError(f"layer_pairs: {role} {name!r} is a grouped convolution (groups={module.groups}); "
                             "only groups=1 is supported")
    channels = _out_size(producer)
    if norm is not None and (not isinstance(norm, _NORM_TYPES) or norm.num_features != channels):
        raise ValueError(f"layer_pairs: the norm between {producer_name!r} and {consumer_name!r} must be a "
                         f"BatchNorm1d/2d with {channels} features, got {norm!r}")
    if isinstance(consumer, nn.Linear):
        inputs = consumer.in_features
        linear_to_linear = isinstance(producer, nn.Linear)
        if inputs % channels or (linear_to_linear and inputs != channels):
            raise ValueError(f"layer_pairs: consumer {consumer_name!r} has {inputs} inputs, which must be "
                             f"{channels if linear_to_linear else f'a multiple of {channels}'} (the outputs "
                             f"of {producer_name!r})")
        return inputs // channels
    if isinstance(producer, nn.Linear) or consumer.in_channels != channels:
        raise ValueError(f"layer_pairs: consumer {consumer_name!r} must be a convolution reading the "
                         f"{channels} channels of convolution {producer_name!r}, got {consumer!r}")
    return 1


def _keep_outputs(module: nn.Module, keep: torch.Tensor) -> nn.Module:
    smaller = copy.deepcopy(module)
    smaller.weight = nn.Parameter(module.weight.detach()[keep].clone(), module.weight.requires_grad)
    if module.bias is not None:
        smaller.bias = nn.Parameter(module.bias.detach()[keep].clone(), module.bias.requires_grad)
    if isinstance(module, nn.Linear):
        smaller.out_features = len(keep)
    else:
        smaller.out_channels = len(keep)
    return smaller


def _keep_features(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    smaller = copy.deepcopy(norm)
    for name in ("weight", "bias"):
        tensor = getattr(norm, name)
        if tensor is not None:
            setattr(smaller, name, nn.Parameter(tensor.detach()[keep].clone(), tensor.requires_grad))
    for name in ("running_mean", "running_var"):
        if getattr(norm, name) is not None:
            setattr(smaller, name, getattr(norm, name)[keep].clone())
    smaller.num_features = len(keep)
    return smaller


def _keep_inputs(module: nn.Module, keep: torch.Tensor, per_channel: int) -> nn.Module:
    smaller = copy.deepcopy(module)
    # Flattening (N, C, ...) puts channel c's features at c * per_channel ... (c + 1) * per_channel - 1.
    columns = (keep[:, None] * per_channel + torch.arange(per_channel, device=keep.device)).reshape(-1)
    smaller.weight = nn.Parameter(module.weight.detach()[:, columns].clone(), module.weight.requires_grad)
    if isinstance(module, nn.Linear):
        smaller.in_features = len(columns)
    else:
        smaller.in_channels = len(keep)
    return smaller


def prune_channels(model: nn.Module, layer_pairs, amount: float, p: int = 2) -> nn.Module:
    """A smaller copy of ``model``: each producer's weakest output channels, and the inputs that read them, removed.

    Parameters
    ----------
    model : nn.Module
        Not modified.
    layer_pairs : list of tuples of module names
        ``(producer, consumer)`` or ``(producer, norm, consumer)``, names as in ``model.named_modules()``.
        The producer is an ``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d`` (``groups=1``); the consumer is the
        layer that reads its outputs: an ``nn.Linear`` after a linear layer, a convolution or an
        ``nn.Linear`` after a convolution (the consumer then reads the flattened ``(C, ...)`` map, each
        channel's values contiguous, as ``nn.Flatten`` lays them out); ``norm``, if given, is a
        ``BatchNorm1d``/``BatchNorm2d`` between them. Whatever else lies between must act on each channel
        separately (activations, dropout, pooling, flattening); a layer may be the consumer of one pair and
        the producer of the next, which prunes a whole chain.
    amount : float
        Fraction in :math:`[0, 1)` of each producer's output channels to remove (:math:`\\mathrm{round}(a\\,C)`).
    p : {1, 2}
        The norm that scores a channel, :math:`\\lVert W_{c,\\cdot}\\rVert_p`.

    Returns
    -------
    nn.Module
        The pruned copy, with fewer parameters. It computes exactly what ``model`` computes once the
        consumers' weights for the removed channels are zeroed.
    """
    _check_model(model)
    amount = _check_amount(amount)
    p = _check_p(p)
    pairs = _check_pairs(model, layer_pairs)
    pruned = copy.deepcopy(model)
    for producer_name, norm_name, consumer_name in pairs:
        producer, consumer = pruned.get_submodule(producer_name), pruned.get_submodule(consumer_name)
        norm = pruned.get_submodule(norm_name) if norm_name is not None else None
        per_channel = _check_layer_pair(producer_name, producer, norm, consumer_name, consumer)
        keep = channels_to_keep(producer.weight, amount, p)
        _set_submodule(pruned, producer_name, _keep_outputs(producer, keep))
        if norm is not None:
            _set_submodule(pruned, norm_name, _keep_features(norm, keep))
        _set_submodule(pruned, consumer_name, _keep_inputs(consumer, keep, per_channel))
    return pruned


def prune_linear_neurons(model: nn.Module, layer_pairs, amount: float, p: int = 2) -> nn.Module:
    """:func:`prune_channels` for multilayer perceptrons: both layers of every pair must be ``nn.Linear``.

    Neuron :math:`c` of the first layer (row :math:`c` of :math:`W_1`, entry :math:`c` of :math:`b_1`) and
    column :math:`c` of the next layer's :math:`W_2` go together; for an MLP
    :math:`W_2\\,\\sigma(W_1 x + b_1) + b_2` this is the same function as before with the removed neurons'
    outgoing weights set to 0.
    """
    _check_model(model)
    for pair in _check_pairs(model, layer_pairs):
        for name in pair:
            if name is not None and not isinstance(model.get_submodule(name), (nn.Linear, *_NORM_TYPES)):
                raise ValueError(f"layer_pairs must name nn.Linear layers, got {name!r}: "
                                 f"{type(model.get_submodule(name)).__name__}")
    return prune_channels(model, layer_pairs, amount, p)
