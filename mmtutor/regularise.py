r"""What regularisation leaves in a model's weights: counts, small weights, norms, and sparse storage.

L1, L2 and dropout change the *values* of a network's weights, never their number. These helpers
measure that. "Weights" here are the parameters with two or more dimensions (the matrices of
``nn.Linear`` and the kernels of convolutions), the ones an L1 penalty in :func:`mmtutor.train.fit`
acts on; biases are counted among the parameters but not among the weights.

For the weights :math:`w_1, \dots, w_n` of a model, :func:`weight_stats` reports

.. math::  \text{fraction below } t = \frac{1}{n} \#\{i : |w_i| < t\}, \qquad
           \lVert w \rVert_2 = \Big(\sum_i w_i^2\Big)^{1/2}.

A weight close to zero still occupies four bytes. Only :func:`prune_small_weights`, which sets every
:math:`|w_i| < t` to exactly 0, followed by a sparse encoding such as compressed sparse rows
(:func:`csr_encode`: the non-zero values, their column indices and one offset per row) makes the
stored model smaller; :func:`storage_bytes` compares the dense, CSR and zlib-compressed sizes.
"""

from __future__ import annotations

import math
import zlib
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

__all__ = ["CSR", "weight_stats", "flat_weights", "prune_small_weights", "csr_encode", "csr_decode",
           "storage_bytes"]


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_threshold(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}: {value!r}")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _weight_matrices(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(name, p) for name, p in model.named_parameters() if p.ndim > 1]


def flat_weights(model: nn.Module) -> np.ndarray:
    """All weight-matrix entries of ``model`` (parameters with ``ndim > 1``) as one float64 NumPy vector."""
    _check_model(model)
    matrices = _weight_matrices(model)
    if not matrices:
        return np.zeros(0)
    return torch.cat([p.detach().reshape(-1).double().cpu() for _, p in matrices]).numpy()


def weight_stats(model: nn.Module, thresholds=(1e-3, 1e-2)) -> dict:
    """Parameter count, share of small weights, exact zeros and L2 norms of ``model``.

    Returns
    -------
    dict
        ``parameters`` (all trainable and frozen parameters), ``weights`` (entries of weight matrices),
        ``exact_zeros`` (weights equal to 0.0), ``fraction_below`` (``{t: fraction of |w| < t}`` for each
        threshold), ``l2_norm`` (of all weights together) and ``layer_norms`` (``{name: L2 norm}``).
    """
    _check_model(model)
    if isinstance(thresholds, (str, bytes)) or not hasattr(thresholds, "__iter__"):
        raise TypeError(f"thresholds must be a sequence of positive numbers, got {thresholds!r}")
    thresholds = [_check_threshold("thresholds", t) for t in thresholds]
    w = flat_weights(model)
    magnitude = np.abs(w)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights": int(w.size),
        "exact_zeros": int(np.count_nonzero(w == 0.0)),
        "fraction_below": {t: float(np.mean(magnitude < t)) if w.size else 0.0 for t in thresholds},
        "l2_norm": float(np.sqrt(np.sum(w * w))),
        "layer_norms": {name: float(p.detach().double().norm()) for name, p in _weight_matrices(model)},
    }


@torch.no_grad()
def prune_small_weights(model: nn.Module, threshold: float) -> int:
    """Set every weight with :math:`|w| <` ``threshold`` to exactly 0, in place; return how many there are.

    Biases and other one-dimensional parameters are left alone. The parameter count does not change:
    the zeros are still stored until the tensors are re-encoded (see :func:`csr_encode`).
    """
    _check_model(model)
    threshold = _check_threshold("threshold", threshold)
    pruned = 0
    for _, p in _weight_matrices(model):
        small = p.abs() < threshold
        pruned += int(small.sum())
        p.masked_fill_(small, 0.0)
    return pruned


class CSR(NamedTuple):
    """A matrix in compressed sparse row form, with the smallest unsigned index types that fit.

    Row ``i`` holds ``values[row_pointers[i]:row_pointers[i + 1]]`` at the columns
    ``col_indices[row_pointers[i]:row_pointers[i + 1]]``; every other entry is zero.
    """

    values: np.ndarray
    col_indices: np.ndarray
    row_pointers: np.ndarray
    shape: tuple

    @property
    def nbytes(self) -> int:
        """Bytes of the three arrays (the shape is two small integers and is not counted)."""
        return self.values.nbytes + self.col_indices.nbytes + self.row_pointers.nbytes


def _smallest_uint(largest: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if largest <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def csr_encode(matrix) -> CSR:
    """Encode a 2-D array (NumPy or torch) as :class:`CSR`, keeping only its non-zero entries.

    Column indices use the smallest unsigned type that holds ``n_columns - 1`` (uint8 up to 256
    columns), row pointers the smallest that holds the number of non-zeros; values keep their dtype.
    """
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().numpy()
    if not isinstance(matrix, np.ndarray):
        raise TypeError(f"matrix must be a NumPy array or torch tensor, got {type(matrix).__name__}")
    if matrix.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {matrix.shape}")
    rows, cols = np.nonzero(matrix)  # row-major order, as CSR stores them
    counts = np.bincount(rows, minlength=matrix.shape[0])
    row_pointers = np.concatenate([[0], np.cumsum(counts)])
    return CSR(values=matrix[rows, cols].copy(),
               col_indices=cols.astype(_smallest_uint(max(matrix.shape[1] - 1, 0))),
               row_pointers=row_pointers.astype(_smallest_uint(len(rows))),
               shape=tuple(matrix.shape))


def csr_decode(csr: CSR) -> np.ndarray:
    """The dense matrix that :func:`csr_encode` encoded (an exact round trip)."""
    if not isinstance(csr, CSR):
        raise TypeError(f"csr must be a CSR from csr_encode, got {type(csr).__name__}")
    dense = np.zeros(csr.shape, dtype=csr.values.dtype)
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.row_pointers.astype(np.int64)))
    dense[rows, csr.col_indices.astype(np.int64)] = csr.values
    return dense


def storage_bytes(model: nn.Module, level: int = 9) -> dict:
    """Bytes needed to store ``model.state_dict()`` three ways.

    ``dense``: every tensor's raw bytes (what a safetensors file holds, besides its small header);
    ``csr``: 2-D tensors (weight matrices) in :class:`CSR` form, all other tensors dense; ``zlib``: the dense bytes of all
    tensors, concatenated and compressed with zlib at ``level`` (0-9), a generic lossless baseline.
    """
    _check_model(model)
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise ValueError(f"level must be an int from 0 to 9, got {level!r}")
    dense = csr = 0
    raw = []
    for tensor in model.state_dict().values():
        array = tensor.detach().cpu().contiguous().numpy()
        dense += array.nbytes
        csr += csr_encode(array).nbytes if array.ndim == 2 else array.nbytes
        raw.append(array.tobytes())
    return {"dense": dense, "csr": csr, "zlib": len(zlib.compress(b"".join(raw), level))}
