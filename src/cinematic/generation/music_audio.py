"""Generation for the music audio route: K-stream sampling with the delay pattern, mel-RVQ decoding and
the music vocoder.

One model step emits one token per stream; stream k at step s carries frame s − k (MusicGen's delay
pattern, `cinematic.data.tokenizers.delay`), so T frames take T + K − 1 steps on the KV cache, each
costing O(L). Where a stream has no frame yet (s < k) or any more (s ≥ T + k) its token is forced to
EMPTY, as in training; EMPTY and BOS are never sampled. Temperature / top-k / top-p apply per stream;
classifier-free guidance runs the conditional and the all-null rows as one batch of two and mixes
their logits, uncond + w · (cond − uncond) (Ho & Salimans 2022).

    music = cinematic.load("work_dir/music/checkpoints/best.pth")            # audio-route checkpoint
    wav = music.generate(emotion="epic", duration=10.0, seed=0)             # float32 (samples,) at 44.1 kHz

`cinematic generate music --checkpoint CKPT [--vocoder VCKPT] --emotion E --duration 10 --out out.wav`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cinematic.checkpoint_io import find_companion, inference_weights, read_checkpoint
from cinematic.configs.model_config import MelConfig
from cinematic.data.audio import limit_peak
from cinematic.data.tokenizers.delay import StreamVocab, deinterleave
from cinematic.errors import UserError
from cinematic.generation.sampling import (
    FILL_MIN_P,
    complete_conditions,
    condition_ids,
    guidance_rows,
    guided_logits,
    sample_next,
    sampling_kwargs,
)

log = logging.getLogger(__name__)


@torch.no_grad()
def generate_codes(
    model: Any,
    conditions: Sequence[int] | torch.Tensor | None,
    frames: int,
    *,
    empty_id: int,
    bos_id: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    guidance: float = 1.0,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """Codes (K, frames) from a K-stream model; the same seed gives the same codes on the same device.
    The codes stay on the model's device until the end (a GPU samples with a device generator and never
    waits for a token to reach the host)."""
    device = next(model.parameters()).device
    k_streams = model.cfg.num_streams
    cond, guided = guidance_rows(conditions, model.num_conditions, guidance, device)
    rows = cond.size(0)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    steps = frames + k_streams - 1
    stream = torch.arange(k_streams, device=device)
    delayed = torch.full((k_streams, steps), empty_id, dtype=torch.long, device=device)
    cache = model.new_cache()
    logits = model(torch.full((rows, k_streams, 1), bos_id, dtype=torch.long, device=device), cond, cache)
    step_range: Any = range(steps)
    if progress:
        from tqdm.auto import tqdm

        step_range = tqdm(step_range, desc="generating", unit="step")
    for step in step_range:
        last = logits[:, :, -1].float()  # (rows, K, V)
        step_logits = guided_logits(last[0], last[1], guidance) if guided else last[0]  # (K, V)
        step_logits[:, empty_id:] = float("-inf")  # EMPTY and BOS are forced, never sampled
        tokens = sample_next(step_logits, temperature, top_k, top_p, generator=generator)  # (K,)
        frame = step - stream
        tokens = torch.where((frame >= 0) & (frame < frames), tokens, torch.full_like(tokens, empty_id))
        delayed[:, step] = tokens
        if step + 1 < steps:
            column = tokens.view(1, k_streams, 1).expand(rows, -1, -1)
            logits = model(column, cond, cache)
    return deinterleave(delayed).cpu()  # the one transfer to the host


def griffin_lim(mel: torch.Tensor | np.ndarray, mel_cfg: MelConfig, n_iter: int = 16) -> np.ndarray:
    """A vocoder-free preview for training-time samples (the music vocoder is trained afterwards):
    log-mel → linear magnitude by the filterbank's pseudo-inverse → Griffin & Lim (1984) phase
    reconstruction with the "fast" momentum of Perraudin et al. (2013). In torch: librosa's version
    spent seconds on first-call compilation and NNLS mel inversion."""
    from cinematic.data.audio import MelSpectrogram

    basis = MelSpectrogram(mel_cfg).mel_basis  # (n_mels, n_fft // 2 + 1)
    magnitude = (torch.linalg.pinv(basis) @ torch.as_tensor(mel, dtype=torch.float32).exp()).clamp_min(0.0)
    window = torch.hann_window(mel_cfg.win_length)
    stft = {
        "n_fft": mel_cfg.n_fft,
        "hop_length": mel_cfg.hop_length,
        "win_length": mel_cfg.win_length,
        "window": window,
    }
    length = (magnitude.shape[1] - 1) * mel_cfg.hop_length
    gen = torch.Generator().manual_seed(0)
    phase = torch.exp(2j * torch.pi * torch.rand(magnitude.shape, generator=gen))
    previous = torch.zeros_like(phase)
    for _ in range(n_iter):
        wav = torch.istft(magnitude * phase, length=length, **stft)
        rebuilt = torch.stft(wav, return_complex=True, **stft)
        accelerated = rebuilt + 0.99 * (rebuilt - previous)
        previous = rebuilt
        phase = accelerated / accelerated.abs().clamp_min(1e-8)
    return limit_peak(torch.istft(magnitude * phase, length=length, **stft).numpy(), 0.9).astype(np.float32)


def mel_figure(mel: np.ndarray, title: str = "") -> Any:
    """A matplotlib Figure of a log-mel (frames × mel bins)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(mel, origin="lower", aspect="auto", interpolation="nearest")
    ax.set_xlabel("frame")
    ax.set_ylabel("mel bin")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


