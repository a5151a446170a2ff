"""Voice presets: encode a prompt once, reuse it (`prompt=voice.npz`).

python -m valle.voice make prompt=ref.wav text="What the reference says." out=voice.npz codec=encodec
python -m valle.voice make prompt=ref.wav out=voice.npz ckpt=model.pt     # the model's codec
"""

from __future__ import annotations

import sys

from valle.checkpoints import read_checkpoint_meta
from valle.codecs import build_codec, codec_for
from valle.codecs.base import CodecInfo
from valle.errors import exit_on_user_error
from valle.sampling.prompt import load_prompt, save_voice


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "make":
        raise SystemExit(__doc__)
    options = dict(arg.split("=", 1) for arg in args[1:] if "=" in arg)
    if "prompt" not in options or "out" not in options:
        raise SystemExit(
            "usage: python -m valle.voice make prompt=REF.wav out=VOICE.npz [text=...] "
            "[ckpt=MODEL | codec=NAME] [codec.weights=pretrained|random|PATH] [prompt_seconds=3]"
        )
    weights = options.get("codec.weights")  # None: a model's own codec weights
    if "ckpt" in options:
        meta = read_checkpoint_meta(options["ckpt"])
        codec = codec_for(CodecInfo.from_dict(meta["codec"]), weights, state=meta["codec_state"])
    else:
        codec = build_codec(options.get("codec", "encodec"), weights=weights or "pretrained")
    seconds = float(options.get("prompt_seconds", 3.0))
    prompt = load_prompt(options["prompt"], codec, seconds, options.get("text"))
    path = save_voice(options["out"], prompt, codec.info)
    print(
        f"{path}: {prompt.codes.shape[1]} frames of {codec.info.name} codes"
        f"{' with transcript' if prompt.text else ''}"
    )


if __name__ == "__main__":
    exit_on_user_error(main)()
