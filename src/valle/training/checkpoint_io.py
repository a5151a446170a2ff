"""Lightning checkpoints written atomically beside their final name.

Lightning's own save goes through fsspec's local "transaction", which writes the file in the system's
temporary folder and then moves it. When that folder is on another file system than the run directory
(a tmpfs /tmp, a data disk for runs), the move is a copy that truncates the target first: a kill or a
full disk during it leaves a torn `last.ckpt` (the previous one destroyed) and a stray file in /tmp.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from valle.utils.io import atomic_torch_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves replace the target atomically (`valle.utils.io.atomic_output`).

    A full disk raises `DiskFullError` naming the checkpoint, and the previous checkpoint of that name stays.
    Remote paths (`s3://...`) keep Lightning's save.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)
