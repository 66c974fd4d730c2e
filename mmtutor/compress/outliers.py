r"""Activation outliers in transformers, and int8 inference that survives them.

**The problem.** A dynamically quantized linear layer rounds its input :math:`X \in \mathbb{R}^{T \times C}`
(:math:`T` tokens, :math:`C` channels) to 8-bit codes with *one* scale for the whole tensor,
:math:`s_X = \max_{t,j} |X_{tj}| / 127.5` (:func:`mmtutor.compress.quantize.choose_qparams`). Trained
transformers have a few hidden channels :math:`j` whose values are tens of times larger than the rest, in
every token (Kovaleva et al., 2021; Bondarenko et al., 2021; Dettmers et al., 2022). Those channels set
:math:`s_X`, so every ordinary channel is rounded with a step far coarser than its own values need:
the rounding error :math:`s_X/2` is a large fraction of them. :func:`record_input_absmax` measures the
per-channel maxima :math:`\max_t |X_{tj}|` that show it, and :func:`outlier_channels` names the culprits.

**Per-channel weights.** Weights have no such outliers, but one scale per matrix still wastes precision
on rows with small values; one scale per output row (:math:`s_{W,i} = \max_j |W_{ij}| / 127.5`) costs
one float per row and is what :class:`Int8DynamicLinear` uses. Activation scales cannot be per input
channel: :math:`\sum_j X_{tj} W_{ij}` must be computed on codes that share one scale along :math:`j`.

**SmoothQuant** (Xiao et al., 2023) moves the difficulty from the activations to the weights with an
exact identity: for any positive :math:`s \in \mathbb{R}^C`,

.. math::

    Y = X W^\top = \big(X \operatorname{diag}(s)^{-1}\big)\,\big(W \operatorname{diag}(s)\big)^\top,
    \qquad s_j = \frac{\max_t |X_{tj}|^{\alpha}}{\max_i |W_{ij}|^{1-\alpha}},

(:func:`smoothing_factors`): dividing channel :math:`j` of the input by :math:`s_j` shrinks the outliers,
multiplying column :math:`j` of the weight by :math:`s_j` undoes it, and :math:`\alpha \in [0, 1]`
(0.5 by default) splits the range between the two; after smoothing, channel :math:`j` has maximum
:math:`\max|X_j|^{1-\alpha}\max|W_j|^{\alpha}` in both. In a pre-LayerNorm transformer (GPT, LLaMA) the
division is folded into the LayerNorm's :math:`\gamma, \beta`; in BERT, whose LayerNorm output is also
the residual stream, it would change the residual, so :class:`Int8DynamicLinear` applies
:math:`1/s` as one element-wise multiply on its own input.

**Embeddings.** An embedding table is a lookup, not a product, so each row can have its own scale:
:class:`QuantizedEmbedding` stores int8 codes and one float per row.

:func:`quantize_int8_dynamic` builds the whole int8 model; :func:`save_int8` and :func:`load_int8` write it
to one safetensors file and read it back into the float architecture.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from mmtutor.compress.quantize import _check_bool, _check_module_names, _replace, quantize_tensor
from mmtutor.runtime import _describe

__all__ = ["has_vnni", "record_input_absmax", "outlier_channels", "layer_output_errors", "smoothing_factors",
           "Int8DynamicLinear",
           "QuantizedEmbedding", "quantize_int8_dynamic", "save_int8", "load_int8"]


def _check_module(name: str, value, kind=nn.Module):
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__module__}.{kind.__name__}, got {_describe(value)}")
    return value


def _check_positive_ints(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {_describe(value)}")


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if type(module) is nn.Linear]


def has_vnni() -> bool:
    """Whether this CPU has VNNI (AVX-512 VNNI or AVX-VNNI): int8 products summed in int32 without saturation.

    Reads the flags of ``/proc/cpuinfo`` (Linux); elsewhere returns ``False``, the safe answer: without VNNI
    use ``reduce_range=True`` (7-bit activations) with :class:`Int8DynamicLinear`.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_vnni", "avx_vnni"})
    return False


# --------------------------------------------------------------------------------------------------
# measuring the outliers
# --------------------------------------------------------------------------------------------------

