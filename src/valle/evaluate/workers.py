"""Score evaluation items in worker processes, with the scores the serial path gives, in its order.

`valle.evaluate.report.evaluate_rows(..., scorers=factory, jobs=n)` comes here. Each of the n workers
is a fresh interpreter ('spawn': torch and the pocketsphinx decoders are not safe to fork), runs torch
on one thread, reads every row's audio once (from a temporary file), builds its recognisers once from
the picklable `factory` (live decoders cannot be pickled), and then scores items one at a time, as the
parent hands them out, through the same `ItemScorer` as the serial path. A prompt or recording shared
by many items is therefore embedded once per worker, as it is once per serial call. Starting a worker
costs ~6 s of CPU (imports, recognisers, resemblyzer's first call), so it pays from a few dozen items.

The parent collects the results in item order, so rows come back in table order with their items in
place; the first failing item (in that order) raises its own exception here, and the items not yet
started are cancelled. The workers' log records are handled by the parent's loggers.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.queues
import pickle
import tempfile
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Any

import numpy as np
import torch

from valle.errors import ConfigError
from valle.evaluate.scoring import EvalItem, ItemScorer, ItemScores

log = logging.getLogger(__name__)

# The worker's state: its copy of the rows and the factory (from the initializer), and the scorer built
# from them on the first item. Built in the first task, not the initializer, so that a failing factory
# raises its own error in the parent instead of a bare "process pool is broken".
_rows: Mapping[str, Sequence[EvalItem]] = {}
_factory: Callable[[], Mapping[str, Any]] | None = None
_scorer: ItemScorer | None = None


def score_in_workers(
    rows: Mapping[str, Sequence[EvalItem]], scorers: Callable[[], Mapping[str, Any]], jobs: int
) -> Generator[tuple[str, list[ItemScores], bool], None, None]:
    """Score every item of `rows` in `jobs` worker processes.

    Yields:
        (row name, its item scores in order, whether words were recognised) per row, in table order,
        as each row's items are done. Closing the generator stops the workers.

    Raises:
        ConfigError: `scorers` cannot be sent to a worker (a lambda or a nested function).
        Whatever an item raised in its worker, with its message (the worker's traceback as its cause).
    """
    try:
        pickle.dumps(scorers)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise ConfigError(
            f"scorers={scorers!r} cannot be sent to worker processes ({error}); "
            "pass a function defined at module level"
        ) from error
    context = multiprocessing.get_context("spawn")
    records = context.Queue()
    listener = QueueListener(records, _ParentLoggers())
    level = min(logging.getLogger().getEffectiveLevel(), log.getEffectiveLevel())
    listener.start()
    try:
        with tempfile.TemporaryDirectory(prefix="valle-evaluate-") as folder:
            # The audio goes through a file, not the workers' start-up arguments: a spawning parent writes
            # those into a pipe the child reads only after its imports (~3 s), one worker after another.
            audio = Path(folder) / "rows.pickle"
            with audio.open("wb") as file:
                pickle.dump(_map_audio(rows, _to_numpy), file, protocol=pickle.HIGHEST_PROTOCOL)
            with ProcessPoolExecutor(
                jobs,
                mp_context=context,
                initializer=_start_worker,
                initargs=(str(audio), scorers, records, level),
            ) as pool:
                futures = {
                    name: [pool.submit(_score, name, index) for index in range(len(items))]
                    for name, items in rows.items()
                }
                try:
                    for name, row in futures.items():
                        done = [future.result() for future in row]
                        yield name, [scores for scores, _ in done], done[0][1]
                except BaseException:  # an item failed, or the caller stopped: start no more items
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        listener.stop()  # after the workers have exited: their last records are in the queue
        records.close()
        records.join_thread()


def _start_worker(
    audio: str, scorers: Callable[[], Mapping[str, Any]], records: multiprocessing.queues.Queue, level: int
) -> None:
    """Worker initializer: one torch thread, log records to the parent, the rows read back with tensors."""
    global _rows, _factory
    torch.set_num_threads(1)  # one process per core already; a thread pool each would only contend
    root = logging.getLogger()
    root.handlers[:] = [QueueHandler(records)]
    root.setLevel(level)
    with open(audio, "rb") as file:
        _rows, _factory = _map_audio(pickle.load(file), torch.from_numpy), scorers


def _score(name: str, index: int) -> tuple[ItemScores, bool]:
    """One item's scores in a worker, and whether its scorers recognise words (the WER columns)."""
    global _scorer
    if _scorer is None:
        assert _factory is not None, "_start_worker has not run"
        _scorer = ItemScorer.build(_rows, _factory)
    return _scorer(name, index), _scorer.asr is not None


def _to_numpy(wav: torch.Tensor) -> np.ndarray:
    """A waveform as a plain array, which pickles by value: a tensor sent to another process would go through
    torch's shared memory, a file descriptor each for hundreds of recordings."""
    return wav.detach().cpu().numpy()


def _map_audio(
    rows: Mapping[str, Sequence[EvalItem]], convert: Callable[[Any], Any]
) -> dict[str, list[EvalItem]]:
    """`rows` with every waveform converted, each distinct waveform once: a recording shared by many items
    stays one object, so it is pickled once and embedded once (the embedding cache is keyed by identity)."""
    converted: dict[int, Any] = {}

    def one(wav: Any) -> Any:
        if wav is None:
            return None
        if id(wav) not in converted:  # `rows` keeps every waveform alive, so ids are not reused meanwhile
            converted[id(wav)] = convert(wav)
        return converted[id(wav)]

    return {
        name: [
            replace(
                item,
                audio=one(item.audio),
                prompt_audio=one(item.prompt_audio),
                reference_audio=one(item.reference_audio),
                others=[(one(wav), rate) for wav, rate in item.others],
            )
            for item in items
        ]
        for name, items in rows.items()
    }


class _ParentLoggers(logging.Handler):
    """Hands a worker's log record to the parent's logger of the same name, as if it had been logged here."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
