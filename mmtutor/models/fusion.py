"""Fusion: how a model combines the embeddings of two or more modalities.

Every class here takes one tensor per modality and returns class logits of shape
``(batch, num_classes)``. They share one constructor convention::

    Fusion(dims, hidden, num_classes, ...)

where ``dims`` lists the feature size of each modality (for example ``(64, 32)`` for an image
embedding of size 64 and an audio embedding of size 32), ``hidden`` is the width of the fused
representation and ``num_classes`` the number of outputs. Modality encoders (a CNN for images,
a log-mel front end for audio, a transformer for text) are *not* part of these modules: apply them
first, or wrap encoders and a fusion module together with :class:`EncodeThenFuse`.

The styles, from the simplest to the most expressive interaction between modalities:

- :class:`EarlyFusion`: concatenate the raw input features, one network for everything;
- :class:`LateFusion`: one classifier per modality, average their logits or probabilities;
- :class:`IntermediateFusion`: modality-specific layers, concatenate the embeddings, shared MLP;
- :class:`TensorFusion`: outer product :math:`[z_a;1]\\otimes[z_b;1]`, then a linear map;
- :class:`LowRankTensorFusion`: the same map with a rank-``r`` weight, never forming the product;
- :class:`CrossAttentionFusion`: the tokens of one modality attend to the tokens of the other.

Count parameters with :func:`mmtutor.sizes.count_parameters`; every docstring gives the closed form.

References: Baltrušaitis et al. (2019) for the early/late/intermediate taxonomy, Zadeh et al.
(2017) for tensor fusion, Liu et al. (2018) for low-rank fusion, Alayrac et al. (2022) for
cross-attention between a language model and visual tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "EarlyFusion",
    "LateFusion",
    "IntermediateFusion",
    "TensorFusion",
    "LowRankTensorFusion",
    "CrossAttentionFusion",
    "EncodeThenFuse",
    "append_one",
]


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------

def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def _check_dims(dims, min_modalities: int = 2, max_modalities: int | None = None) -> tuple[int, ...]:
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence):
        raise TypeError(f"dims must be a sequence of ints (one per modality), "
                        f"got {type(dims).__name__}: {dims!r}")
    dims = tuple(_check_positive_int(f"dims[{m}]", d) for m, d in enumerate(dims))
    if len(dims) < min_modalities or (max_modalities is not None and len(dims) > max_modalities):
        expected = (f"exactly {min_modalities}" if max_modalities == min_modalities
                    else f"at least {min_modalities}")
        raise ValueError(f"dims must list {expected} modalities, got {len(dims)}: {dims}")
    return dims


def _check_inputs(tensors: tuple, dims: tuple[int, ...], name: str,
                  allowed_ndims: tuple[int, ...] = (2,)) -> None:
    """Check one floating tensor per modality, matching feature sizes and batch sizes.

    Raises a ValueError/TypeError naming ``name`` (the forward argument), what was expected and
    what was received: wrong number of modalities, wrong rank, feature size that does not match
    ``dims``, or batch sizes that differ between modalities.
    """
    if len(tensors) != len(dims):
        raise ValueError(f"{name}: expected {len(dims)} tensors (one per modality, dims={dims}), "
                         f"got {len(tensors)}")
    for m, (x, d) in enumerate(zip(tensors, dims)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}[{m}]: expected a torch.Tensor, got {type(x).__name__}")
        if not torch.is_floating_point(x):
            raise TypeError(f"{name}[{m}]: expected a floating-point tensor, got dtype {x.dtype}")
        if x.ndim not in allowed_ndims:
            shapes = " or ".join({2: f"(batch, {d})", 3: f"(batch, tokens, {d})"}[n]
                                 for n in allowed_ndims)
            raise ValueError(f"{name}[{m}]: expected shape {shapes}, got {tuple(x.shape)}")
        if x.shape[-1] != d:
            raise ValueError(f"{name}[{m}]: expected last dimension {d} (dims[{m}]), "
                             f"got {x.shape[-1]} in shape {tuple(x.shape)}")
    batches = tuple(x.shape[0] for x in tensors)
    if len(set(batches)) != 1:
        raise ValueError(f"{name}: every modality must have the same batch size, got {batches}")


def _mlp_head(hidden: int, num_classes: int) -> nn.Sequential:
    """ReLU then a linear map from the fused representation to the logits."""
    return nn.Sequential(nn.ReLU(), nn.Linear(hidden, num_classes))


def append_one(z: torch.Tensor) -> torch.Tensor:
    """Return :math:`[z; 1]`: ``z`` with a constant 1 appended along the last dimension.

    The 1 is what makes the outer product of tensor fusion keep the unimodal terms:
    :math:`[a;1]\\otimes[b;1]` contains :math:`a\\,b^\\top`, :math:`a`, :math:`b` and 1.
    """
    return torch.cat([z, z.new_ones(*z.shape[:-1], 1)], dim=-1)


class _Fusion(nn.Module):
    """Shared constructor checks and the ``dims``/``hidden``/``num_classes`` attributes."""

    input_name = "embeddings"

    def __init__(self, dims, hidden: int, num_classes: int, max_modalities: int | None = None):
        super().__init__()
        self.dims = _check_dims(dims, max_modalities=max_modalities)
        self.hidden = _check_positive_int("hidden", hidden)
        self.num_classes = _check_positive_int("num_classes", num_classes)

    @property
    def num_modalities(self) -> int:
        return len(self.dims)

    def _check(self, tensors: tuple, allowed_ndims: tuple[int, ...] = (2,)) -> None:
        _check_inputs(tensors, self.dims, self.input_name, allowed_ndims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}, hidden={self.hidden}, num_classes={self.num_classes}"


# --------------------------------------------------------------------------------------------
# the fusion styles
# --------------------------------------------------------------------------------------------

class EarlyFusion(_Fusion):
    r"""Early (feature-level) fusion: concatenate the inputs, then one network sees everything.

    .. math::

        x = [x_1; x_2; \dots; x_M] \in \mathbb{R}^{D},\quad D = \textstyle\sum_m d_m, \qquad
        y = W_2\,\mathrm{ReLU}(W_1 x + b_1) + b_2 .

    Parameters: :math:`(D + 1)\,h + (h + 1)\,C`. The network can model any interaction between
    modalities (it is an MLP on the joint input), but it has to learn from raw, unaligned features
    of very different scales, and a missing modality leaves a hole in its input.

    Parameters
    ----------
    dims : sequence of int
        Feature size of each modality's input, at least two.
    hidden : int
        Width of the hidden layer.
    num_classes : int
        Number of logits.
    """

    input_name = "features"

    def __init__(self, dims: Sequence[int], hidden: int, num_classes: int):
        super().__init__(dims, hidden, num_classes)
        self.joint = nn.Linear(sum(self.dims), self.hidden)
        self.head = _mlp_head(self.hidden, self.num_classes)

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        self._check(features)
        return self.head(self.joint(torch.cat(features, dim=-1)))


class LateFusion(_Fusion):
    r"""Late (decision-level) fusion: one classifier per modality, then average their outputs.

    Each modality :math:`m` has its own head :math:`f_m(z) = V_m\,\mathrm{ReLU}(U_m z + c_m) + e_m`.
    With ``combine="logits"`` the output is the weighted mean of the unimodal logits,

    .. math:: y = \sum_m w_m\, f_m(z_m),

    and with ``combine="probs"`` the weighted mean of the unimodal probabilities, returned as log
    probabilities so that ``softmax`` of the output gives it back and it can be trained with
    ``cross_entropy``:

    .. math:: y = \log \sum_m w_m\, \mathrm{softmax}(f_m(z_m)).

    The weights are :math:`w_m = 1/M` or, with ``learned_weights=True``,
    :math:`w = \mathrm{softmax}(\alpha)` with :math:`\alpha` learned (initialised to 0, i.e. the mean).

    Because the output is a sum of functions of one modality each, late fusion cannot represent an
    interaction such as XOR between modalities, however large each head is. In exchange it is
    robust to a missing modality: pass ``None`` in its place and its term is dropped, the weights of
    the others renormalised to sum to 1. Each head can also be trained on its own.
    Parameters: :math:`\sum_m [(d_m + 1)h + (h + 1)C]` (+ :math:`M` if the weights are learned).

    Parameters
    ----------
    dims, hidden, num_classes
        As in :class:`EarlyFusion`; ``hidden`` is the width of each unimodal head.
    combine : {"logits", "probs"}
        What to average.
    learned_weights : bool
        Learn the mixing weights instead of using the plain mean.
    """

    def __init__(self, dims: Sequence[int], hidden: int, num_classes: int,
                 combine: str = "logits", learned_weights: bool = False):
        super().__init__(dims, hidden, num_classes)
        if combine not in ("logits", "probs"):
            raise ValueError(f"combine must be 'logits' or 'probs', got {combine!r}")
        if not isinstance(learned_weights, bool):
            raise TypeError(f"learned_weights must be a bool, got {type(learned_weights).__name__}")
        if combine == "probs" and num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 to average probabilities, got {num_classes}")
        self.combine = combine
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(d, self.hidden), _mlp_head(self.hidden, self.num_classes))
            for d in self.dims)
        self.weight_logits = nn.Parameter(torch.zeros(len(self.dims))) if learned_weights else None

    def modality_weights(self) -> torch.Tensor:
        """The mixing weights :math:`w_m` (they sum to 1)."""
        if self.weight_logits is None:
            reference = self.heads[0][0].weight
            return torch.full((len(self.dims),), 1.0 / len(self.dims),
                              dtype=reference.dtype, device=reference.device)
        return torch.softmax(self.weight_logits, dim=0)

    def unimodal_logits(self, *embeddings: torch.Tensor) -> list[torch.Tensor]:
        """The logits :math:`f_m(z_m)` of each modality's own classifier."""
        self._check(embeddings)
        return [head(z) for head, z in zip(self.heads, embeddings)]

    def forward(self, *embeddings: torch.Tensor | None) -> torch.Tensor:
        """Fused logits (or log probabilities); a ``None`` embedding marks a missing modality."""
        if len(embeddings) != len(self.dims):
            self._check(embeddings)                                      # raises: wrong count
        present = [m for m, z in enumerate(embeddings) if z is not None]
        if not present:
            raise ValueError("embeddings: every modality is None; at least one must be present")
        _check_inputs(tuple(embeddings[m] for m in present), tuple(self.dims[m] for m in present),
                      self.input_name)
        logits = torch.stack([self.heads[m](embeddings[m]) for m in present])   # (present, batch, C)
        w = self.modality_weights()[present]
        w = (w / w.sum()).view(-1, 1, 1)
        if self.combine == "logits":
            return (w * logits).sum(dim=0)
        # log sum_m w_m softmax(f_m), computed stably in log space
        return torch.logsumexp(torch.log(w) + torch.log_softmax(logits, dim=-1), dim=0)


