"""Voice presets: encode a prompt once, reuse it (`prompt=voice.npz` in infer.py, the server, the notebook).

    python -m valle.voice make prompt=ref.wav text="What the reference says." out=voice.npz codec=encodec
    python -m valle.voice make prompt=ref.wav out=voice.npz ckpt=model.pt     # the model's codec

`codec.weights` (pretrained | random | PATH) picks the codec's weights; by default a model's own (with
`ckpt=`) or the pretrained ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from valle.checkpoints import read_card
from valle.cli.options import REQUIRED, parse_options
from valle.codecs import build_codec
from valle.codecs.base import Codec
from valle.errors import ConfigError
from valle.sampling.prompt import load_prompt, save_voice

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


def voice_codec(options: VoiceOptions) -> Codec:
    """The model's codec with `ckpt=`, else the named one."""
    if options.ckpt:
        if options.codec:
            raise ConfigError(f"give ckpt= or codec=, not both: ckpt={options.ckpt} carries its codec")
        return read_card(options.ckpt).build_codec(options.codec_weights)
    return build_codec(options.codec or DEFAULT_CODEC, weights=options.codec_weights or "pretrained")


def main(argv: list[str]) -> Path:
    if not argv or argv[0] != "make":
        raise ConfigError(
            "the one subcommand is make: python -m valle.voice make prompt=REF.wav out=VOICE.npz"
        )
    options = parse_options("valle.voice make", VoiceOptions, argv[1:], doc=__doc__ or "")
    codec = voice_codec(options)
    prompt = load_prompt(options.prompt, codec, options.prompt_seconds, options.text)
    path = save_voice(options.out, prompt, codec.info)
    print(
        f"{path}: {prompt.codes.shape[1]} frames of {codec.info.name} codes"
        f"{' with transcript' if prompt.text else ''}"
    )
    return path
