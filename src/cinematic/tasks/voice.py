"""The voice task: FastSpeech 2 with its built-in aligner (`cinematic.models.fastspeech`) on a voice folder.

Data: `<speaker>/<utt>.wav` + `.txt` (+ optional `speaker.json` with `language`), LJSpeech or VCTK layouts
(`cinematic.data.dataset.read_voice_dir`), read and featurised by `cinematic.data.voice` (features cached
under `<work_dir>/cache/features/`, keyed by the audio's content hash and the feature settings; a
Praat/MFA TextGrid beside a clip gives its symbols and durations).

State stored in the checkpoint (`export_state`): the resolved `FastSpeech2Config` ("model_config") and mel
front end ("mel_config") inference builds the model from, symbol table, front end, speakers (names →
table rows), each speaker's mean d-vector, languages, pitch/energy/duration statistics, and the vocoder
checkpoint trained by the same recipe (so `synthesize` needs no `--vocoder`). Inference is
`cinematic.generation.speech.VoiceSynthesizer`.

`train_recipe` trains the acoustic model and then the vocoder (`--stage acoustic|vocoder|all`). The family
record (`FAMILY`, at the end) registers the task, its config section, the loader, the quickstart stage and
the `synthesize`, `clone` and `evaluate voice` commands.
"""

from __future__ import annotations

import argparse
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
from cinematic.configs.model_config import VoiceModelConfig
from cinematic.data.skips import SkippedFiles, UnreadableFile
from cinematic.data.tokenizers.phonemes import SymbolTable, TextFrontEnd
from cinematic.data.voice import FeatureCache, Features, VoiceDataset, VoiceItem, collate, read_items
from cinematic.errors import UserError
from cinematic.generation.speech import VoiceSynthesizer, build_model, fastspeech_config
from cinematic.models.fastspeech import FastSpeech2, VarianceStats, teacher_forced
from cinematic.training.family import CommandGroups, ModelFamily, add_debug_flag
from cinematic.training.task import BuildContext, Built, Media, StepOutput

log = logging.getLogger(__name__)

SPEAKER_TABLE_DROPOUT = 0.5
"""Share of training items that lose their speaker-table entry, so the d-vector path learns the voice."""


def compute_stats(features: Sequence[Features], items: Sequence[VoiceItem]) -> VarianceStats:
    """Pitch/energy normalisation and bin ranges, and the mean log-duration, from the training features."""
    voiced = np.concatenate([f.log_f0[f.voiced] for f in features]) if features else np.zeros(0)
    if voiced.size < 2:
        log.warning("no voiced frames found in the training data: pitch statistics use defaults")
        voiced = np.array([math.log(120.0), math.log(240.0)], dtype=np.float32)
    energy = np.concatenate([f.log_energy for f in features])
    p_mean, p_std = float(voiced.mean()), float(max(voiced.std(), 1e-2))
    e_mean, e_std = float(energy.mean()), float(max(energy.std(), 1e-2))
    all_pitch = (np.concatenate([f.log_f0 for f in features if f.voiced.any()] or [voiced]) - p_mean) / p_std
    norm_energy = (energy - e_mean) / e_std
    ratios = [math.log1p(len(f.mel) / max(len(i.symbols), 1)) for f, i in zip(features, items, strict=True)]
    return VarianceStats(
        pitch_mean=p_mean,
        pitch_std=p_std,
        pitch_min=float(all_pitch.min()),
        pitch_max=float(all_pitch.max()),
        energy_mean=e_mean,
        energy_std=e_std,
        energy_min=float(norm_energy.min()),
        energy_max=float(norm_energy.max()),
        mean_log_duration=float(np.mean(ratios)),
    )


# ---------------------------------------------------------------------------------------------- the task


