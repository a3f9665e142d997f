"""Lyrics → sections, lines and syllables (cinematic.data.syllables)."""

from __future__ import annotations

import pytest

from cinematic.data.syllables import _is_vowel, parse_lyrics, read_lyrics, syllabify, syllabify_word
from cinematic.errors import UserError


@pytest.mark.parametrize(
    ("word", "language", "expected"),
    [
        ("beautiful", "en", ["beau", "ti", "ful"]),
        ("hello", "en", ["hel", "lo"]),
        ("tonight", "en", ["to", "night"]),  # en_US leaves it whole: split at its vowel groups
        ("sometimes", "en", ["some", "times"]),  # silent e, silent -es
        ("loved", "en", ["loved"]),
        ("you", "en", ["you"]),
        ("corazón", "es", ["co", "ra", "zón"]),
        ("Wasser", "de", ["Was", "ser"]),
        ("soleil", "fr", ["so", "leil"]),
        ("ventana", "xx", ["ven", "ta", "na"]),  # no dictionary: one syllable per vowel group
        ("我爱你", "zh", ["我", "爱", "你"]),
    ],
)
def test_words_split_into_syllables_per_language(word, language, expected):
    assert syllabify_word(word, language) == expected


@pytest.mark.parametrize("language", ["en", "es", "de", "fr", "it", "xx"])
def test_syllables_rebuild_the_word_and_each_has_a_vowel(language):
    for word in ("strength", "understanding", "aeropuerto", "rhythm", "Schmetterling", "s", "imagination"):
        pieces = syllabify_word(word, language)
        assert "".join(pieces) == word
        if any(_is_vowel(c) for c in word):
            assert all(any(_is_vowel(c) for c in piece) for piece in pieces), pieces


def test_numbers_are_sung_as_words_and_punctuation_is_not_sung():
    syllables, starts = syllabify("Under the water, 3 times!", "en")
    assert syllables == ["Un", "der", "the", "wa", "ter", "three", "times"]
    assert starts == [True, False, True, True, False, True, True]
    assert syllabify("tengo 2 gatos", "es")[0][2] == "dos"


def test_sections_lines_and_parts():
    text = "Before any marker\n\n[Verse 1]\nFirst verse line\nSecond line\n\n[Chorus]\nSing it loud\n[chorus]\nSing it loud\n...\n"
    lines = parse_lyrics(text, "en")
    assert [(line.section, line.text, line.part) for line in lines] == [
        ("verse", "Before any marker", 0),
        ("verse", "First verse line", 1),
        ("verse", "Second line", 1),
        ("chorus", "Sing it loud", 2),
        ("chorus", "Sing it loud", 3),
    ]
    assert lines[3].key == lines[4].key == "sing it loud"
    assert lines[1].syllables == ("First", "verse", "line")


@pytest.mark.parametrize("text", ["", "\n\n", "[verse]\n[chorus]\n", "...\n!!\n"])
def test_lyrics_without_a_line_to_sing_are_a_user_error(text, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match="empty.txt"):
        read_lyrics(path, "en")


def test_missing_or_binary_lyrics_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_lyrics(tmp_path / "nope.txt", "en")
    binary = tmp_path / "song.bin"
    binary.write_bytes(b"\xff\xfe\x00\x9c")
    with pytest.raises(UserError, match="song.bin"):
        read_lyrics(binary, "en")
