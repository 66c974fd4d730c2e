"""Keras twins of the AV-digits models: given the PyTorch weights, the same outputs; same parameter counts.

The strongest check that two implementations are the same architecture: copy the weights of a randomly
initialised PyTorch model into the Keras model and compare outputs on random inputs (to 1e-4; in
practice they agree to ~1e-7, float32 round-off). TensorFlow is imported once, by ``mmtutor.models.keras``.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtutor.models import keras as mk
from mmtutor.models.avdigits import AudioEncoder, ImageEncoder, avdigits_classifier
from mmtutor.sizes import count_parameters

keras, tf = mk.keras, mk.tf
SETTINGS = settings(max_examples=6, deadline=None)


def random_batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.rand(n, 32, 96, generator=g)


def scramble_batchnorm(module, seed):
    """Give every BatchNorm1d non-trivial affine weights and running statistics (fresh ones are 1 and 0)."""
    g = torch.Generator().manual_seed(seed)
    for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm1d)):
        with torch.no_grad():
            bn.weight.copy_(0.5 + torch.rand(bn.num_features, generator=g))
            bn.bias.copy_(torch.randn(bn.num_features, generator=g))
            bn.running_mean.copy_(torch.rand(bn.num_features, generator=g))
            bn.running_var.copy_(0.1 + torch.rand(bn.num_features, generator=g))
    return module


def keras_out(model, *inputs):
    return model(*inputs, training=False).numpy()


# --------------------------------------------------------------------------------------------------
# same outputs given the same weights
# --------------------------------------------------------------------------------------------------

@SETTINGS
@given(n=st.integers(1, 9), seed=st.integers(0, 2**16), tokens=st.booleans(), dim=st.sampled_from([8, 64]))
def test_image_encoder_matches_pytorch(n, seed, tokens, dim):
    torch.manual_seed(seed)
    torch_model = ImageEncoder(dim, tokens=tokens).eval()
    keras_model = mk.image_encoder(dim, tokens=tokens)
    assert mk.copy_torch_weights_to_keras(torch_model, keras_model) == count_parameters(torch_model)
    images, log_mel = random_batch(n, seed)
    expected = torch_model(images).detach().numpy()
    got = keras_out(keras_model, mk.to_keras_layout(images, log_mel)[0])
    assert got.shape == expected.shape == ((n, 16, dim) if tokens else (n, dim))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@SETTINGS
@given(n=st.integers(1, 9), seed=st.integers(0, 2**16), tokens=st.booleans(), frames=st.sampled_from([96, 41, 16]))
def test_audio_encoder_matches_pytorch(n, seed, tokens, frames):
    torch.manual_seed(seed)
    torch_model = scramble_batchnorm(AudioEncoder(64, tokens=tokens), seed).eval()
    keras_model = mk.audio_encoder(64, tokens=tokens, n_frames=frames)
    copied = mk.copy_torch_weights_to_keras(torch_model, keras_model)
    assert copied == count_parameters(torch_model) + 2 * 32  # + the running mean and variance
    images, log_mel = random_batch(n, seed)
    log_mel = log_mel[:, :, :frames]  # any length: both pool adaptively into 8 slots
    expected = torch_model(log_mel).detach().numpy()
    got = keras_out(keras_model, mk.to_keras_layout(images, log_mel)[1])
    assert got.shape == expected.shape == ((n, (frames + 1) // 2, 64) if tokens else (n, 64))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@SETTINGS
@given(n=st.integers(1, 9), seed=st.integers(0, 2**16), style=st.sampled_from(["late", "intermediate"]))
def test_fusion_models_match_pytorch(n, seed, style):
    torch.manual_seed(seed)
    torch_model = scramble_batchnorm(avdigits_classifier(style, dim=32, hidden=16), seed).eval()
    build = {"late": mk.late_fusion_model, "intermediate": mk.intermediate_fusion_model}[style]
    keras_model = build(dim=32, hidden=16, initializer="pytorch")
    mk.copy_torch_weights_to_keras(torch_model, keras_model)
    images, log_mel = random_batch(n, seed)
    expected = torch_model(images, log_mel).detach().numpy()
    got = keras_out(keras_model, list(mk.to_keras_layout(images, log_mel)))
    assert got.shape == (n, 10)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_batchnorm_statistics_update_like_pytorch():
    """Keras momentum 0.9 is PyTorch momentum 0.1; only the variance's n/(n-1) correction differs."""
    torch_bn = AudioEncoder(8).features[0].train()
    keras_model = mk.audio_encoder(8)
    keras_bn = keras_model.get_layer("audio_norm")
    _, log_mel = random_batch(6, 0)
    log_mel = 3 * log_mel + 1
    torch_bn(log_mel)
    keras_bn(mk.to_keras_layout(torch.zeros(6, 1, 8, 8), log_mel)[1], training=True)
    gamma, beta, mean, var = keras_bn.get_weights()
    np.testing.assert_allclose(mean, torch_bn.running_mean.numpy(), atol=1e-6)
    frames = 6 * 96  # PyTorch's running variance uses the unbiased batch variance
    biased = (torch_bn.running_var.numpy() - 0.9) * (frames - 1) / frames + 0.9
    np.testing.assert_allclose(var, biased, atol=1e-6)
    # Keras' default momentum 0.99 would have moved the average ten times less
    default = keras.layers.BatchNormalization()
    default(mk.to_keras_layout(torch.zeros(6, 1, 8, 8), log_mel)[1], training=True)
    assert np.allclose(default.get_weights()[2], 0.1 * mean, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# parameter counts and layouts
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["late", "intermediate"])
@pytest.mark.parametrize("dim,hidden", [(64, 64), (16, 8)])
def test_parameter_counts(style, dim, hidden):
    torch_model = avdigits_classifier(style, dim=dim, hidden=hidden)
    build = {"late": mk.late_fusion_model, "intermediate": mk.intermediate_fusion_model}[style]
    keras_model = build(dim=dim, hidden=hidden)
    trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    assert trainable == count_parameters(torch_model)
    # Keras also counts the batch norm's moving mean and variance (PyTorch buffers): 2 x 32 mel bands
    assert keras_model.count_params() == count_parameters(torch_model) + 64
    assert sum(int(np.prod(w.shape)) for w in keras_model.non_trainable_weights) == 64