class VoiceTask:
    """FastSpeech 2 + aligner on a voice folder (see the module docstring)."""

    name = "voice"

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.cfg: Config | None = None
        self.val_items: list[VoiceItem] = []
        self.model: FastSpeech2 | None = None
        """The model `build` made (the trainer may train a DDP/FSDP wrapper of it)."""

    # -------------------------------------------------------------------------------------- build

    def build(self, cfg: Config, data_dir: Path, ctx: BuildContext) -> Built:
        from cinematic.data.balance import stratified_split

        self.cfg = cfg
        vcfg = cfg.voice_model
        restored = ctx.restored_state or {}
        front = TextFrontEnd(restored.get("front_end", vcfg.front_end))
        items = read_items(data_dir, front, vcfg.audio, vcfg.languages[0], on_unreadable=ctx.skipped.skip)
        cache = FeatureCache(ctx.cache_dir, vcfg.audio, _speaker_encoder() if vcfg.speaker_encoder else None)
        with ctx.local_main_first() as is_first:
            found = _features_with_progress(cache, items, ctx.skipped, show=is_first)
        # unreadable, silent or soundless clips were reported to ctx.skipped and have no features
        items = [it for it, f in zip(items, found, strict=True) if f is not None]
        features = [f for f in found if f is not None]
        # Every symbol must get at least one frame.
        keep = [
            i
            for i, (it, f) in enumerate(zip(items, features, strict=True))
            if it.durations is not None or len(f.mel) >= len(it.symbols)
        ]
        if len(keep) < len(items):
            log.warning("skipping %d utterances with fewer mel frames than symbols", len(items) - len(keep))
        items, features = [items[i] for i in keep], [features[i] for i in keep]
        if len(items) < 2:
            left_out = (
                f" ({len(ctx.skipped)} file(s) could not be used, see the warnings)" if ctx.skipped else ""
            )
            raise UserError(f"{data_dir}: need at least 2 usable utterances to train a voice model{left_out}")

        train_idx, val_idx = stratified_split(
            [it.speaker for it in items], cfg.data.val_fraction, cfg.training.seed, cfg.data.max_val_items
        )
        self.state = self._make_state(items, features, train_idx, restored, front, vcfg)
        model_cfg = fastspeech_config(vcfg, len(self.state["symbols"]), len(self.state["languages"]))
        self.state["model_config"] = asdict(model_cfg)
        self.state["mel_config"] = vcfg.audio.model_dump()
        self.model = model = build_model(model_cfg, self.state)
        table = SymbolTable.from_state(self.state["symbols"])
        speakers = {name: row for row, name in enumerate(self.state["speakers"], start=1)}
        languages = {name: i for i, name in enumerate(self.state["languages"])}
        stats = self.state["stats"]
        self.val_items = [items[i] for i in val_idx]
        train = VoiceDataset([items[i] for i in train_idx], cache, table, speakers, languages, stats)
        val = VoiceDataset(self.val_items, cache, table, speakers, languages, stats) if val_idx else None
        log.info(
            "voice: %d train / %d validation utterances, %d speakers, %d symbols (%s)",
            len(train),
            len(val_idx),
            len(speakers),
            len(table),
            front.mode,
        )
        return Built(
            models={"acoustic": model},
            train_set=train,
            val_set=val,
            collate_fn=collate,
            throughput_unit="frames",
        )

    def _make_state(
        self,
        items: list[VoiceItem],
        features: list[Features],
        train_idx: list[int],
        restored: Mapping[str, Any],
        front: TextFrontEnd,
        vcfg: VoiceModelConfig,
    ) -> dict[str, Any]:
        """Vocabularies and statistics: from the checkpoint being resumed, else from the data."""
        if restored:
            state = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in restored.items()}
            unseen = sorted({it.speaker for it in items} - set(state["speakers"]))
            if unseen:
                raise UserError(
                    f"speakers not in the checkpoint being resumed: {', '.join(unseen)} "
                    "(resume on the same data, or adapt with `cinematic clone`)"
                )
            return state
        speakers = sorted({it.speaker for it in items})
        if len(speakers) > vcfg.num_speakers:
            raise UserError(
                f"the data has {len(speakers)} speakers but voice_model.num_speakers is "
                f"{vcfg.num_speakers}; raise it (e.g. --set voice_model.num_speakers={len(speakers)})"
            )
        languages = list(dict.fromkeys([*vcfg.languages, *sorted({it.language for it in items})]))
        train_feats = [features[i] for i in train_idx]
        stats = compute_stats(train_feats, [items[i] for i in train_idx])
        dvectors = {}
        for name in speakers:
            vecs = np.stack([f.dvector for f, it in zip(features, items, strict=True) if it.speaker == name])
            mean = vecs.mean(0)
            dvectors[name] = torch.from_numpy((mean / (np.linalg.norm(mean) + 1e-9)).astype(np.float32))
        return {
            "symbols": SymbolTable.build(it.symbols for it in items).to_state(),
            "front_end": front.mode,
            "speakers": speakers,
            "speaker_dvectors": dvectors,
            "languages": languages,
            "trained_languages": sorted({it.language for it in items}),
            "stats": asdict(stats),
            "vocoder_checkpoint": None,
        }

    # -------------------------------------------------------------------------------------- steps

    @staticmethod
    def binarization_weight(model: FastSpeech2, cfg: VoiceModelConfig) -> torch.Tensor:
        """1 once `aligner_binarization_start_steps` updates are done, else 0: a tensor on the model's
        device (the count is a buffer there), so reading it never waits for the device."""
        return (model.num_updates >= cfg.aligner_binarization_start_steps).float()

    def _forward(
        self, model: nn.Module, core: FastSpeech2, batch: dict[str, torch.Tensor], train: bool
    ) -> dict[str, torch.Tensor]:
        """Losses of `model` (maybe a DDP/FSDP wrapper: it is called) whose plain module is `core`."""
        assert self.cfg is not None
        speakers = batch["speakers"]
        if train and self.cfg.voice_model.speaker_encoder:
            drop = torch.rand(speakers.shape, device=speakers.device) < SPEAKER_TABLE_DROPOUT
            speakers = speakers.masked_fill(drop, 0)
        out = teacher_forced(model, batch, speakers)
        weight = self.binarization_weight(core, self.cfg.voice_model)
        return core.losses(out, batch["mels"], batch["text_lengths"], batch["mel_lengths"], weight)

    def training_step(
        self, models: Mapping[str, nn.Module], batch: Any, phase: str, scratch: dict[str, Any]
    ) -> StepOutput:
        assert self.model is not None
        losses = self._forward(models["acoustic"], self.model, batch, train=True)
        self.model.num_updates += (
            1  # a buffer: saved with the weights, so the binarization switch survives resume
        )
        metrics = {k: v.detach() for k, v in losses.items() if k != "loss"}
        return StepOutput(loss=losses["loss"], metrics=metrics, num_items=batch["mel_lengths"].sum())

    def validate(self, models: Mapping[str, nn.Module], loader: Any) -> dict[str, float]:
        model = models["acoustic"]
        totals: dict[str, float] = {}
        count = 0
        for batch in loader:
            losses = self._forward(model, model, batch, train=False)
            n = int(batch["tokens"].shape[0])
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value) * n
            count += n
        return {f"val/{k}": v / max(count, 1) for k, v in totals.items()}

    def sample(self, models: Mapping[str, nn.Module], step: int, out_dir: Path) -> list[Media]:
        if not self.val_items:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        model = models["acoustic"]
        item = self.val_items[0]
        table = SymbolTable.from_state(self.state["symbols"])
        device = next(model.parameters()).device
        tokens = torch.tensor([table.encode(item.symbols)], device=device)
        speaker = torch.tensor([self.state["speakers"].index(item.speaker) + 1], device=device)
        language = torch.tensor([self.state["languages"].index(item.language)], device=device)
        dvector = self.state["speaker_dvectors"][item.speaker].to(device).unsqueeze(0)
        mel = model.infer(tokens, speaker, language, dvector)["mel"][0].float().cpu().numpy()
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.imshow(mel.T, origin="lower", aspect="auto", interpolation="none")
        ax.set_title(f"{item.speaker}: {item.text[:60]}")
        return [Media("image", "voice/mel", fig), Media("text", "voice/text", f"{item.speaker}: {item.text}")]

    def export_state(self) -> dict[str, Any]:
        return dict(self.state)


