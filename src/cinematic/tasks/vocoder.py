"""HiFi-GAN vocoder task: `cinematic train vocoder --data_dir DIR` (speech) and the music route's
`vocoder_music` (same model at the music `MelConfig`).

Data: every audio file below DIR (mono, resampled to the mel rate once and cached), random
`vocoder.segment_size` crops for training, whole held-out clips (capped at `data.segment_duration`)
for validation. With `vocoder.mel_dir` the input mels come from the acoustic model instead
(ground-truth-aligned fine-tuning, §4 of the paper); frame counts are checked against the audio.

Training is the paper's Algorithm: two phases per step on the shared trainer — the discriminators
(MPD + MSD) on real vs. detached generated audio, then the generator on adversarial + feature
matching + mel L1 — with the generated audio carried from one phase to the next in `scratch`.

The checkpoint's task state holds the mel front end ("mel_config") and the resolved `HiFiGANConfig`
("model_config"); inference is `cinematic.generation.vocode.Vocoder.from_checkpoint`. The family records
(`FAMILIES`, at the end) register both tasks, the loader, the quickstart stage and `cinematic vocode`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from cinematic.configs import Config
from cinematic.configs.model_config import MelConfig, VocoderConfig
from cinematic.data.audio import AUDIO_SUFFIXES, MelSpectrogram
from cinematic.errors import UserError
from cinematic.generation.vocode import Vocoder, check_vocoder_checkpoint, hifigan_config
from cinematic.models.hifigan import (
    Generator,
    HiFiGANConfig,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    discriminate,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from cinematic.training.family import CommandGroups, ModelFamily, add_debug_flag
from cinematic.training.task import BuildContext, Built, Media, Phase, StepOutput
from cinematic.utils import item_rng

log = logging.getLogger(__name__)

# Multi-resolution STFT distance for validation (Yamamoto et al. 2020, Parallel WaveGAN §2.3):
# (n_fft, hop, win) at 22.05 kHz; spectral convergence + log-magnitude L1, averaged over resolutions.
STFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


# ------------------------------------------------------------------------------------------------ data


def find_audio_files(root: Path) -> list[Path]:
    """Every audio file below `root`, sorted (the same order on every rank)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")
    )


