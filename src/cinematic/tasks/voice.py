"""The voice task: FastSpeech 2 with its built-in aligner (`cinematic.models.fastspeech`) on a voice folder.

Data: `<speaker>/<utt>.wav` + `.txt` (+ optional `speaker.json` with `language`), LJSpeech or VCTK layouts
(`cinematic.data.dataset.read_voice_dir`). Per utterance the features — log-mel, log-F0 per frame (Praat,
unvoiced frames interpolated), log energy per frame, the GE2E d-vector — are cached under
`<work_dir>/cache/voice/`, keyed by the audio's content hash and the feature settings, so a second run
skips finished work. A Praat/MFA TextGrid beside a clip (`<utt>.TextGrid`, a "phones" tier) gives its symbols
and durations instead of the phonemizer and the aligner.

State stored in the checkpoint (`export_state`): symbol table, front end, speakers (names → table rows),
each speaker's mean d-vector, languages, pitch/energy/duration statistics, and the vocoder checkpoint
trained by the same recipe (so `synthesize` needs no `--vocoder`).

`train_recipe` trains the acoustic model and then the vocoder (`--stage acoustic|vocoder|all`).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from cinematic.configs import Config
from cinematic.configs.model_config import MelConfig, VoiceModelConfig
from cinematic.data.tokenizers.phonemes import SymbolTable, TextFrontEnd
from cinematic.errors import UserError
from cinematic.models.fastspeech import FastSpeech2, VarianceStats, teacher_forced
from cinematic.tasks.base import BuildContext, Built, Media, StepOutput
from cinematic.utils import file_sha1

log = logging.getLogger(__name__)

FEATURE_VERSION = 1
"""Bump when the cached features change meaning."""
SPEAKER_TABLE_DROPOUT = 0.5
"""Share of training items that lose their speaker-table entry, so the d-vector path learns the voice."""
TRIM_TOP_DB = 40.0


# ---------------------------------------------------------------------------------------------- features


@dataclass
class Features:
    """One utterance's cached acoustic features, all per mel frame (T frames)."""

    mel: np.ndarray
    """(T, n_mels) log-mel."""
    log_f0: np.ndarray
    """(T,) natural log of F0 in Hz, unvoiced frames linearly interpolated (0 everywhere if none voiced)."""
    voiced: np.ndarray
    """(T,) bool."""
    log_energy: np.ndarray
    """(T,) log of the STFT magnitude's L2 norm per frame."""
    dvector: np.ndarray
    """(256,) GE2E d-vector of the clip."""


def load_clip(path: Path, mel_cfg: MelConfig) -> np.ndarray:
    """Audio at the model's rate with leading and trailing silence trimmed (the aligner has no silence
    token at the edges; trimming keeps them from being glued onto the first and last phonemes)."""
    import librosa

    from cinematic.data.audio import load_audio

    wav, _ = load_audio(path, sample_rate=mel_cfg.sample_rate)
    if wav.size == 0 or not np.any(wav):
        raise UserError(f"{path}: the clip is empty or silent")
    trimmed, _ = librosa.effects.trim(wav, top_db=TRIM_TOP_DB, frame_length=1024, hop_length=256)
    return trimmed.astype(np.float32) if trimmed.size >= mel_cfg.hop_length * 4 else wav


