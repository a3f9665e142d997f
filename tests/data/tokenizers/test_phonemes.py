"""Text front end: phonemes per language, number expansion, character fallback, symbol table."""

from __future__ import annotations

import logging

import pytest

from cinematic.data.tokenizers import phonemes
from cinematic.data.tokenizers.phonemes import SymbolTable, TextFrontEnd, normalize_text, split_ipa
from cinematic.errors import UserError


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("en", "The cat sat on the mat.", {"k", "æ", "ð"}),
        ("es", "¿Dónde está el perro?", {"r", "¿", "?"}),
        ("fr", "Bonjour à tous.", {"ʒ", "ɔ̃"}),
        ("de", "Ich liebe Bücher.", {"ç", "yː"}),
    ],
)
def test_phonemes_for_each_language_keep_stress_and_punctuation(language, text, expected):
    symbols = TextFrontEnd("phonemes").symbols(text, language)
    assert expected <= set(symbols), symbols
    assert "ˈ" in symbols and " " in symbols
    assert symbols[-1] in {".", "?"}


def test_numbers_and_abbreviations_are_expanded_in_the_text_language():
    assert normalize_text("Dr. Smith has 3 cats", "en") == "doctor Smith has three cats"
    assert "tres" in normalize_text("Tengo 3 gatos", "es")
    assert "trois" in normalize_text("Il a 3 chats", "fr")
    assert "drei" in normalize_text("Er hat 3 Katzen", "de")
    assert "twenty-first" in normalize_text("the 21st century", "en")
    assert normalize_text("1,000 ways", "en") == "one thousand ways"  # a thousands separator, not a decimal
    assert normalize_text("1.000 euros", "es") == "mil euros"
    assert "three point five" in normalize_text("3.5 m", "en")


def test_batch_equals_one_by_one():
    front = TextFrontEnd("phonemes")
    texts, languages = ["Hello there.", "Hola amigo.", "Good night."], ["en", "es", "en"]
    assert front.batch(texts, languages) == [front.symbols(t, lang) for t, lang in zip(texts, languages)]


def test_ipa_split_keeps_diacritics_and_length_on_their_phone():
    assert split_ipa("bɔ̃ʒˈuːʁ  a") == ["b", "ɔ̃", "ʒ", "ˈ", "uː", "ʁ", " ", "a"]


def test_character_fallback_when_espeak_is_missing(monkeypatch, caplog):
    monkeypatch.setattr(phonemes, "espeak_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        front = TextFrontEnd("phonemes")
    assert front.mode == "characters"
    assert "espeak-ng" in caplog.text and "apt-get install espeak-ng" in caplog.text
    assert front.symbols("Hi, 2!", "en") == list("hi, two!")


def test_unknown_characters_are_reported_not_silently_dropped(caplog):
    with caplog.at_level(logging.WARNING):
        symbols = TextFrontEnd("characters").symbols("snow ☃ man", "en")
    assert "☃" in caplog.text
    assert symbols == list("snow man")


def test_unknown_language_is_a_user_error():
    with pytest.raises(UserError, match="no voice for language"):
        TextFrontEnd("phonemes").symbols("hello", "xx-nonexistent")


def test_symbol_table_round_trip_and_unknown_symbols_reported(caplog):
    table = SymbolTable.build([["a", "b"], ["b", "c"]])
    assert table.symbols[:2] == ["<pad>", "<unk>"] and len(table) == 5
    restored = SymbolTable.from_state(table.to_state())
    ids = restored.encode(["a", "c", "b"])
    assert restored.decode(ids) == ["a", "c", "b"]
    with caplog.at_level(logging.WARNING):
        assert restored.decode(restored.encode(["a", "ʒ"])) == ["a"]
    assert "ʒ" in caplog.text


def test_empty_text_has_no_symbols_and_keeps_its_place_in_a_batch():
    """phonemizer drops empty lines from its output: a batch with one was shifted (or an IndexError alone)."""
    front = TextFrontEnd("phonemes")
    assert front.symbols("", "en") == [] and front.symbols(" \t\n", "en") == []
    batch = front.batch(["Hello.", "", "   ", "Good night."], ["en", "en", "es", "en"])
    assert batch[1:3] == [[], []]
    assert batch[0] == front.symbols("Hello.", "en") and batch[3] == front.symbols("Good night.", "en")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello", True),
        ("42", True),
        ("¿Qué?", True),
        ("你好", True),
        ("🎵🎵 ©®", False),
        ("...", False),
        ("", False),
    ],
)
def test_speakable_means_a_letter_or_a_digit(text, expected):
    assert phonemes.speakable(text) is expected
