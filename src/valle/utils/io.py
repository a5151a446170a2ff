"""Atomic file writes: a reader never sees a half-written file, an interrupted run leaves no partial one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def temporary_sibling(path: Path) -> Path:
    """A name beside `path`, unique per process, that a crash leaves recognisably unfinished."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1))
