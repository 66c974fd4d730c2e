"""Row "TFLite full-integer (fusion model, Keras)": the reference model in TFLite, float32 vs full int8.

The PyTorch reference (:func:`mmtutor.reference.train_reference`) is copied into its Keras 3 twin
(:func:`mmtutor.models.keras.intermediate_fusion_model`) and from there into the TF-MOT-ready layout of
:func:`mmtutor.compress.tflite.fusion_model`; both ``.tflite`` files come from
:func:`mmtutor.compress.tflite.convert_to_tflite` (int8: 200 calibration pairs, int8 input and output,
per-tensor weight scales), and both run in the LiteRT interpreter over the 800 test pairs. Latency: one pair
per call, one interpreter thread, the two models interleaved. Plain Keras 3: no ``TF_USE_LEGACY_KERAS``.
"""

from __future__ import annotations

from mmtutor.bench import Row
from mmtutor.compress.tflite import (LiteRTModel, convert_to_tflite, copy_weights_by_name, fusion_model,
                                     reference_keras_data)
from mmtutor.evaluate import compare_latency
from mmtutor.models.keras import copy_torch_weights_to_keras, intermediate_fusion_model
from mmtutor.reference import REFERENCE_ARCHITECTURE, train_reference

NAME = "TFLite full-integer (fusion model, Keras)"
THREADS, BATCH_SIZE = 1, 1


def run() -> list[Row]:
    reference, _ = train_reference()
    dim, hidden = REFERENCE_ARCHITECTURE["dim"], REFERENCE_ARCHITECTURE["hidden"]
    twin = intermediate_fusion_model(dim, hidden)
    copy_torch_weights_to_keras(reference, twin)
    model = fusion_model(dim, hidden)
    copy_weights_by_name(twin, model)
    data = reference_keras_data()
    (train_inputs, _), (test_inputs, test_labels) = data["train"], data["test"]
    float_bytes = convert_to_tflite(model, "float32")
    int8_bytes = convert_to_tflite(model, "int8", list(train_inputs), samples=200, per_channel=False)
    float_model = LiteRTModel(float_bytes, batch_size=BATCH_SIZE, threads=THREADS)
    int8_model = LiteRTModel(int8_bytes, batch_size=BATCH_SIZE, threads=THREADS)
    one_pair = [x[:BATCH_SIZE] for x in test_inputs]
    timing = compare_latency(float_model, int8_model, *one_pair, repeats=300, warmup=20)
    return [Row(name=NAME, model="AV-digits intermediate fusion (Keras, LiteRT interpreter)",
                baseline_bytes=len(float_bytes), bytes=len(int8_bytes), metric="test accuracy",
                baseline_metric_value=float_model.accuracy(list(test_inputs), test_labels),
                metric_value=int8_model.accuracy(list(test_inputs), test_labels),
                latency_ratio=timing.ratio, threads=THREADS, batch_size=BATCH_SIZE,
                extra={"calibration_pairs": 200, "weight_scales": "per tensor"})]