def interpolate_unvoiced(log_f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Fill unvoiced frames by linear interpolation between voiced neighbours (held flat at the ends)."""
    if not voiced.any():
        return np.zeros_like(log_f0)
    index = np.arange(len(log_f0))
    return np.interp(index, index[voiced], log_f0[voiced]).astype(np.float32)


def extract_features(wav: np.ndarray, mel_cfg: MelConfig, speaker_encoder: Any | None) -> Features:
    from cinematic.data.audio import frame_energy, mel_spectrogram, pitch_praat

    mel = mel_spectrogram(wav, mel_cfg).T.numpy().astype(np.float32)  # (T, n_mels)
    frames = mel.shape[0]
    f0 = pitch_praat(wav, mel_cfg.sample_rate, mel_cfg.hop_length, frames)
    voiced = f0 > 0
    log_f0 = interpolate_unvoiced(np.log(np.maximum(f0, 1.0)).astype(np.float32), voiced)
    energy = frame_energy(wav, mel_cfg)[:frames]
    log_energy = np.log(np.maximum(energy, 1e-5)).astype(np.float32)
    dvector = (
        speaker_encoder.embed(wav, mel_cfg.sample_rate)
        if speaker_encoder is not None
        else np.zeros(256, np.float32)
    )
    return Features(mel, log_f0, voiced, log_energy, dvector.astype(np.float32))


class FeatureCache:
    """Per-utterance features in the data pipeline's content-addressed cache (`cinematic.data.preprocessing`),
    under `<cache_dir>/features/`, keyed by sha1(audio bytes) + the feature settings + FEATURE_VERSION.
    `cache_dir=None` keeps them in memory only (adaptation and evaluation clips)."""

    def __init__(self, cache_dir: Path | None, mel_cfg: MelConfig, with_dvectors: bool):
        from cinematic.data.preprocessing import FeatureCache as Store

        self.store = Store(cache_dir / "features") if cache_dir is not None else None
        self.memory: dict[Path, Features] = {}
        self.mel_cfg = mel_cfg
        self.extra = {"voice_task": FEATURE_VERSION, "dvectors": with_dvectors, "trim_top_db": TRIM_TOP_DB}
        self.encoder = None
        if with_dvectors:
            from cinematic.models.speaker_encoder import SpeakerEncoder

            self.encoder = SpeakerEncoder()

    def get(self, audio: Path) -> Features:
        from cinematic.data.preprocessing import feature_key

        if self.store is None:
            if audio not in self.memory:
                self.memory[audio] = extract_features(
                    load_clip(audio, self.mel_cfg), self.mel_cfg, self.encoder
                )
            return self.memory[audio]
        key = feature_key(file_sha1(audio), "voice_fastspeech2", self.mel_cfg, self.extra)
        cached = self.store.load(key)
        if cached is not None and set(Features.__dataclass_fields__) <= set(cached):
            return Features(**{k: cached[k] for k in Features.__dataclass_fields__})
        features = extract_features(load_clip(audio, self.mel_cfg), self.mel_cfg, self.encoder)
        self.store.store(key, asdict(features))
        return features


# ---------------------------------------------------------------------------------------------- TextGrids


def read_textgrid_phones(path: Path, mel_cfg: MelConfig) -> tuple[list[str], list[int]] | None:
    """Symbols and frame durations from a Praat/MFA TextGrid's phone tier (long text format); empty
    intervals become a pause symbol. None when the file has no phone tier."""
    text = path.read_text(encoding="utf-8", errors="replace")
    tiers = re.split(r"\n\s*item \[\d+\]:", text)
    for tier in tiers[1:]:
        name = re.search(r'name = "([^"]*)"', tier)
        if not name or "phone" not in name.group(1).lower():
            continue
        intervals = re.findall(r'xmin = ([\d.eE+-]+)\s*xmax = ([\d.eE+-]+)\s*text = "([^"]*)"', tier)
        frames_per_s = mel_cfg.sample_rate / mel_cfg.hop_length
        symbols, durations = [], []
        for xmin, xmax, label in intervals:
            start, end = round(float(xmin) * frames_per_s), round(float(xmax) * frames_per_s)
            if end <= start:
                continue
            symbols.append(label.strip() or " ")
            durations.append(end - start)
        return symbols, durations
    return None


# ---------------------------------------------------------------------------------------------- dataset


@dataclass
class VoiceItem:
    audio_path: Path
    text: str
    speaker: str
    language: str
    symbols: list[str]
    durations: list[int] | None = None


class VoiceDataset(Dataset):
    """Utterances as tensors: token ids, normalised frame features, speaker row, language id, d-vector."""

    def __init__(
        self,
        items: list[VoiceItem],
        cache: FeatureCache,
        table: SymbolTable,
        speakers: dict[str, int],
        languages: dict[str, int],
        stats: VarianceStats,
    ):
        self.items, self.cache, self.table = items, cache, table
        self.speakers, self.languages, self.stats = speakers, languages, stats

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        feats = self.cache.get(item.audio_path)
        tokens = self.table.encode(item.symbols, context=str(item.audio_path))
        mel = feats.mel
        durations = None
        if item.durations is not None:
            durations = torch.tensor(item.durations, dtype=torch.long)
            total = int(durations.sum())
            mel = (
                mel[:total]
                if total <= len(mel)
                else np.pad(mel, ((0, total - len(mel)), (0, 0)), mode="edge")
            )
        frames = len(mel)
        s = self.stats
        pitch = (feats.log_f0[:frames] - s.pitch_mean) / s.pitch_std
        energy = (feats.log_energy[:frames] - s.energy_mean) / s.energy_std
        return {
            "tokens": torch.tensor(tokens, dtype=torch.long),
            "mel": torch.from_numpy(np.ascontiguousarray(mel)),
            "pitch": torch.from_numpy(np.pad(pitch, (0, frames - len(pitch))).astype(np.float32)),
            "energy": torch.from_numpy(np.pad(energy, (0, frames - len(energy))).astype(np.float32)),
            "speaker": self.speakers[item.speaker],
            "language": self.languages[item.language],
            "dvector": torch.from_numpy(feats.dvector),
            "durations": durations,
        }


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad to the longest text and mel in the batch."""
    n_text = max(len(i["tokens"]) for i in items)
    n_mel = max(len(i["mel"]) for i in items)
    batch_size, n_mels = len(items), items[0]["mel"].shape[1]
    tokens = torch.zeros(batch_size, n_text, dtype=torch.long)
    mels = torch.zeros(batch_size, n_mel, n_mels)
    pitch, energy = torch.zeros(batch_size, n_mel), torch.zeros(batch_size, n_mel)
    durations = torch.zeros(batch_size, n_text, dtype=torch.long)
    for b, item in enumerate(items):
        tokens[b, : len(item["tokens"])] = item["tokens"]
        mels[b, : len(item["mel"])] = item["mel"]
        pitch[b, : len(item["pitch"])] = item["pitch"]
        energy[b, : len(item["energy"])] = item["energy"]
        if item["durations"] is not None:
            durations[b, : len(item["durations"])] = item["durations"]
    batch = {
        "tokens": tokens,
        "text_lengths": torch.tensor([len(i["tokens"]) for i in items]),
        "mels": mels,
        "mel_lengths": torch.tensor([len(i["mel"]) for i in items]),
        "pitch": pitch,
        "energy": energy,
        "speakers": torch.tensor([i["speaker"] for i in items]),
        "languages": torch.tensor([i["language"] for i in items]),
        "dvectors": torch.stack([i["dvector"] for i in items]),
    }
    # Known durations are used only when the whole batch has them (TextGrid corpora are all-or-nothing).
    if all(i["durations"] is not None for i in items):
        batch["durations"] = durations
    return batch


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


def read_items(
    data_dir: Path, front: TextFrontEnd, mel_cfg: MelConfig, default_language: str
) -> list[VoiceItem]:
    """Utterances of a voice folder with their symbols (TextGrid phones when one sits beside the clip)."""
    from cinematic.data.dataset import read_voice_dir

    utterances = read_voice_dir(data_dir)
    if not utterances:
        raise UserError(
            f"no utterances found in {data_dir}: expected <speaker>/<utt>.wav with <utt>.txt beside it "
            "(or an LJSpeech/VCTK folder)"
        )
    languages = [u.language or default_language for u in utterances]
    symbols = front.batch([u.text for u in utterances], languages)
    items = []
    for utt, language, syms in zip(utterances, languages, symbols, strict=True):
        durations = None
        grid = utt.audio_path.with_suffix(".TextGrid")
        if grid.is_file():
            parsed = read_textgrid_phones(grid, mel_cfg)
            if parsed:
                syms, durations = parsed
        if not syms:
            log.warning("skipping %s: its transcript has nothing to speak", utt.audio_path)
            continue
        items.append(VoiceItem(utt.audio_path, utt.text, utt.speaker, language, list(syms), durations))
    return items


def build_model(cfg: VoiceModelConfig, state: Mapping[str, Any]) -> FastSpeech2:
    stats = VarianceStats(**state["stats"])
    return FastSpeech2(cfg, n_symbols=len(state["symbols"]), n_languages=len(state["languages"]), stats=stats)


# ---------------------------------------------------------------------------------------------- the task


class VoiceTask:
    """FastSpeech 2 + aligner on a voice folder (see the module docstring)."""

    name = "voice"

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.cfg: Config | None = None
        self.val_items: list[VoiceItem] = []

    # -------------------------------------------------------------------------------------- build

    def build(self, cfg: Config, data_dir: Path, ctx: BuildContext) -> Built:
        from cinematic.data.balance import stratified_split

        self.cfg = cfg
        vcfg = cfg.voice_model
        restored = ctx.restored_state or {}
        front = TextFrontEnd(restored.get("front_end", vcfg.front_end))
        items = read_items(data_dir, front, vcfg.audio, vcfg.languages[0])
        cache = FeatureCache(ctx.cache_dir, vcfg.audio, vcfg.speaker_encoder)
        with ctx.local_main_first() as is_first:
            features = _features_with_progress(cache, items, show=is_first)
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
            raise UserError(f"{data_dir}: need at least 2 usable utterances to train a voice model")

        train_idx, val_idx = stratified_split(
            [it.speaker for it in items], cfg.data.val_fraction, cfg.training.seed, cfg.data.max_val_items
        )
        self.state = self._make_state(items, features, train_idx, restored, front, vcfg)
        model = build_model(vcfg, self.state)
        table = SymbolTable.from_state(self.state["symbols"])
        speakers = {name: row for row, name in enumerate(self.state["speakers"], start=1)}
        languages = {name: i for i, name in enumerate(self.state["languages"])}
        stats = VarianceStats(**self.state["stats"])
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
    def binarization_weight(model: FastSpeech2, cfg: VoiceModelConfig) -> float:
        return 1.0 if int(model.num_updates) >= cfg.aligner_binarization_start_steps else 0.0

    def _forward(
        self, model: FastSpeech2, batch: dict[str, torch.Tensor], train: bool
    ) -> dict[str, torch.Tensor]:
        assert self.cfg is not None
        speakers = batch["speakers"]
        if train and self.cfg.voice_model.speaker_encoder:
            drop = torch.rand(speakers.shape, device=speakers.device) < SPEAKER_TABLE_DROPOUT
            speakers = speakers.masked_fill(drop, 0)
        out = teacher_forced(model, batch, speakers)
        weight = self.binarization_weight(model, self.cfg.voice_model)
        return model.losses(out, batch["mels"], batch["text_lengths"], batch["mel_lengths"], weight)

    def training_step(
        self, models: Mapping[str, nn.Module], batch: Any, phase: str, scratch: dict[str, Any]
    ) -> StepOutput:
        model = models["acoustic"]
        core = _unwrap(model)
        losses = self._forward(model, batch, train=True)
        core.num_updates += 1  # a buffer: saved with the weights, so the binarization switch survives resume
        metrics = {k: v.detach() for k, v in losses.items() if k != "loss"}
        return StepOutput(loss=losses["loss"], metrics=metrics, num_items=batch["mel_lengths"].sum())

    @torch.no_grad()
    def validate(self, models: Mapping[str, nn.Module], loader: Any) -> dict[str, float]:
        model = models["acoustic"]
        totals: dict[str, float] = {}
        count = 0
        for batch in loader:
            losses = self._forward(model, batch, train=False)
            n = int(batch["tokens"].shape[0])
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value) * n
            count += n
        return {f"val/{k}": v / max(count, 1) for k, v in totals.items()}

    @torch.no_grad()
    def sample(self, models: Mapping[str, nn.Module], step: int, out_dir: Path) -> list[Media]:
        if not self.val_items:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        model = _unwrap(models["acoustic"])
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

    def inference(self, checkpoint: dict[str, Any], device: str | torch.device = "cpu", **kwargs: Any) -> Any:
        from cinematic.generation.speech import VoiceSynthesizer

        return VoiceSynthesizer(checkpoint, device=device, **kwargs)


