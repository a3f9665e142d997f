"""The singing task: XiaoiceSing (`cinematic.models.singing`) on a singing folder.

Data (`cinematic.data.singing`): `<singer>/<song>.wav` + `<song>.json` (notes with syllables, pitches,
onsets, durations, slurs), openvpi `transcriptions.csv` or Opencpop `transcriptions.txt`; syllables without
phonemes are phonemised by the voice model's front end (espeak-ng), one syllable at a time. Recordings
longer than `singing_model.max_song_seconds` are cut at rests. Features (log-mel at the speech vocoder's
settings, Praat F0, d-vector) are cached under `<work_dir>/cache/features/`. Optional augmentation of the
training pieces (`singing_model.transpositions`, `singing_model.formant_shifts`,
`cinematic.data.singing.augmented_pieces`): each singer again in other registers, and virtual singers with
moved formants that only the d-vector names.

State stored in the checkpoint (`export_state`): the `XiaoiceSingConfig` ("model_config") and mel front end
("mel_config") inference builds the model from, the phoneme table, front end, singers (names → table
rows), each singer's mean d-vector and range ("singer_ranges": lowest and highest MIDI note sung),
languages, and the vocoder the quickstart recorded. Inference is `cinematic.generation.singing.SingingSynthesizer`.

Validation: mel L1 and the losses (teacher-forced), and what a listener hears: pitch accuracy (share of
voiced frames whose predicted F0 is within ±0.5 semitone of the sung one), F0 RMSE in cents, V/UV error,
phoneme-duration error (frames, the predicted durations fitted into the notes against the aligned ones)
and rhythm accuracy (share of syllables whose vowel starts within 50 ms of where the singer's did).

`train_tiny_singer(data_dir, work_dir)` trains the tiny preset briefly (the quickstart's settings): what
tests and the song pipeline's tests use to get a singing checkpoint quickly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cinematic.configs import Config
from cinematic.configs.model_config import dataclass_from_section
from cinematic.configs.singing_config import SingingModelConfig
from cinematic.data.singing import (
    REST,
    SingingDataset,
    SongPiece,
    SungFeatureCache,
    SungNote,
    augmented_pieces,
    collate,
    fit_durations,
    is_vowel,
    phonemize_notes,
    read_singing_dir,
    split_song,
)
from cinematic.data.skips import UnreadableFile
from cinematic.data.tokenizers.phonemes import SPECIAL, SymbolTable, TextFrontEnd
from cinematic.errors import UserError
from cinematic.generation.singing import TIMBRE_STRENGTH, SingingSynthesizer, render_harmonic
from cinematic.models.singing import XiaoiceSing, XiaoiceSingConfig
from cinematic.training.family import CommandGroups, ModelFamily, add_debug_flag
from cinematic.training.task import BuildContext, Built, Media, StepOutput

log = logging.getLogger(__name__)

RHYTHM_TOLERANCE_S = 0.05


def model_config(
    section: SingingModelConfig, n_symbols: int, n_languages: int, mean_log_duration: float
) -> XiaoiceSingConfig:
    """The model settings of a `singing_model` section for a phoneme table and language list."""
    return dataclass_from_section(
        XiaoiceSingConfig,
        section,
        n_symbols=n_symbols,
        n_languages=n_languages,
        n_mels=section.audio.n_mels,
        mean_log_duration=mean_log_duration,
    )


def _speaker_encoder() -> Any:
    from cinematic.models.speaker_encoder import SpeakerEncoder

    return SpeakerEncoder()


class SingingTask:
    """XiaoiceSing on a singing folder (see the module docstring)."""

    name = "singing"

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.cfg: Config | None = None
        self.model: XiaoiceSing | None = None
        self.val_pieces: list[SongPiece] = []

    # -------------------------------------------------------------------------------------- build

    def build(self, cfg: Config, data_dir: Path, ctx: BuildContext) -> Built:
        from cinematic.data.balance import stratified_split

        self.cfg = cfg
        scfg: SingingModelConfig = cfg.singing_model
        restored = ctx.restored_state or {}
        front = TextFrontEnd(restored.get("front_end", scfg.front_end))
        items = read_singing_dir(data_dir, on_unreadable=ctx.skipped.skip)
        default = scfg.languages[0]
        pieces: list[SongPiece] = []
        by_language: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            by_language.setdefault(item.language or default, []).append(i)
        for language, indices in by_language.items():
            for i in indices:
                item = items[i]
                phonemes = phonemize_notes(item.notes, language, front)
                pieces += split_song(item, language, phonemes, scfg.max_song_seconds)
        encoder = _speaker_encoder() if scfg.speaker_encoder else None
        cache = SungFeatureCache(ctx.cache_dir, scfg.audio, encoder)
        usable = self._features(pieces, cache, ctx, "singing features")
        if len(usable) < 2:
            raise UserError(f"{data_dir}: need at least 2 usable sung recordings to train a singing model")
        train_idx, val_idx = stratified_split(
            [p.singer for p in usable], cfg.data.val_fraction, cfg.training.seed, cfg.data.max_val_items
        )
        ratios = scfg.formant_shifts if scfg.speaker_encoder else []  # virtual singers need d-vectors
        augmented = augmented_pieces([usable[i] for i in train_idx], ratios, scfg.transpositions)
        virtual = self._features(augmented, cache, ctx, "augmented songs") if augmented else []
        self.state = self._make_state(usable, cache, train_idx, restored, front, scfg)
        mcfg = XiaoiceSingConfig(**self.state["model_config"])
        self.model = model = XiaoiceSing(mcfg)
        table = SymbolTable.from_state(self.state["symbols"])
        singers = {name: row for row, name in enumerate(self.state["speakers"], start=1)}
        languages = {name: i for i, name in enumerate(self.state["languages"])}
        self.val_pieces = [usable[i] for i in val_idx]
        train_pieces = [usable[i] for i in train_idx] + virtual  # virtual singers get table row 0
        train = SingingDataset(train_pieces, cache, table, singers, languages)
        val = SingingDataset(self.val_pieces, cache, table, singers, languages) if val_idx else None
        log.info(
            "singing: %d train / %d validation songs, %d singers (+ %d virtual), %d phonemes (%s)",
            len(train),
            len(val_idx),
            len(singers),
            len({p.singer for p in virtual} - set(singers)),
            len(table),
            front.mode,
        )
        return Built(
            models={"singer": model},
            train_set=train,
            val_set=val,
            collate_fn=collate,
            throughput_unit="frames",
        )

    @staticmethod
    def _features(
        pieces: list[SongPiece], cache: SungFeatureCache, ctx: BuildContext, desc: str
    ) -> list[SongPiece]:
        """Compute (or load) every piece's features; → the pieces that have them (the others are skipped)."""
        from tqdm import tqdm

        usable = []
        with ctx.local_main_first() as is_first:
            for piece in tqdm(pieces, desc=desc, unit="song", disable=not is_first, mininterval=1.0):
                try:
                    cache.get(piece)
                    usable.append(piece)
                except UnreadableFile as err:
                    ctx.skipped.skip(piece.audio_path, err.reason)
        return usable

    def _make_state(
        self,
        pieces: list[SongPiece],
        cache: SungFeatureCache,
        train_idx: list[int],
        restored: Mapping[str, Any],
        front: TextFrontEnd,
        scfg: SingingModelConfig,
    ) -> dict[str, Any]:
        """Vocabularies and statistics: from the checkpoint being resumed, else from the data."""
        if restored:
            state = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in restored.items()}
            unseen = sorted({p.singer for p in pieces} - set(state["speakers"]))
            if unseen:
                raise UserError(
                    f"singers not in the checkpoint being resumed: {', '.join(unseen)} (resume on the same data)"
                )
            return state
        singers = sorted({p.singer for p in pieces})
        if len(singers) > scfg.num_speakers:
            raise UserError(
                f"the data has {len(singers)} singers but singing_model.num_speakers is {scfg.num_speakers}; "
                f"raise it (e.g. --set singing_model.num_speakers={len(singers)})"
            )
        languages = list(dict.fromkeys([*scfg.languages, *sorted({p.language for p in pieces})]))
        symbols = {REST} | {s for p in pieces for phones in p.phonemes for s in phones}
        table = SymbolTable([*SPECIAL, *sorted(symbols - set(SPECIAL))])
        fps = scfg.audio.sample_rate / scfg.audio.hop_length
        ratios = [
            math.log1p(n.duration * fps / max(len(ph), 1))
            for i in train_idx
            for n, ph in zip(pieces[i].notes, pieces[i].phonemes, strict=True)
            if not n.slur
        ]
        dvectors = {}
        for name in singers:
            vectors = np.stack([cache.get(p).dvector for p in pieces if p.singer == name])
            mean = vectors.mean(0)
            dvectors[name] = torch.from_numpy((mean / (np.linalg.norm(mean) + 1e-9)).astype(np.float32))
        ranges = {
            name: [
                min(n.pitch for p in pieces if p.singer == name for n in p.notes),
                max(n.pitch for p in pieces if p.singer == name for n in p.notes),
            ]
            for name in singers
        }
        mcfg = model_config(
            scfg, len(table), len(languages), float(np.mean(ratios)) if ratios else math.log(6.0)
        )
        return {
            "symbols": table.to_state(),
            "front_end": front.mode,
            "speakers": singers,
            "speaker_dvectors": dvectors,
            "singer_ranges": ranges,
            "languages": languages,
            "trained_languages": sorted({p.language for p in pieces}),
            "model_config": asdict(mcfg),
            "mel_config": scfg.audio.model_dump(),
            "vocoder_checkpoint": None,
        }

    # -------------------------------------------------------------------------------------- steps

    def _losses(
        self, model: nn.Module, core: XiaoiceSing, batch: dict[str, torch.Tensor], train: bool
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        assert self.cfg is not None
        speakers = batch["speakers"]
        scfg = self.cfg.singing_model
        if train and scfg.speaker_encoder and scfg.speaker_table_dropout > 0:
            drop = torch.rand(speakers.shape, device=speakers.device) < scfg.speaker_table_dropout
            speakers = speakers.masked_fill(drop, 0)
        out = model(batch, speakers)
        return core.losses(out, batch), out

    def training_step(
        self, models: Mapping[str, nn.Module], batch: Any, phase: str, scratch: dict[str, Any]
    ) -> StepOutput:
        assert self.model is not None
        losses, _ = self._losses(models["singer"], self.model, batch, train=True)
        metrics = {k: v.detach() for k, v in losses.items() if k != "loss"}
        return StepOutput(loss=losses["loss"], metrics=metrics, num_items=batch["mel_lengths"].sum())

    def validate(self, models: Mapping[str, nn.Module], loader: Any) -> dict[str, float]:
        model = models["singer"]
        totals: dict[str, float] = {}
        count = 0
        listen = ListenerMetrics(vowel_ids(self.state))
        for batch in loader:
            losses, out = self._losses(model, model, batch, train=False)
            n = int(batch["tokens"].shape[0])
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value) * n
            count += n
            listen.add(out, batch, self.fps())
        metrics = {f"val/{k}": v / max(count, 1) for k, v in totals.items()}
        metrics.update({f"val/{k}": v for k, v in listen.result().items()})
        return metrics

    def fps(self) -> float:
        mel = self.state["mel_config"]
        return mel["sample_rate"] / mel["hop_length"]

    def sample(self, models: Mapping[str, nn.Module], step: int, out_dir: Path) -> list[Media]:
        if not self.val_pieces:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from cinematic.configs.model_config import MelConfig

        model = models["singer"]
        piece = self.val_pieces[0]
        synth = SingingSynthesizer(
            model,
            self.state,
            MelConfig.model_validate(self.state["mel_config"]),
            device=next(model.parameters()).device,
            vocoder="harmonic",
        )
        notes = [
            n if n.slur else SungNote(n.syllable, n.pitch, n.onset, n.duration, n.slur, ph)
            for n, ph in zip(piece.notes, piece.phonemes, strict=True)
        ]
        out = synth.infer(notes, piece.language, singer=piece.singer)
        wav = render_harmonic(out["mel"], out["f0_midi"], out["voiced"], synth.mel_config)
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
        top.imshow(out["mel"].T, origin="lower", aspect="auto", interpolation="none")
        top.set_title(f"{piece.singer}: {' '.join(n.syllable for n in piece.notes if not n.slur)[:60]}")
        bottom.plot(out["frame_note"], label="notes (smoothed)")
        bottom.plot(np.where(out["voiced"] > 0.5, out["f0_midi"], np.nan), label="F0")
        bottom.set_ylabel("MIDI")
        bottom.legend(loc="upper right")
        return [
            Media("image", "singing/mel_f0", fig),
            Media("audio", "singing/sung", wav, sample_rate=synth.sample_rate),
        ]

    def export_state(self) -> dict[str, Any]:
        return dict(self.state)


