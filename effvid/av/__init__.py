"""Parameter-efficient audio-visual transformers (Lee et al., ICLR 2021).

* audio: :func:`read_audio`, :class:`LogMelSpectrogram`, :func:`mel_filterbank`, :class:`SpecAugment`
* long videos: :class:`LongVideoSampler` → :class:`AVSequence`, :func:`collate_av_sequences`
* model: :func:`create_av_model` → :class:`AVModel`; :func:`parameter_report`,
  :func:`format_parameter_report`
* building blocks: :class:`FactorizedLinear`, :class:`TransformerLayer`,
  :class:`TransformerEncoder`, :func:`build_transformers`, the clip encoders in
  :mod:`effvid.av.encoders`

See docs/av.md.
"""

from .audio import (AudioDecodeError, AudioWindow, LogMelSpectrogram, SpecAugment, hz_to_mel, mel_filterbank,
                    mel_to_hz, read_audio)
from .encoders import AudioResNet, ResNet3D, build_audio_encoder, build_visual_encoder
from .model import AVModel, AVOutput, create_av_model, format_parameter_report, parameter_report
from .sequence import AVSequence, LongVideoSampler, collate_av_sequences, frames_to_clips
from .transformer import SHARING_MODES, FactorizedLinear, TransformerEncoder, TransformerLayer, build_transformers

__all__ = [
    "AudioDecodeError", "AudioWindow", "read_audio", "hz_to_mel", "mel_to_hz", "mel_filterbank",
    "LogMelSpectrogram", "SpecAugment",
    "AVSequence", "LongVideoSampler", "collate_av_sequences", "frames_to_clips",
    "AudioResNet", "ResNet3D", "build_audio_encoder", "build_visual_encoder",
    "SHARING_MODES", "FactorizedLinear", "TransformerLayer", "TransformerEncoder", "build_transformers",
    "AVModel", "AVOutput", "create_av_model", "parameter_report", "format_parameter_report",
]
