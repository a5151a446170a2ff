"""Continuous batching: many requests share each AR step, joining and leaving the running batch.

One thread decodes. Each turn of its loop it admits queued requests (prefilled together, then joined to
the running rows with the same sampler settings), takes one AR step for every running row, hands each
row's new frame to its request's `StreamDecoder`, runs one NAR pass for all the rows whose chunk fell due
at this step (`emit_chunks`) and sends their audio, and drops the rows that stopped or whose client went
away. A request of several sentences comes back to
the front of the queue for its next sentence. A request whose text or voice cannot be prefilled fails
alone: the jobs admitted with it are prefilled again without it.

Rows with different sampler settings cannot share a step's sampler, so the engine keeps one batch per
distinct setting (the seed aside) and steps each in turn. Every row draws from its own generator
(`RowGenerators`), seeded per request: a request's audio depends on its own text, voice, settings and
seed, not on who else was being served (up to float rounding of batched arithmetic).

The engine's thread should be the only long-lived thread of the process that runs torch: a thread that
decodes while another holds a pool of OpenMP workers runs at half speed on a small machine. Load the
model and do other torch work in threads that end (`valle.utils.threads`), as `python -m valle.serve` does.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, replace

import torch

from valle.errors import ConfigError, one_line
from valle.sampling.ar import ArRows
from valle.sampling.decode import ar_limits
from valle.sampling.pipeline import ArSampler, NarSampler, SamplerConfig, make_generator
from valle.sampling.processors import RowGenerators
from valle.sampling.prompt import Prompt
from valle.sampling.stream import StreamDecoder, StreamSettings, emit_chunks
from valle.sampling.synthesize import Synthesizer
from valle.serving.metrics import Metrics

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The engine's queue holds `max_queue` requests already."""


@dataclass
class Job:
    """One speech request in the engine.

    `on_chunk(audio)` is called from the engine's thread with each audio chunk [samples] (float32 at the
    codec's rate), then `on_done(None)` or `on_done(error)` once. `cancel()` from any thread stops it at
    the engine's next step. `hit_limit` is final when `on_done` is called.
    """

    sentences: list[str]
    prompt: Prompt
    language: str
    config: SamplerConfig
    on_chunk: Callable[[torch.Tensor], object]
    on_done: Callable[[BaseException | None], object]
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    created: float = field(default_factory=time.perf_counter)
    first_audio: float | None = None
    sentence: int = 0
    samples: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    stream: bool = True  # False: each sentence's audio comes whole (one NAR pass, one decode)
    generator: torch.Generator | None = None  # the AR's draws, across all of the request's sentences
    nar_generator: torch.Generator | None = None
    hit_limit: bool = False  # some sentence reached its AR step limit without a stop token
    done: bool = False  # on_done was called: a job ends once, whichever path ends it

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass
class _Batch:
    """The running rows that share one sampler setting, and the job and stream of each row."""

    rows: ArRows
    jobs: list[Job]
    decoders: list[StreamDecoder]


