"""Parameter counts and memory of real architectures, built from their configs on the ``meta`` device.

A model's size follows from its hyperparameters alone: the number of layers, the width, the vocabulary.
``transformers`` builds any architecture from a config object, and PyTorch's ``meta`` device gives every
tensor a shape and a dtype but no storage, so

.. code-block:: python

    with torch.device("meta"):
        model = LlamaForCausalLM(config)   # 6.7 billion parameters, zero bytes allocated

instantiates Llama-2-7B in a fraction of a second without downloading or allocating anything. Counting its
parameters then gives the exact size of the published checkpoint, and multiplying by the bits per weight
gives the memory its weights need at each precision.

The registry :data:`MODEL_SPECS` holds the hyperparameters of published checkpoints (each entry names the
checkpoint whose ``config.json`` it reproduces and the published parameter count it must match);
:func:`size_table` turns it into the table of chapter 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import transformers

from mmtutor.runtime import _check_int  # the package's one integer validator (rejects bool and float)

__all__ = [
    "DTYPE_BITS", "GIB", "MIB", "ModelSpec", "MODEL_SPECS", "known_models", "model_spec",
    "model_config", "build_model", "count_parameters", "parameter_breakdown", "memory_bytes",
    "kv_cache_bytes", "size_table", "gpt2_parameter_formula", "bert_parameter_formula",
    "llama_parameter_formula",
]

#: Bits needed to store one weight at each precision (``int4`` packs two weights per byte).
DTYPE_BITS: dict[str, int] = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4}

#: One gibibyte, ``2**30`` bytes, the unit of every memory column in this module.
GIB: int = 2**30

#: One mebibyte, ``2**20`` bytes.
MIB: int = 2**20


# --------------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------------

def _check_dtype(dtype) -> str:
    if not isinstance(dtype, str):
        raise TypeError(f"dtype must be a str, one of {sorted(DTYPE_BITS)}, "
                        f"got {type(dtype).__name__}: {dtype!r}")
    if dtype not in DTYPE_BITS:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BITS)}, got {dtype!r}")
    return dtype


# --------------------------------------------------------------------------------------------------
# the registry of published checkpoints
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild one published checkpoint's architecture, and the size it must have.

    Parameters
    ----------
    name : str
        Short name used in the book (``"gpt2"``, ``"llava-1.5-7b"``).
    checkpoint : str
        The Hugging Face Hub checkpoint whose ``config.json`` hyperparameters the config reproduces.
    modality : str
        What goes in and what comes out, e.g. ``"text"``, ``"image"``, ``"image+text"``,
        ``"audio -> text"``.
    model_class : str
        The ``transformers`` class instantiated (it fixes which heads are included).
    make_config : callable
        Returns a fresh ``transformers`` config with the checkpoint's hyperparameters.
    published_params : int
        The parameter count published for this checkpoint and class.
    source : str
        Where ``published_params`` comes from, and what it does and does not include.
    """

    name: str
    checkpoint: str
    modality: str
    model_class: str
    make_config: Callable[[], transformers.PretrainedConfig]
    published_params: int
    source: str


def _gpt2(n_embd: int, n_layer: int, n_head: int) -> Callable[[], transformers.GPT2Config]:
    return lambda: transformers.GPT2Config(vocab_size=50257, n_positions=1024, n_embd=n_embd,
                                           n_layer=n_layer, n_head=n_head, n_inner=None,
                                           activation_function="gelu_new", layer_norm_epsilon=1e-5)


def _clip_vit_b32() -> transformers.CLIPConfig:
    text = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu")
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                  num_attention_heads=12, image_size=224, patch_size=32, hidden_act="quick_gelu")
    return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)


def _clip_vit_l14_336_vision() -> dict:
    return dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")


def _clip_vit_l14_336() -> transformers.CLIPConfig:
    text = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
    return transformers.CLIPConfig(text_config=text, vision_config=_clip_vit_l14_336_vision(),
                                   projection_dim=768)


def _whisper(d_model: int, layers: int, heads: int) -> Callable[[], transformers.WhisperConfig]:
    return lambda: transformers.WhisperConfig(
        vocab_size=51865, num_mel_bins=80, d_model=d_model, encoder_layers=layers,
        decoder_layers=layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=4 * d_model, decoder_ffn_dim=4 * d_model, max_source_positions=1500,
        max_target_positions=448, tie_word_embeddings=True)


def _llama2_7b_kwargs(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=False)


