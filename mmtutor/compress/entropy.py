r"""Entropy coding: store integer symbols (codebook indices, gaps between non-zero weights) in few bits.

**Entropy.** A stream of :math:`n` symbols whose values occur with frequencies :math:`p_s` carries

.. math:: H = -\sum_s p_s \log_2 p_s \quad \text{bits per symbol}

(:func:`entropy_bits`). No code that writes every symbol with a whole number of bits, the same
code word each time, can average fewer than :math:`H` bits per symbol (Shannon's source-coding theorem).

**Huffman coding** (:func:`huffman_code_lengths`, :func:`huffman_encode`). Repeatedly merge the two least
frequent symbols (or merged groups) into one; a symbol's code length :math:`\ell_s` is the number of merges
above it. The resulting prefix code is optimal among symbol-by-symbol codes and its average length
:math:`\bar\ell = \sum_s p_s \ell_s` satisfies

.. math:: H \le \bar\ell < H + 1 .

The code words are made *canonical*: symbols sorted by (length, value) receive consecutive binary numbers,
so the lengths alone (one byte per symbol of the alphabet) describe the whole code and are all the decoder
needs. :func:`huffman_encode` writes the lengths, the symbol count and the bits; :func:`huffman_decode`
reads them back exactly.

**Fixed-width packing** (:func:`pack_bits`): every symbol in :math:`w` bits, the baseline that Huffman coding
improves on.

**Positions of non-zero weights** (:func:`relative_positions`). A pruned tensor is stored as its non-zero
values plus where they are. As in Deep Compression (Han et al., 2016), the position of each non-zero is
written as the number of zeros :math:`d` skipped since the previous one, in a small alphabet
:math:`\{0, \dots, M\}` with :math:`M = 2^b - 1`: a run :math:`d \ge M` is written as :math:`\lfloor d/M
\rfloor` escape symbols :math:`M` ("skip :math:`M` zeros, no weight here") followed by :math:`d \bmod M`.
Han et al. pad with a stored zero weight instead of an escape; the escape keeps the value stream free of
padding. :func:`positions_from_relative` inverts it.

All streams are self-describing ``bytes``; integers in headers are unsigned LEB128 varints
(:func:`write_varint`), so every header byte is counted by ``len()``.
"""

from __future__ import annotations

import heapq

import numpy as np

from mmtutor.runtime import _describe

__all__ = ["entropy_bits", "huffman_code_lengths", "canonical_codes", "huffman_encode", "huffman_decode",
           "pack_bits", "unpack_bits", "encode_symbols", "decode_symbols", "relative_positions",
           "positions_from_relative", "write_varint", "read_varint"]

#: Longest code word :func:`huffman_decode` handles (a Huffman code this deep needs > 10^9 symbols).
MAX_CODE_LENGTH = 48


def _check_symbols(symbols, name: str = "symbols", alphabet_size: int | None = None) -> np.ndarray:
    """A 1-D int64 array of non-negative integers (from any integer array-like; a torch tensor too)."""
    if hasattr(symbols, "detach"):                          # a torch tensor
        symbols = symbols.detach().cpu().numpy()
    if isinstance(symbols, (str, bytes)) or not isinstance(symbols, (np.ndarray, list, tuple, range)):
        raise TypeError(f"{name} must be a 1-D array of non-negative integers, got {_describe(symbols)}")
    array = np.asarray(symbols)
    if array.size == 0:
        array = array.astype(np.int64)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got {_describe(array)}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must be >= 0, got a minimum of {array.min()}")
    if alphabet_size is not None and array.size and array.max() >= alphabet_size:
        raise ValueError(f"{name} must be < alphabet_size={alphabet_size}, got a maximum of {array.max()}")
    return array


