"""Weight-only quantization of the chapter 13 prefix captioner (:class:`mmtutor.models.captioner.PrefixCaptioner`).

The captioner has three parts, and each is quantized with the toolkit's scheme for its kind of layer:
the GPT-2 decoder with :func:`mmtutor.compress.gpt2.quantize_gpt2` (``Conv1D`` projections and the tied
embedding/head), the projector MLPs with :func:`mmtutor.compress.quantize.quantize_linear_weights`, and the
image encoder's convolutions and linear head with :func:`mmtutor.compress.quantize.quantize_model`. Every
weight matrix :math:`W` is stored as ``num_bits``-bit codes :math:`q` with one scale per output row (or per
``group_size`` inputs), :math:`\\hat W = s\\,q`; position embeddings, layer and batch norms and biases stay
float32.
"""

from __future__ import annotations

import copy

from mmtutor.compress.gpt2 import quantize_gpt2
from mmtutor.compress.quantize import quantize_linear_weights, quantize_model
from mmtutor.models.captioner import PrefixCaptioner
from mmtutor.runtime import _describe

__all__ = ["quantize_captioner"]


def quantize_captioner(model: PrefixCaptioner, num_bits: int = 8, group_size: int | None = None) -> PrefixCaptioner:
    """A weight-only quantized copy of ``model``, in eval mode: decoder, projectors and image encoder.

    ``num_bits`` (2-8) and ``group_size`` (inputs per scale, ``None`` for one scale per row) apply to the
    decoder and the projectors; the encoder's layers get one scale per output channel. ``model`` itself is
    not modified.
    """
    if not isinstance(model, PrefixCaptioner):
        raise TypeError(f"model must be a PrefixCaptioner, got {_describe(model)}")
    quantized = copy.deepcopy(model)
    quantized.decoder = quantize_gpt2(model.decoder, num_bits=num_bits, group_size=group_size)
    quantized.projector = quantize_linear_weights(model.projector, num_bits=num_bits, group_size=group_size)
    if model.patch_tokens:
        quantized.patch_projector = quantize_linear_weights(model.patch_projector, num_bits=num_bits,
                                                            group_size=group_size)
    quantized.image_encoder = quantize_model(model.image_encoder, num_bits=num_bits)
    return quantized.eval()
