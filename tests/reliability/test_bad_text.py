"""Bad text, at inference and in a corpus: a one-line error naming the field or file, or a documented
normalization (long text is split; symbols the model lacks read as <unk> with a warning)."""

from __future__ import annotations

import pytest
import torch

from tests.cli.test_infer_cli import compose_infer
from tests.sampling.test_synthesize import synthesizer  # noqa: F401  (the tiny random model, as a fixture)
from valle.cli.infer import read_requests
from valle.data.readers import read_corpus
from valle.errors import UserError
from valle.sampling.pipeline import SamplerConfig
from valle.sampling.prompt import Prompt
from valle.text.split import split_sentences

NOT_UTF8 = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")  # how Python reads such bytes from argv
QUICK = SamplerConfig(max_ar_steps=3, seed=0)


def speak(synthesizer, text: str, language: str = "en-us"):  # noqa: F811
    prompt = Prompt(torch.randint(0, 1024, (2, 20), generator=torch.Generator().manual_seed(0)))
    return synthesizer.synthesize([text], [prompt], language, QUICK)


@pytest.mark.parametrize(
    ("case", "text", "language", "message"),
    [
        ("empty", "", "en-us", "empty text ''"),
        ("whitespace", "  \t ", "en-us", "empty text"),
        ("non-UTF-8 bytes", NOT_UTF8, "en-us", "not UTF-8"),
        ("only punctuation", "?! ... —", "en-us", "empty text '.*': nothing to phonemize"),
        ("unknown language code", "Hello there.", "xx-nowhere", "unknown language 'xx-nowhere'"),
        (
            "a language the model was not trained on",
            "Hallo.",
            "de",
            "language 'de' is not in this symbol map",
        ),
    ],
)
def test_bad_text_is_a_one_line_error_naming_it(case, text, language, message, synthesizer):  # noqa: F811
    with pytest.raises(UserError, match=message) as error:
        speak(synthesizer, text, language)
    assert "\n" not in str(error.value)


def test_ten_thousand_characters_are_split_into_sentences_and_spoken(synthesizer):  # noqa: F811
    text = " ".join(["This sentence is part of a very long text, and it goes on."] * 170)[:10_000]
    pieces = split_sentences(text)
    assert len(text) == 10_000 and max(map(len, pieces)) <= 200 and len(pieces) >= 50
    [result] = speak(synthesizer, text)
    assert result.codes.shape[1] > 0


def test_one_ten_thousand_letter_word_is_cut_into_pieces():
    pieces = split_sentences("a" * 10_000)
    assert "".join(pieces) == "a" * 10_000 and max(map(len, pieces)) <= 200


def test_symbols_outside_the_models_map_read_as_unk_with_a_warning(synthesizer, caplog):  # noqa: F811
    ids = synthesizer.text_ids("Zhivago's rouge beige garage", "en-us").tolist()
    assert synthesizer.loaded.symbols.unk_id in ids
    assert "unknown to the model read as <unk>" in caplog.text and "ʒ" in caplog.text


def test_a_texts_file_that_is_not_utf8_is_named(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_bytes("Caf\u00e9 au lait.\n".encode("latin-1"))
    with pytest.raises(UserError, match=f"texts={lines}: not UTF-8 text"):
        read_requests(compose_infer("ckpt=m.pt", f"texts={lines}"))


def test_a_transcript_that_is_not_utf8_is_named(tmp_path):
    speaker = tmp_path / "corpus" / "group" / "speaker"
    speaker.mkdir(parents=True)
    (speaker / "a.wav").write_bytes(b"")
    (speaker / "a.txt").write_bytes("Caf\u00e9 au lait.".encode("latin-1"))
    with pytest.raises(UserError, match=f"{speaker / 'a.txt'}: not UTF-8 text"):
        read_corpus("folder", tmp_path / "corpus", "en-us")


def test_empty_text_on_the_command_line_names_the_fields():
    with pytest.raises(UserError, match='exactly one of text="..." or texts=FILE'):
        read_requests(compose_infer("ckpt=m.pt", "text=''"))
