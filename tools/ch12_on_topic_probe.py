"""Probe behind issue 6's on-topic target (chapter 12): can the book's GPT-2 answer a question it was taught,
asked in new words?

The notebook ``ch12_train_gpt2`` shows that the dialogue model, stopped early at its best validation
perplexity, answers held-out questions on topic only 6.5% of the time, and that 14 of the 31 test
questions ask about terms no training dialogue contains. This script asks the question that decides
whether a better corpus split alone could fix that: train the same model to *memorise* its training
dialogues (60 epochs, no early stopping), then ask it the first question of every third English training
dialogue reworded (23 paraphrases written for this probe, below). The knowledge is in the training data;
only the wording is new. The keyword-retrieval baseline is scored on the same paraphrases as a control.

    MMTUTOR_OFFLINE=1 PYTHONHASHSEED=0 .venv/bin/python tools/ch12_on_topic_probe.py

It takes about 2.5 minutes of CPU (one thread) and is not part of the test suite.
"""

import numpy as np

from mmtutor.data.dialogue import load_dialogues
from mmtutor.models import gpt2

PARAPHRASES = [  # the first question of load_dialogues("train", "en")[::3], reworded
    "Can you explain what a multimodal model is?",
    "Which tasks is a multimodal model usually used for?",
    "What is the point of having many attention heads in a transformer?",
    "How is the vocabulary of byte-pair encoding (BPE) built?",
    "How can I tell if two embeddings are similar?",
    "What happens to an image in a convolution layer?",
    "What does the stride of a convolution mean?",
    "In an STFT, what do window length and hop length control?",
    "How are two modalities fused with cross-attention?",
    "How does CLIP classify images without training for the task?",
    "In a captioning model, what is the prefix?",
    "How would I train one model in both PyTorch and TensorFlow?",
    "What is softmax for?",
    "What is the effect of L2 regularisation?",
    "How do precision and recall differ?",
    "How should a compressed model be evaluated?",
    "Should I prune gradually or all at once?",
    "What is the benefit of per-channel quantization?",
    "Is it possible to distill intermediate features instead of outputs?",
    "How can I tell if a layer suits low-rank compression?",
    "Will weight sharing make inference faster?",
    "Why is model size important on a phone?",
    "Why do I need max_new_tokens and pad_token_id in generate()?",
]


def main(epochs: int = 60) -> None:
    train = load_dialogues("train")
    taught = load_dialogues("train", "en")[::3]
    assert len(taught) == len(PARAPHRASES)
    model, tokenizer, history, _ = gpt2.train_dialogue_model(seed=0, epochs=epochs, patience=None)
    print(f"memorising model: {epochs} epochs, {history.cpu_seconds:.0f} s CPU; validation perplexity "
          f"{history.val_perplexity[0]:.0f} untrained, {min(history.val_perplexity):.1f} at best "
          f"(epoch {int(np.argmin(history.val_perplexity))}), {history.val_perplexity[-1]:.0f} at the end")

    topic_terms = gpt2.topic_keywords(train)
    retriever = gpt2.KeywordRetriever(train)
    for name, dialogues in (("training questions (every 4th dialogue)", train[::4]),
                            ("test questions", load_dialogues("test"))):
        rows = gpt2.on_topic_report(model, tokenizer, dialogues, topic_terms)
        print(f"{name}: {len(rows)}, reference {np.mean([r['reference'] for r in rows]):.3f}, "
              f"topic {np.mean([r['topic_match'] for r in rows]):.3f}")

    scores = {"GPT-2": [], "retrieval": []}
    for dialogue, question in zip(taught, PARAPHRASES):
        keywords = dialogue["turns"][1]["keywords"]
        topic = list(keywords) + topic_terms[dialogue["topic"]]
        for name, answer in (("GPT-2", gpt2.generate_reply(model, tokenizer, question, max_new_tokens=64)),
                             ("retrieval", retriever.answer(question))):
            scores[name].append((gpt2.answer_on_topic(answer, keywords), gpt2.answer_on_topic(answer, topic)))
        original = gpt2.generate_reply(model, tokenizer, dialogue["turns"][0]["text"], max_new_tokens=64)
        scores.setdefault("GPT-2, original wording", []).append(
            (gpt2.answer_on_topic(original, keywords), gpt2.answer_on_topic(original, topic)))
    for name, rows in scores.items():
        rows = np.array(rows)
        print(f"{len(rows)} taught questions, {name}: reference {rows[:, 0].mean():.3f} "
              f"({rows[:, 0].sum()}), topic {rows[:, 1].mean():.3f} ({rows[:, 1].sum()})")


if __name__ == "__main__":
    main()
