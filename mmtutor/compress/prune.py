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

import contextlib
import copy
import math
from typing import Iterable

import torch
from torch import nn

from mmtutor.runtime import _describe

__all__ = ["PRUNABLE_TYPES", "prunable_parameters", "prune_magnitude", "apply_masks", "keep_pruned_at_zero",
           "sparsity_report", "channel_norms", "channels_to_keep", "prune_channels", "prune_linear_neurons",
           "avdigits_layer_pairs", "prune_avdigits_classifier", "avdigits_architecture", "attention_layers",
           "prune_attention_heads", "heads_switched_off", "save_avdigits_classifier", "load_avdigits_classifier"]

#: The layer types whose weights this module prunes.
PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


# --------------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------------

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


def _check_consumer(consumer) -> tuple[str, int | None, int | None]:
    """``"name"`` -> ``("name", None, None)``; ``("name", start, stop)`` checked for types."""
    if isinstance(consumer, str):
        return consumer, None, None
    if (isinstance(consumer, (tuple, list)) and len(consumer) == 3 and isinstance(consumer[0], str)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in consumer[1:])):
        return consumer[0], int(consumer[1]), int(consumer[2])
    raise ValueError(f"layer_pairs: a consumer must be a module name or a (name, start, stop) block of its "
                     f"inputs, got {consumer!r}")


