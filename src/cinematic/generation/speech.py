"""Speech from a voice checkpoint: synthesis (seen speaker or zero-shot from a reference clip), adaptation to a
new voice (`cinematic clone`) and objective evaluation (`cinematic evaluate voice`).

    voice = cinematic.load("work_dir/voice/checkpoints/best.pth", vocoder="work_dir/vocoder/checkpoints/best.pth")
    wav = voice.synthesize("Bonjour à tous.", language="fr", reference="me.wav")   # float32 at voice.sample_rate

The acoustic model is built from the `FastSpeech2Config` and mel front end stored in the checkpoint's task
state ("model_config", "mel_config"); checkpoints written before those were stored are read through their
`voice_model` config section (validated alone, with `VoiceModelConfig`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from cinematic.checkpoint_io import find_companion, inference_weights, read_checkpoint
from cinematic.configs.model_config import MelConfig, VoiceModelConfig, dataclass_from_section
from cinematic.data.skips import UnreadableFile
from cinematic.data.tokenizers.phonemes import SymbolTable, TextFrontEnd, speakable
from cinematic.data.voice import (
    FeatureCache,
    VoiceDataset,
    VoiceItem,
    clip_problem,
    collate,
    load_clip,
    read_items,
)
from cinematic.errors import UserError
from cinematic.generation.vocode import Vocoder
from cinematic.models.fastspeech import FastSpeech2, FastSpeech2Config, VarianceStats, teacher_forced
from cinematic.utils import atomic_write, default_file_mode

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- the model


def fastspeech_config(section: VoiceModelConfig, n_symbols: int, n_languages: int) -> FastSpeech2Config:
    """The model settings of a `voice_model` config section, for a symbol table and language list."""
    return dataclass_from_section(
        FastSpeech2Config, section, n_symbols=n_symbols, n_languages=n_languages, n_mels=section.audio.n_mels
    )


def build_model(model_cfg: FastSpeech2Config, state: dict[str, Any]) -> FastSpeech2:
    """A FastSpeech 2 with a voice task state's pitch/energy/duration statistics."""
    return FastSpeech2(model_cfg, VarianceStats(**state["stats"]))


def checkpoint_model_config(checkpoint: dict[str, Any]) -> tuple[FastSpeech2Config, MelConfig]:
    """The model settings and mel front end a voice checkpoint was trained with: stored in its task
    state, or (checkpoints written before they were) derived from its `voice_model` config section."""
    state = checkpoint["task_state"]
    if "model_config" in state and "mel_config" in state:
        return FastSpeech2Config(**state["model_config"]), MelConfig.model_validate(state["mel_config"])
    raw = (checkpoint.get("config") or {}).get("voice_model")
    if raw is None:
        raise UserError("the voice checkpoint holds neither model settings nor a voice_model config section")
    try:
        section = VoiceModelConfig.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"the voice checkpoint's voice_model config section is not readable: {err}") from None
    return fastspeech_config(section, len(state["symbols"]), len(state["languages"])), section.audio


def _vocoder_from(spec: Any, device: str | torch.device) -> Any:
    """A vocoder object (`.mel_config`, `.check_mel_config`, `.vocode`): given, or from a checkpoint
    (a path or a dict)."""
    if spec is None or hasattr(spec, "vocode"):
        return spec
    return Vocoder.from_checkpoint(spec, device=device)


SENTENCE_PAUSE_S = 0.2
REFERENCE_HINT = (
    "Pass a recording of the voice to clone: a few seconds of clear speech (3 to 10 s work best), "
    "as wav, flac, ogg or mp3 at any sample rate."
)
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")


