"""mmtutor.models.keras_gpt against transformers' GPT2LMHeadModel (the reference) on random weights."""

import numpy as np
import pytest
import torch

from mmtutor.models import gpt2
from mmtutor.models import keras_gpt as kg

torch.set_num_threads(1)  # tiny matrices run fastest on one thread


@pytest.fixture(scope="module")
def pair():
    config = gpt2.small_gpt2_config(60, n_layer=2, n_embd=32, n_head=4, n_positions=24)
    torch_model = gpt2.build_gpt2(config, seed=1).eval()
    with torch.no_grad():                      # non-trivial layer-norm and bias values
        for name, p in torch_model.named_parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    keras_model = kg.build_keras_gpt(60, 24, 32, 4, 2, seed=0)
    kg.copy_gpt2_weights_to_keras(torch_model, keras_model)
    return torch_model, keras_model


def test_same_parameter_count(pair):
    torch_model, keras_model = pair
    assert keras_model.count_params() == sum(p.numel() for p in torch_model.parameters())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_logits(pair, seed):
    torch_model, keras_model = pair
    x = np.random.default_rng(seed).integers(0, 60, (3, 2 + 7 * seed))
    with torch.no_grad():
        expected = torch_model(torch.tensor(x)).logits.numpy()
    np.testing.assert_allclose(np.asarray(keras_model(x.astype("int32"))), expected, atol=2e-5, rtol=1e-4)


def test_greedy_matches_torch(pair):
    torch_model, keras_model = pair
    prompt = [5, 9, 11]
    new = kg.keras_generate_greedy(keras_model, prompt, max_new_tokens=8)
    assert new == gpt2.generate_ids(torch_model, prompt, max_new_tokens=8, eos_token_id=None)


def test_lm_dataset_and_perplexity(pair):
    torch_model, keras_model = pair
    examples = [gpt2.DialogueExample([4, 5, 6, 7], [4, 5, 6, 7]), gpt2.DialogueExample([8, 9], [-100, 9])]
    x, y = kg.keras_lm_dataset(examples, pad_token_id=0)
    assert x.tolist() == [[4, 5, 6], [8, 9, 0]] and y.tolist() == [[5, 6, 7], [9, -100, -100]]
    assert kg.keras_perplexity(keras_model, x, y) == pytest.approx(gpt2.perplexity(torch_model, examples), rel=1e-4)


def test_bad_input(pair):
    torch_model, keras_model = pair
    with pytest.raises(ValueError, match="prompt must not be empty"):
        kg.keras_generate_greedy(keras_model, [], max_new_tokens=3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        kg.keras_generate_greedy(keras_model, [4], max_new_tokens=0)
    with pytest.raises(ValueError, match="context of 24"):
        kg.keras_generate_greedy(keras_model, list(range(4, 28)), max_new_tokens=1)
    with pytest.raises(ValueError, match="n_embd"):
        kg.build_keras_gpt(60, 24, 30, 4, 2)
    with pytest.raises(ValueError, match="same shape"):
        kg.copy_gpt2_weights_to_keras(torch_model, kg.build_keras_gpt(60, 24, 32, 4, 1))
    with pytest.raises(TypeError, match="torch_model"):
        kg.copy_gpt2_weights_to_keras(torch.nn.Linear(2, 2), keras_model)
