"""Lyrics for singing: sections, lines, words and syllables.

    lines = parse_lyrics(text, language="en", source="lyrics.txt")
    lines[0].section, lines[0].text, lines[0].syllables    # "verse", "Under the water", ["Un", "der", ...]

What a lyrics text becomes:
- section markers on a line of their own (`[verse]`, `[Chorus 2]`, `[Hook]`, ...) are read with the lyrics
  tokenizer's own normalisation (`normalize_lyrics`), so "[Chorus 2]" is a chorus; lines before the first
  marker belong to a verse; blank lines only separate stanzas;
- every other line that holds a letter or a digit is one sung line (one phrase of the melody); numbers and
  abbreviations are written out in the line's language first (the voice front end's `normalize_text`), so
  "3" is sung as "three" / "tres";
- words are split into syllables with the hyphenation dictionaries of pyphen (`left=right=1`, so short
  words split too), and a piece without a vowel is merged into its neighbour ("holdsver-tisse" stays two);
  English hyphenation is sparse (en_US keeps "tonight", "body" whole), so for English each piece is split
  further at its sung vowel groups, a silent final e ("home", "some-times") and -es/-ed ("loved") adding
  none;
  Chinese, Japanese and Korean characters are one syllable each; languages without a pyphen dictionary fall
  back to one syllable per vowel group.

Hyphenation points are not exactly syllable boundaries, but they are what a singer would accept, and they
come from well-kept per-language dictionaries; the English vowel-group rule is a heuristic ("evening" gives
three).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from cinematic.errors import UserError

DEFAULT_SECTION = "verse"
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_PYPHEN_NAMES = {"en": "en_US"}
"""Codes whose pyphen fallback is not the best dictionary (pyphen's "en" leaves "hello" whole)."""
_VOWELS = set("aeiouyæøœɑɛɪɔʊəаеёиоуыэюяіїєαεηιουω")


@dataclass(frozen=True)
class LyricLine:
    """One sung line: its section, its text as written, and its syllables in order."""

    section: str
    """Canonical section name: verse, chorus, pre-chorus, bridge, intro, outro."""
    text: str
    """The line as written (what lyrics.lrc shows)."""
    syllables: tuple[str, ...]
    """The syllables to sing, in order (numbers written out)."""
    word_starts: tuple[bool, ...]
    """True where a syllable begins a word (the singer may breathe or re-articulate there)."""
    part: int = 0
    """Which section of the song (0, 1, ... in order): a chorus sung twice is two parts."""

    @property
    def key(self) -> str:
        """The line's text folded for comparison: repeated lines (a chorus sung twice) share a key."""
        return " ".join(word.casefold() for word in _WORD.findall(self.text))


def _is_vowel(char: str) -> bool:
    base = unicodedata.normalize("NFD", char.lower())[:1]
    return base in _VOWELS


@functools.lru_cache(maxsize=16)
def _dictionary(language: str):  # type: ignore[no-untyped-def]
    """The pyphen dictionary of a language code ("en", "es", "pt_BR"), or None when pyphen has none."""
    import pyphen

    code = language.replace("-", "_")
    name = pyphen.language_fallback(_PYPHEN_NAMES.get(code.lower(), code))
    return pyphen.Pyphen(lang=name, left=1, right=1) if name else None


def _vowel_groups(word: str, silent_tail: int = 0) -> list[str]:
    """One syllable per vowel group; of the consonants between two groups, the last one starts the next
    syllable ("ventana" -> ven-ta-na). The last `silent_tail` characters hold no vowel group of their own
    (an English silent e: "home" stays whole)."""
    vowel = [_is_vowel(c) for c in word]
    if vowel and word[:1].lower() == "y" and len(word) > 1 and vowel[1]:
        vowel[0] = False  # "yes", "you": y before a vowel is a consonant
    stop = len(word) - silent_tail
    groups = [i for i in range(stop) if vowel[i] and (i == 0 or not vowel[i - 1])]
    cuts = []
    for previous, start in zip(groups, groups[1:], strict=False):
        cluster_start = (
            max(i for i in range(previous, start) if vowel[i]) + 1
        )  # first consonant after the group
        cuts.append(start - 1 if start - cluster_start >= 1 else start)
    bounds = [0, *cuts, len(word)]
    return [word[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if word[a:b]]


def _english_silent_tail(word: str, endings: bool = True) -> int:
    """Characters at the end of (a piece of) an English word that add no syllable: a final e ("home",
    "some-"), and at the word's end -es and -ed after most consonants ("times", "loved"; not "places",
    "wanted")."""
    w = word.lower()
    if len(w) > 2 and w.endswith("e") and not _is_vowel(w[-2]):
        return 1
    if not endings:
        return 0
    if len(w) > 3 and w.endswith("es") and w[-3] not in "aeiouysxzcgh":
        return 2
    if len(w) > 3 and w.endswith("ed") and w[-3] not in "aeiouytd":
        return 2
    return 0


def _merge_vowelless(pieces: list[str]) -> list[str]:
    """A piece with no vowel ("s", "ng") cannot carry a note: it joins the piece before (or after)."""
    if not any(_is_vowel(c) for piece in pieces for c in piece):
        return ["".join(pieces)]
    out: list[str] = []
    pending = ""
    for piece in pieces:
        if any(_is_vowel(c) for c in piece):
            out.append(pending + piece)
            pending = ""
        elif out:
            out[-1] += piece
        else:
            pending += piece
    return out


def syllabify_word(word: str, language: str) -> list[str]:
    """The syllables of one word (its characters, in order, split where the language's dictionary may
    hyphenate)."""
    if _CJK.search(word):
        out: list[str] = []
        for char in word:
            if _CJK.match(char) or not out:
                out.append(char)
            else:
                out[-1] += char
        return out
    dictionary = _dictionary(language)
    pieces = dictionary.inserted(word, hyphen="\x00").split("\x00") if dictionary else _vowel_groups(word)
    pieces = [p for p in pieces if p]
    if language.lower().split("-")[0].split("_")[0] == "en":
        # en_US hyphenation is sparse ("tonight", "body", "lanterns" stay whole): split its pieces further
        # at their sung vowel groups
        pieces = (
            ["".join(pieces[:2]), *pieces[2:]] if pieces[0].lower() == "y" and len(pieces) > 1 else pieces
        )
        split: list[str] = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            split.extend(_vowel_groups(piece, _english_silent_tail(piece, endings=last)))
        pieces = split
    return _merge_vowelless(pieces)


def syllabify(text: str, language: str) -> tuple[list[str], list[bool]]:
    """Syllables of a line of text and, for each, whether it starts a word."""
    from cinematic.data.tokenizers.phonemes import normalize_text

    syllables: list[str] = []
    starts: list[bool] = []
    for word in _WORD.findall(normalize_text(text, language)):
        for index, syllable in enumerate(syllabify_word(word, language)):
            syllables.append(syllable)
            starts.append(index == 0)
    return syllables, starts


def parse_lyrics(text: str, language: str, source: str | Path = "the lyrics") -> list[LyricLine]:
    """The sung lines of a lyrics text. A text with no line to sing is a `UserError` naming `source`."""
    from cinematic.data.tokenizers.text_bpe import STRUCTURE, normalize_lyrics

    section = DEFAULT_SECTION
    part = 0
    lines: list[LyricLine] = []
    for raw in normalize_lyrics(text).split("\n"):
        line = raw.strip()
        if line in STRUCTURE:
            section = line[1:-1]
            part += 1 if lines and lines[-1].part == part else 0
            continue
        if not line:
            continue
        syllables, starts = syllabify(line, language)
        if syllables:
            lines.append(LyricLine(section, line, tuple(syllables), tuple(starts), part))
    if not lines:
        raise UserError(
            f"{source}: no lyrics to sing (it is empty or holds only section markers and punctuation); "
            "write one sung line per line, with optional [verse]/[chorus] markers"
        )
    return lines


def read_lyrics(path: str | Path, language: str) -> list[LyricLine]:
    """`parse_lyrics` of a UTF-8 text file (`--lyrics_file`); a missing or unreadable file is a `UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--lyrics_file {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--lyrics_file {path}: cannot read it as UTF-8 text ({err})") from None
    return parse_lyrics(text, language, source=path)
