from __future__ import annotations

import importlib
from collections import Counter

import pytest

from valle.text import SymbolMap, TextError, phonemize, phonemize_batch
from valle.text.symbols import SPECIALS

phonemize_module = importlib.import_module("valle.text.phonemize")  # the package exports its function


def test_phonemize_keeps_stress_punctuation_and_word_boundaries():
    symbols = phonemize("Hello, world!", "en-us")
    assert "," in symbols and symbols[-1] == "!"
    assert " " in symbols  # the word separator
    assert any(s.startswith("ˈ") for s in symbols)  # primary stress stays on its vowel
    assert "".join(symbols).replace(" ", "").replace(",", "").replace("!", "") == "həlˈoʊwˈɜːld"


def test_phonemize_other_languages_use_their_own_phones():
    german = phonemize("Guten Tag", "de")
    english = phonemize("Guten Tag", "en-us")
    assert german != english and "ɡ" in german


def test_batch_equals_one_by_one():
    texts = ["The birch canoe slid on the smooth planks.", "Two blue fish swam in the tank."]
    assert phonemize_batch(texts) == [phonemize(t) for t in texts]


@pytest.mark.parametrize(("control", "language"), [("\x00", "en-us"), ("\x07", "en-us"), ("\x1b", "de")])
def test_a_control_character_is_read_as_a_space_not_the_end_of_the_text(control, language):
    # espeak-ng stops reading at a NUL: without the cleaning "world" would be lost
    assert phonemize(f"Hello{control}world", language) == phonemize("Hello world", language)


@pytest.mark.parametrize("text", ["", "   ", "...", "\n"])
def test_empty_text_is_refused(text):
    with pytest.raises(TextError, match="empty text"):
        phonemize(text)


def test_unknown_language_names_the_nearest():
    with pytest.raises(TextError, match="did you mean en-us"):
        phonemize("hello", "en-uss")


def test_symbol_map_reserves_ids_in_spec_order():
    symbol_map = SymbolMap.build([["b", "a"], ["c", " "]], ["fr-fr", "en-us"])
    assert symbol_map.symbols[: len(SPECIALS)] == list(SPECIALS)
    assert symbol_map.pad_id == 0
    assert symbol_map.symbols[5:7] == ["<lang:en-us>", "<lang:fr-fr>"]
    assert symbol_map.symbols[7:] == [" ", "a", "b", "c"]


def test_encode_wraps_in_bos_language_eos_and_counts_unknowns():
    symbol_map = SymbolMap.build([["a", "b"]], ["en-us"])
    unknown: Counter = Counter()
    ids = symbol_map.encode(["a", "x", "b", "x"], "en-us", unknown)
    assert symbol_map.decode(ids) == ["<bos>", "<lang:en-us>", "a", "<unk>", "b", "<unk>", "<eos>"]
    assert unknown == {"x": 2}


@pytest.mark.parametrize(
    ("typed", "plain"),
    [
        ("Wait — what?", "Wait, what?"),
        ("Wait—what; really: yes!", "Wait, what, really, yes."),
        ("She said “hello” (twice) to me…", "She said hello, twice, to me."),
        ('He said "no" — then left', "He said no, then left"),
        ("Hi, — there. ¿Yes?", "Hi, there. Yes?"),
        ("He said “no,”", "He said no,"),  # a comma that was typed stays a comma at the end
    ],
)
def test_punctuation_a_model_never_saw_becomes_the_pauses_it_knows(typed, plain):
    # a model trained on ", . ?" only, as the demo's corpus is
    symbol_map = SymbolMap.build([phonemize("Hello, a test. Is it?")], ["en-us"])
    unknown: Counter = Counter()
    folded = symbol_map.fold_punctuation(phonemize(typed))
    symbol_map.encode(folded, "en-us", unknown)
    assert not {s for s in unknown if not s.isalpha()}  # no punctuation left to become <unk>
    assert "".join(folded) == "".join(phonemize(plain))


def test_folding_keeps_what_the_map_knows():
    symbol_map = SymbolMap.build([phonemize("Stop! Wait; go: now.")], ["en-us"])
    phonemes = phonemize("Stop! Wait; go: now.")
    assert symbol_map.fold_punctuation(phonemes) == phonemes


def test_encode_refuses_a_language_the_map_lacks():
    with pytest.raises(ValueError, match="language 'de' is not in this symbol map"):
        SymbolMap.build([["a"]], ["en-us"]).encode(["a"], "de")


def test_symbol_map_round_trips_through_json(tmp_path):
    symbol_map = SymbolMap.build([phonemize("A quick test, with punctuation.")], ["en-us"])
    symbol_map.save(tmp_path / "symbols.json")
    loaded = SymbolMap.load(tmp_path / "symbols.json")
    assert loaded == symbol_map and loaded.symbols == symbol_map.symbols
    assert loaded.fingerprint() == symbol_map.fingerprint()


def test_symbol_map_with_other_version_or_edited_ids_is_refused(tmp_path):
    data = SymbolMap.build([["a", "b"]], ["en-us"]).to_dict()
    with pytest.raises(ValueError, match="version 2"):
        SymbolMap.from_dict({**data, "version": 2})
    with pytest.raises(ValueError, match="inconsistent"):
        SymbolMap.from_dict({**data, "symbols": data["symbols"][::-1]})


def test_a_batch_keeps_one_output_per_text_where_phonemizer_cuts_a_decimal():
    # German is not normalized: phonemizer itself meets "0.5" before the final "." (prepare crashed on zip)
    texts = ["Es ist 0.5 Meter.", "Ja.", "Es ist 2,5 Meter lang, gut."]
    out = phonemize_batch(texts, "de")
    assert len(out) == 3
    assert "".join(out[0]).endswith("mˈeːtɜ.") and "".join(out[1]) == "jˈɑː."


def test_a_text_phonemizer_returns_in_pieces_keeps_all_its_words(monkeypatch):
    class Cutting:  # a phonemizer that returns "a / b" as two outputs, as 3.4 did with "0.5 now."
        def phonemize(self, texts, separator, strip):
            return [piece.strip() for text in texts for piece in text.split("/")]

    monkeypatch.setattr(phonemize_module, "_backend", lambda language: Cutting())
    assert phonemize_module._espeak(["one / two", "three"], "en-us") == ["one two", "three"]


@pytest.mark.parametrize("tag", ["en-GB", "EN-gb", "en_gb"])
def test_language_tags_are_taken_in_any_case(tag):
    assert phonemize("Hello", tag) == phonemize("Hello", "en-gb")


@pytest.mark.parametrize("tag", ["en", "EN-us", "EN"])
def test_bare_english_is_the_default_american_english(tag):
    assert phonemize("Hello", tag) == phonemize("Hello", "en-us")
    symbol_map = SymbolMap.build([["a"]], ["en-us"])
    assert symbol_map.encode(["a"], tag) == symbol_map.encode(["a"], "en-us")
