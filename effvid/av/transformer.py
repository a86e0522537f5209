"""BERT-style transformer encoders with the parameter sharing of Lee et al. (ICLR 2021).

* :class:`TransformerLayer`: a post-LN BERT encoder layer (self-attention, GELU FFN, dropout).
* :class:`FactorizedLinear`: ``W = U·S·V`` with ``U`` (out×rank, with the bias) shareable
  between modules, ``S`` (rank×rank) kept orthogonal by the parametrisation of
  :func:`torch.nn.utils.parametrizations.orthogonal` (computed in float32 in a half-precision
  model), ``V`` (rank×in); the rank-dim code
  ``V·x`` is L2-normalised before ``S`` (as in the paper; ``normalize=False`` gives the plain
  linear map ``U·S·V·x + b``).
* :class:`TransformerEncoder`: ``depth`` applications of a list of layers, cycling through it
  (one layer = ALBERT-style cross-layer sharing).
* :func:`build_transformers`: the named transformers of a model under a sharing mode:

  ``none``     every transformer has ``depth`` private layers;
  ``layers``   every transformer has one layer used at all depths;
  ``all``      one transformer (with one layer) serves every name;
  ``partial``  ``layers`` plus ``W = U·S·V`` for Q, K, V, attention output, FFN in and FFN
               out, one ``U`` (and bias) per matrix shared by all transformers, ``S`` and ``V``
               private; the two LayerNorms are shared too.

Shared weights are the *same* ``nn.Parameter`` objects registered in several modules, so
``model.parameters()`` lists them once and their gradient is the sum over all uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _Orthogonal, _OrthMaps

from ..errors import check_dropout, check_positive_ints

__all__ = [
    "SHARING_MODES",
    "FactorizedLinear",
    "TransformerLayer",
    "TransformerEncoder",
    "build_transformers",
]

SHARING_MODES = ("none", "layers", "all", "partial")
_MATRICES = ("query", "key", "value", "output", "ffn_in", "ffn_out")


class _Float32Orthogonal(_Orthogonal):
    """torch's orthogonal parametrisation (``base · matrix_exp(A)``, ``A`` skew-symmetric from
    the strict lower triangle of ``original``), computed in at least float32 and returned in the
    weight's dtype: ``torch.matrix_exp`` gives NaN in bfloat16 and float16 on the CPU, and a
    trained model cast with ``.bfloat16()`` or ``.half()`` output NaN everywhere. The state
    (``original``, ``base``) and ``right_inverse`` are torch's."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(X.dtype, torch.float32)  # float64 stays float64
        # autocast would run the product with base in bfloat16 again
        with torch.autocast(X.device.type, enabled=False):
            A = X.to(dtype).tril()
            Q = self.base.to(dtype) @ torch.matrix_exp(A - A.mT)
        return Q.to(X.dtype)


def _orthogonal_linear(features: int) -> nn.Linear:
    """A square bias-free ``nn.Linear`` whose weight is kept orthogonal as
    :func:`torch.nn.utils.parametrizations.orthogonal` keeps it (its matrix exponential map, the
    same state_dict keys), but computed in float32 (:class:`_Float32Orthogonal`)."""
    linear = nn.Linear(features, features, bias=False)
    parametrize.register_parametrization(linear, "weight", _Float32Orthogonal(linear.weight, _OrthMaps.matrix_exp),
                                         unsafe=True)
    return linear