class IntermediateFusion(_Fusion):
    r"""Intermediate (representation-level) fusion: project each embedding, concatenate, MLP.

    .. math::

        h_m = \mathrm{ReLU}(P_m z_m + c_m) \in \mathbb{R}^h, \qquad
        y = W_2\,\mathrm{ReLU}\big(W_1 [h_1; \dots; h_M] + b_1\big) + b_2 .

    The modality-specific layers :math:`P_m` bring embeddings of different sizes and statistics
    into a common width before they meet; the shared MLP then models their interactions. This is
    the workhorse of multimodal models, and what a vision-language model's *projector* does:
    map image features into the space where the language model's tokens live.
    Parameters: :math:`\sum_m (d_m + 1)h + (Mh + 1)h + (h + 1)C`.

    Parameters
    ----------
    dims, hidden, num_classes
        As in :class:`EarlyFusion`; ``hidden`` is the width of every projection and of the MLP.
    """

    def __init__(self, dims: Sequence[int], hidden: int, num_classes: int):
        super().__init__(dims, hidden, num_classes)
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Linear(d, self.hidden), nn.ReLU()) for d in self.dims)
        self.joint = nn.Linear(len(self.dims) * self.hidden, self.hidden)
        self.head = _mlp_head(self.hidden, self.num_classes)

    def forward(self, *embeddings: torch.Tensor) -> torch.Tensor:
        self._check(embeddings)
        projected = [proj(z) for proj, z in zip(self.projections, embeddings)]
        return self.head(self.joint(torch.cat(projected, dim=-1)))