def audio_problem(path: Path) -> str | None:
    """Why the vocoder cannot train on an audio file (None when it can): its header cannot be read, it
    holds no samples, or its first or last block does not decode. Cheap enough for every file of a corpus
    at build time (the header and two small reads, not a full decode): the dataset reads its clips lazily,
    so a file found broken only then would stop the run mid-training."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as handle:
            if handle.frames <= 0:
                return "the file holds no audio samples"
            block = min(handle.frames, 4096)
            handle.read(block, dtype="float32")
            if handle.frames > block and handle.seekable():
                handle.seek(handle.frames - block)
                handle.read(block, dtype="float32")
    except Exception as exc:  # libsndfile reports corrupt data with several exception types
        return f"cannot decode audio ({exc}); is it a valid wav/flac/ogg/mp3?"
    return None


class AudioStore:
    """Mono float32 audio at one sample rate, with cheap random access to a span of samples.

    Files already at the rate are read span by span with soundfile (no full decode per crop); others
    are resampled once (soxr) and cached as .npy under `cache_dir`, then memory-mapped."""

    def __init__(self, sample_rate: int, cache_dir: Path | None):
        self.sample_rate = sample_rate
        self.cache_dir = cache_dir

    def _cache_path(self, path: Path) -> Path | None:
        if self.cache_dir is None:
            return None
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.sample_rate}"
        return self.cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"

    def _resampled(self, path: Path) -> np.ndarray:
        from cinematic.data.audio import load_audio
        from cinematic.utils import atomic_write_bytes

        cached = self._cache_path(path)
        if cached is not None and cached.is_file():
            return np.load(cached, mmap_mode="r")
        audio, _ = load_audio(path, self.sample_rate, mono=True)
        if cached is not None:
            import io

            buffer = io.BytesIO()
            np.save(buffer, audio)
            atomic_write_bytes(cached, buffer.getvalue())  # workers may race: readers see old or new
        return audio

    def _native(self, path: Path) -> bool:
        from cinematic.data.audio import audio_info

        return audio_info(path)[0] == self.sample_rate

    def length(self, path: Path) -> int:
        from cinematic.data.audio import audio_info

        sr, _, frames = audio_info(path)
        return frames if sr == self.sample_rate else len(self._resampled(path))

    def read(self, path: Path, start: int = 0, frames: int | None = None) -> np.ndarray:
        """Samples [start, start + frames) (fewer at the end of the file), mono float32."""
        if not self._native(path):
            audio = self._resampled(path)
            stop = None if frames is None else start + frames
            return np.array(audio[start:stop], dtype=np.float32)
        import soundfile as sf

        try:
            data = sf.read(str(path), start=start, frames=-1 if frames is None else frames, dtype="float32",
                           always_2d=True)[0]  # fmt: skip
        except Exception as exc:
            raise UserError(f"cannot decode audio file {path}: {exc}") from exc
        return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)


def load_aligned_mel(mel_path: Path, n_mels: int, n_samples: int, hop: int) -> np.ndarray:
    """A ground-truth-aligned mel for fine-tuning, checked against its WAV: (n_mels, n_samples // hop)."""
    try:
        mel = np.load(mel_path, mmap_mode="r")
    except Exception as exc:
        raise UserError(f"cannot read mel file {mel_path}: {exc}") from exc
    expected = n_samples // hop
    if mel.ndim != 2 or mel.shape[0] != n_mels:
        raise UserError(
            f"{mel_path}: expected a (n_mels={n_mels}, frames) array, got shape {tuple(mel.shape)}"
        )
    if mel.shape[1] != expected:
        raise UserError(
            f"{mel_path}: {mel.shape[1]} mel frames, but its audio has {n_samples} samples = {expected} frames "
            f"of hop {hop}. Save the acoustic model's teacher-forced (ground-truth-aligned) mel of exactly "
            "this WAV, with the vocoder's MelConfig."
        )
    return mel


class VocoderDataset(Dataset):
    """Items {"audio": (S,), "mel": (n_mels, S // hop)}: random crops (train) or whole clips (validation).

    Training crop i of epoch e comes from `item_rng(seed, e, i)`, so a resumed run draws the same crops;
    the trainer calls `set_epoch(e)` every epoch."""

    def __init__(
        self,
        paths: Sequence[Path],
        store: AudioStore,
        mel_cfg: MelConfig,
        segment_size: int | None,
        seed: int = 0,
        mel_paths: Sequence[Path] | None = None,
        max_samples: int | None = None,
    ):
        self.paths = list(paths)
        self.store = store
        self.mel_cfg = mel_cfg
        self.hop = mel_cfg.hop_length
        self.segment_size = segment_size
        self.max_samples = max_samples
        self.seed = seed
        self.epoch = 0
        self.mel_paths = list(mel_paths) if mel_paths is not None else None
        self._mel: MelSpectrogram | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def _compute_mel(self, audio: np.ndarray) -> torch.Tensor:
        if self._mel is None:  # built lazily: one per worker process
            self._mel = MelSpectrogram(self.mel_cfg)
        return self._mel(torch.from_numpy(audio))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path = self.paths[index]
        if self.mel_paths is not None:
            return self._aligned_item(index, path)
        if self.segment_size is None:  # validation: the clip from its start, capped, whole frames
            audio = self.store.read(path, 0, self.max_samples)
            # whole frames, and at least one window's worth (the reflect padding of the STFT needs it)
            frames = max(len(audio) // self.hop, math.ceil(self.mel_cfg.n_fft / self.hop))
            audio = np.pad(audio[: frames * self.hop], (0, max(0, frames * self.hop - len(audio))))
        else:
            n = self.store.length(path)
            start = int(item_rng(self.seed, self.epoch, index).integers(0, max(1, n - self.segment_size + 1)))
            audio = self.store.read(path, start, self.segment_size)
            audio = np.pad(
                audio, (0, self.segment_size - len(audio))
            )  # short clips: zero-padded (as the paper)
        return {"audio": torch.from_numpy(audio), "mel": self._compute_mel(audio)}

    def _aligned_item(self, index: int, path: Path) -> dict[str, torch.Tensor]:
        n = self.store.length(path)
        mel = load_aligned_mel(self.mel_paths[index], self.mel_cfg.n_mels, n, self.hop)
        total = mel.shape[1]
        if self.segment_size is None:
            frames = total if self.max_samples is None else min(total, max(1, self.max_samples // self.hop))
            start = 0
        else:
            frames = self.segment_size // self.hop
            start = int(item_rng(self.seed, self.epoch, index).integers(0, max(1, total - frames + 1)))
        audio = self.store.read(path, start * self.hop, frames * self.hop)
        mel_crop = np.array(mel[:, start : start + frames], dtype=np.float32)
        if mel_crop.shape[1] < frames:  # clip shorter than a segment: pad mel with silence, audio with zeros
            mel_crop = np.pad(
                mel_crop, ((0, 0), (0, frames - mel_crop.shape[1])), constant_values=math.log(1e-5)
            )
        audio = np.pad(audio, (0, frames * self.hop - len(audio)))
        return {"audio": torch.from_numpy(audio), "mel": torch.from_numpy(mel_crop)}


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items, padding variable-length validation clips (audio with 0, mel with log-silence);
    `frames` keeps each item's true length."""
    frames = torch.tensor([item["mel"].shape[-1] for item in items])
    longest = int(frames.max())
    hop = items[0]["audio"].shape[-1] // items[0]["mel"].shape[-1]
    mel = torch.stack(
        [F.pad(i["mel"], (0, longest - i["mel"].shape[-1]), value=math.log(1e-5)) for i in items]
    )
    audio = torch.stack([F.pad(i["audio"], (0, longest * hop - i["audio"].shape[-1])) for i in items])
    return {"mel": mel, "audio": audio, "frames": frames}


# ------------------------------------------------------------------------------------------------ metrics


def stft_distance(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT distance between (T,) waveforms: spectral convergence + log-magnitude L1."""
    total = real.new_zeros(())
    for n_fft, hop, win in STFT_RESOLUTIONS:
        window = torch.hann_window(win, device=real.device)
        mags = [
            torch.stft(x, n_fft, hop, win, window, pad_mode="constant", return_complex=True)
            .abs()
            .clamp_min(1e-7)
            for x in (real, fake)
        ]
        convergence = torch.linalg.norm(mags[0] - mags[1]) / torch.linalg.norm(mags[0]).clamp_min(1e-7)
        total = total + convergence + F.l1_loss(mags[1].log(), mags[0].log())
    return total / len(STFT_RESOLUTIONS)


def _spectrogram_figure(real: np.ndarray, fake: np.ndarray):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, mel, title in zip(axes, (real, fake), ("real", "generated")):
        ax.imshow(mel, origin="lower", aspect="auto", interpolation="none")
        ax.set_title(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------ task


class VocoderTask:
    """HiFi-GAN on the speech `MelConfig` (voice_model.audio unless vocoder.audio is set)."""

    name = "vocoder"

    def __init__(self) -> None:
        self._sample_set: VocoderDataset | None = None
        self.mel_cfg: MelConfig | None = None
        self.model_cfg: HiFiGANConfig | None = None
        self.lambda_mel = 45.0
        self.lambda_fm = 2.0
        self._loss_mels: dict[str, MelSpectrogram] = {}

    def mel_config(self, cfg: Config) -> MelConfig:
        return cfg.vocoder.audio or cfg.voice_model.audio

    # ----------------------------------------------------------------------------------------- build

    def build(self, cfg: Config, data_dir: Path, ctx: BuildContext) -> Built:
        from cinematic.data.balance import stratified_split

        self.mel_cfg = self.mel_config(cfg)
        self.model_cfg = hifigan_config(cfg.vocoder, self.mel_cfg)
        if ctx.restored_state and "mel_config" in ctx.restored_state:
            restored = MelConfig.model_validate(ctx.restored_state["mel_config"])
            if restored != self.mel_cfg:
                raise UserError(
                    "the checkpoint being resumed was trained for another mel front end: "
                    + "; ".join(restored.differences(self.mel_cfg))
                )
        self.lambda_mel, self.lambda_fm = cfg.vocoder.lambda_mel, cfg.vocoder.lambda_fm
        hop, segment = self.mel_cfg.hop_length, cfg.vocoder.segment_size
        if segment % hop:
            raise UserError(
                f"vocoder.segment_size ({segment}) must be a multiple of the mel hop_length ({hop})"
            )

        paths = find_audio_files(Path(data_dir))
        if not paths:
            raise UserError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found below {data_dir}")
        paths = _readable(paths, ctx)
        if not paths:
            raise UserError(
                f"none of the audio files below {data_dir} can be read (each was reported above); "
                "check that they are valid wav/flac/ogg/mp3 files"
            )
        store = AudioStore(
            self.mel_cfg.sample_rate, ctx.cache_dir / f"vocoder_audio_{self.mel_cfg.sample_rate}"
        )
        mel_paths = self._aligned_mels(cfg, Path(data_dir), paths, store) if cfg.vocoder.mel_dir else None
        if mel_paths is not None:
            paths = [p for p, m in zip(paths, mel_paths) if m is not None]
            mel_paths = [m for m in mel_paths if m is not None]

        groups = [str(p.parent.relative_to(data_dir)) for p in paths]  # speaker / album folders
        train_idx, val_idx = stratified_split(
            groups, cfg.data.val_fraction, cfg.training.seed, max_val=cfg.data.max_val_items
        )
        pick = lambda seq, idx: None if seq is None else [seq[i] for i in idx]  # noqa: E731
        max_val = int(cfg.data.segment_duration * self.mel_cfg.sample_rate)
        train = VocoderDataset(pick(paths, train_idx), store, self.mel_cfg, segment, cfg.training.seed,
                               pick(mel_paths, train_idx))  # fmt: skip
        val = VocoderDataset(pick(paths, val_idx), store, self.mel_cfg, None, cfg.training.seed,
                             pick(mel_paths, val_idx), max_samples=max_val) if val_idx else None  # fmt: skip
        log.info(
            "vocoder: %d training / %d validation clips at %d Hz (hop %d), generator %s",
            len(train),
            len(val) if val else 0,
            self.mel_cfg.sample_rate,
            hop,
            self.model_cfg.upsample_rates,
        )
        self._sample_set = val or train
        width = self.model_cfg.discriminator_width
        models = {
            "generator": Generator(self.model_cfg),
            "mpd": MultiPeriodDiscriminator(self.model_cfg.mpd_periods, width),
            "msd": MultiScaleDiscriminator(width),
        }
        if cfg.vocoder.init_from and ctx.restored_state is None:
            self._initialize_from(cfg.vocoder.init_from, models)
        return Built(
            models=models, train_set=train, val_set=val, collate_fn=collate,
            phases=[Phase("discriminator", ["mpd", "msd"]), Phase("generator", ["generator"])],
            ema_models=["generator"], throughput_unit="audio samples",
        )  # fmt: skip

    def _initialize_from(self, path: str, models: dict[str, nn.Module]) -> None:
        """Start from a trained vocoder's weights (generator: its EMA when kept), same MelConfig required."""
        from cinematic.checkpoint_io import read_checkpoint

        ckpt = read_checkpoint(path)
        check_vocoder_checkpoint(ckpt, f"vocoder.init_from: {path}")
        source = MelConfig.model_validate(ckpt["task_state"]["mel_config"])
        if source != self.mel_cfg:
            raise UserError(
                f"vocoder.init_from: {path} was trained for another mel front end ("
                + "; ".join(source.differences(self.mel_cfg))
                + ")"
            )
        for name, model in models.items():
            state = (ckpt.get("ema") or {}).get(name) or ckpt["model"].get(name)
            if state is None:
                raise UserError(f"vocoder.init_from: {path} has no {name!r} weights")
            try:
                model.load_state_dict(state)
            except RuntimeError as err:
                raise UserError(
                    f"vocoder.init_from: {path} holds a {name} of another shape (preset, channels or periods "
                    f"differ from this config): {str(err).splitlines()[0]}"
                ) from None
        log.info("vocoder: weights initialized from %s (step %s)", path, ckpt.get("step"))

    def _aligned_mels(
        self, cfg: Config, data_dir: Path, paths: list[Path], store: AudioStore
    ) -> list[Path | None]:
        """For each WAV, `<mel_dir>/<relative path>.npy` (or None); every mel found is checked now."""
        mel_dir = Path(cfg.vocoder.mel_dir)
        if not mel_dir.is_dir():
            raise UserError(f"vocoder.mel_dir not found: {mel_dir}")
        found: list[Path | None] = []
        for path in paths:
            mel_path = mel_dir / path.relative_to(data_dir).with_suffix(".npy")
            if mel_path.is_file():
                load_aligned_mel(mel_path, self.mel_cfg.n_mels, store.length(path), self.mel_cfg.hop_length)
                found.append(mel_path)
            else:
                found.append(None)
        n_found = sum(m is not None for m in found)
        if n_found == 0:
            raise UserError(
                f"vocoder.mel_dir {mel_dir}: no mel for any WAV below {data_dir} (expected "
                f"{mel_dir / paths[0].relative_to(data_dir).with_suffix('.npy')} for {paths[0]})"
            )
        if n_found < len(paths):
            log.warning(
                "vocoder.mel_dir: %d of %d WAVs have no mel there; fine-tuning on the rest",
                len(paths) - n_found,
                len(paths),
            )
        return found

    # ---------------------------------------------------------------------------------------- losses

    def _loss_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Full-band log-mel (fmax = Nyquist) of the same front end, for the mel L1 (Eq. 2), in fp32."""
        key = str(wav.device)
        if key not in self._loss_mels:
            full_band = self.mel_cfg.model_copy(update={"fmax": None})
            self._loss_mels[key] = MelSpectrogram(full_band).to(wav.device)
        with torch.autocast(wav.device.type, enabled=False):
            return self._loss_mels[key](wav.float())

    def _generated(
        self, models: Mapping[str, nn.Module], mel: torch.Tensor, scratch: dict[str, Any]
    ) -> torch.Tensor:
        """The generator's audio for this batch: made once per step in the first phase that needs it."""
        fake, made_from = scratch.get("fake"), scratch.get("mel")
        same_batch = made_from is mel or (
            made_from is not None and made_from.shape == mel.shape and torch.equal(made_from, mel)
        )
        if fake is None or not same_batch:
            fake = models["generator"](mel)
            scratch["fake"], scratch["mel"] = fake, mel
        return fake

    def training_step(
        self,
        models: Mapping[str, nn.Module],
        batch: dict[str, torch.Tensor],
        phase: str,
        scratch: dict[str, Any],
    ) -> StepOutput:
        mel = batch["mel"]
        real = batch["audio"].unsqueeze(1)  # (B, 1, S)
        num_items = real.numel()
        if phase == "discriminator":
            fake = self._generated(models, mel, scratch).detach()
            mpd_r, mpd_g, _, _ = discriminate(models["mpd"], real, fake)
            msd_r, msd_g, _, _ = discriminate(models["msd"], real, fake)
            loss_mpd, loss_msd = discriminator_loss(mpd_r, mpd_g), discriminator_loss(msd_r, msd_g)
            return StepOutput(
                loss=loss_mpd + loss_msd,
                metrics={"d_mpd": loss_mpd.detach(), "d_msd": loss_msd.detach()},
                num_items=num_items,
            )
        if phase != "generator":
            raise ValueError(f"unknown phase {phase!r}")
        fake = self._generated(models, mel, scratch)
        if not fake.requires_grad and torch.is_grad_enabled():
            # the first phase ran the generator without autograd (e.g. frozen): run it again with it
            scratch.pop("fake")
            fake = self._generated(models, mel, scratch)
        scratch.pop("fake", None)  # release the graph's reference once used
        loss_mel = F.l1_loss(self._loss_mel(fake.squeeze(1)), self._loss_mel(real.squeeze(1)))
        _, mpd_g, mpd_fr, mpd_fg = discriminate(models["mpd"], real, fake)
        _, msd_g, msd_fr, msd_fg = discriminate(models["msd"], real, fake)
        loss_adv = generator_adversarial_loss(mpd_g) + generator_adversarial_loss(msd_g)
        loss_fm = feature_matching_loss(mpd_fr, mpd_fg) + feature_matching_loss(msd_fr, msd_fg)
        loss = loss_adv + self.lambda_fm * loss_fm + self.lambda_mel * loss_mel
        return StepOutput(
            loss=loss,
            metrics={"mel_l1": loss_mel.detach(), "g_adv": loss_adv.detach(), "g_fm": loss_fm.detach()},
            num_items=num_items,
        )

    # ------------------------------------------------------------------------------------ validation

    def validate(self, models: Mapping[str, nn.Module], loader: Any) -> dict[str, float]:
        """Mel L1 (full band, as the training loss) and multi-resolution STFT distance per held-out clip."""
        generator = models["generator"]
        hop = self.mel_cfg.hop_length
        mel_l1, stft, count = 0.0, 0.0, 0
        for batch in loader:
            fake = generator(batch["mel"]).squeeze(1).float()  # AMP: STFTs need fp32
            real = batch["audio"]
            for i, frames in enumerate(batch["frames"].tolist()):
                r, g = real[i, : frames * hop], fake[i, : frames * hop]
                mel_l1 += F.l1_loss(self._loss_mel(g), self._loss_mel(r)).item()
                stft += stft_distance(r, g).item()
                count += 1
        if count == 0:
            return {}
        return {"val/loss": mel_l1 / count, "val/mel_l1": mel_l1 / count, "val/stft": stft / count}

    def sample(self, models: Mapping[str, nn.Module], step: int, out_dir: Path) -> list[Media]:
        """The first validation clip (else a training crop): real and generated audio and mels."""
        dataset = self._sample_set
        if dataset is None or len(dataset) == 0:
            return []
        item = dataset[0]
        generator = models["generator"]
        device = next(generator.parameters()).device  # a dataset item, not a batch: still on the CPU
        fake = generator(item["mel"].unsqueeze(0).to(device))[0, 0].float().cpu()
        real = item["audio"]
        sr = self.mel_cfg.sample_rate
        figure = _spectrogram_figure(self._loss_mel(real).numpy(), self._loss_mel(fake).numpy())
        return [
            Media("audio", "vocoder/real", real.numpy(), sample_rate=sr),
            Media("audio", "vocoder/generated", fake.numpy(), sample_rate=sr),
            Media("image", "vocoder/mel_real_vs_generated", figure),
        ]

    # ------------------------------------------------------------------------------------- state

    def export_state(self) -> dict[str, Any]:
        """The MelConfig (checked by every user of this vocoder) and the resolved model settings."""
        return {"mel_config": self.mel_cfg.model_dump(), "model_config": asdict(self.model_cfg)}


def _readable(paths: list[Path], ctx: BuildContext) -> list[Path]:
    """The files the vocoder can read; each other one is reported to `ctx.skipped` (raises under
    data.strict) and left out."""
    usable = []
    for path in paths:
        problem = audio_problem(path)
        if problem is None:
            usable.append(path)
        else:
            ctx.skipped.skip(path, problem)
    return usable


class MusicVocoderTask(VocoderTask):
    """HiFi-GAN on the music audio route's `MelConfig` (music_model.audio), trained under vocoder_music/."""

    name = "vocoder_music"

    def mel_config(self, cfg: Config) -> MelConfig:
        return cfg.music_model.audio


# ------------------------------------------------------------------------------------------- quickstart


QUICKSTART_STEPS = 200  # ~1.5 min on 2 quiet cores: the voice stage's samples need a vocoder that learned


def quickstart(qs: Any) -> list[Path]:
    """Train a tiny speech vocoder on the demo voices (about a minute on CPU), report the held-out mel L1
    before and after, and write a copy-synthesis sample of a held-out clip.

    The checkpoint lands in <work_dir>/vocoder/checkpoints/, where the voice stage looks for it."""
    from cinematic.data.audio import load_audio, save_audio
    from cinematic.data.balance import stratified_split
    from cinematic.training.trainer import run_training

    cfg = qs.fresh_config()
    cfg.training.validate_at_start = True
    cfg.training.max_steps = QUICKSTART_STEPS
    # validate only before and after (the numbers reported), on a few clips: the stage must stay ~1 min
    cfg.training.validate_every_steps = cfg.training.checkpoint_every_steps = QUICKSTART_STEPS
    cfg.data.max_val_items = min(cfg.data.max_val_items, 4)
    data_dir = Path(qs.data_root) / "voice"
    result = run_training(VocoderTask(), cfg, data_dir)
    before = (result.metrics_before or {}).get("val/mel_l1", float("nan"))
    qs.report("vocoder", "val/mel_l1", before, result.metrics_after.get("val/mel_l1", float("nan")))

    vocoder = Vocoder.from_checkpoint(result.best_checkpoint or result.last_checkpoint)
    paths = find_audio_files(data_dir)
    _, val_idx = stratified_split(
        [str(p.parent.relative_to(data_dir)) for p in paths], cfg.data.val_fraction, cfg.training.seed,
        max_val=cfg.data.max_val_items,
    )  # fmt: skip
    clip = paths[val_idx[0] if val_idx else 0]
    audio, _ = load_audio(clip, vocoder.sample_rate)
    out = save_audio(
        Path(qs.samples_dir) / "vocoder_copy_synthesis.wav",
        vocoder.copy_synthesis(audio),
        vocoder.sample_rate,
    )
    print(f"  copy-synthesis of {clip.name} (held out) → {out}", flush=True)
    return [out]


# ------------------------------------------------------------------------------------------- commands


def add_commands(groups: CommandGroups) -> None:
    """`cinematic vocode`."""
    v = groups.top.add_parser("vocode", help="mel (or a WAV, for copy-synthesis) to waveform with HiFi-GAN")
    v.add_argument("--checkpoint", required=True)
    src = v.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav")
    src.add_argument("--mel", help=".npy log-mel array (n_mels, frames)")
    v.add_argument(
        "--chunk_frames",
        "--chunk-frames",
        type=int,
        default=None,
        help="synthesize long inputs in chunks of this many frames",
    )
    v.add_argument("--device", default="cpu")
    v.add_argument("--out", required=True)
    add_debug_flag(v)
    v.set_defaults(handler="cinematic.generation.vocode:vocode_command")


FAMILIES = [
    ModelFamily(
        name="vocoder",
        task=VocoderTask,
        config=VocoderConfig,
        section="vocoder",
        load=Vocoder.from_checkpoint,
        inference_models=("generator",),
        quickstart=quickstart,
        quickstart_title="vocoder (HiFi-GAN, speech)",
        quickstart_order=10,
        add_commands=add_commands,
    ),
    ModelFamily(
        name="vocoder_music",
        task=MusicVocoderTask,
        config=VocoderConfig,
        section="vocoder",
        load=Vocoder.from_checkpoint,
        inference_models=("generator",),
        trainable=True,
        data_subdir="music",
    ),
]
