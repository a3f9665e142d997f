"""Text front end of the voice model: normalised text → phonemes (espeak-ng via phonemizer) or characters.

    front = TextFrontEnd("phonemes")
    front.symbols("Dr. Smith has 3 cats.", "en")   # ['d', 'ˈ', 'ɑ', 'k', 't', 'ɚ', ' ', ...]
    table = SymbolTable.build(list_of_symbol_lists)   # stored in the checkpoint
    ids = table.encode(symbols)                        # unknown symbols are reported, never silently dropped

- Numbers and common abbreviations are expanded in the language of the text (num2words), before
  phonemisation, so "3" becomes "three" / "tres" / "trois" / "drei".
- Phonemes keep stress marks (ˈ ˌ) and punctuation, which carry prosody (pauses, questions). One symbol is
  one IPA base character with its combining diacritics and length mark (ɔ̃, iː); a space marks a word
  boundary.
- `front_end: characters` (or espeak-ng missing, with a warning that says how to install it) spells the
  normalised text letter by letter; characters that are neither letters, digits nor known punctuation
  are reported in a warning and left out.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from cinematic.errors import UserError

log = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"
SPECIAL = (PAD, UNK)
PUNCTUATION = set(".,;:!?¡¿-—–…'\"«»()")
STRESS = {"ˈ", "ˌ"}
# Attach to the preceding symbol: length marks and modifier letters espeak-ng writes after a phone.
_ATTACH = {"ː", "ˑ", "ʲ", "ʷ", "ʰ", "ˠ", "ˤ", "̃", "͡"}

# espeak-ng voice for each short language code the data may use; any code espeak-ng knows passes through.
ESPEAK_VOICES = {"en": "en-us", "fr": "fr-fr", "pt": "pt-br", "zh": "cmn"}

ABBREVIATIONS: dict[str, dict[str, str]] = {
    "en": {
        "mr.": "mister",
        "mrs.": "missus",
        "dr.": "doctor",
        "st.": "saint",
        "etc.": "et cetera",
        "vs.": "versus",
        "no.": "number",
        "jr.": "junior",
        "sr.": "senior",
    },
    "es": {
        "sr.": "señor",
        "sra.": "señora",
        "srta.": "señorita",
        "dr.": "doctor",
        "dra.": "doctora",
        "etc.": "etcétera",
        "ud.": "usted",
        "uds.": "ustedes",
    },
    "fr": {
        "m.": "monsieur",
        "mme": "madame",
        "mlle": "mademoiselle",
        "dr": "docteur",
        "etc.": "et cetera",
        "st": "saint",
        "ste": "sainte",
    },
    "de": {
        "dr.": "doktor",
        "hr.": "herr",
        "fr.": "frau",
        "z.b.": "zum beispiel",
        "usw.": "und so weiter",
        "bzw.": "beziehungsweise",
        "nr.": "nummer",
    },
}
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)*)(st|nd|rd|th|º|ª|er|e|\.)?(?!\w)")


def _base_language(language: str) -> str:
    return language.lower().replace("_", "-").split("-")[0]


def _parse_number(digits: str, lang: str) -> int | float:
    """'1,000' is a thousand in English, '1.000' in Spanish/French/German; '3.5' / '3,5' are decimals."""
    thousands, decimal = (",", ".") if lang == "en" else (".", ",")
    if re.fullmatch(rf"\d{{1,3}}(?:\{thousands}\d{{3}})+", digits):
        return int(digits.replace(thousands, ""))
    if digits.count(decimal) == 1 and thousands not in digits:
        return float(digits.replace(decimal, "."))
    if digits.count(thousands) == 1 and decimal not in digits:
        return float(digits.replace(thousands, "."))
    return int(re.sub(r"\D", "", digits))


def _expand_number(match: re.Match[str], language: str) -> str:
    from num2words import num2words

    digits, suffix = match.group(1), match.group(2) or ""
    lang = _base_language(language)
    ordinal = suffix in {"st", "nd", "rd", "th", "º", "ª", "er", "e"} or (suffix == "." and lang == "de")
    value = _parse_number(digits, lang)
    try:
        words = num2words(
            value, lang=lang, to="ordinal" if ordinal and isinstance(value, int) else "cardinal"
        )
    except (NotImplementedError, OverflowError):
        words = num2words(
            value, lang="en"
        )  # num2words lacks this language: English beats dropping the number
    keep = "." if suffix == "." and not ordinal else ""
    return words + keep


def normalize_text(text: str, language: str) -> str:
    """NFC, whitespace collapsed, abbreviations and numbers written out in the text's language."""
    text = unicodedata.normalize("NFC", text).strip()
    text = re.sub(r"\s+", " ", text)
    table = ABBREVIATIONS.get(_base_language(language), {})
    if table:
        words = []
        for word in text.split(" "):
            expansion = table.get(word.lower())
            words.append(expansion if expansion is not None else word)
        text = " ".join(words)
    return _NUMBER.sub(lambda m: _expand_number(m, language), text)


