"""Training from streaming shards (docs/streaming.md): what each family writes into shards, and how it
builds its run from them instead of from a data folder.

Per family, an adapter with two functions:

- `export(task, built)`: after the family's own `build` ran on the raw data, the records to store —
  each training item *before* its per-epoch randomness (a whole tokenized piece, not a crop; a whole
  clip; the songs of a packed block with their labels, before condition dropout), the validation items
  as they are, per-record metadata, and what generation or sampling needs besides `export_state()`;
- `build(task, cfg, source, ctx)`: the run's `Built` from a `ShardSource`: the task restored from the
  stored state, models from the config, and the family's own training dataset class over the records
  read lazily (so item i of epoch e is drawn with `item_rng(seed, e, i)` exactly as from raw files).

`ShardedTask(task, location)` is the task the trainer gets for `--data_dir SHARDS`: everything is the
family's task except `build`. A family from another package plugs in by giving its task the two
methods `shard_export(built)` and `build_from_shards(cfg, source, ctx)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cinematic.configs import Config
from cinematic.data.shards import RecordDataset, Records, ShardSource
from cinematic.errors import UserError
from cinematic.training.task import BuildContext, Built, Phase


class Lazy(Sequence):
    """`fn(i)` for i < n, computed when read (records are made while they are written, one at a time)."""

    def __init__(self, n: int, fn: Callable[[int], Any]) -> None:
        self.n, self.fn = n, fn

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.fn(index)


@dataclass
class ShardExport:
    """What `cinematic data shard` writes for one family."""

    train: Sequence[dict[str, Any]]
    val: Sequence[dict[str, Any]]
    meta: dict[str, list[Any]] = field(default_factory=dict)
    """Per-record values (JSON), one list entry per record: training records first, then validation."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else (JSON) the family's build from shards needs."""


def _whole(dataset: Any) -> Sequence[dict[str, Any]]:
    """The items of a dataset without per-epoch randomness, stored as they are."""
    return Lazy(0, lambda i: {}) if dataset is None else Lazy(len(dataset), lambda i: dataset[i])


def _val_set(source: ShardSource) -> RecordDataset | None:
    ids = source.val_ids
    return RecordDataset(Records(source, ids)) if ids else None


def _per_record(train: list[Any], n_val: int) -> list[Any]:
    return [*train, *([None] * n_val)]


def _same_state(source: ShardSource, ctx: BuildContext, keys: Sequence[str]) -> None:
    """A resumed run's vocabularies must be the ones the shards were written with (their ids)."""
    restored = ctx.restored_state or {}
    for key in keys:
        if key in restored and key in source.state and restored[key] != source.state[key]:
            raise UserError(
                f"the checkpoint being resumed has another {key} than the shards {source.location} "
                "(their items are encoded with the shards' own): resume on the shards it was trained on"
            )