def _llava_15_7b() -> transformers.LlavaConfig:
    vision = transformers.CLIPVisionConfig(**_clip_vit_l14_336_vision())
    text = transformers.LlamaConfig(**_llama2_7b_kwargs(vocab_size=32064))
    return transformers.LlavaConfig(vision_config=vision, text_config=text, image_token_index=32000,
                                    projector_hidden_act="gelu", vision_feature_layer=-2,
                                    vision_feature_select_strategy="default", image_seq_length=576)


_HUB_NOTE = "the sum of the tensors in the checkpoint's safetensors file (Hub metadata)"

MODEL_SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in [
    ModelSpec("gpt2", "openai-community/gpt2", "text", "GPT2Model", _gpt2(768, 12, 12), 124_439_808,
              "openai/gpt-2 README: '124M' (the paper's 117M was an error); the Hub's safetensors total "
              "137,022,720 adds 12 causal-mask buffers attn.bias of 1024 x 1024, which are not parameters"),
    ModelSpec("gpt2-medium", "openai-community/gpt2-medium", "text", "GPT2Model", _gpt2(1024, 24, 16),
              354_823_168, "openai/gpt-2 README: '355M' (the paper's 345M was an error); the Hub's total "
              "adds 24 attn.bias buffers"),
    ModelSpec("gpt2-large", "openai-community/gpt2-large", "text", "GPT2Model", _gpt2(1280, 36, 20),
              774_030_080, "openai/gpt-2 README: '774M' (the paper says 762M); the Hub's total adds "
              "36 attn.bias buffers"),
    ModelSpec("gpt2-xl", "openai-community/gpt2-xl", "text", "GPT2Model", _gpt2(1600, 48, 25),
              1_557_611_200, "openai/gpt-2 README: '1558M' (the paper says 1542M); the Hub's total "
              "adds 48 attn.bias buffers"),
    ModelSpec("bert-base-uncased", "google-bert/bert-base-uncased", "text", "BertModel",
              lambda: transformers.BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                                              num_attention_heads=12, intermediate_size=3072,
                                              max_position_embeddings=512, type_vocab_size=2),
              109_482_240, "BertModel with pooler, without the pre-training heads; the BERT paper "
                           "rounds it to 110M"),
    ModelSpec("t5-base", "google-t5/t5-base", "text", "T5ForConditionalGeneration",
              lambda: transformers.T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072,
                                            num_layers=12, num_decoder_layers=12, num_heads=12,
                                            relative_attention_num_buckets=32,
                                            feed_forward_proj="relu", tie_word_embeddings=True),
              222_903_552, "encoder + decoder, LM head tied to the shared embedding; '223M'"),
    ModelSpec("vit-base-patch16-224-in21k", "google/vit-base-patch16-224-in21k", "image", "ViTModel",
              lambda: transformers.ViTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                             intermediate_size=3072, image_size=224, patch_size=16,
                                             num_channels=3),
              86_389_248, "ViTModel with pooler (the ImageNet-21k checkpoint); the ViT paper's '86M'"),
    ModelSpec("clip-vit-base-patch32", "openai/clip-vit-base-patch32", "image+text", "CLIPModel",
              _clip_vit_b32, 151_277_313,
              "both towers, both projections and the learned temperature logit_scale (1 parameter)"),
    ModelSpec("clip-vit-large-patch14-336", "openai/clip-vit-large-patch14-336", "image+text", "CLIPModel",
              _clip_vit_l14_336, 427_944_193,
              "both towers; its vision tower is the image encoder of LLaVA-1.5"),
    ModelSpec("whisper-tiny", "openai/whisper-tiny", "audio -> text", "WhisperForConditionalGeneration",
              _whisper(384, 4, 6), 37_760_640,
              _HUB_NOTE + "; the output projection is tied to the token embedding; 576,000 of the "
                          "parameters are the frozen sinusoidal encoder positions; the paper says 39M"),
    ModelSpec("whisper-base", "openai/whisper-base", "audio -> text", "WhisperForConditionalGeneration",
              _whisper(512, 6, 8), 72_593_920,
              _HUB_NOTE + "; tied output projection; 768,000 frozen encoder positions; the paper says 74M"),
    ModelSpec("llama-2-7b", "meta-llama/Llama-2-7b-hf", "text", "LlamaForCausalLM",
              lambda: transformers.LlamaConfig(**_llama2_7b_kwargs(vocab_size=32000)), 6_738_415_616,
              "with its untied LM head; the Llama 2 paper's '7B'"),
    ModelSpec("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", "image+text", "LlavaForConditionalGeneration",
              _llava_15_7b, 7_063_427_072,
              "CLIP ViT-L/14-336 vision tower + 2-layer MLP projector + Vicuna-7B (Llama-2-7B "
              "architecture, vocabulary padded to 32,064); " + _HUB_NOTE),
]}