def _check_pairs(model: nn.Module, layer_pairs) -> list[tuple[str, str | None, tuple[str, int | None, int | None]]]:
    if isinstance(layer_pairs, (str, bytes)) or not isinstance(layer_pairs, Iterable):
        raise TypeError(f"layer_pairs must be a list of (producer, consumer) or (producer, norm, consumer) "
                        f"module names, got {_describe(layer_pairs)}")
    pairs = []
    for pair in layer_pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) not in (2, 3) or \
                not all(isinstance(name, str) for name in pair[:-1]):
            raise ValueError(f"layer_pairs must hold (producer, consumer) or (producer, norm, consumer) tuples "
                             f"of module names, got {pair!r}")
        consumer = _check_consumer(pair[-1])
        pairs.append((pair[0], pair[1], consumer) if len(pair) == 3 else (pair[0], None, consumer))
    if not pairs:
        raise ValueError("layer_pairs must name at least one (producer, consumer) pair, got none")
    producers = [p for p, _, _ in pairs]
    if len(set(producers)) != len(producers):
        raise ValueError(f"layer_pairs must name each producer once, got {producers}")
    names = dict(model.named_modules())
    for producer, norm, (consumer, _, _) in pairs:
        for name in (producer, norm, consumer):
            if name is not None and name not in names:
                raise ValueError(f"layer_pairs must name modules of model, got unknown name {name!r} "
                                 f"(known: {[n for n in names if n][:12]}...)")
    return pairs


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def _out_size(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def _in_size(module: nn.Module) -> int:
    return module.in_features if isinstance(module, nn.Linear) else module.in_channels


def _check_layer_pair(producer_name: str, producer: nn.Module, norm: nn.Module | None, consumer_name: str,
                      consumer: nn.Module, block: tuple[int, int]) -> int:
    """Validate one pair and return how many consumer inputs each producer channel feeds (1 unless flattened).

    ``block`` = ``(start, stop)``: the consumer's inputs (in its original numbering) that read the producer.
    """
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
    start, stop = block
    inputs = stop - start
    if isinstance(consumer, nn.Linear):
        linear_to_linear = isinstance(producer, nn.Linear)
        if inputs < 1 or inputs % channels or (linear_to_linear and inputs != channels):
            raise ValueError(f"layer_pairs: consumer {consumer_name!r} reads {inputs} inputs from "
                             f"{producer_name!r}, which must be "
                             f"{channels if linear_to_linear else f'a multiple of {channels}'} (its outputs)")
        return inputs // channels
    if isinstance(producer, nn.Linear) or inputs != channels:
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


def _keep_inputs(module: nn.Module, columns: torch.Tensor) -> nn.Module:
    """A copy of ``module`` that keeps only its inputs ``columns`` (linear columns or convolution input channels)."""
    smaller = copy.deepcopy(module)
    smaller.weight = nn.Parameter(module.weight.detach()[:, columns].clone(), module.weight.requires_grad)
    if isinstance(module, nn.Linear):
        smaller.in_features = len(columns)
    else:
        smaller.in_channels = len(columns)
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
        the producer of the next, which prunes a whole chain. A consumer that reads a *concatenation* of
        several producers is given as ``(name, start, stop)``: the block of its inputs, numbered as in
        ``model``, that reads this producer (e.g. ``("fusion.joint", 256, 512)``).
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
    # For each consumer, the original numbers of the inputs it still has (blocks are given in those numbers).
    present: dict[str, torch.Tensor] = {}
    for producer_name, norm_name, (consumer_name, start, stop) in pairs:
        producer, consumer = pruned.get_submodule(producer_name), pruned.get_submodule(consumer_name)
        norm = pruned.get_submodule(norm_name) if norm_name is not None else None
        original_inputs = _in_size(model.get_submodule(consumer_name))
        if start is None:
            start, stop = 0, original_inputs
        elif not 0 <= start < stop <= original_inputs:
            raise ValueError(f"layer_pairs: the block ({start}, {stop}) of consumer {consumer_name!r} must lie "
                             f"within its {original_inputs} inputs")
        per_channel = _check_layer_pair(producer_name, producer, norm, consumer_name, consumer, (start, stop))
        keep = channels_to_keep(producer.weight, amount, p)
        _set_submodule(pruned, producer_name, _keep_outputs(producer, keep))
        if norm is not None:
            _set_submodule(pruned, norm_name, _keep_features(norm, keep))
        # Flattening (N, C, ...) puts channel c's features at c * per_channel ... (c + 1) * per_channel - 1.
        kept = start + (keep[:, None] * per_channel + torch.arange(per_channel)).reshape(-1)
        block = torch.arange(start, stop)
        dropped = block[~torch.isin(block, kept)]
        numbers = present.get(consumer_name, torch.arange(original_inputs))
        still = ~torch.isin(numbers, dropped)
        present[consumer_name] = numbers[still]
        _set_submodule(pruned, consumer_name, _keep_inputs(consumer, torch.nonzero(still).reshape(-1)))
    return pruned


def prune_linear_neurons(model: nn.Module, layer_pairs, amount: float, p: int = 2) -> nn.Module:
    """:func:`prune_channels` for multilayer perceptrons: both layers of every pair must be ``nn.Linear``.

    Neuron :math:`c` of the first layer (row :math:`c` of :math:`W_1`, entry :math:`c` of :math:`b_1`) and
    column :math:`c` of the next layer's :math:`W_2` go together; for an MLP
    :math:`W_2\\,\\sigma(W_1 x + b_1) + b_2` this is the same function as before with the removed neurons'
    outgoing weights set to 0.
    """
    _check_model(model)
    for producer, norm, (consumer, _, _) in _check_pairs(model, layer_pairs):
        for name in (producer, norm, consumer):
            if name is not None and not isinstance(model.get_submodule(name), (nn.Linear, *_NORM_TYPES)):
                raise ValueError(f"layer_pairs must name nn.Linear layers, got {name!r}: "
                                 f"{type(model.get_submodule(name)).__name__}")
    return prune_channels(model, layer_pairs, amount, p)


# --------------------------------------------------------------------------------------------------
# structured pruning of the AV-digits intermediate-fusion classifier
# --------------------------------------------------------------------------------------------------

def _check_fusion_classifier(model) -> None:
    from mmtutor.models.avdigits import AudioEncoder, ImageEncoder
    from mmtutor.models.fusion import EncodeThenFuse, IntermediateFusion

    _check_model(model)
    if not (isinstance(model, EncodeThenFuse) and isinstance(model.fusion, IntermediateFusion)
            and len(model.encoders) == 2 and isinstance(model.encoders[0], ImageEncoder)
            and isinstance(model.encoders[1], AudioEncoder)
            and not model.encoders[0].tokens and not model.encoders[1].tokens):
        raise ValueError("model must be an AV-digits intermediate-fusion classifier "
                         "(avdigits_classifier('intermediate', ...)), got "
                         f"{type(model).__name__} with fusion {type(getattr(model, 'fusion', None)).__name__}")


def avdigits_layer_pairs(model: nn.Module) -> list[tuple]:
    """The :func:`prune_channels` pairs that reach every width of an AV-digits intermediate-fusion classifier.

    Both convolutions of each encoder (channels), each encoder's output layer (the embedding), both
    projections (each feeds one half of the concatenation that ``fusion.joint`` reads, given as an input
    block) and ``fusion.joint`` (the hidden layer before the 10 logits). The input normalisation of the
    audio encoder and the output layer are not pruned.
    """
    _check_fusion_classifier(model)
    h0 = model.fusion.projections[0][0].out_features
    h1 = model.fusion.projections[1][0].out_features
    return [("encoders.0.features.0", "encoders.0.features.2"),
            ("encoders.0.features.2", "encoders.0.out"),
            ("encoders.0.out", "fusion.projections.0.0"),
            ("encoders.1.features.1", "encoders.1.features.3"),
            ("encoders.1.features.3", "encoders.1.out"),
            ("encoders.1.out", "fusion.projections.1.0"),
            ("fusion.projections.0.0", ("fusion.joint", 0, h0)),
            ("fusion.projections.1.0", ("fusion.joint", h0, h0 + h1)),
            ("fusion.joint", "fusion.head.1")]


def prune_avdigits_classifier(model: nn.Module, amount: float, p: int = 2) -> nn.Module:
    """A smaller copy of an AV-digits intermediate-fusion classifier: ``amount`` of every width removed.

    :func:`prune_channels` with :func:`avdigits_layer_pairs`; the fusion module's recorded widths
    (``dims``, ``hidden``) are updated to match. With equal widths before, the result has exactly the
    architecture ``avdigits_classifier(**avdigits_architecture(pruned))`` builds, so it can be saved
    with :func:`mmtutor.train.save_checkpoint` and loaded into that architecture.
    """
    pruned = prune_channels(model, avdigits_layer_pairs(model), amount, p)
    pruned.fusion.dims = tuple(encoder.out.out_features for encoder in pruned.encoders)
    pruned.fusion.hidden = pruned.fusion.joint.out_features
    return pruned


def avdigits_architecture(model: nn.Module) -> dict:
    """The ``avdigits_classifier`` arguments that build an empty model shaped like ``model``.

    Raises ``ValueError`` if ``model``'s widths cannot be expressed by those arguments (the two embeddings,
    or the projections and the hidden layer, of different widths).
    """
    _check_fusion_classifier(model)
    image, audio, fusion = model.encoders[0], model.encoders[1], model.fusion
    dims = {image.out.out_features, audio.out.out_features}
    hidden = {fusion.projections[0][0].out_features, fusion.projections[1][0].out_features,
              fusion.joint.out_features}
    if len(dims) != 1 or len(hidden) != 1:
        raise ValueError(f"model must have one embedding width and one hidden width to be rebuilt by "
                         f"avdigits_classifier, got embeddings {sorted(dims)} and hidden widths {sorted(hidden)}")
    return {"style": "intermediate", "dim": dims.pop(), "hidden": hidden.pop(),
            "num_classes": fusion.head[1].out_features,
            "image_channels": (image.features[0].out_channels, image.features[2].out_channels),
            "audio_channels": (audio.features[1].out_channels, audio.features[3].out_channels)}


# --------------------------------------------------------------------------------------------------
# attention heads of a BERT-style transformers encoder
# --------------------------------------------------------------------------------------------------

def attention_layers(model: nn.Module) -> list[tuple[str, str]]:
    """``(self_attention, output_projection)`` module names of each attention layer of a BERT-style model.

    A self-attention module is one with ``query``, ``key`` and ``value`` linear layers and the attributes
    ``num_attention_heads`` and ``attention_head_size`` (``transformers``' ``BertSelfAttention``); its
    output projection is the ``output.dense`` linear layer of the module that holds it.
    """
    _check_model(model)
    modules = dict(model.named_modules())
    layers = []
    for name, module in modules.items():
        if all(isinstance(getattr(module, n, None), nn.Linear) for n in ("query", "key", "value")) and \
                hasattr(module, "num_attention_heads") and hasattr(module, "attention_head_size"):
            parent = name.rpartition(".")[0]
            output = f"{parent}.output.dense" if parent else "output.dense"
            if not isinstance(modules.get(output), nn.Linear):
                raise ValueError(f"model: the attention layer {name!r} has no output projection {output!r}")
            layers.append((name, output))
    if not layers:
        raise ValueError(f"model must contain BERT-style self-attention layers (query, key, value), "
                         f"found none in {type(model).__name__}")
    return layers


def _check_heads(model: nn.Module, heads, keep_one: bool = True) -> list[tuple[str, str, list[int]]]:
    """``(self_attention, output_projection, heads)`` for each layer of ``heads``, validated."""
    layers = attention_layers(model)
    if not isinstance(heads, dict):
        raise TypeError(f"heads must be a dict {{layer_index: [head, ...]}}, got {_describe(heads)}")
    checked = []
    for layer, removed in heads.items():
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(layers):
            raise ValueError(f"heads must be keyed by layer indices 0..{len(layers) - 1}, got {layer!r}")
        n = model.get_submodule(layers[layer][0]).num_attention_heads
        if isinstance(removed, (str, bytes)) or not isinstance(removed, Iterable):
            raise TypeError(f"heads[{layer}] must be a list of head indices, got {_describe(removed)}")
        removed = list(removed)
        if not all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h < n for h in removed) or \
                len(set(removed)) != len(removed):
            raise ValueError(f"heads[{layer}] must list distinct head indices in 0..{n - 1}, got {removed!r}")
        if keep_one and len(removed) == n:
            raise ValueError(f"heads[{layer}] would remove all {n} heads of layer {layer}; keep at least one")
        checked.append((*layers[layer], removed))
    return checked


