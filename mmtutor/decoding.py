r"""Decoding rules on next-token logits, written out: what ``generate()``'s sampling keywords do.

Given the logits :math:`z \in \mathbb{R}^{|V|}` of the next token, each rule returns new logits
(``-inf`` for tokens it forbids); sampling then draws from :math:`p = \mathrm{softmax}(z')`.

* **temperature** :math:`T > 0`: :math:`z' = z / T`; :math:`T < 1` sharpens, :math:`T > 1` flattens,
  :math:`T \to 0` is greedy decoding;
* **top-k**: keep the :math:`k` largest logits (ties with the :math:`k`-th kept too), the rest ``-inf``;
* **top-p** (nucleus, Holtzman et al., 2020): sort the probabilities in decreasing order and keep the
  smallest prefix whose sum reaches :math:`p` (always at least one token);
* **repetition penalty** :math:`\theta > 1` (Keskar et al., 2019): for every token already in the sequence,
  :math:`z'_i = z_i/\theta` if :math:`z_i > 0`, else :math:`z_i\theta`, so a seen token gets less likely
  either way.

Each matches the corresponding ``transformers`` logits processor (``TemperatureLogitsWarper``,
``TopKLogitsWarper``, ``TopPLogitsWarper``, ``RepetitionPenaltyLogitsProcessor``); the tests check it.
"""

from __future__ import annotations

import torch

from mmtutor.runtime import _check_int

__all__ = ["apply_temperature", "top_k_filter", "top_p_filter", "apply_repetition_penalty"]


def _check_logits(logits) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.ndim != 2:
        raise TypeError("logits must be a float tensor of shape (batch, vocab), got "
                        f"{type(logits).__name__} {getattr(logits, 'shape', '')}")
    return logits


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """:math:`z / T`."""
    return _check_logits(logits) / _check_positive("temperature", temperature)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep each row's ``k`` largest logits (and any tied with the k-th); set the others to ``-inf``."""
    logits = _check_logits(logits)
    k = min(_check_int("k", k, 1), logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    r"""Keep the smallest set of most likely tokens whose probabilities sum to at least ``p``
    (:math:`0 < p \le 1`); set the others to ``-inf``."""
    logits = _check_logits(logits)
    p = _check_positive("p", p)
    if p > 1:
        raise ValueError(f"p must be in (0, 1], got {p}")
    probs, order = torch.sort(torch.softmax(logits, dim=-1), dim=-1, descending=True)
    mass_before = torch.cumsum(probs, dim=-1) - probs          # probability of the tokens ranked above
    drop_sorted = mass_before >= p                             # the prefix already reached p without it
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Divide the positive logits (multiply the negative ones) of every token in ``previous_ids``
    (``(batch, n)``) by ``penalty``."""
    logits = _check_logits(logits)
    penalty = _check_positive("penalty", penalty)
    if not isinstance(previous_ids, torch.Tensor) or previous_ids.ndim != 2 \
            or previous_ids.shape[0] != logits.shape[0]:
        raise ValueError(f"previous_ids must be a (batch, n) id tensor with batch={logits.shape[0]}, "
                         f"got {getattr(previous_ids, 'shape', previous_ids)!r}")
    seen = torch.gather(logits, 1, previous_ids)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(1, previous_ids, seen)