def _speaker_encoder() -> Any:
    from cinematic.models.speaker_encoder import SpeakerEncoder

    return SpeakerEncoder()


def _features_with_progress(
    cache: FeatureCache, items: list[VoiceItem], skipped: SkippedFiles, show: bool
) -> list[Features | None]:
    """Each item's features; None for a clip that cannot be decoded or holds no usable sound (silent, too
    short), which is reported to `skipped` (that raises under data.strict)."""
    from tqdm import tqdm

    found: list[Features | None] = []
    for it in tqdm(items, desc="voice features", unit="utt", disable=not show, mininterval=1.0):
        try:
            found.append(cache.get(it.audio_path))
        except UnreadableFile as err:
            skipped.skip(it.audio_path, err.reason)
            found.append(None)
    return found


# ---------------------------------------------------------------------------------------------- recipe


def train_recipe(cfg: Config, data_dir: Path, resume: str | None, args: argparse.Namespace) -> None:
    """`train_voice.py` / `cinematic train voice`: the acoustic model, then the vocoder (`--stage`)."""
    from cinematic.tasks.vocoder import VocoderTask
    from cinematic.training.trainer import run_training

    stage = getattr(args, "stage", "all") or "all"
    work_dir = Path(cfg.training.work_dir)
    voice_ckpts = work_dir / "voice" / "checkpoints"
    if stage in {"acoustic", "all"}:
        result = run_training(VoiceTask(), cfg, data_dir, resume=resume)
        voice_ckpts = getattr(result, "run_dir", work_dir / "voice") / "checkpoints"
    if stage in {"vocoder", "all"}:
        # A checkpoint path names one run: it resumes that stage only; "auto" resumes each stage.
        vocoder_resume = resume if (stage == "vocoder" or resume == "auto") else None
        result = run_training(VocoderTask(), cfg, data_dir, resume=vocoder_resume)
        record_vocoder(voice_ckpts, getattr(result, "run_dir", work_dir / "vocoder") / "checkpoints")