def prune_attention_heads(model: nn.Module, heads: dict) -> nn.Module:
    r"""A smaller copy of a BERT-style encoder with the given attention heads removed.

    Head :math:`h` of a layer with head size :math:`d` owns rows :math:`hd, \dots, (h+1)d - 1` of the query,
    key and value weights (and biases) and the same columns of the output projection :math:`W_O`:

    .. math:: \mathrm{MHA}(x) = \sum_h W_O^{(h)}\,\mathrm{softmax}\Big(\tfrac{(W_Q^{(h)}x)^\top W_K^{(h)}x}
              {\sqrt d}\Big)\,W_V^{(h)} x + b_O ,

    so deleting those rows and columns computes exactly what the original computes with
    :math:`W_O^{(h)} = 0`. (``transformers`` 5 dropped ``PreTrainedModel.prune_heads``; this does the same.)

    Parameters
    ----------
    model : nn.Module
        E.g. a ``transformers`` ``BertModel``; not modified.
    heads : dict
        ``{layer_index: [head, ...]}``, layers numbered as in :func:`attention_layers`; every layer keeps
        at least one head.
    """
    checked = _check_heads(model, heads)
    pruned = copy.deepcopy(model)
    for attention_name, output_name, removed in checked:
        attention = pruned.get_submodule(attention_name)
        n, size = attention.num_attention_heads, attention.attention_head_size
        kept_heads = [h for h in range(n) if h not in removed]
        rows = (torch.tensor(kept_heads)[:, None] * size + torch.arange(size)).reshape(-1)
        for projection in ("query", "key", "value"):
            setattr(attention, projection, _keep_outputs(getattr(attention, projection), rows))
        _set_submodule(pruned, output_name, _keep_inputs(pruned.get_submodule(output_name), rows))
        attention.num_attention_heads = len(kept_heads)
        attention.all_head_size = len(rows)
    return pruned


