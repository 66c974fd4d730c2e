r"""Measuring a (compressed) model: the bytes a user ships, how long a call takes, and how close it stays.

**Size.** :func:`model_size_bytes` counts the bytes of the artefact a user would download: a model's
``state_dict`` serialised with safetensors (in memory; nothing is written), or a file or directory on disk.
A safetensors file is an 8-byte little-endian header length :math:`H`, a JSON header of :math:`H` bytes
(each tensor's name, dtype, shape and byte offsets, padded with spaces to a multiple of 8) and the raw
tensor bytes, so for tensors :math:`t`

.. math:: \text{bytes} = 8 + H + \sum_t \mathrm{numel}(t)\cdot\mathrm{itemsize}(t).

Everything a compressed model needs at load time is in its ``state_dict`` and is counted: pruning masks,
packed int4 codes, scales, zero points, codebooks. Zeros are counted as the dense tensor stores them.

**Latency.** :func:`latency` times repeated calls with ``time.perf_counter()`` after a few warm-up calls
(which fill caches and let PyTorch pick its kernels), with PyTorch's thread count fixed for the
measurement and restored afterwards. It reports the median and the interquartile range
:math:`\mathrm{IQR} = Q_3 - Q_1`, which an occasional slow call (the operating system, the garbage
collector) barely moves, unlike the mean. :func:`compare_latency` times two functions *interleaved*, call by
call, so that both see the same machine state (clock boost, other processes), and returns the ratio of
their medians.

**Fidelity.** How close a compressed model's outputs :math:`b_i` stay to the original's :math:`a_i`:

.. math:: \text{cosine fidelity} = \frac{1}{N}\sum_{i=1}^N \frac{a_i \cdot b_i}{\lVert a_i\rVert\,\lVert b_i\rVert},
          \qquad \text{agreement} = \frac{1}{N}\,\#\{i : \arg\max_j a_{ij} = \arg\max_j b_{ij}\}.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmtutor.runtime import _check_int, _describe, fixed_threads  # fixed_threads: kept importable from here

__all__ = ["model_size_bytes", "shippable_tensors", "Timing", "LatencyComparison", "latency",
           "compare_latency", "cosine_fidelity", "agreement"]


# --------------------------------------------------------------------------------------------------
# size
# --------------------------------------------------------------------------------------------------

def _add_quantized(out: dict, name: str, tensor: torch.Tensor) -> None:
    """A PyTorch quantized tensor as what it holds: integer codes, scales and zero points."""
    codes = tensor.int_repr()
    out[name] = codes
    if tensor.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        out[f"{name}.scale"] = torch.tensor([tensor.q_scale()], dtype=torch.float32)
        out[f"{name}.zero_point"] = torch.tensor([tensor.q_zero_point()], dtype=codes.dtype)
    else:
        out[f"{name}.scale"] = tensor.q_per_channel_scales().to(torch.float32)
        out[f"{name}.zero_point"] = tensor.q_per_channel_zero_points().to(codes.dtype)


def _collect(out: dict, name: str, value) -> None:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        if value.is_meta:
            raise ValueError(f"obj must hold real tensors, got the meta tensor {name!r} (no storage to measure; "
                             "see mmtutor.sizes.memory_bytes for sizes from shapes alone)")
        value = value.detach().cpu()
        if value.is_quantized:
            _add_quantized(out, name, value)
        else:
            out[name] = value
    elif isinstance(value, (tuple, list)):              # e.g. the packed (weight, bias) of a dynamic int8 Linear
        for i, item in enumerate(value):
            _collect(out, f"{name}.{i}", item)
    # anything else (a dtype, a flag, None) holds no weights and is not stored


def shippable_tensors(state) -> dict[str, torch.Tensor]:
    """The tensors a safetensors file of ``state`` (a module or a ``state_dict``) holds, each stored once.

    Quantized PyTorch tensors become their integer codes plus ``.scale`` and ``.zero_point`` tensors; tuples
    of tensors (PyTorch's packed parameters) are expanded; non-tensor entries are dropped. A tensor tied
    to another (the same storage, shape and strides) is kept once, under its first name, as
    ``safetensors.torch.save_model`` does; other views of shared memory are copied.
    """
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a torch.nn.Module or a state_dict mapping, got {_describe(state)}")
    collected: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if not isinstance(name, str):
            raise TypeError(f"state must have str keys, got {_describe(name)}")
        _collect(collected, name, value)
    tensors, views, storages = {}, set(), set()
    for name, tensor in collected.items():
        if tensor.numel() == 0:
            tensors[name] = tensor
            continue
        storage = tensor.untyped_storage().data_ptr()
        view = (storage, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if view in views:
            continue                                      # tied weight: shipped once
        if storage in storages:
            tensor = tensor.clone()
        views.add(view)
        storages.add(storage)
        tensors[name] = tensor.contiguous()
    return tensors


def model_size_bytes(obj) -> int:
    """Bytes of the artefact that stores ``obj``.

    Parameters
    ----------
    obj : nn.Module, mapping, path or bytes
        A module or a ``state_dict`` (serialised with ``safetensors.torch.save`` in memory, after
        :func:`shippable_tensors`), a path to a file (its size) or to a directory (the total size of the
        files in it, e.g. a TensorFlow SavedModel), or ``bytes`` already serialised (their length).

    Returns
    -------
    int
        The size in bytes, header included.
    """
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return len(obj)
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        raise ValueError(f"obj must be an existing file or directory when it is a path, got {str(path)!r}")
    if not isinstance(obj, (nn.Module, Mapping)):
        raise TypeError(f"obj must be a torch.nn.Module, a state_dict, a path or bytes, got {_describe(obj)}")
    from safetensors.torch import save

    return len(save(shippable_tensors(obj)))


# --------------------------------------------------------------------------------------------------
# latency
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated calls: every sample, their quartiles, and the thread count used."""

    times: tuple[float, ...]
    median: float
    q1: float
    q3: float
    threads: int

    @property
    def iqr(self) -> float:
        """Interquartile range :math:`Q_3 - Q_1` in seconds."""
        return self.q3 - self.q1

    @classmethod
    def from_times(cls, times, threads: int) -> "Timing":
        """Summarise a list of durations in seconds (quartiles by linear interpolation)."""
        times = tuple(float(t) for t in times)
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        return cls(times=times, median=float(median), q1=float(q1), q3=float(q3), threads=threads)


@dataclass(frozen=True)
class LatencyComparison:
    """Two :class:`Timing` taken side by side and ``ratio`` = baseline median / candidate median.

    A ratio above 1 means the candidate is faster (2.0: it takes half the time).
    """

    baseline: Timing
    candidate: Timing
    ratio: float


def _check_timing_args(fns: dict, repeats, warmup) -> tuple[int, int]:
    for name, fn in fns.items():
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {_describe(fn)}")
    return _check_int("repeats", repeats, 1), _check_int("warmup", warmup, 0)


def latency(fn, *args, repeats: int = 30, warmup: int = 3, threads: int | None = None) -> Timing:
    """Time ``fn(*args)``: ``warmup`` untimed calls, then ``repeats`` timed ones, with ``threads`` PyTorch threads.

    Returns a :class:`Timing` (median, quartiles, all samples). Only PyTorch's intra-op thread count is
    set; TensorFlow fixes its own at start-up (see :func:`mmtutor.runtime.set_threads`).
    """
    repeats, warmup = _check_timing_args({"fn": fn}, repeats, warmup)
    with fixed_threads(threads) as used:
        for _ in range(warmup):
            fn(*args)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - start)
    return Timing.from_times(times, used)


