"""Tests of mmtutor.sizes: parameter counts against closed forms and real instantiations, memory arithmetic."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtutor import sizes
from mmtutor.sizes import (DTYPE_BITS, GIB, bert_parameter_formula, build_model, count_parameters,
                           gpt2_parameter_formula, known_models, kv_cache_bytes, llama_parameter_formula,
                           memory_bytes, model_config, model_spec, parameter_breakdown, size_table)

FAST = settings(max_examples=12, deadline=None)


def _on(device, model_class, config):
    with torch.device(device):
        return model_class(config)


def _counts_on_cpu_and_meta(model_class, config):
    """Count one config instantiated for real (CPU, allocated weights) and on the meta device."""
    cpu = _on("cpu", model_class, config)
    meta = _on("meta", model_class, config)
    assert all(p.device.type == "cpu" for p in cpu.parameters())
    assert all(p.is_meta for p in meta.parameters())
    return count_parameters(cpu), count_parameters(meta)


# ---------------------------------------------------------------------------------------------------
# closed forms against real instantiations (random small configs)
# ---------------------------------------------------------------------------------------------------

@st.composite
def gpt2_configs(draw):
    heads = draw(st.integers(1, 4))
    d = heads * draw(st.integers(1, 8))
    inner = draw(st.one_of(st.none(), st.integers(1, 40)))
    return transformers.GPT2Config(vocab_size=draw(st.integers(5, 120)), n_positions=draw(st.integers(1, 40)),
                                   n_embd=d, n_layer=draw(st.integers(1, 3)), n_head=heads, n_inner=inner)


@FAST
@given(gpt2_configs())
def test_gpt2_formula_matches_cpu_and_meta_instantiation(config):
    expected = gpt2_parameter_formula(config)
    assert _counts_on_cpu_and_meta(transformers.GPT2Model, config) == (expected, expected)
    # the LM head is tied to the token embedding: it adds nothing
    assert _counts_on_cpu_and_meta(transformers.GPT2LMHeadModel, config) == (expected, expected)


@st.composite
def bert_configs(draw):
    heads = draw(st.integers(1, 4))
    return transformers.BertConfig(vocab_size=draw(st.integers(5, 120)), hidden_size=heads * draw(st.integers(1, 8)),
                                   num_hidden_layers=draw(st.integers(1, 3)), num_attention_heads=heads,
                                   intermediate_size=draw(st.integers(1, 40)),
                                   max_position_embeddings=draw(st.integers(1, 40)),
                                   type_vocab_size=draw(st.integers(1, 3)))


@FAST
@given(bert_configs(), st.booleans())
def test_bert_formula_matches_cpu_and_meta_instantiation(config, with_pooler):
    expected = bert_parameter_formula(config, with_pooler=with_pooler)
    cpu = transformers.BertModel(config, add_pooling_layer=with_pooler)
    with torch.device("meta"):
        meta = transformers.BertModel(config, add_pooling_layer=with_pooler)
    assert count_parameters(cpu) == count_parameters(meta) == expected


@st.composite
def llama_configs(draw):
    kv_heads = draw(st.integers(1, 3))
    heads = kv_heads * draw(st.integers(1, 3))  # grouped-query attention: H is a multiple of H_kv
    head_dim = 2 * draw(st.integers(1, 4))      # rotary embeddings need an even head size
    return transformers.LlamaConfig(vocab_size=draw(st.integers(5, 120)), hidden_size=heads * head_dim,
                                    intermediate_size=draw(st.integers(1, 40)),
                                    num_hidden_layers=draw(st.integers(1, 3)), num_attention_heads=heads,
                                    num_key_value_heads=kv_heads, max_position_embeddings=64,
                                    tie_word_embeddings=draw(st.booleans()), attention_bias=draw(st.booleans()),
                                    mlp_bias=draw(st.booleans()))


@FAST
@given(llama_configs())
def test_llama_formula_matches_cpu_and_meta_instantiation(config):
    expected = llama_parameter_formula(config)
    assert _counts_on_cpu_and_meta(transformers.LlamaForCausalLM, config) == (expected, expected)


def test_formulas_reproduce_published_checkpoints():
    for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"):
        assert gpt2_parameter_formula(model_config(name)) == model_spec(name).published_params
    assert bert_parameter_formula(model_config("bert-base-uncased")) == 109_482_240
    assert llama_parameter_formula(model_config("llama-2-7b")) == 6_738_415_616


# ---------------------------------------------------------------------------------------------------
# the registry of published checkpoints
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", known_models())
def test_registry_counts_equal_published_counts(name):
    model = build_model(name)
    assert all(p.is_meta for p in model.parameters())
    assert type(model).__name__ == model_spec(name).model_class
    assert count_parameters(model) == model_spec(name).published_params


def test_registry_hand_checked_counts():
    # independent of the registry's own published_params field: numbers typed from model cards / Hub metadata
    published = {"gpt2": 124_439_808, "bert-base-uncased": 109_482_240, "vit-base-patch16-224-in21k": 86_389_248,
                 "clip-vit-base-patch32": 151_277_313, "whisper-tiny": 37_760_640, "whisper-base": 72_593_920,
                 "llama-2-7b": 6_738_415_616, "llava-1.5-7b": 7_063_427_072}
    for name, expected in published.items():
        assert count_parameters(build_model(name)) == expected, name


def test_model_config_returns_fresh_objects():
    first, second = model_config("gpt2"), model_config("gpt2")
    first.n_layer = 1
    assert second.n_layer == 12


def test_build_model_on_cpu_equals_meta_for_a_small_registry_model():
    cpu, meta = build_model("whisper-tiny", device="cpu"), build_model("whisper-tiny")
    assert count_parameters(cpu) == count_parameters(meta) == 37_760_640
    assert not any(p.is_meta for p in cpu.parameters())


# ---------------------------------------------------------------------------------------------------
# counting: tied weights, frozen parameters, buffers, breakdown
# ---------------------------------------------------------------------------------------------------

def test_shared_module_counts_once():
    layer = torch.nn.Linear(3, 4)
    model = torch.nn.Sequential(layer, torch.nn.ReLU(), torch.nn.Linear(4, 3), layer.__class__(3, 4))
    model[3] = layer  # the same module twice
    assert count_parameters(model) == (3 * 4 + 4) + (4 * 3 + 3)
    naive = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert naive == count_parameters(model) + 3 * 4 + 4


def test_tied_lm_head_counts_once():
    model = build_model("gpt2")
    with torch.device("meta"):
        lm = transformers.GPT2LMHeadModel(model_config("gpt2"))
    assert lm.lm_head.weight is lm.transformer.wte.weight
    assert count_parameters(lm) == count_parameters(model) == 124_439_808


def test_trainable_only_skips_frozen_and_buffers_are_not_counted():
    model = torch.nn.BatchNorm1d(5)  # 10 parameters, 11 buffer elements
    assert count_parameters(model) == 10
    model.bias.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 5
    whisper = build_model("whisper-tiny")
    assert count_parameters(whisper) - count_parameters(whisper, trainable_only=True) == 1500 * 384


def test_parameter_breakdown_adds_up():
    model = build_model("llava-1.5-7b")
    parts = parameter_breakdown(model, depth=2)
    assert sum(parts.values()) == count_parameters(model)
    assert parts["model.multi_modal_projector"] == (1024 * 4096 + 4096) + (4096 * 4096 + 4096)
    assert parts["model.vision_tower"] == parameter_breakdown(build_model("clip-vit-large-patch14-336"))[
        "vision_model"]


# ---------------------------------------------------------------------------------------------------
# memory arithmetic
# ---------------------------------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10**13))
def test_memory_bytes_arithmetic(n):
    assert memory_bytes(n, "fp32") == 4 * n == 2 * memory_bytes(n, "fp16") == 4 * memory_bytes(n, "int8")
    assert memory_bytes(n, "bf16") == memory_bytes(n, "fp16")
    assert memory_bytes(n, "int4") == math.ceil(n / 2) == (n + 1) // 2
    assert memory_bytes(np.int64(n), "int8") == n


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 5000))
def test_memory_bytes_matches_torch_storage(n):
    for dtype, torch_dtype in [("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16),
                               ("int8", torch.int8)]:
        tensor = torch.empty(n, dtype=torch_dtype)
        assert memory_bytes(n, dtype) == tensor.untyped_storage().nbytes()
    packed = torch.empty((n + 1) // 2, dtype=torch.uint8)  # two 4-bit weights per byte
    assert memory_bytes(n, "int4") == packed.untyped_storage().nbytes()


def test_kv_cache_bytes_matches_allocated_cache():
    layers, kv_heads, head_dim, seq_len, batch = 3, 2, 4, 7, 2
    cache = [(torch.empty(batch, kv_heads, seq_len, head_dim, dtype=torch.float16),
              torch.empty(batch, kv_heads, seq_len, head_dim, dtype=torch.float16)) for _ in range(layers)]
    allocated = sum(k.untyped_storage().nbytes() + v.untyped_storage().nbytes() for k, v in cache)
    assert kv_cache_bytes(layers, kv_heads, head_dim, seq_len, batch_size=batch) == allocated
    assert kv_cache_bytes(32, 32, 128, 4096, dtype="fp16") == 2 * GIB  # Llama-2-7B at its full context
    assert kv_cache_bytes(32, 32, 128, 0) == 0


def test_size_table_columns_and_values():
    table = size_table(["gpt2", "whisper-tiny"], dtypes=("fp32", "int4"))
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["model", "checkpoint", "modality", "class", "params", "published",
                                   "fp32 (GiB)", "int4 (GiB)"]
    assert table["params"].tolist() == [124_439_808, 37_760_640]
    assert table["params"].tolist() == table["published"].tolist()
    assert table["fp32 (GiB)"].tolist() == [4 * n / 2**30 for n in table["params"]]
    assert table["int4 (GiB)"].tolist() == [n / 2 / 2**30 for n in table["params"]]
    assert list(size_table()["model"]) == list(known_models())


# ---------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------

def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="name") as error:
        model_config("gpt5")
    for name in known_models():
        assert name in str(error.value)
    with pytest.raises(ValueError, match="name"):
        size_table(["gpt2", "nope"])
    with pytest.raises(TypeError, match="name"):
        build_model(7)


@pytest.mark.parametrize("dtype", ["fp8", "FP16", "float16", ""])
def test_unknown_dtype(dtype):
    with pytest.raises(ValueError, match="dtype"):
        memory_bytes(10, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, 16, None])
def test_dtype_of_wrong_type(dtype):
    with pytest.raises(TypeError, match="dtype"):
        memory_bytes(10, dtype)


def test_bad_num_params():
    with pytest.raises(ValueError, match="num_params"):
        memory_bytes(-1, "fp32")
    for bad in (1.5, 10.0, "10", True, None):
        with pytest.raises(TypeError, match="num_params"):
            memory_bytes(bad, "fp32")


def test_bad_arguments_elsewhere():
    with pytest.raises(TypeError, match="model"):
        count_parameters("gpt2")
    with pytest.raises(TypeError, match="trainable_only"):
        count_parameters(torch.nn.Linear(2, 2), trainable_only=1)
    with pytest.raises(ValueError, match="depth"):
        parameter_breakdown(torch.nn.Linear(2, 2), depth=0)
    with pytest.raises(ValueError, match="num_layers"):
        kv_cache_bytes(0, 1, 1, 1)
    with pytest.raises(TypeError, match="seq_len"):
        kv_cache_bytes(1, 1, 1, 2.0)
    with pytest.raises(ValueError, match="dtype"):
        kv_cache_bytes(1, 1, 1, 1, dtype="fp64")
    with pytest.raises(TypeError, match="device"):
        build_model("gpt2", device=0)
    with pytest.raises(TypeError, match="names"):
        size_table("gpt2")
    with pytest.raises(TypeError, match="dtypes"):
        size_table(["gpt2"], dtypes="fp16")
    with pytest.raises(ValueError, match="dtype"):
        size_table(["gpt2"], dtypes=("fp16", "int2"))
    with pytest.raises(TypeError, match="config"):
        gpt2_parameter_formula(transformers.BertConfig())
    with pytest.raises(TypeError, match="config"):
        bert_parameter_formula(transformers.GPT2Config())
    with pytest.raises(TypeError, match="config"):
        llama_parameter_formula(transformers.GPT2Config())
    with pytest.raises(TypeError, match="with_pooler"):
        bert_parameter_formula(transformers.BertConfig(), with_pooler=None)


def test_dtype_bits_table():
    assert DTYPE_BITS == {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4}
    assert sizes.GIB == 2**30 and sizes.MIB == 2**20