def _check_positive_int(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {_describe(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be >= {minimum}{upper}, got {value}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# varints: the header integers
# --------------------------------------------------------------------------------------------------

def write_varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low bits first, high bit set on every byte but the last."""
    value = _check_positive_int("value", value, minimum=0)
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """``(value, next_offset)`` of the varint starting at ``data[offset]``."""
    value, shift = 0, 0
    while True:
        if offset >= len(data):
            raise ValueError("data must hold a complete varint, got truncated bytes")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, offset


# --------------------------------------------------------------------------------------------------
# entropy and Huffman code lengths
# --------------------------------------------------------------------------------------------------

def entropy_bits(symbols) -> float:
    """Shannon entropy :math:`H = -\\sum_s p_s \\log_2 p_s` of the empirical distribution of ``symbols``, in bits."""
    symbols = _check_symbols(symbols)
    if symbols.size == 0:
        raise ValueError("symbols must not be empty (an empty stream has no distribution)")
    p = np.bincount(symbols) / symbols.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def huffman_code_lengths(counts) -> np.ndarray:
    """Code length :math:`\\ell_s` of each symbol of a Huffman code for ``counts`` (0 for symbols that never occur).

    ``counts[s]`` is how often symbol :math:`s` occurs. The two lightest groups are merged first; ties go
    to the group created first (then the lowest symbol), so the lengths are deterministic. A single
    occurring symbol gets a 1-bit code.
    """
    counts = _check_symbols(counts, "counts")
    lengths = np.zeros(len(counts), dtype=np.int64)
    present = np.flatnonzero(counts)
    if len(present) == 0:
        return lengths
    if len(present) == 1:
        lengths[present] = 1
        return lengths
    # heap of (weight, tie-breaker, symbols in the group); each merge adds one bit to all its symbols
    heap = [(int(counts[s]), i, [int(s)]) for i, s in enumerate(present)]
    heapq.heapify(heap)
    order = len(heap)
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        lengths[s1] += 1
        lengths[s2] += 1
        heapq.heappush(heap, (w1 + w2, order, s1 + s2))
        order += 1
    return lengths


def canonical_codes(lengths) -> np.ndarray:
    """The canonical code word (an integer, read in ``lengths[s]`` bits) of each symbol.

    Symbols sorted by (length, value) get consecutive numbers; moving to a longer length shifts left:
    ``code = (code + 1) << (next_length - length)``. Requires Kraft's inequality :math:`\\sum 2^{-\\ell_s} \\le 1`.
    """
    lengths = _check_symbols(lengths, "lengths")
    if lengths.size and lengths.max() > MAX_CODE_LENGTH:
        raise ValueError(f"lengths must be <= {MAX_CODE_LENGTH}, got {lengths.max()}")
    used = np.flatnonzero(lengths)
    if sum(2.0 ** -int(lengths[s]) for s in used) > 1 + 1e-12:
        raise ValueError("lengths must satisfy Kraft's inequality sum(2**-length) <= 1 to form a prefix code")
    codes = np.zeros(len(lengths), dtype=np.int64)
    order = sorted(used, key=lambda s: (lengths[s], s))
    code, previous = 0, None
    for s in order:
        if previous is not None:
            code = (code + 1) << int(lengths[s] - lengths[previous])
        codes[s] = code
        previous = s
    return codes


# --------------------------------------------------------------------------------------------------
# bit streams
# --------------------------------------------------------------------------------------------------

def _bits_of(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The bits (uint8, most significant first) of each ``values[i]`` written in ``widths[i]`` bits, concatenated."""
    total = int(widths.sum())
    owner = np.repeat(np.arange(len(values)), widths)
    starts = np.cumsum(widths) - widths
    place = np.arange(total) - np.repeat(starts, widths)              # 0 = most significant bit of the word
    shift = widths[owner] - 1 - place
    return ((values[owner] >> shift) & 1).astype(np.uint8)


def pack_bits(symbols, width: int) -> bytes:
    """Every symbol in ``width`` bits (1 to 32), most significant bit first, zero-padded to whole bytes."""
    width = _check_positive_int("width", width, 1, 32)
    symbols = _check_symbols(symbols, alphabet_size=1 << width)
    return np.packbits(_bits_of(symbols, np.full(len(symbols), width, dtype=np.int64))).tobytes()


def unpack_bits(data: bytes, width: int, count: int) -> np.ndarray:
    """The ``count`` symbols of ``width`` bits that :func:`pack_bits` wrote."""
    width = _check_positive_int("width", width, 1, 32)
    count = _check_positive_int("count", count, 0)
    bits = np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8))
    if bits.size < width * count:
        raise ValueError(f"data must hold {width * count} bits for count={count}, got {bits.size}")
    words = bits[:width * count].reshape(count, width).astype(np.int64)
    return words @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


# --------------------------------------------------------------------------------------------------
# Huffman streams
# --------------------------------------------------------------------------------------------------

def huffman_encode(symbols, alphabet_size: int | None = None) -> bytes:
    """Huffman-code ``symbols`` (integers in ``[0, alphabet_size)``) into self-describing bytes.

    Layout: varint ``alphabet_size``, one byte per symbol of the alphabet with its code length (0 if
    absent), varint symbol count, then the code words (canonical, most significant bit first),
    zero-padded to a whole byte. Everything the decoder needs is in the bytes.
    """
    symbols = _check_symbols(symbols)
    if alphabet_size is None:
        alphabet_size = int(symbols.max()) + 1 if symbols.size else 1
    alphabet_size = _check_positive_int("alphabet_size", alphabet_size)
    symbols = _check_symbols(symbols, alphabet_size=alphabet_size)
    lengths = huffman_code_lengths(np.bincount(symbols, minlength=alphabet_size))
    codes = canonical_codes(lengths)
    bits = _bits_of(codes[symbols], lengths[symbols])
    return (write_varint(alphabet_size) + lengths.astype(np.uint8).tobytes() + write_varint(len(symbols))
            + np.packbits(bits).tobytes())


def _read_huffman_header(data: bytes, offset: int) -> tuple[np.ndarray, int, int]:
    alphabet_size, offset = read_varint(data, offset)
    if offset + alphabet_size > len(data):
        raise ValueError("data must hold the code lengths of the whole alphabet, got truncated bytes")
    lengths = np.frombuffer(data[offset:offset + alphabet_size], dtype=np.uint8).astype(np.int64)
    count, offset = read_varint(data, offset + alphabet_size)
    return lengths, count, offset


def huffman_decode(data: bytes) -> np.ndarray:
    """The symbols (int64) that :func:`huffman_encode` wrote into ``data``.

    Decoding is canonical: read :math:`L = \\max_s \\ell_s` bits at a position as an integer :math:`w`;
    the code word there has the smallest length :math:`\\ell` whose left-aligned code range ends above
    :math:`w`, and its rank within that length gives the symbol. The windows and their symbols are
    computed for every bit position at once with NumPy; only the hop from one code word to the next is
    a Python loop.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes from huffman_encode, got {_describe(data)}")
    data = bytes(data)
    lengths, count, offset = _read_huffman_header(data, 0)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if not lengths.any():
        raise ValueError("data must describe a code with at least one symbol, got all code lengths 0")
    codes = canonical_codes(lengths)
    longest = int(lengths.max())
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, offset=offset)).astype(np.int64)
    padded = np.concatenate([bits, np.zeros(longest, dtype=np.int64)])
    window = np.zeros(len(bits), dtype=np.int64)
    for j in range(longest):                                  # w[p] = the `longest` bits starting at p
        window = (window << 1) | padded[j:j + len(bits)]
    # canonical code words, left-aligned to `longest` bits, sorted by (length, symbol)
    order = np.array(sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)))
    starts = codes[order] << (longest - lengths[order])
    ends = starts + (1 << (longest - lengths[order]))        # each code word covers [start, end)
    rank = np.searchsorted(starts, window, side="right") - 1
    step = lengths[order][rank]
    symbol_at = order[rank]
    step_list = step.tolist()
    positions, p = [], 0
    for _ in range(count):
        if p >= len(bits):
            raise ValueError(f"data must hold {count} code words, got truncated bits")
        positions.append(p)
        p += step_list[p]
    if p > len(bits) or not np.all(window[positions] < ends[rank[positions]]):
        raise ValueError("data must be a valid Huffman stream, got bits that match no code word")
    return symbol_at[positions]


# --------------------------------------------------------------------------------------------------
# one stream, fixed-width or Huffman
# --------------------------------------------------------------------------------------------------

_FIXED, _HUFFMAN = 0, 1


def encode_symbols(symbols, alphabet_size: int, coding: str = "huffman") -> bytes:
    """A tagged stream of ``symbols`` in ``[0, alphabet_size)``: ``"huffman"`` or ``"fixed"`` width.

    Fixed width uses :math:`\\lceil \\log_2(\\text{alphabet\\_size}) \\rceil` bits per symbol (at least 1). Layout: one tag
    byte, then :func:`huffman_encode`'s bytes, or varint width, varint count and :func:`pack_bits`'s bytes.
    """
    alphabet_size = _check_positive_int("alphabet_size", alphabet_size)
    symbols = _check_symbols(symbols, alphabet_size=alphabet_size)
    if coding == "huffman":
        return bytes([_HUFFMAN]) + huffman_encode(symbols, alphabet_size)
    if coding == "fixed":
        width = max(1, (alphabet_size - 1).bit_length())
        return bytes([_FIXED]) + write_varint(width) + write_varint(len(symbols)) + pack_bits(symbols, width)
    raise ValueError(f"coding must be 'huffman' or 'fixed', got {coding!r}")


def decode_symbols(data: bytes) -> np.ndarray:
    """The symbols of a stream written by :func:`encode_symbols`."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise TypeError(f"data must be non-empty bytes from encode_symbols, got {_describe(data)}")
    data = bytes(data)
    if data[0] == _HUFFMAN:
        return huffman_decode(data[1:])
    if data[0] == _FIXED:
        width, offset = read_varint(data, 1)
        count, offset = read_varint(data, offset)
        return unpack_bits(data[offset:], width, count)
    raise ValueError(f"data must start with a stream tag 0 (fixed) or 1 (huffman), got {data[0]}")


# --------------------------------------------------------------------------------------------------
# positions of non-zero weights
# --------------------------------------------------------------------------------------------------

def relative_positions(mask, bits: int = 4) -> np.ndarray:
    """The gaps between the ``True`` entries of a flattened ``mask``, in symbols ``0 .. 2**bits - 1``.

    Each kept entry is preceded by :math:`d` skipped entries; :math:`d` is written as :math:`\\lfloor d/M
    \\rfloor` escapes :math:`M = 2^b - 1` and then :math:`d \\bmod M`. There is one non-escape symbol per
    kept entry. Trailing ``False`` entries need no symbol (the decoder knows the length).
    """
    bits = _check_positive_int("bits", bits, 1, 16)
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"mask must be a boolean array, got {_describe(mask)}")
    escape = (1 << bits) - 1
    kept = np.flatnonzero(mask.reshape(-1))
    skipped = np.diff(kept, prepend=-1) - 1                       # zeros since the previous kept entry
    escapes, rest = np.divmod(skipped, escape)
    counts = escapes + 1
    out = np.full(int(counts.sum()), escape, dtype=np.int64)
    out[np.cumsum(counts) - 1] = rest
    return out


def positions_from_relative(symbols, bits: int, size: int) -> np.ndarray:
    """Flat boolean mask of ``size`` entries rebuilt from :func:`relative_positions`' symbols."""
    bits = _check_positive_int("bits", bits, 1, 16)
    size = _check_positive_int("size", size, 0)
    escape = (1 << bits) - 1
    symbols = _check_symbols(symbols, alphabet_size=escape + 1)
    is_escape = symbols == escape
    advance = np.where(is_escape, escape, symbols + 1)
    kept = np.cumsum(advance)[~is_escape] - 1
    if kept.size and kept[-1] >= size:
        raise ValueError(f"symbols must describe positions < size={size}, got position {kept[-1]}")
    mask = np.zeros(size, dtype=bool)
    mask[kept] = True
    return mask
