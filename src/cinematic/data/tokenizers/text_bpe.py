"""Byte-level BPE for lyrics (Sennrich et al. 2016; byte-level as in GPT-2, Radford et al. 2019).

Trained on the corpus with Hugging Face `tokenizers` (no download). Text is NFC-normalized, so any
language and any emoji encode without an unknown token and `decode(encode(s)) == s` for NFC text.
Control tokens are registered as special tokens, so BPE never splits them and each is one id:

    <bos> <eos> <pad>                       document boundaries and padding
    <lang=es> <emotion=sad> <genre=ballad>  one per label seen in the training data
    <no-lang> <no-emotion> <no-genre>       a label that is unknown or dropped
    <scene> ... </scene> <no-scene>         brackets around a free-text scene description, or none
    [intro] [verse] [pre-chorus] [chorus] [bridge] [outro]   song structure
    "\\n"                                    line break

Text never becomes a conditioning token: `encode` matches no control-token string (`<bos>`, `</scene>`,
`<lang=es>`, `<pad>` ...), so one written in a song, a scene or a prompt is encoded as its characters and
decodes back unchanged. Only the line break, and the structure markers where the caller allows them
(`markers=`), are their single ids.

The whole tokenizer is kept as plain containers (`state()`: its JSON string and the label lists), so
it travels inside a checkpoint that `torch.load(weights_only=True)` reads and is restored identically.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from cinematic.errors import UserError

log = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
NEWLINE = "\n"
SCENE_START, SCENE_END = "<scene>", "</scene>"
NO_LABEL = {"language": "<no-lang>", "emotion": "<no-emotion>", "genre": "<no-genre>"}
"""What stands in a condition's slot when it is unknown or dropped (the prefix keeps one shape)."""
NO_SCENE = "<no-scene>"
STRUCTURE = ("[intro]", "[verse]", "[pre-chorus]", "[chorus]", "[bridge]", "[outro]")
LABEL_KINDS = {"language": "lang", "emotion": "emotion", "genre": "genre"}
"""Label kind -> the key spelled inside its control token (`<lang=en>`)."""
FIXED_SPECIALS = (PAD, BOS, EOS, SCENE_START, SCENE_END, NO_SCENE, *NO_LABEL.values(), NEWLINE, *STRUCTURE)
STATE_VERSION = 1

Markers = Literal["anywhere", "lines", "none"]
"""Where `encode` reads a structure marker ("[chorus]") as its id: wherever it is written (song texts,
as in training), only as a whole line (a user's prompt), or nowhere (a scene: plain text)."""
_MARKER = re.compile("(" + "|".join(re.escape(m) for m in STRUCTURE) + ")")

# "[Verse 2]", "[CHORUS]", "[Pre-Chorus:]", "[Hook]" ... -> the canonical structure token.
_SECTION_LINE = re.compile(
    r"^\s*\[\s*(intro|verse|pre[- ]?chorus|chorus|hook|refrain|bridge|outro)\b[^\]]*\]\s*$", re.I
)
_SECTION_CANON = {
    "hook": "chorus",
    "refrain": "chorus",
    "prechorus": "pre-chorus",
    "pre chorus": "pre-chorus",
}


def control_token(kind: str, value: str) -> str:
    """The control token of one label, e.g. control_token("language", "es") == "<lang=es>"."""
    return f"<{LABEL_KINDS[kind]}={value}>"


