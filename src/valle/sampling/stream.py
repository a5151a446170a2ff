"""Streaming: level-0 codes as the AR makes them → audio chunks that join without clicks.

`StreamDecoder` follows one row. Every `chunk_frames` new level-0 frames it runs the NAR over the row's
frames so far (the NAR is bidirectional: it sees the whole prefix, and the newest `lookahead_frames` wait
for the right context of the next chunk), then decodes the new span's codes with `context_frames` of
codes before it (a codec decoder is convolutional: its first samples need the frames before them) and
crossfades the span's first `crossfade_frames` with the end of the audio held back from the last chunk.

The joined stream has exactly the non-streamed length (frames × hop); its level 0 is the AR's own, so a
seeded stream says the same level-0 codes as the same seed not streamed. The NAR's levels of a frame are
fixed when its chunk is emitted, from the frames up to then (plus the lookahead), so they can differ
from a whole-utterance NAR pass; `benchmarks/stream_latency.py` measures by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from valle.codecs.base import Codec
from valle.models.valle import Valle
from valle.sampling.nar import decode_nar
from valle.sampling.pipeline import NarSampler
from valle.utils.batch import Conditioning


@dataclass(frozen=True)
class StreamSettings:
    """How a stream is cut (in codec frames; `for_codec` sets them from seconds).

    Attributes:
        chunk_frames: new level-0 frames per chunk after the first.
        first_chunk_frames: frames of the first chunk (smaller: audio starts sooner).
        lookahead_frames: the newest frames that wait for the next chunk before their NAR levels are
            fixed (their right context).
        context_frames: codes before a span decoded with it (the codec decoder's left context).
        crossfade_frames: the overlap over which consecutive chunks are crossfaded.
    """

    chunk_frames: int = 25
    first_chunk_frames: int = 12
    lookahead_frames: int = 4
    context_frames: int = 16
    crossfade_frames: int = 2

    def __post_init__(self) -> None:
        if min(self.chunk_frames, self.first_chunk_frames) < 1:
            raise ValueError("chunk_frames and first_chunk_frames must be >= 1")
        if min(self.lookahead_frames, self.context_frames, self.crossfade_frames) < 0:
            raise ValueError("lookahead_frames, context_frames and crossfade_frames must be >= 0")
        if self.crossfade_frames > self.context_frames:
            raise ValueError("crossfade_frames must be <= context_frames (the overlap is decoded again)")

    @classmethod
    def for_codec(
        cls, frame_rate: float, chunk_seconds: float = 0.5, first_chunk_seconds: float = 0.25
    ) -> StreamSettings:
        """Chunks of `chunk_seconds` (the first `first_chunk_seconds`), 80 ms lookahead, 320 ms of
        decoder context and a 40 ms crossfade at the codec's frame rate."""
        frames = lambda seconds: max(1, round(seconds * frame_rate))  # noqa: E731
        return cls(
            frames(chunk_seconds), frames(first_chunk_seconds), frames(0.08), frames(0.32), frames(0.04)
        )


class StreamDecoder:
    """One row's level-0 frames, pushed as the AR makes them, → audio chunks.

    Args:
        model: the model (its NAR fills levels 1..L-1).
        codec: decodes codes to audio.
        cond: the row's text and prompt (one row, on the model's device).
        sampler: the NAR sampler.
        settings: chunking (`StreamSettings`).
        generator: the NAR's random source; keep it apart from the AR's, so that NAR draws between AR
            steps do not change what the AR draws.
    """

    def __init__(
        self,
        model: Valle,
        codec: Codec,
        cond: Conditioning,
        sampler: NarSampler,
        settings: StreamSettings,
        generator: torch.Generator | None = None,
    ) -> None:
        if cond.size != 1:
            raise ValueError(f"a stream follows one row, got {cond.size}")
        self.model, self.codec, self.cond, self.sampler = model, codec, cond, sampler
        self.settings, self.generator = settings, generator
        self.level0: list[int] = []
        self.symbols: list[int] = []
        self.fixed: Tensor | None = None  # [L, F] codes of the frames whose levels are fixed
        self.emitted = 0  # frames whose audio has been returned (the held-back tail not counted)
        self.tail = torch.zeros(0)  # the last emitted span's final crossfade samples, not yet returned

    @property
    def frames(self) -> int:
        return len(self.level0)

    def push(self, code: int, symbol: int | None = None) -> Tensor | None:
        """Add one level-0 frame (and the text id it says, with monotonic alignment); returns an audio
        chunk when one is due, else None."""
        self.level0.append(code)
        if symbol is not None:
            self.symbols.append(symbol)
        s = self.settings
        due = s.first_chunk_frames if self.emitted == 0 else s.chunk_frames
        if self.frames - s.lookahead_frames - self.emitted >= due:
            return self._emit(self.frames - s.lookahead_frames, final=False)
        return None

    def finish(self) -> Tensor:
        """The rest of the audio once the row has stopped (possibly empty)."""
        if self.frames == 0:
            return torch.zeros(0)
        return self._emit(self.frames, final=True)

    def codes(self) -> Tensor:
        """[L, F] every level of the frames emitted so far."""
        if self.fixed is None:
            return torch.zeros(self.model.config.n_levels, 0, dtype=torch.long)
        return self.fixed

    @torch.inference_mode()
    def _emit(self, upto: int, final: bool) -> Tensor:
        levels = self._levels()  # every level of every frame so far, those already emitted as they were
        start = 0 if self.fixed is None else self.fixed.shape[1]
        new = levels[:, start:upto]
        self.fixed = new if self.fixed is None else torch.cat([self.fixed, new], dim=1)
        s, hop = self.settings, self.codec.hop_length
        # Decode the span from `emitted` on (the held-back tail's frames again) with context before it.
        first = max(0, self.emitted - s.context_frames)
        wav = self.codec.decode(self.fixed[:, first:upto].to(self.codec.device)).cpu()
        wav = wav[(self.emitted - first) * hop :]
        # Crossfade the re-decoded start with the tail held back last time.
        n = self.tail.numel()
        if n:
            ramp = torch.linspace(0.0, 1.0, n + 2)[1:-1]
            wav = wav.clone()
            wav[:n] = self.tail * (1 - ramp) + wav[:n] * ramp
        keep = 0 if final else min(s.crossfade_frames, upto - self.emitted) * hop
        out, self.tail = wav[: wav.numel() - keep], wav[wav.numel() - keep :]
        self.emitted = upto - (keep // hop)
        return out

    def _levels(self) -> Tensor:
        level0 = torch.tensor([self.level0], dtype=torch.long, device=self.cond.device)
        lengths = torch.tensor([self.frames], device=self.cond.device)
        symbols = None
        if self.symbols:
            symbols = torch.tensor([self.symbols], dtype=torch.long, device=self.cond.device)
        codes = decode_nar(
            self.model,
            self.cond,
            level0,
            lengths,
            self.sampler,
            generator=self.generator,
            frame_symbols=symbols,
            fixed=None if self.fixed is None else self.fixed[None].to(self.cond.device),
        )
        return codes[0].cpu()
