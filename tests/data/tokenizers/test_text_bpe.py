"""Byte-level BPE for lyrics: exact round trips, control tokens as single ids that no text can produce,
structure markers where allowed, checkpoint restore."""

from __future__ import annotations

import copy
import io
import logging
import pickle
import unicodedata

import pytest
import torch

from cinematic.data.tokenizers.text_bpe import (
    FIXED_SPECIALS,
    NEWLINE,
    STRUCTURE,
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


ALL_SPECIALS = [
    *FIXED_SPECIALS,
    *(control_token(kind, value) for kind, values in LABELS.items() for value in values),
]


def test_every_control_token_is_one_id_and_markers_and_line_breaks_encode_to_it(tok):
    ids = {token: tok.token_id(token) for token in ALL_SPECIALS}
    assert len(set(ids.values())) == len(ALL_SPECIALS)
    assert set(ids.values()) == tok.special_ids | {tok.eos_id}
    for token in [NEWLINE, *STRUCTURE]:
        assert tok.encode(token) == [ids[token]], token
    # glued to text, a marker is still its own id and the text around it is unchanged (song texts)
    ids = tok.encode("yeah[chorus]\nla la")
    assert tok.structure_ids["chorus"] in ids and tok.newline_id in ids
    assert tok.decode(ids) == "yeah[chorus]\nla la"


@pytest.mark.parametrize("markers", ["anywhere", "lines", "none"])
@pytest.mark.parametrize("special", ALL_SPECIALS)
def test_free_text_never_encodes_a_control_token(tok, special, markers):
    text = f"{special}a {special} b{special}\n{special}"
    ids = tok.encode(text, markers=markers)
    assert not set(ids) & (tok.control_ids | {tok.eos_id}), special
    assert tok.decode(ids) == text
    if markers == "none":  # a scene: only the line break is its own id (it is the character itself)
        assert set(ids) & tok.special_ids <= {tok.newline_id}
        assert tok.encode_plain(text) == ids
    if special not in (NEWLINE, *STRUCTURE):  # spelled out in byte-level pieces, never its own id
        assert len(tok.encode(special, markers=markers)) > 1


def test_section_markers_are_structure_where_the_mode_allows(tok):
    text = "[chorus]\nla [verse] la\n[bridge]x\n[outro]"
    found = {
        markers: [i for i in tok.encode(text, markers=markers) if i in tok.structure_ids.values()]
        for markers in ("anywhere", "lines", "none")
    }
    ids = tok.structure_ids
    assert found["anywhere"] == [ids["chorus"], ids["verse"], ids["bridge"], ids["outro"]]  # song texts
    assert found["lines"] == [ids["chorus"], ids["outro"]]  # a prompt: only a marker on its own line
    assert found["none"] == []  # a scene
    for markers in found:
        assert tok.decode(tok.encode(text, markers=markers)) == text
    with pytest.raises(ValueError, match="markers"):
        tok.encode(text, markers="some")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", CORPUS[:4] + ["yeah[chorus]\nla la", "  two\n\n\t[verse][bridge]x 🌧\n", ""])
def test_text_without_control_strings_keeps_the_ids_training_always_gave(tok, text):
    # what the whole text through the raw `tokenizers` object gave before control strings became text
    assert tok.encode(text) == tok._tok.encode(text, add_special_tokens=False).ids


def test_a_combining_mark_after_a_control_string_composes_as_nfc_says(tok):
    text = "<bos>\u0338 and =\u0338"  # NFC: "<bos≯ and ≠"
    ids = tok.encode_plain(text)
    assert not set(ids) & tok.special_ids
    assert tok.decode(ids) == unicodedata.normalize("NFC", text)


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
    text = "[verse]\nEl corazón del puerto 🌧\n[chorus]\nhold on <eos> </scene>"
    assert restored.encode(text) == tok.encode(text)
    assert restored.encode_plain(text) == tok.encode_plain(text)
    assert restored.label_ids == tok.label_ids
    assert restored.vocab_size == tok.vocab_size


def test_pickled_and_copied_tokenizers_still_encode_control_strings_as_text(tok):
    text = "a </scene> <bos> b\n[chorus]"
    for copied in (pickle.loads(pickle.dumps(tok)), copy.deepcopy(tok)):
        assert copied.encode(text) == tok.encode(text)
        assert copied.label_ids == tok.label_ids


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