def _run_hooked(model: nn.Module, hooks: dict, run: Callable[[], object], pre: bool) -> None:
    """Call ``run()`` with ``hooks`` (module name -> hook) registered as forward (pre-)hooks; remove them after."""
    handles = [model.get_submodule(name).register_forward_pre_hook(hook) if pre
               else model.get_submodule(name).register_forward_hook(hook) for name, hook in hooks.items()]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def record_input_absmax(model: nn.Module, run: Callable[[], object], names=None) -> dict[str, torch.Tensor]:
    """Per-channel maximum :math:`\\max_t |X_{tj}|` of the input of each ``nn.Linear`` while ``run()`` executes.

    Parameters
    ----------
    model : nn.Module
        The model whose layers are observed (forward pre-hooks, removed afterwards).
    run : callable
        Called once with no arguments; it should push calibration data through ``model``.
    names : collection of str, optional
        Module names (as in ``model.named_modules()``) of the ``nn.Linear`` layers to observe; all by default.

    Returns
    -------
    dict
        ``{name: tensor of shape (in_features,)}``, float32, the maximum over every token of every call.
    """
    _check_module("model", model)
    if not callable(run):
        raise TypeError(f"run must be callable, got {_describe(run)}")
    names = _linear_names(model) if names is None else sorted(_check_module_names("names", names, model))
    for name in names:
        if not isinstance(model.get_submodule(name), nn.Linear):
            raise ValueError(f"names must name nn.Linear layers, got {name!r}: "
                             f"{type(model.get_submodule(name)).__name__}")
    if not names:
        raise ValueError("model must contain at least one nn.Linear layer to observe, found none")
    absmax: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(module, inputs):
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(dim=0).float()
            absmax[name] = x if name not in absmax else torch.maximum(absmax[name], x)
        return hook

    _run_hooked(model, {name: hook_for(name) for name in names}, run, pre=True)
    missing = [name for name in names if name not in absmax]
    if missing:
        raise ValueError(f"run must call the observed layers, but these saw no input: {missing}")
    return absmax


def outlier_channels(absmax: torch.Tensor, factor: float = 6.0) -> torch.Tensor:
    """Indices of the channels whose maximum exceeds ``factor`` times the median channel's maximum.

    ``absmax`` is a 1-D tensor such as one value of :func:`record_input_absmax`. Dettmers et al. (2022) call a
    feature an outlier when its magnitude reaches 6 while ordinary values stay near 1; dividing by the
    median makes the same test independent of the layer's overall scale.
    """
    if not isinstance(absmax, torch.Tensor) or absmax.ndim != 1 or absmax.numel() == 0:
        raise ValueError(f"absmax must be a non-empty 1-D tensor, got {_describe(absmax)}")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
        raise ValueError(f"factor must be a number > 1, got {_describe(factor)}")
    median = absmax.float().median()
    return torch.nonzero(absmax.float() > factor * median).flatten()


@torch.no_grad()
def layer_output_errors(model: nn.Module, quantized: nn.Module, run: Callable[[], object]) -> dict[str, float]:
    r"""Relative error :math:`\lVert \hat f(x) - f(x) \rVert / \lVert f(x) \rVert` of each quantized layer.

    While ``run()`` pushes data through the float ``model``, every ``nn.Linear`` of ``model`` whose name
    also names a module of ``quantized`` (a quantized copy, e.g. from :func:`quantize_int8_dynamic` or
    ``torch.ao.quantization.quantize_dynamic``) is given the same input :math:`x` in both; errors are summed
    over all calls. Each layer sees exact float inputs, so the numbers locate where quantization hurts,
    without the errors of earlier layers mixed in.
    """
    _check_module("model", model)
    _check_module("quantized", quantized)
    if not callable(run):
        raise TypeError(f"run must be callable, got {_describe(run)}")
    twins = dict(quantized.named_modules())
    names = [name for name in _linear_names(model) if name in twins and type(twins[name]) is not nn.Linear]
    if not names:
        raise ValueError("quantized must hold quantized versions of nn.Linear layers of model, found none")
    sums = {name: [0.0, 0.0] for name in names}

    def hook_for(name):
        def hook(module, inputs, output):
            difference = twins[name](inputs[0]) - output
            sums[name][0] += float(difference.pow(2).sum())
            sums[name][1] += float(output.pow(2).sum())
        return hook

    _run_hooked(model, {name: hook_for(name) for name in names}, run, pre=False)
    return {name: (error / total) ** 0.5 if total > 0 else 0.0 for name, (error, total) in sums.items()}


