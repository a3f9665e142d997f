"""The music family: the Music Transformer on MIDI files (symbolic route), and `choose_route`, the one
place that decides whether `cinematic train music` / train_music.py runs this route or the audio one
(`cinematic.tasks.music_audio`).

Data (DESIGN §3): `*.mid|*.midi` with optional same-stem `.json` labels. Every file is encoded once
with the performance tokenizer (cached under `<work_dir>/cache/music_tokens/`, keyed by the file's
hash and the tokenizer). Training items are random crops of `max_seq_len + 1` tokens (input + shifted
target), augmented on the fly as in the paper (§4.2): transposition by −3…+3 semitones (a draw that
would move a note out of the piano range keeps the original pitch) and a time-stretch from
{0.95, 0.975, 1, 1.025, 1.05} (or uniform ±`tempo_augmentation`). All randomness of an item comes from
`item_rng(seed, epoch, index)`, so a resumed run draws exactly what an uninterrupted one would.
Validation cuts each held-out piece into consecutive segments (each target token counted once) and
reports NLL per token (`val/loss`) and per second of music.

Label vocabularies (emotion, genre, scene; index 0 = the null label) are built from the data, stored in
the checkpoint through `export_state`, and reused from the checkpoint when a run resumes.

Attributes measured from the music (`cinematic.data.attributes`: key, mode, tempo, density, register,
polyphony, instruments; `music_model.attributes`) are conditions too, after the labels, each with the
fixed vocabulary [null, accepted values…]. They are measured once per file (cached under
`<work_dir>/cache/music_attributes/`), a value in the file's `.json` wins, and each training crop gets
the attributes of what it holds after augmentation: key, mode, density, register and polyphony are
measured on the `attribute_window` tokens from the crop's start (what the conditions must describe when
a piece is generated from them), tempo and instrumentation on the whole piece; a crop transposed by +2
semitones from C major is labelled D major, one stretched by 1.05 has its tempo and density divided by
1.05. Conditions are dropped in training per condition (`condition_dropout` for labels,
`attribute_dropout` for attributes) and all together with probability `unconditional_prob`, which trains
guidance's unconditional branch.
A fraction `opening_crop_prob` of the crops starts at the piece's opening, as a generated piece does.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
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
from cinematic.configs.model_config import MusicModelConfig
from cinematic.data.attributes import (
    ALL_ATTRIBUTES,
    AUDIO_ATTRIBUTES,
    SYMBOLIC_ATTRIBUTES,
    measure_file_cached,
    piece_attributes,
    window_raw,
    with_sidecar,
)
from cinematic.data.skips import UnreadableFile
from cinematic.data.synth import render_audio
from cinematic.data.tokenizers.midi import make_tokenizer
from cinematic.errors import UserError
from cinematic.generation.music import MusicGenerator
from cinematic.generation.sampling import FILL_MIN_P
from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig
from cinematic.training.family import CommandGroups, ModelFamily, add_debug_flag, add_sampling_flags
from cinematic.training.task import BuildContext, Built, Media, StepOutput
from cinematic.utils import atomic_write_bytes, file_sha1, item_rng

log = logging.getLogger(__name__)

MODEL = "music"
IGNORE_INDEX = -100
CONDITIONS = ("emotion", "genre", "scene")
NULL_LABEL = "<none>"
"""Index 0 of every label vocabulary: the unconditional (guidance) label."""
WINDOW_GRID = 16
"""Training crops starting within the same 16 tokens share one measured window (`attribute_window`)."""
SAMPLE_RATE = 44100


# -------------------------------------------------------------------------------------- model setup


def active_conditions(section: MusicModelConfig) -> list[str]:
    """The conditions switched on in `music_model` (emotion_conditioning, genre_…, scene_…)."""
    return [name for name in CONDITIONS if getattr(section, f"{name}_conditioning")]


def attribute_names(section: MusicModelConfig, route: str) -> list[str]:
    """The measured attributes that condition this route ("midi" or "audio"): `music_model.attributes`
    (null: all the route measures). An attribute the route cannot measure is a UserError."""
    available = SYMBOLIC_ATTRIBUTES if route == "midi" else AUDIO_ATTRIBUTES
    if section.attributes is None:
        return list(available)
    wrong = [name for name in section.attributes if name not in available]
    if wrong:
        raise UserError(
            f"music_model.attributes: {', '.join(wrong)} cannot be measured on the {route} route; "
            f"it measures: {', '.join(available)}"
        )
    return [name for name in available if name in section.attributes]


def attribute_vocabularies(names: Sequence[str], route: str) -> dict[str, list[str]]:
    """{attribute: [NULL_LABEL, accepted values…]}: fixed by the attribute, not by the data."""
    available = SYMBOLIC_ATTRIBUTES if route == "midi" else AUDIO_ATTRIBUTES
    return {name: [NULL_LABEL, *available[name]] for name in names}


def evaluates_here(cfg: Config, ctx: BuildContext) -> bool:
    """Whether this rank computes the `eval_samples` figures: rank 0 alone (the trainer broadcasts rank
    0's validation metrics), every rank under FSDP (whose forward is a collective)."""
    return ctx.is_main_process or cfg.training_for("music").strategy == "fsdp"


def measured_pieces(
    items: Sequence[Any], names: Sequence[str], cache_dir: Path | None, kind: str
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(raw measurements with the sidecar's key/tempo, the sidecar's fixed values) per item, measured
    once per file (cached). Sidecar values that are no accepted value are logged and left to the
    measurement; an unreadable file gets no attributes (its tokens are skipped elsewhere)."""
    from cinematic.data.skips import UnreadableFile

    out = []
    problems: list[str] = []
    for item in items:
        raw: dict[str, Any] = {}
        if names:
            try:
                raw = measure_file_cached(item.path, cache_dir, kind)
            except UnreadableFile:
                raw = {}
        raw, fixed, bad = with_sidecar(raw, item.labels, names)
        problems += [f"{Path(item.path).name}: {b}" for b in bad]
        out.append((raw, fixed))
    if problems:
        log.warning(
            "%d .json attribute value(s) are no accepted value and the measured ones are used instead "
            "(e.g. %s)",
            len(problems),
            "; ".join(problems[:3]),
        )
    return out


def condition_dropouts(section: MusicModelConfig, labels: Mapping[str, Sequence[str]]) -> tuple[float, ...]:
    """Per condition: `attribute_dropout` for the measured attributes, `condition_dropout` for labels."""
    return tuple(
        section.attribute_dropout if name in ALL_ATTRIBUTES else section.condition_dropout for name in labels
    )


def model_config(
    section: MusicModelConfig, vocab_size: int, labels: Mapping[str, Sequence[str]], num_streams: int = 1
) -> MusicTransformerConfig:
    """`music_model` + the data's vocabularies → the model's config (the audio route passes its K)."""
    return MusicTransformerConfig(
        vocab_size=vocab_size,
        num_streams=num_streams,
        num_layers=section.num_layers,
        num_heads=section.num_heads,
        embed_dim=section.embed_dim,
        ff_dim=section.ff_dim,
        dropout=section.dropout,
        max_relative_position=section.max_relative_position,
        attention=section.attention,
        local_block_length=section.local_block_length,
        condition_sizes=tuple(len(labels[name]) for name in labels),
        conditioning=section.conditioning,
        condition_dropout=section.condition_dropout,
        condition_dropouts=condition_dropouts(section, labels),
        unconditional_prob=section.unconditional_prob,
        attribute_conditions=tuple(name in ALL_ATTRIBUTES for name in labels),
        labels_alone_prob=section.labels_alone_prob,
        tie_embeddings=section.tie_embeddings,
    )


def label_vocabularies(
    label_dicts: Sequence[Mapping[str, Any]], conditions: Sequence[str]
) -> dict[str, list[str]]:
    """{condition: [NULL_LABEL, sorted labels seen…]}; labels are free strings (numbers are str()-ed)."""
    vocab = {}
    for name in conditions:
        seen = {str(d[name]) for d in label_dicts if d.get(name) not in (None, "")}
        vocab[name] = [NULL_LABEL, *sorted(seen)]
    return vocab


def condition_ids(labels: Mapping[str, Any], vocab: Mapping[str, Sequence[str]]) -> np.ndarray:
    """One item's labels → ids (0 for a missing or unknown label)."""
    ids = []
    for name, known in vocab.items():
        value = labels.get(name)
        ids.append(known.index(str(value)) if value not in (None, "") and str(value) in known else 0)
    return np.asarray(ids, dtype=np.int64)


# ------------------------------------------------------------------------------------------ datasets


class MidiCropDataset(Dataset):
    """Random crops of `seq_len + 1` tokens with transposition and time-stretch (training).

    An epoch has ⌈len/seq_len⌉ items per piece, so long pieces are seen in proportion to their length."""

    def __init__(
        self,
        pieces: Sequence[np.ndarray],
        conditions: Sequence[np.ndarray],
        tokenizer: Any,
        section: MusicModelConfig,
        seed: int,
        attributes: Sequence[tuple[Mapping[str, Any], Mapping[str, str]]] | None = None,
        vocab: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """`attributes`: (raw, fixed) per piece (`measured_pieces`); `vocab`: every condition's
        vocabulary, in the order of `conditions` (the attribute slots are filled per crop)."""
        self.tokenizer = tokenizer
        self.seq_len = section.max_seq_len
        self.pieces = [
            np.concatenate([[tokenizer.bos_id], p, [tokenizer.eos_id]]).astype(np.int64) for p in pieces
        ]
        self.conditions = list(conditions)
        self.transpose_range = section.transpose_range
        self.time_stretch = list(section.time_stretch) or [1.0]
        self.tempo_augmentation = section.tempo_augmentation
        self.opening_crop_prob = section.opening_crop_prob
        self.attributes = list(attributes) if attributes is not None else None
        self.attribute_window = section.attribute_window
        self._windows: dict[tuple[int, int], dict[str, Any]] = {}
        """(piece, start // WINDOW_GRID) → the crop's raw measurements (`window_raw`), made once."""
        self.slots = [
            (i, name, list(values))
            for i, (name, values) in enumerate((vocab or {}).items())
            if name in SYMBOLIC_ATTRIBUTES
        ]
        self.seed = seed
        self.epoch = 0
        counts = [max(1, math.ceil((len(p) - 1) / self.seq_len)) for p in self.pieces]
        self.owner = np.repeat(np.arange(len(self.pieces)), counts)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.owner)

    def _stretch_factor(self, rng: np.random.Generator) -> float:
        if self.tempo_augmentation:
            return float(rng.uniform(1 - self.tempo_augmentation, 1 + self.tempo_augmentation))
        return float(self.time_stretch[rng.integers(len(self.time_stretch))])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = item_rng(self.seed, self.epoch, index)
        piece_index = int(self.owner[index])
        piece = self.pieces[piece_index]
        need = self.seq_len + 1
        # crop a little more than needed: a stretch > 1 can only add TIME_SHIFTs, < 1 remove some
        window = int(need * 1.1) + 2
        start = int(rng.integers(0, max(1, len(piece) - need + 1)))
        semitones = int(rng.integers(-self.transpose_range, self.transpose_range + 1))
        factor = self._stretch_factor(rng)
        if self.opening_crop_prob > 0 and rng.random() < self.opening_crop_prob:
            start = 0  # drawn last, so the draws before it are those of runs without openings
        tokens = piece[start : start + window]
        moved = self.tokenizer.transpose(tokens, semitones)
        if moved is None:  # out of the piano range: keep the original
            semitones = 0
        else:
            tokens = moved
        tokens = self.tokenizer.stretch(tokens, factor)[:need]
        conditions = self.conditions[piece_index]
        if self.slots and self.attributes is not None:
            conditions = conditions.copy()
            raw, fixed = self.attributes[piece_index]
            if self.attribute_window:
                raw = self._window_raw(piece_index, raw, start)
            values = piece_attributes(raw, fixed, semitones, factor)
            for slot, name, known in self.slots:
                value = values.get(name)
                conditions[slot] = known.index(value) if value in known else 0
        return {
            "tokens": torch.from_numpy(np.ascontiguousarray(tokens)),
            "conditions": torch.from_numpy(conditions),
        }

    def _window_raw(self, piece_index: int, raw: Mapping[str, Any], start: int) -> dict[str, Any]:
        """The piece's measurements with the musical ones taken from `attribute_window` tokens at
        `start` (rounded down to the grid, so each stretch is decoded and measured once per worker)."""
        key = (piece_index, start // WINDOW_GRID)
        if key not in self._windows:
            begin = key[1] * WINDOW_GRID
            tokens = self.pieces[piece_index][begin : begin + self.attribute_window]
            self._windows[key] = window_raw(raw, self.tokenizer.decode(tokens))
        return self._windows[key]


class MidiSegmentDataset(Dataset):
    """Consecutive segments of `seq_len + 1` tokens sharing one boundary token, so every token of a
    held-out piece is a target exactly once (validation)."""

    def __init__(
        self, pieces: Sequence[np.ndarray], conditions: Sequence[np.ndarray], tokenizer: Any, seq_len: int
    ) -> None:
        self.items: list[tuple[np.ndarray, np.ndarray]] = []
        for piece, cond in zip(pieces, conditions, strict=True):
            seq = np.concatenate([[tokenizer.bos_id], piece, [tokenizer.eos_id]]).astype(np.int64)
            for start in range(0, len(seq) - 1, seq_len):
                self.items.append((seq[start : start + seq_len + 1], cond))

    def set_epoch(self, epoch: int) -> None:  # deterministic; present for the trainer's uniform call
        pass

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        tokens, cond = self.items[index]
        return {"tokens": torch.from_numpy(tokens), "conditions": torch.from_numpy(cond)}


def collate_tokens(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Right-pad to the longest item: inputs (B, T), targets (B, T) with padding = IGNORE_INDEX."""
    length = max(len(item["tokens"]) for item in items)
    tokens = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)
    for row, item in enumerate(items):
        tokens[row, : len(item["tokens"])] = item["tokens"]
    inputs = tokens[:, :-1].clamp(min=0)  # padded inputs only feed padded targets (causal)
    return {
        "inputs": inputs,
        "targets": tokens[:, 1:],
        "conditions": torch.stack([i["conditions"] for i in items]),
    }


# ------------------------------------------------------------------------------------------- task


class MusicTask:
    """Music Transformer on MIDI: tokenizer, label vocabularies, crops, NLL, samples, export."""

    name = "music"

    def __init__(self) -> None:
        self.tokenizer: Any = None
        self.labels: dict[str, list[str]] = {}
        self.model_cfg: MusicTransformerConfig | None = None
        self.sample_labels: dict[str, str] = {}
        self.sample_length = 256
        self.seed = 0
        self.attribute_sets: dict[str, Any] = {}
        self.validation_files: list[str] = []
        self.evaluator: Any = None
        """`music_eval.TrainingEvaluator` when `music_model.eval_samples` > 0."""

    # --------------------------------------------------------------------------------- build

    def build(self, cfg: Config, data_dir: Path, ctx: BuildContext) -> Built:
        from cinematic.data.corpora import discover_music_corpus, split_positions

        section = cfg.music_model
        items = discover_music_corpus(data_dir).of_kind("midi")  # seed, EMOPIA, MAESTRO or Lakh layout
        if not items:
            raise UserError(
                f"{data_dir}: no MIDI files (*.mid, *.midi). The symbolic music route needs MIDI; for audio "
                "files train with `cinematic train music` / train_music.py, which picks the audio route."
            )
        restored = ctx.restored_state or {}
        kind = restored.get("tokenizer", {}).get("kind", section.tokenizer)
        self.tokenizer = make_tokenizer(kind)
        if "labels" in restored:  # resume: the checkpoint's vocabularies, never rebuilt from the data
            self.labels = {k: list(v) for k, v in restored["labels"].items()}
        else:
            self.labels = label_vocabularies([item.labels for item in items], active_conditions(section))
            self.labels.update(attribute_vocabularies(attribute_names(section, "midi"), "midi"))
        self.model_cfg = model_config(section, self.tokenizer.vocab_size, self.labels)
        self.seed = cfg.training_for("music").seed
        names = [name for name in self.labels if name in SYMBOLIC_ATTRIBUTES]

        with ctx.local_main_first():
            pieces = [self._encode_or_skip(item.path, ctx) for item in items]
            measured = measured_pieces(items, names, ctx.cache_dir, "symbolic")
        labels = [
            {**item.labels, **piece_attributes(*m)} for item, m in zip(items, measured, strict=True)
        ]  # the sidecar's labels with every attribute as a bucket value
        conditions = [condition_ids(lab, self.labels) for lab in labels]
        keep = [i for i, p in enumerate(pieces) if len(p) > 0]
        without_notes = len(items) - len(keep) - len(ctx.skipped)
        if without_notes > 0:
            log.warning("skipping %d MIDI file(s) without notes", without_notes)
        if not keep:
            raise UserError(f"{data_dir}: the MIDI files hold no (non-drum) notes")

        groups = [str(items[i].labels.get("emotion", NULL_LABEL)) for i in keep]
        train_pos, val_pos = split_positions(  # the corpus's own split when it has one
            [items[i] for i in keep], groups, cfg.data.val_fraction, self.seed, cfg.data.max_val_items
        )
        train_idx, val_idx = [keep[i] for i in train_pos], [keep[i] for i in val_pos]
        train_set = MidiCropDataset(
            [pieces[i] for i in train_idx],
            [conditions[i] for i in train_idx],
            self.tokenizer,
            section,
            self.seed,
            attributes=[measured[i] for i in train_idx],
            vocab=self.labels,
        )
        val_set = (
            MidiSegmentDataset(
                [pieces[i] for i in val_idx],
                [conditions[i] for i in val_idx],
                self.tokenizer,
                section.max_seq_len,
            )
            if val_idx
            else None
        )
        weights = crop_sample_weights(cfg, [labels[i] for i in train_idx], train_set.owner)
        self._pick_sample_labels([items[i].labels for i in train_idx])
        self.attribute_sets = attribute_sets([conditions[i] for i in train_idx], self.labels)
        self.validation_files = [items[i].path.name for i in val_idx]
        self.sample_length = min(512, section.max_seq_len)
        self.evaluator = None
        if section.eval_samples > 0 and val_idx and evaluates_here(cfg, ctx):  # `evaluate music`'s figures
            from cinematic.generation.music_eval import TrainingEvaluator

            self.evaluator = TrainingEvaluator.build(
                pieces, labels, train_idx, val_idx, self.labels, self.tokenizer.seconds,
                samples=section.eval_samples, length=self.sample_length, seq_len=section.max_seq_len,
                seed=self.seed,
            )  # fmt: skip
        log.info(
            "music: %d training / %d validation MIDI files, %d tokens; labels %s",
            len(train_idx),
            len(val_idx),
            sum(len(pieces[i]) for i in train_idx),
            {k: len(v) - 1 for k, v in self.labels.items()},
        )
        model = MusicTransformer(self.model_cfg)
        return Built(
            models={MODEL: model},
            train_set=train_set,
            val_set=val_set,
            collate_fn=collate_tokens,
            sample_weights=weights,
            throughput_unit="tokens",
        )

    def _encode_or_skip(self, path: Path, ctx: BuildContext) -> np.ndarray:
        """Tokens of one file; an unreadable file is reported to `ctx.skipped` and has no tokens."""
        try:
            return self._encode_cached(path, ctx.cache_dir)
        except UnreadableFile as err:
            ctx.skipped.skip(path, err.reason)
            return np.zeros(0, dtype=np.int64)

    def _encode_cached(self, path: Path, cache_dir: Path) -> np.ndarray:
        """Tokens of one file, from `<cache>/music_tokens/<sha1>-<tokenizer>.npy` when present."""
        cache = Path(cache_dir) / "music_tokens" / f"{file_sha1(path)}-{self.tokenizer.kind}.npy"
        if cache.is_file():
            return np.load(cache)
        from cinematic.data.tokenizers.midi import load_score

        tokens = self.tokenizer.encode(load_score(path))
        import io

        buffer = io.BytesIO()
        np.save(buffer, tokens)
        atomic_write_bytes(cache, buffer.getvalue())
        return tokens

    def _pick_sample_labels(self, label_dicts: Sequence[Mapping[str, Any]]) -> None:
        """Samples during training use each condition's most common label."""
        self.sample_labels = {}
        for name in self.labels:
            known = set(self.labels[name][1:])  # a resumed run's vocabulary may lack a new label
            counts = Counter(str(d[name]) for d in label_dicts if str(d.get(name)) in known)
            if counts:
                self.sample_labels[name] = counts.most_common(1)[0][0]

    # ------------------------------------------------------------------------------ training

    def training_step(
        self, models: Mapping[str, nn.Module], batch: Any, phase: str, scratch: dict[str, Any]
    ) -> StepOutput:
        inputs, targets = batch["inputs"], batch["targets"]
        logits = models[MODEL](inputs, batch["conditions"])[:, 0]  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        counted = targets != IGNORE_INDEX
        with torch.no_grad():
            accuracy = ((logits.argmax(-1) == targets) & counted).sum() / counted.sum().clamp(min=1)
        return StepOutput(loss=loss, metrics={"accuracy": accuracy.detach()}, num_items=counted.sum())

    @torch.no_grad()
    def validate(self, models: Mapping[str, nn.Module], loader: Any) -> dict[str, float]:
        model = models[MODEL]
        nll = correct = tokens = 0.0
        seconds = 0.0
        for batch in loader:
            inputs, targets = batch["inputs"], batch["targets"]
            logits = model(inputs, batch["conditions"])[:, 0].float()
            counted = targets != IGNORE_INDEX
            nll += F.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            ).item()
            correct += ((logits.argmax(-1) == targets) & counted).sum().item()
            tokens += counted.sum().item()
            for row in targets.cpu().numpy():
                seconds += self.tokenizer.seconds(row[row != IGNORE_INDEX])
        if tokens == 0:
            return {}
        metrics = {
            "val/loss": nll / tokens,
            "val/nll_per_token": nll / tokens,
            "val/accuracy": correct / tokens,
        }
        if seconds > 0:
            metrics["val/nll_per_second"] = nll / seconds
        if self.evaluator is not None:  # music_model.eval_samples > 0
            generator = MusicGenerator(model, self.tokenizer, self.labels, self.attribute_sets)
            metrics.update(self.evaluator.figures(generator))
        return metrics

    # -------------------------------------------------------------------------------- sample

    def sample(self, models: Mapping[str, nn.Module], step: int, out_dir: Path) -> list[Media]:
        """One generated piece: the MIDI file, its piano roll and its synthesized audio."""
        generator = MusicGenerator(models[MODEL], self.tokenizer, self.labels)
        score = generator.generate(
            **self.sample_labels, length=self.sample_length, seed=step, temperature=1.0
        )
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"music_step{step:07d}.mid"
        score.dump_midi(str(path))
        tag = "/".join(self.sample_labels.values()) or "unconditional"
        media = [
            Media("file", "sample/midi", path),
            Media("image", "sample/piano_roll", piano_roll_figure(score, title=f"step {step}: {tag}")),
        ]
        audio = render_audio(score, SAMPLE_RATE)
        if audio is not None:
            media.append(Media("audio", "sample/audio", audio, sample_rate=SAMPLE_RATE))
        return media

    # -------------------------------------------------------------------------------- export

    def export_state(self) -> dict[str, Any]:
        if self.tokenizer is None or self.model_cfg is None:
            raise RuntimeError("export_state() before build()")
        model_cfg = asdict(self.model_cfg)
        model_cfg["condition_sizes"] = list(model_cfg["condition_sizes"])
        return {
            "representation": "midi",
            "tokenizer": self.tokenizer.state(),
            "labels": {k: list(v) for k, v in self.labels.items()},
            "model_config": model_cfg,
            "sample_labels": dict(self.sample_labels),
            "attribute_sets": self.attribute_sets,
            "validation_files": list(self.validation_files),
        }


def attribute_sets(
    conditions: Sequence[np.ndarray], vocab: Mapping[str, Sequence[str]], limit: int = 4096
) -> dict[str, Any]:
    """The condition combinations of the training pieces, for generation to complete a request with
    attributes that go together (`MusicGenerator.generate(fill_attributes=True)`): {"rows": [[id per
    condition…, count], …] (the `limit` most common), "values": {attribute: {value: pieces}}}."""
    counts = Counter(tuple(int(i) for i in c) for c in conditions)
    rows = [[*ids, n] for ids, n in counts.most_common(limit)]
    values: dict[str, dict[str, int]] = {}
    for column, (name, known) in enumerate(vocab.items()):
        if name in ALL_ATTRIBUTES:
            per = Counter(known[int(c[column])] for c in conditions if int(c[column]) > 0)
            values[name] = dict(per)
    return {"rows": rows, "values": values}


# ------------------------------------------------------------------------------------ media helpers


def piano_roll_figure(score: Any, title: str = "") -> Any:
    """A matplotlib Figure of the notes (time in seconds × MIDI pitch, colour = velocity)."""
    from matplotlib.figure import Figure

    from cinematic.data.tokenizers.midi import PerformanceTokenizer

    notes = PerformanceTokenizer().normalize(score)
    fig = Figure(figsize=(8, 3), dpi=100)
    ax = fig.add_subplot()
    if len(notes):
        ax.barh(
            notes[:, 2],
            notes[:, 1] - notes[:, 0],
            left=notes[:, 0],
            height=0.8,
            color=[(0.1, 0.3, 0.7, 0.3 + 0.7 * v / 127) for v in notes[:, 3]],
        )
        ax.set_ylim(notes[:, 2].min() - 2, notes[:, 2].max() + 2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- train recipe


def resolve_representation(cfg: Config, data_dir: Path) -> str:
    """`music_model.representation` → "midi" or "audio" (auto: MIDI when the folder holds MIDI files)."""
    from cinematic.data.corpora import discover_music_corpus

    items = discover_music_corpus(data_dir).items
    has_midi = any(item.kind == "midi" for item in items)
    has_audio = any(item.kind == "audio" for item in items)
    wanted = cfg.music_model.representation
    if wanted == "auto":
        if has_midi and has_audio:
            log.info(
                "%s holds both MIDI and audio: training the symbolic (MIDI) route. For the audio route "
                "set music_model.representation: audio (or --set music_model.representation=audio).",
                data_dir,
            )
        if has_midi:
            return "midi"
        if has_audio:
            return "audio"
        raise UserError(f"{data_dir}: no music files (*.mid, *.midi, *.wav, *.flac, *.mp3, …) found")
    if wanted == "midi" and not has_midi:
        raise UserError(
            f"{data_dir}: music_model.representation is midi but the folder holds no *.mid/*.midi files"
        )
    if wanted == "audio" and not has_audio:
        raise UserError(
            f"{data_dir}: music_model.representation is audio but the folder holds no audio files"
        )
    return wanted


def choose_route(cfg: Config, data_dir: Path, checkpoint: dict[str, Any] | None = None) -> str:
    """The family that trains this music run: "music" (MIDI) or "music_audio". A resumed run keeps the
    route its checkpoint recorded; otherwise `music_model.representation` decides (auto: MIDI when the
    folder holds MIDI files). Sets `music_model.representation` so the checkpoint records the route."""
    restored = ((checkpoint or {}).get("task_state") or {}).get("representation")
    representation = (
        restored if restored in ("midi", "audio") else resolve_representation(cfg, Path(data_dir))
    )
    cfg.music_model.representation = representation
    return "music_audio" if representation == "audio" else "music"


def is_symbolic_checkpoint(checkpoint: dict[str, Any]) -> bool:
    return (
        checkpoint.get("task") == "music"
        and (checkpoint.get("task_state") or {}).get("representation") != "audio"
    )


# ------------------------------------------------------------------------------------ quickstart


QUICKSTART_STEPS = 400


def quickstart(qs: Any) -> list[Path]:
    """Train a tiny Music Transformer on the demo MIDI files (about a minute on a CPU), report the
    validation NLL per token before and after, and write music.mid and music.wav from the best checkpoint."""
    from cinematic.checkpoint_io import read_checkpoint
    from cinematic.generation.music import write_output
    from cinematic.training.trainer import run_training

    cfg = qs.fresh_config()
    cfg.music_model.representation = "midi"
    cfg.training.validate_at_start = True
    cfg.training.max_steps = QUICKSTART_STEPS
    cfg.training.learning_rate = 3e-3
    cfg.training.warmup_steps = 10
    cfg.training.validate_every_steps = 50
    cfg.training.checkpoint_every_steps = 50
    result = run_training(MusicTask(), cfg, Path(qs.data_root) / "music")
    metric = "val/nll_per_token"
    before = (result.metrics_before or {}).get(metric, float("nan"))
    qs.report("music", metric, before, result.metrics_after.get(metric, float("nan")))

    generator = MusicGenerator.from_checkpoint(
        read_checkpoint(result.best_checkpoint or result.last_checkpoint)
    )
    emotions = generator.known_labels.get("emotion") or []
    labels = {"emotion": emotions[0]} if emotions else {}
    score = generator.generate(**labels, length=512, seed=0, temperature=0.9, guidance=1.5)
    written = [write_output(generator, score, Path(qs.samples_dir) / "music.mid")]
    if score.note_num():
        written.append(write_output(generator, score, Path(qs.samples_dir) / "music.wav"))
    return written


def crop_sample_weights(cfg: Config, piece_labels: list[dict], owner: Sequence[int]) -> list[float] | None:
    """Balanced sampling over `data.balance_attributes` (None when unset): each crop carries the weight of
    its piece (`owner[j]` is crop j's piece), the piece weights coming from `balanced_weights`."""
    if not cfg.data.balance_attributes:
        return None
    from cinematic.data.balance import balanced_weights

    groups = [
        tuple(str(labels.get(a, NULL_LABEL)) for a in cfg.data.balance_attributes) for labels in piece_labels
    ]
    per_piece = balanced_weights(groups, cfg.data.balance_alpha)
    return [float(per_piece[o]) for o in owner]


# ------------------------------------------------------------------------------------ registration


def add_attribute_flags(parser: Any) -> None:
    """--key --mode --tempo --density --register --polyphony --instruments (symbolic route) and
    --loudness --brightness (audio route): conditions on attributes measured from the music."""
    helps = {
        "key": 'e.g. "D minor", dm, Bb (24 keys)',
        "tempo": "bpm (e.g. 90) or " + "/".join(AUDIO_ATTRIBUTES["tempo"]),
        "instruments": "GM family (piano, strings, …, drums) or a GM program number",
    }
    all_names = ALL_ATTRIBUTES
    for name, values in all_names.items():
        parser.add_argument(f"--{name}", help=helps.get(name, "/".join(values)))
    parser.add_argument(
        "--no_fill", "--no-fill", action="store_true",
        help="condition on the given values alone (default: complete the other attributes from a training "
        "piece that matches them)",
    )  # fmt: skip
    parser.add_argument(
        "--fill_min_p", "--fill-min-p", type=float, default=FILL_MIN_P,
        help=f"complete a request only with values at least this fraction as common as the most common one "
        f"among matching training pieces (default {FILL_MIN_P}; 0: any matching piece)",
    )  # fmt: skip


def add_commands(groups: CommandGroups) -> None:
    """`cinematic generate music` and `cinematic evaluate music` (both routes: the checkpoint says which)."""
    m = groups.generate.add_parser("music", help="write a MIDI (symbolic route) or WAV (audio route) file")
    m.add_argument("--checkpoint", required=True)
    m.add_argument("--emotion")
    m.add_argument("--genre")
    m.add_argument("--scene")
    add_attribute_flags(m)
    m.add_argument("--primer", help="MIDI file to continue (symbolic route)")
    m.add_argument("--length", type=int, default=1024, help="tokens to generate (symbolic route)")
    m.add_argument("--duration", type=float, default=10.0, help="seconds to generate (audio route)")
    m.add_argument("--vocoder", help="music vocoder checkpoint (audio route; default: the one recorded)")
    add_sampling_flags(m, temperature=1.0)
    m.add_argument("--out", required=True, help="out.mid or out.wav")
    add_debug_flag(m)
    m.set_defaults(handler="cinematic.generation.music:generate_command")

    e = groups.evaluate.add_parser(
        "music", help="NLL, label sensitivity and control accuracy of a music model (both routes)"
    )
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data_dir", "--data-dir", required=True, help="music files in any corpus layout")
    e.add_argument("--samples", type=int, default=8, help="generated per condition (0: no control accuracy)")
    e.add_argument("--length", type=int, default=512, help="tokens per generated sample (symbolic route)")
    e.add_argument("--duration", type=float, default=5.0, help="seconds per generated sample (audio route)")
    e.add_argument("--opening", type=int, default=256, help="tokens (steps) of each opening for sensitivity")
    e.add_argument("--max_files", "--max-files", type=int, default=100, help="files read per split at most")
    e.add_argument("--vocoder", help="music vocoder checkpoint (audio route; default: the one recorded)")
    e.add_argument(
        "--no_fill", "--no-fill", action="store_true",
        help="ask for each condition alone (default: complete the other attributes as generate music does)",
    )  # fmt: skip
    add_sampling_flags(e, temperature=1.0)
    e.add_argument("--out", required=True, help="report.json")
    add_debug_flag(e)
    e.set_defaults(handler="cinematic.generation.music_eval:evaluate_command")


FAMILY = ModelFamily(
    name="music",
    task=MusicTask,
    config=MusicModelConfig,
    section="music_model",
    load=MusicGenerator.from_checkpoint,
    route=choose_route,
    owns=is_symbolic_checkpoint,
    quickstart=quickstart,
    quickstart_title="music (Music Transformer, MIDI)",
    quickstart_order=30,
    add_commands=add_commands,
)
