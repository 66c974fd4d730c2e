r"""BLEU, the n-gram overlap score of machine translation and captioning (Papineni et al., 2002).

For candidate sentences :math:`c_1, \dots, c_M`, each with one or more reference sentences, BLEU-:math:`N` is

.. math::

    \mathrm{BLEU} = \mathrm{BP} \cdot \exp\Big(\sum_{n=1}^{N} w_n \log p_n\Big), \qquad w_n = 1/N,

with, summed over the whole corpus (not averaged per sentence),

* the *modified* (clipped) :math:`n`-gram precision
  :math:`p_n = \sum_i \sum_{g \in \text{n-grams}(c_i)} \min\big(\mathrm{count}_{c_i}(g),
  \max_r \mathrm{count}_{r}(g)\big) \,/\, \sum_i |\text{n-grams}(c_i)|`: a candidate n-gram is credited
  at most as many times as it occurs in a single reference, so "the the the the" earns no more than the
  references allow;
* the *brevity penalty* :math:`\mathrm{BP} = 1` if :math:`c > r`, else :math:`e^{1 - r/c}`, where
  :math:`c` is the total candidate length and :math:`r` the sum, over sentences, of the reference length
  closest to the candidate's (the shorter one on a tie). Precision alone would reward very short output.

If any :math:`p_n` is zero the geometric mean, and BLEU, is zero (no smoothing: this is the definition of
the paper, which corpus-level scores rarely hit; sentence-level scores often do). Scores lie in
:math:`[0, 1]`; tools such as sacreBLEU print them multiplied by 100. Tokens are whatever the caller
passes: :func:`bleu` splits strings on white space.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Sequence

from mmtutor.runtime import _check_int, _describe  # the package's shared validators

__all__ = ["ngrams", "modified_precision", "brevity_penalty", "bleu"]


def _tokens(name: str, sentence) -> list[str]:
    if isinstance(sentence, str):
        return sentence.split()
    if isinstance(sentence, Sequence) and all(isinstance(t, str) for t in sentence):
        return list(sentence)
    raise TypeError(f"{name} must be a str or a list of str tokens, got {_describe(sentence)}")


def ngrams(tokens, n: int) -> Counter:
    """The multiset of the ``n``-grams of ``tokens`` (a list of str), as a ``Counter`` of tuples."""
    tokens = _tokens("tokens", tokens)
    n = _check_int("n", n, 1)
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _check_corpus(candidates, references) -> tuple[list[list[str]], list[list[list[str]]]]:
    if isinstance(candidates, str) or not isinstance(candidates, Sequence) or len(candidates) == 0:
        raise ValueError(f"candidates must be a non-empty list of sentences, got {_describe(candidates)}")
    if isinstance(references, str) or not isinstance(references, Sequence) or len(references) != len(candidates):
        raise ValueError(f"references must be a list with one entry per candidate ({len(candidates)}), "
                         f"got {_describe(references)}")
    cands = [_tokens(f"candidates[{i}]", c) for i, c in enumerate(candidates)]
    refs = []
    for i, entry in enumerate(references):
        if isinstance(entry, str):
            entry = [entry]                              # a single reference given as a string
        if not isinstance(entry, Sequence) or len(entry) == 0:
            raise ValueError(f"references[{i}] must be a reference sentence or a non-empty list of them, "
                             f"got {_describe(entry)}")
        refs.append([_tokens(f"references[{i}]", r) for r in entry])
    return cands, refs


def modified_precision(candidates, references, n: int) -> tuple[int, int]:
    """Clipped ``n``-gram matches and the number of candidate ``n``-grams, summed over the corpus:
    ``(numerator, denominator)`` of :math:`p_n` (see the module docstring)."""
    cands, refs = _check_corpus(candidates, references)
    n = _check_int("n", n, 1)
    matched = total = 0
    for cand, cand_refs in zip(cands, refs):
        counts = ngrams(cand, n)
        max_ref = Counter()
        for ref in cand_refs:
            max_ref |= ngrams(ref, n)                    # element-wise maximum over the references
        matched += sum(min(count, max_ref[g]) for g, count in counts.items())
        total += sum(counts.values())
    return matched, total


def _closest_reference_length(length: int, refs: list[list[str]]) -> int:
    return min((abs(len(r) - length), len(r)) for r in refs)[1]


def brevity_penalty(candidate_length: int, reference_length: int) -> float:
    r""":math:`1` if ``candidate_length`` :math:`c >` ``reference_length`` :math:`r`, else :math:`e^{1 - r/c}`
    (0 for an empty candidate)."""
    for name, value in (("candidate_length", candidate_length), ("reference_length", reference_length)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {_describe(value)}")
    if candidate_length > reference_length:
        return 1.0
    if candidate_length == 0:
        return 0.0
    return math.exp(1 - reference_length / candidate_length)


def bleu(candidates, references, max_n: int = 4) -> float:
    """Corpus-level BLEU-``max_n`` in [0, 1] with uniform weights and no smoothing (Papineni et al., 2002).

    Parameters
    ----------
    candidates : list of str or list of list of str
        The generated sentences (strings are split on white space).
    references : list
        One entry per candidate: a reference sentence (str), or a list of reference sentences (each a str
        or a list of str tokens).
    max_n : int
        The longest n-gram order (4 for BLEU-4).
    """
    cands, refs = _check_corpus(candidates, references)
    max_n = _check_int("max_n", max_n, 1)
    log_precision = 0.0
    for n in range(1, max_n + 1):
        matched, total = modified_precision(cands, refs, n)
        if matched == 0:
            return 0.0
        log_precision += math.log(matched / total) / max_n
    c = sum(len(cand) for cand in cands)
    r = sum(_closest_reference_length(len(cand), cand_refs) for cand, cand_refs in zip(cands, refs))
    return brevity_penalty(c, r) * math.exp(log_precision)