def _unwrap(model: nn.Module) -> FastSpeech2:
    return getattr(model, "module", model)  # type: ignore[return-value]


def _features_with_progress(cache: FeatureCache, items: list[VoiceItem], show: bool) -> list[Features]:
    from tqdm import tqdm

    return [
        cache.get(it.audio_path)
        for it in tqdm(items, desc="voice features", unit="utt", disable=not show, mininterval=1.0)
    ]


# ---------------------------------------------------------------------------------------------- recipe


def train_recipe(cfg: Config, data_dir: Path, resume: str | None, args: argparse.Namespace) -> None:
    """`train_voice.py` / `cinematic train voice`: the acoustic model, then the vocoder (`--stage`)."""
    from cinematic.training.trainer import run_training

    stage = getattr(args, "stage", "all") or "all"
    work_dir = Path(cfg.training.work_dir)
    voice_ckpts = work_dir / "voice" / "checkpoints"
    if stage in {"acoustic", "all"}:
        result = run_training("voice", cfg, data_dir, resume=resume)
        voice_ckpts = getattr(result, "run_dir", work_dir / "voice") / "checkpoints"
    if stage in {"vocoder", "all"}:
        # A checkpoint path names one run: it resumes that stage only; "auto" resumes each stage.
        vocoder_resume = resume if (stage == "vocoder" or resume == "auto") else None
        result = run_training("vocoder", cfg, data_dir, resume=vocoder_resume)
        record_vocoder(voice_ckpts, getattr(result, "run_dir", work_dir / "vocoder") / "checkpoints")


