"""Tests of mmtutor.retrieval: ranks and Recall@k against a brute force over every tie-breaking order."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import top_k_accuracy_score

from mmtutor.retrieval import (TIES, chance_recall_at_k, recall_at_k, retrieval_ranks,
                               same_label_matrix)


def brute_force(similarity, relevant, k):
    """Per tie rule, the ranks and Recall@k over all M! orders that could break the ties.

    An order is a permutation ``perm`` of the items; items are sorted by descending score and, among equal
    scores, by their position in ``perm``. Optimistic = the best order, pessimistic = the worst, expected =
    the mean over all orders (every order equally likely).
    """
    n, m = similarity.shape
    ranks = np.zeros((n, math.factorial(m)))
    for i in range(n):
        for p, perm in enumerate(itertools.permutations(range(m))):
            position = {item: pos for pos, item in enumerate(perm)}
            order = sorted(range(m), key=lambda j: (-similarity[i, j], position[j]))
            ranks[i, p] = 1 + min(pos for pos, j in enumerate(order) if relevant[i, j])
    out = {"optimistic": ranks.min(axis=1), "pessimistic": ranks.max(axis=1), "expected": ranks.mean(axis=1)}
    hits = ranks <= k
    recall = {"optimistic": hits.max(axis=1).mean(), "pessimistic": hits.min(axis=1).mean(),
              "expected": hits.mean(axis=1).mean()}
    return out, recall


@st.composite
def tied_problems(draw):
    """Small similarity matrices with many ties (scores in 0..3), a relevance mask and k."""
    n = draw(st.integers(1, 4))
    m = draw(st.integers(1, 5))
    scores = np.array(draw(st.lists(st.integers(0, 3), min_size=n * m, max_size=n * m)), dtype=float)
    similarity = scores.reshape(n, m) / 4.0
    mask = np.array(draw(st.lists(st.booleans(), min_size=n * m, max_size=n * m))).reshape(n, m)
    rows = draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n))
    mask[np.arange(n), rows] = True  # at least one relevant item per query
    k = draw(st.integers(1, m))
    return similarity, mask, k


@settings(max_examples=60, deadline=None)
@given(tied_problems())
def test_ranks_and_recall_match_brute_force_over_tie_orders(problem):
    similarity, relevant, k = problem
    ranks, recall = brute_force(similarity, relevant, k)
    for ties in TIES:
        np.testing.assert_allclose(retrieval_ranks(similarity, relevant, ties=ties), ranks[ties], rtol=1e-12)
        assert recall_at_k(similarity, k, relevant, ties=ties) == pytest.approx(recall[ties], abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4), st.integers(0, 10_000))
def test_default_relevance_is_the_diagonal(n, seed):
    scores = np.random.default_rng(seed).integers(0, 3, size=(n, n)).astype(float)
    for k in range(1, n + 1):
        assert recall_at_k(scores, k) == recall_at_k(scores, k, relevant=np.eye(n, dtype=bool))


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_recall_without_ties_equals_sklearn_top_k_accuracy(k):
    rng = np.random.default_rng(k)
    similarity = rng.normal(size=(40, 40))
    expected = top_k_accuracy_score(np.arange(40), similarity, k=k, labels=np.arange(40))
    for ties in TIES:
        assert recall_at_k(similarity, k, ties=ties) == pytest.approx(expected)


def test_chance_level_closed_form():
    rng = np.random.default_rng(0)
    relevant = rng.random((30, 50)) < 0.1
    relevant[np.arange(30), rng.integers(0, 50, 30)] = True
    for k in (1, 3, 7):
        r = relevant.sum(axis=1)
        closed = np.mean([1 - math.comb(50 - ri, k) / math.comb(50, k) for ri in r])
        assert chance_recall_at_k(relevant, k) == pytest.approx(closed)
    assert chance_recall_at_k(np.eye(500, dtype=bool), 5) == pytest.approx(5 / 500)


def test_expected_rank_of_a_constant_matrix():
    # one relevant among M tied items: expected rank (M + 1) / 2
    assert retrieval_ranks(np.zeros((7, 7))) == pytest.approx(np.full(7, 4.0))
    assert retrieval_ranks(np.zeros((7, 7)), ties="optimistic").tolist() == [1.0] * 7
    assert retrieval_ranks(np.zeros((7, 7)), ties="pessimistic").tolist() == [7.0] * 7
    # r relevant among M tied items: (M + 1) / (r + 1)
    relevant = np.zeros((1, 7), dtype=bool)
    relevant[0, :3] = True
    assert retrieval_ranks(np.zeros((1, 7)), relevant)[0] == pytest.approx(8 / 4)


def test_same_label_matrix():
    mask = same_label_matrix(["a", "b", "a"])
    np.testing.assert_array_equal(mask, [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    assert same_label_matrix([1, 2], [2, 2, 1]).tolist() == [[False, False, True], [True, True, False]]


def test_bad_input():
    good = np.zeros((3, 3))
    with pytest.raises(ValueError, match="similarity"):
        recall_at_k(np.zeros(3), 1)
    with pytest.raises(ValueError, match="similarity"):
        recall_at_k(np.array([[0.0, np.nan], [0, 0]]), 1)
    with pytest.raises(TypeError, match="similarity"):
        recall_at_k(torch.zeros(3, 3), 1)
    with pytest.raises(TypeError, match="similarity"):
        recall_at_k(np.array([["a"]]), 1)
    with pytest.raises(ValueError, match="similarity must be square"):
        recall_at_k(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="k must lie"):
        recall_at_k(good, 0)
    with pytest.raises(ValueError, match="k must lie"):
        recall_at_k(good, 4)
    with pytest.raises(TypeError, match="k must be an int"):
        recall_at_k(good, 1.0)
    with pytest.raises(ValueError, match="relevant must have the shape"):
        recall_at_k(good, 1, relevant=np.eye(2, dtype=bool))
    with pytest.raises(TypeError, match="relevant must be a boolean"):
        recall_at_k(good, 1, relevant=np.eye(3))
    with pytest.raises(ValueError, match="relevant must mark at least one item per query, got none in row 1"):
        recall_at_k(good, 1, relevant=np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1]], dtype=bool))
    with pytest.raises(ValueError, match="ties"):
        retrieval_ranks(good, ties="random")
    with pytest.raises(TypeError, match="relevant"):
        chance_recall_at_k(None, 1)
    with pytest.raises(TypeError, match="query_labels"):
        same_label_matrix("abc")
    with pytest.raises(ValueError, match="item_labels"):
        same_label_matrix(["a"], [])