class ListenerMetrics:
    """Pitch accuracy (±0.5 semitone), F0 RMSE (cents), V/UV error, phoneme-duration error and rhythm
    accuracy over validation batches (the teacher-forced pass's predictions against the recording)."""

    def __init__(self, vowel_ids: set[int]) -> None:
        self.vowel_ids = vowel_ids
        self.cents: list[np.ndarray] = []
        self.vuv_errors = 0
        self.frames = 0
        self.duration_errors: list[float] = []
        self.rhythm_hits = 0
        self.syllables = 0

    def add(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], fps: float) -> None:
        f0 = (out["frame_note"] + out["residual"]).float().cpu().numpy()
        vuv = (torch.sigmoid(out["vuv"]) > 0.5).cpu().numpy()
        true_f0 = batch["f0"].float().cpu().numpy()
        voiced = batch["voiced"].cpu().numpy()
        predicted = torch.expm1(out["log_duration"]).clamp(min=0).float().cpu().numpy()
        target = out["durations"].cpu().numpy()
        for b in range(f0.shape[0]):
            n_mel, n_text = int(batch["mel_lengths"][b]), int(batch["text_lengths"][b])
            v = voiced[b, :n_mel]
            self.cents.append(100.0 * (f0[b, :n_mel][v] - true_f0[b, :n_mel][v]))
            self.vuv_errors += int((vuv[b, :n_mel] != v).sum())
            self.frames += n_mel
            groups = batch["groups"][b, :n_text].cpu().numpy()
            tokens = batch["tokens"][b, :n_text].cpu().numpy()
            fitted = np.zeros(n_text, dtype=np.int64)
            frames = batch["group_frames"][b].cpu().numpy()
            for g in np.unique(groups):
                members = np.flatnonzero(groups == g)
                fitted[members] = fit_durations(predicted[b, members] + 0.5, int(frames[g]))
            self.duration_errors.extend(np.abs(fitted - target[b, :n_text]).tolist())
            true_starts = np.concatenate([[0], np.cumsum(target[b, :n_text])])
            pred_starts = np.concatenate([[0], np.cumsum(fitted)])
            pitches = batch["note_pitch"][b, :n_text].cpu().numpy()
            slurs = batch["slur"][b, :n_text].cpu().numpy()
            for g in np.unique(groups):
                members = np.flatnonzero(groups == g)
                if pitches[members[0]] == 0 or slurs[members[0]]:
                    continue
                # the beat a listener hears: where the syllable's vowel starts
                vowel = next((i for i in members if int(tokens[i]) in self.vowel_ids), members[-1])
                self.syllables += 1
                self.rhythm_hits += int(
                    abs(true_starts[vowel] - pred_starts[vowel]) / fps <= RHYTHM_TOLERANCE_S
                )

    def result(self) -> dict[str, float]:
        cents = np.concatenate(self.cents) if self.cents else np.zeros(0)
        nan = float("nan")
        return {
            "pitch_accuracy": float((np.abs(cents) <= 50).mean()) if cents.size else nan,
            "f0_rmse_cents": float(np.sqrt((cents**2).mean())) if cents.size else nan,
            "vuv_error": self.vuv_errors / max(self.frames, 1),
            "duration_error_frames": float(np.mean(self.duration_errors)) if self.duration_errors else nan,
            "rhythm_accuracy": self.rhythm_hits / self.syllables if self.syllables else nan,
        }