def speakable(text: str) -> bool:
    """True when `text` holds something to pronounce: a letter or a digit (numbers are read out). Text of
    only symbols, emoji and punctuation ("🎵 ©®", "...") has nothing to say; espeak-ng would read out the
    symbols' names ("musical note", "copyright") instead, and the characters front end would drop them."""
    return any(unicodedata.category(char)[0] in {"L", "N"} for char in text)


def espeak_available() -> bool:
    """True when the espeak-ng library phonemizer needs can be found (tests patch this to simulate its absence)."""
    if shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
        return False
    try:
        from phonemizer.backend import EspeakBackend

        return bool(EspeakBackend.is_available())
    except Exception:  # phonemizer missing, or it cannot load libespeak-ng
        return False


@functools.cache
def _espeak_languages() -> frozenset[str]:
    from phonemizer.backend import EspeakBackend

    return frozenset(EspeakBackend.supported_languages())


def espeak_voice(language: str) -> str:
    """The espeak-ng voice for a language code ("en" → "en-us"); a UserError lists close ones if unknown."""
    code = language.lower().replace("_", "-")
    known = _espeak_languages()
    for candidate in (ESPEAK_VOICES.get(code, code), code, _base_language(code)):
        if candidate in known:
            return candidate
    close = sorted(k for k in known if k.startswith(_base_language(code)))[:8]
    hint = f" (close: {', '.join(close)})" if close else " (see `espeak-ng --voices`)"
    raise UserError(f"espeak-ng has no voice for language {language!r}{hint}")


@functools.lru_cache(maxsize=16)
def _backend(voice: str) -> Any:
    from phonemizer.backend import EspeakBackend

    # phonemizer warns when espeak-ng splits or joins words ("words count mismatch"); harmless without
    # word-level separators, and it would print on every batch.
    quiet = logging.getLogger("cinematic.phonemizer")
    quiet.setLevel(logging.ERROR)
    return EspeakBackend(
        voice,
        preserve_punctuation=True,
        with_stress=True,
        language_switch="remove-flags",
        punctuation_marks=';:,.!?¡¿—…"«»“”()',
        logger=quiet,
    )


def split_ipa(ipa: str) -> list[str]:
    """IPA string → symbols: one base character with its combining marks and length mark; stress marks,
    punctuation and word-boundary spaces are symbols of their own."""
    symbols: list[str] = []
    for char in unicodedata.normalize("NFD", ipa):
        if char.isspace():
            if symbols and symbols[-1] != " ":
                symbols.append(" ")
        elif (
            symbols
            and symbols[-1] not in STRESS
            and symbols[-1] != " "
            and symbols[-1] not in PUNCTUATION
            and (unicodedata.combining(char) or char in _ATTACH)
        ):
            symbols[-1] = symbols[-1] + char
        else:
            symbols.append(char)
    while symbols and symbols[-1] == " ":
        symbols.pop()
    return [unicodedata.normalize("NFC", s) for s in symbols]


def _is_letter(char: str) -> bool:
    return unicodedata.category(char)[0] in {"L", "M"}


