r"""Deep Compression (Han et al., 2016): prune, share weights, entropy-code, and write every byte to one file.

**The stored format** (:func:`encode_model`, :func:`decode_model`). A model's ``state_dict`` is written
tensor by tensor, in order, as one of

- *shared* (a weight clustered by :func:`mmtutor.compress.cluster.share_weights`): its float32 codebook,
  the positions of its kept weights (if it was pruned) and one codebook index per kept weight;
- *sparse* (a pruned weight that was not clustered): the positions and the kept values in float32;
- *dense* (biases, normalisation parameters and statistics, unpruned weights): every value in
  ``float_dtype`` (float16 by default: 1.5 k values, not worth clustering), integers in their own type.

Positions are the gaps of :func:`mmtutor.compress.entropy.relative_positions` (``position_bits`` per
symbol before entropy coding); positions and indices are each one stream of
:func:`mmtutor.compress.entropy.encode_symbols`, Huffman-coded (``coding="huffman"``) or at a fixed
width (``coding="fixed"``, the stage before entropy coding). A zlib-compressed JSON header names every
tensor, its kind, shape and dtype. The size of the model is ``len()`` of the bytes: codebooks, code
tables, shapes and biases all included. :func:`encoding_breakdown` says where the bytes go.

:func:`decode_model` loads the bytes into a freshly built model of the same architecture, which then
computes exactly what the encoded model computed (with ``float_dtype="float32"``: bit for bit; with
float16, up to the rounding of the dense tensors, which the decoded model's accuracy includes).

**The chain** (:func:`deep_compress`): magnitude pruning to a schedule of growing sparsities, each step
followed by fine-tuning with the pruned weights held at zero; k-means sharing of the kept weights with
:math:`2^b` centroids per layer, followed by fine-tuning of the centroids; then entropy coding. It
returns the bytes after each stage, so that size and accuracy can be measured on what is stored.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mmtutor.compress.cluster import SharedTensor, share_weights, tie_to_codebooks, untie_codebooks
from mmtutor.compress.entropy import (decode_symbols, encode_symbols, positions_from_relative, read_varint,
                                      relative_positions, write_varint)
from mmtutor.compress.prune import apply_masks, keep_pruned_at_zero, prune_magnitude
from mmtutor.evaluate import fixed_threads
from mmtutor.runtime import _describe
from mmtutor.train import History, fit

__all__ = ["MAGIC", "encode_model", "decode_model", "encoding_breakdown", "DeepCompression", "prune_and_finetune",
           "share_and_finetune", "deep_compress"]

#: The first bytes of every encoded model (format version 1).
MAGIC = b"MMDC1"

_FLOAT_DTYPES = {"float16": (torch.float16, np.float16), "float32": (torch.float32, np.float32)}


def _check_position_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"position_bits must be an int from 1 to 16, got {bits!r}")
    return bits


def _chunk(data: bytes) -> bytes:
    return write_varint(len(data)) + data


def _read_chunk(data: bytes, offset: int) -> tuple[bytes, int]:
    size, offset = read_varint(data, offset)
    if offset + size > len(data):
        raise ValueError("data must be a complete encoded model, got truncated bytes")
    return data[offset:offset + size], offset + size


# --------------------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------------------

def encode_model(model: nn.Module, shared: dict[str, SharedTensor] | None = None,
                 masks: dict[str, torch.Tensor] | None = None, *, coding: str = "huffman",
                 position_bits: int = 4, float_dtype: str = "float16") -> bytes:
    """Serialise ``model`` with its shared and pruned weights in compact form (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        Its ``state_dict`` is written; a weight named in ``shared`` must equal ``shared[name].dense()``.
    shared : dict, optional
        ``{name: SharedTensor}`` from :func:`~mmtutor.compress.cluster.share_weights` (or
        :func:`~mmtutor.compress.cluster.untie_codebooks`).
    masks : dict, optional
        ``{name: bool mask}`` from :func:`~mmtutor.compress.prune.prune_magnitude`, for pruned weights that
        are not in ``shared`` (stored as positions plus float32 values).
    coding : {"huffman", "fixed"}
        How position and index streams are written.
    position_bits : int
        Bits per gap symbol before entropy coding, 1 to 16.
    float_dtype : {"float16", "float32"}
        Precision of the dense floating-point tensors.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    shared, masks = dict(shared or {}), dict(masks or {})
    if coding not in ("huffman", "fixed"):
        raise ValueError(f"coding must be 'huffman' or 'fixed', got {coding!r}")
    position_bits = _check_position_bits(position_bits)
    if float_dtype not in _FLOAT_DTYPES:
        raise ValueError(f"float_dtype must be one of {list(_FLOAT_DTYPES)}, got {float_dtype!r}")
    state = model.state_dict()
    unknown = (set(shared) | set(masks)) - set(state)
    if unknown:
        raise ValueError(f"shared and masks must name tensors of model.state_dict(), got unknown {sorted(unknown)}")
    header, body = [], []
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        shape = list(tensor.shape)
        if name in shared:
            item = shared[name]
            if not isinstance(item, SharedTensor) or item.shape != tuple(shape):
                raise ValueError(f"shared[{name!r}] must be a SharedTensor of shape {tuple(shape)}, got "
                                 f"{_describe(item)}")
            if not torch.equal(item.dense(), tensor.float()):
                raise ValueError(f"model's {name!r} must equal shared[{name!r}].dense() (share the weights, or "
                                 "untie_codebooks after fine-tuning, before encoding)")
            flat = item.indices.reshape(-1)
            kept = flat if item.mask is None else flat[item.mask.reshape(-1)]
            parts = [item.codebook.astype("<f4").tobytes(),
                     b"" if item.mask is None else encode_symbols(
                         relative_positions(item.mask, position_bits), 1 << position_bits, coding),
                     encode_symbols(kept, item.k, coding)]
            header.append([name, "shared", shape, item.k, item.mask is not None])
        elif name in masks:
            mask = masks[name].detach().cpu().numpy()
            if mask.dtype != bool or mask.shape != tuple(shape):
                raise ValueError(f"masks[{name!r}] must be a bool tensor of shape {tuple(shape)}, got {_describe(mask)}")
            values = tensor.float().numpy().reshape(-1)
            if np.any(values[~mask.reshape(-1)] != 0):
                raise ValueError(f"model's {name!r} must be 0 where masks[{name!r}] is False (apply the mask first)")
            parts = [encode_symbols(relative_positions(mask, position_bits), 1 << position_bits, coding),
                     values[mask.reshape(-1)].astype("<f4").tobytes()]
            header.append([name, "sparse", shape])
        elif tensor.is_floating_point():
            torch_dtype, numpy_dtype = _FLOAT_DTYPES[float_dtype]
            parts = [tensor.to(torch_dtype).numpy().astype(np.dtype(numpy_dtype).newbyteorder("<")).tobytes()]
            header.append([name, "dense", shape, float_dtype])
        else:
            dtype = str(tensor.dtype).removeprefix("torch.")
            parts = [tensor.numpy().astype(np.dtype(dtype).newbyteorder("<")).tobytes()]
            header.append([name, "dense", shape, dtype])
        body.append(b"".join(_chunk(part) for part in parts))
    meta = zlib.compress(json.dumps({"position_bits": position_bits, "tensors": header},
                                    separators=(",", ":")).encode(), 9)
    return MAGIC + _chunk(meta) + b"".join(body)


# --------------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------------

def _parse(data) -> tuple[dict, list]:
    """``(meta, [(entry, [part bytes])])`` of an encoded model."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes from encode_model, got {_describe(data)}")
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise ValueError(f"data must start with {MAGIC!r} (bytes from encode_model), got {data[:len(MAGIC)]!r}")
    meta_bytes, offset = _read_chunk(data, len(MAGIC))
    meta = json.loads(zlib.decompress(meta_bytes))
    entries = []
    for entry in meta["tensors"]:
        count = {"shared": 3, "sparse": 2, "dense": 1}[entry[1]]
        parts = []
        for _ in range(count):
            part, offset = _read_chunk(data, offset)
            parts.append(part)
        entries.append((entry, parts))
    if offset != len(data):
        raise ValueError(f"data must end after the last tensor, got {len(data) - offset} extra bytes")
    meta["header_bytes"] = len(MAGIC) + len(write_varint(len(meta_bytes))) + len(meta_bytes)
    return meta, entries


def _decode_tensor(entry: list, parts: list[bytes], position_bits: int) -> torch.Tensor:
    name, kind, shape = entry[0], entry[1], tuple(entry[2])
    size = int(np.prod(shape, dtype=np.int64))
    if kind == "dense":
        dtype = np.dtype(entry[3]).newbyteorder("<")
        return torch.from_numpy(np.frombuffer(parts[0], dtype=dtype).astype(dtype.newbyteorder("=")).reshape(shape))
    if kind == "sparse":
        mask = positions_from_relative(decode_symbols(parts[0]), position_bits, size)
        values = np.zeros(size, dtype=np.float32)
        values[mask] = np.frombuffer(parts[1], dtype="<f4")
        return torch.from_numpy(values.reshape(shape))
    codebook = np.frombuffer(parts[0], dtype="<f4").astype(np.float32)
    indices = np.zeros(size, dtype=np.int64)
    mask = None
    if entry[4]:
        mask = positions_from_relative(decode_symbols(parts[1]), position_bits, size)
        indices[mask] = decode_symbols(parts[2])
        mask = mask.reshape(shape)
    else:
        indices[:] = decode_symbols(parts[2])
    return SharedTensor(codebook=codebook, indices=indices.reshape(shape), mask=mask).dense()


def decode_model(data: bytes, model: nn.Module) -> nn.Module:
    """Load bytes from :func:`encode_model` into ``model`` (a fresh instance of the same architecture).

    Every tensor of ``model.state_dict()`` must be in the bytes with the same shape; the model is
    returned in eval mode, holding dense float weights (zeros where pruned, centroids where shared).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    meta, entries = _parse(data)
    state = model.state_dict()
    loaded = {}
    for entry, parts in entries:
        name = entry[0]
        if name not in state:
            raise ValueError(f"model must have a tensor {name!r} (the bytes hold one), got none")
        tensor = _decode_tensor(entry, parts, meta["position_bits"])
        if tuple(tensor.shape) != tuple(state[name].shape):
            raise ValueError(f"model's {name!r} has shape {tuple(state[name].shape)}, the bytes hold "
                             f"{tuple(tensor.shape)}")
        loaded[name] = tensor.to(state[name].dtype)
    missing = set(state) - set(loaded)
    if missing:
        raise ValueError(f"data must hold every tensor of model, missing {sorted(missing)}")
    model.load_state_dict(loaded)
    return model.eval()


def encoding_breakdown(data: bytes):
    """Where the bytes of an encoded model go, as a :class:`pandas.DataFrame`.

    One row per tensor (``name``, ``kind``, ``shape``, ``kept`` weights) with the bytes of its
    ``codebook``, ``positions``, ``indices`` and ``values`` (raw numbers of sparse and dense tensors) and
    their ``total`` (each part's length prefix included); a first row ``"(header)"`` holds the magic bytes
    and the compressed JSON header. The ``total`` column sums to ``len(data)``.
    """
    import pandas as pd

    meta, entries = _parse(data)
    rows = [{"name": "(header)", "kind": "", "shape": "", "kept": 0, "codebook": 0, "positions": 0, "indices": 0,
             "values": 0, "total": meta["header_bytes"]}]
    for entry, parts in entries:
        name, kind, shape = entry[0], entry[1], tuple(entry[2])
        sizes = [len(p) for p in parts]
        row = {"name": name, "kind": kind, "shape": str(shape), "codebook": 0, "positions": 0, "indices": 0,
               "values": 0, "total": sum(len(write_varint(s)) + s for s in sizes)}
        tensor = _decode_tensor(entry, parts, meta["position_bits"])
        row["kept"] = int(torch.count_nonzero(tensor)) if kind != "dense" else tensor.numel()
        if kind == "shared":
            row.update(codebook=sizes[0], positions=sizes[1], indices=sizes[2])
        elif kind == "sparse":
            row.update(positions=sizes[0], values=sizes[1])
        else:
            row.update(values=sizes[0])
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# the chain
# --------------------------------------------------------------------------------------------------

@dataclass
class DeepCompression:
    """What :func:`deep_compress` produced.

    ``model`` is the final model in memory (pruned, shared, fine-tuned); ``masks`` and ``shared`` describe it;
    ``encoded`` maps each stage to its bytes: ``"pruned"`` (positions and float32 values, fixed-width
    positions), ``"shared"`` (codebooks and fixed-width indices), ``"huffman"`` (the same, Huffman-coded);
    ``histories`` holds the fine-tuning runs in order.
    """

    model: nn.Module
    masks: dict
    shared: dict
    encoded: dict = field(default_factory=dict)
    histories: list = field(default_factory=list)


def _check_amounts(amounts) -> tuple[float, ...]:
    if isinstance(amounts, (int, float)) and not isinstance(amounts, bool):
        amounts = (amounts,)
    if not isinstance(amounts, (tuple, list)) or not amounts:
        raise TypeError(f"amounts must be a number or a non-empty list of numbers in [0, 1), got {_describe(amounts)}")
    for a in amounts:
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 <= a < 1:
            raise ValueError(f"amounts must hold numbers in [0, 1), got {amounts!r}")
    if list(amounts) != sorted(amounts):
        raise ValueError(f"amounts must be non-decreasing (a pruning schedule), got {amounts!r}")
    return tuple(float(a) for a in amounts)


def _check_epochs(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def prune_and_finetune(model: nn.Module, train_loader, val_loader=None, *, amounts=(0.8, 0.9, 0.95),
                       epochs: int = 2, lr: float = 1e-3, threads: int = 1) -> tuple[dict, list[History]]:
    """Stage 1: for each sparsity in ``amounts``, global magnitude pruning of ``model`` (in place), then
    ``epochs`` of :func:`mmtutor.train.fit` (AdamW at ``lr``, no weight decay) with the pruned weights held
    at 0 by :func:`~mmtutor.compress.prune.keep_pruned_at_zero`. Returns the last masks and the histories.

    Calling it again with larger amounts continues the schedule (already-zero weights count as pruned).
    """
    amounts = _check_amounts(amounts)
    epochs = _check_epochs("epochs", epochs)
    histories = []
    with fixed_threads(threads):
        for amount in amounts:
            masks = prune_magnitude(model, amount)
            if epochs:
                hooks = keep_pruned_at_zero(model, masks)
                histories.append(fit(model, train_loader, val_loader, epochs=epochs, lr=lr, weight_decay=0.0,
                                     progress=False, desc=f"pruned {amount:.0%}"))
                for hook in hooks:
                    hook.remove()
                apply_masks(model, masks)          # exact zeros, whatever the optimizer did
    return masks, histories


def share_and_finetune(model: nn.Module, train_loader, val_loader=None, *, masks: dict | None = None,
                       bits: int = 4, epochs: int = 2, lr: float = 1e-3, init: str = "linear",
                       threads: int = 1) -> tuple[dict, list[History]]:
    """Stage 2: :func:`~mmtutor.compress.cluster.share_weights` (``2**bits`` centroids per layer, kept weights
    only), then ``epochs`` of fine-tuning of the centroids (and biases) through
    :func:`~mmtutor.compress.cluster.tie_to_codebooks`. Returns ``{name: SharedTensor}`` and the histories.
    """
    epochs = _check_epochs("epochs", epochs)
    histories = []
    with fixed_threads(threads):
        shared = share_weights(model, bits, masks=masks, init=init)
        if epochs:
            tie_to_codebooks(model, shared)
            histories.append(fit(model, train_loader, val_loader, epochs=epochs, lr=lr, weight_decay=0.0,
                                 progress=False, desc=f"{bits}-bit centroids"))
            shared = untie_codebooks(model)
    return shared, histories


def deep_compress(model: nn.Module, train_loader, val_loader=None, *, amounts=(0.8, 0.9, 0.95), bits: int = 4,
                  prune_epochs: int = 2, cluster_epochs: int = 2, lr: float = 1e-3, init: str = "linear",
                  position_bits: int = 4, float_dtype: str = "float16", threads: int = 1) -> DeepCompression:
    """Prune ``model`` (in place) along ``amounts``, share its kept weights in ``2**bits`` values, and encode it.

    1. :func:`prune_and_finetune` with ``amounts`` and ``prune_epochs``;
    2. :func:`share_and_finetune` with ``bits``, ``init`` and ``cluster_epochs``;
    3. :func:`encode_model` after each stage: see :class:`DeepCompression`.

    ``fit`` keeps the weights of the epoch with the lowest validation loss (training loss without ``val_loader``).
    Training runs on ``threads`` PyTorch threads (small matrices are fastest on one).
    """
    amounts = _check_amounts(amounts)
    _check_epochs("prune_epochs", prune_epochs)
    _check_epochs("cluster_epochs", cluster_epochs)
    masks, histories = prune_and_finetune(model, train_loader, val_loader, amounts=amounts, epochs=prune_epochs,
                                          lr=lr, threads=threads)
    result = DeepCompression(model=model, masks=masks, shared={}, histories=histories)
    result.encoded["pruned"] = encode_model(model, masks=masks, coding="fixed", position_bits=position_bits,
                                            float_dtype="float32")
    result.shared, histories = share_and_finetune(model, train_loader, val_loader, masks=masks, bits=bits,
                                                  epochs=cluster_epochs, lr=lr, init=init, threads=threads)
    result.histories += histories
    for coding, stage in (("fixed", "shared"), ("huffman", "huffman")):
        result.encoded[stage] = encode_model(model, result.shared, coding=coding, position_bits=position_bits,
                                             float_dtype=float_dtype)
    return result
