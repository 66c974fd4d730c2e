"""A multi-turn chat with a causal language model that keeps its history and forgets the oldest turns.

A GPT-style model has no memory between calls: "remembering" the conversation means feeding all of it
again as the prompt, in the chat format of :func:`mmtutor.models.gpt2.format_turns`. The prompt must fit
the model's context window of :math:`C` positions together with the reply, so before every reply

.. math:: n_\\text{prompt} + \\texttt{max\\_new\\_tokens} \\le C,

and while it does not, :class:`ChatSession` drops the oldest *exchange* (a user turn and its answer) from
the prompt. The full history is kept in ``ChatSession.history``; only the prompt forgets.
"""

from __future__ import annotations

from mmtutor.models.gpt2 import _check_model, _check_question, _check_tokenizer, format_turns, generate_ids
from mmtutor.runtime import _check_int

__all__ = ["ChatSession"]


class ChatSession:
    """Talk to ``model`` turn by turn: ``session.ask("What is BPE?")`` returns the reply and remembers both.

    Parameters
    ----------
    model, tokenizer
        A causal LM (``GPT2LMHeadModel``) and a tokenizer with the speaker tokens
        (:func:`mmtutor.models.gpt2.build_dialogue_tokenizer`).
    max_new_tokens : int
        Length limit of each reply, in tokens.
    **generation
        Decoding settings passed on to ``generate`` (``num_beams``, ``do_sample``, ``top_p``, ...).

    Attributes
    ----------
    history : list of (speaker, text)
        Every turn so far, oldest first.
    dropped_turns : int
        How many of the oldest turns the last prompt left out to fit the context.
    """

    def __init__(self, model, tokenizer, max_new_tokens: int = 48, **generation):
        _check_model(model)
        _check_tokenizer(tokenizer)
        self.model, self.tokenizer = model, tokenizer
        self.context = model.config.n_positions
        self.max_new_tokens = _check_int("max_new_tokens", max_new_tokens, 1)
        if self.max_new_tokens >= self.context:
            raise ValueError(f"max_new_tokens must be smaller than the context ({self.context}), "
                             f"got {max_new_tokens}")
        self.generation = generation
        self.history: list[tuple[str, str]] = []
        self.dropped_turns = 0

    def prompt_ids(self, question: str) -> list[int]:
        """The ids of the prompt for ``question``: the newest exchanges of the history that fit, then the
        question and ``<assistant>``. Raises ``ValueError`` when the question alone does not fit."""
        _check_question(question)
        budget = self.context - self.max_new_tokens
        for start in range(0, len(self.history) + 1, 2):        # drop whole exchanges, oldest first
            turns = self.history[start:] + [("user", question)]
            ids = self.tokenizer.encode(format_turns(turns, add_generation_prompt=True),
                                        add_special_tokens=False)
            if len(ids) <= budget:
                self.dropped_turns = start
                return ids
        raise ValueError(f"question is {len(ids)} tokens with the chat markers, more than the "
                         f"{budget} that the context of {self.context} leaves after max_new_tokens="
                         f"{self.max_new_tokens}; shorten it")

    def ask(self, question: str, seed: int | None = None) -> str:
        """Reply to ``question`` (``seed`` seeds sampling); both turns are appended to ``history``."""
        ids = self.prompt_ids(question)
        new = generate_ids(self.model, ids, max_new_tokens=self.max_new_tokens, seed=seed, **self.generation)
        reply = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        self.history += [("user", question), ("assistant", reply or "...")]
        return reply

    def reset(self) -> None:
        """Forget the conversation."""
        self.history.clear()
        self.dropped_turns = 0