def _accepted(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments a dataset class takes (options that newer versions of it added)."""
    import inspect

    known = inspect.signature(cls).parameters
    return {k: v for k, v in options.items() if k in known}


# ------------------------------------------------------------------------------------------- music


def _music_export(task: Any, built: Built) -> ShardExport:
    ds = built.train_set
    counts = np.bincount(ds.owner, minlength=len(ds.pieces))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    weights = (
        [float(built.sample_weights[int(i)]) for i in first] if built.sample_weights is not None else None
    )
    n_val = len(built.val_set) if built.val_set is not None else 0
    attributes = getattr(ds, "attributes", None)  # measured attributes per piece, filled per crop

    def piece(p: int) -> dict[str, Any]:
        record = {"tokens": ds.pieces[p], "conditions": ds.conditions[p]}
        if attributes is not None:
            record["attributes"] = [dict(part) for part in attributes[p]]
        return record

    train = Lazy(len(ds.pieces), piece)
    meta = {"length": _per_record([len(p) for p in ds.pieces], n_val)}
    if weights is not None:
        meta["weight"] = _per_record(weights, n_val)
    return ShardExport(train, _whole(built.val_set), meta)


def _music_build(task: Any, cfg: Config, source: ShardSource, ctx: BuildContext) -> Built:
    from cinematic.data.tokenizers.midi import make_tokenizer
    from cinematic.models.music_transformer import MusicTransformer
    from cinematic.tasks.music import MODEL, MidiCropDataset, collate_tokens, model_config

    _same_state(source, ctx, ("tokenizer", "labels"))
    state, section = source.state, cfg.music_model
    task.tokenizer = make_tokenizer(state["tokenizer"]["kind"])
    task.labels = {k: list(v) for k, v in state["labels"].items()}
    task.model_cfg = model_config(section, task.tokenizer.vocab_size, task.labels)
    task.seed = cfg.training_for("music").seed
    task.sample_labels = dict(state.get("sample_labels") or {})
    task.attribute_sets = dict(state.get("attribute_sets") or {})  # what generation completes a request from
    task.sample_length = min(512, section.max_seq_len)
    ids = source.train_ids
    with_attributes = bool(ids) and "attributes" in source.record(ids[0])
    extra = {"attributes": [] if with_attributes else None, "vocab": task.labels}
    train = MidiCropDataset([], [], task.tokenizer, section, task.seed, **_accepted(MidiCropDataset, extra))
    train.pieces = Records(source, ids, lambda r: r["tokens"])  # with BOS/EOS, as the build made them
    train.conditions = Records(source, ids, lambda r: r["conditions"])
    if with_attributes:
        train.attributes = Records(source, ids, lambda r: tuple(r["attributes"]))
    train.owner, weights = _crop_owners(source, ids, train.seq_len)
    return Built(
        models={MODEL: MusicTransformer(task.model_cfg)},
        train_set=train,
        val_set=_val_set(source),
        collate_fn=collate_tokens,
        sample_weights=weights,
        throughput_unit="tokens",
    )


def _crop_owners(source: Any, ids: Sequence[int], seq_len: int) -> tuple[np.ndarray, list[float] | None]:
    """A crop dataset's `owner` (⌈(length − 1) / seq_len⌉ crops per stored piece, as the folder build
    makes it) and, when the shards carry balanced-sampling weights, each crop's piece weight."""
    counts = [max(1, math.ceil((n - 1) / seq_len)) for n in source.meta("length", ids)]
    owner = np.repeat(np.arange(len(ids)), counts)
    if "weight" not in source.manifest["meta"]:
        return owner, None
    per_piece = source.meta("weight", ids)
    return owner, [float(per_piece[o]) for o in owner]


# ---------------------------------------------------------------------------- music, audio route


def _music_audio_export(task: Any, built: Built) -> ShardExport:
    """Whole delayed code sequences (K, T) of each training clip with its condition ids (crops are drawn
    per epoch at load time), the validation segments as they are; the fitted tokenizer is in the state."""
    ds = built.train_set
    counts = np.bincount(ds.owner, minlength=len(ds.sequences))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    weights = (
        [float(built.sample_weights[int(i)]) for i in first] if built.sample_weights is not None else None
    )
    n_val = len(built.val_set) if built.val_set is not None else 0
    train = Lazy(len(ds.sequences), lambda p: {"tokens": ds.sequences[p], "conditions": ds.conditions[p]})
    meta = {"length": _per_record([int(s.shape[1]) for s in ds.sequences], n_val)}
    if weights is not None:
        meta["weight"] = _per_record(weights, n_val)
    extra = {"sample_seconds": float(task.sample_seconds)}
    return ShardExport(train, _whole(built.val_set), meta, extra)