def vowel_ids(state: dict[str, Any]) -> set[int]:
    """Ids of the phoneme table's vowels."""
    return {i for i, s in enumerate(state["symbols"]) if is_vowel(s)}


# ---------------------------------------------------------------------------------------------- cloning


def cloning_similarity(
    synth: SingingSynthesizer,
    references: Sequence[str | Path],
    melodies: Sequence[tuple[list[SungNote], str]],
    timbre_strength: float = TIMBRE_STRENGTH,
    seed: int = 0,
    model_alone: bool = False,
) -> list[dict[str, float]]:
    """How close zero-shot cloning comes to each reference clip: the speaker similarity (cosine of the GE2E
    d-vectors, `cinematic.models.speaker_encoder`) between the clip and the melodies sung with `reference=`
    the clip ("reference", with `timbre_strength`) and by each training singer (its name), rendered as
    `synth` renders them, averaged over the (notes, language) melodies; one dict per reference, with
    "model_alone" too (the clone at timbre strength 0) when `model_alone`. Cloning works when "reference"
    beats every singer."""
    from cinematic.models.speaker_encoder import SpeakerEncoder, cosine_similarity

    encoder = SpeakerEncoder()

    def dvectors(**who: Any) -> list[np.ndarray]:
        sung = (synth.sing(notes, language, seed=seed, **who) for notes, language in melodies)
        return [encoder.embed(audio.wav, audio.sample_rate) for audio in sung]

    singers = {name: dvectors(singer=name) for name in synth.singers}
    results = []
    for reference in references:
        target = synth.reference_dvector(reference)
        voices = {"reference": dvectors(reference=reference, timbre_strength=timbre_strength), **singers}
        if model_alone:
            voices["model_alone"] = dvectors(reference=reference, timbre_strength=0.0)
        results.append(
            {name: float(np.mean([cosine_similarity(v, target) for v in vs])) for name, vs in voices.items()}
        )
    return results


