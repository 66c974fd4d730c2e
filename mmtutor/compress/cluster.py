r"""Weight sharing: k-means clusters a layer's weights, and each weight is stored as the index of its centroid.

**Clustering** (:func:`cluster_tensor`). The :math:`n` weights :math:`w_i` of a layer (only the kept ones
of a pruned layer) are split into :math:`k` clusters :math:`C_1, \dots, C_k` minimising the within-cluster
sum of squares

.. math:: \min_{c,\,C} \sum_{j=1}^k \sum_{i \in C_j} (w_i - c_j)^2 ,

by Lloyd's algorithm (scikit-learn's ``KMeans``, one run from a given start): assign each weight to its
nearest centroid, move each centroid to the mean of its weights, repeat until no assignment changes.
:func:`lloyd_1d` is the same algorithm in a few lines of NumPy. The layer is then stored as a *codebook*
:math:`c \in \mathbb{R}^k` (float32) and one index :math:`a_i \in \{0, \dots, k-1\}` per weight, and it
computes with :math:`\hat w_i = c_{a_i}`. With :math:`k = 2^b` and 32-bit weights the storage falls from
:math:`32n` to :math:`bn + 32k` bits.

**Initialisation** (:func:`initial_centroids`), as compared by Han et al. (2016): ``"linear"`` spaces the
centroids evenly over :math:`[\min w, \max w]`; ``"density"`` places them at the quantiles
:math:`F^{-1}\big((j + \tfrac12)/k\big)` of the weights; ``"random"`` picks :math:`k` distinct weights at
random (Forgy). Large weights are rare but matter most; only the linear start gives them centroids of
their own, which is why Han et al. prefer it.

**Fine-tuning the centroids** (:func:`tie_to_codebooks`). While tied, a layer's weight is computed as
``codebook[indices]`` (zero where pruned), so autograd sends each centroid the *sum* of the gradients of the
weights that share it, the update rule of Deep Compression (section 3.2):

.. math:: \frac{\partial L}{\partial c_j} = \sum_{i\,:\,a_i = j} \frac{\partial L}{\partial w_i} .

Any optimizer then trains the :math:`k` centroids of each layer (and the other parameters, such as the
biases) while the assignments stay fixed; :func:`untie_codebooks` writes the shared weights back as
ordinary tensors and returns the trained codebooks.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from mmtutor.compress.prune import prunable_parameters
from mmtutor.runtime import _describe

__all__ = ["INITS", "SharedTensor", "initial_centroids", "lloyd_1d", "cluster_tensor", "share_weights",
           "shared_weight_bits", "tie_to_codebooks", "untie_codebooks"]

#: The centroid initialisations of :func:`initial_centroids`.
INITS = ("linear", "density", "random")


def _check_int_between(name: str, value, low: int, high: int, meaning: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int ({meaning}), got {_describe(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high} ({meaning}), got {value}")
    return int(value)


def _check_k(k) -> int:
    return _check_int_between("k", k, 2, 65536, "the number of shared values")


def _check_init(init) -> str:
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return init


def _as_values(name: str, x) -> np.ndarray:
    """A finite float64 NumPy copy of a tensor or array (flattened)."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {_describe(x)}")
        x = x.detach().cpu().double().numpy()
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point torch tensor or NumPy array, got {_describe(x)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite, found NaN or inf")
    return x.astype(np.float64).reshape(-1)


def initial_centroids(values, k: int, init: str = "linear", seed: int = 0) -> np.ndarray:
    """``k`` starting centroids (sorted, float64) for the 1-D ``values``; see the module docstring.

    ``"random"`` draws ``k`` distinct values with ``numpy.random.default_rng(seed)``.
    """
    values = _as_values("values", values)
    k, init = _check_k(k), _check_init(init)
    distinct = np.unique(values)
    if len(distinct) < k:
        raise ValueError(f"k must be at most the number of distinct values ({len(distinct)}), got {k}")
    if init == "linear":
        return np.linspace(values.min(), values.max(), k)
    if init == "density":
        return np.quantile(values, (np.arange(k) + 0.5) / k)
    return np.sort(np.random.default_rng(seed).choice(distinct, size=k, replace=False))


def _assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid of each value (ties to the lower centroid), centroids in any order."""
    order = np.argsort(centroids, kind="stable")
    sorted_c = centroids[order]
    boundaries = (sorted_c[1:] + sorted_c[:-1]) / 2
    return order[np.searchsorted(boundaries, values, side="left")]


def lloyd_1d(values, centroids, max_iter: int = 300, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on 1-D ``values`` from the given starting ``centroids``: ``(centroids, labels)``.

    Each step assigns every value to its nearest centroid (in 1-D: the midpoints between sorted centroids
    are the boundaries) and moves each centroid to the mean of its values. It stops, as scikit-learn does,
    when no assignment changes or when the centroids moved by at most ``tol`` times the variance of the
    values in total, :math:`\\sum_j \\Delta c_j^2 \\le \\mathrm{tol}\\cdot\\mathrm{Var}(w)` (then the
    labels are recomputed for the final centroids). The from-scratch counterpart of
    ``sklearn.cluster.KMeans(init=centroids, n_init=1, tol=tol)``, with one difference: here an empty
    cluster keeps its centroid, whereas scikit-learn moves it to the value farthest from its own centroid.
    """
    values = _as_values("values", values)
    centroids = _as_values("centroids", centroids).copy()
    threshold = tol * values.var()
    labels = _assign(values, centroids)
    for _ in range(max_iter):
        counts = np.bincount(labels, minlength=len(centroids))
        sums = np.bincount(labels, weights=values, minlength=len(centroids))
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        shift, centroids = float(((moved - centroids) ** 2).sum()), moved
        new_labels = _assign(values, centroids)
        if np.array_equal(new_labels, labels) or shift <= threshold:
            return centroids, new_labels
        labels = new_labels
    return centroids, labels


@dataclass(frozen=True)
class SharedTensor:
    """A tensor stored as a codebook and one index per entry: :math:`\\hat w_i = c_{a_i}` where ``mask`` is True.

    Attributes
    ----------
    codebook : np.ndarray
        The :math:`k` centroids, float32 (sorted ascending as :func:`cluster_tensor` makes them).
    indices : np.ndarray
        ``int64`` array shaped like the tensor; entries outside ``mask`` are 0 and carry no information.
    mask : np.ndarray or None
        Boolean, ``True`` where the weight is kept; ``None`` when nothing was pruned.
    """

    codebook: np.ndarray
    indices: np.ndarray
    mask: np.ndarray | None = None

    @property
    def k(self) -> int:
        """Number of centroids."""
        return len(self.codebook)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the tensor."""
        return tuple(self.indices.shape)

    def dense(self) -> torch.Tensor:
        """The float32 tensor it stands for: ``codebook[indices]``, 0 outside ``mask``."""
        values = self.codebook[self.indices]
        if self.mask is not None:
            values = np.where(self.mask, values, np.float32(0))
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def cluster_tensor(weights, k: int, init: str = "linear", mask=None, seed: int = 0,
                   tol: float = 1e-4) -> SharedTensor:
    """Cluster the weights of one tensor (those where ``mask`` is True) into ``k`` shared values.

    Runs ``sklearn.cluster.KMeans(n_clusters=k, init=initial_centroids(...), n_init=1, tol=tol)`` on the
    kept weights in float64; the codebook is stored as float32 and each weight points at its nearest
    stored centroid. Deterministic for a given ``seed`` (used by ``init="random"`` only).

    Parameters
    ----------
    weights : torch.Tensor or np.ndarray
        Any shape, finite floats.
    k : int
        Number of centroids (``2**bits``), 2 to 65536, at most the number of distinct kept weights.
    init : {"linear", "density", "random"}
        How the centroids start (:func:`initial_centroids`).
    mask : bool tensor or array, optional
        Same shape as ``weights``; pruned entries (False) are left out and stay 0.
    tol : float
        scikit-learn's stopping tolerance (relative to the variance of the weights; 0: run until no
        assignment changes, which on a large layer takes hundreds of iterations for little gain).
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    shape = tuple(weights.shape) if isinstance(weights, (torch.Tensor, np.ndarray)) else None
    values = _as_values("weights", weights)
    flat_mask = None
    if mask is not None:
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        if not isinstance(mask, np.ndarray) or mask.dtype != bool or mask.shape != shape:
            raise ValueError(f"mask must be a boolean array of shape {shape}, got {_describe(mask)}")
        flat_mask = mask.reshape(-1)
    kept = values if flat_mask is None else values[flat_mask]
    start = initial_centroids(kept, k, init, seed)
    # One thread: 1-D k-means is memory-bound, and OpenMP threads only add contention (and run-to-run noise).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")    # KMeans warns when a start has fewer distinct points than clusters
        model = KMeans(n_clusters=len(start), init=start.reshape(-1, 1), n_init=1, tol=tol, max_iter=300,
                       random_state=0).fit(kept.reshape(-1, 1))
    codebook = np.sort(model.cluster_centers_.reshape(-1)).astype(np.float32)
    indices = np.zeros(values.size, dtype=np.int64)
    chosen = _assign(kept, codebook.astype(np.float64))
    if flat_mask is None:
        indices[:] = chosen
    else:
        indices[flat_mask] = chosen
    return SharedTensor(codebook=codebook, indices=indices.reshape(shape),
                        mask=None if mask is None else mask.copy())


