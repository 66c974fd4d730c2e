r"""Weight-only quantization of a Hugging Face GPT-2, which needs two pieces of glue.

1. **``Conv1D`` is not ``nn.Linear``.** transformers' GPT-2 computes its attention and MLP projections
   with ``transformers.pytorch_utils.Conv1D``, :math:`y = xW + b` with ``W`` stored ``(in, out)``, the
   transpose of ``nn.Linear``'s ``(out, in)``. Tools that look for ``nn.Linear`` (PyTorch's
   ``quantize_dynamic``, :func:`mmtutor.compress.quantize.quantize_linear_weights`) pass over every one of
   them and quantize only the output head. :func:`conv1d_to_linear` rewrites them as ``nn.Linear`` with
   :math:`W_\text{linear} = W_\text{Conv1D}^\top`, the same function.
2. **The head is tied to the embedding.** ``lm_head.weight`` *is* ``transformer.wte.weight``: one
   :math:`|V| \times d` matrix, stored once. Quantizing the head alone unties them, and the file then
   holds the float table *and* its integer copy. :func:`quantize_gpt2` quantizes the head and makes the
   embedding read its rows from the same codes (:class:`TiedQuantizedEmbedding`), so the table is stored
   once, in integers.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from mmtutor.compress.quantize import QuantizedLinear, _replace, quantize_linear_weights

__all__ = ["conv1d_to_linear", "TiedQuantizedEmbedding", "quantize_gpt2"]


def _conv1d_class():
    from transformers.pytorch_utils import Conv1D

    return Conv1D


def _check_gpt2(model) -> None:
    if not isinstance(model, nn.Module) or not hasattr(model, "transformer") or not hasattr(model, "lm_head"):
        raise TypeError(f"model must be a transformers GPT2LMHeadModel, got {type(model).__name__}")


def conv1d_to_linear(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``transformers`` ``Conv1D`` replaced by the equivalent ``nn.Linear``
    (weight transposed, bias copied); the outputs are unchanged. ``model`` itself is not modified."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    conv1d = _conv1d_class()
    model = copy.deepcopy(model)
    targets = [name for name, module in model.named_modules() if isinstance(module, conv1d)]
    for name in targets:
        conv = model.get_submodule(name)
        n_in, n_out = conv.weight.shape
        linear = nn.Linear(n_in, n_out, bias=conv.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(conv.weight.detach().T)
            if conv.bias is not None:
                linear.bias.copy_(conv.bias.detach())
        _replace(model, name, linear)
    return model


class TiedQuantizedEmbedding(nn.Module):
    """An embedding whose table is the dequantized weight of a
    :class:`~mmtutor.compress.quantize.QuantizedLinear` output head.

    Row :math:`i` of the head's weight :math:`\\hat W \\in \\mathbb{R}^{|V| \\times d}` is the vector of token
    :math:`i`, as in the tied float model. The head is referenced, not registered as a submodule, so its
    codes appear once in the ``state_dict`` (under ``lm_head``).
    """

    def __init__(self, head: QuantizedLinear):
        super().__init__()
        if not isinstance(head, QuantizedLinear):
            raise TypeError(f"head must be a QuantizedLinear, got {type(head).__name__}")
        self._head = [head]                 # a list hides it from nn.Module's registration
        self.num_embeddings, self.embedding_dim = head.out_features, head.in_features

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float table (what ``get_input_embeddings().weight`` returns)."""
        return self._head[0].dequantized_weight()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, tied to lm_head"


def quantize_gpt2(model: nn.Module, num_bits: int = 8, group_size: int | None = None,
                  symmetric: bool = True) -> nn.Module:
    """A weight-only quantized copy of a ``GPT2LMHeadModel``: every projection and the tied embedding/head.

    The ``Conv1D`` projections become ``nn.Linear`` (:func:`conv1d_to_linear`), then every ``nn.Linear``
    a :class:`~mmtutor.compress.quantize.QuantizedLinear` with ``num_bits`` codes and one scale per output
    row (``group_size=None``) or per run of ``group_size`` inputs of a row; the token embedding reads the
    head's codes (:class:`TiedQuantizedEmbedding`). Position embeddings, layer norms and biases stay float32.
    """
    _check_gpt2(model)
    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
        raise ValueError("model must tie lm_head.weight to transformer.wte.weight (GPT-2's default), "
                         "they are separate tensors")
    quantized = quantize_linear_weights(conv1d_to_linear(model), num_bits=num_bits, axis=0,
                                        group_size=group_size, symmetric=symmetric)
    quantized.transformer.wte = TiedQuantizedEmbedding(quantized.lm_head)
    return quantized.eval()