def record_vocoder(voice_ckpt_dir: Path, vocoder_ckpt_dir: Path) -> None:
    """Record the vocoder checkpoint (its best, else last) in the voice checkpoints — its sha1 and its path
    relative to the run folder (`checkpoint_io.file_reference`) — so synthesis finds it without --vocoder."""
    from cinematic.checkpoint_io import record_companion

    vocoder = next(
        (vocoder_ckpt_dir / n for n in ("best.pth", "last.pth") if (vocoder_ckpt_dir / n).is_file()), None
    )
    if vocoder is not None:
        record_companion(voice_ckpt_dir, "vocoder_checkpoint", vocoder)


# ---------------------------------------------------------------------------------------------- quickstart

QUICKSTART_STEPS = 600
QUICKSTART_SENTENCES = {
    "en": "The quick brown fox jumps over the lazy dog.",
    "es": "El viento del norte sopla sobre el mar.",
    "fr": "Le vent du nord souffle sur les montagnes.",
    "de": "Der Nordwind weht über die Berge.",
}


def _quickstart_vocoder(work_dir: Path) -> Path | None:
    folder = work_dir / "vocoder" / "checkpoints"
    return next((folder / n for n in ("best.pth", "last.pth") if (folder / n).is_file()), None)


def quickstart(qs: Any) -> list[Path]:
    """Train a tiny FastSpeech 2 on the demo voices, report the held-out mel L1 before and after, and write
    `voice.wav` (a demo speaker) and `voice_cloned.wav` (zero-shot from a held-out reference clip) with the
    vocoder the previous stage trained."""
    from cinematic.data.audio import save_audio
    from cinematic.training.trainer import run_training

    cfg = qs.fresh_config()
    cfg.training.validate_at_start = True
    cfg.training.max_steps = QUICKSTART_STEPS
    cfg.training.validate_every_steps = QUICKSTART_STEPS
    cfg.training.checkpoint_every_steps = QUICKSTART_STEPS
    cfg.voice_model.aligner_binarization_start_steps = QUICKSTART_STEPS // 2
    cfg.voice_model.training.warmup_steps = 40
    data_dir = Path(qs.data_root) / "voice"
    result = run_training(VoiceTask(), cfg, data_dir)
    before = (result.metrics_before or {}).get("val/mel_l1", float("nan"))
    qs.report("voice", "val/mel_l1", before, result.metrics_after.get("val/mel_l1", float("nan")))

    work_dir = Path(cfg.training.work_dir)
    vocoder = _quickstart_vocoder(work_dir)
    if vocoder is None:
        print("  no speech vocoder checkpoint from the vocoder stage: skipping the voice samples", flush=True)
        return []
    record_vocoder(result.run_dir / "checkpoints", vocoder.parent)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    synth = VoiceSynthesizer.from_checkpoint(checkpoint)
    speaker = synth.speakers[0]
    from cinematic.data.dataset import read_voice_dir

    utterances = read_voice_dir(data_dir)
    language = next(
        (u.language for u in utterances if u.speaker == speaker and u.language), synth.languages[0]
    )
    text = QUICKSTART_SENTENCES.get(language, QUICKSTART_SENTENCES["en"])
    out = Path(qs.samples_dir)
    spoken = save_audio(
        out / "voice.wav", synth.synthesize(text, language=language, speaker=speaker), synth.sample_rate
    )
    reference = next(u for u in reversed(utterances) if u.speaker != speaker)
    ref_language = reference.language or language
    cloned = save_audio(
        out / "voice_cloned.wav",
        synth.synthesize(
            QUICKSTART_SENTENCES.get(ref_language, text),
            language=ref_language,
            reference=reference.audio_path,
        ),
        synth.sample_rate,
    )
    print(
        f"  {speaker} ({language}) → {spoken}\n  zero-shot from {reference.audio_path.name} → {cloned}",
        flush=True,
    )
    return [spoken, cloned]


