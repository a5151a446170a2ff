"""Where a codec's weights come from: the official download, a local file, or a random init.

Every codec takes one `weights` setting with three kinds of value:

- ``"pretrained"``: the released weights, fetched by the library's own mechanism (torch.hub, the Hugging
  Face hub, ``dac.utils.download``) and cached where that library caches them;
- ``"random"``: the same architecture, randomly initialised from a fixed seed, so two processes build the same
  codec; it logs a warning, because its codes and audio mean nothing until it is trained;
- a path to a local file: for machines without internet access.

A failed download is an error that names the two ways out; it never falls back to random weights, which
would silently turn a dataset into noise.

The same codes mean different sounds under different weights, so every `CodecInfo` carries its weights'
*identity* (`weights_identity`): ``"pretrained"``, ``"random:seed=0"`` or ``"sha256:<16 hex>"`` of a local
file. prepare records it in its plan, manifests and index; checkpoints and exports inherit it from the index;
infer builds the codec from it and refuses weights with another identity.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from valle.errors import MissingFileError, SetupError

log = logging.getLogger(__name__)

PRETRAINED = "pretrained"
RANDOM = "random"
RANDOM_SEED = 0

RANDOM_IDENTITY = f"{RANDOM}:seed={RANDOM_SEED}"
UNKNOWN_IDENTITY = ""  # files written before identities were recorded
FILE_IDENTITY_PREFIX = "sha256:"

Weights = str | os.PathLike  # "pretrained", "random" or a local file
T = TypeVar("T")


class WeightsError(SetupError):
    """Weights that cannot be fetched or do not fit the codec; the message names the fix."""


def resolve_weights(weights: Weights, setting: str = "codec.weights") -> str | Path:
    """Classify a `weights` setting.

    Args:
        weights: ``"pretrained"``, ``"random"`` or a path to a local file (``~`` is expanded).
        setting: the config key the value came from, named in errors (e.g. ``codec.encodec_weights``).

    Returns:
        ``"pretrained"``, ``"random"``, or the `Path` of an existing file.

    Raises:
        FileNotFoundError: `weights` is a path and no file is there.
        TypeError: `weights` is neither a string nor a path.
    """
    if not isinstance(weights, str | os.PathLike):
        raise TypeError(f"{setting} must be 'pretrained', 'random' or a file path, got {weights!r}")
    if isinstance(weights, str) and weights in (PRETRAINED, RANDOM):
        return weights
    path = Path(weights).expanduser()
    if not path.is_file():
        raise MissingFileError(
            f"{setting}={str(weights)!r}: no such file ({path.resolve()}); pass an existing weights file, "
            f"'{PRETRAINED}' to download the released weights, or '{RANDOM}' for an untrained codec"
        )
    return path


def warn_random(codec: str, setting: str = "codec.weights") -> None:
    """Log that a codec runs on random weights (its codes and audio are noise until it is trained)."""
    log.warning(
        "codec %r uses random weights (%s=random): its codes and decoded audio are noise unless it is "
        "trained; set %s=pretrained or a local weights file for real audio",
        codec,
        setting,
        setting,
    )


def download(fetch: Callable[[], T], what: str, setting: str = "codec.weights") -> T:
    """Run a library's own download, turning any failure into an error that names the fix.

    Args:
        fetch: calls the library (e.g. ``lambda: hf_hub_download(...)``) and returns its result.
        what: what is fetched, for the message (e.g. "EnCodec 24 kHz weights").
        setting: the config key to name in the message.

    Raises:
        WeightsError: the download (or reading what it fetched) failed; chained to the original error.
    """
    try:
        return fetch()
    except Exception as error:  # urllib, requests and huggingface_hub each raise their own types
        raise WeightsError(
            f"could not download the pretrained {what} ({type(error).__name__}: {error}); "
            f"pass a local file with {setting}=/path/to/file, or {setting}={RANDOM} for an untrained codec "
            f"(its output is noise)"
        ) from error


def load_state_dict(path: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Read a state dict from a file, safely (``weights_only=True``).

    Args:
        path: a ``torch.save`` file holding a state dict, or a checkpoint with one under ``"state_dict"``.
        prefix: keep only the keys that start with it, with the prefix removed (e.g. the EnCodec part
            ``"feature_extractor.encodec."`` of a Vocos state dict).

    Raises:
        WeightsError: the file is not a state dict, or holds no key with `prefix`.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path}: not a weights file torch.load reads safely ({error})") from error
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(
            f"{path}: expected a state dict (parameter name → tensor), got {type(data).__name__}"
        )
    state = {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}
    if not state:
        raise WeightsError(f"{path}: no parameter starts with {prefix!r}")
    return state


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, what: str) -> None:
    """Load a state dict strictly, so a wrong file fails instead of leaving parameters random.

    Raises:
        WeightsError: names the file, what it should hold, and a few missing or unexpected keys.
    """
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        missing = sorted(set(module.state_dict()) - set(state))
        unexpected = sorted(set(state) - set(module.state_dict()))
        raise WeightsError(
            f"{path} does not hold {what} weights: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]} ({str(error).splitlines()[0]}); "
            f"point the setting at the right file"
        ) from error


@contextlib.contextmanager
def seeded(seed: int = RANDOM_SEED) -> Iterator[None]:
    """Draw from a fixed seed inside the block, leaving the caller's (CPU) random state as it was.

    Random codecs are built in here, so codes written by one process decode the same in another.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --- identity: which weights made a set of codes ------------------------------------------------------


