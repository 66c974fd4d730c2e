"""The TensorFlow path: the TF-MOT-ready Keras fusion model equals the PyTorch one given the same weights, and
the converted ``.tflite`` files give the Keras model's outputs in the LiteRT interpreter (float32 exactly up to
round-off, int8 within the quantization error). TensorFlow is imported once, by ``mmtutor.compress.tflite``'s
first use; Keras 3 here (the TF-MOT notebooks use Keras 2 through ``TF_USE_LEGACY_KERAS``)."""

import gzip

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtutor.compress import tflite
from mmtutor.models import keras as mk
from mmtutor.models.avdigits import avdigits_classifier

SMALL = {"dim": 16, "hidden": 16}


def random_inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((n, 8, 8, 1), dtype=np.float32), rng.random((n, 96, 32), dtype=np.float32)]


@pytest.fixture(scope="module")
def small_model():
    return tflite.fusion_model(**SMALL)


@pytest.fixture(scope="module")
def float_bytes(small_model):
    return tflite.convert_to_tflite(small_model, "float32")


@pytest.fixture(scope="module")
def int8_bytes(small_model):
    return tflite.convert_to_tflite(small_model, "int8", random_inputs(64, seed=1), samples=64)


def test_fusion_model_has_the_reference_parameter_count():
    model = tflite.fusion_model()
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 563_850
    assert model.name == "intermediate_fusion" and [x.name.split(":")[0] for x in model.inputs] == ["image", "log_mel"]


def test_fusion_model_equals_pytorch_given_its_weights():
    torch.manual_seed(0)
    torch_model = avdigits_classifier("intermediate", **SMALL).eval()
    twin = mk.intermediate_fusion_model(**SMALL)
    mk.copy_torch_weights_to_keras(torch_model, twin)
    model = tflite.fusion_model(**SMALL)
    assert tflite.copy_weights_by_name(twin, model) == twin.count_params()
    images, log_mel = torch.rand(5, 1, 8, 8), torch.rand(5, 32, 96)
    expected = torch_model(images, log_mel).detach().numpy()
    got = model(list(tflite.keras_layout(images.numpy(), log_mel.numpy())), training=False).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_float32_tflite_gives_keras_outputs(small_model, float_bytes):
    inputs = random_inputs(7, seed=2)
    expected = small_model(inputs, training=False).numpy()
    for batch_size in (1, 4):  # 4 does not divide 7: the last chunk is padded and cut
        got = tflite.LiteRTModel(float_bytes, batch_size=batch_size).predict(inputs)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_int8_tflite_has_int8_io_and_stays_close(small_model, int8_bytes, float_bytes):
    model = tflite.LiteRTModel(int8_bytes, batch_size=8)
    assert [d["dtype"] for d in model.inputs] == [np.int8, np.int8] and model.output["dtype"] == np.int8
    inputs = random_inputs(8, seed=3)
    expected = small_model(inputs, training=False).numpy()
    got = model.predict(inputs)
    scale = model.output["quantization"][0]
    # a few output steps of error: weights, activations and the output are all rounded
    assert np.max(np.abs(got - expected)) < 0.1 * np.max(np.abs(expected)) + 8 * scale
    assert len(int8_bytes) < len(float_bytes) / 3  # headers and scales weigh more in a model this small


def test_per_tensor_scales_make_a_smaller_file(small_model, int8_bytes):
    per_tensor = tflite.convert_to_tflite(small_model, "int8", random_inputs(64, seed=1), samples=64,
                                          per_channel=False)
    assert len(per_tensor) < len(int8_bytes)


@settings(max_examples=20, deadline=None)
@given(scale=st.floats(1e-3, 1.0), zero_point=st.integers(-128, 127), seed=st.integers(0, 2**16))
def test_quantize_dequantize_error_is_at_most_half_a_step(scale, zero_point, seed):
    detail = {"dtype": np.int8, "quantization": (scale, zero_point)}
    low, high = scale * (-128 - zero_point), scale * (127 - zero_point)
    x = np.random.default_rng(seed).uniform(low, high, size=100).astype(np.float32)
    q = tflite.LiteRTModel.quantize(x, detail)
    assert q.dtype == np.int8
    assert np.max(np.abs(tflite.LiteRTModel.dequantize(q, detail) - x)) <= scale / 2 * (1 + 1e-4) + 1e-6


def test_gzipped_size_is_gzip_and_zeros_compress(tmp_path):
    data = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    sparse = data.copy()
    sparse[np.abs(sparse) < 1.0] = 0.0
    assert tflite.gzipped_size(data.tobytes()) == len(gzip.compress(data.tobytes(), 9, mtime=0))
    assert tflite.gzipped_size(sparse.tobytes()) < 0.7 * tflite.gzipped_size(data.tobytes())
    path = tmp_path / "m.bin"
    path.write_bytes(data.tobytes())
    assert tflite.gzipped_size(path) == tflite.gzipped_size(data.tobytes())


def test_representative_dataset_yields_named_single_examples():
    inputs = random_inputs(5)
    batches = list(tflite.representative_dataset(inputs, samples=3)())
    assert len(batches) == 3 and sorted(batches[0]) == ["image", "log_mel"]
    np.testing.assert_array_equal(batches[2]["log_mel"], inputs[1][2:3])


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------

def test_bad_arguments_are_named(small_model, float_bytes):
    with pytest.raises(ValueError, match="mode"):
        tflite.convert_to_tflite(small_model, "int4")
    with pytest.raises(ValueError, match="representative_inputs"):
        tflite.convert_to_tflite(small_model, "int8")
    with pytest.raises(TypeError, match="per_channel"):
        tflite.convert_to_tflite(small_model, "dynamic", per_channel=1)
    with pytest.raises(TypeError, match="model"):
        tflite.convert_to_tflite("model.keras")
    with pytest.raises(ValueError, match="samples"):
        tflite.representative_dataset(random_inputs(5), samples=6)
    with pytest.raises(ValueError, match="inputs"):
        tflite.representative_dataset([np.zeros((3, 8, 8, 1)), np.zeros((4, 96, 32))])
    with pytest.raises(TypeError, match="model_content"):
        tflite.LiteRTModel("model.tflite")
    with pytest.raises(ValueError, match="batch_size"):
        tflite.LiteRTModel(float_bytes, batch_size=0)
    with pytest.raises(ValueError, match="input_names"):
        tflite.LiteRTModel(float_bytes, input_names=("image", "audio"))
    with pytest.raises(ValueError, match="inputs"):
        tflite.LiteRTModel(float_bytes).predict(random_inputs(2)[:1])
    with pytest.raises(TypeError, match="data"):
        tflite.gzipped_size(3)
    with pytest.raises(ValueError, match="images"):
        tflite.keras_layout(np.zeros((2, 8, 8)), np.zeros((2, 32, 96)))
    with pytest.raises(ValueError, match="dim"):
        tflite.fusion_model(dim=0)
    with pytest.raises(ValueError, match="source"):
        tflite.copy_weights_by_name(tflite.fusion_model(**SMALL), tflite.fusion_model(dim=8, hidden=16))
    with pytest.raises(TypeError, match="data"):
        tflite.train_fusion_model(small_model, [1, 2])
