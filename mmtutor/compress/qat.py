r"""Quantization-aware training (QAT): train through the rounding, so the weights learn to live on the grid.

Post-training quantization rounds a trained model's weights and inputs and hopes the loss barely moves. At
8 bits it usually does; at 4 bits, or with one coarse scale per activation tensor, it may not. QAT fine-tunes
the model with the quantization *simulated* in the forward pass (:func:`mmtutor.compress.quantize.fake_quantize`):

.. math:: y = \mathrm{op}(\hat x, \hat W) + b, \qquad \hat W = s\,\mathrm{clip}(\mathrm{round}(W/s)), \qquad
          \hat x = s_x\big(\mathrm{clip}(\mathrm{round}(x/s_x) + z_x) - z_x\big),

so the loss is the loss of the model that will be deployed. Rounding has zero derivative almost everywhere;
the **straight-through estimator** (Bengio et al., 2013) treats it as the identity in the backward pass,
:math:`\partial \hat W/\partial W = 1` (0 where the value was clipped), so the float "shadow" weights :math:`W`
receive the gradient and drift until their rounded images :math:`\hat W` fit the task. The weight scales
follow the current weights (:func:`~mmtutor.compress.quantize.choose_qparams`, one per output channel); each
input range is an exponential moving average of the batches' minima and maxima during training,

.. math:: m_\pm \leftarrow (1 - \beta)\, m_\pm + \beta\, \min/\max(x), \qquad \beta = 0.01,

as PyTorch's ``MovingAverageMinMaxObserver`` does, and is frozen in eval mode. After training,
:func:`convert_qat` stores the rounded weights and the learned ranges as a
:class:`~mmtutor.compress.quantize.QuantizedLayer` model, which computes exactly what the QAT model computes
in eval mode.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from mmtutor.compress.quantize import (QuantizedLayer, _check_activations, _check_model, _check_num_bits,
                                       _check_weight_axis, _describe, _replace, _targets, fake_quantize,
                                       input_ranges, quantize_activation)

__all__ = ["FakeQuantLayer", "prepare_qat", "convert_qat"]


class FakeQuantLayer(nn.Module):
    """A float ``nn.Linear``/``nn.Conv1d``/``nn.Conv2d`` whose weights and inputs are fake-quantized in the forward pass.

    ``layer`` keeps the trainable float weights; ``input_range`` (a buffer ``[m_-, m_+]``) follows the inputs by
    an exponential moving average with coefficient ``momentum`` while training (the first batch sets it) and
    is fixed in eval mode. ``activations=None`` quantizes the weights only.
    """

    def __init__(self, layer: nn.Module, num_bits: int = 8, axis: int | None = 0, activations: str | None = "static",
                 activation_bits: int = 8, momentum: float = 0.01, input_range: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            raise TypeError(f"layer must be an nn.Linear, nn.Conv1d or nn.Conv2d, got {_describe(layer)}")
        if activations not in (None, "static"):
            raise ValueError(f"activations must be None or 'static' (ranges learned in training), got {activations!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 < momentum <= 1:
            raise ValueError(f"momentum must be a number in (0, 1], got {momentum!r}")
        self.layer = layer
        self.num_bits = _check_num_bits(num_bits)
        self.axis = _check_weight_axis(axis)
        self.activations = _check_activations(activations)
        self.activation_bits = _check_num_bits(activation_bits)
        self.momentum = float(momentum)
        if activations == "static":
            self.register_buffer("input_range", torch.zeros(2) if input_range is None
                                 else torch.as_tensor(input_range, dtype=torch.float32).clone())
            self.register_buffer("observed", torch.tensor(input_range is not None))

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        low, high = torch.aminmax(x.detach().float())
        batch = torch.stack([low, high])
        if bool(self.observed):
            self.input_range.lerp_(batch, self.momentum)
        else:
            self.input_range.copy_(batch)
            self.observed.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activations == "static":
            if self.training:
                self._observe(x)
            elif not bool(self.observed):
                raise RuntimeError("input_range has not been observed: train the model, or pass calibration "
                                   "batches to prepare_qat, before evaluating it")
            x = quantize_activation(x, self.activation_bits, self.input_range)
        weight = fake_quantize(self.layer.weight, self.num_bits, symmetric=True, axis=self.axis)
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, weight, self.layer.bias)
        return self.layer._conv_forward(x, weight, self.layer.bias)

    def extra_repr(self) -> str:
        return (f"num_bits={self.num_bits}, axis={self.axis}, activations={self.activations!r}, "
                f"activation_bits={self.activation_bits}")


def prepare_qat(model: nn.Module, num_bits: int = 8, axis: int | None = 0, activations: str | None = "static",
                activation_bits: int = 8, calibration=None, momentum: float = 0.01, skip=()) -> nn.Module:
    """A copy of ``model`` ready for quantization-aware training: every layer a :class:`FakeQuantLayer`.

    Settings as in :func:`mmtutor.compress.quantize.quantize_model` (``activations`` is ``"static"`` or
    ``None``). ``calibration`` batches (``(*inputs, target)``), if given, set the initial input ranges by
    min-max (:func:`~mmtutor.compress.quantize.input_ranges`), so that the model is the static PTQ model before
    its first training step; otherwise the first training batch sets them. Train it with any loop (e.g.
    :func:`mmtutor.train.fit`), then :func:`convert_qat`.
    """
    model = _check_model(model)
    _check_num_bits(num_bits), _check_num_bits(activation_bits), _check_weight_axis(axis)
    targets = _targets(model, skip)
    ranges = input_ranges(model, calibration, targets) if calibration is not None else {}
    prepared = copy.deepcopy(model)
    for name in targets:
        _replace(prepared, name, FakeQuantLayer(prepared.get_submodule(name), num_bits, axis, activations,
                                                activation_bits, momentum, ranges.get(name)))
    return prepared


def convert_qat(model: nn.Module) -> nn.Module:
    """The deployable model of a QAT model: each :class:`FakeQuantLayer` becomes a
    :class:`~mmtutor.compress.quantize.QuantizedLayer` with the rounded weights and the learned input range.

    In eval mode the result computes exactly what ``model`` computes (the same rounding, done once).
    ``model`` is not modified.
    """
    model = _check_model(model)
    names = [name for name, module in model.named_modules() if isinstance(module, FakeQuantLayer)]
    if not names:
        raise ValueError("model must contain FakeQuantLayer modules (made by prepare_qat), found none")
    converted = copy.deepcopy(model)
    for name in names:
        fq = converted.get_submodule(name)
        if fq.activations == "static" and not bool(fq.observed):
            raise ValueError(f"model must be trained or calibrated before conversion: layer {name!r} has not "
                             "observed its input range")
        _replace(converted, name, QuantizedLayer.from_float(
            fq.layer, fq.num_bits, fq.axis, fq.activations, fq.activation_bits,
            fq.input_range if fq.activations == "static" else None))
    return converted.eval()
