r"""A GPT-2-style language model written out in Keras 3 layers, the TensorFlow side of chapter 12.

transformers 5 has no ``TFGPT2LMHeadModel``; this module builds the same architecture from Keras layers,
so that the weights of a trained ``transformers.GPT2LMHeadModel`` can be copied in and give the same logits.
For input ids :math:`x_1..x_n`, with token embedding :math:`E \in \mathbb{R}^{|V|\times d}` and position
embedding :math:`P`:

.. math::

    h^{(0)}_t &= E_{x_t} + P_t, \\
    a &= h + \mathrm{MHA}_\text{causal}(\mathrm{LN}_1(h)), \qquad
    h' = a + W_2\,\mathrm{GELU}(W_1\,\mathrm{LN}_2(a) + b_1) + b_2, \\
    \text{logits}_t &= \mathrm{LN}_f(h^{(L)}_t)\,E^\top,

with pre-norm blocks, GELU in its tanh approximation (GPT-2's ``gelu_new``), layer-norm
:math:`\epsilon = 10^{-5}`, a causal mask (position :math:`t` attends to :math:`\le t` only), and the output
head *tied* to the token embedding (the logits reuse :math:`E`).

**Layouts.** transformers' GPT-2 stores its projections as ``Conv1D`` with weights ``(in, out)``, the same
as a Keras ``Dense`` kernel; its fused ``c_attn`` holds :math:`[W_Q\,W_K\,W_V]` side by side, which Keras'
``MultiHeadAttention`` keeps as three kernels of shape ``(d, heads, d/heads)`` and an output kernel
``(heads, d/heads, d)``. :func:`copy_gpt2_weights_to_keras` does the reshapes.
"""

from __future__ import annotations

import numpy as np

from mmtutor.functional import log_softmax
from mmtutor.runtime import _check_int, import_tensorflow

__all__ = ["KerasGPT", "build_keras_gpt", "copy_gpt2_weights_to_keras", "keras_lm_dataset", "keras_perplexity",
           "keras_generate_greedy"]

import_tensorflow()
import keras  # noqa: E402  (after import_tensorflow, which silences TensorFlow's start-up logging)
from keras import layers, ops  # noqa: E402