def _music_audio_build(task: Any, cfg: Config, source: ShardSource, ctx: BuildContext) -> Built:
    from cinematic.data.tokenizers.delay import StreamVocab
    from cinematic.data.tokenizers.mel_rvq import MelRVQ
    from cinematic.models.music_transformer import MusicTransformer
    from cinematic.tasks.music import model_config
    from cinematic.tasks.music_audio import MODEL, AudioCropDataset, make_collate

    state, section = source.state, cfg.music_model
    if state.get("representation") != "audio":
        raise UserError(
            f"{source.location} holds symbolic (MIDI) music shards, not audio-route ones; train them with "
            "`cinematic train music --data_dir` on those shards without music_model.representation=audio"
        )
    task.rvq = rvq = MelRVQ.from_state(state["tokenizer"])
    if rvq.mel_cfg != section.audio:
        raise UserError(
            f"{source.location}: the shards' audio tokens were made with another mel front end than this "
            "config's music_model.audio: "
            + "; ".join(rvq.mel_cfg.differences(section.audio))
            + "; train with the config the shards were written with, or write them again"
        )
    restored = ctx.restored_state or {}
    if (
        "tokenizer" in restored
        and MelRVQ.from_state(restored["tokenizer"]).fingerprint() != rvq.fingerprint()
    ):
        raise UserError(
            f"the checkpoint being resumed has another audio tokenizer than the shards {source.location} "
            "(their items are encoded with the shards' own): resume on the shards it was trained on"
        )
    _same_state(source, ctx, ("labels",))
    task.vocab = StreamVocab(rvq.codebook_size)
    task.labels = {k: list(v) for k, v in state["labels"].items()}
    task.sample_labels = dict(state.get("sample_labels") or {})
    task.attribute_sets = dict(state.get("attribute_sets") or {})
    task.vocoder = restored.get("vocoder", state.get("vocoder"))
    task.seed = cfg.training_for("music").seed
    task.model_cfg = model_config(section, task.vocab.size, task.labels, num_streams=rvq.num_codebooks)
    task.sample_seconds = min(2.0, (section.max_seq_len - rvq.num_codebooks) / rvq.frames_per_second)
    task.evaluator = None  # needs the clips' codes and labels beyond the shards' (from the data folder)
    if section.eval_samples > 0:
        import logging

        logging.getLogger(__name__).warning(
            "music_model.eval_samples is ignored when training the audio route from shards "
            "(the training-time evaluation runs from the data folder)"
        )
    ids = source.train_ids
    train = AudioCropDataset([], [], section.max_seq_len, task.seed)
    train.sequences = Records(source, ids, lambda r: r["tokens"])  # type: ignore[assignment]
    train.conditions = Records(source, ids, lambda r: r["conditions"])  # type: ignore[assignment]
    train.owner, weights = _crop_owners(source, ids, train.seq_len)
    return Built(
        models={MODEL: MusicTransformer(task.model_cfg)},
        train_set=train,
        val_set=_val_set(source),
        collate_fn=make_collate(task.vocab),
        sample_weights=weights,
        throughput_unit="tokens",
    )


# ------------------------------------------------------------------------------------------ lyrics


def _lyrics_export(task: Any, built: Built) -> ShardExport:
    ds = built.train_set

    def block(i: int) -> dict[str, Any]:
        segs = [ds.segments[j] for j in ds.blocks[i]]
        ids = lambda values: np.asarray(values, dtype=np.int64)  # noqa: E731
        return {
            "language": ids([s.language for s in segs]),
            "emotion": ids([-1 if s.emotion is None else s.emotion for s in segs]),
            "genre": ids([-1 if s.genre is None else s.genre for s in segs]),
            "scene_len": ids([len(s.scene) for s in segs]),
            "scene": ids([t for s in segs for t in s.scene]),
            "body_len": ids([len(s.body) for s in segs]),
            "body": ids([t for s in segs for t in s.body]),
        }

    n_val = len(built.val_set) if built.val_set is not None else 0
    meta = {
        "segments": _per_record([len(b) for b in ds.blocks], n_val),
        "language": _per_record([int(x) for x in ds.languages], n_val),
        "weight": _per_record([float(w) for w in built.sample_weights or [1.0] * len(ds)], n_val),
    }
    extra = {"sample_conditions": list(task.sample_conditions)}
    return ShardExport(Lazy(len(ds), block), _whole(built.val_set), meta, extra)