def weights_identity(weights: Weights, setting: str = "codec.weights") -> str:
    """The identity of the weights a `weights` setting names, without building or downloading anything.

    Returns:
        ``"pretrained"``, ``"random:seed=0"`` (`RANDOM_IDENTITY`), or ``"sha256:<16 hex>"`` of a local
        file's bytes.

    Raises:
        FileNotFoundError, TypeError: as `resolve_weights`.
    """
    source = resolve_weights(weights, setting)
    if source == PRETRAINED:
        return PRETRAINED
    if source == RANDOM:
        return RANDOM_IDENTITY
    stat = Path(source).stat()
    return _file_digest(str(Path(source).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime too, so a file replaced in place is hashed again; weights files run to
    # hundreds of MB and a codec describes itself several times while it is built.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return FILE_IDENTITY_PREFIX + digest.hexdigest()[:16]


def tensors_identity(tensors: Mapping[str, torch.Tensor]) -> str:
    """``"sha256:<16 hex>"`` of named tensors' values: the identity of weights held in memory, not a file."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.flatten().view(torch.uint8).numpy().tobytes())  # any dtype, bf16 included
    return FILE_IDENTITY_PREFIX + digest.hexdigest()[:16]


def setting_for_identity(identity: str) -> str | None:
    """The `weights` setting that rebuilds `identity`: "pretrained" or "random"; None for a file or unknown.

    Only the user knows where a local file is, so a file's identity cannot be turned back into a setting.
    """
    if identity == PRETRAINED:
        return PRETRAINED
    if identity.startswith(RANDOM + ":"):
        return RANDOM
    return None


def weights_conflict(recorded: str, used: str) -> bool:
    """Whether codes made with `recorded` weights would mean something else under `used` ones.

    Unknown identities (older files) never conflict. A local file against "pretrained" cannot be checked
    offline (the file may well be the released weights, the documented way to run without a network):
    that pair passes with a warning.
    """
    if UNKNOWN_IDENTITY in (recorded, used) or recorded == used:
        return False
    if {setting_for_identity(recorded), setting_for_identity(used)} == {PRETRAINED, None}:
        _warn_unverifiable(used if used != PRETRAINED else recorded)
        return False
    return True


@functools.cache
def _warn_unverifiable(file_identity: str) -> None:
    # Once per file: prepare checks every shard manifest of a folder.
    log.warning(
        "cannot check offline that the codec weights %s are the released ones (%s); make sure they are",
        file_identity,
        PRETRAINED,
    )
