"""Row "deep compression pipeline (fusion model)": prune 95%, share 4-bit codebooks, Huffman-code (Chapter 10).

The chain of :func:`mmtutor.compress.pipeline.deep_compress` on the reference model; size and accuracy are
measured on the model decoded from the encoded bytes, against the fp32 safetensors of the reference. The
decoded model is dense (zeros and centroids in ordinary float32 tensors), so its latency ratio is about 1.
"""

from __future__ import annotations

import torch

from mmtutor.bench import Row
from mmtutor.compress.pipeline import decode_model, deep_compress
from mmtutor.evaluate import compare_latency, model_size_bytes
from mmtutor.reference import (accuracy, eval_loader, reference_architecture, reference_datasets, train_loader,
                               train_reference)

NAME = "deep compression pipeline (fusion model)"
#: The settings of the chapter's headline run.
SETTINGS = {"amounts": (0.8, 0.9, 0.95), "bits": 4, "prune_epochs": 2, "cluster_epochs": 2, "lr": 1e-3,
            "position_bits": 4}
THREADS, BATCH_SIZE = 1, 64


def run() -> list[Row]:
    reference, _ = train_reference()
    data = reference_datasets()
    torch.manual_seed(0)
    result = deep_compress(train_reference()[0], train_loader(data["train"], seed=0), eval_loader(data["val"]),
                           **SETTINGS)
    encoded = result.encoded["huffman"]
    decoded = decode_model(encoded, reference_architecture())
    images, log_mel, _ = data["test"][:BATCH_SIZE]
    with torch.inference_mode():
        timing = compare_latency(reference, decoded, images, log_mel, threads=THREADS, repeats=50)
    return [Row(name=NAME, model="AV-digits intermediate fusion (reference)",
                baseline_bytes=model_size_bytes(reference), bytes=len(encoded), metric="test accuracy",
                baseline_metric_value=accuracy(reference), metric_value=accuracy(decoded),
                latency_ratio=timing.ratio, threads=THREADS, batch_size=BATCH_SIZE,
                extra={"stage_bytes": {stage: len(b) for stage, b in result.encoded.items()},
                       "sparsity": SETTINGS["amounts"][-1], "bits": SETTINGS["bits"]})]