def smoothing_factors(act_absmax: torch.Tensor, weight: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """SmoothQuant's :math:`s_j = \\max_t|X_{tj}|^{\\alpha} / \\max_i|W_{ij}|^{1-\\alpha}` per input channel.

    Parameters
    ----------
    act_absmax : torch.Tensor
        :math:`\\max_t |X_{tj}|`, shape ``(C,)`` (from :func:`record_input_absmax`).
    weight : torch.Tensor
        The ``(out_features, C)`` weight of the layer that reads :math:`X`.
    alpha : float
        Migration strength in [0, 1]: 0 leaves the activations alone (:math:`s_j = 1/\\max|W_j|` only
        rescales the weights), 1 moves all of their range into the weights.

    Returns
    -------
    torch.Tensor
        :math:`s`, float32, shape ``(C,)``, positive; channels that never fire (max 0) get :math:`s_j = 1`.
    """
    if not isinstance(act_absmax, torch.Tensor) or act_absmax.ndim != 1:
        raise ValueError(f"act_absmax must be a 1-D tensor, got {_describe(act_absmax)}")
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or weight.shape[1] != act_absmax.shape[0]:
        raise ValueError(f"weight must be a 2-D tensor with {act_absmax.shape[0]} columns (one per channel of "
                         f"act_absmax), got {_describe(weight)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {_describe(alpha)}")
    act = act_absmax.detach().float()
    w = weight.detach().float().abs().amax(dim=0)
    live = (act > 0) & (w > 0)
    s = torch.ones_like(act)
    s[live] = act[live] ** alpha / w[live] ** (1 - alpha)
    return s.clamp(min=1e-5)


# --------------------------------------------------------------------------------------------------
# int8 layers
# --------------------------------------------------------------------------------------------------

class Int8DynamicLinear(nn.Module):
    """A linear layer with int8 weights (one scale per output row) and int8 activations quantized on the fly.

    .. math:: y = \\mathrm{dq}\\Big(Q_{u8}\\big(x \\oslash s\\big)\\;
              Q_{i8}\\big(W \\operatorname{diag}(s)\\big)^\\top\\Big) + b,

    where :math:`Q_{u8}` quantizes the (smoothed) input with one affine scale per call (the min and max of
    the batch, 256 levels, or 128 with ``reduce_range``), :math:`Q_{i8}` is the stored per-row symmetric
    int8 weight, the product is accumulated in int32 by PyTorch's ``quantized::linear_dynamic`` kernel
    (fbgemm on x86, QNNPACK on ARM), and :math:`s` is the optional SmoothQuant factor
    (:func:`smoothing_factors`; all ones without smoothing, and then not stored).

    ``reduce_range=True`` uses 7-bit activations: on x86 CPUs without the AVX-512 VNNI instructions fbgemm
    multiplies pairs of 8-bit numbers into 16-bit sums that saturate beyond 32,767, and
    :math:`2 \\cdot 255 \\cdot 128` would overflow, so PyTorch's ``quantize_dynamic`` always reduces the range.

    The ``state_dict`` holds plain tensors (``weight_codes`` int8, ``weight_scale``, ``bias`` and, when
    smoothed, ``input_scale``), so a safetensors file of it is the honest size; the kernel's packed
    weights are rebuilt from them on the first call. Build one with :meth:`from_linear`.
    """

    def __init__(self, in_features: int, out_features: int, *, smooth: bool = False, reduce_range: bool = True):
        super().__init__()
        _check_positive_ints(in_features=in_features, out_features=out_features)
        _check_bool("smooth", smooth), _check_bool("reduce_range", reduce_range)
        self.in_features, self.out_features = in_features, out_features
        self.smooth, self.reduce_range = smooth, reduce_range
        self.register_buffer("weight_codes", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features))
        if smooth:
            self.register_buffer("input_scale", torch.ones(in_features))
        self._packed = None

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, input_scale: torch.Tensor | None = None,
                    reduce_range: bool = True) -> "Int8DynamicLinear":
        """Quantize ``linear`` (an ``nn.Linear``), smoothing its input by ``input_scale`` :math:`s` if given."""
        _check_module("linear", linear, nn.Linear)
        layer = cls(linear.in_features, linear.out_features, smooth=input_scale is not None,
                    reduce_range=reduce_range)
        weight = linear.weight.detach().float()
        if input_scale is not None:
            if (not isinstance(input_scale, torch.Tensor) or input_scale.shape != (linear.in_features,)
                    or not bool((input_scale > 0).all())):
                raise ValueError(f"input_scale must be a positive tensor of shape ({linear.in_features},), "
                                 f"got {_describe(input_scale)}")
            layer.input_scale.copy_(input_scale)
            weight = weight * input_scale.float()
        q = quantize_tensor(weight, num_bits=8, symmetric=True, axis=0)
        layer.weight_codes.copy_(q.codes)
        layer.weight_scale.copy_(q.scale)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def dequantized_weight(self) -> torch.Tensor:
        """The float weight :math:`\\hat W` the layer multiplies by, the smoothing undone (``(out, in)``)."""
        weight = self.weight_codes.float() * self.weight_scale[:, None]
        return weight / self.input_scale if self.smooth else weight

    def _packed_params(self):
        if self._packed is None:
            with warnings.catch_warnings():
                # PyTorch 2.13 announces the end of its quantized tensor type (the kernels move to torchao);
                # the packed weights are an implementation detail here, the file holds plain tensors.
                warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
                                        category=UserWarning)
                qweight = torch._make_per_channel_quantized_tensor(
                    self.weight_codes, self.weight_scale.double(),
                    torch.zeros(self.out_features, dtype=torch.int64), 0)
                self._packed = torch.ops.quantized.linear_prepack(qweight, self.bias.float())
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.smooth:
            x = x / self.input_scale
        return torch.ops.quantized.linear_dynamic(x.float().contiguous(), self._packed_params(), self.reduce_range)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._packed = None                                 # new weights: pack again on the next call

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_packed"] = None                             # the packed kernel weights are a cache
        return state

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, smooth={self.smooth}, "
                f"reduce_range={self.reduce_range}")


