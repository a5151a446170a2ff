"""The server's counters in Prometheus' text exposition format (`GET /metrics`).

Written by hand: a few counters, gauges and histograms do not need a client library.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass, field

SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = SECONDS_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect_left(self.buckets, value)
        for i in range(index, len(self.buckets)):
            self.counts[i] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{b:g}"}} {c}' for b, c in zip(self.buckets, self.counts, strict=True)]
        return [
            *out,
            f'{name}_bucket{{le="+Inf"}} {self.n}',
            f"{name}_sum {self.total:.6f}",
            f"{name}_count {self.n}",
        ]


class Metrics:
    """What `/metrics` reports; updated by the engine's thread and read by the server's."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.queue_depth = 0
        self.rows = 0
        self.max_rows_seen = 0
        self.frames = 0
        self.steps = 0
        self.step_seconds = 0.0
        self.audio_seconds = 0.0
        self.step_limit_hits = 0
        self.first_audio = Histogram()
        self.latency = Histogram()

    def observe_step(self, rows: int, seconds: float) -> None:
        with self.lock:
            self.rows, self.max_rows_seen = rows, max(self.max_rows_seen, rows)
            self.frames += rows
            self.steps += 1
            self.step_seconds += seconds

    def observe_first_audio(self, seconds: float) -> None:
        with self.lock:
            self.first_audio.observe(seconds)

    def observe_request(self, status: str, seconds: float, audio_seconds: float) -> None:
        with self.lock:
            self.requests[status] = self.requests.get(status, 0) + 1
            self.latency.observe(seconds)
            self.audio_seconds += audio_seconds

    def observe_step_limit_hit(self) -> None:
        with self.lock:
            self.step_limit_hits += 1

    def reject(self, code: str) -> None:
        with self.lock:
            self.rejected[code] = self.rejected.get(code, 0) + 1

    def render(self, running_rows: int) -> str:
        """The exposition text."""
        with self.lock:
            lines = [
                "# HELP valle_requests_total Speech requests finished, by outcome.",
                "# TYPE valle_requests_total counter",
                *(f'valle_requests_total{{status="{k}"}} {v}' for k, v in sorted(self.requests.items())),
                "# HELP valle_rejected_total Requests refused before decoding, by error code.",
                "# TYPE valle_rejected_total counter",
                *(f'valle_rejected_total{{code="{k}"}} {v}' for k, v in sorted(self.rejected.items())),
                "# HELP valle_queue_depth Requests waiting for a row.",
                "# TYPE valle_queue_depth gauge",
                f"valle_queue_depth {self.queue_depth}",
                "# HELP valle_running_rows Rows being decoded now.",
                "# TYPE valle_running_rows gauge",
                f"valle_running_rows {running_rows}",
                "# HELP valle_batch_rows_max The most rows one AR step has decoded together.",
                "# TYPE valle_batch_rows_max gauge",
                f"valle_batch_rows_max {self.max_rows_seen}",
                "# HELP valle_ar_frames_total Level-0 frames (tokens) decoded by the AR.",
                "# TYPE valle_ar_frames_total counter",
                f"valle_ar_frames_total {self.frames}",
                "# HELP valle_ar_steps_total AR steps (each decodes one frame of every running row).",
                "# TYPE valle_ar_steps_total counter",
                f"valle_ar_steps_total {self.steps}",
                "# HELP valle_ar_step_seconds_total Time spent in AR steps.",
                "# TYPE valle_ar_step_seconds_total counter",
                f"valle_ar_step_seconds_total {self.step_seconds:.6f}",
                "# HELP valle_audio_seconds_total Seconds of audio sent.",
                "# TYPE valle_audio_seconds_total counter",
                f"valle_audio_seconds_total {self.audio_seconds:.6f}",
                "# HELP valle_step_limit_hits_total Requests with a sentence that reached its AR step limit "
                "without a stop token (audio maybe cut short).",
                "# TYPE valle_step_limit_hits_total counter",
                f"valle_step_limit_hits_total {self.step_limit_hits}",
                "# HELP valle_time_to_first_audio_seconds From a request's arrival to its first audio chunk.",
                "# TYPE valle_time_to_first_audio_seconds histogram",
                *self.first_audio.lines("valle_time_to_first_audio_seconds"),
                "# HELP valle_request_seconds From a request's arrival to its last audio.",
                "# TYPE valle_request_seconds histogram",
                *self.latency.lines("valle_request_seconds"),
            ]
        return "\n".join(lines) + "\n"
