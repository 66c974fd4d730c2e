"""BLEU against the worked examples of Papineni et al. (2002) and hand-computed values.

No independent BLEU implementation (sacreBLEU, NLTK, torchmetrics) is installed in the book's environment,
so the reference values are the paper's own counts (section 2.1, examples 1 and 2) and values computed by
hand from its definition; the property tests check what follows from that definition.
"""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtutor.text_metrics import bleu, brevity_penalty, modified_precision, ngrams

# Papineni et al. (2002), example 1 (lower-cased, punctuation dropped)
REFERENCES = ["it is a guide to action that ensures that the military will forever heed party commands",
              "it is the guiding principle which guarantees the military forces always being under the command "
              "of the party",
              "it is the practical guide for the army always to heed the directions of the party"]
CANDIDATE_1 = "it is a guide to action which ensures that the military always obeys the commands of the party"
CANDIDATE_2 = "it is to insure the troops forever hearing the activity guidebook that party direct"


def test_paper_example_modified_precisions():
    # the paper: candidate 1 has unigram precision 17/18 and bigram precision 10/17,
    # candidate 2 has 8/14 and 1/13
    assert modified_precision([CANDIDATE_1], [REFERENCES], 1) == (17, 18)
    assert modified_precision([CANDIDATE_1], [REFERENCES], 2) == (10, 17)
    assert modified_precision([CANDIDATE_2], [REFERENCES], 1) == (8, 14)
    assert modified_precision([CANDIDATE_2], [REFERENCES], 2) == (1, 13)


def test_paper_example_clipping():
    # "the the the the the the the": unclipped precision 7/7, modified 2/7 (reference 1 has "the" twice)
    refs = [["the cat is on the mat", "there is a cat on the mat"]]
    assert modified_precision(["the the the the the the the"], refs, 1) == (2, 7)


def test_hand_computed_corpus_bleu():
    # every n-gram matches, the candidate is one word short: BLEU = BP = exp(1 - 5/4)
    assert bleu(["a b c d"], ["a b c d e"]) == pytest.approx(math.exp(-0.25), abs=1e-12)
    # corpus counts are pooled before dividing: unigrams 4/6, bigrams 2/4, no length penalty (c = r = 6)
    value = bleu(["a b c", "x y z"], ["a b c", "x q w"], max_n=2)
    assert value == pytest.approx(math.sqrt(4 / 6 * 2 / 4), abs=1e-12)
    # a longer candidate is not penalised, its precision drops instead: p1 = 4/5, p2 = 3/4
    assert bleu(["a b c d d"], ["a b c d"], max_n=2) == pytest.approx(math.sqrt(4 / 5 * 3 / 4), abs=1e-12)
    # the closest reference length decides the penalty (5 is closer to 4 than 9)
    assert bleu(["a b c d"], [["a b c d e", "a b c d e f g h i"]]) == pytest.approx(math.exp(-0.25), abs=1e-12)
    # no 4-gram in common: BLEU-4 is 0 (no smoothing)
    assert bleu(["a b c"], ["a b c"]) == 0.0


def test_ngrams_and_brevity_penalty():
    assert ngrams("a b a b", 2) == {("a", "b"): 2, ("b", "a"): 1}
    assert ngrams(["a"], 2) == {}
    assert brevity_penalty(5, 4) == 1.0 and brevity_penalty(0, 3) == 0.0
    assert brevity_penalty(2, 4) == pytest.approx(math.exp(-1))


words = st.lists(st.sampled_from(list("abcde")), min_size=4, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(words, words), min_size=1, max_size=5))
def test_bleu_properties(pairs):
    candidates, references = [c for c, _ in pairs], [[r] for _, r in pairs]
    value = bleu(candidates, references)
    assert 0.0 <= value <= 1.0 + 1e-12
    assert bleu(candidates, [[c] for c in candidates]) == pytest.approx(1.0)          # identical: perfect
    assert bleu(candidates[::-1], references[::-1]) == pytest.approx(value)         # corpus order irrelevant
    for n in (1, 2):
        matched, total = modified_precision(candidates, references, n)
        assert 0 <= matched <= total == sum(max(len(c) - n + 1, 0) for c in candidates)


def test_bad_inputs():
    with pytest.raises(ValueError, match="candidates"):
        bleu([], [])
    with pytest.raises(ValueError, match="references"):
        bleu(["a b"], ["a b", "c d"])
    with pytest.raises(ValueError, match=r"references\[0\]"):
        bleu(["a b"], [[]])
    with pytest.raises(TypeError, match=r"candidates\[0\]"):
        bleu([3], ["a"])
    with pytest.raises(ValueError, match="max_n"):
        bleu(["a"], ["a"], max_n=0)
    with pytest.raises(TypeError, match="n must be an int"):
        ngrams("a b", 1.5)
    with pytest.raises(ValueError, match="candidate_length"):
        brevity_penalty(-1, 3)