# ---------------------------------------------------------------------------------------------- quickstart

QUICKSTART_STEPS = 300
QUICKSTART_BATCH = 4


def tiny_config(work_dir: str | Path, steps: int = QUICKSTART_STEPS) -> Config:
    """The tiny preset as the quickstart trains a singer (`steps` steps, validation only at the end), with
    only the sections a singing run reads (the registry, which knows every family, sits above tasks)."""
    from cinematic.configs.loading import config_from_dict, make_config_class, read_yaml, resolve_config_path

    raw = read_yaml(resolve_config_path("tiny"))
    shared = {key: raw[key] for key in ("data", "training", "logging", "singing_model") if key in raw}
    root = make_config_class({"singing_model": SingingModelConfig}, {"singing": "singing_model"})
    cfg = config_from_dict(shared, "tiny", config_class=root)
    cfg.training.work_dir = str(work_dir)
    cfg.training.max_steps = steps
    cfg.training.batch_size = QUICKSTART_BATCH
    cfg.training.validate_every_steps = steps
    cfg.training.checkpoint_every_steps = steps
    cfg.data.max_val_items = min(cfg.data.max_val_items, 4)
    return cfg


def train_tiny_singer(data_dir: str | Path, work_dir: str | Path, steps: int = QUICKSTART_STEPS) -> Path:
    """Train the tiny singing model on a singing folder (the demo singers: `cinematic data demo`) for
    `steps` steps and return its best checkpoint: the quickest way to a singing checkpoint for tests."""
    from cinematic.training.trainer import run_training

    result = run_training(SingingTask(), tiny_config(work_dir, steps), Path(data_dir))
    return result.best_checkpoint or result.last_checkpoint


