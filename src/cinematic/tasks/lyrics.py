"""The lyrics task: a multilingual GPT conditioned on language, emotion, genre and scene.

Data: `<language>/<song>.txt` (+ optional same-stem `.json` with `emotion`, `genre`, `scene`). Every
song becomes one document

    <bos> <lang=es> <emotion=sad> <genre=ballad> <scene> a storm over the harbour </scene> [verse] \\n ... <eos>

whose conditioning prefix (everything before the text) is not a prediction target. The prefix has fixed
slots: a label that is missing from the data, or dropped, is written `<no-lang>`, `<no-emotion>`,
`<no-genre>`, `<no-scene>`. During training each of the four conditions is dropped with probability
`lyrics_model.condition_dropout`, independently, and all four at once with probability
`lyrics_model.unconditional_prob` (independent dropout alone reaches the all-null prefix with p⁴ =
10⁻⁴), so any partial condition and the unconditional prefix that classifier-free guidance subtracts
are trained in their usual positions. A song longer than a block is cut into pieces that each
repeat its prefix; pieces of one language are packed into `max_seq_len` blocks where attention and
positions stay inside each song (`doc_ids`), so no song ever sees another song's conditioning.
Blocks are drawn language-balanced (`balanced_weights`, α = `lyrics_model.balance_alpha`).

Every random choice of item i in epoch e comes from `item_rng(seed, e, i)`, so a resumed run draws
exactly what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import Dataset

from cinematic.configs import Config
from cinematic.configs.model_config import LyricsModelConfig
from cinematic.data.tokenizers.text_bpe import LABEL_KINDS, TextBPETokenizer, build_prefix, normalize_lyrics
from cinematic.errors import UserError
from cinematic.generation.lyrics import LyricsGenerator
from cinematic.models.lyrics_generator import IGNORE_INDEX, LyricsGPT, LyricsGPTConfig, padded_vocab_size
from cinematic.training.family import CommandGroups, ModelFamily, add_debug_flag, add_sampling_flags
from cinematic.training.task import BuildContext, Built, Media, StepOutput
from cinematic.utils import atomic_write_bytes, item_rng

if TYPE_CHECKING:
    from cinematic.data.dataset import Song

log = logging.getLogger(__name__)

MODEL = "lyrics"
"""Name of the one model in `Built.models` and in the checkpoint's "model" entry."""
SAMPLE_NEW_TOKENS = 64
"""Length of the samples logged during training (short: they are produced on the training machine)."""
MAX_SAMPLE_CONDITIONS = 4