def save_avdigits_classifier(model: nn.Module, path) -> "Path":
    """Write a (pruned) AV-digits fusion classifier to a safetensors file, its architecture in the metadata.

    :func:`load_avdigits_classifier` rebuilds the smaller architecture from that metadata and loads the
    weights into it: the file alone is enough to use the pruned model.
    """
    import json

    from mmtutor.train import save_checkpoint

    architecture = avdigits_architecture(model)
    return save_checkpoint(model, path, {"architecture": json.dumps(architecture)})


def load_avdigits_classifier(path) -> nn.Module:
    """The model saved by :func:`save_avdigits_classifier`, rebuilt and loaded, in eval mode."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    from mmtutor.models.avdigits import avdigits_classifier
    from mmtutor.train import load_checkpoint

    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        raise ValueError(f"path must be an existing file written by save_avdigits_classifier, got {path!r}")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "architecture" not in metadata:
        raise ValueError(f"path must be a file written by save_avdigits_classifier (with an 'architecture' "
                         f"entry in its metadata), got {str(path)!r} with metadata keys {sorted(metadata)}")
    architecture = json.loads(metadata["architecture"])
    for key in ("image_channels", "audio_channels"):
        architecture[key] = tuple(architecture[key])
    model = avdigits_classifier(**architecture)
    load_checkpoint(model, path)
    return model.eval()


@contextlib.contextmanager
def heads_switched_off(model: nn.Module, heads: dict):
    """Within the ``with`` block, ``model``'s attention heads ``heads`` contribute nothing; restored after.

    Zeroes the output-projection columns :math:`W_O^{(h)}` of each head in place, which computes what
    :func:`prune_attention_heads` computes without copying the model: the cheap way to score many heads
    one at a time (Michel et al.'s ablation). ``heads`` is ``{layer_index: [head, ...]}``.
    """
    saved = []
    with torch.no_grad():
        for attention_name, output_name, removed in _check_heads(model, heads, keep_one=False):
            output = model.get_submodule(output_name)
            size = model.get_submodule(attention_name).attention_head_size
            for h in removed:
                columns = slice(h * size, (h + 1) * size)
                saved.append((output, columns, output.weight[:, columns].clone()))
                output.weight[:, columns] = 0
    try:
        yield model
    finally:
        with torch.no_grad():
            for output, columns, values in reversed(saved):
                output.weight[:, columns] = values
