"""Neural audio codecs behind one interface, built by name.

`build_codec("encodec", bandwidth_kbps=6, weights="random")` takes exactly the keys of a
`configs/codec/*.yaml` file, so `build_codec(**cfg.codec)` builds the configured codec.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from valle.codecs.base import Codec, CodecInfo
from valle.codecs.weights import PRETRAINED, UNKNOWN_IDENTITY, WeightsError, setting_for_identity
from valle.errors import ConfigError, MissingFileError
from valle.utils.registry import check_settings, lookup

__all__ = [
    "Codec",
    "CodecInfo",
    "build_codec",
    "carried_state",
    "codec_class",
    "codec_for",
    "describe_codec",
    "CODECS",
]

log = logging.getLogger(__name__)

# name → "module:Class", imported on demand, so `import valle.codecs` does not pay for dac, audiotools
# or vocos. A new codec (e.g. the offline "mel" one) is one more line here.
CODECS: dict[str, str] = {
    "encodec": "valle.codecs.encodec:EncodecCodec",
    "vocos": "valle.codecs.vocos:VocosCodec",
    "dac": "valle.codecs.dac:DacCodec",
    "mel": "valle.codecs.mel:MelCodec",
}


def codec_class(name: str) -> type[Codec]:
    """The class registered under `name`, or an error listing the known names."""
    return lookup(CODECS, name, "codec", "codec.name")


def build_codec(name: str, **kwargs: Any) -> Codec:
    """Build a codec by name.

    Args:
        name: a key of `CODECS` ("encodec", "vocos", "dac").
        **kwargs: that codec's constructor arguments, e.g. `bandwidth_kbps=6, weights="pretrained"`.

    Raises:
        ValueError: unknown name, or a setting the codec does not take (the message lists those it does).
    """
    cls = codec_class(name)
    check_settings(cls, kwargs, f"codec {name!r}")
    return cls(**kwargs)


def describe_codec(name: str, **kwargs: Any) -> CodecInfo:
    """What `build_codec(name, **kwargs)` would describe, without building it or fetching weights.

    Used where only the codec's description matters, e.g. importing already-encoded data.
    """
    cls = codec_class(name)
    check_settings(cls, kwargs, f"codec {name!r}")
    return cls.describe(**kwargs)


def carried_state(info: CodecInfo, data_root: str | Path) -> dict | None:
    """The codec weights a model must carry because nobody can download them: the mel codec's codebooks.

    prepare.py fits them on the corpus and writes them beside the shards (`data_root`); training puts them
    into every checkpoint, and exports keep them, so a model file decodes its own codes anywhere.
    Returns None for the codecs with released weights.

    Raises:
        FileNotFoundError: mel codes in `data_root` without the codebooks file they were encoded with.
    """
    if info.name != "mel":
        return None
    from valle.codecs.mel import CODEBOOKS_FILE, load_codebooks

    path = Path(data_root) / CODEBOOKS_FILE
    if not path.is_file():
        raise MissingFileError(
            f"data.root={data_root} holds mel codes but not {CODEBOOKS_FILE}, the codebooks "
            "they were encoded with; copy it from prepare.py's output folder"
        )
    return load_codebooks(path).state()


def codec_for(
    info: CodecInfo, weights: str | None = None, name: str | None = None, state: dict | None = None
) -> Codec:
    """Build the codec a model's codes came from (its `CodecInfo`), e.g. to decode its output.

    Args:
        info: the model's codec description, with the identity of the weights its training codes came from.
        weights: None (default): the weights the model was trained with (`info.weights`); files that do not
            record them (written before valle did) get "pretrained", as before, and a log line. Else
            "pretrained", "random" or a local file (see docs/codecs.md), refused when they are not the
            model's. For the mel codec, "pretrained" means the codebooks the model file carries (`state`).
        name: decode with another codec of the same codes ("vocos" for EnCodec codes).
        state: the codec weights a model file carries (`ModelCard.codec_state`, see `carried_state`).

    Raises:
        ValueError: `weights` (or `name`) make other codes than the model's; checked before any download.
        WeightsError: the model's weights came from a local file, and `weights` does not name one.
    """
    name = name or info.name
    _check_decodes(name, info)
    settings = _settings_for(info)
    chosen = _weights_for(info, weights, state)
    describe_codec(name, weights=chosen, **settings).check_compatible(info, "the model")
    return build_codec(name, weights=chosen, **settings)


def _check_decodes(name: str, info: CodecInfo) -> None:
    """Refuse a decoding codec (`codec.name`) that cannot read the model's codes, before it is built with
    the model codec's settings, which it does not take (the error would name those settings instead)."""
    if name == info.name or name not in CODECS or {name, info.name} == {"vocos", "encodec"}:
        return
    decodes = (
        "Vocos decodes only EnCodec-coded models" if name == "vocos" else f"{name} decodes only its own codes"
    )
    raise ConfigError(
        f"codec.name={name}: {decodes}, and this model's codec is {info.name}; "
        "drop codec.name to decode with the model's own codec"
    )


def _settings_for(info: CodecInfo) -> dict[str, Any]:
    """The constructor settings (weights aside) that give `info`."""
    if info.name in ("encodec", "vocos"):
        return {"bandwidth_kbps": float(info.variant.removesuffix("kbps"))}
    if info.name == "mel":
        from valle.codecs.mel import MelCodec

        return MelCodec.settings_for(info)
    return {"model_type": info.variant, "n_levels": info.n_levels}


def _weights_for(info: CodecInfo, weights: str | None, state: dict | None) -> Any:
    """The `weights` argument to build with: the one asked for, else the model's own."""
    if info.name == "mel" and state is not None and weights in (None, PRETRAINED):
        from valle.codecs.mel import MelCodebooks

        return MelCodebooks.from_state(state, "the model file's codebooks")
    if weights is not None:
        return weights
    if info.weights == UNKNOWN_IDENTITY:
        log.info(
            "the model file does not record which %s weights made its codes (written by an older valle); "
            "using codec.weights=%s as before: set codec.weights if it was trained on others",
            info.name,
            PRETRAINED,
        )
        return PRETRAINED
    setting = setting_for_identity(info.weights)
    if setting is None:
        what = "mel codebooks the model file does not carry" if info.name == "mel" else "a local file"
        raise WeightsError(
            f"the model was trained on codes of {info.name} weights from {what} ({info.weights}); "
            "pass that file with codec.weights=/path/to/it"
        )
    return setting
