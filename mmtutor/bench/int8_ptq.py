"""Row "int8 post-training (fusion model)": static int8 of every layer of the reference model (Chapter 7.2).

Every convolution and linear layer gets int8 weights (one float32 scale per output channel) and a calibrated
int8 input range (4 training batches of 64); biases and the audio encoder's batch normalisation stay float32
and are counted. The artefact goes through a safetensors file and is re-loaded before it is measured. Latency:
batch of 64 test pairs, 1 thread; the layers dequantize their weights on every call (a simulation in float,
no integer kernels), so they are slower than float32, and the row says so.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mmtutor.bench import Row
from mmtutor.compress.quantize import load_quantized_model, quantize_model
from mmtutor.evaluate import compare_latency, model_size_bytes
from mmtutor.reference import accuracy, reference_architecture, reference_datasets, train_loader, train_reference

SETTINGS = {"num_bits": 8, "axis": 0, "activations": "static", "activation_bits": 8}
CALIBRATION_BATCHES = 4


def calibration_batches(count: int = CALIBRATION_BATCHES) -> list:
    """The first ``count`` shuffled training batches (seed 0): the calibration set of static quantization."""
    loader = train_loader(reference_datasets()["train"], seed=0)
    return [batch for _, batch in zip(range(count), loader)]


def run() -> list[Row]:
    model, _ = train_reference()
    quantized = quantize_model(model, calibration=calibration_batches(), **SETTINGS)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "int8.safetensors"
        save_file(quantized.state_dict(), path)
        shipped = load_quantized_model(reference_architecture(), load_file(path), **SETTINGS)
        size = model_size_bytes(path)
    images, log_mel, _ = reference_datasets()["test"].tensors
    batch = (images[:64], log_mel[:64])
    with torch.no_grad():
        comparison = compare_latency(model, shipped, *batch, repeats=30, threads=1)
    return [Row(name="int8 post-training (fusion model)", model="AV-digits intermediate fusion (reference)",
                baseline_bytes=model_size_bytes(model), bytes=size, metric="test accuracy",
                baseline_metric_value=accuracy(model), metric_value=accuracy(shipped),
                latency_ratio=comparison.ratio, threads=1, batch_size=64,
                extra={"method": "static int8, per-channel weights, calibrated per-tensor inputs, all conv and "
                                 "linear layers; simulated in float (no integer kernels)"})]
