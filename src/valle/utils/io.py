"""Atomic file writes: a reader never sees a half-written file, an interrupted run leaves no partial one.

Every file valle writes for later runs to read (shards, manifests, the index, checkpoints, exports)
goes through `atomic_output`: the data goes to a temporary sibling, which is flushed to disk and then
renamed over the target. A kill at any moment leaves either the old file or the new one, never a mix;
a write that fails (a full disk) removes its temporary file and names the target in one line.
"""

from __future__ import annotations

import errno
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from valle.errors import ConfigError, UserError

# A full disk and an exhausted quota: both are fixed by freeing space, not by changing valle's input.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(UserError, OSError):
    """No space left where valle writes; the file being written is named, and what was there before stays."""


def read_utf8(path: str | Path, field: str = "") -> str:
    """A text file's content; a file in another encoding is a one-line error naming it (and `field=`).
    A byte-order mark (Windows editors write one) is dropped, so it cannot stick to the first id or word."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{field}{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
            f"{error.start}); re-save it as UTF-8"
        ) from None


def temporary_sibling(path: Path) -> Path:
    """A name beside `path`, unique per process, that a crash leaves recognisably unfinished."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_temporaries(path: Path) -> None:
    """Delete what interrupted writes of `path` left (`temporary_sibling`s of any process).

    Only for a caller that alone writes `path` (for instance under `valle.utils.lock.exclusive_lock`).
    """
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on failure it is removed.

    The temporary file sits beside `path` (same file system), so the final rename is atomic: no
    detour through /tmp, whose copy back would truncate `path` first.

    Raises:
        DiskFullError: the disk (or quota) filled up while writing; `path` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        with open(tmp, "rb") as handle:  # the rename must not overtake the data on a crash
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, DiskFullError) and error.errno in _NO_SPACE:
            raise disk_full(path, error) from error
        raise


def disk_full(path: Path, error: OSError) -> DiskFullError:
    """The one-line error for a write to `path` that ran out of space."""
    full = DiskFullError(
        f"no space left on the device of {path} ({os.strerror(error.errno or errno.ENOSPC)}); "
        "free some space and rerun: files already written are kept"
    )
    full.errno = error.errno  # callers that test OSError.errno still see ENOSPC
    return full


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1))


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save` through `atomic_output`.

    The object is serialised in memory first: torch's own file writer reports a full disk as an
    unspecific RuntimeError, a plain file write as the OSError (ENOSPC) that becomes DiskFullError.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())