def known_models() -> tuple[str, ...]:
    """The names in :data:`MODEL_SPECS`, in the order of the book's table."""
    return tuple(MODEL_SPECS)


def model_spec(name: str) -> ModelSpec:
    """Look up the :class:`ModelSpec` of ``name``; an unknown name raises and lists the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}: {name!r}")
    if name not in MODEL_SPECS:
        raise ValueError(f"name must be one of the known models {list(MODEL_SPECS)}, got {name!r}")
    return MODEL_SPECS[name]


def model_config(name: str) -> transformers.PretrainedConfig:
    """A fresh ``transformers`` config with the hyperparameters of checkpoint ``name`` (no download)."""
    return model_spec(name).make_config()


def build_model(name: str, device: str | torch.device = "meta") -> torch.nn.Module:
    """Instantiate the architecture of ``name`` on ``device`` (by default ``meta``: no memory, no weights).

    On the meta device every parameter has its shape and dtype but no storage, so even a 7-billion-parameter
    model builds in well under a second; its weights are *not* the checkpoint's (nothing is downloaded).
    """
    spec = model_spec(name)
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}: {device!r}")
    model_class = getattr(transformers, spec.model_class)
    with torch.device(device):
        return model_class(spec.make_config())


# --------------------------------------------------------------------------------------------------
# counting
# --------------------------------------------------------------------------------------------------

def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model``, each shared (tied) tensor counted once.

    :math:`N = \\sum_{p} \\mathrm{numel}(p)` over ``model.parameters()``, which yields every
    ``nn.Parameter`` object once even when several modules hold it (GPT-2's LM head and its token
    embedding are one tensor). Buffers (masks, running statistics, rotary frequencies) are not
    parameters and are not counted. With ``trainable_only=True`` only parameters with
    ``requires_grad`` count (Whisper's sinusoidal encoder positions are frozen).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(trainable_only, bool):
        raise TypeError(f"trainable_only must be a bool, got {type(trainable_only).__name__}: "
                        f"{trainable_only!r}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(model: torch.nn.Module, depth: int = 1) -> dict[str, int]:
    """Parameters per submodule: names truncated to their first ``depth`` components, counted once.

    A tied parameter is attributed to the first submodule that registers it (the order of
    ``model.named_parameters()``), so the values add up to :func:`count_parameters`.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    depth = _check_int("depth", depth, 1)
    counts: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        prefix = ".".join(name.split(".")[:depth])
        counts[prefix] = counts.get(prefix, 0) + parameter.numel()
    return counts


def memory_bytes(num_params: int, dtype: str) -> int:
    """Bytes needed to store ``num_params`` weights at precision ``dtype``: :math:`\\lceil N b / 8 \\rceil`.

    ``b`` is :data:`DTYPE_BITS` ``[dtype]``: 32 for ``fp32``, 16 for ``fp16``/``bf16``, 8 for ``int8``,
    4 for ``int4`` (two weights per byte). This is the weights alone: real int8/int4 formats add a scale
    (and often a zero point) per tensor, channel or group of weights, and inference adds activations
    and the KV cache.
    """
    num_params = _check_int("num_params", num_params, 0)
    bits = DTYPE_BITS[_check_dtype(dtype)]
    return (num_params * bits + 7) // 8


def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, seq_len: int,
                   batch_size: int = 1, dtype: str = "fp16") -> int:
    """Bytes of a decoder's key-value cache: :math:`2 \\cdot L \\cdot H_{kv} \\cdot d_h \\cdot T \\cdot B \\cdot s`.

    Every layer ``L`` stores one key and one value vector (the factor 2) of size ``H_kv * d_h`` for each of
    the ``T = seq_len`` tokens of each of the ``B = batch_size`` sequences, at ``s`` bytes per number.
    """
    factors = [_check_int("num_layers", num_layers, 1), _check_int("num_kv_heads", num_kv_heads, 1),
               _check_int("head_dim", head_dim, 1), _check_int("seq_len", seq_len, 0),
               _check_int("batch_size", batch_size, 1)]
    numbers = 2 * math.prod(factors)
    return memory_bytes(numbers, dtype)