def _check_bits(bits) -> int:
    return _check_int_between("bits", bits, 1, 16, "k = 2**bits shared values per layer")


@torch.no_grad()
def share_weights(model: nn.Module, bits: int, masks: dict | None = None, init: str = "linear",
                  seed: int = 0) -> dict[str, SharedTensor]:
    """Replace every prunable weight of ``model`` (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``) by shared values.

    Each layer gets its own codebook of :math:`k = 2^b` centroids from :func:`cluster_tensor`; the weights
    are overwritten, in place, by their centroids (pruned ones stay 0). ``masks`` is the dict of
    :func:`mmtutor.compress.prune.prune_magnitude` (``True`` = kept); layers it does not name are clustered
    whole. A layer with fewer than :math:`2^b` distinct kept weights gets one centroid per distinct weight.
    Returns ``{name: SharedTensor}``, names as in ``model.state_dict()``.
    """
    bits = _check_bits(bits)
    _check_init(init)
    if masks is not None and not isinstance(masks, dict):
        raise TypeError(f"masks must be None or the dict returned by prune_magnitude, got {_describe(masks)}")
    parameters = dict(prunable_parameters(model))
    unknown = set(masks or {}) - set(parameters)
    if unknown:
        raise ValueError(f"masks must name prunable weights of model, got unknown names {sorted(unknown)}")
    shared = {}
    for name, weight in parameters.items():
        mask = None if masks is None or name not in masks else masks[name]
        distinct = torch.unique(weight if mask is None else weight[mask])
        if len(distinct) < 2:                 # nothing to cluster: a codebook of the one value (0 if none kept)
            shared[name] = SharedTensor(codebook=distinct.float().numpy().copy()
                                        if len(distinct) else np.zeros(1, dtype=np.float32),
                                        indices=np.zeros(tuple(weight.shape), dtype=np.int64),
                                        mask=None if mask is None else mask.cpu().numpy().copy())
        else:
            shared[name] = cluster_tensor(weight, min(1 << bits, len(distinct)), init, mask=mask, seed=seed)
        weight.copy_(shared[name].dense().to(weight.dtype))
    return shared


