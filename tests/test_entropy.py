"""Entropy coding: Huffman codes checked against the entropy bound and by round trips, gap coding of positions."""

import heapq
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import entropy as scipy_entropy

from mmtutor.compress.entropy import (canonical_codes, decode_symbols, encode_symbols, entropy_bits,
                                      huffman_code_lengths, huffman_decode, huffman_encode, pack_bits,
                                      positions_from_relative, read_varint, relative_positions, unpack_bits,
                                      write_varint)

FAST = settings(max_examples=40, deadline=None)

streams = st.builds(lambda seed, n, k, skew: np.random.default_rng(seed).choice(
    k, size=n, p=np.random.default_rng(seed + 1).dirichlet(np.full(k, skew))),
    st.integers(0, 10_000), st.integers(1, 3000), st.integers(1, 40), st.sampled_from([0.1, 1.0, 10.0]))


def reference_huffman_cost(counts) -> int:
    """Total bits of an optimal prefix code: the sum of all merged weights (textbook Huffman, independent)."""
    heap = [int(c) for c in counts if c > 0]
    if len(heap) == 1:
        return heap[0]
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    return cost


@FAST
@given(symbols=streams)
def test_huffman_round_trip_and_entropy_bound(symbols):
    data = huffman_encode(symbols)
    assert np.array_equal(huffman_decode(data), symbols)
    counts = np.bincount(symbols)
    lengths = huffman_code_lengths(counts)
    average = float((counts * lengths).sum() / len(symbols))
    h = entropy_bits(symbols)
    assert h == pytest.approx(scipy_entropy(counts, base=2), abs=1e-9)
    if len(np.flatnonzero(counts)) > 1:           # (one symbol alone: H = 0, and its code word has 1 bit)
        assert h - 1e-9 <= average < h + 1                                # H <= l < H + 1
    assert (counts * lengths).sum() == reference_huffman_cost(counts)     # optimal total length
    assert len(data) * 8 >= (counts * lengths).sum()                      # header not forgotten


@FAST
@given(symbols=streams)
def test_canonical_codes_are_prefix_free(symbols):
    lengths = huffman_code_lengths(np.bincount(symbols))
    codes = canonical_codes(lengths)
    words = [format(int(codes[s]), f"0{int(lengths[s])}b") for s in np.flatnonzero(lengths)]
    assert len(set(words)) == len(words)
    for a in words:
        for b in words:
            assert a == b or not b.startswith(a)


def test_huffman_beats_fixed_width_on_skewed_data_and_zlib_is_compared():
    rng = np.random.default_rng(0)
    symbols = rng.choice(16, size=20_000, p=np.r_[0.5, np.full(15, 0.5 / 15)])
    huffman = len(huffman_encode(symbols, 16))
    assert huffman < len(pack_bits(symbols, 4))
    assert huffman < len(zlib.compress(pack_bits(symbols, 4), 9))
    assert huffman * 8 / len(symbols) < entropy_bits(symbols) + 0.05      # near the bound, table included


def test_edge_cases():
    for symbols in ([], [7], [3, 3, 3]):
        assert np.array_equal(huffman_decode(huffman_encode(symbols)), symbols)
        assert np.array_equal(decode_symbols(encode_symbols(symbols, 8, "fixed")), symbols)
    assert huffman_code_lengths([0, 5, 0]).tolist() == [0, 1, 0]


@FAST
@given(seed=st.integers(0, 10_000), width=st.integers(1, 20), n=st.integers(0, 500))
def test_pack_bits_round_trip(seed, width, n):
    symbols = np.random.default_rng(seed).integers(0, 1 << width, size=n)
    data = pack_bits(symbols, width)
    assert len(data) == -(-width * n // 8)
    assert np.array_equal(unpack_bits(data, width, n), symbols)


@FAST
@given(value=st.integers(0, 2**62))
def test_varint_round_trip(value):
    data = write_varint(value) + b"tail"
    assert read_varint(data, 0) == (value, len(data) - 4)


@FAST
@given(seed=st.integers(0, 10_000), size=st.integers(0, 3000), density=st.floats(0, 1), bits=st.integers(1, 9))
def test_relative_positions_round_trip(seed, size, density, bits):
    mask = np.random.default_rng(seed).random(size) < density
    symbols = relative_positions(mask, bits)
    assert (symbols != (1 << bits) - 1).sum() == mask.sum()               # one non-escape symbol per kept entry
    assert np.array_equal(positions_from_relative(symbols, bits, size), mask)


def test_relative_positions_example():
    mask = np.zeros(40, dtype=bool)
    mask[[0, 2, 20]] = True
    assert relative_positions(mask, 2).tolist() == [0, 1, 3, 3, 3, 3, 3, 2]   # 17 zeros = 5 escapes of 3, then 2


def test_bad_input():
    with pytest.raises(TypeError, match="symbols"):
        huffman_encode([0.5, 1.0])
    with pytest.raises(ValueError, match="symbols"):
        huffman_encode([-1, 2])
    with pytest.raises(ValueError, match="alphabet_size"):
        huffman_encode([0, 9], alphabet_size=4)
    with pytest.raises(ValueError, match="symbols must not be empty"):
        entropy_bits([])
    with pytest.raises(ValueError, match="width"):
        pack_bits([1], 0)
    with pytest.raises(ValueError, match="coding"):
        encode_symbols([1], 4, "arithmetic")
    with pytest.raises(TypeError, match="mask"):
        relative_positions(np.array([0, 1]), 4)
    with pytest.raises(ValueError, match="Kraft"):
        canonical_codes([1, 1, 1])
    with pytest.raises(TypeError, match="data"):
        huffman_decode("not bytes")
    with pytest.raises(ValueError, match="truncated"):
        huffman_decode(huffman_encode(np.arange(100) % 7)[:-5])
    with pytest.raises(ValueError, match="size"):
        positions_from_relative([0, 0, 0], 4, 2)