class QuantizedEmbedding(nn.Module):
    """An embedding table stored as int8 codes with one scale per row: :math:`\\hat E_{v} = s_v\\, Q_{v}`.

    A lookup only reads the rows it needs, so row :math:`v` can have its own
    :math:`s_v = \\max_j |E_{vj}| / 127.5` and the error of every entry is at most :math:`s_v / 2`. The
    forward pass gathers the int8 rows and multiplies them by their scales; the result equals
    ``nn.Embedding`` on the dequantized table.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        _check_positive_ints(num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.register_buffer("codes", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(num_embeddings))

    @classmethod
    @torch.no_grad()
    def from_embedding(cls, embedding: nn.Embedding) -> "QuantizedEmbedding":
        """Quantize the table of ``embedding`` (an ``nn.Embedding``) row by row."""
        _check_module("embedding", embedding, nn.Embedding)
        layer = cls(embedding.num_embeddings, embedding.embedding_dim)
        q = quantize_tensor(embedding.weight.detach().float(), num_bits=8, symmetric=True, axis=0)
        layer.codes.copy_(q.codes)
        layer.scale.copy_(q.scale)
        return layer

    def dequantized_weight(self) -> torch.Tensor:
        """The float table :math:`\\hat E` that the codes stand for."""
        return self.codes.float() * self.scale[:, None]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.codes).float() * self.scale[ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


# --------------------------------------------------------------------------------------------------
# the whole model
# --------------------------------------------------------------------------------------------------

def quantize_int8_dynamic(model: nn.Module, input_absmax: Mapping[str, torch.Tensor] | None = None,
                          alpha: float = 0.5, reduce_range: bool = True, embeddings: bool = True,
                          skip=()) -> nn.Module:
    """A copy of ``model`` with int8 linear layers (dynamic activations) and, optionally, int8 embeddings.

    Parameters
    ----------
    model : nn.Module
        The float model (not modified).
    input_absmax : mapping, optional
        Per-channel input maxima from :func:`record_input_absmax`. The layers named in it are smoothed
        (SmoothQuant, :func:`smoothing_factors` with ``alpha``); without it, no layer is.
    alpha : float
        SmoothQuant's migration strength.
    reduce_range : bool
        7-bit activation codes (safe on every x86 CPU) or 8-bit (needs AVX-512 VNNI; see
        :class:`Int8DynamicLinear`).
    embeddings : bool
        Also replace every ``nn.Embedding`` by a :class:`QuantizedEmbedding` (int8, one scale per row).
    skip : collection of str
        Names of modules kept in float (mixed precision).

    Returns
    -------
    nn.Module
        The quantized copy, in eval mode. Every ``nn.Linear`` (exactly that type) outside ``skip`` becomes an
        :class:`Int8DynamicLinear`.
    """
    _check_module("model", model)
    skip = _check_module_names("skip", skip, model)
    _check_bool("reduce_range", reduce_range), _check_bool("embeddings", embeddings)
    if input_absmax is not None and not isinstance(input_absmax, Mapping):
        raise TypeError(f"input_absmax must be a mapping from layer names to tensors, got {_describe(input_absmax)}")
    linears = [name for name in _linear_names(model) if name not in skip]
    if not linears:
        raise ValueError("model must contain at least one nn.Linear layer to quantize (outside skip), found none")
    if input_absmax is not None:
        unknown = sorted(set(input_absmax) - set(_linear_names(model)))
        if unknown:
            raise ValueError(f"input_absmax must be keyed by nn.Linear names of model, got unknown names {unknown}")
    quantized = copy.deepcopy(model).eval()
    for name in linears:
        linear = quantized.get_submodule(name)
        scale = None
        if input_absmax is not None and name in input_absmax:
            scale = smoothing_factors(input_absmax[name], linear.weight, alpha)
        _replace(quantized, name, Int8DynamicLinear.from_linear(linear, scale, reduce_range=reduce_range))
    if embeddings:
        for name, module in list(quantized.named_modules()):
            if type(module) is nn.Embedding and name not in skip:
                _replace(quantized, name, QuantizedEmbedding.from_embedding(module))
    return quantized


def _layout(model: nn.Module) -> dict:
    """Which modules of ``model`` are int8, and how: enough to rebuild them from the float architecture."""
    linears = {name: {"smooth": m.smooth, "reduce_range": m.reduce_range}
               for name, m in model.named_modules() if isinstance(m, Int8DynamicLinear)}
    embeddings = [name for name, m in model.named_modules() if isinstance(m, QuantizedEmbedding)]
    return {"int8_linears": linears, "int8_embeddings": embeddings}


def save_int8(model: nn.Module, path) -> Path:
    """Write ``model`` (from :func:`quantize_int8_dynamic`) to one safetensors file; return its path.

    The file holds the ``state_dict`` (int8 codes, float scales, the float layers) and, in its metadata,
    which modules are int8, so that :func:`load_int8` can rebuild the model from the float architecture.
    """
    from safetensors.torch import save_file

    from mmtutor.evaluate import shippable_tensors

    _check_module("model", model)
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or a Path, got {_describe(path)}")
    path = Path(path)
    save_file(shippable_tensors(model), str(path), metadata={"mmtutor_int8": json.dumps(_layout(model))})
    return path


def load_int8(path, skeleton: nn.Module) -> nn.Module:
    """Read a file of :func:`save_int8` into ``skeleton``, a float model of the same architecture.

    ``skeleton`` (for example ``transformers.AutoModel.from_config(config)``; its weights do not matter) is
    modified in place: the modules listed in the file's metadata are replaced by empty int8 modules, then
    every tensor is loaded (strictly: a missing or unexpected name is an error). Returns it in eval mode.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    _check_module("skeleton", skeleton)
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or a Path, got {_describe(path)}")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "mmtutor_int8" not in metadata:
        raise ValueError(f"path must be a file written by save_int8 (metadata 'mmtutor_int8'), got {str(path)!r}")
    layout = json.loads(metadata["mmtutor_int8"])
    for name, settings in layout["int8_linears"].items():
        linear = _check_module(f"skeleton.{name}", skeleton.get_submodule(name), nn.Linear)
        _replace(skeleton, name, Int8DynamicLinear(linear.in_features, linear.out_features, **settings))
    for name in layout["int8_embeddings"]:
        table = _check_module(f"skeleton.{name}", skeleton.get_submodule(name), nn.Embedding)
        _replace(skeleton, name, QuantizedEmbedding(table.num_embeddings, table.embedding_dim))
    state = load_file(str(path))
    expected = {k: v for k, v in skeleton.state_dict().items()}
    # tensors tied to another are stored once (shippable_tensors); restore them from their twin
    missing = set(expected) - set(state)
    for name in sorted(missing):
        twins = [k for k, v in expected.items() if k in state and v.data_ptr() == expected[name].data_ptr()]
        if twins:
            state[name] = state[twins[0]]
    skeleton.load_state_dict(state, strict=True)
    return skeleton.eval()
