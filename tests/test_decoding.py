"""mmtutor.decoding against transformers' logits processors, on random logits."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
                          TopPLogitsWarper)

from mmtutor import decoding as d


def random_logits(seed, batch=3, vocab=50):
    return torch.randn(batch, vocab, generator=torch.Generator().manual_seed(seed)) * 3


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.1, 5.0), st.integers(1, 60), st.floats(0.05, 1.0), st.floats(1.01, 3.0))
def test_matches_transformers(seed, temperature, k, p, penalty):
    logits = random_logits(seed)
    ids = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(seed + 1))
    torch.testing.assert_close(d.apply_temperature(logits, temperature),
                               TemperatureLogitsWarper(temperature)(ids, logits.clone()))
    torch.testing.assert_close(d.top_k_filter(logits, k), TopKLogitsWarper(k)(ids, logits.clone()))
    ours, theirs = d.top_p_filter(logits, p), TopPLogitsWarper(p)(ids, logits.clone())
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    torch.testing.assert_close(d.apply_repetition_penalty(logits, ids, penalty),
                               RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone()))


def test_top_p_keeps_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(d.top_p_filter(logits, 0.8))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(d.top_p_filter(logits, 0.01)).sum() == 1   # always at least one token


def test_bad_input():
    logits = random_logits(0)
    with pytest.raises(ValueError, match="temperature"):
        d.apply_temperature(logits, 0)
    with pytest.raises(ValueError, match="p must be"):
        d.top_p_filter(logits, 1.5)
    with pytest.raises(ValueError, match="k must be"):
        d.top_k_filter(logits, 0)
    with pytest.raises(TypeError, match="logits"):
        d.top_k_filter(logits[0], 3)
    with pytest.raises(ValueError, match="previous_ids"):
        d.apply_repetition_penalty(logits, torch.zeros(2, 3, dtype=torch.long), 1.2)