def max_scene_tokens(max_seq_len: int) -> int:
    """Scene descriptions are cut to this many tokens so the prefix leaves room for the song."""
    return min(64, max_seq_len // 4)


# ------------------------------------------------------------------------------------------- documents


@dataclass
class Segment:
    """One song, or one piece of a long song, with the ids of its conditions."""

    language: int
    emotion: int | None
    genre: int | None
    scene: list[int]
    body: list[int]
    """Text ids; the song's last piece ends with <eos>."""

    @property
    def full_prefix_len(self) -> int:
        return 4 + (len(self.scene) + 2 if self.scene else 1)


def _label(labels: Mapping[str, Any], key: str) -> str | None:
    """A label value as a clean string ("genre": ["pop", "rock"] -> "pop"); None when absent."""
    value = labels.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    return str(value).strip() or None


def song_segments(
    tok: TextBPETokenizer,
    song: Song,
    capacity: int,
    scene_limit: int,
    use: Mapping[str, bool],
    unknown: Counter,
) -> list[Segment]:
    """A song as one or more segments of at most `capacity` tokens (prefix included)."""

    def label_id(kind: str) -> int | None:
        value = _label(song.labels, kind) if use[kind] else None
        if value is None:
            return None
        found = tok.label_ids[kind].get(value)
        if found is None:
            unknown[f"{kind}={value}"] += 1
        return found

    language = tok.label_ids["language"].get(song.language)
    if language is None:
        unknown[f"language={song.language}"] += 1
        return []
    scene_text = _label(song.labels, "scene") if use["scene"] else None
    scene = (
        tok.encode_plain(normalize_lyrics(scene_text))[:scene_limit] if scene_text else []
    )  # never structure
    head = Segment(language, label_id("emotion"), label_id("genre"), scene, [])
    body = tok.encode(normalize_lyrics(song.text)) + [tok.eos_id]
    room = capacity - head.full_prefix_len
    return [
        Segment(head.language, head.emotion, head.genre, head.scene, body[start : start + room])
        for start in range(0, len(body), room)
    ]


def pack_blocks(segments: Sequence[Segment], capacity: int) -> list[list[int]]:
    """Segment indices per block: consecutive segments of one language while their full length fits."""
    by_language: dict[int, list[int]] = defaultdict(list)
    for index, seg in enumerate(segments):
        by_language[seg.language].append(index)
    blocks: list[list[int]] = []
    for language in sorted(by_language):
        current: list[int] = []
        used = 0
        for index in by_language[language]:
            size = segments[index].full_prefix_len + len(segments[index].body)
            if current and used + size > capacity:
                blocks.append(current)
                current, used = [], 0
            current.append(index)
            used += size
        if current:
            blocks.append(current)
    return blocks


class LyricsBlocks(Dataset):
    """Packed blocks of `max_seq_len` input tokens with their shifted targets.

    Item: {"idx": (T,), "targets": (T,), "doc_ids": (T,), "language": int}. Condition dropout is drawn
    per song from `item_rng(seed, epoch, index)`; `set_epoch` moves to the next epoch's draws."""

    def __init__(
        self,
        tok: TextBPETokenizer,
        segments: list[Segment],
        max_seq_len: int,
        condition_dropout: float = 0.0,
        seed: int = 0,
        unconditional_prob: float = 0.0,
    ):
        self.tok = tok
        self.segments = segments
        self.max_seq_len = max_seq_len
        self.condition_dropout = condition_dropout
        self.unconditional_prob = unconditional_prob
        self.seed = seed
        self.epoch = 0
        self.blocks = pack_blocks(segments, max_seq_len + 1)
        self.languages = [segments[b[0]].language for b in self.blocks]
        """The language token id of each block (one language per block)."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = item_rng(self.seed, self.epoch, index)
        ids: list[int] = []
        docs: list[int] = []
        is_target: list[bool] = []
        for doc, seg_index in enumerate(self.blocks[index]):
            seg = self.segments[seg_index]
            keep = rng.random(4) >= self.condition_dropout  # language, emotion, genre, scene
            if self.unconditional_prob > 0 and rng.random() < self.unconditional_prob:
                keep[:] = False  # the all-null prefix guidance uses (one draw only when enabled)
            prefix = build_prefix(
                self.tok,
                seg.language if keep[0] else None,
                seg.emotion if keep[1] else None,
                seg.genre if keep[2] else None,
                seg.scene if keep[3] else [],
            )
            ids += prefix + seg.body
            docs += [doc] * (len(prefix) + len(seg.body))
            is_target += [False] * len(prefix) + [True] * len(seg.body)
        total = self.max_seq_len + 1
        pad = total - len(ids)
        ids += [self.tok.pad_id] * pad
        docs += [docs[-1]] * pad  # padding continues the last song: causal attention already hides it
        is_target += [False] * pad
        ids_t = torch.tensor(ids, dtype=torch.long)
        docs_t = torch.tensor(docs, dtype=torch.long)
        keep_t = torch.tensor(is_target[1:]) & (docs_t[1:] == docs_t[:-1])
        targets = torch.where(keep_t, ids_t[1:], torch.full_like(ids_t[1:], IGNORE_INDEX))
        return {
            "idx": ids_t[:-1],
            "targets": targets,
            "doc_ids": docs_t[:-1],
            "language": self.languages[index],
        }


def collate_blocks(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items; `doc_ids` is dropped (plain causal attention, the fused kernel) when no row packs
    more than one song."""
    batch = {
        "idx": torch.stack([it["idx"] for it in items]),
        "targets": torch.stack([it["targets"] for it in items]),
        "language": torch.tensor([it["language"] for it in items], dtype=torch.long),
    }
    doc_ids = torch.stack([it["doc_ids"] for it in items])
    batch["doc_ids"] = doc_ids if bool((doc_ids[:, -1] != doc_ids[:, 0]).any()) else None
    return batch


# ------------------------------------------------------------------------------------------- the task


def _report_languages(found: Sequence[str], configured: Sequence[str], data_dir: Path) -> None:
    """`lyrics_model.languages` is what the user expects, not a limit: say where the data differs."""
    missing = [lang for lang in configured if lang not in found]
    extra = [lang for lang in found if lang not in configured]
    if missing:
        log.warning("lyrics: no songs for configured language(s) %s in %s", ", ".join(missing), data_dir)
    if extra:
        log.info("lyrics: also training on language(s) %s (found in the data)", ", ".join(extra))


class LyricsTask:
    """Builds the tokenizer, the packed data and the GPT; loss, perplexity, samples, export."""

    name = "lyrics"

    def __init__(self) -> None:
        self.tokenizer: TextBPETokenizer | None = None
        self.gpt_config: LyricsGPTConfig | None = None
        self.sample_conditions: list[dict[str, str]] = []
        self.scene_limit = 0

    # -------------------------------------------------------------------------------- build

    def build(self, cfg: Config, data_dir: Path, ctx: BuildContext) -> Built:
        from cinematic.data.balance import balanced_weights, stratified_split
        from cinematic.data.dataset import read_lyrics_dir

        mc = cfg.lyrics_model
        train_cfg = cfg.training_for(self.name)
        songs = read_lyrics_dir(data_dir)
        if not songs:
            raise UserError(
                f"no lyrics found in {data_dir}: expected <language>/<song>.txt files (e.g. en/song1.txt)"
            )
        _report_languages(sorted({s.language for s in songs}), mc.languages, data_dir)
        train_idx, val_idx = stratified_split(
            [s.language for s in songs],
            cfg.data.val_fraction,
            seed=train_cfg.seed,
            max_val=cfg.data.max_val_items,
        )
        use = {
            "emotion": mc.emotion_conditioning,
            "genre": mc.genre_conditioning,
            "scene": mc.scene_conditioning,
        }
        self.tokenizer = self._tokenizer(cfg, songs, train_idx, use, ctx)
        tok = self.tokenizer
        self.scene_limit = max_scene_tokens(mc.max_seq_len)

        unknown: Counter = Counter()
        capacity = mc.max_seq_len + 1

        def segments(indices: Sequence[int]) -> list[Segment]:
            return [
                seg
                for i in indices
                for seg in song_segments(tok, songs[i], capacity, self.scene_limit, use, unknown)
            ]

        train_set = LyricsBlocks(
            tok,
            segments(train_idx),
            mc.max_seq_len,
            mc.condition_dropout,
            train_cfg.seed,
            unconditional_prob=mc.unconditional_prob,
        )
        val_set = LyricsBlocks(tok, segments(val_idx), mc.max_seq_len) if val_idx else None
        if unknown:
            log.warning(
                "lyrics: labels the resumed checkpoint does not know are left out (songs in an unknown "
                "language are skipped): %s",
                dict(unknown),
            )
        if len(train_set) == 0:
            raise UserError(f"no usable lyrics in {data_dir} for training (all songs were held out or empty)")

        self.gpt_config = LyricsGPTConfig(
            vocab_size=padded_vocab_size(tok.vocab_size),
            block_size=mc.max_seq_len,
            n_layer=mc.num_layers,
            n_head=mc.num_heads,
            n_embd=mc.embed_dim,
            dropout=mc.dropout,
            tie_embeddings=mc.tie_embeddings,
        )
        self.sample_conditions = self._conditions(songs, train_idx)
        id_to_lang = {v: k for k, v in tok.label_ids["language"].items()}
        blocks_per_language = Counter(id_to_lang[i] for i in train_set.languages)
        log.info(
            "lyrics: %d songs (%d train, %d validation) in %d blocks of %d tokens; languages %s; BPE vocabulary %d",
            len(songs), len(train_idx), len(val_idx), len(train_set), mc.max_seq_len,
            dict(blocks_per_language), tok.vocab_size,
        )  # fmt: skip
        weights = balanced_weights([id_to_lang[i] for i in train_set.languages], mc.balance_alpha)
        return Built(
            models={MODEL: LyricsGPT(self.gpt_config)},
            train_set=train_set,
            val_set=val_set,
            collate_fn=collate_blocks,
            sample_weights=weights.tolist(),
            throughput_unit="tokens",
        )

    def _tokenizer(
        self,
        cfg: Config,
        songs: Sequence[Song],
        train_idx: Sequence[int],
        use: Mapping[str, bool],
        ctx: BuildContext,
    ) -> TextBPETokenizer:
        """The resumed run's tokenizer, or one trained on the training songs (cached by content hash, so
        only local rank 0 trains it and a second run with the same data skips the work)."""
        if ctx.restored_state and "tokenizer" in ctx.restored_state:
            return TextBPETokenizer.from_state(ctx.restored_state["tokenizer"])
        labels: dict[str, set[str]] = {kind: set() for kind in LABEL_KINDS}
        for song in songs:
            labels["language"].add(song.language)
            for kind in ("emotion", "genre"):
                value = _label(song.labels, kind) if use[kind] else None
                if value is not None:
                    labels[kind].add(value)
        texts = [normalize_lyrics(songs[i].text) for i in train_idx]
        texts += [
            normalize_lyrics(s) for i in train_idx if use["scene"] and (s := _label(songs[i].labels, "scene"))
        ]
        vocab_size = cfg.lyrics_model.vocab_size
        key = hashlib.sha1(
            json.dumps(
                [texts, {k: sorted(v) for k, v in labels.items()}, vocab_size], ensure_ascii=False
            ).encode()
        ).hexdigest()[:16]
        path = ctx.cache_dir / "lyrics" / f"tokenizer-{key}.json"
        with ctx.local_main_first() as is_first:
            if is_first and not path.is_file():
                tok = TextBPETokenizer.train(texts, vocab_size, labels)
                atomic_write_bytes(path, json.dumps(tok.state(), ensure_ascii=False).encode("utf-8"))
        return TextBPETokenizer.from_state(json.loads(path.read_text(encoding="utf-8")))

    def _conditions(self, songs: Sequence[Song], train_idx: Sequence[int]) -> list[dict[str, str]]:
        """One sampling condition per language (its most common emotion and genre), for the logger."""
        assert self.tokenizer is not None
        by_language: dict[str, list[Any]] = defaultdict(list)
        for i in train_idx:
            by_language[songs[i].language].append(songs[i])
        conditions = []
        for language in sorted(by_language)[:MAX_SAMPLE_CONDITIONS]:
            condition = {"language": language}
            for kind in ("emotion", "genre"):
                values = Counter(_label(s.labels, kind) for s in by_language[language])
                values.pop(None, None)
                if values and self.tokenizer.labels[kind]:
                    condition[kind] = values.most_common(1)[0][0]
            conditions.append(condition)
        return conditions

    # -------------------------------------------------------------------------------- steps

    def training_step(
        self, models: Mapping[str, nn.Module], batch: Any, phase: str, scratch: dict[str, Any]
    ) -> StepOutput:
        _, loss = models[MODEL](batch["idx"], batch["targets"], doc_ids=batch["doc_ids"])
        tokens = (batch["targets"] != IGNORE_INDEX).sum()
        return StepOutput(loss=loss, num_items=tokens)

    @torch.no_grad()
    def validate(self, models: Mapping[str, nn.Module], loader: Any) -> dict[str, float]:
        """Token-level cross entropy and perplexity, overall and per language."""
        model = models[MODEL]
        nll: dict[int, float] = defaultdict(float)
        count: dict[int, int] = defaultdict(int)
        for batch in loader:
            logits, _ = model(batch["idx"], doc_ids=batch["doc_ids"])
            per_token = torch.nn.functional.cross_entropy(
                logits.float().transpose(1, 2), batch["targets"], ignore_index=IGNORE_INDEX, reduction="none"
            )
            mask = batch["targets"] != IGNORE_INDEX
            for language in batch["language"].unique().tolist():
                rows = batch["language"] == language
                nll[language] += float(per_token[rows].sum())
                count[language] += int(mask[rows].sum())
        total = sum(count.values())
        if total == 0:
            return {}
        loss = sum(nll.values()) / total
        metrics = {"val/loss": loss, "val/perplexity": math.exp(min(loss, 50.0))}
        assert self.tokenizer is not None
        names = {v: k for k, v in self.tokenizer.label_ids["language"].items()}
        for language, n in count.items():
            if n:
                metrics[f"val/perplexity_{names.get(language, language)}"] = math.exp(
                    min(nll[language] / n, 50.0)
                )
        return metrics

    def sample(self, models: Mapping[str, nn.Module], step: int, out_dir: Path) -> list[Media]:
        """A short sample per condition (language with its most common emotion and genre)."""
        assert self.tokenizer is not None
        generator = LyricsGenerator(models[MODEL], self.tokenizer, scene_limit=self.scene_limit)
        media = []
        for condition in self.sample_conditions:
            text = generator.generate(
                **condition, max_new_tokens=SAMPLE_NEW_TOKENS, temperature=0.9, top_k=50, seed=step
            )
            title = " ".join(f"{k}={v}" for k, v in condition.items())
            media.append(
                Media(kind="text", name=f"lyrics/{condition['language']}", data=f"[{title}]\n{text}")
            )
        return media

    # -------------------------------------------------------------------------------- export / inference

    def export_state(self) -> dict[str, Any]:
        assert self.tokenizer is not None and self.gpt_config is not None
        return {
            "tokenizer": self.tokenizer.state(),
            "model_config": self.gpt_config.to_dict(),
            "scene_limit": self.scene_limit,
            "labels": {k: list(v) for k, v in self.tokenizer.labels.items()},
        }


# ------------------------------------------------------------------------------------------- quickstart

QUICKSTART_STEPS = 300
"""The tiny model writes recognisably in each demo language by then (about 25 s on 2 cores; more steps overfit)."""


def quickstart_config(qs: Any) -> Config:
    """The tiny preset with a longer, faster-learning lyrics run (the preset's 30 steps barely start)."""
    cfg = qs.fresh_config()
    cfg.lyrics_model.dropout = 0.0  # a few hundred steps on a tiny model: regularisation only slows it
    overrides = cfg.lyrics_model.training
    overrides.max_steps = QUICKSTART_STEPS
    overrides.batch_size = 8
    overrides.learning_rate = 3e-3
    overrides.warmup_steps = 10
    overrides.validate_every_steps = QUICKSTART_STEPS
    overrides.checkpoint_every_steps = QUICKSTART_STEPS
    overrides.validate_at_start = True
    return cfg


def quickstart(qs: Any) -> list[Path]:
    """Train a tiny lyrics GPT on the demo songs, print validation perplexity before and after, and
    write one song per demo language to `lyrics.txt`."""
    from cinematic.checkpoint_io import read_checkpoint
    from cinematic.training.trainer import run_training

    result = run_training(LyricsTask(), quickstart_config(qs), Path(qs.data_root) / "lyrics")
    before = (result.metrics_before or {}).get("val/perplexity", float("nan"))
    qs.report("lyrics", "val/perplexity", before, result.metrics_after.get("val/perplexity", float("nan")))
    generator = LyricsGenerator.from_checkpoint(
        read_checkpoint(result.best_checkpoint or result.last_checkpoint)
    )
    songs = []
    for language in generator.labels["language"]:
        emotion = (generator.labels["emotion"] or [None])[0]
        text = generator.generate(
            language=language, emotion=emotion, structure="verse,chorus", max_new_tokens=120, top_k=40, seed=0
        )
        songs.append(f"=== language={language} emotion={emotion} ===\n{text}\n")
    out = Path(qs.samples_dir) / "lyrics.txt"
    out.write_text("\n".join(songs), encoding="utf-8")
    return [out]


# ------------------------------------------------------------------------------------------- registration


def add_commands(groups: CommandGroups) -> None:
    """`cinematic generate lyrics`."""
    lyr = groups.generate.add_parser("lyrics", help="write song lyrics")
    lyr.add_argument("--checkpoint", required=True)
    lyr.add_argument("--language", required=True)
    lyr.add_argument("--emotion")
    lyr.add_argument("--genre")
    lyr.add_argument("--scene")
    lyr.add_argument("--prompt", help="first line(s) to continue")
    lyr.add_argument("--structure", help="e.g. verse,chorus,verse,chorus")
    add_sampling_flags(lyr, temperature=0.9)
    lyr.add_argument("--repetition_penalty", "--repetition-penalty", type=float, default=1.1)
    lyr.add_argument("--max_new_tokens", "--max-new-tokens", type=int, default=300)
    lyr.add_argument("--num_samples", "--num-samples", type=int, default=1)
    lyr.add_argument("--out", required=True)
    add_debug_flag(lyr)
    lyr.set_defaults(handler="cinematic.generation.lyrics:generate_command")


FAMILY = ModelFamily(
    name="lyrics",
    task=LyricsTask,
    config=LyricsModelConfig,
    section="lyrics_model",
    load=LyricsGenerator.from_checkpoint,
    quickstart=quickstart,
    quickstart_title="lyrics (multilingual GPT)",
    quickstart_order=50,
    add_commands=add_commands,
)
