r"""Retrieval metrics: where does the right answer land when a query ranks all candidates?

A retrieval model scores every pair of a query :math:`i` (an image, say) and a candidate item :math:`j`
(a caption) with a similarity :math:`s_{ij}`; the ``(N, M)`` matrix :math:`S` holds them all. Sorting row
:math:`i` from the highest score down ranks the candidates for that query. With a set :math:`R_i` of
*relevant* items (the correct answers; by default only item :math:`i`, so that the diagonal of a square
:math:`S` holds the matching pairs),

* the **rank** of query :math:`i` is the position (1 = top) of its best-placed relevant item;
* **Recall@k** is the fraction of queries whose rank is at most :math:`k`,

.. math:: \mathrm{R@}k = \frac{1}{N} \sum_{i=1}^{N} \big[\operatorname{rank}_i \le k\big].

(With one relevant item per query this is also called top-*k* accuracy or hit rate; it is what the CLIP
paper and image–text retrieval benchmarks report.)

**Ties.** Two candidates with exactly the same score have no order, and real models produce such ties:
two identical captions get identical embeddings. Every function here takes ``ties`` and says what it does
with them. For query :math:`i`, let :math:`s^* = \max_{j \in R_i} s_{ij}` be the best relevant score,
:math:`g` the number of irrelevant items scoring strictly above :math:`s^*`, :math:`t` the irrelevant
items tied with it and :math:`r \ge 1` the relevant items tied with it. Then

* ``"optimistic"``: ties are broken in favour of the relevant items, :math:`\operatorname{rank} = g + 1`;
* ``"pessimistic"``: ties are broken against them, :math:`\operatorname{rank} = g + t + 1`;
* ``"expected"`` (default): ties are broken uniformly at random and the function returns the
  *expectation* over that randomness, which needs no random numbers: the first relevant item of a block
  of :math:`r` relevant and :math:`t` irrelevant items in random order has expected position
  :math:`(t + r + 1)/(r + 1)`, and lies among the first :math:`m` with probability
  :math:`1 - \binom{t}{m} / \binom{t + r}{m}`.

The expected version makes **chance level** exact: a model that gives every candidate the same score has
Recall@k ``= recall_at_k(np.zeros((N, M)), k, relevant)`` (:func:`chance_recall_at_k`), which is
:math:`k / M` with one relevant item per query.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from mmtutor.runtime import _describe

__all__ = ["TIES", "retrieval_ranks", "recall_at_k", "chance_recall_at_k", "same_label_matrix"]

TIES = ("expected", "optimistic", "pessimistic")
"""The ways :func:`retrieval_ranks` and :func:`recall_at_k` can treat equal scores."""


def _check_similarity(similarity) -> np.ndarray:
    if isinstance(similarity, (str, bytes)) or type(similarity).__module__.startswith("torch"):
        raise TypeError(f"similarity must be a 2-D NumPy array (queries x items), got {_describe(similarity)}"
                        + ("; pass tensor.detach().numpy()" if type(similarity).__module__.startswith("torch")
                           else ""))
    array = np.asarray(similarity)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"similarity must have a real numeric dtype, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"similarity must be a 2-D array (queries x items), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"similarity must not be empty, got shape {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("similarity must be finite, got NaN or infinite values")
    return array


def _check_relevant(relevant, shape: tuple[int, int]) -> np.ndarray:
    if relevant is None:
        if shape[0] != shape[1]:
            raise ValueError(f"similarity must be square when relevant is None (item i is the answer to "
                             f"query i), got shape {shape}; pass a relevant matrix otherwise")
        return np.eye(shape[0], dtype=bool)
    if type(relevant).__module__.startswith("torch"):
        raise TypeError(f"relevant must be a boolean NumPy array, got {_describe(relevant)}")
    mask = np.asarray(relevant)
    if mask.dtype != bool:
        raise TypeError(f"relevant must be a boolean array, got dtype {mask.dtype}")
    if mask.shape != shape:
        raise ValueError(f"relevant must have the shape of similarity {shape}, got {mask.shape}")
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(f"relevant must mark at least one item per query, got none in row {int(empty[0])}")
    return mask


def _check_ties(ties) -> str:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    return ties


def _check_k(k, num_items: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an int, got {_describe(k)}")
    if not 1 <= k <= num_items:
        raise ValueError(f"k must lie in [1, {num_items}] (the number of items), got {k}")
    return int(k)


def _tie_counts(similarity: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query: g (irrelevant above the best relevant score), t (irrelevant tied), r (relevant tied)."""
    best = np.where(relevant, similarity, -np.inf).max(axis=1, keepdims=True)
    above = ((similarity > best) & ~relevant).sum(axis=1)
    tied_irrelevant = ((similarity == best) & ~relevant).sum(axis=1)
    tied_relevant = ((similarity == best) & relevant).sum(axis=1)
    return above, tied_irrelevant, tied_relevant