def _sentence(reason: str) -> str:
    """`reason` ending in a full stop (or its own ? or !), to go before another sentence."""
    return reason if reason.endswith((".", "?", "!")) else f"{reason}."


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Sentences of `text` (split after . ! ? followed by space); very long ones are cut at commas/spaces.
    A piece with nothing to pronounce ("...", "🎵!") stays with its neighbour."""
    from cinematic.data.tokenizers.phonemes import ABBREVIATIONS

    abbreviations = {a for table in ABBREVIATIONS.values() for a in table if a.endswith(".")}
    merged: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        if merged and (
            not speakable(merged[-1])
            or not speakable(piece)
            or merged[-1].split()[-1].lower() in abbreviations  # "Dr. Smith" is one sentence
        ):
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    sentences = []
    for sentence in merged:
        while len(sentence) > max_chars:
            cut = max(sentence.rfind(",", 0, max_chars), sentence.rfind(" ", 0, max_chars))
            cut = cut if cut > 0 else max_chars
            sentences.append(sentence[: cut + 1].strip())
            sentence = sentence[cut + 1 :]
        if sentence.strip():
            sentences.append(sentence.strip())
    return sentences or [text]


class VoiceSynthesizer:
    """What `cinematic.load` returns for a voice checkpoint (`VoiceSynthesizer.from_checkpoint`)."""

    def __init__(
        self,
        model: FastSpeech2,
        state: dict[str, Any],
        mel_config: MelConfig,
        device: str | torch.device = "cpu",
        vocoder: Any = None,
        checkpoint: dict[str, Any] | None = None,
    ):
        """`model`: the acoustic model; `state`: the voice task's exported state (vocabularies, speakers,
        statistics); `vocoder`: an object with `vocode` or a vocoder checkpoint (default: the one the
        state records); `checkpoint`: where it came from (`adapt` copies its step and config)."""
        self.checkpoint = checkpoint or {}
        self.state = state
        self.model_cfg: FastSpeech2Config = model.cfg
        self._mel_config = mel_config
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.front = TextFrontEnd(self.state["front_end"])
        if self.front.mode != self.state["front_end"]:
            log.warning(
                "this model was trained on %s but espeak-ng is missing here: its speech will be garbled",
                self.state["front_end"],
            )
        self.table = SymbolTable.from_state(self.state["symbols"])
        self._vocoder_spec = vocoder  # None: the vocoder the state records (or an export embeds)
        self.checkpoint_path: Path | None = None
        """Where the checkpoint was read from: a recorded vocoder is looked for from its run folder."""
        self._vocoder: Any = None
        self._speaker_encoder: Any = None

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path | dict[str, Any],
        device: str | torch.device = "cpu",
        vocoder: Any = None,
        checkpoint_path: str | Path | None = None,
    ) -> VoiceSynthesizer:
        """A ready synthesizer from a voice checkpoint (a dict, or a path to read): the acoustic model's
        EMA weights when the run kept them. `vocoder`: a vocoder checkpoint (path or dict) or object;
        default: the vocoder checkpoint the voice recipe recorded in it. `checkpoint_path`: where a
        given dict was read from (for messages)."""
        source = str(checkpoint if isinstance(checkpoint, str | Path) else checkpoint_path or "checkpoint")
        ckpt = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
        state = ckpt.get("task_state") or {}
        if "acoustic" not in (ckpt.get("model") or {}) or not {"symbols", "stats", "speakers"} <= set(state):
            raise UserError(
                f"{source} is a {ckpt.get('task')!r} checkpoint, not a voice model's (it has no FastSpeech 2 "
                "acoustic model and symbol table); pass a checkpoint of `cinematic train voice`"
            )
        model_cfg, mel_config = checkpoint_model_config(ckpt)
        model = build_model(model_cfg, state)
        model.load_state_dict(inference_weights(ckpt, "acoustic"))
        synth = cls(model, state, mel_config, device=device, vocoder=vocoder, checkpoint=ckpt)
        path = checkpoint if isinstance(checkpoint, str | Path) else checkpoint_path
        synth.checkpoint_path = Path(path) if path else None
        return synth

    # ------------------------------------------------------------------------------------------ properties

    @property
    def mel_config(self) -> MelConfig:
        return self._mel_config

    @property
    def sample_rate(self) -> int:
        return self._mel_config.sample_rate

    @property
    def speakers(self) -> list[str]:
        return list(self.state["speakers"])

    @property
    def languages(self) -> list[str]:
        return list(self.state["languages"])

    @property
    def vocoder(self) -> Any:
        if self._vocoder is None:
            spec = self._vocoder_spec
            if spec is None:  # recorded: a file reference, an older absolute path, or embedded (export)
                spec = find_companion(
                    self.state.get("vocoder_checkpoint"),
                    self.checkpoint_path,
                    "vocoder",
                    hint="pass --vocoder VCKPT (a checkpoint of `cinematic train vocoder` at the voice "
                    "model's mel settings)",
                )
            elif isinstance(spec, (str, Path)) and not Path(spec).is_file():
                raise UserError(f"vocoder checkpoint not found: {spec} (pass --vocoder VCKPT)")
            vocoder = _vocoder_from(spec, self.device)
            try:
                vocoder.check_mel_config(self.mel_config)
            except UserError as err:  # name the file
                raise UserError(f"{spec if isinstance(spec, (str, Path)) else 'vocoder'}: {err}") from None
            self._vocoder = vocoder
        return self._vocoder

    # ------------------------------------------------------------------------------------------ conditioning

    def _speaker_row(self, speaker: str) -> int:
        if speaker not in self.state["speakers"]:
            known = ", ".join(self.state["speakers"]) or "none"
            raise UserError(
                f"unknown speaker {speaker!r}; this model knows: {known} "
                "(or clone a new voice with --reference ref.wav)"
            )
        return self.state["speakers"].index(speaker) + 1

    def speaker_encoder(self) -> Any:
        """The GE2E speaker encoder the model's d-vectors come from (None: the model uses none)."""
        if not self.model_cfg.speaker_encoder:
            return None
        if self._speaker_encoder is None:
            from cinematic.models.speaker_encoder import SpeakerEncoder

            self._speaker_encoder = SpeakerEncoder()
        return self._speaker_encoder

    def reference_dvector(
        self, reference: str | Path | np.ndarray, sample_rate: int | None = None
    ) -> np.ndarray:
        """The d-vector of a reference clip: a file (any rate and channel count: downmixed, and resampled
        by the speaker encoder), or samples ((samples,) or (channels, samples)) at `sample_rate`, default
        the model's. A `UserError` naming the clip when it cannot be decoded, is silent or too short."""
        from cinematic.data.audio import load_audio
        from cinematic.models.speaker_encoder import SpeakerEncoder

        if isinstance(reference, (str, Path)):
            name = f"reference clip {reference}"
            if not Path(reference).is_file():
                raise UserError(f"reference clip not found: {reference}. {REFERENCE_HINT}")
            try:
                wav, sr = load_audio(reference)
            except UnreadableFile as err:
                raise UserError(f"{name}: {_sentence(err.reason)} {REFERENCE_HINT}") from None
        else:
            name = "the reference clip"
            wav, sr = np.asarray(reference, dtype=np.float32), sample_rate or self.sample_rate
            if wav.ndim == 2:
                wav = wav.mean(axis=0 if wav.shape[0] < wav.shape[1] else 1)
        problem = clip_problem(wav, sr)
        if problem is not None:
            raise UserError(f"{name}: {_sentence(problem)} {REFERENCE_HINT}")
        try:
            return (self.speaker_encoder() or SpeakerEncoder()).embed(wav, sr)
        except UserError as err:  # too little sound once the encoder trims the quiet ends
            raise UserError(f"{name}: {_sentence(str(err))} {REFERENCE_HINT}") from None

    def conditioning(
        self, speaker: str | None = None, reference: Any = None
    ) -> tuple[int, np.ndarray | None]:
        """(speaker-table row, d-vector): a seen speaker uses its row and mean d-vector; a reference clip
        uses row 0 ("no table entry", as in training's table dropout) and the clip's d-vector."""
        if (speaker is None) == (reference is None):
            raise UserError("give exactly one of speaker=NAME or reference=clip")
        if speaker is not None:
            vector = self.state.get("speaker_dvectors", {}).get(speaker)
            row = self._speaker_row(speaker)
            return row, (vector.numpy() if isinstance(vector, torch.Tensor) else vector)
        if not self.model_cfg.speaker_encoder:
            raise UserError(
                "this model was trained without a speaker encoder (voice_model.speaker_encoder: "
                "false), so it cannot clone from a reference; use --speaker or `cinematic clone`"
            )
        return 0, self.reference_dvector(reference)

    def check_text(self, text: str, language: str) -> None:
        """A `UserError` for a language the model does not know, or text with nothing to pronounce."""
        if language not in self.state["languages"]:
            raise UserError(
                f"unknown language {language!r}; this model knows: {', '.join(self.state['languages'])} "
                "(pass one of them with --language)"
            )
        if not text.strip():
            raise UserError('the text to speak is empty: pass the words to say, e.g. --text "Hello there."')
        if not speakable(text):
            raise UserError(
                f"the text {text[:80]!r} has nothing to pronounce in {language!r}: it holds no letters or "
                "digits, only symbols, emoji or punctuation. Write out the words to say (numbers are read out)."
            )

    def tokens(self, text: str, language: str) -> torch.Tensor:
        self.check_text(text, language)
        if language not in self.state.get("trained_languages", self.state["languages"]):
            log.warning("language %r had no training data: expect an accent", language)
        symbols = self.front.symbols(text, language)
        ids = self.table.encode(symbols, context=f"text {text[:40]!r}")
        if not ids:
            unknown = " ".join(self.table.unknown(symbols))
            raise UserError(
                f"the text {text[:80]!r} has nothing this model can pronounce in {language!r}: "
                + (
                    f"none of its symbols ({unknown}) occurred in the training data"
                    if unknown
                    else "it gives no symbols"
                )
                + ". Write the words in that language (and its script), or pick another --language."
            )
        return torch.tensor([ids], device=self.device)

    # ------------------------------------------------------------------------------------------ synthesis

    @torch.no_grad()
    def infer(
        self,
        text: str,
        language: str = "en",
        speaker: str | None = None,
        reference: Any = None,
        speed: float = 1.0,
        pitch: float = 0.0,
        energy: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Acoustic model outputs for one text (mel (1, T, n_mels), durations, F0 per symbol)."""
        if speed <= 0 or energy <= 0:
            raise UserError("--speed and --energy must be positive")
        tokens = self.tokens(text, language)
        row, dvector = self.conditioning(speaker, reference)
        dvec = torch.from_numpy(dvector).to(self.device).unsqueeze(0) if dvector is not None else None
        return self.model.infer(
            tokens,
            torch.tensor([row], device=self.device),
            torch.tensor([self.state["languages"].index(language)], device=self.device),
            dvec,
            speed=speed,
            pitch_shift=pitch,
            energy_scale=energy,
        )

    def mel(self, text: str, **kwargs: Any) -> np.ndarray:
        """Log-mel (n_mels, frames) of `text`; keyword arguments as in `synthesize`. Text of several
        sentences is spoken sentence by sentence (the model was trained on single utterances) with a
        short pause between them."""
        from cinematic.data.audio import LOG_MEL_FLOOR

        self.check_text(text, kwargs.get("language", "en"))  # the whole text, before any sentence of it
        pieces = [
            self.infer(sentence, **kwargs)["mel"][0].T.float().cpu().numpy()
            for sentence in split_sentences(text)
        ]
        if len(pieces) == 1:
            return pieces[0]
        pause_frames = round(SENTENCE_PAUSE_S * self.sample_rate / self.mel_config.hop_length)
        pause = np.full((self.mel_config.n_mels, pause_frames), np.log(LOG_MEL_FLOOR), dtype=np.float32)
        joined = [part for piece in pieces for part in (piece, pause)][:-1]
        return np.concatenate(joined, axis=1)

    def synthesize(
        self,
        text: str,
        language: str = "en",
        speaker: str | None = None,
        reference: Any = None,
        speed: float = 1.0,
        pitch: float = 0.0,
        energy: float = 1.0,
    ) -> np.ndarray:
        """Waveform (float32, mono, at `sample_rate`) of `text` spoken by `speaker` or like `reference`.
        `speed` > 1 speaks faster, `pitch` shifts by semitones, `energy` scales loudness of the prosody."""
        vocoder = self.vocoder
        mel = self.mel(
            text,
            language=language,
            speaker=speaker,
            reference=reference,
            speed=speed,
            pitch=pitch,
            energy=energy,
        )
        return np.asarray(vocoder.vocode(mel), dtype=np.float32).reshape(-1)


# ---------------------------------------------------------------------------------------------- adaptation


def _voice_dataset(
    items: list[VoiceItem], cache: FeatureCache, table: SymbolTable, state: dict[str, Any]
) -> VoiceDataset:
    """A `VoiceDataset` over `items` with the speaker rows and languages of a voice task state; a speaker the
    state does not know takes row 0 ("no table entry", the zero-shot row)."""
    speakers = {it.speaker: 0 for it in items} | {n: i for i, n in enumerate(state["speakers"], start=1)}
    languages = {n: i for i, n in enumerate(state["languages"])}
    return VoiceDataset(items, cache, table, speakers, languages, state["stats"])


def _reference_items(
    reference_dir: Path, front: TextFrontEnd, language: str, mel_cfg: MelConfig
) -> list[VoiceItem]:
    from cinematic.data.audio import AUDIO_SUFFIXES
    from cinematic.data.dataset import read_text

    if not reference_dir.is_dir():
        raise UserError(f"reference folder not found: {reference_dir}")
    clips = sorted(p for p in reference_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    pairs = [
        (clip, read_text(clip.with_suffix(".txt"))) for clip in clips if clip.with_suffix(".txt").is_file()
    ]
    pairs = [(clip, text) for clip, text in pairs if text]
    if not pairs:
        raise UserError(f"{reference_dir}: no clips with transcripts; put <utt>.wav with <utt>.txt beside it")
    symbols = front.batch([t for _, t in pairs], [language] * len(pairs))
    items = []
    for (clip, text), syms in zip(pairs, symbols, strict=True):
        if syms:
            items.append(VoiceItem(clip, text, reference_dir.name, language, syms))
        else:
            log.warning("leaving out %s: its transcript has nothing to pronounce in %r", clip, language)
    if not items:
        raise UserError(
            f"{reference_dir}: no transcript has anything to pronounce in {language!r}; write the words "
            "spoken in each <utt>.txt"
        )
    return items


def _reference_features(cache: FeatureCache, clip: Path, reference_dir: Path) -> Any:
    """A clip's features for adaptation; a `UserError` naming a clip that cannot be used."""
    try:
        return cache.get(clip)
    except UnreadableFile as err:
        raise UserError(
            f"reference clip {clip}: {_sentence(err.reason)} Remove it (and its transcript) from {reference_dir} or "
            f"replace it. {REFERENCE_HINT}"
        ) from None


def adapt(
    synth: VoiceSynthesizer,
    reference_dir: str | Path,
    speaker_name: str | None = None,
    steps: int = 200,
    full: bool = False,
    language: str | None = None,
    learning_rate: float = 2e-3,
    seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune a voice model on a few minutes of a new voice; returns the new checkpoint (a dict).

    By default only the speaker table and the decoder's speaker-conditional layer norms move (AdaSpeech);
    `full=True` tunes every weight. The new speaker's row starts from the zero-shot row, so training
    begins at the zero-shot clone and improves on it. `synth` itself is adapted in place (its model and
    state then know the new speaker)."""
    from cinematic.data.dataset import read_json_labels

    reference_dir = Path(reference_dir)
    name = speaker_name or reference_dir.name
    state = {
        k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
        for k, v in synth.state.items()
    }
    if name in state["speakers"]:
        raise UserError(f"speaker {name!r} is already in the model; choose another --speaker_name")
    if len(state["speakers"]) >= synth.model_cfg.num_speakers:
        raise UserError(
            f"the model's speaker table is full ({synth.model_cfg.num_speakers}); train with a larger "
            "voice_model.num_speakers"
        )
    language = (
        language
        or read_json_labels(reference_dir / "speaker.json").get("language")
        or state.get("trained_languages", state["languages"])[0]
    )
    if language not in state["languages"]:
        raise UserError(
            f"{reference_dir}: language {language!r} is not one this model knows "
            f'({", ".join(state["languages"])}); set "language" in {reference_dir / "speaker.json"} to one of them'
        )
    items = _reference_items(reference_dir, synth.front, language, synth.mel_config)
    cache = FeatureCache(None, synth.mel_config, synth.speaker_encoder())
    feats = [_reference_features(cache, it.audio_path, reference_dir) for it in items]
    items = [it for it, f in zip(items, feats, strict=True) if len(f.mel) >= len(it.symbols)]
    if not items:
        raise UserError(f"{reference_dir}: every clip is shorter than its transcript needs")

    row = len(state["speakers"]) + 1
    state["speakers"] = [*state["speakers"], name]
    vectors = np.stack([cache.get(it.audio_path).dvector for it in items])
    mean = vectors.mean(0)
    dvector = torch.from_numpy((mean / (np.linalg.norm(mean) + 1e-9)).astype(np.float32))
    state["speaker_dvectors"] = {**state.get("speaker_dvectors", {}), name: dvector}

    dataset = _voice_dataset(items, cache, synth.table, state)
    model = synth.model
    torch.manual_seed(seed)
    with torch.no_grad():
        model.speaker_embedding.weight[row] = model.speaker_embedding.weight[0]
    params = list(model.parameters()) if full else model.adaptation_parameters()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=learning_rate if not full else learning_rate / 4)
    model.eval()  # dropout off, batch-norm statistics frozen: a few clips must not rewrite them
    batch_size = min(8, len(dataset))
    rng = np.random.default_rng(seed)
    from tqdm import tqdm

    for _ in tqdm(range(steps), desc=f"adapting to {name}", unit="step", mininterval=1.0):
        pick = rng.choice(len(dataset), size=batch_size, replace=False)
        batch = {k: v.to(synth.device) for k, v in collate([dataset[int(i)] for i in pick]).items()}
        out = teacher_forced(model, batch)
        loss = model.losses(out, batch["mels"], batch["text_lengths"], batch["mel_lengths"])["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    for p in model.parameters():
        p.requires_grad_(True)
    # self-contained: the adapted checkpoint carries its model settings whatever the original held
    state["model_config"] = asdict(synth.model_cfg)
    state["mel_config"] = synth.mel_config.model_dump()
    synth.state = state
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {
        "format_version": synth.checkpoint.get("format_version", 1),
        "task": "voice",
        "config": synth.checkpoint.get("config", {}),
        "data_dir": synth.checkpoint.get("data_dir"),
        "model": {"acoustic": weights},
        "ema": {},
        "task_state": state,
        "step": int(synth.checkpoint.get("step", 0)),
        "epoch": int(synth.checkpoint.get("epoch", 0)),
        "adaptation": {"speaker": name, "steps": steps, "full": full, "clips": len(items)},
    }


# ---------------------------------------------------------------------------------------------- evaluation


MCD_ORDER = 24
"""Mel-cepstral order of `mel_cepstral_distortion`: coefficients c1..c24 are compared (c0, the frame's
log gain, is left out)."""
MCD_DB = 10.0 * math.sqrt(2.0) / math.log(10.0)
"""dB per unit of Euclidean mel-cepstral distance (Kubichek 1993; cepstra in natural-log units)."""


def _dtw_path(ref: np.ndarray, syn: np.ndarray) -> np.ndarray:
    """DTW path (K, 2) of (ref frame, syn frame) between (dims, T) feature sequences (Euclidean)."""
    import librosa

    _, path = librosa.sequence.dtw(X=ref, Y=syn, metric="euclidean")
    return path[::-1]


def mel_cepstra(
    wav: np.ndarray,
    sample_rate: int,
    order: int = MCD_ORDER,
    frame_length: int = 1024,
    hop_length: int = 256,
    alpha: float | None = None,
) -> np.ndarray:
    """SPTK mel-cepstra (T, order + 1) of a waveform: `pysptk.mcep` (mel-cepstral analysis, as SPTK's
    `frame | window | mcep`) of Blackman-windowed frames, with the all-pass constant for the sample rate
    (`pysptk.util.mcepalpha`: 0.455 at 22.05 kHz) unless `alpha` is given. The signal is first scaled to
    an RMS of 0.1, so that the periodogram floor (1e-8, which keeps silent frames finite) sits at the same
    depth below any signal: the cepstra above c0 then do not depend on the recording level."""
    with warnings.catch_warnings():  # pysptk.util imports pkg_resources, which warns about itself
        warnings.simplefilter("ignore")
        import librosa
        import pysptk

    alpha = pysptk.util.mcepalpha(sample_rate) if alpha is None else alpha
    x = np.asarray(wav, dtype=np.float64).reshape(-1)
    x = 0.1 * x / (np.sqrt(np.mean(x**2)) + 1e-12) if x.size else x
    x = np.pad(x, (frame_length // 2, frame_length // 2))
    frames = librosa.util.frame(x, frame_length=frame_length, hop_length=hop_length, axis=0)
    frames = frames * pysptk.blackman(frame_length)
    return np.stack([pysptk.mcep(f, order, alpha, etype=1, eps=1e-8) for f in frames])


def mel_cepstral_distortion(
    ref_wav: np.ndarray,
    syn_wav: np.ndarray,
    sample_rate: int,
    order: int = MCD_ORDER,
    frame_length: int = 1024,
    hop_length: int = 256,
) -> float:
    """Mel-cepstral distortion in dB, as papers report it: SPTK mel-cepstra (`mel_cepstra`, order 24,
    all-pass constant for the sample rate), c0 excluded, frames paired by DTW, averaged over the path of
    10·√2/ln10 · ‖c_ref − c_syn‖. 0 for identical signals."""
    ref = mel_cepstra(ref_wav, sample_rate, order, frame_length, hop_length)[:, 1:].T
    syn = mel_cepstra(syn_wav, sample_rate, order, frame_length, hop_length)[:, 1:].T
    path = _dtw_path(ref, syn)
    diff = ref[:, path[:, 0]] - syn[:, path[:, 1]]
    return float((MCD_DB * np.sqrt((diff**2).sum(0))).mean())


def mel_log_dct_distance(
    ref_logmel: np.ndarray, syn_logmel: np.ndarray, n_coeffs: int = 24
) -> tuple[float, np.ndarray]:
    """MCD's formula applied to the orthonormal DCT of the natural-log mel (c0 excluded), frames paired by
    DTW. Not the mel-cepstral distortion papers report (`mel_cepstral_distortion`; this one is not
    comparable with it): what `evaluate voice` called "mcd_db" before that was added. Inputs (n_mels,
    T). Returns (distance, DTW path (K, 2) of (ref frame, syn frame))."""
    from scipy.fft import dct

    ref = dct(ref_logmel, type=2, norm="ortho", axis=0)[1 : n_coeffs + 1]
    syn = dct(syn_logmel, type=2, norm="ortho", axis=0)[1 : n_coeffs + 1]
    path = _dtw_path(ref, syn)
    diff = ref[:, path[:, 0]] - syn[:, path[:, 1]]
    return float((MCD_DB * np.sqrt((diff**2).sum(0))).mean()), path


def f0_rmse(ref_f0: np.ndarray, syn_f0: np.ndarray, path: np.ndarray) -> float:
    """RMSE in Hz over DTW-paired frames voiced in both clips (NaN when none are)."""
    a, b = ref_f0[np.minimum(path[:, 0], len(ref_f0) - 1)], syn_f0[np.minimum(path[:, 1], len(syn_f0) - 1)]
    voiced = (a > 0) & (b > 0)
    return float(np.sqrt(np.mean((a[voiced] - b[voiced]) ** 2))) if voiced.any() else float("nan")


SUMMARY_KEYS = (
    "mcd_db",
    "mel_log_dct_distance",
    "f0_rmse_hz",
    "speaker_similarity",
    "duration_mae_frames",
    "length_error",
)


def evaluate_voice(synth: VoiceSynthesizer, data_dir: str | Path, max_items: int = 20) -> dict[str, Any]:
    """MCD (SPTK mel-cepstra, DTW), the log-mel DCT distance, F0 RMSE on voiced frames, speaker similarity
    and duration error on held-out clips.

    Each clip's text is synthesized by its speaker when the model knows the name, else zero-shot from another
    clip of that speaker. Duration error compares predicted per-symbol durations with the clip's (its
    TextGrid's when it has one, else the aligner's on the real clip). Clips that cannot be decoded or
    hold no usable sound, and unreadable metadata, are left out and listed under "skipped"."""
    from cinematic.data.audio import mel_spectrogram, pitch_praat
    from cinematic.models.speaker_encoder import SpeakerEncoder

    mel_cfg = synth.mel_config
    skipped: list[dict[str, str]] = []

    def skip(path: Path, reason: str) -> None:
        log.warning("evaluate voice: leaving out %s: %s", path, reason)
        skipped.append({"path": str(path), "reason": reason})

    items = read_items(Path(data_dir), synth.front, mel_cfg, synth.state["languages"][0], on_unreadable=skip)
    items = [it for it in items if it.language in synth.state["languages"]]
    if not items:
        raise UserError(
            f"{data_dir}: no utterances in a language this model knows ({', '.join(synth.languages)})"
        )
    encoder = synth.speaker_encoder() or SpeakerEncoder()  # speaker similarity needs one either way
    cache = FeatureCache(None, mel_cfg, synth.speaker_encoder())
    usable = []
    for it in items:
        if len(usable) == max_items:
            break
        try:
            cache.get(it.audio_path)  # decoded and checked once; kept in memory for the duration error
            usable.append(it)
        except UnreadableFile as err:
            skip(it.audio_path, err.reason)
    if not usable:
        raise UserError(
            f"{data_dir}: none of its clips can be used ({len(skipped)} left out, see the warnings above)"
        )
    by_speaker: dict[str, list[Path]] = {}
    for it in usable:
        by_speaker.setdefault(it.speaker, []).append(it.audio_path)
    rows = []
    from tqdm import tqdm

    for it in tqdm(usable, desc="evaluating", unit="utt", mininterval=1.0):
        known = it.speaker in synth.state["speakers"]
        others = [p for p in by_speaker[it.speaker] if p != it.audio_path]
        who = {"speaker": it.speaker} if known else {"reference": others[0] if others else it.audio_path}
        out = synth.infer(it.text, language=it.language, **who)
        wav = np.asarray(
            synth.vocoder.vocode(out["mel"][0].T.float().cpu().numpy()), dtype=np.float32
        ).reshape(-1)
        real = load_clip(it.audio_path, mel_cfg)
        ref_mel = mel_spectrogram(real, mel_cfg).numpy()
        syn_mel = mel_spectrogram(wav, mel_cfg).numpy()
        distance, path = mel_log_dct_distance(ref_mel, syn_mel)
        rmse = f0_rmse(
            pitch_praat(real, mel_cfg.sample_rate, mel_cfg.hop_length, ref_mel.shape[1]),
            pitch_praat(wav, mel_cfg.sample_rate, mel_cfg.hop_length, syn_mel.shape[1]),
            path,
        )
        rows.append(
            {
                "clip": str(it.audio_path),
                "speaker": it.speaker,
                "seen_speaker": known,
                "mcd_db": mel_cepstral_distortion(
                    real, wav, mel_cfg.sample_rate, frame_length=mel_cfg.n_fft, hop_length=mel_cfg.hop_length
                ),
                "mel_log_dct_distance": distance,
                "f0_rmse_hz": rmse,
                "speaker_similarity": _speaker_similarity(encoder, real, wav, mel_cfg.sample_rate),
                **_duration_error(synth, it, cache, out["durations"][0].cpu()),
            }
        )
    summary = {key: float(np.nanmean([r[key] for r in rows])) for key in SUMMARY_KEYS}
    return {"summary": summary, "clips": rows, "n_clips": len(rows), "skipped": skipped}


def _speaker_similarity(encoder: Any, real: np.ndarray, synthesized: np.ndarray, sample_rate: int) -> float:
    """Cosine similarity of the two clips' d-vectors; NaN when the synthesized audio has too little sound
    for one (a badly trained model can speak near silence)."""
    from cinematic.models.speaker_encoder import cosine_similarity

    try:
        return cosine_similarity(encoder.embed(real, sample_rate), encoder.embed(synthesized, sample_rate))
    except UserError as err:
        log.warning("speaker similarity not measured: %s", err)
        return float("nan")


def _duration_error(
    synth: VoiceSynthesizer, item: VoiceItem, cache: FeatureCache, predicted: torch.Tensor
) -> dict[str, float]:
    """Mean absolute per-symbol duration error (frames) against the clip's durations (its TextGrid's when
    it has one, else the aligner's on the real clip), and the relative error of the total length."""
    dataset = _voice_dataset([item], cache, synth.table, synth.state)
    batch = {k: v.to(synth.device) for k, v in collate([dataset[0]]).items()}
    if int(batch["mel_lengths"][0]) < int(batch["text_lengths"][0]):
        return {"duration_mae_frames": float("nan"), "length_error": float("nan")}
    with torch.no_grad():
        out = teacher_forced(synth.model, batch)
    true = out["durations"][0].cpu().float()
    pred = predicted.float()[: len(true)]
    return {
        "duration_mae_frames": float((pred - true).abs().mean()),
        "length_error": float(abs(pred.sum() - true.sum()) / true.sum()),
    }


def format_table(report: dict[str, Any]) -> str:
    names = {
        "mcd_db": f"MCD (dB, mcep {MCD_ORDER}, DTW)",
        "mel_log_dct_distance": "log-mel DCT dist. (not MCD)",
        "f0_rmse_hz": "F0 RMSE (Hz, voiced)",
        "speaker_similarity": "speaker similarity (cos)",
        "duration_mae_frames": "duration MAE (frames/symbol)",
        "length_error": "length error (relative)",
    }
    lines = [f"{'metric':<30} value", "-" * 40]
    lines += [f"{names[k]:<30} {v:.3f}" for k, v in report["summary"].items()]
    skipped = len(report.get("skipped", []))
    lines.append(
        f"({report['n_clips']} clips" + (f"; {skipped} file(s) left out, see 'skipped')" if skipped else ")")
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI


def _load_synth(args: argparse.Namespace) -> VoiceSynthesizer:
    return VoiceSynthesizer.from_checkpoint(
        args.checkpoint, device=getattr(args, "device", "cpu"), vocoder=getattr(args, "vocoder", None)
    )


def synthesize_command(args: argparse.Namespace) -> int:
    from cinematic.data.audio import save_audio

    synth = _load_synth(args)
    wav = synth.synthesize(
        args.text,
        language=args.language,
        speaker=args.speaker,
        reference=args.reference,
        speed=args.speed,
        pitch=args.pitch,
        energy=args.energy,
    )
    save_audio(args.out, wav, synth.sample_rate)
    print(f"wrote {args.out} ({len(wav) / synth.sample_rate:.2f} s)")
    return 0


def clone_command(args: argparse.Namespace) -> int:
    synth = _load_synth(args)
    checkpoint = adapt(
        synth, args.reference_dir, speaker_name=args.speaker_name, steps=args.steps, full=args.full
    )
    atomic_write(Path(args.out), lambda handle: torch.save(checkpoint, handle), mode=default_file_mode())
    name = checkpoint["adaptation"]["speaker"]
    print(f"wrote {args.out}: use --checkpoint {args.out} --speaker {name}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    from cinematic.utils import atomic_write_bytes

    synth = _load_synth(args)
    report = evaluate_voice(synth, args.data_dir)
    text = json.dumps(report, indent=2)
    if args.out:
        atomic_write_bytes(args.out, text.encode())
    print(format_table(report))
    print(json.dumps(report["summary"]))
    return 0