def shared_weight_bits(shared: dict[str, SharedTensor], codebook_bits: int = 32) -> dict:
    """Storage of the shared weights, counted from the formula :math:`\\sum_l (n_l \\lceil\\log_2 k_l\\rceil + k_l\\,b)`.

    Returns ``{"weights": n, "index_bits": ..., "codebook_bits": ..., "total_bits": ...}``, where :math:`n_l` is the
    number of kept weights of layer :math:`l` (positions of pruned weights are not included: see
    :mod:`mmtutor.compress.entropy` for them).
    """
    if not isinstance(shared, dict) or not all(isinstance(s, SharedTensor) for s in shared.values()):
        raise TypeError(f"shared must be the dict returned by share_weights, got {_describe(shared)}")
    n = {name: (s.indices.size if s.mask is None else int(s.mask.sum())) for name, s in shared.items()}
    index_bits = sum(n[name] * max(1, math.ceil(math.log2(s.k))) for name, s in shared.items())
    book_bits = sum(s.k * codebook_bits for s in shared.values())
    return {"weights": sum(n.values()), "index_bits": index_bits, "codebook_bits": book_bits,
            "total_bits": index_bits + book_bits}


class _SharedWeight(nn.Module):
    """Parametrization ``weight = codebook[indices]`` (0 where pruned); the codebook is the trainable part."""

    def __init__(self, shared: SharedTensor, dtype: torch.dtype):
        super().__init__()
        self.codebook = nn.Parameter(torch.from_numpy(shared.codebook.copy()).to(dtype))
        self.register_buffer("indices", torch.from_numpy(shared.indices.copy()))
        mask = np.ones(shared.shape, dtype=bool) if shared.mask is None else shared.mask
        self.register_buffer("mask", torch.from_numpy(mask.copy()))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        # the original tensor is ignored: the weight is entirely determined by the codebook
        return torch.where(self.mask, self.codebook[self.indices], torch.zeros((), dtype=self.codebook.dtype))