def test_initializers_follow_their_scheme():
    keras.utils.set_random_seed(0)
    for initializer in mk.INITIALIZERS:
        model = mk.image_encoder(64, initializer=initializer)
        kernel, bias = model.get_layer("image_out").get_weights()
        fan_in, fan_out = kernel.shape
        bound = math.sqrt(6 / (fan_in + fan_out)) if initializer == "keras" else 1 / math.sqrt(fan_in)
        assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.95 * bound
        assert np.abs(kernel).std() == pytest.approx(bound / math.sqrt(12), rel=0.05)  # |U(-b, b)| ~ U(0, b)
        assert (np.all(bias == 0) if initializer == "keras" else 0.9 * bound < np.abs(bias).max() <= bound)


def test_to_keras_layout():
    images, log_mel = random_batch(3, 1)
    k_images, k_log_mel = mk.to_keras_layout(images, log_mel)
    assert k_images.shape == (3, 8, 8, 1) and k_log_mel.shape == (3, 96, 32)
    assert k_images[1, 2, 5, 0] == images[1, 0, 2, 5] and k_log_mel[2, 40, 7] == log_mel[2, 7, 40]
    flat = mk.to_keras_layout(images.numpy()[:, 0], log_mel.numpy())[0]
    np.testing.assert_array_equal(flat, k_images)


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------

def test_cosine_learning_rate_matches_pytorch():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=7)
    for epoch in range(7):
        assert mk.cosine_learning_rate(epoch, 0.3, 7) == pytest.approx(optimizer.param_groups[0]["lr"], abs=1e-12)
        optimizer.step()
        scheduler.step()


