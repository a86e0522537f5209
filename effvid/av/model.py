"""The audio-visual transformer model (Lee et al., "Parameter efficient multimodal
transformers for video representation learning", ICLR 2021), its factory and parameter report.

Data flow for a batch of ``B`` sequences of ``K`` clips (fusion ``"mid"``, the default)::

    video (B, K, 3, T, H, W) ─ visual CNN per clip ─ (B, K, Cv) ─ Linear+LN ─ +BOS, +pos ─ visual transformer ─┐
    audio (B, K, samples)   ─ log-mel ─ audio CNN ─ (B, K, Ca) ─ Linear+LN ─ +BOS, +pos ─ audio transformer ──┤
                                                  concat, positions restart, +modality ─ multimodal transformer

``"early"`` runs one transformer over the concatenated embedded tokens; ``"late"`` stops after
the single-modality transformers. The forward returns per-position outputs, summary (BOS)
outputs and the CNN embeddings (:class:`AVOutput`), so pretraining losses (masked embedding
prediction, correct-pair prediction) can be built on top without changing the model.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _Orthogonal

from .audio import LogMelSpectrogram, SpecAugment, clip_samples
from .encoders import build_audio_encoder, build_visual_encoder
from ..errors import check_dropout, check_positive_ints
from .transformer import SHARING_MODES, TransformerEncoder, build_transformers

__all__ = [
    "FUSION_MODES",
    "AVOutput",
    "AVModel",
    "create_av_model",
    "parameter_report",
    "format_parameter_report",
]

FUSION_MODES = ("early", "mid", "late")


@dataclass
class AVOutput:
    """What :meth:`AVModel.forward` returns (``D`` = transformer width).

    Attributes:
        visual_features, audio_features: CNN clip embeddings ``(B, K, Cv)``, ``(B, K, Ca)``
            (zeros at masked clips) — the targets of masked embedding prediction.
        visual_tokens, audio_tokens: ``(B, K, D)`` per-clip outputs of the single-modality
            transformers (for ``early`` fusion: the joint transformer's outputs at each modality's
            positions).
        visual_summary, audio_summary: ``(B, D)`` outputs at each modality's summary (BOS) token.
        fused_visual_tokens, fused_audio_tokens: ``(B, K, D)`` multimodal transformer outputs
            (``mid``; same as ``*_tokens`` for ``early``; None for ``late``).
        fused_summary: ``(B, 2D)``, the two multimodal BOS outputs concatenated (``late``: the
            two single-modality summaries) — the input for a downstream classifier.
        mask, audio_mask: bool ``(B, K)`` valid clips used for the two modalities.
    """

    visual_features: torch.Tensor
    audio_features: torch.Tensor
    visual_tokens: torch.Tensor
    audio_tokens: torch.Tensor
    visual_summary: torch.Tensor
    audio_summary: torch.Tensor
    fused_visual_tokens: torch.Tensor | None
    fused_audio_tokens: torch.Tensor | None
    fused_summary: torch.Tensor
    mask: torch.Tensor
    audio_mask: torch.Tensor


class Projection(nn.Sequential):
    """CNN embedding → transformer width: ``Linear`` then ``LayerNorm``."""

    def __init__(self, in_dim: int, width: int):
        super().__init__(nn.Linear(in_dim, width), nn.LayerNorm(width))


class SequenceEmbedding(nn.Module):
    """Prepends a learned summary (BOS) token, adds learned position embeddings (BOS at 0,
    clip ``k`` at ``k + 1``), then LayerNorm and dropout: ``(B, K, D)`` → ``(B, K + 1, D)``."""

    def __init__(self, width: int, max_clips: int, dropout: float = 0.1):
        super().__init__()
        self.bos = nn.Parameter(torch.empty(width).normal_(std=0.02))
        self.position = nn.Embedding(max_clips + 1, width)
        nn.init.normal_(self.position.weight, std=0.02)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, k, _ = x.shape
        if k + 1 > self.position.num_embeddings:
            raise ValueError(f"{k} clips > max_clips={self.position.num_embeddings - 1}")
        x = torch.cat([self.bos.expand(b, 1, -1), x], dim=1) + self.position.weight[: k + 1]
        return self.dropout(self.norm(x))


class FusionEmbedding(nn.Module):
    """Input of the multimodal transformer: visual tokens then audio tokens (each with its BOS),
    plus a modality (token-type) embedding and — for mid fusion, whose inputs are transformer
    outputs — fresh position embeddings restarting at 0 for each modality; then LayerNorm and
    dropout."""

    def __init__(self, width: int, max_clips: int, dropout: float = 0.1, *, positions: bool = True):
        super().__init__()
        self.modality = nn.Embedding(2, width)
        nn.init.normal_(self.modality.weight, std=0.02)
        self.position = None
        if positions:
            self.position = nn.Embedding(max_clips + 1, width)
            nn.init.normal_(self.position.weight, std=0.02)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        v = visual + self.modality.weight[0]
        a = audio + self.modality.weight[1]
        if self.position is not None:
            v = v + self.position.weight[: v.shape[1]]
            a = a + self.position.weight[: a.shape[1]]
        return self.dropout(self.norm(torch.cat([v, a], dim=1)))


class AVModel(nn.Module):
    """Audio-visual transformer over sequences of clips. Build it with :func:`create_av_model`.

    Components (the names :func:`parameter_report` uses): ``visual_cnn``, ``audio_cnn``,
    ``visual_projection``, ``audio_projection``, ``visual_embedding``, ``audio_embedding``,
    ``fusion_embedding`` (not for late fusion), and the transformers ``visual_transformer``,
    ``audio_transformer`` (mid, late), ``multimodal_transformer`` (early, mid). With
    ``sharing="all"`` the transformer attributes are one object. ``audio_frontend`` (log-mel,
    optional SpecAugment) turns waveforms into spectrograms inside the model, on its device.

    :meth:`forward` refuses inputs of another layout or dtype, and clips of other than
    ``frames_per_clip`` frames (default: the visual CNN's own, a TSM encoder's) or waveforms of
    other than ``clip_seconds`` at the frontend's sample rate, naming what it expected (None: not
    checked).
    """

    def __init__(self, visual_cnn: nn.Module, audio_cnn: nn.Module, transformers: dict[str, TransformerEncoder], *,
                 width: int, fusion: str = "mid", max_clips: int = 64, dropout: float = 0.1,
                 audio_frontend: nn.Module | None = None, sharing: str = "custom",
                 frames_per_clip: int | None = None, clip_seconds: float | None = None):
        super().__init__()
        if fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, got {fusion!r}")
        need = {"early": {"multimodal"}, "mid": {"visual", "audio", "multimodal"}, "late": {"visual", "audio"}}[fusion]
        if set(transformers) != need:
            raise ValueError(f"fusion {fusion!r} needs transformers {sorted(need)}, got {sorted(transformers)}")
        self.fusion, self.sharing, self.width, self.max_clips = fusion, sharing, width, max_clips
        self.audio_frontend = audio_frontend
        self.visual_cnn = visual_cnn
        self.audio_cnn = audio_cnn
        self.visual_projection = Projection(visual_cnn.out_dim, width)
        self.audio_projection = Projection(audio_cnn.out_dim, width)
        self.visual_embedding = SequenceEmbedding(width, max_clips, dropout)
        self.audio_embedding = SequenceEmbedding(width, max_clips, dropout)
        if fusion != "late":
            self.fusion_embedding = FusionEmbedding(width, max_clips, dropout, positions=(fusion == "mid"))
        for name, module in transformers.items():
            setattr(self, f"{name}_transformer", module)
        self._transformer_names = [f"{n}_transformer" for n in ("visual", "audio", "multimodal") if n in transformers]
        self._uses_parametrizations = any(parametrize.is_parametrized(m) for m in self.modules())
        # what forward checks its inputs against (None: not checked)
        logmel = next((m for m in (audio_frontend.modules() if audio_frontend is not None else ())
                       if isinstance(m, LogMelSpectrogram)), None)
        if frames_per_clip is None:
            frames_per_clip = getattr(visual_cnn, "frames_per_clip", None)  # a TSM encoder's
        self.frames_per_clip = frames_per_clip
        self.clip_seconds = clip_seconds
        self.sample_rate = logmel.sample_rate if logmel is not None else None
        self.n_mels = logmel.n_mels if logmel is not None else None
        self.samples_per_clip = (clip_samples(clip_seconds, self.sample_rate)
                                 if clip_seconds is not None and self.sample_rate is not None else None)

    @property
    def out_dim(self) -> int:
        """Size of ``AVOutput.fused_summary``."""
        return 2 * self.width

    def transformers(self) -> "OrderedDict[str, TransformerEncoder]":
        """The transformers by attribute name (possibly the same object several times)."""
        return OrderedDict((n, getattr(self, n)) for n in self._transformer_names)

    def components(self) -> "OrderedDict[str, nn.Module]":
        names = ["visual_cnn", "audio_cnn", "visual_projection", "audio_projection", "visual_embedding",
                 "audio_embedding", "fusion_embedding", *self._transformer_names]
        return OrderedDict((n, getattr(self, n)) for n in names if hasattr(self, n))

    # -- encoding -----------------------------------------------------------------------------

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(B, K, samples)`` → ``(B, K, n_mels, frames)`` with the audio frontend;
        4-D input is taken to be spectrograms already."""
        self._check_audio_layout(audio)
        return audio if audio.dim() == 4 else self.audio_frontend(audio)

    def _check_audio_layout(self, audio: torch.Tensor) -> None:
        if audio.dim() != 4 and (audio.dim() != 3 or self.audio_frontend is None):
            raise ValueError("audio must be (B, K, samples) waveforms (needs audio_frontend) or "
                             f"(B, K, n_mels, frames), got {tuple(audio.shape)}")

    @staticmethod
    def _per_clip(cnn: nn.Module, clips: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run ``cnn`` on the valid clips only; masked clips get zero embeddings."""
        b, k = mask.shape
        feats = cnn(clips[mask])
        out = feats.new_zeros(b, k, feats.shape[-1])
        out[mask] = feats
        return out

    def encode_visual(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, K, 3, T, H, W)`` → ``(B, K, Cv)``."""
        return self._per_clip(self.visual_cnn, video, mask)

    def encode_audio(self, audio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(B, K, samples)`` or log-mels ``(B, K, n_mels, frames)`` → ``(B, K, Ca)``."""
        spec = self.spectrogram(audio)
        return self._per_clip(self.audio_cnn, spec.unsqueeze(2), mask)

    # -- contextualising ----------------------------------------------------------------------

    def contextualize(self, visual_features: torch.Tensor, audio_features: torch.Tensor, mask: torch.Tensor,
                      audio_mask: torch.Tensor | None = None) -> AVOutput:
        """Transformers on CNN embeddings ``(B, K, C)``; the entry point for losses that modify
        the embeddings (e.g. masking) before contextualisation."""
        audio_mask = mask if audio_mask is None else audio_mask
        _check_clips("visual_features", visual_features, "audio_features", audio_features, mask, audio_mask)
        if self._uses_parametrizations:  # compute each orthogonal S once per forward, not once per depth
            with parametrize.cached():
                return self._contextualize(visual_features, audio_features, mask, audio_mask)
        return self._contextualize(visual_features, audio_features, mask, audio_mask)

    def _contextualize(self, vf, af, mask, audio_mask) -> AVOutput:
        b, k, _ = vf.shape
        ones = mask.new_ones(b, 1)
        vmask = torch.cat([ones, mask], dim=1)  # BOS is always attended to
        amask = torch.cat([ones, audio_mask], dim=1)
        v = self.visual_embedding(self.visual_projection(vf))
        a = self.audio_embedding(self.audio_projection(af))
        fused_v = fused_a = None
        if self.fusion == "early":
            x = self.multimodal_transformer(self.fusion_embedding(v, a), torch.cat([vmask, amask], dim=1))
            v, a = x[:, : k + 1], x[:, k + 1 :]
            fused_v, fused_a = v[:, 1:], a[:, 1:]
            fused_summary = torch.cat([v[:, 0], a[:, 0]], dim=-1)
        else:
            v = self.visual_transformer(v, vmask)
            a = self.audio_transformer(a, amask)
            if self.fusion == "mid":
                x = self.multimodal_transformer(self.fusion_embedding(v, a), torch.cat([vmask, amask], dim=1))
                fused_v, fused_a = x[:, 1 : k + 1], x[:, k + 2 :]
                fused_summary = torch.cat([x[:, 0], x[:, k + 1]], dim=-1)
            else:
                fused_summary = torch.cat([v[:, 0], a[:, 0]], dim=-1)
        return AVOutput(
            visual_features=vf, audio_features=af,
            visual_tokens=v[:, 1:], audio_tokens=a[:, 1:],
            visual_summary=v[:, 0], audio_summary=a[:, 0],
            fused_visual_tokens=fused_v, fused_audio_tokens=fused_a, fused_summary=fused_summary,
            mask=mask, audio_mask=audio_mask,
        )

    def forward(self, video: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor | None = None,
                audio_mask: torch.Tensor | None = None) -> AVOutput:
        """Args:
            video: ``(B, K, 3, T, H, W)`` normalised clips (``effvid.av.frames_to_clips``).
            audio: ``(B, K, samples)`` waveforms or ``(B, K, n_mels, frames)`` log-mels.
            mask: bool ``(B, K)``, True for real clips (padding of short videos is False).
            audio_mask: bool ``(B, K)`` for the audio side (default ``mask``); False everywhere
                for a video without audio.
        """
        self._check_inputs(video, audio, mask, audio_mask)
        b, k = video.shape[:2]
        mask = video.new_ones(b, k, dtype=torch.bool) if mask is None else mask.bool()
        audio_mask = mask if audio_mask is None else audio_mask.bool() & mask
        vf = self.encode_visual(video, mask)
        af = self.encode_audio(audio, audio_mask)
        return self.contextualize(vf, af, mask, audio_mask)

    def _check_inputs(self, video: torch.Tensor, audio: torch.Tensor, mask, audio_mask) -> None:
        """Refuse what :meth:`forward` cannot take, before any CNN runs, naming the argument, what
        the model expects and what it got; shapes and dtypes only, so it costs nothing. Torch
        failed deep in a CNN ("expected scalar type Double but found Float") or, worse, ran: a
        (B, K, 1, samples) waveform as a spectrogram of one mel bin, 8-kHz audio as 16-kHz, int16
        PCM as floats 32768 times too loud, 8 frames per clip in a model built for 16."""
        shape = tuple(video.shape)
        if video.dim() == 6 and shape[2] != 3 and shape[-1] == 3:
            raise ValueError(f"video must be (B, K, 3, T, H, W) normalised float clips, got {shape} {video.dtype}, "
                             "the layout of LongVideoSampler's frames (B, K, T, H, W, 3): "
                             "effvid.av.frames_to_clips(frames) converts them")
        if video.dim() != 6 or shape[2] != 3:
            raise ValueError(f"video must be (B, K, 3, T, H, W) clips, got {shape}")
        _check_dtype("video", video, self.visual_cnn, "normalised float clips, as effvid.av.frames_to_clips makes them")
        if self.frames_per_clip is not None and shape[3] != self.frames_per_clip:
            raise ValueError(f"video must have the model's frames_per_clip={self.frames_per_clip} frames per clip, "
                             f"(B, K, 3, {self.frames_per_clip}, H, W), got {shape[3]} in {shape}: sample clips with "
                             f"LongVideoSampler(frames_per_clip={self.frames_per_clip}), or build the model with "
                             f"frames_per_clip={shape[3]}")

        shape = tuple(audio.shape)
        if not audio.is_floating_point():
            pcm = "; int16 PCM: audio / 32768" if audio.dtype == torch.int16 else ""
            raise ValueError("audio must be float waveforms in [-1, 1] (as read_audio and LongVideoSampler give them) "
                             f"or float log-mel spectrograms, got {audio.dtype}{pcm}")
        if audio.dim() == 4 and shape[2] == 1 and self.n_mels != 1:
            raise ValueError(f"audio must be (B, K, samples) waveforms or (B, K, n_mels, frames) log-mels, got "
                             f"{shape}: waveforms with a channel dimension, taken for spectrograms of one mel "
                             "bin? audio.squeeze(2) takes it off")
        self._check_audio_layout(audio)
        if audio.dim() == 4:
            if self.n_mels is not None and shape[2] != self.n_mels:
                raise ValueError(f"audio spectrograms must have the model's n_mels={self.n_mels} mel bins, "
                                 f"(B, K, {self.n_mels}, frames), got {shape[2]} in {shape}")
            _check_dtype("audio", audio, self.audio_cnn, "float log-mel spectrograms")
        elif self.samples_per_clip is not None and shape[2] != self.samples_per_clip:
            raise ValueError(f"audio waveforms must have {self.samples_per_clip} samples per clip (the model's "
                             f"clip_seconds={self.clip_seconds} at sample_rate={self.sample_rate}), got {shape[2]} "
                             f"in {shape}: read them with LongVideoSampler(clip_seconds={self.clip_seconds}, "
                             f"sample_rate={self.sample_rate}), or build the model with the clip length and rate "
                             "they have")
        _check_clips("video", video, "audio", audio, mask, audio_mask)


def _check_dtype(name: str, x: torch.Tensor, module: nn.Module, what: str) -> None:
    """Refuse ``x`` unless it is floating point and of the dtype of ``module``'s weights; under
    autocast, which casts the others for itself, only float64 (which it leaves as it is)."""
    weight = next(module.parameters(), None)
    want = weight.dtype if weight is not None else torch.get_default_dtype()
    if not x.is_floating_point():
        raise ValueError(f"{name} must be {what} ({want}, as the model's weights are), got {x.dtype}")
    cast = torch.is_autocast_enabled(x.device.type) and x.dtype != torch.float64
    if weight is not None and x.dtype != want and not cast:
        raise ValueError(f"{name} must be {want}, as the model's weights are, got {x.dtype}: {name}.to({want})")


def _check_clips(video_name: str, video: torch.Tensor, audio_name: str, audio: torch.Tensor,
                 mask: torch.Tensor | None, audio_mask: torch.Tensor | None) -> None:
    """Refuse video and audio (and masks) of other batch sizes or clip counts, naming both: torch
    said only "The shape of the mask [2, 3] at index 1 does not match ...", or nothing at all
    (early fusion split the joined tokens at the wrong place)."""
    if video.dim() < 2 or audio.dim() < 2:
        return  # refused by their own shape checks, which name the layout
    (bv, kv), (ba, ka) = video.shape[:2], audio.shape[:2]
    got = ([f"a batch of {bv} for {video_name}, {ba} for {audio_name}"] if bv != ba else []) + (
        [f"{kv} clips for {video_name}, {ka} for {audio_name}"] if kv != ka else [])
    if got:
        raise ValueError(f"{video_name} and {audio_name} must be the same (B, K) sequences of clips, "
                         f"got {' and '.join(got)}")
    for name, m in (("mask", mask), ("audio_mask", audio_mask)):
        if m is not None and tuple(m.shape) != (bv, kv):
            raise ValueError(f"{name} must be (B, K) = {(bv, kv)}, as {video_name} is, got {tuple(m.shape)}")


def create_av_model(
    *,
    visual_cnn: str = "tsm_resnet50",
    audio_cnn: str = "resnet50_half",
    sharing: str = "partial",
    fusion: str = "mid",
    width: int = 768,
    heads: int = 12,
    layers: int = 6,
    ffn: int = 3072,
    rank: int = 128,
    dropout: float = 0.1,
    max_clips: int = 64,
    frames_per_clip: int = 16,
    clip_seconds: float = 1.0,
    sample_rate: int = 16000,
    n_mels: int = 80,
    spec_augment: bool = False,
    normalize_factors: bool = True,
    visual_kwargs: dict | None = None,
    audio_kwargs: dict | None = None,
) -> AVModel:
    """Build an :class:`AVModel` with the paper's transformer defaults (6 layers, width 768, 12
    heads, FFN 3072, dropout 0.1, ``partial`` sharing with rank 128, mid fusion, 80-mel audio
    frontend). The default visual CNN is a TSM-ResNet-50 (2D, cheaper); pass
    ``visual_cnn="slow_r50"`` for the paper's slow-only 3D ResNet-50.

    ``visual_cnn``: ``tsm_<arch>`` (TSM backbone of :mod:`effvid.models`, e.g. ``tsm_resnet50``,
    ``tsm_resnet_tiny``), ``r3d_18`` / ``mc3_18`` / ``r2plus1d_18`` (torchvision), ``slow_r50``
    (the paper's slow-only 3D ResNet-50) or ``slow_tiny``. ``audio_cnn``: ``resnet50_half``
    (paper) or ``resnet_tiny``. ``sharing``: ``none``/``layers``/``all``/``partial``.
    ``spec_augment`` adds SpecAugment masks to the frontend (active in training mode only).
    ``frames_per_clip``, ``clip_seconds`` and ``sample_rate`` are the clips the model takes, as
    :class:`effvid.av.LongVideoSampler` cuts them: ``forward`` refuses clips of other lengths.
    """
    if sharing not in SHARING_MODES:
        raise ValueError(f"sharing must be one of {SHARING_MODES}, got {sharing!r}")
    if fusion not in FUSION_MODES:
        raise ValueError(f"fusion must be one of {FUSION_MODES}, got {fusion!r}")
    # checked here under this function's names (build_transformers calls layers "depth")
    check_positive_ints(width=width, heads=heads, layers=layers, ffn=ffn, rank=rank, max_clips=max_clips,
                        frames_per_clip=frames_per_clip, sample_rate=sample_rate, n_mels=n_mels)
    check_dropout(dropout)
    clip_samples(clip_seconds, sample_rate)
    names = {"early": ["multimodal"], "mid": ["visual", "audio", "multimodal"], "late": ["visual", "audio"]}[fusion]
    transformers = build_transformers(names, sharing=sharing, width=width, heads=heads, depth=layers, ffn=ffn,
                                      dropout=dropout, rank=rank, normalize_factors=normalize_factors)
    frontend = LogMelSpectrogram(sample_rate, n_mels=n_mels)
    if spec_augment:
        frontend = nn.Sequential(frontend, SpecAugment())
    model = AVModel(
        build_visual_encoder(visual_cnn, frames_per_clip=frames_per_clip, **(visual_kwargs or {})),
        build_audio_encoder(audio_cnn, **(audio_kwargs or {})),
        transformers,
        width=width, fusion=fusion, max_clips=max_clips, dropout=dropout, audio_frontend=frontend, sharing=sharing,
        frames_per_clip=frames_per_clip, clip_seconds=clip_seconds,
    )
    # named in parameter_report: its total is the paper model's only with the paper's CNNs
    model.visual_cnn_name, model.audio_cnn_name = visual_cnn, audio_cnn
    return model


# --------------------------------------------------------------------------------------------
# Parameter report
# --------------------------------------------------------------------------------------------


def _orthogonal_free(module: nn.Module) -> dict[int, int]:
    """``id(original) -> free values`` for tensors under torch's orthogonal parametrisation:
    an n×k (n ≥ k) orthogonal matrix has n·k − k(k+1)/2 degrees of freedom (n(n−1)/2 if square)."""
    free = {}
    for m in module.modules():
        if not parametrize.is_parametrized(m):
            continue
        for name, plist in m.parametrizations.items():
            if any(isinstance(p, _Orthogonal) for p in plist):  # torch's, or effvid's float32 one
                original = plist.original
                n, k = max(original.shape[-2:]), min(original.shape[-2:])
                batch = original[..., 0, 0].numel()
                free[id(original)] = batch * (n * k - k * (k + 1) // 2)
    return free


def _params(module: nn.Module) -> dict[int, nn.Parameter]:
    return {id(p): p for p in module.parameters()}


# The clip encoders of the paper's model (create_av_model's visual default is a cheaper TSM-ResNet-50)
PAPER_CNNS = {"visual_cnn": "slow_r50", "audio_cnn": "resnet50_half"}


def parameter_report(model: nn.Module) -> dict:
    """Parameter counts of an :class:`AVModel` (or anything with a ``components()`` method;
    other modules are reported as one component).

    Counting walks the modules and deduplicates parameters by object identity, so shared weights
    are counted once. Returns a dict:

    * ``components``: per component ``{"total", "private", "shared"}`` — ``shared`` counts
      parameters that also belong to another component (with ``sharing="all"``, where one
      module serves every transformer role, all of each transformer's parameters);
    * ``transformers``: over all transformers together: ``total`` (stored parameters),
      ``free`` (orthogonal ``S`` counted by its degrees of freedom instead of its stored
      rank×rank tensor), ``shared`` (used by more than one transformer role), ``private``,
      ``unique_modules`` (distinct transformer objects behind the roles);
    * ``total`` and ``trainable`` for the whole model; ``sharing``, ``fusion``; ``visual_cnn``
      and ``audio_cnn`` (their names, for a model of :func:`create_av_model`); ``notes``.
    """
    comps = model.components() if hasattr(model, "components") else OrderedDict(model=model)
    comp_params = OrderedDict((name, _params(m)) for name, m in comps.items())
    owners: dict[int, set[str]] = {}
    for name, ps in comp_params.items():
        for pid in ps:
            owners.setdefault(pid, set()).add(name)
    report = OrderedDict()
    report["sharing"] = getattr(model, "sharing", None)
    report["fusion"] = getattr(model, "fusion", None)
    report["visual_cnn"] = getattr(model, "visual_cnn_name", None)
    report["audio_cnn"] = getattr(model, "audio_cnn_name", None)
    components = OrderedDict()
    for name, ps in comp_params.items():
        total = sum(p.numel() for p in ps.values())
        # a parameter of one module serving several roles (sharing="all") is shared between them
        private = sum(p.numel() for pid, p in ps.items() if len(owners[pid]) == 1)
        components[name] = {"total": total, "private": private, "shared": total - private}
    report["components"] = components

    tnames = [n for n in comps if n.endswith("_transformer")]
    tparams: dict[int, nn.Parameter] = {}
    for n in tnames:
        tparams.update(comp_params[n])
    tshared = {pid for pid in tparams if len(owners[pid] & set(tnames)) > 1}
    free_map = {}
    for n in tnames:
        free_map.update(_orthogonal_free(comps[n]))
    stored = sum(p.numel() for p in tparams.values())
    free = sum(free_map.get(pid, p.numel()) for pid, p in tparams.items())
    report["transformers"] = {
        "names": tnames,
        "unique_modules": len({id(comps[n]) for n in tnames}),
        "total": stored,
        "free": free,
        "shared": sum(tparams[pid].numel() for pid in tshared),
        "private": stored - sum(tparams[pid].numel() for pid in tshared),
        "orthogonal_matrices": len(free_map),
    }
    allp = _params(model)
    report["total"] = sum(p.numel() for p in allp.values())
    report["trainable"] = sum(p.numel() for p in allp.values() if p.requires_grad)
    notes = []
    other = [role for role, paper in PAPER_CNNS.items() if report[role] not in (None, paper)]
    if other:
        notes.append("the total is of a model with " + " and ".join(f"{role}={report[role]}" for role in other)
                     + ", not the paper's " + " and ".join(PAPER_CNNS[role] for role in other)
                     + ": effvid info av " + " ".join(f"--{role.replace('_', '-')} {PAPER_CNNS[role]}" for role in other)
                     + " counts the paper's model")
    t = report["transformers"]
    if t["unique_modules"] < len(tnames):  # the rows' totals add up to more than the model has
        notes.append(f"the {len(tnames)} transformer roles are {t['unique_modules']} module(s): a module's "
                     "parameters are shared between the roles it serves, listed in each of their rows and "
                     "counted once in the totals")
    if free_map:
        notes.append(
            "S is kept orthogonal by torch.nn.utils.parametrizations.orthogonal, which stores a full "
            "rank x rank 'original' tensor per S (counted in 'total', as a full S matrix would be) of which "
            "only the strict lower triangle is used; 'free' counts rank*(rank-1)/2 per S. It also keeps a "
            "rank x rank 'base' buffer per S (not a parameter)."
        )
    report["notes"] = notes
    return report


def format_parameter_report(report_or_model) -> str:
    """Human-readable table of :func:`parameter_report` (accepts the report or the model)."""
    r = report_or_model if isinstance(report_or_model, dict) else parameter_report(report_or_model)
    cnns = "".join(f"  {role}={r[role]} (" + ("the paper's" if r[role] == paper else f"the paper's: {paper}") + ")"
                   for role, paper in PAPER_CNNS.items() if r.get(role))
    lines = [f"AV model{cnns}  sharing={r['sharing']}  fusion={r['fusion']}", ""]
    lines.append(f"{'component':<24}{'total':>14}{'private':>14}{'shared':>14}")
    for name, c in r["components"].items():
        lines.append(f"{name:<24}{c['total']:>14,}{c['private']:>14,}{c['shared']:>14,}")
    t = r["transformers"]
    lines += [
        "",
        f"transformers ({len(t['names'])} role{'' if len(t['names']) == 1 else 's'}, {t['unique_modules']} "
        f"module(s)): {t['total']:,} parameters "
        f"({t['shared']:,} shared between transformers, {t['private']:,} private)",
    ]
    if t["orthogonal_matrices"]:
        lines.append(f"  with orthogonal S counted by degrees of freedom: {t['free']:,} "
                     f"({t['orthogonal_matrices']} S matrices)")
    lines.append(f"model total: {r['total']:,} parameters ({r['trainable']:,} trainable)")
    for note in r["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)