def characters(text: str) -> tuple[list[str], list[str]]:
    """Normalised text → (lower-case character symbols, characters that were left out)."""
    symbols: list[str] = []
    unknown: list[str] = []
    for char in text.lower():
        if char.isspace():
            if symbols and symbols[-1] != " ":
                symbols.append(" ")
        elif _is_letter(char) or char in PUNCTUATION or char.isdigit():
            symbols.append(char)
        else:
            unknown.append(char)
    return symbols, unknown


class TextFrontEnd:
    """Text → symbols, in one language at a time. `mode` is voice_model.front_end."""

    def __init__(self, mode: str = "phonemes"):
        if mode not in {"phonemes", "characters"}:
            raise UserError(f"voice_model.front_end must be 'phonemes' or 'characters', got {mode!r}")
        self.requested = mode
        self.mode = mode
        if mode == "phonemes" and not espeak_available():
            log.warning(
                "espeak-ng is not installed, so the voice model uses characters instead of phonemes. "
                "Install it for better pronunciation: `sudo apt-get install espeak-ng` (Debian/Ubuntu), "
                "`brew install espeak-ng` (macOS), or see https://github.com/espeak-ng/espeak-ng."
            )
            self.mode = "characters"

    def symbols(self, text: str, language: str) -> list[str]:
        normalised = normalize_text(text, language)
        if not normalised:
            return []
        if self.mode == "phonemes":
            ipa = _backend(espeak_voice(language)).phonemize([normalised], strip=True, njobs=1)[0]
            return split_ipa(ipa)
        symbols, unknown = characters(normalised)
        if unknown:
            log.warning(
                "text %r: characters not spoken (not letters or punctuation): %s",
                text[:60],
                " ".join(sorted(set(unknown))),
            )
        return symbols

    def batch(self, texts: Sequence[str], languages: Sequence[str]) -> list[list[str]]:
        """Symbols of many texts; phonemizes each language in one espeak-ng call (much faster than one by one)."""
        out: list[list[str] | None] = [None] * len(texts)
        if self.mode == "phonemes":
            by_language: dict[str, list[int]] = {}
            for i, language in enumerate(languages):
                by_language.setdefault(language, []).append(i)
            for language, indices in by_language.items():
                normalised = [normalize_text(texts[i], language) for i in indices]
                # phonemizer drops empty lines from its output: phonemize only the others
                indices = [i for i, text in zip(indices, normalised, strict=True) if text]
                normalised = [text for text in normalised if text]
                if not normalised:
                    continue
                ipa = _backend(espeak_voice(language)).phonemize(normalised, strip=True, njobs=1)
                for i, line in zip(indices, ipa, strict=True):
                    out[i] = split_ipa(line)
            return [s or [] for s in out]
        return [self.symbols(t, lang) for t, lang in zip(texts, languages, strict=True)]


class SymbolTable:
    """Symbol ↔ id, built from the training data and stored in the checkpoint (`to_state`/`from_state`)."""

    def __init__(self, symbols: Iterable[str]):
        self.symbols = list(symbols)
        if self.symbols[: len(SPECIAL)] != list(SPECIAL):
            raise ValueError(f"a symbol table starts with {SPECIAL}")
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> SymbolTable:
        seen = sorted({s for seq in sequences for s in seq} - set(SPECIAL))
        return cls([*SPECIAL, *seen])

    def __len__(self) -> int:
        return len(self.symbols)

    def unknown(self, symbols: Sequence[str]) -> list[str]:
        return sorted({s for s in symbols if s not in self.index})

    def encode(self, symbols: Sequence[str], context: str = "") -> list[int]:
        """Ids of the known symbols; the unknown ones are named in a warning (the model never saw them)."""
        missing = self.unknown(symbols)
        if missing:
            log.warning(
                "%ssymbols the model was not trained on are skipped: %s",
                f"{context}: " if context else "",
                " ".join(repr(s) for s in missing),
            )
        return [self.index[s] for s in symbols if s in self.index]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.symbols[i] for i in ids]

    def to_state(self) -> list[str]:
        return list(self.symbols)

    @classmethod
    def from_state(cls, state: Sequence[str]) -> SymbolTable:
        return cls(state)