def record_vocoder(voice_ckpt_dir: Path, vocoder_ckpt_dir: Path) -> None:
    """Write the vocoder checkpoint's path into the voice checkpoints (atomically), so synthesis finds it."""
    from cinematic.training.checkpointing import atomic_save

    vocoder = next(
        (vocoder_ckpt_dir / n for n in ("best.pth", "last.pth") if (vocoder_ckpt_dir / n).is_file()), None
    )
    if vocoder is None:
        return
    for name in ("best.pth", "last.pth"):
        path = voice_ckpt_dir / name
        if path.is_file():
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            ckpt.setdefault("task_state", {})["vocoder_checkpoint"] = str(vocoder.resolve())
            atomic_save(ckpt, path)


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
    from cinematic.api import load
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
    result = run_training("voice", cfg, data_dir)
    before = (result.metrics_before or {}).get("val/mel_l1", float("nan"))
    qs.report("voice", "val/mel_l1", before, result.metrics_after.get("val/mel_l1", float("nan")))

    work_dir = Path(cfg.training.work_dir)
    vocoder = _quickstart_vocoder(work_dir)
    if vocoder is None:
        print("  no speech vocoder checkpoint from the vocoder stage: skipping the voice samples", flush=True)
        return []
    record_vocoder(result.run_dir / "checkpoints", vocoder.parent)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    synth = load(checkpoint)
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
