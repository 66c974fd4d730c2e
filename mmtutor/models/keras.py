r"""Keras 3 (TensorFlow backend) twins of the AV-digits encoders and of late and intermediate fusion.

Every model here mirrors one of ``mmtutor.models.avdigits`` layer for layer: same widths, kernels,
strides, padding and pooling, and the same number of trainable parameters. The test suite proves it the
strong way: :func:`copy_torch_weights_to_keras` copies a PyTorch model's weights into its Keras twin,
and the two then give the same outputs up to float32 round-off.

**Layouts.** PyTorch puts channels first, Keras (by default) last:

.. list-table::
   :header-rows: 1

   * - tensor
     - PyTorch
     - Keras (this module)
   * - image batch
     - ``(N, 1, 8, 8)`` (NCHW)
     - ``(N, 8, 8, 1)`` (NHWC)
   * - log-mel batch
     - ``(N, 32, 96)`` (mel bands, time)
     - ``(N, 96, 32)`` (time, mel bands)
   * - 2-D convolution kernel
     - ``(out, in, kh, kw)``
     - ``(kh, kw, in, out)``
   * - 1-D convolution kernel
     - ``(out, in, k)``
     - ``(k, in, out)``
   * - linear layer
     - weight ``(out, in)``, :math:`y = xW^\top + b`
     - kernel ``(in, out)``, :math:`y = xK + b`
   * - flattened feature map
     - order ``(channel, *space)``
     - order ``(*space, channel)``

The log-mel input is ``(time, mel bands)``: a Keras ``Conv1D`` slides over axis 1 and treats the last
axis as channels, and ``BatchNormalization(axis=-1)`` then normalises each mel band, exactly what
``BatchNorm1d(32)`` does on PyTorch's ``(N, 32, T)``. Convert a batch with :func:`to_keras_layout`.

**Details that have to be matched by hand.**

* Padding: a stride-1 convolution with ``padding="same"`` pads ``(k - 1) / 2`` on both sides, like
  PyTorch's ``padding=(k - 1) // 2``. With stride 2 it does not: TensorFlow's ``"same"`` puts the extra
  padding at the end (for ``k = 5`` on 96 frames: 1 before, 2 after), PyTorch's ``padding=2`` puts 2 on
  each side, and the two sample different frames. The strided audio convolution is therefore
  ``ZeroPadding1D(2)`` followed by a ``"valid"`` convolution.
* Flattening a feature map orders its entries differently (table above), so the first ``Dense`` after a
  ``Flatten`` sees its inputs permuted; :func:`copy_torch_weights_to_keras` permutes the rows to match.
* ``AdaptiveAvgPool1d(8)`` is Keras' ``AdaptiveAveragePooling1D(8)``: both cut the time axis into 8 windows
  (for the 48 steps of a 96-frame clip, 8 non-overlapping windows of 6) and average each.
* Batch normalisation: PyTorch updates its running statistics as
  :math:`\hat\mu \leftarrow (1-m)\hat\mu + m\,\mu_B` with ``momentum`` :math:`m = 0.1`; Keras as
  :math:`\hat\mu \leftarrow m\hat\mu + (1-m)\mu_B` with default :math:`m = 0.99`. The same word means the
  opposite weight, and the defaults differ too (0.1 in PyTorch is 0.9 in Keras), as do the epsilons
  (:math:`10^{-5}` vs :math:`10^{-3}`). Here ``momentum=0.9, epsilon=1e-5``: the PyTorch behaviour.
  (One difference remains: PyTorch's running variance uses the unbiased batch variance, Keras' the biased one.)
* Parameter counts: Keras counts the moving mean and variance of batch normalisation as (non-trainable)
  weights, PyTorch keeps them as buffers, outside ``parameters()``. The *trainable* counts are equal;
  ``model.count_params()`` is larger by :math:`2 \times 32 = 64`.
* Initialisation: Keras draws kernels from Glorot-uniform, :math:`U(\pm\sqrt{6/(n_\text{in}+n_\text{out})})`,
  with zero biases; PyTorch from :math:`U(\pm 1/\sqrt{n_\text{in}})` for weights *and* biases (its
  "Kaiming-uniform with :math:`a=\sqrt5`"). ``initializer="pytorch"`` reproduces PyTorch's scheme in Keras
  (``VarianceScaling(1/3, "fan_in", "uniform")`` is exactly :math:`U(\pm 1/\sqrt{n_\text{in}})`).

The models return logits; train them with :func:`fit_keras`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmtutor.runtime import _check_int, import_tensorflow  # the package's one integer validator

tf = import_tensorflow()  # first, so that TensorFlow's C++ start-up lines stay out of stderr
import keras  # noqa: E402  (keras imports TensorFlow; it must come after import_tensorflow)

__all__ = ["INITIALIZERS", "BATCHNORM_MOMENTUM", "BATCHNORM_EPSILON", "to_keras_layout", "image_encoder",
           "audio_encoder", "late_fusion_model", "intermediate_fusion_model", "copy_torch_weights_to_keras",
           "cosine_learning_rate", "fit_keras"]

INITIALIZERS = ("keras", "pytorch")
#: Keras' momentum that equals PyTorch's ``BatchNorm1d(momentum=0.1)``: Keras weights the *old* average.
BATCHNORM_MOMENTUM = 0.9
#: PyTorch's default epsilon of batch normalisation (Keras' default is 1e-3).
BATCHNORM_EPSILON = 1e-5

_N_MELS, _N_FRAMES, _AUDIO_SLOTS = 32, 96, 8


# --------------------------------------------------------------------------------------------------
# validation and small helpers
# --------------------------------------------------------------------------------------------------

def _check_positive_int(name: str, value) -> int:
    return _check_int(name, value, 1)


def _check_initializer(initializer) -> str:
    if not isinstance(initializer, str) or initializer not in INITIALIZERS:
        raise ValueError(f"initializer must be one of {list(INITIALIZERS)}, got {initializer!r}")
    return initializer


def _init(initializer: str, fan_in: int) -> dict:
    """Keyword arguments for a Conv/Dense layer: Keras' defaults or PyTorch's U(±1/sqrt(fan_in))."""
    if initializer == "keras":
        return {}
    bound = 1.0 / math.sqrt(fan_in)
    return {"kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            "bias_initializer": keras.initializers.RandomUniform(-bound, bound)}


def _as_numpy(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch.Tensor
        x = x.detach().cpu().numpy()
    if isinstance(x, tf.Tensor):
        x = x.numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array or a torch/TensorFlow tensor, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must hold floats, got dtype {x.dtype}")
    return x


def to_keras_layout(images, log_mel) -> tuple[np.ndarray, np.ndarray]:
    """Convert a PyTorch-layout batch to Keras' channels-last layout.

    ``images`` ``(N, 1, 8, 8)`` (or ``(N, 8, 8)``) becomes ``(N, 8, 8, 1)``; ``log_mel`` ``(N, mels, frames)``
    becomes ``(N, frames, mels)``. Accepts NumPy arrays or torch tensors; returns float32 NumPy arrays.
    """
    images, log_mel = _as_numpy(images, "images"), _as_numpy(log_mel, "log_mel")
    if images.ndim not in (3, 4) or images.shape[-2:] != (8, 8) or (images.ndim == 4 and images.shape[1] != 1):
        raise ValueError(f"images must have shape (N, 1, 8, 8) or (N, 8, 8), got {images.shape}")
    if log_mel.ndim != 3:
        raise ValueError(f"log_mel must have shape (N, mels, frames), got {log_mel.shape}")
    if len(images) != len(log_mel):
        raise ValueError(f"images and log_mel must hold the same number of examples, "
                         f"got {len(images)} and {len(log_mel)}")
    return (np.ascontiguousarray(images.reshape(len(images), 8, 8, 1), dtype=np.float32),
            np.ascontiguousarray(log_mel.transpose(0, 2, 1), dtype=np.float32))


# --------------------------------------------------------------------------------------------------
# encoders
# --------------------------------------------------------------------------------------------------

def image_encoder(dim: int = 64, tokens: bool = False, initializer: str = "keras",
                  name: str = "image_encoder") -> keras.Model:
    """Keras twin of :class:`mmtutor.models.avdigits.ImageEncoder`: input ``(N, 8, 8, 1)``.

    ``Conv2D(16, 3, "same")`` → ReLU → ``Conv2D(32, 3, "same")`` → ReLU → ``MaxPooling2D(2)`` gives a
    ``(4, 4, 32)`` map; pooled output ``ReLU(Dense(dim)(Flatten(map)))`` ``(N, dim)``, or with ``tokens=True``
    the 16 positions (row-major, as PyTorch's ``flatten(2)``) each mapped to ``dim``: ``(N, 16, dim)``.
    """
    dim, initializer = _check_positive_int("dim", dim), _check_initializer(initializer)
    if not isinstance(tokens, bool):
        raise TypeError(f"tokens must be a bool, got {type(tokens).__name__}: {tokens!r}")
    layers = keras.layers
    images = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="image_conv1", **_init(initializer, 9))(images)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="image_conv2",
                      **_init(initializer, 16 * 9))(x)
    x = layers.MaxPooling2D(2, name="image_pool")(x)
    if tokens:
        x = layers.Reshape((16, 32), name="image_tokens")(x)
        out = layers.Dense(dim, name="image_out", **_init(initializer, 32))(x)
    else:
        x = layers.Flatten(name="image_flatten")(x)
        out = layers.Dense(dim, activation="relu", name="image_out", **_init(initializer, 32 * 16))(x)
    return keras.Model(images, out, name=name)


def audio_encoder(dim: int = 64, tokens: bool = False, n_mels: int = _N_MELS, n_frames: int = _N_FRAMES,
                  initializer: str = "keras", name: str = "audio_encoder") -> keras.Model:
    """Keras twin of :class:`mmtutor.models.avdigits.AudioEncoder`: input ``(N, n_frames, n_mels)``.

    ``BatchNormalization`` of each mel band (momentum and epsilon as PyTorch's) →
    ``Conv1D(64, 5, "same")`` → ReLU → ``ZeroPadding1D(2)`` + ``Conv1D(64, 5, strides=2)`` → ReLU gives
    ``(ceil(n_frames / 2), 64)``; pooled: ``AdaptiveAveragePooling1D`` into 8 slots, flatten,
    ``ReLU(Dense(dim))``; with ``tokens=True`` one ``dim``-vector per 20 ms step.
    """
    dim, initializer = _check_positive_int("dim", dim), _check_initializer(initializer)
    n_mels, n_frames = _check_positive_int("n_mels", n_mels), _check_positive_int("n_frames", n_frames)
    if not isinstance(tokens, bool):
        raise TypeError(f"tokens must be a bool, got {type(tokens).__name__}: {tokens!r}")
    layers = keras.layers
    log_mel = keras.Input((n_frames, n_mels), name="log_mel")
    x = layers.BatchNormalization(axis=-1, momentum=BATCHNORM_MOMENTUM, epsilon=BATCHNORM_EPSILON,
                                  name="audio_norm")(log_mel)
    x = layers.Conv1D(64, 5, padding="same", activation="relu", name="audio_conv1",
                      **_init(initializer, n_mels * 5))(x)
    x = layers.ZeroPadding1D(2, name="audio_pad")(x)
    x = layers.Conv1D(64, 5, strides=2, padding="valid", activation="relu", name="audio_conv2",
                      **_init(initializer, 64 * 5))(x)
    if tokens:
        out = layers.Dense(dim, name="audio_out", **_init(initializer, 64))(x)
    else:
        x = layers.AdaptiveAveragePooling1D(_AUDIO_SLOTS, name="audio_pool")(x)
        x = layers.Flatten(name="audio_flatten")(x)
        out = layers.Dense(dim, activation="relu", name="audio_out", **_init(initializer, 64 * _AUDIO_SLOTS))(x)
    return keras.Model(log_mel, out, name=name)


# --------------------------------------------------------------------------------------------------
# fusion models (functional API, two inputs)
# --------------------------------------------------------------------------------------------------

def _encoders(dim: int, initializer: str):
    images = keras.Input((8, 8, 1), name="image")
    log_mel = keras.Input((_N_FRAMES, _N_MELS), name="log_mel")
    embeddings = (image_encoder(dim, initializer=initializer)(images),
                  audio_encoder(dim, initializer=initializer)(log_mel))
    return (images, log_mel), embeddings


def late_fusion_model(dim: int = 64, hidden: int = 64, num_classes: int = 10,
                      initializer: str = "keras") -> keras.Model:
    r"""Keras twin of ``avdigits_classifier("late", dim, hidden, num_classes)``.

    Inputs ``image`` ``(N, 8, 8, 1)`` and ``log_mel`` ``(N, 96, 32)``; each embedding gets its own head
    :math:`f_m(z) = V_m\,\mathrm{ReLU}(U_m z + c_m) + e_m` and the output is the mean of the two logit
    vectors, :math:`\tfrac12\,(f_\text{image} + f_\text{audio})` (``keras.layers.Average``).
    """
    dim, hidden = _check_positive_int("dim", dim), _check_positive_int("hidden", hidden)
    num_classes, initializer = _check_positive_int("num_classes", num_classes), _check_initializer(initializer)
    inputs, embeddings = _encoders(dim, initializer)
    logits = []
    for modality, z in zip(("image", "audio"), embeddings):
        h = keras.layers.Dense(hidden, activation="relu", name=f"late_{modality}_hidden", **_init(initializer, dim))(z)
        logits.append(keras.layers.Dense(num_classes, name=f"late_{modality}_logits",
                                         **_init(initializer, hidden))(h))
    return keras.Model(inputs, keras.layers.Average(name="mean_logits")(logits), name="late_fusion")


def intermediate_fusion_model(dim: int = 64, hidden: int = 64, num_classes: int = 10,
                              initializer: str = "keras") -> keras.Model:
    r"""Keras twin of ``avdigits_classifier("intermediate", dim, hidden, num_classes)``.

    :math:`h_m = \mathrm{ReLU}(P_m z_m + c_m)`, then
    :math:`y = W_2\,\mathrm{ReLU}(W_1 [h_\text{image}; h_\text{audio}] + b_1) + b_2`.
    """
    dim, hidden = _check_positive_int("dim", dim), _check_positive_int("hidden", hidden)
    num_classes, initializer = _check_positive_int("num_classes", num_classes), _check_initializer(initializer)
    inputs, embeddings = _encoders(dim, initializer)
    projected = [keras.layers.Dense(hidden, activation="relu", name=f"projection_{modality}",
                                    **_init(initializer, dim))(z)
                 for modality, z in zip(("image", "audio"), embeddings)]
    joint = keras.layers.Concatenate(name="concatenate")(projected)
    joint = keras.layers.Dense(hidden, activation="relu", name="joint", **_init(initializer, 2 * hidden))(joint)
    logits = keras.layers.Dense(num_classes, name="logits", **_init(initializer, hidden))(joint)
    return keras.Model(inputs, logits, name="intermediate_fusion")


# --------------------------------------------------------------------------------------------------
# weights: PyTorch -> Keras
# --------------------------------------------------------------------------------------------------

#: Keras layer name -> path of the PyTorch module holding the same weights (relative to the encoder).
_ENCODER_MODULES = {"image_conv1": "features.0", "image_conv2": "features.2", "image_out": "out",
                    "audio_norm": "features.0", "audio_conv1": "features.1", "audio_conv2": "features.3",
                    "audio_out": "out"}
#: Keras layer name -> path of the PyTorch module inside ``EncodeThenFuse.fusion``.
_FUSION_MODULES = {"late_image_hidden": "heads.0.0", "late_image_logits": "heads.0.1.1",
                   "late_audio_hidden": "heads.1.0", "late_audio_logits": "heads.1.1.1",
                   "projection_image": "projections.0.0", "projection_audio": "projections.1.0",
                   "joint": "joint", "logits": "head.1"}
#: Dense layers that read a flattened feature map: PyTorch's (channels, *space) shape of that map.
_FLATTENED_MAPS = {"image_out": (32, 4, 4), "audio_out": (64, _AUDIO_SLOTS)}
_ENCODER_INDEX = {"image_encoder": 0, "audio_encoder": 1}


def _layer_pairs(keras_model, prefix: str, table: dict):
    """Yield (keras layer, PyTorch module path) for every Keras layer that holds weights."""
    for layer in keras_model.layers:
        if isinstance(layer, keras.Model):
            if layer.name not in _ENCODER_INDEX:
                raise ValueError(f"keras_model: unknown sub-model {layer.name!r}; expected {list(_ENCODER_INDEX)}")
            yield from _layer_pairs(layer, f"encoders.{_ENCODER_INDEX[layer.name]}.", _ENCODER_MODULES)
        elif layer.weights:
            if layer.name not in table:
                raise ValueError(f"keras_model: layer {layer.name!r} has no PyTorch counterpart in this mapping")
            yield layer, prefix + table[layer.name]


def _keras_weights(layer, module, torch_nn) -> list[np.ndarray]:
    """The PyTorch module's tensors, transposed into the order and layout of ``layer.get_weights()``."""
    def numpy(t):
        return t.detach().cpu().numpy().astype(np.float32)

    if isinstance(module, torch_nn.Conv2d):
        return [numpy(module.weight).transpose(2, 3, 1, 0), numpy(module.bias)]   # (out,in,kh,kw) -> (kh,kw,in,out)
    if isinstance(module, torch_nn.Conv1d):
        return [numpy(module.weight).transpose(2, 1, 0), numpy(module.bias)]      # (out,in,k) -> (k,in,out)
    if isinstance(module, torch_nn.BatchNorm1d):
        return [numpy(module.weight), numpy(module.bias), numpy(module.running_mean), numpy(module.running_var)]
    if isinstance(module, torch_nn.Linear):
        weight = numpy(module.weight)                                             # (out, in)
        shape = _FLATTENED_MAPS.get(layer.name)
        if shape is not None and weight.shape[1] == int(np.prod(shape)):
            # input index c*prod(space) + s (channels first) -> s*C + c (channels last)
            weight = weight.reshape(weight.shape[0], *shape)
            weight = np.moveaxis(weight, 1, -1).reshape(weight.shape[0], -1)
        return [weight.T, numpy(module.bias)]
    raise TypeError(f"torch_model: cannot copy a {type(module).__name__} into Keras layer {layer.name!r}")


def copy_torch_weights_to_keras(torch_model, keras_model) -> int:
    """Copy the weights (and batch-norm statistics) of a PyTorch AV-digits model into its Keras twin.

    ``torch_model`` is an ``ImageEncoder``/``AudioEncoder`` (pair it with :func:`image_encoder` /
    :func:`audio_encoder`, same ``tokens``) or a late/intermediate ``avdigits_classifier`` (pair it with
    :func:`late_fusion_model` / :func:`intermediate_fusion_model`). Kernels are transposed and the rows of
    every Dense layer after a Flatten permuted (see the module docstring). Every PyTorch parameter and
    buffer must be used exactly once; shapes must agree. Returns the number of values copied.
    """
    import torch

    from mmtutor.models.avdigits import AudioEncoder, ImageEncoder
    from mmtutor.models.fusion import EncodeThenFuse

    if not isinstance(torch_model, torch.nn.Module):
        raise TypeError(f"torch_model must be a torch.nn.Module, got {type(torch_model).__name__}")
    if not isinstance(keras_model, keras.Model):
        raise TypeError(f"keras_model must be a keras.Model, got {type(keras_model).__name__}")
    if isinstance(torch_model, (ImageEncoder, AudioEncoder)):
        pairs = list(_layer_pairs(keras_model, "", _ENCODER_MODULES))
    elif isinstance(torch_model, EncodeThenFuse):
        pairs = list(_layer_pairs(keras_model, "fusion.", _FUSION_MODULES))
    else:
        raise TypeError(f"torch_model must be an ImageEncoder, an AudioEncoder or an EncodeThenFuse classifier, "
                        f"got {type(torch_model).__name__}")
    modules = dict(torch_model.named_modules())
    used, copied = set(), 0
    for layer, path in pairs:
        if path not in modules:
            raise ValueError(f"torch_model has no module {path!r} for Keras layer {layer.name!r}: "
                             f"are the two models the same architecture?")
        values = _keras_weights(layer, modules[path], torch.nn)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            raise ValueError(f"keras_model layer {layer.name!r} has weight shapes {expected}, but torch module "
                             f"{path!r} gives {[v.shape for v in values]}: are dim/hidden/tokens the same?")
        layer.set_weights(values)
        used.add(path)
        copied += sum(v.size for v in values)
    tensors = {name.rsplit(".", 1)[0] for name, _ in [*torch_model.named_parameters(), *torch_model.named_buffers()]}
    if tensors - used:
        raise ValueError(f"keras_model has no layer for the PyTorch modules {sorted(tensors - used)}")
    return copied


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------

def cosine_learning_rate(epoch: int, lr: float, epochs: int) -> float:
    r"""PyTorch's ``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch:
    :math:`\eta_e = \tfrac{\eta}{2}\,(1 + \cos(\pi e / E))` for epoch :math:`e = 0, 1, \dots`."""
    return float(lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)))