class _BlockSegments:
    """`LyricsBlocks.segments` over shard records: key (block record, position) → its Segment."""

    def __init__(self, source: ShardSource) -> None:
        self.source = source

    def __getitem__(self, key: tuple[int, int]) -> Any:
        from cinematic.tasks.lyrics import Segment

        record, j = key
        r = self.source.record(record)
        scene_at = np.concatenate([[0], np.cumsum(r["scene_len"])])
        body_at = np.concatenate([[0], np.cumsum(r["body_len"])])
        optional = lambda v: None if v < 0 else int(v)  # noqa: E731
        return Segment(
            int(r["language"][j]),
            optional(r["emotion"][j]),
            optional(r["genre"][j]),
            r["scene"][scene_at[j] : scene_at[j + 1]].tolist(),
            r["body"][body_at[j] : body_at[j + 1]].tolist(),
        )


def _lyrics_build(task: Any, cfg: Config, source: ShardSource, ctx: BuildContext) -> Built:
    from cinematic.data.tokenizers.text_bpe import TextBPETokenizer
    from cinematic.models.lyrics_generator import LyricsGPT, LyricsGPTConfig, padded_vocab_size
    from cinematic.tasks.lyrics import MODEL, LyricsBlocks, collate_blocks, max_scene_tokens

    _same_state(source, ctx, ("tokenizer",))
    mc, seed = cfg.lyrics_model, cfg.training_for("lyrics").seed
    task.tokenizer = tok = TextBPETokenizer.from_state(source.state["tokenizer"])
    task.scene_limit = max_scene_tokens(mc.max_seq_len)
    task.sample_conditions = [dict(c) for c in source.manifest["extra"].get("sample_conditions", [])]
    task.gpt_config = LyricsGPTConfig(
        vocab_size=padded_vocab_size(tok.vocab_size),
        block_size=mc.max_seq_len,
        n_layer=mc.num_layers,
        n_head=mc.num_heads,
        n_embd=mc.embed_dim,
        dropout=mc.dropout,
        tie_embeddings=mc.tie_embeddings,
    )
    ids = source.train_ids
    extra = {"unconditional_prob": getattr(mc, "unconditional_prob", 0.0)}
    train = LyricsBlocks(
        tok, [], mc.max_seq_len, mc.condition_dropout, seed, **_accepted(LyricsBlocks, extra)
    )
    train.segments = _BlockSegments(source)  # type: ignore[assignment]
    train.blocks = [[(i, j) for j in range(n)] for i, n in zip(ids, source.meta("segments", ids))]  # type: ignore[misc]
    train.languages = source.meta("language", ids)
    return Built(
        models={MODEL: LyricsGPT(task.gpt_config)},
        train_set=train,
        val_set=_val_set(source),
        collate_fn=collate_blocks,
        sample_weights=source.meta("weight", ids),
        throughput_unit="tokens",
    )


# ------------------------------------------------------------------------------------------- voice

_VAL_ITEMS_KEPT = 4


def _voice_export(task: Any, built: Built) -> ShardExport:
    items = [
        {**asdict(item), "audio_path": str(item.audio_path)} for item in task.val_items[:_VAL_ITEMS_KEPT]
    ]
    return ShardExport(_whole(built.train_set), _whole(built.val_set), extra={"val_items": items})


def _voice_build(task: Any, cfg: Config, source: ShardSource, ctx: BuildContext) -> Built:
    from cinematic.data.voice import VoiceItem, collate
    from cinematic.generation.speech import build_model, fastspeech_config

    _same_state(source, ctx, ("symbols", "speakers", "languages", "stats"))
    vcfg = cfg.voice_model
    if source.state.get("mel_config") != vcfg.audio.model_dump():
        raise UserError(
            f"{source.location}: the shards' features were computed with another voice_model.audio than "
            "this config's; train with the config the shards were written with, or write them again"
        )
    task.cfg = cfg
    task.state = state = dict(source.state)
    model_cfg = fastspeech_config(vcfg, len(state["symbols"]), len(state["languages"]))
    state["model_config"] = asdict(model_cfg)
    task.model = model = build_model(model_cfg, state)
    task.val_items = [
        VoiceItem(**{**item, "audio_path": Path(item["audio_path"])})
        for item in source.manifest["extra"].get("val_items", [])
    ]
    return Built(
        models={"acoustic": model},
        train_set=RecordDataset(Records(source, source.train_ids)),
        val_set=_val_set(source),
        collate_fn=collate,
        throughput_unit="frames",
    )


