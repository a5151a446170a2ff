"""Streaming: level-0 codes as the AR makes them → audio chunks that join without clicks.

`StreamDecoder` follows one row. Every chunk's worth of new level-0 frames (`StreamSettings.due`: a short
first chunk, then growing ones) it runs the NAR over the row's frames so far (the NAR is bidirectional:
it sees the whole prefix, and the newest `lookahead_frames` wait for the right context of the next
chunk), then decodes the new span's codes with `context_frames` of
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

# On the CPU, rows share a greedy NAR pass up to this many positions (text, prompt and frames, times the
# rows). There a pass is compute-bound, so a batch buys nothing a row, and past the caches it costs more a
# row: 8 rows of `small` (417 positions each) run at 0.75x one row's frames/s, 2 rows at 1.04x
# (benchmarks/batch_scaling.py). A GPU has compute to spare for many rows: there all rows share one.
CPU_NAR_PASS_POSITIONS = 1024


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
        growth: each chunk after the second is this many times longer than the one before, up to
            `max_chunk_frames`. Every chunk reruns the NAR over all frames so far, so equal chunks cost
            O(frames²) NAR work on a long sentence; growing ones keep it within a few whole passes, while
            the audio already sent covers the longer wait.
        max_chunk_frames: the longest chunk.
    """

    chunk_frames: int = 25
    first_chunk_frames: int = 12
    lookahead_frames: int = 4
    context_frames: int = 16
    crossfade_frames: int = 2
    growth: float = 1.0
    max_chunk_frames: int = 1 << 30

    def due(self, chunks: int) -> int:
        """Frames of chunk number `chunks` (0: the first)."""
        if chunks == 0:
            return self.first_chunk_frames
        return min(self.max_chunk_frames, round(self.chunk_frames * self.growth ** (chunks - 1)))

    def __post_init__(self) -> None:
        if min(self.chunk_frames, self.first_chunk_frames) < 1:
            raise ValueError("chunk_frames and first_chunk_frames must be >= 1")
        if min(self.lookahead_frames, self.context_frames, self.crossfade_frames) < 0:
            raise ValueError("lookahead_frames, context_frames and crossfade_frames must be >= 0")
        if self.growth < 1 or self.max_chunk_frames < self.chunk_frames:
            raise ValueError("growth must be >= 1 and max_chunk_frames >= chunk_frames")
        if self.crossfade_frames > self.context_frames:
            raise ValueError("crossfade_frames must be <= context_frames (the overlap is decoded again)")

    @classmethod
    def whole(cls) -> StreamSettings:
        """No chunk before the end: one NAR pass and one decode, as `Synthesizer.synthesize` does (a
        request that wants its audio whole)."""
        never = 1 << 30
        return cls(never, never, 0, 0, 0, 1.0, never)

    @classmethod
    def for_codec(
        cls,
        frame_rate: float,
        chunk_seconds: float = 0.5,
        first_chunk_seconds: float = 0.25,
        growth: float = 1.5,
        max_chunk_seconds: float = 3.0,
    ) -> StreamSettings:
        """A `first_chunk_seconds` chunk, then `chunk_seconds` growing by `growth` up to
        `max_chunk_seconds`; 80 ms lookahead, 320 ms of decoder context and a 40 ms crossfade at the
        codec's frame rate."""
        frames = lambda seconds: max(1, round(seconds * frame_rate))  # noqa: E731
        chunk = frames(chunk_seconds)
        return cls(
            chunk,
            frames(first_chunk_seconds),
            frames(0.08),
            frames(0.32),
            frames(0.04),
            growth,
            max(chunk, frames(max_chunk_seconds)),
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
        # [L - 1, F, K] their NAR distributions, decoded as expected codewords (`expected_codewords`)
        self.fixed_expected: Tensor | None = None
        self.emitted = 0  # frames whose audio has been returned (the held-back tail not counted)
        self.chunks = 0  # chunks returned
        self.tail = torch.zeros(0)  # the last emitted span's final crossfade samples, not yet returned

    @property
    def frames(self) -> int:
        return len(self.level0)

    @property
    def positions(self) -> int:
        """The positions of this row's NAR pass: its text, its prompt and its frames so far."""
        return int(self.cond.text_lengths[0]) + int(self.cond.prompt_lengths[0]) + self.frames

    def push(self, code: int, symbol: int | None = None) -> Tensor | None:
        """Add one level-0 frame (and the text id it says, with monotonic alignment); returns an audio
        chunk when one is due, else None."""
        self.append(code, symbol)
        upto = self.due()
        return None if upto is None else emit_chunks([self], [upto], [False])[0]

    def finish(self) -> Tensor:
        """The rest of the audio once the row has stopped (possibly empty)."""
        return emit_chunks([self], [self.frames], [True])[0]

    def append(self, code: int, symbol: int | None = None) -> None:
        """Add one level-0 frame without decoding (`due` says when a chunk is ready)."""
        self.level0.append(code)
        if symbol is not None:
            self.symbols.append(symbol)

    def due(self) -> int | None:
        """The frame up to which a chunk is due now (its NAR levels and audio), else None."""
        s = self.settings
        upto = self.frames - s.lookahead_frames
        return upto if upto - self.emitted >= s.due(self.chunks) else None

    def codes(self) -> Tensor:
        """[L, F] every level of the frames emitted so far."""
        if self.fixed is None:
            return torch.zeros(self.model.config.n_levels, 0, dtype=torch.long)
        return self.fixed

    def emit(self, levels: Tensor, expected: Tensor | None, upto: int, final: bool) -> Tensor:
        """Fix the levels of frames up to `upto` (from `levels` [L, frames], a NAR pass over every frame so
        far that kept the fixed ones, and its distributions `expected` [L - 1, frames, K] or None) and
        return their audio, crossfaded onto the last chunk's tail."""
        if self.frames == 0:
            return torch.zeros(0)
        start = 0 if self.fixed is None else self.fixed.shape[1]
        self.fixed = _extend(self.fixed, levels[:, start:upto])
        if expected is not None:
            self.fixed_expected = _extend(self.fixed_expected, expected[:, start:upto])
        s, hop = self.settings, self.codec.hop_length
        # Decode the span from `emitted` on (the held-back tail's frames again) with context before it.
        first = max(0, self.emitted - s.context_frames)
        span = None if self.fixed_expected is None else self.fixed_expected[:, first:upto]
        wav = self.codec.decode(self.fixed[:, first:upto], span).cpu()
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
        self.chunks += 1
        return out


@torch.inference_mode()
def emit_chunks(decoders: list[StreamDecoder], uptos: list[int], finals: list[bool]) -> list[Tensor]:
    """The due chunks of several rows: shared NAR passes when they draw nothing (a greedy NAR, the
    default; the server's rows that fall due at one step; `shared_passes`), else one per row (each row's
    own NAR generator); then each row's own codec decode and crossfade.

    Args:
        decoders: the rows, sharing a model and NAR sampler.
        uptos: per row, the frame up to which its chunk goes (`StreamDecoder.due`, or all frames at the end).
        finals: per row, whether its row has stopped (nothing is held back).
    """
    live = [i for i, d in enumerate(decoders) if d.frames > 0]
    levels: dict[int, tuple[Tensor, Tensor | None]] = {}
    greedy = decoders[0].sampler.cfg.nar_temperature == 0 if decoders else True
    groups = shared_passes(decoders, live) if greedy else [[i] for i in live]
    for group in groups:
        if group:
            for i, filled in zip(group, nar_levels([decoders[i] for i in group]), strict=True):
                levels[i] = filled
    return [
        d.emit(*levels[i], upto, final) if i in levels else torch.zeros(0)
        for i, (d, upto, final) in enumerate(zip(decoders, uptos, finals, strict=True))
    ]


def shared_passes(decoders: list[StreamDecoder], rows: list[int]) -> list[list[int]]:
    """The greedy NAR passes that `rows` (indices into `decoders`) share: one on a GPU; on the CPU,
    consecutive rows while the padded pass has at most `CPU_NAR_PASS_POSITIONS` positions (a row longer
    than that alone)."""
    if not rows or decoders[rows[0]].cond.device.type != "cpu":
        return [rows]
    groups: list[list[int]] = []
    widest = 0
    for row in rows:
        positions = decoders[row].positions
        if groups and (len(groups[-1]) + 1) * max(widest, positions) <= CPU_NAR_PASS_POSITIONS:
            groups[-1].append(row)
            widest = max(widest, positions)
        else:
            groups.append([row])
            widest = positions
    return groups


def nar_levels(decoders: list[StreamDecoder]) -> list[tuple[Tensor, Tensor | None]]:
    """Every level [L, frames] of each row's frames so far, in one NAR pass over the padded rows, and
    their distributions [L - 1, frames, K] with `expected_codewords` (else None); the levels of frames
    already emitted are kept as they were (`decode_nar`'s `fixed`)."""
    first = decoders[0]
    model, device = first.model, first.cond.device
    cond = stack_rows([d.cond for d in decoders])
    lengths = torch.tensor([d.frames for d in decoders], device=device)
    width = int(lengths.max())
    level0 = torch.zeros(len(decoders), width, dtype=torch.long, device=device)
    symbols = None
    if all(d.symbols for d in decoders):
        symbols = torch.zeros(len(decoders), width, dtype=torch.long, device=device)
    fixed = torch.zeros(len(decoders), model.config.n_levels, width, dtype=torch.long, device=device)
    fixed_lengths = torch.zeros(len(decoders), dtype=torch.long, device=device)
    for row, d in enumerate(decoders):
        level0[row, : d.frames] = torch.tensor(d.level0, device=device)
        if symbols is not None:
            symbols[row, : d.frames] = torch.tensor(d.symbols, device=device)
        if d.fixed is not None:
            fixed[row, :, : d.fixed.shape[1]] = d.fixed.to(device)
            fixed_lengths[row] = d.fixed.shape[1]
    codes, expected = decode_nar(
        model,
        cond,
        level0,
        lengths,
        first.sampler,
        generator=first.generator,
        frame_symbols=symbols,
        fixed=fixed,
        fixed_lengths=fixed_lengths,
    )
    return [
        (
            codes[row, :, : d.frames].cpu(),
            None if expected is None else expected[row, :, : d.frames].cpu(),
        )
        for row, d in enumerate(decoders)
    ]


def _extend(fixed: Tensor | None, new: Tensor) -> Tensor:
    """`fixed` [C, F, ...] with `new` [C, N, ...] after its frames (dim 1)."""
    return new if fixed is None else torch.cat([fixed, new], dim=1)


def stack_rows(conds: list[Conditioning]) -> Conditioning:
    """One-row conditionings → one batch, re-padded to the widest text and prompt (with 0: the sequence
    builder packs each row's valid ids and frames, so padding is never read)."""
    if len(conds) == 1:
        return conds[0]
    text_width = max(c.text.shape[1] for c in conds)
    prompt_width = max(c.prompt.shape[2] for c in conds)
    pad = lambda t, width: torch.nn.functional.pad(t, (0, width - t.shape[-1]))  # noqa: E731

    def optional(values: list[Tensor | None]) -> Tensor | None:
        present = [v for v in values if v is not None]
        return torch.cat(present) if len(present) == len(values) else None

    return Conditioning(
        torch.cat([pad(c.text, text_width) for c in conds]),
        torch.cat([c.text_lengths for c in conds]),
        torch.cat([pad(c.prompt, prompt_width) for c in conds]),
        torch.cat([c.prompt_lengths for c in conds]),
        optional([c.continues for c in conds]),
        optional([c.start_symbol for c in conds]),
    )