def normalize_lyrics(text: str) -> str:
    """NFC, Unix line breaks, no trailing spaces, section headers as structure tokens ("[Verse 1]" ->
    "[verse]"), no leading/trailing blank lines. What the tokenizer is trained on and what it returns."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = []
    for line in text.split("\n"):
        match = _SECTION_LINE.match(line)
        if match:
            name = match.group(1).lower()
            line = f"[{_SECTION_CANON.get(name, name)}]"
        lines.append(line.rstrip())
    return "\n".join(lines).strip("\n")


def _special(content: str) -> AddedToken:
    # normalized=False: matched on the raw text, so NFC never touches the token itself
    return AddedToken(content, special=True, normalized=False, single_word=False, lstrip=False, rstrip=False)


class TextBPETokenizer:
    """A trained byte-level BPE plus the control tokens of the labels it was trained with."""

    def __init__(self, tokenizer: Tokenizer, labels: Mapping[str, Sequence[str]]):
        self._tok = tokenizer
        # The same model with no added-token matching: `encode` runs text through this one, so a
        # control-token string in text is encoded as its bytes (what `tokenizers` offers for this).
        self._plain = Tokenizer.from_str(tokenizer.to_str())
        self._plain.encode_special_tokens = True
        self.labels: dict[str, list[str]] = {kind: list(labels.get(kind, ())) for kind in LABEL_KINDS}
        self.pad_id, self.bos_id, self.eos_id = (self.token_id(t) for t in (PAD, BOS, EOS))
        self.newline_id = self.token_id(NEWLINE)
        self.scene_start_id, self.scene_end_id = self.token_id(SCENE_START), self.token_id(SCENE_END)
        self.no_scene_id = self.token_id(NO_SCENE)
        self.no_label_ids = {kind: self.token_id(token) for kind, token in NO_LABEL.items()}
        self.structure_ids = {name[1:-1]: self.token_id(name) for name in STRUCTURE}
        self.label_ids = {
            kind: {value: self.token_id(control_token(kind, value)) for value in values}
            for kind, values in self.labels.items()
        }
        self.control_ids = frozenset(
            [self.pad_id, self.bos_id, self.scene_start_id, self.scene_end_id, self.no_scene_id]
            + list(self.no_label_ids.values())
            + [i for ids in self.label_ids.values() for i in ids.values()]
        )
        """Ids that only condition: never generated, never shown in decoded text."""
        self.special_ids = self.control_ids | {self.eos_id, self.newline_id, *self.structure_ids.values()}

    # ------------------------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        labels: Mapping[str, Sequence[str]],
        min_frequency: int = 2,
    ) -> TextBPETokenizer:
        """Learn merges on `texts` (already normalized song bodies and scenes) up to `vocab_size` ids."""
        labels = {
            kind: sorted({str(v).strip() for v in labels.get(kind, ()) if str(v).strip()})
            for kind in LABEL_KINDS
        }
        specials = list(FIXED_SPECIALS) + [
            control_token(k, v) for k, values in labels.items() for v in values
        ]
        minimum = 256 + len(specials)
        if vocab_size < minimum:
            raise UserError(
                f"lyrics_model.vocab_size ({vocab_size}) is too small: the 256 byte tokens and {len(specials)} "
                f"control tokens need at least {minimum}; raise lyrics_model.vocab_size"
            )
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[_special(s) for s in specials],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: any language, any emoji
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        got = tok.get_vocab_size()
        if got < vocab_size:
            log.info(
                "lyrics BPE: %d tokens of the %d requested (the corpus has no more merges to learn)",
                got,
                vocab_size,
            )
        return cls(tok, labels)

    # ------------------------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """Plain containers for a checkpoint: restored identically by `from_state`."""
        return {
            "version": STATE_VERSION,
            "json": self._tok.to_str(),
            "labels": {k: list(v) for k, v in self.labels.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TextBPETokenizer:
        if state.get("version") != STATE_VERSION or "json" not in state:
            raise UserError(
                f"lyrics tokenizer state of an unknown version ({state.get('version')!r}); retrain the model"
            )
        return cls(Tokenizer.from_str(state["json"]), state.get("labels", {}))

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle/deepcopy (DataLoader workers) through the state: `tokenizers` pickles drop the
        # encode_special_tokens flag, which would let the copy match control strings in text again
        return (TextBPETokenizer.from_state, (self.state(),))

    # ------------------------------------------------------------------------------------ use

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def token_id(self, token: str) -> int:
        found = self._tok.token_to_id(token)
        if found is None:
            raise KeyError(f"token {token!r} is not in the lyrics vocabulary")
        return found

    def encode(self, text: str, markers: Markers = "anywhere") -> list[int]:
        """Ids of NFC-normalized `text`. Line breaks are the line-break id and structure markers their
        ids where `markers` allows ("anywhere": song texts, as in training; "lines": only a marker that
        is a whole line, for a prompt; "none": never, for a scene). Every other control-token string
        (`<bos>`, `<eos>`, `</scene>`, `<lang=es>`, `<pad>` ...) is encoded as its characters: no text
        can inject a conditioning token. Text without such strings gets the ids it always had."""
        if markers not in ("anywhere", "lines", "none"):
            raise ValueError(f"markers must be 'anywhere', 'lines' or 'none', not {markers!r}")
        # NFC before splitting, as the tokenizer would (a combining mark after ">" can compose with it)
        text = unicodedata.normalize("NFC", text)
        ids: list[int] = []
        for number, line in enumerate(text.split(NEWLINE)):
            if number:
                ids.append(self.newline_id)
            if markers == "lines" and line in STRUCTURE:
                ids.append(self.structure_ids[line[1:-1]])
                continue
            parts = _MARKER.split(line) if markers == "anywhere" else [line]
            for index, part in enumerate(parts):
                if index % 2:  # a marker (the split keeps them at odd positions)
                    ids.append(self.structure_ids[part[1:-1]])
                elif part:
                    ids.extend(self._plain.encode(part, add_special_tokens=False).ids)
        return ids

    def encode_plain(self, text: str) -> list[int]:
        """Ids of free text with no structure at all (a scene): `encode(text, markers="none")`."""
        return self.encode(text, markers="none")

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, leaving out the conditioning tokens and <eos> (structure and line breaks stay)."""
        kept = [int(i) for i in ids if int(i) not in self.control_ids and int(i) != self.eos_id]
        return self._tok.decode(kept, skip_special_tokens=False)

    def label_token_id(self, kind: str, value: str) -> int:
        """Id of one label's control token; a label the tokenizer was not trained with is a UserError."""
        try:
            return self.label_ids[kind][value]
        except KeyError:
            known = ", ".join(self.labels.get(kind, [])) or "(none)"
            raise UserError(
                f"unknown {kind} {value!r}: this lyrics model was trained with {kind}s: {known}"
            ) from None


def build_prefix(
    tok: TextBPETokenizer, language: int | None, emotion: int | None, genre: int | None, scene: Sequence[int]
) -> list[int]:
    """The conditioning prefix: <bos>, one slot per label (its token or <no-...>), then the scene in
    brackets or <no-scene>. Fixed slots keep every partial condition close to what training showed."""
    labels = zip(("language", "emotion", "genre"), (language, emotion, genre), strict=True)
    ids = [tok.bos_id] + [tok.no_label_ids[kind] if value is None else value for kind, value in labels]
    return ids + ([tok.scene_start_id, *scene, tok.scene_end_id] if scene else [tok.no_scene_id])