# ----------------------------------------------------------------------------------------- vocoder


def _vocoder_export(task: Any, built: Built) -> ShardExport:
    ds = built.train_set
    if ds.mel_paths is not None:
        raise UserError(
            "vocoder.mel_dir (fine-tuning on an acoustic model's mels) is not supported with shards yet; "
            "train it from the data folder"
        )
    train = Lazy(len(ds.paths), lambda i: {"audio": ds.store.read(ds.paths[i])})
    return ShardExport(train, _whole(built.val_set))


class _RecordAudio:
    """`AudioStore` over shard records: a key is a record id, its "audio" the whole clip."""

    def __init__(self, source: ShardSource) -> None:
        self.source = source

    def length(self, key: int) -> int:
        return len(self.source.record(key)["audio"])

    def read(self, key: int, start: int = 0, frames: int | None = None) -> np.ndarray:
        audio = self.source.record(key)["audio"]
        return np.array(audio[start : None if frames is None else start + frames], dtype=np.float32)


def _vocoder_build(task: Any, cfg: Config, source: ShardSource, ctx: BuildContext) -> Built:
    from cinematic.configs.model_config import MelConfig
    from cinematic.generation.vocode import hifigan_config
    from cinematic.models.hifigan import Generator, MultiPeriodDiscriminator, MultiScaleDiscriminator
    from cinematic.tasks.vocoder import VocoderDataset, collate

    task.mel_cfg = task.mel_config(cfg)
    stored = MelConfig.model_validate(source.state["mel_config"])
    if stored != task.mel_cfg:
        raise UserError(
            f"{source.location}: the shards' audio was prepared for another mel front end: "
            + "; ".join(stored.differences(task.mel_cfg))
        )
    _same_state(source, ctx, ("mel_config",))
    task.model_cfg = hifigan_config(cfg.vocoder, task.mel_cfg)
    task.lambda_mel, task.lambda_fm = cfg.vocoder.lambda_mel, cfg.vocoder.lambda_fm
    segment = cfg.vocoder.segment_size
    if segment % task.mel_cfg.hop_length:
        raise UserError(
            f"vocoder.segment_size ({segment}) must be a multiple of the mel hop_length "
            f"({task.mel_cfg.hop_length})"
        )
    train = VocoderDataset([], _RecordAudio(source), task.mel_cfg, segment, cfg.training.seed)  # type: ignore[arg-type]
    train.paths = source.train_ids  # type: ignore[assignment]
    val = _val_set(source)
    task._sample_set = val or train
    width = task.model_cfg.discriminator_width
    models = {
        "generator": Generator(task.model_cfg),
        "mpd": MultiPeriodDiscriminator(task.model_cfg.mpd_periods, width),
        "msd": MultiScaleDiscriminator(width),
    }
    if cfg.vocoder.init_from and ctx.restored_state is None:
        task._initialize_from(cfg.vocoder.init_from, models)
    return Built(
        models=models,
        train_set=train,
        val_set=val,
        collate_fn=collate,
        phases=[Phase("discriminator", ["mpd", "msd"]), Phase("generator", ["generator"])],
        ema_models=["generator"],
        throughput_unit="audio samples",
    )


# ----------------------------------------------------------------------------------------- singing


def _singing_export(task: Any, built: Built) -> ShardExport:
    import json

    pieces = [json.loads(json.dumps(asdict(p), default=str)) for p in task.val_pieces[:_VAL_ITEMS_KEPT]]
    return ShardExport(_whole(built.train_set), _whole(built.val_set), extra={"val_pieces": pieces})


