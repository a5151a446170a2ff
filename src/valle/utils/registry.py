"""Name → class tables for the pieces a config picks by name (codecs, backbones).

Entries are "module:Class" strings imported on demand, so a piece's heavy dependencies (dac,
torchscale, ...) load only when it is built. One place gives the two errors users meet: an unknown
name (listing the known ones) and a setting the class does not take (listing those it does).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from valle.errors import ConfigError


def lookup(table: Mapping[str, str], name: str, kind: str, key: str) -> type:
    """The class registered under `name`; `kind` ("codec") and `key` ("codec.name") word the error."""
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r}; set {key} to one of {', '.join(sorted(table))}")
    module, _, cls = table[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def check_settings(cls: type, kwargs: Mapping[str, Any], label: str) -> None:
    """Raise when `kwargs` has a key `cls(...)` does not take; `label` names it ("codec 'dac'")."""
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"{label} has no setting {', '.join(unknown)}; it takes {', '.join(accepted)}")