class _Block(layers.Layer):
    """One pre-norm transformer block: causal self-attention, then a GELU MLP, each with a residual."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.ln_1 = layers.LayerNormalization(epsilon=1e-5, name="ln_1")
        self.attn = layers.MultiHeadAttention(n_head, n_embd // n_head, dropout=dropout, name="attn")
        self.ln_2 = layers.LayerNormalization(epsilon=1e-5, name="ln_2")
        self.fc = layers.Dense(4 * n_embd, name="c_fc")
        self.proj = layers.Dense(n_embd, name="c_proj")
        self.drop = layers.Dropout(dropout)

    def call(self, h, training=False):
        x = self.ln_1(h)
        h = h + self.drop(self.attn(x, x, use_causal_mask=True, training=training), training=training)
        x = keras.activations.gelu(self.fc(self.ln_2(h)), approximate=True)
        return h + self.drop(self.proj(x), training=training)


class KerasGPT(keras.Model):
    """Token + position embeddings, ``n_layer`` causal blocks, a final layer norm and the tied head."""

    def __init__(self, vocab_size: int, n_positions: int, n_embd: int, n_head: int, n_layer: int,
                 dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.n_positions = n_positions
        self.wte = layers.Embedding(vocab_size, n_embd, name="wte")
        self.wpe = layers.Embedding(n_positions, n_embd, name="wpe")
        self.drop = layers.Dropout(dropout)
        self.blocks = [_Block(n_embd, n_head, dropout, name=f"h_{i}") for i in range(n_layer)]
        self.ln_f = layers.LayerNormalization(epsilon=1e-5, name="ln_f")

    def call(self, input_ids, training=False):
        positions = ops.arange(ops.shape(input_ids)[1])
        h = self.drop(self.wte(input_ids) + self.wpe(positions)[None], training=training)
        for block in self.blocks:
            h = block(h, training=training)
        return ops.matmul(self.ln_f(h), ops.transpose(self.wte.embeddings))   # tied output head


def build_keras_gpt(vocab_size: int, n_positions: int = 256, n_embd: int = 128, n_head: int = 4,
                    n_layer: int = 4, dropout: float = 0.1, seed: int = 0) -> KerasGPT:
    """A built :class:`KerasGPT` (weights created, seeded with ``keras.utils.set_random_seed(seed)``).

    Use the arguments of the PyTorch model's ``GPT2Config``."""
    for name, value in (("vocab_size", vocab_size), ("n_positions", n_positions), ("n_embd", n_embd),
                        ("n_head", n_head), ("n_layer", n_layer)):
        _check_int(name, value, 1)
    if n_embd % n_head:
        raise ValueError(f"n_embd must be divisible by n_head={n_head}, got {n_embd}")
    keras.utils.set_random_seed(_check_int("seed", seed, 0))
    model = KerasGPT(vocab_size, n_positions, n_embd, n_head, n_layer, dropout)
    model(np.zeros((1, 2), dtype="int32"))
    return model


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def copy_gpt2_weights_to_keras(torch_model, keras_model: KerasGPT) -> KerasGPT:
    """Copy the weights of a ``transformers.GPT2LMHeadModel`` into a :class:`KerasGPT` of the same shape."""
    if not hasattr(torch_model, "transformer") or not hasattr(torch_model.transformer, "h"):
        raise TypeError(f"torch_model must be a transformers GPT2LMHeadModel, got {type(torch_model).__name__}")
    if not isinstance(keras_model, KerasGPT):
        raise TypeError(f"keras_model must be a KerasGPT (build_keras_gpt), got {type(keras_model).__name__}")
    gpt = torch_model.transformer
    if len(gpt.h) != len(keras_model.blocks) or tuple(gpt.wte.weight.shape) != tuple(keras_model.wte.embeddings.shape):
        raise ValueError(f"keras_model must have the same shape as torch_model: {len(gpt.h)} layers and "
                         f"embedding {tuple(gpt.wte.weight.shape)}, got {len(keras_model.blocks)} layers and "
                         f"{tuple(keras_model.wte.embeddings.shape)}")
    keras_model.wte.embeddings.assign(_numpy(gpt.wte.weight))
    keras_model.wpe.embeddings.assign(_numpy(gpt.wpe.weight))
    for block, layer in zip(keras_model.blocks, gpt.h):
        d = block.fc.kernel.shape[0]
        heads = block.attn.num_heads
        w = _numpy(layer.attn.c_attn.weight)              # (d, 3d): [W_Q W_K W_V], Conv1D layout (in, out)
        b = _numpy(layer.attn.c_attn.bias)
        for i, dense in enumerate((block.attn.query_dense, block.attn.key_dense, block.attn.value_dense)):
            dense.kernel.assign(w[:, i * d:(i + 1) * d].reshape(d, heads, d // heads))
            dense.bias.assign(b[i * d:(i + 1) * d].reshape(heads, d // heads))
        block.attn.output_dense.kernel.assign(_numpy(layer.attn.c_proj.weight).reshape(heads, d // heads, d))
        block.attn.output_dense.bias.assign(_numpy(layer.attn.c_proj.bias))
        for ours, theirs in ((block.ln_1, layer.ln_1), (block.ln_2, layer.ln_2)):
            ours.gamma.assign(_numpy(theirs.weight))
            ours.beta.assign(_numpy(theirs.bias))
        block.fc.kernel.assign(_numpy(layer.mlp.c_fc.weight))
        block.fc.bias.assign(_numpy(layer.mlp.c_fc.bias))
        block.proj.kernel.assign(_numpy(layer.mlp.c_proj.weight))
        block.proj.bias.assign(_numpy(layer.mlp.c_proj.bias))
    keras_model.ln_f.gamma.assign(_numpy(gpt.ln_f.weight))
    keras_model.ln_f.beta.assign(_numpy(gpt.ln_f.bias))
    return keras_model


def keras_lm_dataset(examples, pad_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-token targets for Keras: ``x = ids[:, :-1]``, ``y = labels[:, 1:]`` (``-100`` where not
    scored, for ``SparseCategoricalCrossentropy(ignore_class=-100)``), right-padded to the longest example."""
    from mmtutor.models.gpt2 import collate_lm

    batch = collate_lm(examples, _check_int("pad_token_id", pad_token_id, 0))
    ids, labels = batch["input_ids"].numpy(), batch["labels"].numpy()
    return ids[:, :-1].astype("int32"), labels[:, 1:].astype("int32")


def keras_perplexity(model: KerasGPT, x: np.ndarray, y: np.ndarray, batch_size: int = 16) -> float:
    r"""Token-weighted perplexity :math:`\exp(\text{mean NLL})` over the targets ``y != -100``."""
    total, count = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = np.asarray(model(x[start:start + batch_size], training=False), dtype=np.float64)
        targets = y[start:start + batch_size]
        keep = targets != -100
        log_probs = log_softmax(logits)
        picked = np.take_along_axis(log_probs, np.where(keep, targets, 0)[..., None], axis=-1)[..., 0]
        total -= picked[keep].sum()
        count += int(keep.sum())
    if count == 0:
        raise ValueError("y must contain at least one scored target (!= -100)")
    return float(np.exp(total / count))


def keras_generate_greedy(model: KerasGPT, prompt_ids, max_new_tokens: int,
                          eos_token_id: int | None = None) -> list[int]:
    r"""Greedy decoding: append :math:`\arg\max` of the last position's logits, ``max_new_tokens`` times or
    until ``eos_token_id``; returns the new ids. The whole sequence is re-run each step (no key-value
    cache: simple and correct, quadratic in length). Same checks as :func:`mmtutor.models.gpt2.check_prompt`."""
    from mmtutor.models.gpt2 import check_prompt

    ids, max_new_tokens = check_prompt(prompt_ids, max_new_tokens, model.n_positions)
    sequence = ids[0].tolist()
    new = []
    for _ in range(max_new_tokens):
        logits = model(np.array([sequence], dtype="int32"), training=False)
        next_id = int(np.argmax(np.asarray(logits)[0, -1]))
        new.append(next_id)
        sequence.append(next_id)
        if next_id == eos_token_id:
            break
    return new