def tie_to_codebooks(model: nn.Module, shared: dict[str, SharedTensor]) -> None:
    """Make each weight named in ``shared`` a function of its codebook, so that training updates the centroids.

    Uses ``torch.nn.utils.parametrize``: the layer's ``weight`` becomes ``codebook[indices]`` (0 where
    pruned), and the codebook an ``nn.Parameter`` that any optimizer built *after* this call trains, its
    gradient being the sum of the gradients of the weights that share each centroid. Train with
    ``weight_decay=0`` (decay would pull every centroid towards 0). Call :func:`untie_codebooks` when done.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    if not isinstance(shared, dict) or not all(isinstance(s, SharedTensor) for s in shared.values()):
        raise TypeError(f"shared must be the dict returned by share_weights, got {_describe(shared)}")
    for name, item in shared.items():
        module_name, _, attribute = name.rpartition(".")
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            raise ValueError(f"shared must name weights of model, got unknown name {name!r}") from None
        tensor = getattr(module, attribute, None)
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != item.shape:
            raise ValueError(f"shared[{name!r}] has shape {item.shape}, but model's tensor is {_describe(tensor)}")
        if parametrize.is_parametrized(module, attribute):
            raise ValueError(f"{name!r} is already tied to a codebook; call untie_codebooks first")
        parametrize.register_parametrization(module, attribute, _SharedWeight(item, tensor.dtype), unsafe=True)


@torch.no_grad()
def untie_codebooks(model: nn.Module) -> dict[str, SharedTensor]:
    """Undo :func:`tie_to_codebooks`: bake ``codebook[indices]`` into plain weights, return the trained codebooks.

    The codebooks come back as float32 (the stored precision) and the weights are set to exactly those
    values, so that the model computes what its serialised form will compute.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    shared = {}
    for module_name, module in list(model.named_modules()):
        if not parametrize.is_parametrized(module):
            continue
        for attribute in list(module.parametrizations.keys()):
            tie = module.parametrizations[attribute][0]
            if not isinstance(tie, _SharedWeight):
                continue
            name = f"{module_name}.{attribute}" if module_name else attribute
            mask = tie.mask.cpu().numpy().copy()
            item = SharedTensor(codebook=tie.codebook.detach().float().cpu().numpy().copy(),
                                indices=tie.indices.cpu().numpy().copy(), mask=None if mask.all() else mask)
            parametrize.remove_parametrizations(module, attribute, leave_parametrized=False)
            getattr(module, attribute).copy_(item.dense())
            shared[name] = item
    if not shared:
        raise ValueError("model has no weight tied to a codebook (call tie_to_codebooks first)")
    return shared