def _singing_build(task: Any, cfg: Config, source: ShardSource, ctx: BuildContext) -> Built:
    from cinematic.data.singing import SongPiece, SungNote, collate
    from cinematic.models.singing import XiaoiceSing, XiaoiceSingConfig

    _same_state(source, ctx, ("symbols", "speakers", "languages", "stats"))
    if source.state.get("mel_config") != cfg.singing_model.audio.model_dump():
        raise UserError(
            f"{source.location}: the shards' features were computed with another singing_model.audio "
            "than this config's; train with the config the shards were written with, or write them again"
        )
    task.cfg = cfg
    task.state = dict(source.state)
    task.model = model = XiaoiceSing(XiaoiceSingConfig(**task.state["model_config"]))

    def piece(stored: dict[str, Any]) -> Any:
        durations = stored["phoneme_durations"]
        return SongPiece(
            **{
                **stored,
                "audio_path": Path(stored["audio_path"]),
                "notes": [SungNote(**{**n, "phonemes": _tuple(n.get("phonemes"))}) for n in stored["notes"]],
                "phonemes": [tuple(p) for p in stored["phonemes"]],
                "phoneme_durations": None if durations is None else [_tuple(d) for d in durations],
            }
        )

    task.val_pieces = [piece(p) for p in source.manifest["extra"].get("val_pieces", [])]
    return Built(
        models={"singer": model},
        train_set=RecordDataset(Records(source, source.train_ids)),
        val_set=_val_set(source),
        collate_fn=collate,
        throughput_unit="frames",
    )


def _tuple(value: Any) -> Any:
    return None if value is None else tuple(value)


# ----------------------------------------------------------------------------------------- registry

ADAPTERS: dict[str, tuple[Callable[..., ShardExport], Callable[..., Built]]] = {
    "music": (_music_export, _music_build),
    "lyrics": (_lyrics_export, _lyrics_build),
    "voice": (_voice_export, _voice_build),
    "vocoder": (_vocoder_export, _vocoder_build),
    "singing": (_singing_export, _singing_build),
}


AUDIO_ROUTE = "music_audio"
"""The key of the music audio route's adapter: its task is named "music" like the symbolic route's."""
ADAPTERS[AUDIO_ROUTE] = (_music_audio_export, _music_audio_build)


def _adapter_key(task: Any) -> str:
    """The task's name, or `AUDIO_ROUTE` for the music audio route's task (`AudioMusicTask`)."""
    if task.name == "music":
        from cinematic.tasks.music_audio import AudioMusicTask

        if isinstance(task, AudioMusicTask):
            return AUDIO_ROUTE
    return task.name


def supports(task: Any) -> bool:
    return hasattr(task, "build_from_shards") or _adapter_key(task) in ADAPTERS


def export_records(task: Any, built: Built) -> ShardExport:
    if hasattr(task, "shard_export"):
        return task.shard_export(built)
    key = _adapter_key(task)
    if key not in ADAPTERS:
        raise UserError(f"the {task.name} family cannot be written to shards (no shard adapter)")
    return ADAPTERS[key][0](task, built)


class ShardedTask:
    """The family's task, built from shards (`--data_dir SHARDS`) instead of a data folder."""

    def __init__(self, task: Any, location: str, skip_bad: bool = False) -> None:
        self.task, self.location, self.skip_bad = task, location, skip_bad

    @property
    def name(self) -> str:
        return self.task.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def build(self, cfg: Config, data_dir: Path, ctx: BuildContext) -> Built:
        source = ShardSource.open(self.location, skip_bad=self.skip_bad or cfg.data.skip_bad_shards)
        if source.task != self.task.name:
            raise UserError(
                f"{self.location} holds {source.task} shards, not {self.task.name} ones "
                f"(train them with `cinematic train {source.task}`)"
            )
        for bad in source.bad:
            ctx.skipped.skip(bad.name, f"bad shard ({bad.reason}): {len(bad.records)} item(s) left out")
        if not source.train_ids:
            raise UserError(f"{self.location}: no training items left in the shards")
        if hasattr(self.task, "build_from_shards"):
            return self.task.build_from_shards(cfg, source, ctx)
        return ADAPTERS[_adapter_key(self.task)][1](self.task, cfg, source, ctx)