def size_table(names=None, dtypes=("fp32", "fp16", "int8", "int4"), device: str = "meta"):
    """A :class:`pandas.DataFrame` of parameters and weight memory (GiB, :math:`2^{30}` bytes) per model.

    One row per name (default: every known model): ``model``, ``checkpoint``, ``modality``, ``class``,
    ``params``, ``published``, then one column ``"<dtype> (GiB)"`` per precision. The models are built on
    ``device`` (``meta`` by default), so the table costs no memory.
    """
    import pandas as pd

    if names is None:
        names = known_models()
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise TypeError(f"names must be a list or tuple of model names, got {type(names).__name__}: "
                        f"{names!r}")
    if isinstance(dtypes, str) or not isinstance(dtypes, (list, tuple)) or not dtypes:
        raise TypeError(f"dtypes must be a non-empty list or tuple of {sorted(DTYPE_BITS)}, "
                        f"got {dtypes!r}")
    dtypes = [_check_dtype(d) for d in dtypes]
    specs = [model_spec(name) for name in names]
    rows = []
    for spec in specs:
        params = count_parameters(build_model(spec.name, device))
        row = {"model": spec.name, "checkpoint": spec.checkpoint, "modality": spec.modality,
               "class": spec.model_class, "params": params, "published": spec.published_params}
        for dtype in dtypes:
            row[f"{dtype} (GiB)"] = memory_bytes(params, dtype) / GIB
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# closed-form parameter counts
# --------------------------------------------------------------------------------------------------

def _block_params(d: int, inner: int) -> int:
    # self-attention Q, K, V and output (weights + biases), a 2-layer MLP d -> inner -> d (+ biases),
    # two LayerNorms (scale + shift): 4d^2 + 4d + 2*d*inner + inner + d + 4d
    return 4 * d * d + 4 * d + 2 * d * inner + inner + d + 4 * d


def gpt2_parameter_formula(config: transformers.GPT2Config) -> int:
    """Closed-form parameter count of ``GPT2Model(config)`` (and of the tied ``GPT2LMHeadModel``).

    :math:`N = V d + P d + L\\,(4d^2 + 2 d I + 9 d + I) + 2d`, with vocabulary ``V``, positions ``P``,
    width ``d``, ``L`` blocks and MLP width ``I`` (default :math:`4d`, where a block has
    :math:`12 d^2 + 13 d`); the final :math:`2d` is the last LayerNorm.
    """
    if not isinstance(config, transformers.GPT2Config):
        raise TypeError(f"config must be a transformers.GPT2Config, got {type(config).__name__}")
    d, vocab, positions, layers = config.n_embd, config.vocab_size, config.n_positions, config.n_layer
    inner = config.n_inner if config.n_inner is not None else 4 * d
    return vocab * d + positions * d + layers * _block_params(d, inner) + 2 * d


def bert_parameter_formula(config: transformers.BertConfig, with_pooler: bool = True) -> int:
    """Closed-form parameter count of ``BertModel(config, add_pooling_layer=with_pooler)``.

    :math:`N = (V + P + T) d + 2d + L\\,(4d^2 + 2 d I + 9 d + I) + [d^2 + d]`: word, position and
    token-type embeddings and their LayerNorm, ``L`` post-norm blocks of the same shape as GPT-2's, and
    the optional pooler (a :math:`d \\times d` dense layer).
    """
    if not isinstance(config, transformers.BertConfig):
        raise TypeError(f"config must be a transformers.BertConfig, got {type(config).__name__}")
    if not isinstance(with_pooler, bool):
        raise TypeError(f"with_pooler must be a bool, got {type(with_pooler).__name__}: {with_pooler!r}")
    d = config.hidden_size
    embeddings = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * d + 2 * d
    blocks = config.num_hidden_layers * _block_params(d, config.intermediate_size)
    return embeddings + blocks + (d * d + d if with_pooler else 0)


def llama_parameter_formula(config: transformers.LlamaConfig) -> int:
    """Closed-form parameter count of ``LlamaForCausalLM(config)``.

    With width ``d``, ``H`` query heads and :math:`H_{kv}` key-value heads of size :math:`d_h`,
    MLP width ``I`` and ``L`` layers, each layer has
    :math:`2 d H d_h + 2 d H_{kv} d_h` attention weights, :math:`3 d I` in the gated (SwiGLU) MLP and
    two RMSNorm scales :math:`2d`; add the embedding :math:`V d`, the final norm :math:`d` and, unless
    tied, the LM head :math:`V d`. Biases are added when ``attention_bias`` / ``mlp_bias`` are set.
    """
    if not isinstance(config, transformers.LlamaConfig):
        raise TypeError(f"config must be a transformers.LlamaConfig, got {type(config).__name__}")
    d, inner, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    heads = config.num_attention_heads
    kv_heads = config.num_key_value_heads if config.num_key_value_heads is not None else heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    attention = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim
    if config.attention_bias:
        attention += heads * head_dim + 2 * kv_heads * head_dim + d
    mlp = 3 * d * inner + (2 * inner + d if config.mlp_bias else 0)
    layer = attention + mlp + 2 * d
    head = 0 if config.tie_word_embeddings else vocab * d
    return vocab * d + config.num_hidden_layers * layer + d + head