def _check_data(name: str, data, required: bool):
    if data is None:
        if required:
            raise ValueError(f"{name} must be ((images, log_mel), labels) arrays or a tf.data.Dataset, got None")
        return None
    if isinstance(data, tf.data.Dataset):
        return data
    if (not isinstance(data, Sequence) or len(data) != 2 or not isinstance(data[0], Sequence)
            or len(data[0]) != 2):
        raise TypeError(f"{name} must be ((images, log_mel), labels) or a tf.data.Dataset, got {type(data).__name__}")
    (images, log_mel), labels = data
    images, log_mel, labels = np.asarray(images), np.asarray(log_mel), np.asarray(labels)
    if images.shape[1:] != (8, 8, 1) or log_mel.ndim != 3:
        raise ValueError(f"{name}: expected images (N, 8, 8, 1) and log_mel (N, frames, mels) in Keras layout "
                         f"(see to_keras_layout), got {images.shape} and {log_mel.shape}")
    if not (len(images) == len(log_mel) == len(labels)) or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"{name}: expected the same number N >= 1 of images, log-mels and labels (N,), got "
                         f"{len(images)}, {len(log_mel)} and {labels.shape}")
    return (images, log_mel), labels


def fit_keras(model: keras.Model, train, val=None, *, epochs: int = 20, lr: float = 1e-3,
              weight_decay: float = 0.0, batch_size: int = 64, schedule: str | None = "cosine",
              patience: int | None = None, checkpoint_path: str | Path | None = None,
              verbose: int = 0) -> dict:
    r"""Train a Keras classifier the way ``mmtutor.train.fit`` trains a PyTorch one; return its history.

    ``model.compile`` with AdamW (``lr``, ``weight_decay``, PyTorch's :math:`\epsilon = 10^{-8}` instead of
    Keras' :math:`10^{-7}`) and the cross-entropy of logits, then ``model.fit`` with the callbacks

    * ``LearningRateScheduler``: :func:`cosine_learning_rate`, once per epoch (``schedule="cosine"``);
    * ``EarlyStopping(monitor="val_loss", restore_best_weights=True)``: stop after ``patience`` epochs
      without a lower validation loss (never, if ``patience`` is None) and end with the best weights;
    * ``ModelCheckpoint(save_best_only=True)`` to ``checkpoint_path``: a whole model if it ends in
      ``.keras`` (reload with ``keras.models.load_model``), weights only if it ends in ``.weights.h5``.

    ``train`` and ``val`` are ``((images (N, 8, 8, 1), log_mel (N, 96, 32)), labels)`` NumPy arrays
    (shuffled each epoch, mini-batches of ``batch_size``) or batched ``tf.data.Dataset``\ s. Seed first with
    ``keras.utils.set_random_seed``. Returns ``History.history``: one list per metric (``loss``,
    ``accuracy``, ``val_loss``, ``val_accuracy``, ``learning_rate``, and ``seconds``: the wall-clock time),
    one entry per epoch run. The first epoch is the slow one: Keras traces the training and validation steps
    into TensorFlow graphs then.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    train, val = _check_data("train", train, required=True), _check_data("val", val, required=False)
    epochs, batch_size = _check_positive_int("epochs", epochs), _check_positive_int("batch_size", batch_size)
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if schedule not in ("cosine", None):
        raise ValueError(f"schedule must be 'cosine' or None, got {schedule!r}")
    if patience is not None:
        patience = _check_positive_int("patience", patience)
        if val is None:
            raise ValueError("patience needs val data to watch, got val=None")
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    monitor = "val_loss" if val is not None else "loss"
    callbacks = [keras.callbacks.EarlyStopping(monitor=monitor, patience=patience or epochs,
                                               restore_best_weights=True)]
    if schedule == "cosine":
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda e: cosine_learning_rate(e, lr, epochs)))
    if checkpoint_path is not None:
        checkpoint_path = Path(checkpoint_path)
        if not checkpoint_path.name.endswith((".keras", ".weights.h5")):
            raise ValueError(f"checkpoint_path must end in '.keras' or '.weights.h5', got {str(checkpoint_path)!r}")
        checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.ModelCheckpoint(
            str(checkpoint_path), monitor=monitor, save_best_only=True,
            save_weights_only=checkpoint_path.name.endswith(".weights.h5")))
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay, epsilon=1e-8),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    timer = _EpochTimer()
    if isinstance(train, tf.data.Dataset):  # already batched (and shuffled, if wanted) by the caller
        arguments = {"x": train}
    else:
        arguments = {"x": train[0], "y": train[1], "batch_size": batch_size, "shuffle": True}
    with warnings.catch_warnings():
        # Keras reads the learning-rate variable with np.array(variable), which NumPy 2 flags (once per
        # epoch) because TensorFlow's __array__ lacks a `copy` argument; harmless, and not ours to fix.
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                                category=DeprecationWarning)
        history = model.fit(**arguments, epochs=epochs, validation_data=val, callbacks=[*callbacks, timer],
                            verbose=verbose)
    result = {key: [float(v) for v in values] for key, values in history.history.items()}
    result["seconds"] = timer.seconds
    return result


class _EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch (training and validation), for the ``seconds`` history entry."""

    def __init__(self):
        super().__init__()
        self.seconds, self._start = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