class TensorFusion(_Fusion):
    r"""Tensor fusion (Zadeh et al., 2017): a linear map of the outer product of the embeddings.

    .. math::

        \mathcal{Z} = [z_1;1] \otimes [z_2;1] \otimes \dots \otimes [z_M;1]
        \in \mathbb{R}^{(d_1+1)\times\dots\times(d_M+1)}, \qquad
        f = W\,\mathrm{vec}(\mathcal{Z}) + b \in \mathbb{R}^h, \qquad
        y = V\,\mathrm{ReLU}(f) + e .

    For two modalities :math:`\mathcal{Z}` holds every product :math:`a_i b_j` (bimodal
    interactions) and, thanks to the appended 1, the unimodal features :math:`a_i`, :math:`b_j`
    and a constant. Even a *linear* read-out of :math:`\mathcal{Z}` can therefore express
    multiplicative interactions such as XOR. The price is size: the weight :math:`W` has
    :math:`h\prod_m (d_m + 1)` entries, so it grows as :math:`d_a d_b`.
    Parameters: :math:`h\prod_m(d_m+1) + h + (h+1)C`.

    ``vec`` flattens in row-major (C) order: entry :math:`(i_1, \dots, i_M)` of :math:`\mathcal{Z}`
    multiplies column :math:`\sum_m i_m \prod_{k>m}(d_k+1)` of ``fusion.weight``.
    """

    def __init__(self, dims: Sequence[int], hidden: int, num_classes: int):
        super().__init__(dims, hidden, num_classes)
        outer_size = 1
        for d in self.dims:
            outer_size *= d + 1
        self.fusion = nn.Linear(outer_size, self.hidden)
        self.head = _mlp_head(self.hidden, self.num_classes)

    @staticmethod
    def outer_product(*embeddings: torch.Tensor) -> torch.Tensor:
        r"""Return :math:`\mathrm{vec}([z_1;1]\otimes\dots\otimes[z_M;1])`, shape ``(batch, prod(d_m+1))``."""
        product = append_one(embeddings[0])
        for z in embeddings[1:]:
            product = (product.unsqueeze(-1) * append_one(z).unsqueeze(-2)).flatten(start_dim=-2)
        return product

    def fuse(self, *embeddings: torch.Tensor) -> torch.Tensor:
        """The fused representation :math:`f` (before the ReLU and the classifier)."""
        self._check(embeddings)
        return self.fusion(self.outer_product(*embeddings))

    def forward(self, *embeddings: torch.Tensor) -> torch.Tensor:
        return self.head(self.fuse(*embeddings))