def compare_latency(baseline_fn, candidate_fn, *args, repeats: int = 30, warmup: int = 3,
                    threads: int | None = None) -> LatencyComparison:
    """Time ``baseline_fn(*args)`` and ``candidate_fn(*args)`` interleaved and compare their medians.

    Each round times both, alternating which goes first (baseline then candidate, then candidate then
    baseline, ...), so that slow drifts of the machine (frequency scaling, a background job) affect both
    alike. Returns a :class:`LatencyComparison` whose ``ratio`` is baseline median / candidate median.
    """
    repeats, warmup = _check_timing_args({"baseline_fn": baseline_fn, "candidate_fn": candidate_fn},
                                         repeats, warmup)
    fns = (baseline_fn, candidate_fn)
    times = ([], [])
    with fixed_threads(threads) as used:
        for _ in range(warmup):
            for fn in fns:
                fn(*args)
        for round_ in range(repeats):
            for which in ((0, 1) if round_ % 2 == 0 else (1, 0)):
                start = time.perf_counter()
                fns[which](*args)
                times[which].append(time.perf_counter() - start)
    baseline, candidate = Timing.from_times(times[0], used), Timing.from_times(times[1], used)
    return LatencyComparison(baseline=baseline, candidate=candidate, ratio=baseline.median / candidate.median)


# --------------------------------------------------------------------------------------------------
# fidelity
# --------------------------------------------------------------------------------------------------

def _as_matrix(name: str, x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    if not isinstance(x, (np.ndarray, list, tuple)):
        raise TypeError(f"{name} must be a torch tensor, NumPy array or nested list, got {_describe(x)}")
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must hold numbers, got {_describe(x)}") from error
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (rows, features), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got {int(np.isnan(x).sum())} NaN and "
                         f"{int(np.isinf(x).sum())} infinite values")
    return x


def _check_pair(names: tuple[str, str], a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_matrix(names[0], a), _as_matrix(names[1], b)
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def cosine_fidelity(a, b) -> float:
    """Mean over rows of the cosine between ``a[i]`` and ``b[i]`` (1.0: every row points the same way).

    ``a`` and ``b`` are ``(N, d)`` arrays or tensors, e.g. the embeddings or logits of the original and the
    compressed model on the same inputs. A row of zeros has no direction; as in scikit-learn's
    ``cosine_similarity``, its cosine with anything is taken as 0.
    """
    a, b = _check_pair(("a", "b"), a, b)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    cosines = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return float(np.mean(cosines))


def agreement(logits_a, logits_b) -> float:
    """Fraction of rows where ``logits_a`` and ``logits_b`` (``(N, classes)``) pick the same class (argmax).

    Unlike accuracy it needs no labels: it measures how often the compressed model decides as the
    original does. Ties pick the first largest class, as ``numpy.argmax`` does.
    """
    a, b = _check_pair(("logits_a", "logits_b"), logits_a, logits_b)
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))
