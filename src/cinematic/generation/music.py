"""Music generation from a Music Transformer: `cinematic generate music` and `cinematic.load(...).generate`.

Sampling runs incrementally over the model's KV cache (each new token costs one position, not a
full forward pass). With classifier-free guidance (`guidance` w ≠ 1) the conditional and the
unconditional (null-label) sequences run as one batch of two and the logits are mixed as
uncond + w · (cond − uncond) (Ho & Salimans 2022). PAD and BOS are never sampled; EOS ends a piece.

Conditions are the checkpoint's labels (emotion, genre, scene) and the attributes measured from the
music it was trained with (key, mode, tempo, density, register, polyphony, instruments; audio: tempo,
loudness, brightness). Attribute values are read as `cinematic.data.attributes.parse_attribute` does
("D minor", "dm", 90 → the tempo bucket holding 90 bpm, "high"); anything unknown is a UserError listing
the accepted values. A condition left out is the null label; checkpoints from before attributes simply
have none (asking one for `key` says which conditions it has).

Audio-route checkpoints (`task_state["representation"] == "audio"`) are handed to
`cinematic.generation.music_audio:generate_command`; `is_audio_checkpoint` is the test.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cinematic.checkpoint_io import inference_weights, read_checkpoint
from cinematic.data.attributes import attribute_kwargs, resolve_labels
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
from cinematic.utils import torch_threads

log = logging.getLogger(__name__)


@contextlib.contextmanager
def decode_threads(device: torch.device) -> Any:
    """One intra-op thread while decoding on a CPU: each step is matrix-vector sized, where a second
    thread gains little on a quiet machine and, on a shared one, its spin-waiting made decoding 20×
    slower here (1.1 s vs 25 s for 128 tokens of the tiny model). Restores the setting afterwards."""
    with torch_threads(1) if device.type == "cpu" else contextlib.nullcontext():
        yield


@torch.no_grad()
def generate_tokens(
    model: Any,
    conditions: Sequence[int] | torch.Tensor | None,
    length: int,
    *,
    primer: Sequence[int] | None = None,
    bos_id: int = 1,
    eos_id: int | None = 2,
    banned: Sequence[int] = (0,),
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    guidance: float = 1.0,
    seed: int = 0,
    progress: bool = False,
    eos_check_every: int | None = None,
) -> np.ndarray:
    """Up to `length` new token ids for a K = 1 model (the primer is not included in the result).

    `conditions`: label ids per condition (0 = null). The same seed gives the same tokens on the same
    device. On a GPU the tokens are sampled there (a device generator) and never read back one by one:
    EOS is looked for every `eos_check_every` tokens (default: every token on a CPU, every 32 on a GPU)
    and the piece is cut at the first one, so the result is the same as stopping at it."""
    device = next(model.parameters()).device
    on_host = device.type == "cpu"
    check_every = eos_check_every or (1 if on_host else 32)
    cond, guided = guidance_rows(conditions, model.num_conditions, guidance, device)
    prompt = torch.tensor([bos_id, *(primer or [])], dtype=torch.long, device=device).view(1, 1, -1)
    prompt = prompt.expand(cond.size(0), -1, -1)
    generator = torch.Generator(device="cpu" if on_host else device).manual_seed(int(seed))
    banned_ids = list(banned)
    sampled: list[torch.Tensor] = []
    steps: Any = range(length)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="generating", unit="tok")
    with decode_threads(device):
        cache = model.new_cache()
        logits = model(prompt, cond, cache)[:, 0, -1]  # (rows, V)
        for index in steps:
            logits = logits.float()
            step_logits = guided_logits(logits[:1], logits[1:], guidance) if guided else logits[:1]
            if banned_ids:
                step_logits[:, banned_ids] = float("-inf")
            token = sample_next(step_logits, temperature, top_k, top_p, generator=generator)  # (1,)
            sampled.append(token)
            checking = eos_id is not None and (index + 1) % check_every == 0
            if checking and bool((torch.cat(sampled[-check_every:]) == eos_id).any()):  # one read
                break
            nxt = token.view(1, 1, 1).expand(cond.size(0), 1, 1)
            logits = model(nxt, cond, cache)[:, 0, -1]
    out = torch.cat(sampled).tolist() if sampled else []
    if eos_id is not None and eos_id in out:
        out = out[: out.index(eos_id)]
    return np.asarray(out, dtype=np.int64)


class MusicGenerator:
    """What `cinematic.load(music_checkpoint)` returns for the symbolic route.

    music = cinematic.load("work_dir/music/checkpoints/best.pth")
    score = music.generate(emotion="epic", length=1024, seed=0)     # symusic.Score
    score = music.generate(key="d minor", tempo=90, guidance=2.0)   # measured-attribute conditions
    score.dump_midi("out.mid"); wav = music.render(score)            # (2, samples) at 44.1 kHz
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        labels: Mapping[str, Sequence[str]],
        attribute_sets: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.labels = {name: list(values) for name, values in labels.items()}
        self.attribute_sets = dict(attribute_sets or {})
        """The training pieces' condition combinations (`tasks.music.attribute_sets`), if recorded."""
        self.sample_rate = 44100

    @classmethod
    def from_checkpoint(
        cls, checkpoint: dict[str, Any], device: str | torch.device = "cpu", **_: Any
    ) -> MusicGenerator:
        """A generator from a symbolic-route checkpoint alone (EMA weights when the run kept them)."""
        from cinematic.data.tokenizers.midi import make_tokenizer
        from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig

        state = checkpoint.get("task_state") or {}
        if "model_config" not in state or "tokenizer" not in state:
            raise UserError(
                "this checkpoint has no music tokenizer/model settings; is it a music checkpoint?"
            )
        model = MusicTransformer(MusicTransformerConfig(**state["model_config"]))
        model.load_state_dict(inference_weights(checkpoint, "music"))
        model.to(device).eval()
        return cls(
            model, make_tokenizer(state["tokenizer"]["kind"]), state["labels"], state.get("attribute_sets")
        )

    @property
    def known_labels(self) -> dict[str, list[str]]:
        """{condition: labels the checkpoint knows} (without the null label)."""
        return {name: values[1:] for name, values in self.labels.items()}

    def condition_ids(self, **labels: str | float | None) -> list[int]:
        """Labels and attribute values → ids; an unknown label or value (or a condition the model does
        not use) is a UserError that lists what the checkpoint knows."""
        return condition_ids(self.labels, **resolve_labels(self.labels, labels))

    def generate_tokens(
        self,
        emotion: str | None = None,
        genre: str | None = None,
        scene: str | None = None,
        length: int = 1024,
        primer: str | Path | Any | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance: float = 1.0,
        seed: int = 0,
        progress: bool = False,
        fill_attributes: bool = True,
        fill_min_p: float = FILL_MIN_P,
        **attributes: str | float | None,
    ) -> np.ndarray:
        """Token ids: the primer's (if any) followed by `length` new ones (fewer if EOS is sampled).
        `attributes`: measured-attribute conditions, e.g. key="d minor", tempo=90, density="high".
        `fill_attributes`: attributes left out are completed from a training piece that matches every
        condition given (drawn with `seed`), so emotion="sad" also conditions on a key, tempo, … that
        sad pieces had; nothing is filled when no condition is given or no piece matches.
        `fill_min_p`: only values at least this fraction as common as the most common one are used
        (`generation.sampling.FILL_MIN_P`; 0: any matching piece)."""
        if length < 1:
            raise UserError(f"--length must be at least 1, got {length}")
        conditions = self.condition_ids(emotion=emotion, genre=genre, scene=scene, **attributes)
        if fill_attributes:
            conditions = complete_conditions(conditions, self.labels, self.attribute_sets, seed, fill_min_p)
        primer_ids = self._primer_tokens(primer)
        tok = self.tokenizer
        new = generate_tokens(
            self.model,
            conditions,
            length,
            primer=primer_ids.tolist(),
            bos_id=tok.bos_id,
            eos_id=tok.eos_id,
            banned=(tok.pad_id, tok.bos_id),
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            guidance=guidance,
            seed=seed,
            progress=progress,
        )
        return np.concatenate([primer_ids, new])

    def generate(
        self, emotion: str | None = None, genre: str | None = None, scene: str | None = None, **kwargs: Any
    ) -> Any:
        """A `symusic.Score` (one piano track); keyword arguments (attributes too) as `generate_tokens`."""
        return self.tokenizer.decode(self.generate_tokens(emotion, genre, scene, **kwargs))

    def render(self, score: Any) -> np.ndarray:
        """Stereo float32 (2, samples) at 44.1 kHz from the project's synthesizer."""
        from cinematic.data.synth import render_audio

        audio = render_audio(score, self.sample_rate)
        if audio is None:
            raise UserError(
                "cannot write audio: the piece has no notes (or the synthesizer is unavailable); write a .mid file instead"
            )
        return audio

    def _primer_tokens(self, primer: str | Path | Any | None) -> np.ndarray:
        if primer is None:
            return np.zeros(0, dtype=np.int64)
        if isinstance(primer, str | Path):
            path = Path(primer)
            if not path.is_file():
                raise UserError(f"primer not found: {path}")
            from cinematic.data.tokenizers.midi import load_score

            primer = load_score(path)
        return np.asarray(self.tokenizer.encode(primer), dtype=np.int64)