class FactorizedLinear(nn.Module):
    """``y = U · S · normalize(V · x) + b``, a rank-``rank`` factorisation of an out×in matrix.

    Args:
        in_features, out_features, rank: shapes; ``V`` is rank×in, ``S`` rank×rank, ``U``
            out×rank.
        shared: an ``nn.Linear(rank, out_features)`` to use as ``U`` (with its bias); pass the
            same module to several ``FactorizedLinear`` to share it. ``None`` creates a private one.
        normalize: L2-normalise ``V·x`` over its ``rank`` features (the paper's choice).

    ``S`` is ``self.S.weight``, parametrised orthogonal (matrix exponential of a skew-symmetric
    matrix, times a fixed orthogonal base; computed in float32 in a half-precision model, see
    :func:`_orthogonal_linear`): torch stores it as a full rank×rank ``original``
    tensor of which only the strict lower triangle is used (``rank·(rank-1)/2`` free values).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, *, shared: nn.Linear | None = None,
                 normalize: bool = True):
        super().__init__()
        check_positive_ints(in_features=in_features, out_features=out_features, rank=rank)
        if shared is not None and (shared.in_features != rank or shared.out_features != out_features):
            raise ValueError(f"shared U must be Linear({rank}, {out_features}), got {shared}")
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.normalize = normalize
        self.V = nn.Linear(in_features, rank, bias=False)
        self.S = _orthogonal_linear(rank)
        self.U = shared if shared is not None else nn.Linear(rank, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.V(x)
        if self.normalize:
            h = F.normalize(h, dim=-1)
        return self.U(self.S(h))

    def dense_weight(self) -> torch.Tensor:
        """The out×in product ``U·S·V`` (the map when ``normalize=False``)."""
        return self.U.weight @ self.S.weight @ self.V.weight

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, normalize={self.normalize}"


class TransformerLayer(nn.Module):
    """Post-LN BERT encoder layer: ``x = LN(x + Drop(Attn(x)))``, ``x = LN(x + Drop(FFN(x)))``
    with ``FFN = Linear(ffn) → GELU → Linear(width)``.

    ``linear(name, in, out)`` makes each of the six matrices (names ``query``, ``key``,
    ``value``, ``output``, ``ffn_in``, ``ffn_out``; default ``nn.Linear``); ``norms`` passes
    existing (attention, FFN) LayerNorms to share them.
    """

    def __init__(self, width: int = 768, heads: int = 12, ffn: int = 3072, dropout: float = 0.1, *,
                 linear=None, norms: tuple[nn.LayerNorm, nn.LayerNorm] | None = None):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        linear = linear or (lambda name, i, o: nn.Linear(i, o))
        self.width, self.heads, self.dropout_p = width, heads, dropout
        self.query = linear("query", width, width)
        self.key = linear("key", width, width)
        self.value = linear("value", width, width)
        self.output = linear("output", width, width)
        self.ffn_in = linear("ffn_in", width, ffn)
        self.ffn_out = linear("ffn_out", ffn, width)
        self.norm1, self.norm2 = norms if norms is not None else (nn.LayerNorm(width), nn.LayerNorm(width))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, L, width)``; ``mask``: bool ``(B, L)``, True for tokens to attend to."""
        b, n, _ = x.shape
        h, d = self.heads, self.width // self.heads
        q = self.query(x).view(b, n, h, d).transpose(1, 2)
        k = self.key(x).view(b, n, h, d).transpose(1, 2)
        v = self.value(x).view(b, n, h, d).transpose(1, 2)
        attn_mask = None if mask is None else mask[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout_p if self.training else 0.0)
        a = a.transpose(1, 2).reshape(b, n, self.width)
        x = self.norm1(x + self.dropout(self.output(a)))
        f = self.ffn_out(F.gelu(self.ffn_in(x)))
        return self.norm2(x + self.dropout(f))


class TransformerEncoder(nn.Module):
    """``depth`` layer applications; layer ``i`` is ``layers[i % len(layers)]``. With one layer
    its weights are reused at every depth (cross-layer sharing)."""

    def __init__(self, layers: list[TransformerLayer], depth: int):
        super().__init__()
        if not layers or depth < 1:
            raise ValueError("need at least one layer and depth >= 1")
        self.layers = nn.ModuleList(layers)
        self.depth = depth

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for i in range(self.depth):
            x = self.layers[i % len(self.layers)](x, mask)
        return x

    def extra_repr(self) -> str:
        return f"depth={self.depth}, unique_layers={len(self.layers)}"


def build_transformers(names, *, sharing: str = "partial", width: int = 768, heads: int = 12, depth: int = 6,
                       ffn: int = 3072, dropout: float = 0.1, rank: int = 128,
                       normalize_factors: bool = True) -> dict[str, TransformerEncoder]:
    """One :class:`TransformerEncoder` per name, sharing weights as ``sharing`` says (see the
    module docstring). With ``all`` every name maps to the same object."""
    names = list(names)
    if sharing not in SHARING_MODES:
        raise ValueError(f"sharing must be one of {SHARING_MODES}, got {sharing!r}")
    check_positive_ints(width=width, heads=heads, depth=depth, ffn=ffn, rank=rank)
    check_dropout(dropout)

    def layer(**kw):
        return TransformerLayer(width, heads, ffn, dropout, **kw)

    if sharing == "none":
        return {n: TransformerEncoder([layer() for _ in range(depth)], depth) for n in names}
    if sharing == "layers":
        return {n: TransformerEncoder([layer()], depth) for n in names}
    if sharing == "all":
        shared = TransformerEncoder([layer()], depth)
        return {n: shared for n in names}
    # partial: U (with bias) per matrix and both LayerNorms shared, S and V private.
    shapes = {"query": (width, width), "key": (width, width), "value": (width, width),
              "output": (width, width), "ffn_in": (width, ffn), "ffn_out": (ffn, width)}
    shared_u = {m: nn.Linear(rank, shapes[m][1]) for m in _MATRICES}
    norms = (nn.LayerNorm(width), nn.LayerNorm(width))

    def factorized(name, i, o):
        return FactorizedLinear(i, o, rank, shared=shared_u[name], normalize=normalize_factors)

    return {n: TransformerEncoder([layer(linear=factorized, norms=norms)], depth) for n in names}
