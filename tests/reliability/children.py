"""valle's command functions in child processes a test can `kill -9`, without Python's start-up each time.

A fork server imports valle (and torch, Lightning, Hydra) once; each child forks from it, already
warm, and runs `valle.cli.<x>.run(cfg)` on a composed config, as the `train.py`/`prepare.py` shims
do. A child is a real process: SIGKILL stops it wherever it is, with no cleanup of any kind.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from omegaconf import DictConfig

_SERVER = multiprocessing.get_context("forkserver")
# The fork server starts clean (no OpenMP pool yet), so its children can run torch safely.
_SERVER.set_forkserver_preload(["valle.cli.train", "valle.cli.prepare"])


def _train(cfg: DictConfig) -> None:
    from valle.cli.train import run

    run(cfg)


def _prepare(cfg: DictConfig) -> None:
    from valle.cli.prepare import run

    run(cfg)


def _nothing(cfg: DictConfig | None) -> None:
    pass


COMMANDS = {"train": _train, "prepare": _prepare, "nothing": _nothing}


def _child(command: str, cfg: DictConfig | None, error_file: Path | None) -> None:
    """The child's body: the command, with its error (type: message) written to `error_file` if it fails."""
    try:
        COMMANDS[command](cfg)
    except Exception as error:
        if error_file is not None:
            error_file.write_text(f"{type(error).__name__}: {error}", encoding="utf-8")
        raise


def warm_up() -> None:
    """Start the fork server (it imports valle once), so that timed runs measure the command alone."""
    run_to_end("nothing", None)


def start(command: str, cfg: DictConfig | None, error_file: Path | None = None) -> BaseProcess:
    """Start `valle.cli.<command>.run(cfg)` in a child process (its error, if any, goes to `error_file`)."""
    process = _SERVER.Process(target=_child, args=(command, cfg, error_file), daemon=True)
    process.start()
    return process


def run_to_end(command: str, cfg: DictConfig | None, timeout_s: float = 300.0) -> float:
    """Run a command in a child to completion; return its wall time in seconds."""
    started = time.monotonic()
    process = start(command, cfg)
    process.join(timeout_s)
    if process.is_alive():
        process.kill()
        raise AssertionError(f"{command} did not finish within {timeout_s:.0f} s")
    assert process.exitcode == 0, f"{command} failed with exit code {process.exitcode}"
    return time.monotonic() - started


def kill_9_after(process: BaseProcess, seconds: float) -> bool:
    """SIGKILL `process` `seconds` from now; False when it had ended before that."""
    process.join(seconds)
    if not process.is_alive():
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    return True


@dataclass(frozen=True)
class KillPoint:
    """Kill `delay_s` seconds after a file matching `anchor` (a glob under the watched folder) appears,
    or after the start (`anchor` None); the anchor appeared `anchor_s` after the start in the reference
    run."""

    anchor: str | None
    delay_s: float
    anchor_s: float = 0.0


Timeline = list[tuple[float, "str | None"]]  # (wall-clock time, anchor): the start (None), then files


def timeline_from_mtimes(folder: Path, started: float, last: str) -> Timeline:
    """A finished run's timeline from its files' mtimes: for a folder whose files are never deleted."""
    times = sorted((p.stat().st_mtime, p.name) for p in folder.iterdir() if p.is_file())
    end = next(t for t, name in times if name == last)
    return [(started, None)] + [(t, name) for t, name in times if t < end] + [(end, last)]


def run_watching(
    command: str, cfg: DictConfig, folder: Path, anchor: Callable[[str], str | None], timeout_s: float = 300.0
) -> Timeline:
    """Run a command to completion, noting when each file under `folder` first appears.

    `anchor` maps a file's path (relative to `folder`) to the glob a trial waits for, or None to
    ignore the file (names that differ from run to run). For folders whose files come and go. The
    timeline ends at the last file: what follows it (closing down) is no place to aim a kill at.
    """
    started = time.time()
    process = start(command, cfg)
    seen: dict[str, float] = {}
    while process.is_alive() and time.time() - started < timeout_s:
        for path in folder.rglob("*") if folder.is_dir() else ():
            name = anchor(str(path.relative_to(folder)))
            if name is not None and name not in seen:
                seen[name] = time.time()
        time.sleep(0.005)
    process.join(1.0)
    assert process.exitcode == 0, f"{command} failed with exit code {process.exitcode}"
    return [(started, None)] + sorted((t, name) for name, t in seen.items())


def kill_points(timeline: Timeline, n: int, seed: str) -> list[KillPoint]:
    """`n` seeded random moments over an uninterrupted run's timeline.

    A point is a file's appearance plus a random share of the gap to the next one, anchored on that
    file: a kill lands in the same phase of the work however fast the machine runs that day. Files
    are drawn by strata (point i from the i-th n-th of them), so the points spread over the whole
    run, and every shard or checkpoint is as likely as a long set-up phase. Before the first file
    nothing is on disk (a kill there leaves a fresh start), and nothing anchors a point there.
    """
    rng = random.Random(seed)
    gaps = len(timeline) - 2  # from the first file on
    points = []
    for i in range(n):
        k = 1 + rng.randrange(i * gaps // n, max((i + 1) * gaps // n, i * gaps // n + 1))
        gap = timeline[k + 1][0] - timeline[k][0]
        points.append(KillPoint(timeline[k][1], rng.random() * gap, timeline[k][0] - timeline[0][0]))
    return points


def kill_9_at(process: BaseProcess, folder: Path, point: KillPoint, timeout_s: float = 300.0) -> bool:
    """SIGKILL `process` at `point` (its anchor looked for under `folder`); False when it ended first.

    The delay after the anchor is scaled by how fast this run reached the anchor compared with the
    reference run: a busy machine slows both parts alike.
    """
    started = time.monotonic()
    while point.anchor is not None and next(folder.glob(point.anchor), None) is None:
        if not process.is_alive() or time.monotonic() - started > timeout_s:
            return False
        time.sleep(0.005)
    pace = (time.monotonic() - started) / point.anchor_s if point.anchor_s > 0.5 else 1.0
    return kill_9_after(process, point.delay_s * pace)