class AudioMusicGenerator:
    """What `cinematic.load(music_checkpoint)` returns for the audio route.

    music = cinematic.load("work_dir/music/checkpoints/best.pth")
    wav = music.generate(emotion="epic", duration=10.0, seed=0)   # (samples,) float32, music.sample_rate
    codes = music.generate_codes(emotion="epic", duration=10.0)   # (K, frames) RVQ codes
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        labels: Mapping[str, Sequence[str]],
        vocoder: Any = None,
        checkpoint_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        recorded_vocoder: Any = None,
        attribute_sets: Mapping[str, Any] | None = None,
    ) -> None:
        """`vocoder`: a loaded vocoder, a vocoder checkpoint (path or dict), or None for
        `recorded_vocoder`, what the checkpoint records (a file reference, an older checkpoint's
        absolute path, or in an exported model the vocoder's checkpoint itself). `attribute_sets`: the
        training clips' condition combinations (`tasks.music.attribute_sets`), if recorded."""
        self.attribute_sets = dict(attribute_sets or {})
        self.model = model
        self.tokenizer = tokenizer
        self.labels = {name: list(values) for name, values in labels.items()}
        self._vocoder = vocoder
        self.recorded_vocoder = recorded_vocoder
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.device = device

    @classmethod
    def from_checkpoint(
        cls, checkpoint: dict[str, Any], device: str | torch.device = "cpu", **kwargs: Any
    ) -> AudioMusicGenerator:
        """A generator from an audio-route music checkpoint (EMA weights when kept).

        kwargs: `vocoder` (a path or a loaded vocoder; default: the one the checkpoint records or, in an
        exported model, embeds), `checkpoint_path` (where the checkpoint lives: the recorded vocoder is
        looked for relative to its run folder, then `<work_dir>/vocoder_music/` next to it)."""
        from cinematic.data.tokenizers.mel_rvq import MelRVQ
        from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig

        state = checkpoint.get("task_state") or {}
        if state.get("representation") != "audio" or "tokenizer" not in state:
            raise UserError("not an audio-route music checkpoint (no audio tokenizer in its task_state)")
        model = MusicTransformer(MusicTransformerConfig(**state["model_config"]))
        model.load_state_dict(inference_weights(checkpoint, "music"))
        model.to(device).eval()
        return cls(
            model,
            MelRVQ.from_state(state["tokenizer"]),
            state["labels"],
            vocoder=kwargs.get("vocoder"),
            checkpoint_path=kwargs.get("checkpoint_path"),
            device=device,
            recorded_vocoder=state.get("vocoder"),
            attribute_sets=state.get("attribute_sets"),
        )

    @property
    def sample_rate(self) -> int:
        return self.tokenizer.mel_cfg.sample_rate

    @property
    def frames_per_second(self) -> float:
        return self.tokenizer.frames_per_second

    @property
    def known_labels(self) -> dict[str, list[str]]:
        """{condition: labels the checkpoint knows} (without the null label)."""
        return {name: values[1:] for name, values in self.labels.items()}

    def condition_ids(self, **labels: str | float | None) -> list[int]:
        """Labels and attribute values (tempo, loudness, brightness) → ids; an unknown one is a
        UserError that lists what the checkpoint knows."""
        from cinematic.data.attributes import resolve_labels

        return condition_ids(self.labels, **resolve_labels(self.labels, labels))

    def frames_for(self, duration: float) -> int:
        if not duration > 0:
            raise UserError(f"--duration must be positive, got {duration}")
        return max(1, round(duration * self.frames_per_second))

    def generate_codes(
        self,
        emotion: str | None = None,
        genre: str | None = None,
        scene: str | None = None,
        duration: float = 10.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance: float = 1.0,
        seed: int = 0,
        progress: bool = False,
        fill_attributes: bool = True,
        fill_min_p: float = FILL_MIN_P,
        **attributes: str | float | None,
    ) -> torch.Tensor:
        """RVQ codes (K, frames) for `duration` seconds (frames = round(duration × frame rate));
        `attributes`: measured-attribute conditions, e.g. tempo=120, loudness="loud".
        `fill_attributes`: attributes left out are completed from a training clip that matches every
        condition given (drawn with `seed`; typical values only, `fill_min_p`), as on the symbolic route."""
        vocab = StreamVocab(self.tokenizer.codebook_size)
        conditions = self.condition_ids(emotion=emotion, genre=genre, scene=scene, **attributes)
        if fill_attributes:
            conditions = complete_conditions(conditions, self.labels, self.attribute_sets, seed, fill_min_p)
        return generate_codes(
            self.model,
            conditions,
            self.frames_for(duration),
            empty_id=vocab.empty_id,
            bos_id=vocab.bos_id,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            guidance=guidance,
            seed=seed,
            progress=progress,
        )

    def generate_mel(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Log-mel (n_mels, frames) decoded from generated codes; arguments as `generate_codes`."""
        return self.tokenizer.decode(self.generate_codes(*args, **kwargs))

    def generate(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """Mono float32 waveform (frames × hop samples) at `sample_rate`; arguments as `generate_codes`."""
        return self.vocode(self.generate_mel(*args, **kwargs))

    # ------------------------------------------------------------------------------------ vocoder

    @property
    def vocoder(self) -> Any:
        """The music vocoder: the one given, else the one the checkpoint records (or embeds), else
        `vocoder_music/` beside the run."""
        if self._vocoder is None or isinstance(self._vocoder, str | Path | dict):
            self._vocoder = self._load_vocoder(self._vocoder)
        return self._vocoder

    def _load_vocoder(self, given: str | Path | dict[str, Any] | None) -> Any:
        from cinematic.generation.vocode import Vocoder

        if isinstance(given, str | Path) and not Path(given).is_file():
            raise UserError(f"vocoder checkpoint not found: {given} (--vocoder)")
        found = given or find_companion(
            self.recorded_vocoder,
            self.checkpoint_path,
            "music vocoder",
            runs=("vocoder_music",),
            hint="pass --vocoder VCKPT (a vocoder_music checkpoint, which train_music.py trains after the "
            "transformer)",
        )
        if isinstance(found, dict):
            source = f"the vocoder in {self.checkpoint_path or 'this model'}"
            vocoder = Vocoder.from_checkpoint(found, device=self.device, checkpoint_path=source)
        else:
            source = str(found)
            vocoder = Vocoder.from_checkpoint(
                read_checkpoint(found), device=self.device, checkpoint_path=source
            )
        try:
            vocoder.check_mel_config(
                self.tokenizer.mel_cfg, "this music model's tokenizer (music_model.audio)"
            )
        except UserError as err:
            raise UserError(f"{source}: {err}") from None
        return vocoder

    def vocode(self, mel: torch.Tensor) -> np.ndarray:
        # a generated mel can be louder than anything the vocoder saw: scale down, never clip
        return limit_peak(np.asarray(self.vocoder.vocode(mel), dtype=np.float32), 0.99)


def generate_command(args: argparse.Namespace, checkpoint: dict[str, Any] | None = None) -> int:
    """`cinematic generate music` for audio-route checkpoints: codes → mel → vocoder → WAV."""
    import time

    from cinematic.data.audio import save_audio

    out = Path(args.out)
    if out.suffix.lower() not in (".wav", ".flac"):
        raise UserError(f"--out {out}: the audio route writes audio; give a .wav (or .flac) file")
    if checkpoint is None:  # called directly; the symbolic route's command passes the one it read
        checkpoint = read_checkpoint(args.checkpoint)
    device = getattr(args, "device", "cpu")
    music = AudioMusicGenerator.from_checkpoint(
        checkpoint, device, vocoder=args.vocoder, checkpoint_path=args.checkpoint
    )
    _ = music.vocoder  # a missing or mismatched vocoder fails before sampling, not after
    start = time.perf_counter()
    from cinematic.data.attributes import attribute_kwargs

    mel = music.generate_mel(duration=args.duration, **sampling_kwargs(args), **attribute_kwargs(args))
    wav = music.vocode(mel)
    seconds = len(wav) / music.sample_rate
    save_audio(out, wav, music.sample_rate)
    print(
        f"wrote {out} ({seconds:.2f} s at {music.sample_rate} Hz, generated in {time.perf_counter() - start:.1f} s)"
    )
    return 0