class Engine:
    """The decoding thread and its queue.

    Args:
        synthesizer: the model and codec (its device; int8 weights when it was made with them).
        max_rows: rows decoded together at most (1: one request at a time, no batching).
        max_queue: requests waiting at most; `submit` raises `QueueFull` past it.
        settings: how each stream is cut.
        metrics: counters for `/metrics`.
        max_steps: the AR steps a sentence may take at most, whatever its sampler asks (its step limit is
            cut to this): each row's cache is sized by its limit. None: no bound.
    """

    def __init__(
        self,
        synthesizer: Synthesizer,
        max_rows: int = 16,
        max_queue: int = 64,
        settings: StreamSettings | None = None,
        metrics: Metrics | None = None,
        max_steps: int | None = None,
    ) -> None:
        if max_rows < 1 or max_queue < 0:
            raise ValueError(f"max_rows={max_rows} must be >= 1 and max_queue={max_queue} >= 0")
        self.synthesizer, self.max_rows, self.max_queue = synthesizer, max_rows, max_queue
        self.settings = settings or StreamSettings.for_codec(synthesizer.codec.frame_rate)
        self.metrics = metrics or Metrics()
        self.max_steps = max_steps
        self.waiting: deque[Job] = deque()
        self.lock = threading.Condition()
        self.batches: dict[tuple, _Batch] = {}  # by sampler settings, the seed aside
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="valle-engine", daemon=True)

    def start(self) -> Engine:
        self.thread.start()
        return self

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        self.thread.join(timeout=30)

    @property
    def running_rows(self) -> int:
        return sum(len(b.jobs) for b in self.batches.values())

    def submit(self, job: Job) -> None:
        """Queue a job; it joins the running batch at the next step with room.

        Raises:
            QueueFull: `max_queue` jobs are waiting already.
        """
        seed = job.config.seed if job.config.seed is not None else secrets.randbits(63)
        job.generator = make_generator(seed, self.synthesizer.device)
        job.nar_generator = make_generator(seed, self.synthesizer.device)
        with self.lock:
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests are waiting already; try again shortly")
            self.waiting.append(job)
            self.metrics.queue_depth = len(self.waiting)
            self.lock.notify_all()

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self.lock:
                while not self.stopping and not self.waiting and not self.batches:
                    self.lock.wait()
                if self.stopping:
                    break
                admitted = self._take()
            with torch.inference_mode():
                try:
                    self._admit(admitted)
                except Exception as error:  # noqa: BLE001 - joining the batch failed: a bug, its jobs fail
                    log.exception("starting %d request(s) failed", len(admitted))
                    for job in admitted:
                        if not any(job in batch.jobs for batch in self.batches.values()):
                            self._finish(job, error)
                self._step()
        for batch in self.batches.values():
            for job in batch.jobs:
                self._finish(job, RuntimeError("the server is shutting down"))
        for job in self.waiting:
            self._finish(job, RuntimeError("the server is shutting down"))

    def _take(self) -> list[Job]:
        """Waiting jobs that fit now (cancelled ones are dropped here)."""
        room = self.max_rows - self.running_rows
        taken: list[Job] = []
        while self.waiting and len(taken) < room:
            job = self.waiting.popleft()
            if job.cancelled.is_set():
                self._finish(job, None)
                continue
            taken.append(job)
        self.metrics.queue_depth = len(self.waiting)
        return taken

    def _admit(self, jobs: list[Job]) -> None:
        """Prefill the jobs' next sentences, grouped by sampler setting and language, and join them to the
        batches."""
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:  # one prefill per setting and language; they join the batch of their sampling
            groups.setdefault((astuple(replace(job.config, seed=None)), job.language), []).append(job)
        for (_, language), group in groups.items():
            self._start(group, language)

    def _start(self, group: list[Job], language: str) -> None:
        """Prefill `group` together and join it to its batch. When that fails, each job is prefilled
        alone: a job whose text or voice cannot be prepared then fails by itself, and the jobs admitted
        beside it start as they would have (a prefill draws nothing, so their generators are untouched)."""
        try:
            rows, decoders = self._prefill(group, language)
        except Exception as error:  # noqa: BLE001 - one request's input must not fail its neighbours
            if len(group) > 1:
                for job in group:
                    self._start([job], language)
                return
            [job] = group
            if isinstance(error, ConfigError):  # its text or voice: the request's fault, not the server's
                log.warning("request %s cannot start: %s", job.id, one_line(error))
            else:
                log.exception("request %s cannot start", job.id)
            self._finish(job, error)
            return
        key = group[0].config.batch_key()  # rows whose step limits differ still share the steps
        if key in self.batches:
            batch = self.batches[key]
            batch.rows.join(rows)
            batch.jobs += group
            batch.decoders += decoders
        else:
            self.batches[key] = _Batch(rows, list(group), decoders)

    def _prefill(self, group: list[Job], language: str) -> tuple[ArRows, list[StreamDecoder]]:
        """The AR rows of the group's next sentences, prefilled together, and a stream decoder per job.

        Raises:
            ConfigError: a text or voice transcript that cannot be phonemized, a setting the model refuses.
        """
        synthesizer, model = self.synthesizer, self.synthesizer.model
        config = replace(group[0].config, seed=None)
        cond = synthesizer.conditioning(
            [job.sentences[job.sentence] for job in group], [job.prompt for job in group], language
        )
        generators = RowGenerators([job.generator for job in group if job.generator is not None])
        limits = ar_limits(config, cond)
        if self.max_steps is not None and limits.max_steps > self.max_steps:
            assert limits.row_limits is not None  # ar_limits gives each row its own
            cut = limits.row_limits.clamp(max=self.max_steps)
            limits = replace(limits, max_steps=self.max_steps, row_limits=cut)
        rows = ArRows(model, cond, ArSampler(config, model.config.stop_token), limits, generator=generators)
        decoders = [
            StreamDecoder(
                model,
                synthesizer.codec,
                cond.select(torch.tensor([i], device=cond.device)),
                NarSampler(config),
                self.settings if job.stream else StreamSettings.whole(),
                job.nar_generator,
            )
            for i, job in enumerate(group)
        ]
        return rows, decoders

    def _step(self) -> None:
        """One AR step of every batch. A batch whose step fails (e.g. a setting that makes its logits NaN)
        fails its own requests, not those of the other batches, whose settings differ."""
        for key in list(self.batches):
            try:
                self._step_batch(key)
            except Exception as error:  # noqa: BLE001 - a failed step fails its requests, not the server
                log.exception("decoding failed")
                for job in self.batches.pop(key).jobs:
                    self._finish(job, error)

    def _step_batch(self, key: tuple) -> None:
        """One AR step of a batch; chunks to its jobs; finished and cancelled rows leave."""
        batch = self.batches[key]
        rows = batch.rows
        started = time.perf_counter()
        codes = rows.step().tolist()
        finished, symbols = rows.finished.tolist(), rows.last_symbols()
        hits = rows.hit_limit.tolist() if any(finished) else []  # one more read, only when rows end
        self.metrics.observe_step(rows.size, time.perf_counter() - started)
        staying, due, uptos, finals = [], [], [], []
        for index, job in enumerate(batch.jobs):
            decoder = batch.decoders[index]
            if job.cancelled.is_set():
                self._finish(job, None)
                continue
            if not finished[index]:
                decoder.append(codes[index], symbols[index])
                staying.append(index)
                upto = decoder.due()
                if upto is None:
                    continue
                due.append(index)
                uptos.append(upto)
                finals.append(False)
            else:
                job.hit_limit = job.hit_limit or hits[index]
                due.append(index)
                uptos.append(decoder.frames)
                finals.append(True)
        # the rows whose chunks fell due at this step share one NAR pass
        chunks = emit_chunks([batch.decoders[i] for i in due], uptos, finals)
        for index, chunk, final in zip(due, chunks, finals, strict=True):
            job = batch.jobs[index]
            self._send(job, chunk)
            if not final:
                continue
            job.sentence += 1
            if job.sentence < len(job.sentences):
                with self.lock:  # its next sentence goes first
                    self.waiting.appendleft(job)
            else:
                self._finish(job, None)
        if not staying:
            del self.batches[key]
        elif len(staying) < rows.size:
            rows.keep(torch.tensor(staying, device=rows.steps.device))
            batch.jobs = [batch.jobs[i] for i in staying]
            batch.decoders = [batch.decoders[i] for i in staying]

    def _send(self, job: Job, chunk: torch.Tensor | None) -> None:
        if chunk is None or chunk.numel() == 0:
            return
        if job.first_audio is None:
            job.first_audio = time.perf_counter()
            self.metrics.observe_first_audio(job.first_audio - job.created)
        job.samples += chunk.numel()
        job.on_chunk(chunk)

    def _finish(self, job: Job, error: BaseException | None) -> None:
        if job.done:
            return
        job.done = True
        seconds = job.samples / self.synthesizer.codec.sample_rate
        status = "cancelled" if job.cancelled.is_set() else ("error" if error else "ok")
        self.metrics.observe_request(status, time.perf_counter() - job.created, seconds)
        if job.hit_limit:  # its audio may be cut short: say so where an operator looks
            self.metrics.observe_step_limit_hit()
            log.warning(
                "request %s: a sentence reached its AR step limit without a stop token, so its audio may "
                "be cut short (raise sampler.max_ar_steps or max_ar_steps_per_phoneme, or check the voice)",
                job.id,
            )
        job.on_done(error)
