r"""Low-rank factorisation: replace a linear layer by two thin ones, by truncated SVD.

A weight matrix :math:`W \in \mathbb{R}^{m \times n}` (``out_features`` x ``in_features``) has a singular value
decomposition :math:`W = U \Sigma V^\top`, :math:`\sigma_1 \ge \sigma_2 \ge \dots \ge 0`. Keeping the
:math:`r` largest singular values gives the rank-:math:`r` matrix

.. math:: W_r = U_r \Sigma_r V_r^\top = B A, \qquad B = U_r \Sigma_r^{1/2} \in \mathbb{R}^{m \times r},
          \quad A = \Sigma_r^{1/2} V_r^\top \in \mathbb{R}^{r \times n},

and by the Eckart–Young theorem no matrix of rank :math:`r` is closer to :math:`W` in the Frobenius norm:

.. math:: \lVert W - W_r \rVert_F = \sqrt{\textstyle\sum_{i > r} \sigma_i^2} .

:func:`factorize_linear` turns ``nn.Linear(n, m)`` into ``nn.Sequential(nn.Linear(n, r, bias=False),
nn.Linear(r, m))`` holding :math:`A` and :math:`B` (and the original bias); splitting :math:`\Sigma_r` evenly
between the two gives both factors the same scale, which suits fine-tuning. The weights drop from
:math:`mn` to :math:`r(m + n)`, and so do the multiply-adds, so factorising pays only when
:math:`r < mn / (m + n)` (:math:`r < d/2` for a square matrix).

The rank is chosen by *retained energy* (:func:`rank_for_energy`): the smallest :math:`r` with
:math:`\sum_{i \le r} \sigma_i^2 \ge e \sum_i \sigma_i^2` for a fraction :math:`e \in (0, 1]`; the relative
Frobenius error of :math:`W_r` is then at most :math:`\sqrt{1 - e}`. :func:`factorize_model` does this for
every linear layer of a model and keeps a factorisation only where it saves parameters.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from mmtutor.runtime import _describe

__all__ = ["singular_values", "rank_for_energy", "factorize_linear", "factorized_parameters", "factorize_model"]


def _as_matrix(name: str, weights) -> torch.Tensor:
    """A float64 2-D tensor from an ``nn.Linear``, a tensor or an array."""
    if isinstance(weights, nn.Linear):
        weights = weights.weight
    if isinstance(weights, np.ndarray):
        weights = torch.from_numpy(weights)
    if not isinstance(weights, torch.Tensor) or not weights.is_floating_point():
        raise TypeError(f"{name} must be an nn.Linear, a float tensor or a float NumPy array, got {_describe(weights)}")
    if weights.ndim != 2 or weights.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 2-D matrix (out_features, in_features), "
                         f"got shape {tuple(weights.shape)}")
    weights = weights.detach().cpu().double()
    if not torch.isfinite(weights).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite entries")
    return weights


def _check_energy(energy) -> float:
    if isinstance(energy, bool) or not isinstance(energy, (int, float)):
        raise TypeError(f"energy must be a number in (0, 1], got {_describe(energy)}")
    if not (math.isfinite(energy) and 0 < energy <= 1):
        raise ValueError(f"energy must be in (0, 1] (the fraction of sum(sigma^2) to keep), got {energy!r}")
    return float(energy)


def singular_values(weights) -> np.ndarray:
    r"""The singular values :math:`\sigma_1 \ge \sigma_2 \ge \dots` of a matrix or of an ``nn.Linear``'s weight
    (computed in float64)."""
    return torch.linalg.svdvals(_as_matrix("weights", weights)).numpy()


def rank_for_energy(weights, energy: float) -> int:
    r"""The smallest rank :math:`r \ge 1` whose singular values keep a fraction ``energy`` of :math:`\sum_i \sigma_i^2`.

    ``weights`` is a matrix (tensor or array) or an ``nn.Linear``; ``energy`` is in (0, 1]. ``energy=1``
    gives the numerical rank (trailing singular values that are exactly zero are not needed). Since
    :math:`\sum_i \sigma_i^2 = \lVert W \rVert_F^2`, the rank-:math:`r` approximation then has a relative
    Frobenius error of at most :math:`\sqrt{1 - e}`.
    """
    energy = _check_energy(energy)
    squares = singular_values(weights) ** 2
    total = squares.sum()
    if total == 0:
        return 1
    kept = np.cumsum(squares) / total
    # the last entry of a float cumsum may fall a rounding error short of 1: compare with a tolerance
    return int(min(np.searchsorted(kept, energy * (1 - 1e-12), side="left") + 1, len(squares)))


def _check_rank(rank, layer: nn.Linear) -> int:
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
        raise TypeError(f"rank must be an int, got {_describe(rank)}")
    full = min(layer.in_features, layer.out_features)
    if not 1 <= rank <= full:
        raise ValueError(f"rank must be in [1, {full}] (min(in_features, out_features) of a "
                         f"{layer.out_features}x{layer.in_features} layer), got {rank!r}")
    return int(rank)


def factorize_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    r"""``nn.Sequential(Linear(in, rank, bias=False), Linear(rank, out))`` computing :math:`x \mapsto B A x + b`.

    :math:`B A = W_r` is the truncated SVD of the layer's weight (computed in float64, stored in the
    layer's dtype), so at ``rank = min(in, out)`` the pair reproduces the layer to float precision, and
    below it the Frobenius error of the weight is :math:`\sqrt{\sum_{i > r}\sigma_i^2}`. The original layer
    is not modified.
    """
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be a torch.nn.Linear, got {_describe(layer)}")
    rank = _check_rank(rank, layer)
    u, s, vh = torch.linalg.svd(_as_matrix("layer", layer), full_matrices=False)
    root = s[:rank].sqrt()
    first = nn.Linear(layer.in_features, rank, bias=False)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    dtype, device = layer.weight.dtype, layer.weight.device
    first.to(dtype=dtype, device=device)
    second.to(dtype=dtype, device=device)
    with torch.no_grad():
        first.weight.copy_(root[:, None] * vh[:rank])
        second.weight.copy_(u[:, :rank] * root[None, :])
        if layer.bias is not None:
            second.bias.copy_(layer.bias.detach())
    return nn.Sequential(first, second)


def factorized_parameters(out_features: int, in_features: int, rank: int, bias: bool = True) -> int:
    r"""Parameters of the factorised layer, :math:`r(m + n)` (+ :math:`m` for the bias)."""
    for name, value in (("out_features", out_features), ("in_features", in_features), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(rank * (out_features + in_features) + (out_features if bias else 0))


def factorize_model(model: nn.Module, energy: float = 0.9, min_saving: float = 0.0,
                    skip: tuple[str, ...] = ()) -> tuple[nn.Module, pd.DataFrame]:
    r"""A copy of ``model`` whose ``nn.Linear`` layers are factorised where that saves parameters.

    Each linear layer (except those whose qualified name is in ``skip``) gets the rank
    :func:`rank_for_energy` picks for ``energy``; it is replaced by :func:`factorize_linear` only when the
    weights shrink by more than a fraction ``min_saving``, i.e. when :math:`r(m + n) < (1 - s)\,mn`
    (``min_saving=0``: whenever :math:`r(m + n) < mn`). The input model is not modified.

    Returns
    -------
    (nn.Module, pandas.DataFrame)
        The new model, and one row per linear layer: ``layer``, ``out_features``, ``in_features``,
        ``rank`` (chosen), ``full_rank``, ``weights`` (:math:`mn`), ``factorized_weights``
        (:math:`r(m+n)`), ``replaced``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    energy = _check_energy(energy)
    if isinstance(min_saving, bool) or not isinstance(min_saving, (int, float)) or not 0 <= min_saving < 1:
        raise ValueError(f"min_saving must be a number in [0, 1) (the fraction of a layer's weights the "
                         f"factorisation must save), got {min_saving!r}")
    if isinstance(skip, str) or not all(isinstance(name, str) for name in skip):
        raise TypeError(f"skip must be a tuple of layer names (str), got {_describe(skip)}")
    linear = {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    unknown = sorted(set(skip) - set(linear))
    if unknown:
        raise ValueError(f"skip must name linear layers of the model (e.g. {sorted(linear)[:3]}), got {unknown}")
    if not linear:
        raise ValueError("model must contain at least one nn.Linear layer to factorise, got none")
    new = copy.deepcopy(model)
    rows = []
    for name, layer in linear.items():
        m, n = layer.out_features, layer.in_features
        rank = rank_for_energy(layer, energy)
        small = rank * (m + n)
        replace = name not in skip and small < (1 - min_saving) * m * n
        if replace and name == "":                      # the model is itself one linear layer
            new = factorize_linear(layer, rank)
        elif replace:
            parent_name, _, child = name.rpartition(".")
            setattr(new.get_submodule(parent_name), child, factorize_linear(layer, rank))
        rows.append({"layer": name, "out_features": m, "in_features": n, "rank": rank, "full_rank": min(m, n),
                     "weights": m * n, "factorized_weights": small, "replaced": replace})
    return new, pd.DataFrame(rows)