def _quickstart_vocoder(work_dir: Path) -> Path | None:
    folder = work_dir / "vocoder" / "checkpoints"
    return next((folder / n for n in ("best.pth", "last.pth") if (folder / n).is_file()), None)


def quickstart(qs: Any) -> list[Path]:
    """Train a tiny XiaoiceSing on the demo singers, report the held-out mel L1 (and pitch and rhythm
    accuracy) before and after, record the speech vocoder of the vocoder stage, and write
    `samples/singing/`: each demo singer singing the same demo melody (harmonic renderer, in tune), the
    first one again with the HiFi-GAN vocoder, and a zero-shot singer cloned from a demo speaker's speech."""
    from cinematic.checkpoint_io import record_companion
    from cinematic.data.audio import save_audio
    from cinematic.data.singing import read_song
    from cinematic.training.trainer import run_training

    cfg = qs.fresh_config()
    cfg.training.validate_at_start = True
    cfg.training.max_steps = QUICKSTART_STEPS
    cfg.training.batch_size = QUICKSTART_BATCH
    cfg.training.validate_every_steps = cfg.training.checkpoint_every_steps = QUICKSTART_STEPS
    cfg.data.max_val_items = min(cfg.data.max_val_items, 4)
    data_dir = Path(qs.data_root) / "singing"
    result = run_training(SingingTask(), cfg, data_dir)
    before, after = result.metrics_before or {}, result.metrics_after
    nan = float("nan")
    qs.report("singing", "val/mel_l1", before.get("val/mel_l1", nan), after.get("val/mel_l1", nan))
    print(
        "  pitch accuracy (±½ semitone) {:.2f} → {:.2f}, rhythm accuracy {:.2f} → {:.2f}".format(
            before.get("val/pitch_accuracy", nan),
            after.get("val/pitch_accuracy", nan),
            before.get("val/rhythm_accuracy", nan),
            after.get("val/rhythm_accuracy", nan),
        ),
        flush=True,
    )

    work_dir = Path(cfg.training.work_dir)
    vocoder = _quickstart_vocoder(work_dir)
    if vocoder is not None:
        record_companion(result.run_dir / "checkpoints", "vocoder_checkpoint", vocoder)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    synth = SingingSynthesizer.from_checkpoint(checkpoint, vocoder="harmonic")
    out_dir = Path(qs.samples_dir) / "singing"
    written = []
    songs = sorted(data_dir.glob("*/*.json"))
    songs = [s for s in songs if s.name != "singer.json"]
    melody_song = songs[-1]
    notes, meta, _ = read_song(melody_song)
    language = meta.get("language", synth.languages[0])
    for singer in synth.singers:
        audio = synth.sing(notes, language, singer=singer, seed=0)
        written.append(save_audio(out_dir / f"{singer}.wav", audio.wav, audio.sample_rate))
    if vocoder is not None:
        hifigan = SingingSynthesizer.from_checkpoint(checkpoint)
        audio = hifigan.sing(notes, language, singer=synth.singers[0], seed=0)
        written.append(save_audio(out_dir / f"{synth.singers[0]}_hifigan.wav", audio.wav, audio.sample_rate))
    voices = sorted((Path(qs.data_root) / "voice").glob("*/*.wav"))
    print(f"  {melody_song.stem} ({language}) sung by {', '.join(synth.singers)} → {out_dir}", flush=True)
    if voices and synth.model_cfg.speaker_encoder:
        audio = synth.sing(notes, language, reference=voices[0], seed=0)
        written.append(save_audio(out_dir / "zero_shot.wav", audio.wav, audio.sample_rate))
        (sims,) = cloning_similarity(synth, [voices[0]], [(notes, language)], model_alone=True)
        best = max(synth.singers, key=lambda name: sims[name])
        print(
            f"  zero-shot from {voices[0].parent.name}'s speech: similarity to the clip {sims['reference']:.3f} "
            f"(model alone {sims['model_alone']:.3f}; best training singer {best} {sims[best]:.3f})",
            flush=True,
        )
    return written


