"""Byte-level BPE for lyrics: exact round trips, control tokens as single ids, checkpoint restore."""

from __future__ import annotations

import io
import logging
import unicodedata

import pytest
import torch

from cinematic.data.tokenizers.text_bpe import (
    FIXED_SPECIALS,
    TextBPETokenizer,
    control_token,
    normalize_lyrics,
)
from cinematic.errors import UserError

CORPUS = [
    "[verse]\nLa noche cae sobre el puerto\nmi corazón, niño, se rompe\n\n[chorus]\nCanta, canta",
    "[verse]\nDie Straße über dem Fluss\nich träume von dir\n[bridge]\nweiß und grün",
    "[verse]\nThe storm is coming over the harbour\nand I am alone tonight\n[chorus]\nhold on 🌧",
    "[verse]\nLe café est froid, l'été s'en va\nje pense à toi",
] * 5
LABELS = {"language": ["en", "es", "de", "fr"], "emotion": ["sad", "alegría"], "genre": ["ballad", "hip hop"]}


@pytest.fixture(scope="module")
def tok() -> TextBPETokenizer:
    return TextBPETokenizer.train(CORPUS, vocab_size=420, labels=LABELS)


@pytest.mark.parametrize(
    "text",
    [
        "Café, niño, straße, über: déjà vu\n",
        "🎸🔥 emoji 👩‍👩‍👧 and a flag 🇪🇸\n\nnew stanza",
        "[verse]\n  two  spaces\tand a tab\n\n[chorus]\nline",
        "你好，世界 — ünïcödé not seen in training ∑",
        "",
    ],
)
def test_decode_of_encode_is_identity_for_nfc_text(tok, text):
    assert unicodedata.is_normalized("NFC", text)
    assert tok.decode(tok.encode(text)) == text


def test_input_is_nfc_normalized():
    decomposed = unicodedata.normalize("NFD", "canción über")
    tok = TextBPETokenizer.train(CORPUS, vocab_size=420, labels=LABELS)
    assert tok.encode(decomposed) == tok.encode("canción über")


def test_every_control_token_is_one_id_and_never_split(tok):
    labels = [control_token(kind, value) for kind, values in LABELS.items() for value in values]
    for token in [*FIXED_SPECIALS, *labels]:
        ids = tok.encode(token)
        assert ids == [tok.token_id(token)], token
    # glued to text, a marker is still its own id and the text around it is unchanged
    ids = tok.encode("yeah[chorus]\nla la")
    assert tok.structure_ids["chorus"] in ids and tok.newline_id in ids
    assert tok.decode(ids) == "yeah[chorus]\nla la"


def test_decode_leaves_out_conditioning_but_keeps_structure(tok):
    ids = [
        tok.bos_id,
        tok.label_ids["language"]["es"],
        tok.label_ids["emotion"]["alegría"],
        tok.scene_start_id,
    ]
    ids += (
        tok.encode("un puerto") + [tok.scene_end_id] + tok.encode("[verse]\nhola") + [tok.eos_id, tok.pad_id]
    )
    assert tok.decode(ids) == "un puerto[verse]\nhola"


def test_restored_from_checkpoint_gives_the_same_ids(tok):
    buffer = io.BytesIO()
    torch.save({"task_state": {"tokenizer": tok.state()}}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["task_state"]["tokenizer"]  # plain containers only
    restored = TextBPETokenizer.from_state(state)
    text = "[verse]\nEl corazón del puerto 🌧\n[chorus]\nhold on"
    assert restored.encode(text) == tok.encode(text)
    assert restored.label_ids == tok.label_ids
    assert restored.vocab_size == tok.vocab_size


def test_small_corpus_gives_a_smaller_vocabulary_and_logs_it(caplog):
    with caplog.at_level(logging.INFO, logger="cinematic.data.tokenizers.text_bpe"):
        tok = TextBPETokenizer.train(["la la la", "lo lo"], vocab_size=5000, labels={"language": ["es"]})
    assert tok.vocab_size < 5000
    assert "of the 5000 requested" in caplog.text


def test_vocab_size_below_bytes_plus_controls_is_a_user_error():
    with pytest.raises(UserError, match="lyrics_model.vocab_size"):
        TextBPETokenizer.train(CORPUS, vocab_size=260, labels=LABELS)


def test_unknown_label_is_a_user_error_listing_known_values(tok):
    with pytest.raises(UserError, match=r"unknown language 'it'.*: de, en, es, fr$"):
        tok.label_token_id("language", "it")
    with pytest.raises(UserError, match=r"unknown genre 'rock'.*: ballad, hip hop$"):
        tok.label_token_id("genre", "rock")


def test_normalize_lyrics_canonicalises_sections_and_line_breaks():
    raw = "\r\n[Verse 1]\r\nCafe\u0301  \r\n[CHORUS:]\n[Pre-Chorus]\n[Hook]\n[not a section]\n"
    assert normalize_lyrics(raw) == "[verse]\nCafé\n[chorus]\n[pre-chorus]\n[chorus]\n[not a section]"
