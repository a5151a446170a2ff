"""`python -m valle.voice make`: a preset is written only with a transcript synthesis can read."""

from __future__ import annotations

import pytest

from tests.conftest import RANDOM_MODEL_TEXT, real_speech_dir
from valle.cli.voice import main
from valle.errors import ConfigError
from valle.sampling.prompt import load_voice


def test_voice_make_refuses_a_transcript_with_no_words_before_writing_the_preset(
    random_export, tiny_codec, tmp_path
):
    out, speech = tmp_path / "v.npz", real_speech_dir() / "LJ049-0124.wav"
    make = ["make", f"prompt={speech}", f"out={out}", f"ckpt={random_export}"]
    with pytest.raises(
        ConfigError,
        match=r"text='🍕🍕' cannot be the preset's transcript \(or leave text= out.*nothing to phonemize",
    ):
        main([*make, "text=🍕🍕"])
    assert not out.exists()
    main([*make, f"text={RANDOM_MODEL_TEXT}"])  # phonemized into the model's symbols: kept
    assert load_voice(out, tiny_codec.info).text == RANDOM_MODEL_TEXT
