"""A trained level-0 recognizer with what it reads: the symbol map and codec of the model it judges.

`valle.models.recognizer.CodeRecognizer` is plain tensors in and out, as every network under models/;
this is to it what `valle.card.ModelCard` is to `Valle`: the data that says which model's rows it may
judge, and its file (`python -m valle.recognizer` writes one, `load_recognizer` reads it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from valle.codecs.base import CodecInfo
from valle.errors import ConfigError, MissingFileError
from valle.models.recognizer import CodeRecognizer, RecognizerConfig
from valle.text.symbols import SymbolMap
from valle.utils.io import atomic_output

FILE_FORMAT = "valle-recognizer"
FILE_VERSION = 1


@dataclass
class LoadedRecognizer:
    """The network, the symbol map whose ids it reads out and the codec whose level-0 codes it reads."""

    network: CodeRecognizer
    symbols: SymbolMap
    codec: CodecInfo

    def check_model(self, symbols: SymbolMap, codec: CodecInfo, what: str = "the model") -> None:
        """Raise (ConfigError, a ValueError) unless it reads `what`'s codes and text ids."""
        self.codec.check_compatible(codec, what)
        if symbols.fingerprint() != self.symbols.fingerprint():
            raise ConfigError(
                f"the recognizer was trained on another symbol map than {what}'s; train it on the data.root "
                "the model was trained on (python -m valle.recognizer data.root=... out=...)"
            )

    def to(self, device: str | torch.device) -> LoadedRecognizer:
        self.network.to(device)
        return self

    def save(self, path: str | Path) -> Path:
        """Write it (config, symbol map, codec, weights) atomically."""
        payload = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "config": asdict(self.network.config),
            "codebook_size": self.network.codebook_size,
            "symbols": self.symbols.to_dict(),
            "codec": self.codec.to_dict(),
            "state": self.network.state_dict(),
        }
        with atomic_output(path) as tmp:
            torch.save(payload, tmp)
        return Path(path)


def load_recognizer(path: str | Path, device: str = "cpu") -> LoadedRecognizer:
    """A recognizer written by `LoadedRecognizer.save`, in eval mode on `device`.

    Raises:
        MissingFileError: no file there.
        ConfigError: not a valle recognizer file, or another version.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"recognizer={path}: no such file; train one with "
            f"python -m valle.recognizer data.root=... out={path}"
        )
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which
        raise ConfigError(f"recognizer={path}: not a readable recognizer file ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise ConfigError(
            f"recognizer={path}: not a valle recognizer file (python -m valle.recognizer writes one)"
        )
    if payload.get("version") != FILE_VERSION:
        raise ConfigError(
            f"recognizer={path}: file version {payload.get('version')}, this valle reads {FILE_VERSION}; "
            "train it again"
        )
    symbols = SymbolMap.from_dict(payload["symbols"])
    network = CodeRecognizer(
        RecognizerConfig(**payload["config"]), int(payload["codebook_size"]), len(symbols)
    )
    network.load_state_dict(payload["state"])
    return LoadedRecognizer(network.to(device).eval(), symbols, CodecInfo.from_dict(payload["codec"]))