def retrieval_ranks(similarity, relevant=None, ties: str = "expected") -> np.ndarray:
    """The rank (1 = top) of the best-placed relevant item for each query (row of ``similarity``).

    Parameters
    ----------
    similarity : array_like, shape (N, M)
        Scores of N queries against M items; higher means more similar.
    relevant : bool array (N, M) or None
        ``relevant[i, j]`` is True when item ``j`` is a correct answer to query ``i``; every row needs at
        least one. ``None`` means the diagonal of a square ``similarity``.
    ties : {"expected", "optimistic", "pessimistic"}
        How equal scores are ordered (see the module documentation): ``"expected"`` returns the expected
        rank under random tie-breaking, a float that need not be an integer.

    Returns
    -------
    numpy.ndarray of float, shape (N,)
    """
    similarity = _check_similarity(similarity)
    relevant = _check_relevant(relevant, similarity.shape)
    ties = _check_ties(ties)
    above, tied_irrelevant, tied_relevant = _tie_counts(similarity, relevant)
    if ties == "optimistic":
        return (above + 1).astype(float)
    if ties == "pessimistic":
        return (above + tied_irrelevant + 1).astype(float)
    return above + (tied_irrelevant + tied_relevant + 1) / (tied_relevant + 1)


def recall_at_k(similarity, k: int, relevant=None, ties: str = "expected") -> float:
    r"""Recall@k: the fraction of queries with a relevant item among their ``k`` best-scored items.

    Arguments as in :func:`retrieval_ranks`; ``k`` lies in ``1 .. M``. With ``ties="expected"`` a query
    whose relevant items tie with irrelevant ones contributes the probability that random tie-breaking
    puts one of them in the top ``k``, :math:`1 - \binom{t}{m}/\binom{t+r}{m}` with :math:`m = k - g`
    places left after the :math:`g` items that score higher.
    """
    similarity = _check_similarity(similarity)
    relevant = _check_relevant(relevant, similarity.shape)
    ties = _check_ties(ties)
    k = _check_k(k, similarity.shape[1])
    above, tied_irrelevant, tied_relevant = _tie_counts(similarity, relevant)
    if ties == "optimistic":
        return float(np.mean(above + 1 <= k))
    if ties == "pessimistic":
        return float(np.mean(above + tied_irrelevant + 1 <= k))
    hits = []
    for g, t, r in zip(above.tolist(), tied_irrelevant.tolist(), tied_relevant.tolist()):
        places = k - g
        if places <= 0:
            hits.append(0.0)
        elif places > t:  # more places than tied irrelevant items: a relevant one must make it
            hits.append(1.0)
        else:
            hits.append(1.0 - math.comb(t, places) / math.comb(t + r, places))
    return float(np.mean(hits))


def chance_recall_at_k(relevant, k: int) -> float:
    r"""Recall@k of a model that cannot tell the items apart (all scores equal): the chance level.

    ``relevant`` is the boolean ``(N, M)`` array of :func:`retrieval_ranks` (not optional here: chance
    depends on how many items are relevant). A query with :math:`r` relevant items among :math:`M`
    scores :math:`1 - \binom{M - r}{k} / \binom{M}{k}`, which is :math:`k/M` when :math:`r = 1`.
    """
    if relevant is None:
        raise TypeError("relevant must be a boolean (N, M) array, got None")
    return recall_at_k(np.zeros(np.shape(relevant)), k, relevant=relevant, ties="expected")


def same_label_matrix(query_labels, item_labels=None) -> np.ndarray:
    """``out[i, j] = query_labels[i] == item_labels[j]``: every item that shares the query's label is relevant.

    Use it when several items are equally correct, for example identical caption texts: with
    ``same_label_matrix(captions)`` an image retrieves *a* correct caption, not necessarily its own copy.
    ``item_labels`` defaults to ``query_labels``.
    """
    def as_labels(name, labels):
        if isinstance(labels, (str, bytes)) or not isinstance(labels, (Sequence, np.ndarray)):
            raise TypeError(f"{name} must be a list or 1-D array of labels, got {_describe(labels)}")
        array = np.asarray(labels)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D sequence of labels, got shape {array.shape}")
        return array

    queries = as_labels("query_labels", query_labels)
    items = queries if item_labels is None else as_labels("item_labels", item_labels)
    return queries[:, None] == items[None, :]
