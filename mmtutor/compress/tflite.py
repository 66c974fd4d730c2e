r"""The TensorFlow path: a TF-MOT-ready Keras fusion model, TFLite conversion, and the LiteRT interpreter.

**The model.** :func:`fusion_model` builds the intermediate-fusion AV-digits classifier of
:func:`mmtutor.models.avdigits.avdigits_classifier` with ``tf.keras`` layers, as *one flat* functional model
(no nested encoder models: TF-MOT's wrappers walk a flat layer list). Under ``TF_USE_LEGACY_KERAS=1``
``tf.keras`` is Keras 2 (``tf_keras``), which TF-MOT needs; without it, Keras 3. The audio convolutions are
written as ``Conv2D`` with ``(5, 1)`` kernels on a ``(frames, 1, mels)`` map: the same arithmetic as a
``Conv1D`` over time, with the same weights reshaped, but a layer that TF-MOT's quantization knows (its
default scheme has no ``Conv1D``) and the form TFLite runs anyway (it lowers 1-D convolutions to 2-D ones).

**TFLite quantization.** A tensor is stored as int8 codes :math:`q` with a scale :math:`s` and a zero point
:math:`z`, :math:`x \approx s\,(q - z)` (:mod:`mmtutor.compress.quantize`). :func:`convert_to_tflite` has
three modes:

- ``"float32"``: the graph as is;
- ``"dynamic"``: int8 weights, float activations, quantized on the fly at run time;
- ``"int8"``: full integer. Activation ranges are fixed in advance from a *representative dataset* (a
  sample of real inputs run through the float model), and inputs and outputs are int8 too, so a caller
  quantizes its input, :math:`q = \mathrm{round}(x / s) + z`, and dequantizes the output itself
  (:class:`LiteRTModel` does both, with the scales the file stores).
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mmtutor.runtime import _check_int, import_tensorflow

__all__ = ["MODES", "FUSION_INPUTS", "keras_layout", "reference_keras_data", "fusion_model", "convert_to_tflite",
           "representative_dataset", "LiteRTModel", "train_fusion_model", "keras_accuracy",
           "copy_weights_by_name", "gzipped_size", "legacy_keras"]

#: Conversion modes of :func:`convert_to_tflite`.
MODES = ("float32", "dynamic", "int8")
#: Input names of :func:`fusion_model`, in order.
FUSION_INPUTS = ("image", "log_mel")
_FRAMES, _MELS, _SLOTS = 96, 32, 8
_BN_MOMENTUM, _BN_EPSILON = 0.9, 1e-5   # PyTorch's BatchNorm1d behaviour (see mmtutor.models.keras)


def legacy_keras() -> bool:
    """Whether ``tf.keras`` is Keras 2 (``tf_keras``): ``TF_USE_LEGACY_KERAS`` was set before TensorFlow loaded."""
    tf = import_tensorflow()
    return tf.keras.__name__.startswith("tf_keras") or tf.keras.__version__.startswith("2.")


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------

def keras_layout(images, log_mel) -> tuple[np.ndarray, np.ndarray]:
    """``images`` ``(N, 1, 8, 8)`` and ``log_mel`` ``(N, 32, 96)`` (PyTorch layout) as float32 NumPy arrays in
    Keras' channels-last layout, ``(N, 8, 8, 1)`` and ``(N, 96, 32)``."""
    images, log_mel = np.asarray(images, dtype=np.float32), np.asarray(log_mel, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (1, 8, 8):
        raise ValueError(f"images must have shape (N, 1, 8, 8), got {images.shape}")
    if log_mel.ndim != 3 or len(log_mel) != len(images):
        raise ValueError(f"log_mel must have shape (N, mels, frames) with N = {len(images)}, got {log_mel.shape}")
    return (np.ascontiguousarray(images.transpose(0, 2, 3, 1)), np.ascontiguousarray(log_mel.transpose(0, 2, 1)))


def reference_keras_data() -> dict[str, tuple[tuple[np.ndarray, np.ndarray], np.ndarray]]:
    """The splits of :func:`mmtutor.reference.reference_datasets` as ``((images, log_mel), labels)`` NumPy
    arrays in Keras layout: 1,280 training, 800 validation and 800 test pairs."""
    from mmtutor.reference import reference_datasets

    out = {}
    for split, dataset in reference_datasets().items():
        images, log_mel, labels = (t.numpy() for t in dataset.tensors)
        out[split] = (keras_layout(images, log_mel), labels.astype(np.int64))
    return out


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------

def fusion_model(dim: int = 256, hidden: int = 256, num_classes: int = 10, seed: int = 0):
    r"""The intermediate-fusion AV-digits classifier as one flat ``tf.keras`` functional model (logits).

    Inputs ``image`` ``(N, 8, 8, 1)`` and ``log_mel`` ``(N, 96, 32)``. Image branch:
    ``Conv2D(16, 3)`` → ``Conv2D(32, 3)`` → ``MaxPooling2D(2)`` → ``Dense(dim)``; audio branch: batch
    normalisation of each mel band → ``Conv2D(64, (5, 1))`` → zero padding 2 + ``Conv2D(64, (5, 1), stride 2)``
    → ``AveragePooling2D((6, 1))`` (48 steps into 8 slots) → ``Dense(dim)``; then
    :math:`y = W_2\,\mathrm{ReLU}(W_1 [\mathrm{ReLU}(P_1 z_1); \mathrm{ReLU}(P_2 z_2)] + b_1) + b_2`.
    With the defaults it has 563,850 trainable weights, as the PyTorch reference model. ``seed`` fixes the
    Glorot-uniform initialisation.
    """
    dim, hidden = _check_int("dim", dim, 1), _check_int("hidden", hidden, 1)
    num_classes, seed = _check_int("num_classes", num_classes, 2), _check_int("seed", seed, 0)
    keras = import_tensorflow().keras
    layers = keras.layers
    counter = iter(range(seed * 1000, seed * 1000 + 1000))

    def init():
        return {"kernel_initializer": keras.initializers.GlorotUniform(seed=next(counter))}

    image = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="image_conv1", **init())(image)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="image_conv2", **init())(x)
    x = layers.MaxPooling2D(2, name="image_pool")(x)
    x = layers.Flatten(name="image_flatten")(x)
    z_image = layers.Dense(dim, activation="relu", name="image_out", **init())(x)

    log_mel = keras.Input((_FRAMES, _MELS), name="log_mel")
    a = layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name="audio_norm")(log_mel)
    a = layers.Reshape((_FRAMES, 1, _MELS), name="audio_as_2d")(a)
    a = layers.Conv2D(64, (5, 1), padding="same", activation="relu", name="audio_conv1", **init())(a)
    a = layers.ZeroPadding2D(((2, 2), (0, 0)), name="audio_pad")(a)
    a = layers.Conv2D(64, (5, 1), strides=(2, 1), activation="relu", name="audio_conv2", **init())(a)
    a = layers.AveragePooling2D((_FRAMES // 2 // _SLOTS, 1), name="audio_pool")(a)
    a = layers.Flatten(name="audio_flatten")(a)
    z_audio = layers.Dense(dim, activation="relu", name="audio_out", **init())(a)

    h_image = layers.Dense(hidden, activation="relu", name="projection_image", **init())(z_image)
    h_audio = layers.Dense(hidden, activation="relu", name="projection_audio", **init())(z_audio)
    joint = layers.Concatenate(name="concatenate")([h_image, h_audio])
    joint = layers.Dense(hidden, activation="relu", name="joint", **init())(joint)
    logits = layers.Dense(num_classes, name="logits", **init())(joint)
    return keras.Model([image, log_mel], logits, name="intermediate_fusion")


def train_fusion_model(model, data: dict, epochs: int = 8, lr: float = 3e-3, weight_decay: float = 1e-2,
                       batch_size: int = 64, seed: int = 0, callbacks: Sequence = ()) -> dict:
    r"""Train (or fine-tune) ``model`` on ``data["train"]`` as the PyTorch reference is trained; return the history.

    AdamW (``lr``, ``weight_decay``), the cross-entropy of logits, mini-batches of ``batch_size`` shuffled by
    ``seed``, and the cosine schedule :math:`\eta_e = \tfrac{\eta}{2}(1 + \cos(\pi e / E))` stepped once per
    epoch; validation accuracy on ``data["val"]`` after each epoch. ``callbacks`` are added to ``model.fit``'s
    (TF-MOT's pruning needs its ``UpdatePruningStep``). ``data`` is :func:`reference_keras_data`'s dict.
    Works with Keras 2 (``tf_keras``) and Keras 3 models alike.
    """
    import math

    tf = import_tensorflow()
    epochs, batch_size = _check_int("epochs", epochs, 1), _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if not isinstance(data, dict) or not {"train", "val"} <= set(data):
        raise TypeError("data must be the dict of reference_keras_data() (with 'train' and 'val'), "
                        f"got {type(data).__name__}")
    tf.keras.utils.set_random_seed(seed)
    model.compile(optimizer=tf.keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay, epsilon=1e-8),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    schedule = tf.keras.callbacks.LearningRateScheduler(lambda e: lr * 0.5 * (1.0 + math.cos(math.pi * e / epochs)))
    (inputs, labels), (val_inputs, val_labels) = data["train"], data["val"]
    history = model.fit(list(inputs), labels, batch_size=batch_size, epochs=epochs, shuffle=True,
                        validation_data=(list(val_inputs), val_labels), callbacks=[schedule, *callbacks], verbose=0)
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def copy_weights_by_name(source, target) -> int:
    """Copy the weights of every layer of ``target`` from the layer of the same name in ``source`` (searched
    through nested models too), reshaping where only the layout differs: a ``Conv1D`` kernel ``(k, in, out)``
    becomes the ``Conv2D`` kernel ``(k, 1, in, out)`` of :func:`fusion_model`. Use it to load the Keras 3 twin
    of :mod:`mmtutor.models.keras` (e.g. holding the PyTorch reference's weights) into :func:`fusion_model`.
    Returns the number of values copied; every source layer with weights must be used.
    """
    def layers(model):
        for layer in model.layers:
            if hasattr(layer, "layers") and layer.weights:
                yield from layers(layer)
            elif layer.weights:
                yield layer

    for name, model in (("source", source), ("target", target)):
        if not hasattr(model, "layers"):
            raise TypeError(f"{name} must be a Keras model, got {type(model).__name__}")
    sources = {layer.name: layer for layer in layers(source)}
    copied, used = 0, set()
    for layer in layers(target):
        if layer.name not in sources:
            raise ValueError(f"source has no layer named {layer.name!r} (it has {sorted(sources)})")
        values = sources[layer.name].get_weights()
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        if len(values) != len(shapes) or any(v.size != int(np.prod(s)) for v, s in zip(values, shapes)):
            raise ValueError(f"layer {layer.name!r}: source weights {[v.shape for v in values]} do not fit "
                             f"target weights {shapes}")
        layer.set_weights([v.reshape(s) for v, s in zip(values, shapes)])
        used.add(layer.name)
        copied += sum(v.size for v in values)
    if set(sources) - used:
        raise ValueError(f"target has no layer for the source layers {sorted(set(sources) - used)}")
    return copied


def keras_accuracy(model, data) -> float:
    """Accuracy of a Keras classifier (logits) on ``((images, log_mel), labels)``."""
    (inputs, labels) = data
    logits = model.predict(list(inputs), batch_size=400, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


# --------------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------------

def representative_dataset(inputs: Sequence[np.ndarray], samples: int = 200,
                           names: Sequence[str] = FUSION_INPUTS) -> Callable:
    """A generator function for ``converter.representative_dataset``: the first ``samples`` examples of
    ``inputs`` (a list of arrays, one per model input), one example at a time (batch of 1), as float32, each
    a dict from input name (``names``, in the order of ``inputs``) to array. Named, because the converter
    may order a multi-input model's inputs differently from Keras."""
    arrays = _check_inputs("inputs", inputs)
    samples = _check_int("samples", samples, 1)
    if samples > len(arrays[0]):
        raise ValueError(f"samples must be <= the {len(arrays[0])} examples given, got {samples}")
    if len(names) != len(arrays):
        raise ValueError(f"names must give one name per input ({len(arrays)}), got {list(names)}")

    def generate():
        for i in range(samples):
            yield {name: a[i:i + 1] for name, a in zip(names, arrays)}
    return generate


def convert_to_tflite(model, mode: str = "float32", representative_inputs: Sequence[np.ndarray] | None = None,
                      samples: int = 200, per_channel: bool = True) -> bytes:
    """Convert a ``tf.keras`` model to a TFLite flat buffer (the bytes of a ``.tflite`` file).

    ``mode`` is one of :data:`MODES`. ``"int8"`` needs ``representative_inputs`` (one array per model input;
    the first ``samples`` examples calibrate the activation ranges) and gives int8 inputs and outputs; the
    other modes keep float32 inputs and outputs. A model of TF-MOT's quantization-aware training already
    carries its ranges: ``"int8"`` then uses them (calibration still sets the input's range).

    ``per_channel=False`` gives every weight tensor one scale instead of one per output channel (TFLite's
    default). Each scale costs 12 bytes in the file (a float32 scale and an int64 zero point, twice: weights and
    int32 biases), which for a small model is a few percent of the int8 file; per-tensor scales cost accuracy
    when channels differ in range. (Set through the converter's private ``_experimental_disable_per_channel``.)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    tf = import_tensorflow()
    if not hasattr(model, "inputs") or not callable(model):
        raise TypeError(f"model must be a Keras model, got {type(model).__name__}")
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be a bool, got {type(per_channel).__name__}: {per_channel!r}")
    if mode == "int8" and representative_inputs is None:
        raise ValueError("representative_inputs must be given for mode='int8' (calibration data), got None")
    names = [x.name.split(":")[0] for x in model.inputs]
    # from_keras_model traces the model into a SavedModel signature with a free batch size; it works for
    # Keras 2 and Keras 3 models (a hand-made concrete function does not freeze Keras 3's variables).
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        converter.representative_dataset = representative_dataset(representative_inputs, samples, names)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if mode != "float32" and not per_channel:
        converter._experimental_disable_per_channel = True
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # "Assets written to /tmp/tmp...": the converter's temporary SavedModel
    with warnings.catch_warnings():
        # calibration runs TensorFlow's own tf.lite.Interpreter, which warns that it is deprecated in favour
        # of ai_edge_litert (the interpreter this module uses)
        warnings.filterwarnings("ignore", message=r"(?s).*tf.lite.Interpreter is deprecated", category=UserWarning)
        # the int8 input's range comes from the representative dataset, not from user-given statistics
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected", category=UserWarning)
        try:
            return _quietly(converter.convert)
        finally:
            logger.setLevel(level)


def _quietly(fn):
    """Run ``fn()`` with file descriptor 2 pointed at /dev/null and Python's stdout captured: the converter's
    MLIR passes print time-stamped notices to descriptor 2 from C++, which no Python setting silences, and
    Keras 3's export prints the traced signature (with memory addresses) to stdout."""
    import contextlib
    import io
    import sys

    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return fn()
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def gzipped_size(data) -> int:
    """Bytes of ``data`` (bytes, or a path to a file) after ``gzip`` at level 9, as the TF-MOT guides measure:
    an unstructured-sparse or clustered model is no smaller as a file, but its zeros and repeated values
    compress. ``mtime=0`` makes the result reproducible."""
    if isinstance(data, (str, os.PathLike)):
        data = Path(data).read_bytes()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes or a path to a file, got {type(data).__name__}")
    return len(gzip.compress(bytes(data), compresslevel=9, mtime=0))


# --------------------------------------------------------------------------------------------------
# running a .tflite model
# --------------------------------------------------------------------------------------------------

def _check_inputs(name: str, inputs) -> list[np.ndarray]:
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TypeError(f"{name} must be a non-empty list of arrays (one per model input), got {type(inputs).__name__}")
    arrays = [np.asarray(a, dtype=np.float32) for a in inputs]
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"{name} must hold the same number of examples per input, got {[len(a) for a in arrays]}")
    return arrays


def _input_name(tensor_name: str) -> str:
    """``serving_default_image:0`` -> ``image``."""
    return re.sub(r"^serving_default_|:\d+$", "", tensor_name)


class LiteRTModel:
    """A ``.tflite`` model in the LiteRT interpreter (``ai_edge_litert``), called like a Keras model on float
    arrays; it quantizes int8 inputs and dequantizes int8 outputs with the scales stored in the file.

    Parameters
    ----------
    model_content : bytes
        The flat buffer, e.g. from :func:`convert_to_tflite`.
    batch_size : int
        The interpreter's input batch: inputs are resized to ``(batch_size, ...)`` once, and
        :meth:`predict` runs a dataset in chunks of that size (the last one padded).
    threads : int
        The interpreter's CPU threads.
    input_names : sequence of str or None
        The order in which calls pass the inputs (Keras input names); ``None``: the interpreter's order.
        The default is the fusion model's.
    """

    def __init__(self, model_content: bytes, batch_size: int = 1, threads: int = 1,
                 input_names: Sequence[str] | None = FUSION_INPUTS):
        from ai_edge_litert.interpreter import Interpreter

        if not isinstance(model_content, (bytes, bytearray)):
            raise TypeError(f"model_content must be the bytes of a .tflite file, got {type(model_content).__name__}")
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.threads = _check_int("threads", threads, 1)
        # XNNPACK, the CPU kernel library, announces itself on stderr from C++
        self.interpreter = _quietly(lambda: Interpreter(model_content=bytes(model_content),
                                                        num_threads=self.threads))
        for detail in self.interpreter.get_input_details():
            self.interpreter.resize_tensor_input(detail["index"], [self.batch_size, *detail["shape"][1:]])
        _quietly(self.interpreter.allocate_tensors)
        # The converter orders the inputs as it likes (here log_mel first); its tensor names keep the Keras
        # input names (``serving_default_image:0``), so the model's order is restored from them.
        details = self.interpreter.get_input_details()
        if input_names is None:
            self.inputs = details
        else:
            by_name = {_input_name(d["name"]): d for d in details}
            if sorted(by_name) != sorted(input_names):
                raise ValueError(f"input_names must name the model's inputs {sorted(by_name)}, got {list(input_names)}")
            self.inputs = [by_name[name] for name in input_names]
        self.output = self.interpreter.get_output_details()[0]

    @staticmethod
    def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
        r""":math:`q = \mathrm{clip}(\mathrm{round}(x / s) + z)` for an integer tensor, ``x`` as is for a float one."""
        if not np.issubdtype(detail["dtype"], np.integer):
            return x.astype(detail["dtype"])
        scale, zero_point = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(detail["dtype"])

    @staticmethod
    def dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
        r""":math:`x = s\,(q - z)` for an integer tensor, ``q`` as float32 for a float one."""
        if not np.issubdtype(detail["dtype"], np.integer):
            return q.astype(np.float32)
        scale, zero_point = detail["quantization"]
        return (scale * (q.astype(np.float32) - zero_point)).astype(np.float32)

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        """Logits for one batch of exactly ``batch_size`` examples (one float array per input)."""
        for detail, x in zip(self.inputs, inputs):
            self.interpreter.set_tensor(detail["index"], self.quantize(x, detail))
        self.interpreter.invoke()
        return self.dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)

    def predict(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Float logits ``(N, classes)`` for a whole dataset (a list of arrays, one per input), batch by batch."""
        arrays = _check_inputs("inputs", inputs)
        if len(arrays) != len(self.inputs):
            raise ValueError(f"inputs must hold {len(self.inputs)} arrays (one per model input), got {len(arrays)}")
        n, b = len(arrays[0]), self.batch_size
        outputs = []
        for start in range(0, n, b):
            chunk = [a[start:start + b] for a in arrays]
            short = b - len(chunk[0])
            if short:
                chunk = [np.concatenate([c, np.zeros((short, *c.shape[1:]), np.float32)]) for c in chunk]
            outputs.append(self(*chunk)[:b - short])
        return np.concatenate(outputs)

    def accuracy(self, inputs: Sequence[np.ndarray], labels) -> float:
        """Fraction of examples whose largest logit is the label."""
        labels = np.asarray(labels)
        return float(np.mean(self.predict(inputs).argmax(axis=1) == labels))