class LowRankTensorFusion(_Fusion):
    r"""Low-rank multimodal fusion (Liu et al., 2018): tensor fusion with a rank-``r`` weight.

    Write the weight of :class:`TensorFusion`, one slice per output unit :math:`k`, as a sum of
    ``rank`` outer products of modality-specific factors :math:`w_m^{(i)} \in \mathbb{R}^{(d_m+1)\times h}`:

    .. math::

        W_{\cdot k} = \sum_{i=1}^{r} w_1^{(i)}[:, k] \otimes \dots \otimes w_M^{(i)}[:, k] .

    Then the inner product with :math:`\mathcal{Z} = \otimes_m [z_m; 1]` factorises, and the
    outer product never has to be formed:

    .. math::

        f = \sum_{i=1}^{r} \bigodot_{m=1}^{M} \big([z_m;1]^\top w_m^{(i)}\big) + b \in \mathbb{R}^h,
        \qquad y = V\,\mathrm{ReLU}(f) + e ,

    where :math:`\odot` is the elementwise product. Parameters:
    :math:`r\,h\sum_m (d_m + 1) + h + (h+1)C`, which grows as :math:`r(d_a + d_b)` instead of
    :math:`d_a d_b`; the cost per example drops the same way. (Liu et al. also learn one scalar
    weight per rank-one term; it can be absorbed into the factors, so it is left out here.)

    Parameters
    ----------
    dims, hidden, num_classes
        As in :class:`TensorFusion`.
    rank : int
        Number of rank-one terms :math:`r`.
    """

    def __init__(self, dims: Sequence[int], hidden: int, num_classes: int, rank: int = 4):
        super().__init__(dims, hidden, num_classes)
        self.rank = _check_positive_int("rank", rank)
        self.factors = nn.ParameterList(
            nn.Parameter(torch.empty(self.rank, d + 1, self.hidden)) for d in self.dims)
        self.bias = nn.Parameter(torch.zeros(self.hidden))
        self.head = _mlp_head(self.hidden, self.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the factors so that :math:`f` starts with roughly unit scale.

        Each factor entry is drawn from :math:`\\mathcal{N}(0, \\sigma_m^2)` with
        :math:`\\sigma_m = ((d_m+1)\\,r^{1/M})^{-1/2}`, so that each projection
        :math:`[z_m;1]^\\top w_m^{(i)}` has variance about :math:`r^{-1/M}` for unit-variance inputs
        and the sum of :math:`r` products of :math:`M` of them has variance about 1.
        """
        for factor, d in zip(self.factors, self.dims):
            std = ((d + 1) * self.rank ** (1.0 / len(self.dims))) ** -0.5
            nn.init.normal_(factor, mean=0.0, std=std)
        nn.init.zeros_(self.bias)

    def full_weight(self) -> torch.Tensor:
        """The equivalent :class:`TensorFusion` weight, shape ``(hidden, prod(d_m + 1))``.

        Built as the sum over the rank of outer products of the factors, flattened in the same
        row-major order as :meth:`TensorFusion.outer_product`.
        """
        weight = self.factors[0]                                      # (r, d_1+1, h)
        for factor in self.factors[1:]:
            weight = (weight.unsqueeze(2) * factor.unsqueeze(1)).flatten(1, 2)
        return weight.sum(dim=0).T

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rank={self.rank}"

    def fuse(self, *embeddings: torch.Tensor) -> torch.Tensor:
        """The fused representation :math:`f` (before the ReLU and the classifier)."""
        self._check(embeddings)
        fused = None
        for z, factor in zip(embeddings, self.factors):
            # [z;1]^T w^(i) for every rank term i at once: (batch, r, h)
            projected = torch.einsum("bd,rdh->brh", append_one(z), factor)
            fused = projected if fused is None else fused * projected
        return fused.sum(dim=1) + self.bias

    def forward(self, *embeddings: torch.Tensor) -> torch.Tensor:
        return self.head(self.fuse(*embeddings))


class CrossAttentionFusion(_Fusion):
    r"""Cross-attention fusion: the tokens of one modality attend to the tokens of the other.

    With query tokens :math:`X_q \in \mathbb{R}^{n\times d_q}` (modality 0) and context tokens
    :math:`X_c \in \mathbb{R}^{m\times d_c}` (modality 1), both first projected to width ``hidden``,

    .. math::

        Q = X_q P_q,\; C = X_c P_c, \qquad
        \mathrm{head}_j = \mathrm{softmax}\!\Big(\frac{(Q W^Q_j)(C W^K_j)^\top}{\sqrt{h/H}}\Big)\, C W^V_j,

    .. math::

        U = Q + [\mathrm{head}_1, \dots, \mathrm{head}_H]\, W^O, \qquad
        y = V\,\mathrm{ReLU}\Big(\frac{1}{n}\sum_{t=1}^n U_t\Big) + e .

    The attention itself is :class:`torch.nn.MultiheadAttention` with ``num_heads`` heads
    (:math:`H`); the residual connection keeps the query modality's own information; the mean over
    the query tokens pools the result. This is the mechanism Flamingo inserts between the layers of
    a frozen language model (there with a tanh gate initialised at 0). A 2-D input
    ``(batch, dim)`` is read as a single token; with a single context token the softmax weight is
    1 and attention reduces to a linear map of that token, so cross-attention pays off only when
    the context has many tokens (image patches, audio frames) to choose from.

    Parameters
    ----------
    dims : (int, int)
        Feature sizes of the query modality and of the context modality.
    hidden : int
        Attention width; must be divisible by ``num_heads``.
    num_classes : int
        Number of logits.
    num_heads : int
        Number of attention heads.
    """

    def __init__(self, dims: Sequence[int], hidden: int, num_classes: int, num_heads: int = 1):
        super().__init__(dims, hidden, num_classes, max_modalities=2)
        self.num_heads = _check_positive_int("num_heads", num_heads)
        if self.hidden % self.num_heads:
            raise ValueError(f"hidden must be divisible by num_heads, got hidden={self.hidden} "
                             f"and num_heads={self.num_heads}")
        self.query_proj = nn.Linear(self.dims[0], self.hidden)
        self.context_proj = nn.Linear(self.dims[1], self.hidden)
        self.attention = nn.MultiheadAttention(self.hidden, self.num_heads, batch_first=True)
        self.head = _mlp_head(self.hidden, self.num_classes)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_heads={self.num_heads}"

    def attend(self, query: torch.Tensor, context: torch.Tensor,
               key_padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the fused query tokens :math:`U` ``(batch, n, hidden)`` and the attention
        weights ``(batch, n, m)`` averaged over heads.

        ``key_padding_mask`` (``(batch, m)``, bool) marks padded context tokens to ignore.
        """
        self._check((query, context), allowed_ndims=(2, 3))
        query = query.unsqueeze(1) if query.ndim == 2 else query
        context = context.unsqueeze(1) if context.ndim == 2 else context
        if key_padding_mask is not None:
            expected = (context.shape[0], context.shape[1])
            if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
                raise TypeError("key_padding_mask must be a bool torch.Tensor, "
                                f"got {type(key_padding_mask).__name__}")
            if tuple(key_padding_mask.shape) != expected:
                raise ValueError(f"key_padding_mask: expected shape {expected} (batch, context "
                                 f"tokens), got {tuple(key_padding_mask.shape)}")
        q = self.query_proj(query)
        c = self.context_proj(context)
        attended, weights = self.attention(q, c, c, key_padding_mask=key_padding_mask,
                                           need_weights=True, average_attn_weights=True)
        return q + attended, weights

    def forward(self, *embeddings: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from ``(query, context)``; ``key_padding_mask`` as in
        :meth:`CrossAttentionFusion.attend`."""
        self._check(embeddings, allowed_ndims=(2, 3))
        fused, _ = self.attend(*embeddings, key_padding_mask=key_padding_mask)
        return self.head(fused.mean(dim=1))


class EncodeThenFuse(nn.Module):
    """Apply one encoder per modality, then a fusion module: the whole multimodal classifier.

    ``EncodeThenFuse([image_encoder, audio_encoder], TensorFusion((64, 32), 16, 10))(x_img, x_audio)``
    computes ``fusion(image_encoder(x_img), audio_encoder(x_audio))``. Encoders and fusion are
    trained together when the wrapper is; freeze an encoder with ``requires_grad_(False)``.
    """

    def __init__(self, encoders: Sequence[nn.Module], fusion: nn.Module):
        super().__init__()
        if not isinstance(fusion, _Fusion):
            raise TypeError(f"fusion must be one of the fusion modules of mmtutor.models.fusion, "
                            f"got {type(fusion).__name__}")
        if isinstance(encoders, nn.Module) or not isinstance(encoders, Sequence):
            raise TypeError(f"encoders must be a sequence of nn.Module (one per modality), "
                            f"got {type(encoders).__name__}")
        for m, encoder in enumerate(encoders):
            if not isinstance(encoder, nn.Module):
                raise TypeError(f"encoders[{m}] must be an nn.Module, got {type(encoder).__name__}")
        if len(encoders) != fusion.num_modalities:
            raise ValueError(f"encoders: expected {fusion.num_modalities} encoders (one per "
                             f"modality of the fusion module, dims={fusion.dims}), got {len(encoders)}")
        self.encoders = nn.ModuleList(encoders)
        self.fusion = fusion

    def forward(self, *inputs: torch.Tensor, **kwargs) -> torch.Tensor:
        if len(inputs) != len(self.encoders):
            raise ValueError(f"inputs: expected {len(self.encoders)} tensors (one per encoder), "
                             f"got {len(inputs)}")
        return self.fusion(*(encoder(x) for encoder, x in zip(self.encoders, inputs)), **kwargs)
