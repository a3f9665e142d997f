"""Mel → waveform with a trained HiFi-GAN: the `Vocoder` object and `cinematic vocode`.

`Vocoder` is the stable interface the voice model (speech) and the music audio route call::

    from cinematic import load
    vocoder = load("work_dir/vocoder/checkpoints/best.pth")     # or Vocoder.from_checkpoint(checkpoint)
    vocoder.check_mel_config(my_model_mel_config)               # UserError naming differing fields
    wav = vocoder.vocode(mel)                                   # (n_mels, T) → (T · hop,) float32 ndarray
    wav = vocoder.vocode(mel, chunk_frames=200)                 # long inputs: seamless chunks
    for piece in vocoder.stream(mel, chunk_frames=50): ...      # streaming: audio as it is made
    wav = vocoder.copy_synthesis("in.wav")                      # analysis mel → resynthesis

Weight norm is folded into the weights once at load time, and synthesis runs the generator's
`InferenceGenerator` (channels-last convolutions, in-place activations; the same outputs within 1e-4,
1.5–1.9× faster on CPU) under `inference_mode`. `vocoder.generator` stays the plain module.
Chunked synthesis gives each chunk `context_frames` of mel on both sides (the generator's receptive
field, a safe bound) and keeps only the centre, so the joined chunks equal one-shot synthesis.

A checkpoint is a vocoder's when it holds a "generator" model and a mel config (the speech `vocoder` and
the music `vocoder_music` tasks write the same layout). The generator is built from the resolved
`HiFiGANConfig` stored in it (`task_state["model_config"]`; older checkpoints: "generator_config"),
never from the config section, so renaming a config key cannot break a checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cinematic.checkpoint_io import model_state_dict, read_checkpoint, strip_prefixes
from cinematic.configs.model_config import MelConfig, VocoderConfig
from cinematic.errors import UserError
from cinematic.models.hifigan import PRESETS, Generator, HiFiGANConfig

log = logging.getLogger(__name__)

SILENCE = float(np.log(1e-5))
"""Log-mel value of digital silence (the mel front end's floor); used to pad batches."""


def hifigan_config(section: VocoderConfig, mel: MelConfig) -> HiFiGANConfig:
    """The model settings a `vocoder` config section gives at a mel front end: its preset, with the
    generator keys it sets (null keys keep the preset's), and its discriminator settings."""
    generator_keys = {key: getattr(section, key) for key in PRESETS[section.preset]}
    try:
        return HiFiGANConfig.from_preset(
            section.preset,
            mel.n_mels,
            mel.hop_length,
            **generator_keys,
            mpd_periods=section.mpd_periods,
            discriminator_width=section.discriminator_width,
        )
    except ValueError as err:
        raise UserError(f"vocoder config: {err}") from None


def is_vocoder_checkpoint(checkpoint: dict[str, Any]) -> bool:
    """Whether a checkpoint holds a HiFi-GAN generator and the mel front end it was trained on."""
    state = checkpoint.get("task_state") or {}
    return "generator" in (checkpoint.get("model") or {}) and "mel_config" in state


def check_vocoder_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint") -> None:
    """`UserError` unless `checkpoint` is a vocoder's (`is_vocoder_checkpoint`)."""
    if not is_vocoder_checkpoint(checkpoint):
        raise UserError(
            f"{source} is a {checkpoint.get('task')!r} checkpoint, not a vocoder's (it has no HiFi-GAN "
            "generator and mel config); pass a checkpoint of `cinematic train vocoder`"
        )


def checkpoint_model_config(checkpoint: dict[str, Any]) -> HiFiGANConfig:
    """The `HiFiGANConfig` a vocoder checkpoint was trained with (checkpoints written before it was
    stored hold the resolved generator settings under "generator_config")."""
    state = checkpoint["task_state"]
    stored = state.get("model_config") or state.get("generator_config")
    if stored is None:
        raise UserError("the vocoder checkpoint holds no generator settings (model_config)")
    return HiFiGANConfig(**stored)


class Vocoder:
    """A trained HiFi-GAN generator plus the `MelConfig` it was trained on."""

    def __init__(self, generator: Generator, mel_config: MelConfig, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.mel_config = mel_config
        self.generator = generator.remove_weight_norm().eval().to(self.device)
        for p in self.generator.parameters():
            p.requires_grad_(False)
        # what synthesis runs: the same function, computed faster (channels-last, in place; hifigan.py)
        self.synthesizer = self.generator.inference()
        if generator.hop_length != mel_config.hop_length:
            raise UserError(
                f"vocoder generator upsamples by {generator.hop_length}, mel hop is {mel_config.hop_length}"
            )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path | dict[str, Any],
        device: str | torch.device = "cpu",
        use_ema: bool = True,
        checkpoint_path: str | Path | None = None,
    ) -> Vocoder:
        """A ready vocoder from a vocoder checkpoint (a dict, or a path to read): the generator's EMA
        weights when the run kept them (and `use_ema`), built from the stored `HiFiGANConfig`.
        `checkpoint_path`: where a given dict was read from (for messages)."""
        source = str(checkpoint if isinstance(checkpoint, str | Path) else checkpoint_path or "checkpoint")
        ckpt = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
        check_vocoder_checkpoint(ckpt, source)
        generator = Generator(checkpoint_model_config(ckpt))
        generator.load_state_dict(strip_prefixes(model_state_dict(ckpt, "generator", prefer_ema=use_ema)))
        return cls(generator, MelConfig.model_validate(ckpt["task_state"]["mel_config"]), device)

    # -------------------------------------------------------------------------------------- properties

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.mel_config.hop_length

    @property
    def n_mels(self) -> int:
        return self.mel_config.n_mels

    @property
    def context_frames(self) -> int:
        """Mel frames of context each chunk gets on both sides in chunked synthesis."""
        return self.generator.context_frames()

    def check_mel_config(self, other: MelConfig, what: str = "the given mels") -> None:
        """Raise `UserError` naming every field where `other` differs from the vocoder's MelConfig."""
        differences = self.mel_config.differences(other)
        if differences:
            raise UserError(
                f"this vocoder was trained on another mel front end than {what} ("
                + "; ".join(f"vocoder {d}" for d in differences)
                + "). Train or pick a vocoder with the same MelConfig."
            )

    # -------------------------------------------------------------------------------------- synthesis

    def _as_batch(self, mel: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
        mel = torch.as_tensor(np.asarray(mel) if not isinstance(mel, torch.Tensor) else mel)
        single = mel.dim() == 2
        if single:
            mel = mel.unsqueeze(0)
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise UserError(
                f"mel must be (n_mels={self.n_mels}, frames) or (batch, {self.n_mels}, frames), got {tuple(mel.shape)}"
            )
        if mel.shape[-1] == 0:
            raise UserError("mel has no frames")
        if not torch.isfinite(mel).all():
            raise UserError("mel contains NaN or infinite values")
        return mel.to(self.device, torch.float32), single

    def stream(self, mel: torch.Tensor | np.ndarray, chunk_frames: int = 64) -> Iterator[np.ndarray]:
        """Yield the waveform chunk by chunk: (chunk_frames · hop,) pieces, or (B, ·) for a batch.

        Each chunk is synthesized from its frames plus `context_frames` on both sides and cut back to
        its own span, so concatenating the pieces gives `vocode(mel)` without seams."""
        if chunk_frames < 1:
            raise UserError(f"chunk_frames must be >= 1, got {chunk_frames}")
        batch, single = self._as_batch(mel)
        total, ctx, hop = batch.shape[-1], self.context_frames, self.hop_length
        with torch.inference_mode():
            for start in range(0, total, chunk_frames):
                stop = min(total, start + chunk_frames)
                lo, hi = max(0, start - ctx), min(total, stop + ctx)
                audio = self.synthesizer(batch[..., lo:hi])[:, 0, (start - lo) * hop : (stop - lo) * hop]
                audio = audio.float().cpu().numpy()
                yield audio[0] if single else audio

    def vocode(self, mel: torch.Tensor | np.ndarray, chunk_frames: int | None = None) -> np.ndarray:
        """Log-mel (n_mels, T) or (B, n_mels, T) → float32 waveform (T · hop,) or (B, T · hop) in [-1, 1].

        `chunk_frames`: synthesize in chunks of this many frames (bounded memory for long inputs; the
        result equals one-shot synthesis up to float rounding). None: one pass."""
        batch, single = self._as_batch(mel)
        if chunk_frames is not None and chunk_frames < batch.shape[-1]:
            return np.concatenate(list(self.stream(mel, chunk_frames)), axis=-1)
        with torch.inference_mode():
            audio = self.synthesizer(batch)[:, 0].float().cpu().numpy()
        return audio[0] if single else audio

    def vocode_batch(self, mels: Sequence[torch.Tensor | np.ndarray]) -> list[np.ndarray]:
        """Mels of different lengths in one pass (padded with silence); each output cut to frames · hop.

        The last `context_frames` of a shorter item may differ slightly from vocoding it alone."""
        if not mels:
            return []
        tensors = [self._as_batch(m)[0][0] for m in mels]
        longest = max(t.shape[-1] for t in tensors)
        padded = torch.stack(
            [torch.nn.functional.pad(t, (0, longest - t.shape[-1]), value=SILENCE) for t in tensors]
        )
        audio = self.vocode(padded)
        return [audio[i, : t.shape[-1] * self.hop_length] for i, t in enumerate(tensors)]

    def mel(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The analysis log-mel of a waveform at the vocoder's rate, with the vocoder's MelConfig."""
        from cinematic.data.audio import mel_spectrogram

        return mel_spectrogram(torch.as_tensor(np.asarray(wav, dtype=np.float32)), self.mel_config)

    def copy_synthesis(
        self,
        wav: str | Path | np.ndarray | torch.Tensor,
        sample_rate: int | None = None,
        chunk_frames: int | None = None,
    ) -> np.ndarray:
        """Analysis mel of `wav` (a file, or samples at `sample_rate`, default the vocoder's) → resynthesis.

        The user's quick quality check: what the vocoder makes of a mel it can reproduce at best."""
        from cinematic.data.audio import load_audio, resample

        if isinstance(wav, str | Path):
            audio, _ = load_audio(wav, self.sample_rate, mono=True)
        else:
            audio = np.asarray(wav.detach().cpu() if isinstance(wav, torch.Tensor) else wav, dtype=np.float32)
            if audio.ndim == 2:
                audio = audio.mean(axis=0)
            if sample_rate is not None and sample_rate != self.sample_rate:
                audio = resample(audio, sample_rate, self.sample_rate)
        window = self.mel_config.n_fft  # the analysis mel's reflect padding needs at least one window
        if len(audio) < window:
            source = f"{wav}: " if isinstance(wav, str | Path) else ""
            raise UserError(
                f"{source}audio too short for copy-synthesis: {len(audio)} samples "
                f"({len(audio) / self.sample_rate * 1000:.0f} ms) < one analysis window ({window} samples); "
                "pass a longer clip"
            )
        return self.vocode(self.mel(audio), chunk_frames=chunk_frames)


# ------------------------------------------------------------------------------------------------- CLI


def vocode_command(args: argparse.Namespace) -> int:
    """`cinematic vocode --checkpoint VCKPT (--wav in.wav | --mel mel.npy) --out out.wav`."""
    from cinematic.data.audio import save_audio

    vocoder = Vocoder.from_checkpoint(args.checkpoint, device=args.device)
    start = time.perf_counter()
    if args.wav:
        audio = vocoder.copy_synthesis(args.wav, chunk_frames=args.chunk_frames)
    else:
        path = Path(args.mel)
        if not path.is_file():
            raise UserError(f"mel file not found: {path}")
        try:
            mel = np.load(path)
        except Exception as exc:
            raise UserError(f"{path}: not a readable .npy array ({exc})") from None
        audio = vocoder.vocode(mel, chunk_frames=args.chunk_frames)
    elapsed = time.perf_counter() - start
    if audio.ndim == 2:  # a batch of mels in one .npy: one file each
        out = Path(args.out)
        paths = [
            save_audio(out.with_name(f"{out.stem}_{i}{out.suffix}"), a, vocoder.sample_rate)
            for i, a in enumerate(audio)
        ]
    else:
        paths = [save_audio(args.out, audio, vocoder.sample_rate)]
    seconds = audio.shape[-1] * (audio.shape[0] if audio.ndim == 2 else 1) / vocoder.sample_rate
    print(f"wrote {', '.join(map(str, paths))}: {seconds:.2f} s at {vocoder.sample_rate} Hz "
          f"({seconds / max(elapsed, 1e-9):.1f}× real time)")  # fmt: skip
    return 0
