"""The music task's audio route: the Music Transformer on mel-RVQ tokens of WAV files, rendered by a
HiFi-GAN trained on the same music (issue "Music Transformer, audio route").

Pipeline (`train_music.py --data_dir DIR` when DIR holds audio, or `music_model.representation: audio`):

1. **Tokenizer** — `cinematic.data.tokenizers.mel_rvq`: K residual codebooks of N entries fitted on the
   data set's log-mel frames (`music_model.audio`, `rvq_codebooks`, `rvq_codebook_size`), cached under
   `<work_dir>/cache/mel_rvq/` by data and settings, stored in every music checkpoint.
2. **Transformer** — the same `MusicTransformer` with `num_streams = K`: the K code embeddings of a step
   are summed and K heads predict the next step. Streams follow MusicGen's delay pattern
   (`cinematic.data.tokenizers.delay`), so one step emits codebook k of frame t − k for every k. Per
   stream the vocabulary is N codes + EMPTY (delay filler, never a target, never sampled) + BOS.
   Trained by the shared trainer under the task name "music" (`<work_dir>/music/`): `MusicTask.build`
   hands audio runs to `AudioMusicTask` (this module), whose state says `representation: audio`.
3. **Vocoder** — `run_training("vocoder_music", ...)`: HiFi-GAN at `music_model.audio`, in
   `<work_dir>/vocoder_music/`, skipped when `--vocoder VCKPT` is given. It is then recorded in the music
   checkpoints (`task_state["vocoder"]`: its sha1 and its path relative to the run folder), so
   `cinematic generate music` finds it, also after the work folder moved; `cinematic export` embeds it.

Data: every audio file of the folder (mono, `music_model.audio.sample_rate`), with its `.json` labels,
plus tempo, loudness and brightness measured from the waveform (`cinematic.data.attributes`, cached
under `<work_dir>/cache/music_attributes/`; a value in the `.json` wins) as conditions.
Codes are cached per file under `<work_dir>/cache/music_audio_codes/<tokenizer>/`. Training items are
random crops of `max_seq_len` delayed steps (`item_rng(seed, epoch, index)`, so resume is exact); an
epoch has ⌈steps / max_seq_len⌉ items per piece. Validation cuts held-out pieces into consecutive
segments (every target counted once): `val/loss` is the NLL per code token, plus NLL per second of audio
and per-codebook losses.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from cinematic.configs import Config
from cinematic.configs.model_config import MusicModelConfig
from cinematic.data.attributes import piece_attributes
from cinematic.data.tokenizers.delay import StreamVocab, delayed_sequence
from cinematic.data.tokenizers.mel_rvq import MelRVQ, MelSource, _no_bar, fit_tokenizer_cached
from cinematic.errors import UserError
from cinematic.generation.music_audio import AudioMusicGenerator
from cinematic.tasks.music import (
    NULL_LABEL,
    active_conditions,
    attribute_names,
    attribute_sets,
    attribute_vocabularies,
    condition_ids,
    crop_sample_weights,
    evaluates_here,
    label_vocabularies,
    measured_pieces,
    model_config,
)
from cinematic.tasks.vocoder import MusicVocoderTask
from cinematic.training.family import ModelFamily
from cinematic.training.task import BuildContext, Built, Media, StepOutput
from cinematic.utils import item_rng

log = logging.getLogger(__name__)

MODEL = "music"
IGNORE_INDEX = -100
REPRESENTATION = "audio"


# ------------------------------------------------------------------------------------------------ data


@dataclass
class EncodedPiece:
    """One audio file as codes (K, T) with its labels."""

    path: Path
    codes: torch.Tensor
    labels: dict[str, Any]


def encode_pieces(
    items: Sequence[Any],
    rvq: MelRVQ,
    cache_dir: Path | None,
    progress: bool | None = None,
    source: MelSource | None = None,
) -> list[EncodedPiece]:
    """Codes of every audio item, cached per (file content, tokenizer) under cache_dir/music_audio_codes/."""
    from tqdm.auto import tqdm

    from cinematic.utils import atomic_write_bytes, file_sha1

    folder = Path(cache_dir) / "music_audio_codes" / rvq.fingerprint() if cache_dir is not None else None
    source = source or MelSource(rvq.mel_cfg, max_frames=0)
    pieces = []
    for item in tqdm(items, desc="encoding audio", unit="file", disable=_no_bar(progress)):
        cached = folder / f"{file_sha1(item.path)}.npy" if folder is not None else None
        codes = None
        if cached is not None and cached.is_file():
            try:
                codes = torch.from_numpy(np.load(cached).astype(np.int64))
            except (OSError, ValueError):
                codes = None
        if codes is None:
            mel = source(item.path)
            if mel is None:  # shorter than one analysis window (warned)
                continue
            codes = rvq.encode_mel(mel)
            if cached is not None:
                buffer = io.BytesIO()
                np.save(buffer, codes.numpy().astype(np.int16 if rvq.codebook_size < 32768 else np.int32))
                atomic_write_bytes(cached, buffer.getvalue())
        pieces.append(EncodedPiece(item.path, codes, dict(item.labels)))
    return pieces


class AudioCropDataset(Dataset):
    """Random crops of `seq_len + 1` delayed steps (input + shifted target) from each piece."""

    def __init__(
        self, sequences: Sequence[torch.Tensor], conditions: Sequence[np.ndarray], seq_len: int, seed: int
    ) -> None:
        self.sequences = list(sequences)
        self.conditions = list(conditions)
        self.seq_len = seq_len
        self.seed = seed
        self.epoch = 0
        counts = [max(1, math.ceil((s.shape[1] - 1) / seq_len)) for s in self.sequences]
        self.owner = np.repeat(np.arange(len(self.sequences)), counts)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.owner)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        piece = int(self.owner[index])
        seq = self.sequences[piece]
        need = self.seq_len + 1
        start = int(item_rng(self.seed, self.epoch, index).integers(0, max(1, seq.shape[1] - need + 1)))
        return {
            "tokens": seq[:, start : start + need],
            "conditions": torch.from_numpy(self.conditions[piece]),
        }


class AudioSegmentDataset(Dataset):
    """Consecutive segments of `seq_len + 1` steps sharing one boundary step (validation)."""

    def __init__(
        self, sequences: Sequence[torch.Tensor], conditions: Sequence[np.ndarray], seq_len: int
    ) -> None:
        self.items = [
            (seq[:, start : start + seq_len + 1], cond)
            for seq, cond in zip(sequences, conditions, strict=True)
            for start in range(0, seq.shape[1] - 1, seq_len)
        ]

    def set_epoch(self, epoch: int) -> None:  # deterministic; present for the trainer's uniform call
        pass

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        tokens, cond = self.items[index]
        return {"tokens": tokens, "conditions": torch.from_numpy(cond)}


def make_collate(vocab: StreamVocab):
    """Batch of (K, L_i + 1) crops → inputs (B, K, L), targets (B, K, L) with EMPTY/padding ignored."""

    def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        k_streams = items[0]["tokens"].shape[0]
        length = max(item["tokens"].shape[1] for item in items)
        tokens = torch.full((len(items), k_streams, length), vocab.empty_id, dtype=torch.long)
        for row, item in enumerate(items):
            tokens[row, :, : item["tokens"].shape[1]] = item["tokens"]
        targets = tokens[:, :, 1:].clone()
        targets[targets >= vocab.empty_id] = IGNORE_INDEX  # EMPTY is forced at sampling, never learned
        return {
            "inputs": tokens[:, :, :-1],
            "targets": targets,
            "conditions": torch.stack([item["conditions"] for item in items]),
        }

    return collate


# ------------------------------------------------------------------------------------------- task


class AudioMusicTask:
    """The audio route as a trainer task (name "music"): tokenizer, codes, K-stream NLL, samples, export.

    `MusicTask` (tasks/music.py) delegates every method here when `music_model.representation` is audio."""

    name = "music"

    def __init__(self) -> None:
        self.rvq: MelRVQ | None = None
        self.vocab: StreamVocab | None = None
        self.labels: dict[str, list[str]] = {}
        self.model_cfg: Any = None
        self.sample_labels: dict[str, str] = {}
        self.attribute_sets: dict[str, Any] = {}
        self.sample_seconds = 2.0
        self.evaluator: Any = None
        """`music_eval.TrainingEvaluator` when `music_model.eval_samples` > 0."""
        self.vocoder: Any = None
        """The recorded vocoder (`checkpoint_io.file_reference`; older checkpoints: an absolute path)."""
        self.seed = 0

    # --------------------------------------------------------------------------------- build

    def build(self, cfg: Config, data_dir: Path, ctx: BuildContext) -> Built:
        from cinematic.data.corpora import discover_music_corpus, split_positions
        from cinematic.models.music_transformer import MusicTransformer

        section = cfg.music_model
        items = discover_music_corpus(data_dir).of_kind("audio")  # seed layout or MAESTRO's audio
        if not items:
            raise UserError(
                f"{data_dir}: no audio files (*.wav, *.flac, *.ogg, *.mp3) for the music audio route"
            )
        restored = ctx.restored_state or {}
        self.seed = cfg.training_for("music").seed
        with ctx.local_main_first():
            # each file decoded once for fitting, report and codes; unreadable ones are skipped (reported)
            source = MelSource(section.audio, on_unreadable=ctx.skipped.skip)
            self.rvq = self._tokenizer(cfg, [item.path for item in items], ctx, restored, source)
            pieces = encode_pieces(items, self.rvq, ctx.cache_dir, source=source)
        if not pieces:
            raise UserError(
                f"{data_dir}: no usable audio file (each is unreadable or too short for one mel frame)"
            )
        self.vocab = StreamVocab(self.rvq.codebook_size)
        if "labels" in restored:  # resume: the checkpoint's vocabularies, never rebuilt from the data
            self.labels = {k: list(v) for k, v in restored["labels"].items()}
        else:
            self.labels = label_vocabularies([p.labels for p in pieces], active_conditions(section))
            self.labels.update(attribute_vocabularies(attribute_names(section, "audio"), "audio"))
        names = [name for name in self.labels if name in ("tempo", "loudness", "brightness")]
        with ctx.local_main_first():  # tempo, loudness, brightness: measured once per file (cached)
            for piece, found in zip(
                pieces, measured_pieces(pieces, names, ctx.cache_dir, "audio"), strict=True
            ):
                piece.labels = {**piece.labels, **piece_attributes(*found)}
        self.vocoder = restored.get("vocoder")
        self.model_cfg = model_config(
            section, self.vocab.size, self.labels, num_streams=self.rvq.num_codebooks
        )

        sequences = [delayed_sequence(p.codes, self.vocab) for p in pieces]
        conditions = [condition_ids(p.labels, self.labels) for p in pieces]
        groups = [str(p.labels.get("emotion", NULL_LABEL)) for p in pieces]
        by_path = {item.path: item for item in items}
        train_idx, val_idx = split_positions(  # the corpus's own split when it has one
            [by_path[p.path] for p in pieces],
            groups,
            cfg.data.val_fraction,
            self.seed,
            cfg.data.max_val_items,
        )
        pick = lambda seq, idx: [seq[i] for i in idx]  # noqa: E731
        train_set = AudioCropDataset(
            pick(sequences, train_idx), pick(conditions, train_idx), section.max_seq_len, self.seed
        )
        val_set = (
            AudioSegmentDataset(pick(sequences, val_idx), pick(conditions, val_idx), section.max_seq_len)
            if val_idx
            else None
        )
        weights = crop_sample_weights(cfg, [pieces[i].labels for i in train_idx], train_set.owner)
        self._pick_sample_labels([pieces[i].labels for i in train_idx])
        self.attribute_sets = attribute_sets(pick(conditions, train_idx), self.labels)
        # short: the trainer samples at every validation, and Griffin-Lim at 44.1 kHz is not free
        self.sample_seconds = min(
            2.0, (section.max_seq_len - self.rvq.num_codebooks) / self.rvq.frames_per_second
        )
        self.evaluator = None
        if section.eval_samples > 0 and val_idx and evaluates_here(cfg, ctx):  # `evaluate music`'s figures
            from cinematic.generation.music_eval import TrainingEvaluator

            fps = self.rvq.frames_per_second
            self.evaluator = TrainingEvaluator.build(
                [p.codes for p in pieces], [p.labels for p in pieces], train_idx, val_idx, self.labels,
                lambda codes: codes.shape[1] / fps, samples=section.eval_samples,
                length=max(1, round(self.sample_seconds * fps)), seq_len=section.max_seq_len, seed=self.seed,
            )  # fmt: skip
        frames = sum(pieces[i].codes.shape[1] for i in train_idx)
        log.info(
            "music (audio route): %d training / %d validation files, %.1f s of audio (%d frames × %d codebooks); "
            "labels %s",
            len(train_idx),
            len(val_idx),
            frames / self.rvq.frames_per_second,
            frames,
            self.rvq.num_codebooks,
            {k: len(v) - 1 for k, v in self.labels.items()},
        )
        return Built(
            models={MODEL: MusicTransformer(self.model_cfg)},
            train_set=train_set,
            val_set=val_set,
            collate_fn=make_collate(self.vocab),
            sample_weights=weights,
            throughput_unit="tokens",
        )

    def _tokenizer(
        self,
        cfg: Config,
        files: list[Path],
        ctx: BuildContext,
        restored: Mapping[str, Any],
        source: MelSource,
    ) -> MelRVQ:
        """The checkpoint's tokenizer on resume; else fitted on the data (or reused from the cache)."""
        section = cfg.music_model
        if "tokenizer" in restored:
            rvq = MelRVQ.from_state(restored["tokenizer"])
            if rvq.mel_cfg != section.audio:
                raise UserError(
                    "the checkpoint's audio tokenizer uses another mel front end: "
                    + "; ".join(rvq.mel_cfg.differences(section.audio))
                )
            return rvq
        rvq = fit_tokenizer_cached(
            files,
            section.audio,
            section.rvq_codebooks,
            section.rvq_codebook_size,
            ctx.cache_dir,
            source=source,
        )
        if ctx.is_main_process:
            from cinematic.data.tokenizers.mel_rvq import file_mels, format_report

            report = rvq.reconstruction_report(
                file_mels(files[:8], section.audio, progress=False, source=source)
            )
            log.info(
                "audio tokenizer reconstruction (first %d files):\n%s",
                min(8, len(files)),
                format_report(report),
            )
        return rvq

    def _pick_sample_labels(self, label_dicts: Sequence[Mapping[str, Any]]) -> None:
        from collections import Counter

        self.sample_labels = {}
        for name in self.labels:
            counts = Counter(str(d[name]) for d in label_dicts if d.get(name) not in (None, ""))
            if counts:
                self.sample_labels[name] = counts.most_common(1)[0][0]

    # ------------------------------------------------------------------------------ training

    @staticmethod
    def _losses(
        logits: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed NLL (scalar), per-stream summed NLL (K,) and per-stream target counts (K,)."""
        nll = F.cross_entropy(
            logits.float().permute(0, 3, 1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )  # (B, K, L)
        counted = targets != IGNORE_INDEX
        per_stream = (nll * counted).sum(dim=(0, 2))
        return per_stream.sum(), per_stream, counted.sum(dim=(0, 2))

    def training_step(
        self, models: Mapping[str, nn.Module], batch: Any, phase: str, scratch: dict[str, Any]
    ) -> StepOutput:
        targets = batch["targets"]
        logits = models[MODEL](batch["inputs"], batch["conditions"])  # (B, K, L, V)
        total, per_stream, counts = self._losses(logits, targets)
        loss = total / counts.sum().clamp(min=1)
        metrics: dict[str, float | torch.Tensor] = {
            f"loss_codebook{k}": (per_stream[k] / counts[k].clamp(min=1)).detach() for k in range(len(counts))
        }
        return StepOutput(loss=loss, metrics=metrics, num_items=counts.sum())

    @torch.no_grad()
    def validate(self, models: Mapping[str, nn.Module], loader: Any) -> dict[str, float]:
        model = models[MODEL]
        per_stream_sum = per_stream_count = None
        correct = 0.0
        for batch in loader:
            targets = batch["targets"]
            logits = model(batch["inputs"], batch["conditions"])
            _, per_stream, counts = self._losses(logits, targets)
            per_stream_sum = per_stream if per_stream_sum is None else per_stream_sum + per_stream
            per_stream_count = counts if per_stream_count is None else per_stream_count + counts
            correct += ((logits.argmax(-1) == targets) & (targets != IGNORE_INDEX)).sum().item()
        if per_stream_count is None or int(per_stream_count.sum()) == 0:
            return {}
        tokens = float(per_stream_count.sum())
        nll = float(per_stream_sum.sum())
        # every frame has K tokens: seconds = frames / frame rate, frames = tokens of codebook 0
        seconds = float(per_stream_count[0]) / self.rvq.frames_per_second
        metrics = {
            "val/loss": nll / tokens,
            "val/nll_per_token": nll / tokens,
            "val/nll_per_second": nll / max(seconds, 1e-9),
            "val/accuracy": correct / tokens,
        }
        for k in range(len(per_stream_count)):
            metrics[f"val/loss_codebook{k}"] = float(per_stream_sum[k]) / max(1.0, float(per_stream_count[k]))
        if self.evaluator is not None:  # music_model.eval_samples > 0
            metrics.update(self.evaluator.figures(AudioMusicGenerator(model, self.rvq, self.labels)))
        return metrics

    # -------------------------------------------------------------------------------- sample

    def sample(self, models: Mapping[str, nn.Module], step: int, out_dir: Path) -> list[Media]:
        """A few seconds generated: the decoded mel as an image, and audio (the recorded vocoder when
        there is one, else a Griffin-Lim preview — the music vocoder is trained after the transformer)."""
        from cinematic.generation.music_audio import griffin_lim, mel_figure

        generator = AudioMusicGenerator(models[MODEL], self.rvq, self.labels)
        codes = generator.generate_codes(**self.sample_labels, duration=self.sample_seconds, seed=step)
        mel = self.rvq.decode(codes)
        tag = "/".join(self.sample_labels.values()) or "unconditional"
        media = [Media("image", "sample/mel", mel_figure(mel.numpy(), f"step {step}: {tag}"))]
        wav = griffin_lim(mel, self.rvq.mel_cfg, n_iter=16)
        media.append(Media("audio", "sample/griffin_lim", wav, sample_rate=self.rvq.mel_cfg.sample_rate))
        return media

    # -------------------------------------------------------------------------------- export

    def export_state(self) -> dict[str, Any]:
        if self.rvq is None or self.model_cfg is None:
            raise RuntimeError("export_state() before build()")
        model_cfg = asdict(self.model_cfg)
        model_cfg["condition_sizes"] = list(model_cfg["condition_sizes"])
        return {
            "representation": REPRESENTATION,
            "tokenizer": self.rvq.state_dict(),
            "labels": {k: list(v) for k, v in self.labels.items()},
            "model_config": model_cfg,
            "sample_labels": dict(self.sample_labels),
            "attribute_sets": self.attribute_sets,
            "vocoder": self.vocoder,
        }


# ---------------------------------------------------------------------------------- train recipe


def record_vocoder(ckpt_dir: Path, vocoder: Path) -> list[Path]:
    """Record the vocoder in every checkpoint of a music run (`task_state["vocoder"]`): its sha1, file
    name and path relative to the run folder (`checkpoint_io.file_reference`)."""
    from cinematic.checkpoint_io import record_companion

    return record_companion(ckpt_dir, "vocoder", vocoder)


def check_vocoder(path: str | Path, cfg: Config) -> Path:
    """A vocoder checkpoint given with --vocoder: readable and at the music mel front end."""
    from cinematic.checkpoint_io import read_checkpoint
    from cinematic.generation.vocode import Vocoder

    vocoder = Vocoder.from_checkpoint(read_checkpoint(path))
    vocoder.check_mel_config(cfg.music_model.audio, "the music audio route (music_model.audio)")
    return Path(path)


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def train_audio_recipe(
    cfg: Config, data_dir: Path, resume: str | None = None, args: argparse.Namespace | None = None
) -> dict[str, Any]:
    """Tokenizer (cached) → transformer (task "music") → music vocoder (task "vocoder_music", unless
    `args.vocoder`), then the vocoder's path is recorded in the music checkpoints.

    Returns {"music": TrainResult, "vocoder": TrainResult | None, "vocoder_path": Path}."""
    from cinematic.training.trainer import run_training

    cfg.music_model.representation = REPRESENTATION
    given = getattr(args, "vocoder", None) if args is not None else None
    if given:  # fail before hours of training, not after
        check_vocoder(given, cfg)
    log.info("music audio route: 1/3 tokenizer + 2/3 transformer")
    music = run_training(AudioMusicTask(), cfg, Path(data_dir), resume=resume)
    vocoder_result = None
    if given:
        vocoder_path = Path(given)
    else:
        log.info("music audio route: 3/3 music vocoder (HiFi-GAN at music_model.audio)")
        vcfg = cfg.model_copy(deep=True)
        vcfg.training.run_name = None  # <work_dir>/vocoder_music/, whatever the transformer's run name
        vocoder_result = run_training(
            MusicVocoderTask(), vcfg, Path(data_dir), resume="auto" if resume else None
        )
        vocoder_path = vocoder_result.best_checkpoint or vocoder_result.last_checkpoint
    if _is_main_process():
        record_vocoder(music.run_dir / "checkpoints", vocoder_path)
        log.info(
            "music checkpoints in %s now record the vocoder %s", music.run_dir / "checkpoints", vocoder_path
        )
    return {"music": music, "vocoder": vocoder_result, "vocoder_path": vocoder_path}


# ------------------------------------------------------------------------------------ quickstart


QUICKSTART_STEPS = 200


def quickstart_config(qs: Any) -> Config:
    """The tiny preset for the audio route: the default front end with 80 mels so 2 minutes suffice."""
    cfg = qs.fresh_config()
    cfg.music_model.representation = REPRESENTATION
    cfg.music_model.audio = cfg.music_model.audio.model_copy(update={"n_mels": 80})
    cfg.training.run_name = "music_audio"  # the symbolic stage trains <runs>/music
    cfg.training.validate_at_start = True
    cfg.training.max_steps = QUICKSTART_STEPS
    cfg.training.validate_every_steps = cfg.training.checkpoint_every_steps = QUICKSTART_STEPS
    return cfg


def quickstart(qs: Any) -> list[Path]:
    """Tokenizer, a tiny audio-route transformer and a tiny music vocoder on the demo WAVs; writes
    `music_audio.wav` and prints the transformer's validation NLL before and after training."""
    from cinematic.data.audio import save_audio
    from cinematic.training.trainer import run_training

    cfg = quickstart_config(qs)
    data_dir = Path(qs.data_root) / "music"
    music = run_training(AudioMusicTask(), cfg, data_dir)
    before = (music.metrics_before or {}).get("val/loss", float("nan"))
    qs.report(
        "music audio", "val/loss (NLL per code)", before, music.metrics_after.get("val/loss", float("nan"))
    )
    vcfg = cfg.model_copy(deep=True)
    vcfg.training.run_name = None
    vocoder = run_training(MusicVocoderTask(), vcfg, data_dir)
    vbefore = (vocoder.metrics_before or {}).get("val/loss", float("nan"))
    qs.report("music vocoder", "val/loss", vbefore, vocoder.metrics_after.get("val/loss", float("nan")))
    vocoder_path = vocoder.best_checkpoint or vocoder.last_checkpoint
    ckpt = music.best_checkpoint or music.last_checkpoint
    record_vocoder(ckpt.parent, vocoder_path)

    from cinematic.checkpoint_io import read_checkpoint

    generator = AudioMusicGenerator.from_checkpoint(read_checkpoint(ckpt), checkpoint_path=ckpt)
    labels = {k: v[0] for k, v in generator.known_labels.items() if v}
    wav = generator.generate(**labels, duration=4.0, seed=0, guidance=1.0)
    out = save_audio(Path(qs.samples_dir) / "music_audio.wav", wav, generator.sample_rate)
    return [out]


def is_audio_checkpoint(checkpoint: dict[str, Any]) -> bool:
    return (
        checkpoint.get("task") == MODEL
        and (checkpoint.get("task_state") or {}).get("representation") == REPRESENTATION
    )


FAMILY = ModelFamily(
    name="music_audio",
    task=AudioMusicTask,
    config=MusicModelConfig,
    section="music_model",
    load=AudioMusicGenerator.from_checkpoint,
    recipe=train_audio_recipe,
    owns=is_audio_checkpoint,
    companions=("vocoder",),
    quickstart=quickstart,
    quickstart_title="music (audio route, mel-RVQ)",
    quickstart_order=40,
    data_subdir="music",
)