def is_audio_checkpoint(checkpoint: dict[str, Any]) -> bool:
    """A music checkpoint of the audio route (it records its route in task_state)."""
    return (checkpoint.get("task_state") or {}).get("representation") == "audio"


def write_output(generator: MusicGenerator, score: Any, out: Path) -> Path:
    """out.mid → MIDI; out.wav → 16-bit stereo WAV rendered by the project's synthesizer."""
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix in (".mid", ".midi"):
        score.dump_midi(str(out))
    elif suffix == ".wav":
        import soundfile as sf

        sf.write(str(out), generator.render(score).T, generator.sample_rate, subtype="PCM_16")
    else:
        raise UserError(f"--out {out}: write a .mid or a .wav file")
    return out


def generate_command(args: argparse.Namespace) -> int:
    """`cinematic generate music --checkpoint CKPT [--emotion E ...] --out out.mid|out.wav`."""
    checkpoint = read_checkpoint(args.checkpoint)
    if checkpoint.get("task") != "music":
        raise UserError(f"{args.checkpoint}: a {checkpoint.get('task')!r} checkpoint, not a music one")
    if is_audio_checkpoint(checkpoint):
        from cinematic.generation.music_audio import generate_command as generate_audio

        return generate_audio(args, checkpoint)
    out = Path(args.out)
    if out.suffix.lower() not in (".mid", ".midi", ".wav"):
        raise UserError(f"--out {out}: write a .mid or a .wav file")
    generator = MusicGenerator.from_checkpoint(checkpoint, device=getattr(args, "device", "cpu"))
    score = generator.generate(
        length=args.length,
        primer=args.primer,
        **sampling_kwargs(args),
        **attribute_kwargs(args),
    )
    write_output(generator, score, out)
    print(f"wrote {out} ({score.note_num()} notes, {score.to('second').end():.1f} s)")
    return 0