# ---------------------------------------------------------------------------------------------- commands


def add_commands(groups: CommandGroups) -> None:
    """`cinematic synthesize`, `cinematic clone` and `cinematic evaluate voice`."""
    s = groups.top.add_parser("synthesize", help="speak text with a trained voice model")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--vocoder", help="vocoder checkpoint (default: the one recorded in the checkpoint)")
    s.add_argument("--text", required=True)
    s.add_argument("--language", default="en")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--speaker", help="a speaker the model was trained or adapted on")
    who.add_argument("--reference", help="a WAV clip of a voice to clone zero-shot")
    s.add_argument("--speed", type=float, default=1.0)
    s.add_argument("--pitch", type=float, default=0.0, help="pitch shift in semitones")
    s.add_argument("--energy", type=float, default=1.0, help="energy scale")
    s.add_argument("--device", default="cpu")
    s.add_argument("--out", required=True)
    add_debug_flag(s)
    s.set_defaults(handler="cinematic.generation.speech:synthesize_command")

    c = groups.top.add_parser(
        "clone", help="adapt a voice model to a new speaker from a few minutes of audio"
    )
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--reference_dir", "--reference-dir", required=True)
    c.add_argument(
        "--speaker_name", "--speaker-name", help="name to use with --speaker (default: folder name)"
    )
    c.add_argument("--full", action="store_true", help="fine-tune all weights, not only the speaker parts")
    c.add_argument("--steps", type=int, default=200)
    c.add_argument("--device", default="cpu")
    c.add_argument("--out", required=True)
    add_debug_flag(c)
    c.set_defaults(handler="cinematic.generation.speech:clone_command")

    ev = groups.evaluate.add_parser("voice", help="MCD, F0 RMSE, speaker similarity, duration error")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--vocoder")
    ev.add_argument("--data_dir", "--data-dir", required=True)
    ev.add_argument("--out", help="write the JSON report here")
    ev.add_argument("--device", default="cpu")
    add_debug_flag(ev)
    ev.set_defaults(handler="cinematic.generation.speech:evaluate_command")


FAMILY = ModelFamily(
    name="voice",
    task=VoiceTask,
    config=VoiceModelConfig,
    section="voice_model",
    load=VoiceSynthesizer.from_checkpoint,
    recipe=train_recipe,
    companions=("vocoder_checkpoint",),
    quickstart=quickstart,
    quickstart_title="voice (FastSpeech 2 + cloning)",
    quickstart_order=20,
    add_commands=add_commands,
)