# ---------------------------------------------------------------------------------------------- commands


def add_commands(groups: CommandGroups) -> None:
    """`cinematic sing`: a melody file (MusicXML with lyrics, MIDI with lyric events, song JSON) sung."""
    s = groups.top.add_parser("sing", help="sing a melody with lyrics with a trained singing model")
    s.add_argument("--checkpoint", required=True)
    s.add_argument(
        "--melody", required=True, help="MusicXML with lyrics, MIDI with lyric events, or a song .json"
    )
    s.add_argument("--language", default="en")
    s.add_argument("--singer", help="a singer of the training data (default: the first)")
    s.add_argument("--reference", help="a clip (speech or singing) of a voice to sing with, zero-shot")
    s.add_argument(
        "--timbre_strength",
        "--timbre-strength",
        type=float,
        default=1.0,
        help="with --reference: how far the sung spectrum is moved to the clip's spectral statistics, the "
        "reference-timbre step (0: the model's zero-shot voice alone; 1: the clip's; at most 2)",
    )
    s.add_argument(
        "--vocoder", help='vocoder checkpoint, or "harmonic" (default: the recorded vocoder, else harmonic)'
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="cpu")
    s.add_argument("--out", required=True)
    add_debug_flag(s)
    s.set_defaults(handler="cinematic.generation.singing:sing_command")


FAMILY = ModelFamily(
    name="singing",
    task=SingingTask,
    config=SingingModelConfig,
    section="singing_model",
    load=SingingSynthesizer.from_checkpoint,
    companions=("vocoder_checkpoint",),
    quickstart=quickstart,
    quickstart_title="singing (XiaoiceSing on the demo singers)",
    quickstart_order=25,
    add_commands=add_commands,
)
