"""valle's command functions in child processes a test can `kill -9`, without paying Python's start-up each time.

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
    """Kill `delay_s` seconds after `anchor` (a file name) appears in the output folder, or after the start."""

    anchor: str | None
    delay_s: float


def kill_points(folder: Path, started: float, n: int, seed: str, last: str, by: str = "event") -> list[KillPoint]:
    """`n` seeded random moments over the timeline of an uninterrupted run that wrote `folder`.

    The timeline is the run's start (wall clock `started`) and each file's appearance in `folder`
    (its mtime), up to the file `last`. A point is a moment drawn uniformly over the time (`by="time"`)
    or an event drawn uniformly plus a random share of the gap to the next one (`by="event"`: every
    shard of a prepare run as likely as a long set-up phase), anchored on the last event before it:
    a kill lands in the same phase of the work however fast the machine runs that day.
    """
    times = sorted((p.stat().st_mtime, p.name) for p in folder.iterdir() if p.is_file())
    end = next(t for t, name in times if name == last)
    events = [(started, None)] + [(t, name) for t, name in times if t < end] + [(end, last)]
    rng = random.Random(seed)
    points = []
    for _ in range(n):
        if by == "event":
            k = rng.randrange(len(events) - 1)
            moment = events[k][0] + rng.random() * (events[k + 1][0] - events[k][0])
        else:
            moment = rng.uniform(started, end)
            k = max(i for i, (t, _) in enumerate(events[:-1]) if t <= moment)
        points.append(KillPoint(events[k][1], moment - events[k][0]))
    return points


def kill_9_at(process: BaseProcess, folder: Path, point: KillPoint, timeout_s: float = 300.0) -> bool:
    """SIGKILL `process` at `point` (its anchor looked for in `folder`); False when it ended first."""
    deadline = time.monotonic() + timeout_s
    while point.anchor is not None and not (folder / point.anchor).exists():
        if not process.is_alive() or time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return kill_9_after(process, point.delay_s)
