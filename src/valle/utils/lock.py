"""An exclusive lock on a file, so two runs never write the same output at once."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from valle.errors import UserError


class InUseError(UserError, RuntimeError):
    """Another process holds the lock: it is writing the same output right now."""


@contextmanager
def exclusive_lock(path: str | Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created when missing) for the duration of the block.

    The lock is `flock`'s, which the kernel releases when its holder exits however it exits: a
    `kill -9` leaves no stale lock behind, and the next run simply takes it.

    Args:
        path: the lock file.
        what: what the lock guards, as named in the error ("part 0/1 of output=/data/shards").
        wait: wait for the holder to release it (a short task) instead of refusing.

    Raises:
        InUseError: another process holds the lock (and `wait` is false); the message names it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise InUseError(
                f"{what} is being written by {holder} (lock file {path}); wait for it to finish "
                "or stop it, then rerun"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