def test_fit_keras_learns_restores_best_and_checkpoints(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 24)
    images = rng.random((96, 8, 8, 1), dtype=np.float32) * 0.3
    images[np.arange(96), labels, labels, 0] += 1.0  # the label is written into the image
    log_mel = rng.random((96, 96, 32), dtype=np.float32)
    train, val = ((images[::2], log_mel[::2]), labels[::2]), ((images[1::2], log_mel[1::2]), labels[1::2])
    keras.utils.set_random_seed(0)
    model = mk.late_fusion_model(dim=16, hidden=16, num_classes=4)
    path = tmp_path / "best.weights.h5"
    history = mk.fit_keras(model, train, val, epochs=6, lr=3e-3, batch_size=16, patience=3, checkpoint_path=path)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"}
    runs = len(history["loss"])
    assert history["accuracy"][-1] > 0.9 and min(history["val_loss"]) < history["val_loss"][0]
    np.testing.assert_allclose(history["learning_rate"], [mk.cosine_learning_rate(e, 3e-3, 6) for e in range(runs)],
                               rtol=1e-6)
    # the model ends with the weights of its best validation epoch, which is also what the checkpoint holds
    best = int(np.argmin(history["val_loss"]))
    loss = model.evaluate(*val, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(history["val_loss"][best], rel=1e-5)
    reloaded = mk.late_fusion_model(dim=16, hidden=16, num_classes=4)
    reloaded.load_weights(path)
    np.testing.assert_array_equal(reloaded.predict(val[0], verbose=0), model.predict(val[0], verbose=0))


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------

def test_bad_builder_arguments():
    with pytest.raises(ValueError, match="dim"):
        mk.image_encoder(0)
    with pytest.raises(TypeError, match="tokens"):
        mk.audio_encoder(64, tokens="yes")
    with pytest.raises(ValueError, match="initializer"):
        mk.late_fusion_model(initializer="he")
    with pytest.raises(ValueError, match="n_frames"):
        mk.audio_encoder(64, n_frames=0)
    with pytest.raises(TypeError, match="hidden"):
        mk.intermediate_fusion_model(hidden=2.5)


def test_bad_layouts():
    images, log_mel = random_batch(2, 0)
    with pytest.raises(ValueError, match="images"):
        mk.to_keras_layout(images.reshape(2, 64), log_mel)
    with pytest.raises(ValueError, match="log_mel"):
        mk.to_keras_layout(images, log_mel[0])
    with pytest.raises(ValueError, match="same number"):
        mk.to_keras_layout(images, log_mel[:1])
    with pytest.raises(TypeError, match="images"):
        mk.to_keras_layout(images.tolist(), log_mel)


def test_bad_weight_copies():
    with pytest.raises(ValueError, match="late_image_hidden"):
        mk.copy_torch_weights_to_keras(avdigits_classifier("intermediate"), mk.late_fusion_model())
    with pytest.raises(ValueError, match="shapes"):
        mk.copy_torch_weights_to_keras(avdigits_classifier("late", dim=32), mk.late_fusion_model(dim=64))
    with pytest.raises(ValueError, match="shapes"):
        mk.copy_torch_weights_to_keras(ImageEncoder(64, tokens=True), mk.image_encoder(64))
    with pytest.raises(TypeError, match="torch_model"):
        mk.copy_torch_weights_to_keras(avdigits_classifier("image"), mk.image_encoder(64))
    with pytest.raises(TypeError, match="keras_model"):
        mk.copy_torch_weights_to_keras(ImageEncoder(64), ImageEncoder(64))


def test_bad_fit_arguments(tmp_path):
    model = mk.late_fusion_model(dim=8, hidden=8)
    data = ((np.zeros((4, 8, 8, 1), np.float32), np.zeros((4, 96, 32), np.float32)), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="epochs"):
        mk.fit_keras(model, data, data, epochs=0)
    with pytest.raises(ValueError, match="lr"):
        mk.fit_keras(model, data, data, lr=-1.0)
    with pytest.raises(ValueError, match="patience"):
        mk.fit_keras(model, data, None, patience=2)
    with pytest.raises(ValueError, match="checkpoint_path"):
        mk.fit_keras(model, data, data, checkpoint_path=tmp_path / "best.pt")
    with pytest.raises(ValueError, match="train"):
        mk.fit_keras(model, ((data[0][0][:, :, :, 0], data[0][1]), data[1]), data)
    with pytest.raises(TypeError, match="train"):
        mk.fit_keras(model, data[0][0], data)
    with pytest.raises(TypeError, match="model"):
        mk.fit_keras(avdigits_classifier("late"), data, data)
    with pytest.raises(ValueError, match="schedule"):
        mk.fit_keras(model, data, data, schedule="linear")
