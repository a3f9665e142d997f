"""Lyrics generation: `cinematic generate lyrics` and `cinematic.load(ckpt).generate(...)`.

    lyrics = cinematic.load("work_dir/lyrics/checkpoints/best.pth")
    text = lyrics.generate(language="es", emotion="sad", genre="ballad", scene="a storm over the harbour",
                           structure="verse,chorus,verse,chorus", seed=0)

The song starts from the conditioning prefix the model was trained with (`<bos> <lang=es> <emotion=sad>
<genre=ballad> <scene> ... </scene>`); a label left out takes its `<no-...>` slot, as under condition dropout.
Tokens come one at a time through the KV cache, with temperature, top-k, top-p and the CTRL repetition
penalty (`cinematic.generation.sampling`). The penalty applies to text tokens only: line breaks and
section markers repeat in every song. With `guidance` ≠ 1 a second, unconditional stream (every slot
`<no-...>`, the same text) runs beside the first and logits are combined as uncond + w·(cond − uncond).

`scene` and `prompt` are user text: no conditioning token can come from them (`<bos>`, `</scene>`,
`<lang=..>` written there are encoded as characters); a section marker in the prompt is structure only on a
line of its own, and none in the scene is.

`structure` (e.g. "verse,chorus,verse,chorus") forces the section markers: the first one opens the
song, and a section ends when the model closes it itself (a new marker or <eos>), when it has written
its share of `max_new_tokens` and finishes the line, or at 1.5 × its share in any case; the next marker
is then written for it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import deque
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cinematic.checkpoint_io import inference_weights, read_checkpoint
from cinematic.data.tokenizers.text_bpe import STRUCTURE, TextBPETokenizer, build_prefix, normalize_lyrics
from cinematic.errors import UserError
from cinematic.generation.sampling import apply_repetition_penalty, guided_logits, sample_next
from cinematic.models.layers import KVCache
from cinematic.models.lyrics_generator import LyricsGPT, LyricsGPTConfig

log = logging.getLogger(__name__)

SECTION_NAMES = tuple(name[1:-1] for name in STRUCTURE)


def parse_structure(structure: str | list[str] | None) -> list[str]:
    """ "verse,chorus,Verse" or ["[verse]", "chorus"] -> ["verse", "chorus", "verse"]."""
    if not structure:
        return []
    parts = structure.split(",") if isinstance(structure, str) else list(structure)
    names = []
    for part in parts:
        name = part.strip().strip("[]").strip().lower().replace("prechorus", "pre-chorus").replace(" ", "-")
        if name not in SECTION_NAMES:
            raise UserError(
                f"unknown section {part.strip()!r} in --structure; use: {', '.join(SECTION_NAMES)}"
            )
        names.append(name)
    return names


class _Stream:
    """One conditioning prefix and its KV cache; the text after the prefix is shared by all streams."""

    def __init__(self, model: LyricsGPT, prefix: list[int], batch: int):
        self.model = model
        self.prefix = torch.tensor(prefix, dtype=torch.long, device=model.wte.weight.device).expand(batch, -1)
        self.block = model.config.block_size
        self.cache: KVCache | None = None

    def prefill(self, text: torch.Tensor) -> torch.Tensor:
        """Run prefix + the last text tokens that fit through a fresh cache; logits of the last position.
        Past the block size this slides: the prefix stays, the oldest text goes (as in training, where a
        long song's later pieces repeat its prefix)."""
        keep = max(1, self.block - self.prefix.size(1) - self.block // 4)
        tokens = torch.cat([self.prefix, text[:, -keep:]], dim=1)
        self.cache = self.model.new_cache(self.block)
        logits, _ = self.model(tokens, cache=self.cache, last_only=True)
        return logits[:, -1]

    def step(self, token: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Feed one new token (B, 1); `text` already ends with it."""
        assert self.cache is not None
        if self.cache.length + 1 > self.block:
            return self.prefill(text)
        logits, _ = self.model(token, cache=self.cache, last_only=True)
        return logits[:, -1]


class LyricsGenerator:
    """What `cinematic.load` returns for a lyrics checkpoint: a model, its tokenizer, and `generate`."""

    def __init__(self, model: LyricsGPT, tokenizer: TextBPETokenizer, scene_limit: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.scene_limit = scene_limit
        self.device = model.wte.weight.device

    @classmethod
    def from_checkpoint(
        cls, checkpoint: dict[str, Any], device: str | torch.device = "cpu", **_: Any
    ) -> LyricsGenerator:
        """A generator from a lyrics checkpoint alone (EMA weights when the run kept them)."""
        state = checkpoint.get("task_state") or {}
        if "tokenizer" not in state or "model_config" not in state:
            raise UserError(
                "this checkpoint has no lyrics tokenizer/model settings; is it a lyrics checkpoint?"
            )
        tokenizer = TextBPETokenizer.from_state(state["tokenizer"])
        model = LyricsGPT(LyricsGPTConfig.from_dict(dict(state["model_config"])))
        model.load_state_dict(inference_weights(checkpoint, "lyrics"))
        model.to(device).eval()
        return cls(model, tokenizer, scene_limit=int(state.get("scene_limit", 64)))

    @property
    def labels(self) -> dict[str, list[str]]:
        """The languages, emotions and genres this model was trained with."""
        return {kind: list(values) for kind, values in self.tokenizer.labels.items()}

    def prefix(
        self,
        language: str | None = None,
        emotion: str | None = None,
        genre: str | None = None,
        scene: str | None = None,
    ) -> list[int]:
        """Prefix ids; a label the model was not trained with is a `UserError` listing the known ones."""
        tok = self.tokenizer
        ids = [tok.label_token_id(kind, value) if value is not None else None for kind, value in
               (("language", language), ("emotion", emotion), ("genre", genre))]  # fmt: skip
        # the scene is plain text: no marker, bracket or label token can come from it
        scene_ids = tok.encode_plain(normalize_lyrics(scene))[: self.scene_limit] if scene else []
        return build_prefix(tok, ids[0], ids[1], ids[2], scene_ids)

    def generate(
        self,
        language: str | None = None,
        emotion: str | None = None,
        genre: str | None = None,
        scene: str | None = None,
        prompt: str | None = None,
        structure: str | list[str] | None = None,
        temperature: float = 0.9,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float = 1.1,
        guidance: float = 1.0,
        max_new_tokens: int = 300,
        seed: int = 0,
        num_samples: int = 1,
    ) -> str | list[str]:
        """Song text (a list of `num_samples` texts when more than one); the same seed gives the same text."""
        if max_new_tokens < 1 or num_samples < 1:
            raise UserError("max_new_tokens and num_samples must be at least 1")
        prefix = self.prefix(language, emotion, genre, scene)
        ids = self.generate_ids(
            prefix, prompt, parse_structure(structure), num_samples, max_new_tokens,
            temperature, top_k, top_p, repetition_penalty, guidance, seed,
        )  # fmt: skip
        # a sample cut off inside a multi-byte character ends in U+FFFD: drop that partial character
        texts = [self.tokenizer.decode(row).rstrip("\ufffd").strip("\n") for row in ids]
        return texts[0] if num_samples == 1 else texts

    @torch.no_grad()
    def generate_ids(
        self,
        prefix: list[int],
        prompt: str | None,
        sections: list[str],
        num_samples: int,
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        repetition_penalty: float,
        guidance: float,
        seed: int,
    ) -> list[list[int]]:
        """Text ids of each sample (prompt and section markers included, prefix and <eos> not)."""
        tok, model = self.tokenizer, self.model
        was_training = model.training
        model.eval()
        marker = {name: tok.structure_ids[name] for name in SECTION_NAMES}
        start = [marker[sections[0]], tok.newline_id] if sections else []
        if prompt:
            # a section marker on a line of its own is structure; any other control string is text
            start += tok.encode(normalize_lyrics(prompt), markers="lines") + [tok.newline_id]
        B = num_samples
        rows: list[list[int]] = [list(start) for _ in range(B)]
        text = torch.tensor(start, dtype=torch.long, device=self.device).reshape(1, -1).expand(B, -1)
        streams = [_Stream(model, prefix, B)]
        if guidance != 1.0:  # the unconditional stream: every condition dropped, as in training
            streams.append(_Stream(model, self.prefix(), B))
        logits = [s.prefill(text) for s in streams]

        banned = torch.ones(model.config.vocab_size, dtype=torch.bool, device=self.device)
        banned[: tok.vocab_size] = False
        banned[sorted(tok.control_ids)] = True
        special = torch.zeros_like(banned)
        special[sorted(tok.special_ids)] = True
        generator = torch.Generator(device=self.device).manual_seed(seed)

        section = [0] * B
        section_len = [0] * B
        budget = max(8, max_new_tokens // len(sections)) if sections else 0
        done = [False] * B
        queued: list[deque[int]] = [deque() for _ in range(B)]
        steps = tqdm(
            range(max_new_tokens), desc="lyrics", unit="tok", leave=False, disable=not sys.stderr.isatty()
        )
        for index in steps:
            scores = logits[0] if len(logits) == 1 else guided_logits(logits[0], logits[1], guidance)
            scores = scores.float().masked_fill(banned, float("-inf"))
            if index == 0 and not start:  # a song has at least one token (an unusual prefix may favour <eos>)
                scores[:, tok.eos_id] = float("-inf")
            if repetition_penalty != 1.0 and text.size(1):
                seen = torch.where(special[text], tok.pad_id, text)  # the pad logit is -inf already
                scores = apply_repetition_penalty(scores, seen, repetition_penalty)
            sampled = sample_next(scores, temperature, top_k, top_p, generator).tolist()
            chosen = []
            for row in range(B):
                if done[row]:
                    chosen.append(tok.pad_id)
                    continue
                if queued[row]:  # a forced marker or line break
                    token = queued[row].popleft()
                elif sections:
                    token = self._follow_structure(
                        row,
                        sampled[row],
                        rows[row][-1],
                        sections,
                        section,
                        section_len,
                        budget,
                        queued,
                        marker,
                    )
                else:
                    token = sampled[row]
                if token == tok.eos_id:
                    done[row] = True
                else:
                    rows[row].append(token)
                chosen.append(token)
            if all(done):
                break
            step = torch.tensor(chosen, dtype=torch.long, device=self.device).unsqueeze(1)
            text = torch.cat([text, step], dim=1)
            logits = [s.step(step, text) for s in streams]
        model.train(was_training)
        return rows

    def _follow_structure(
        self,
        row: int,
        token: int,
        previous: int,
        sections: list[str],
        section: list[int],
        section_len: list[int],
        budget: int,
        queued: list[deque[int]],
        marker: dict[str, int],
    ) -> int:
        """Keep a row on the requested sections: a marker or <eos> from the model, a finished line past
        the section's budget, or any token past 1.5 × the budget closes the section; the next marker
        follows on a line of its own."""
        tok = self.tokenizer
        closes = (
            token == tok.eos_id
            or token in tok.structure_ids.values()
            or (token == tok.newline_id and section_len[row] >= budget)
            or section_len[row] >= budget + budget // 2
        )
        if not closes:
            section_len[row] += 1
            return token
        if section[row] == len(sections) - 1:
            return tok.eos_id
        section[row] += 1
        section_len[row] = 0
        forced = [marker[sections[section[row]]], tok.newline_id]
        if token == tok.newline_id or previous != tok.newline_id:
            forced.insert(0, tok.newline_id)  # end the current line first
        queued[row].extend(forced[1:])
        return forced[0]


def generate_command(args: argparse.Namespace) -> int:
    """`cinematic generate lyrics`: write one song (or `--num_samples` songs) to `--out`."""
    checkpoint = read_checkpoint(args.checkpoint)
    if checkpoint["task"] != "lyrics":
        raise UserError(f"{args.checkpoint} is a {checkpoint['task']} checkpoint; give a lyrics checkpoint")
    generator = LyricsGenerator.from_checkpoint(checkpoint, device=args.device)
    texts = generator.generate(
        language=args.language,
        emotion=args.emotion,
        genre=args.genre,
        scene=args.scene,
        prompt=args.prompt,
        structure=args.structure,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        guidance=args.guidance,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        num_samples=args.num_samples,
    )
    if isinstance(texts, str):
        content = texts + "\n"
    else:
        content = "".join(f"=== sample {i + 1} ===\n{text}\n\n" for i, text in enumerate(texts))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(content, encoding="utf-8")
    print(f"wrote {out}")
    return 0
