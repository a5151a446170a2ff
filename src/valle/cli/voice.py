"""Voice presets: encode a prompt once, reuse it (`prompt=voice.npz` in infer.py, the server, the notebook).

    python -m valle.voice make prompt=ref.wav text="What the reference says." out=voice.npz codec=encodec
    python -m valle.voice make prompt=ref.wav out=voice.npz ckpt=model.pt     # the model's codec

`codec.weights` (pretrained | random | PATH) picks the codec's weights; by default a model's own (with
`ckpt=`) or the pretrained ones. A transcript is phonemized first, as the server checks an upload's
(`language=`, en-us by default; with `ckpt=`, into the model's symbols): one with no words to read is
refused before anything is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from valle.cli.options import REQUIRED, parse_options
from valle.codecs import build_codec
from valle.codecs.base import Codec
from valle.errors import ConfigError, one_line
from valle.export import load
from valle.sampling.prompt import load_prompt, save_voice
from valle.sampling.synthesize import Synthesizer
from valle.text.phonemize import phonemize

DEFAULT_CODEC = "encodec"


@dataclass
class VoiceOptions:
    prompt: str = REQUIRED  # the reference recording (any format the audio reader takes)
    out: str = REQUIRED  # the .npz preset to write
    text: str | None = None  # the recording's transcript: keeps it whole, for continuation
    ckpt: str | None = None  # encode with this model's codec (and its codec weights)
    codec: str | None = None  # or this codec by name (default encodec)
    codec_weights: str | None = dataclasses.field(default=None, metadata={"key": "codec.weights"})
    prompt_seconds: float = 3.0  # crop a prompt without transcript to this many seconds
    language: str = "en-us"  # the transcript's, as infer.py's language= (it is phonemized to check it)


def voice_codec(options: VoiceOptions) -> tuple[Codec, Callable[[str], object]]:
    """The model's codec with `ckpt=`, else the named one; and the check of a transcript: phonemized as
    synthesis will read it (with `ckpt=`, `Synthesizer.text_ids`, the server's check of an upload)."""
    if options.ckpt:
        if options.codec:
            raise ConfigError(f"give ckpt= or codec=, not both: ckpt={options.ckpt} carries its codec")
        synthesizer = Synthesizer(load(options.ckpt), codec_weights=options.codec_weights)
        return synthesizer.codec, lambda text: synthesizer.text_ids(text, options.language)
    codec = build_codec(options.codec or DEFAULT_CODEC, weights=options.codec_weights or "pretrained")
    return codec, lambda text: phonemize(text, options.language)


def check_transcript(text: str, check: Callable[[str], object]) -> None:
    """Refuse a transcript synthesis could not read, naming it and the way out.

    Raises:
        ConfigError: `check` raised one (a TextError: no words, bytes that are not UTF-8, a language
            espeak-ng or the model does not know).
    """
    try:
        check(text)
    except ConfigError as error:
        raise ConfigError(
            f"text={text!r} cannot be the preset's transcript (or leave text= out, for a preset without "
            f"one): {one_line(error)}"
        ) from None


def main(argv: list[str]) -> Path:
    if not argv or argv[0] != "make":
        raise ConfigError(
            "the one subcommand is make: python -m valle.voice make prompt=REF.wav out=VOICE.npz"
        )
    options = parse_options("valle.voice make", VoiceOptions, argv[1:], doc=__doc__ or "")
    codec, check = voice_codec(options)
    text = (options.text or "").strip() or None
    if text is not None:  # checked first: it is cheap, and encoding is not
        check_transcript(text, check)
    prompt = load_prompt(options.prompt, codec, options.prompt_seconds, text)
    path = save_voice(options.out, prompt, codec.info)
    print(
        f"{path}: {prompt.codes.shape[1]} frames of {codec.info.name} codes"
        f"{' with transcript' if prompt.text else ''}"
    )
    return path
