"""The bundles that cross layers: `Conditioning` (what a model speaks from) and `Batch` (a training batch).

`data/` builds batches (`valle.data.batching.collate`), `sampling/` builds conditionings for synthesis,
and `models/` reads both. The import rules forbid `data/` and `models/` to import each other, so the two
dataclasses live below both, as the padding helpers do; `models/` then depends on named fields, not on
the data layer's dict keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from valle.utils.padding import pad_1d, pad_codes


@dataclass
class Conditioning:
    """The text to say and the voice prompt, for B rows (docs/design.md, "Sequence layout").

    Both the AR and the NAR are conditioned on exactly this; training adds the target codes (`Batch`),
    decoding produces them.
    """

    text: Tensor  # [B, N] int64 ids, right-padded with the symbol map's pad id
    text_lengths: Tensor  # [B] valid ids per row
    prompt: Tensor  # [B, L, Tp] int64 codes, right-padded with 0
    prompt_lengths: Tensor  # [B] valid prompt frames per row
    # [B] bool: the prompt is the beginning of the utterance the text describes (continuation mode);
    # None reads as False for every row
    continues: Tensor | None = None
    # [B] int64: the text id the response's first frame says, for a model with monotonic alignment (a
    # continuation row starts after its prompt's words); None reads as 0 (`<bos>`) for every row
    start_symbol: Tensor | None = None
    # [B] bool: rows shown no text at all (classifier-free guidance's unconditional rows: training's
    # text dropout, decoding's guide); the text stays here for the reading pointer; None: every row sees it
    text_dropped: Tensor | None = None

    @classmethod
    def pad(
        cls,
        texts: Sequence[Tensor],
        prompts: Sequence[Tensor],
        pad_id: int,
        continues: Tensor | None = None,
        start_symbol: Tensor | None = None,
    ) -> Conditioning:
        """Per-row text ids [N_i] and prompt codes [L, Tp_i] → one right-padded conditioning (on the CPU)."""
        text, text_lengths = pad_1d(texts, pad_id)
        prompt, prompt_lengths = pad_codes(prompts)
        return cls(text, text_lengths, prompt, prompt_lengths, continues, start_symbol)

    @property
    def size(self) -> int:
        """B, the number of rows."""
        return self.text.shape[0]

    @property
    def device(self) -> torch.device:
        return self.text.device

    @property
    def starts(self) -> Tensor:
        """[B] int64: the text id each row's response starts at (`start_symbol`, or 0)."""
        if self.start_symbol is None:
            return torch.zeros(self.size, dtype=torch.long, device=self.device)
        return self.start_symbol

    @property
    def last_symbol(self) -> Tensor:
        """[B] int64: each row's last text position (`<eos>`), where a reading pointer ends."""
        return (self.text_lengths - 1).clamp(min=0)

    @property
    def shown_text_lengths(self) -> Tensor:
        """[B] int64: the text ids each row's prefix lays out (0 in `text_dropped` rows)."""
        if self.text_dropped is None:
            return self.text_lengths
        return torch.where(self.text_dropped, 0, self.text_lengths)

    def without_text(self, rows: Tensor | None = None) -> Conditioning:
        """The same rows shown no text (`rows` [B] bool: only those; None: all of them)."""
        dropped = torch.ones(self.size, dtype=torch.bool, device=self.device) if rows is None else rows
        return replace(self, text_dropped=dropped)

    @property
    def continuing(self) -> Tensor:
        """[B] bool: which rows continue their prompt's utterance (all False when `continues` is None)."""
        if self.continues is None:
            return torch.zeros(self.size, dtype=torch.bool, device=self.device)
        return self.continues

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Conditioning:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def select(self, rows: Tensor) -> Conditioning:
        """The rows `rows` [R] int64, in that order."""
        return self._map(lambda t: t.index_select(0, rows))

    def repeat_rows(self, times: int) -> Conditioning:
        """Each row `times` times in a row (beam search: row b's beams are rows b·W .. b·W + W - 1)."""
        return self._map(lambda t: t.repeat_interleave(times, dim=0))

    def with_text_rolled(self) -> Conditioning:
        """Each row given the previous row's text (the text-dependence gap's counterfactual)."""
        return replace(self, text=self.text.roll(1, dims=0), text_lengths=self.text_lengths.roll(1, dims=0))

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Conditioning:
        """Every tensor of the bundle through `fn`: one place that knows them all."""
        continues = None if self.continues is None else fn(self.continues)
        start_symbol = None if self.start_symbol is None else fn(self.start_symbol)
        text_dropped = None if self.text_dropped is None else fn(self.text_dropped)
        return Conditioning(
            fn(self.text),
            fn(self.text_lengths),
            fn(self.prompt),
            fn(self.prompt_lengths),
            continues,
            start_symbol,
            text_dropped,
        )


@dataclass
class Batch:
    """A padded training batch: conditioning, target codes, and what the data layer reports about it.

    `.to(device)` moves the tensors; Lightning calls it to move a batch to the model's device (it
    moves any object with a `to` method).
    """

    cond: Conditioning
    codes: Tensor  # [B, L, T] int64 target codes, right-padded with 0
    code_lengths: Tensor  # [B] valid frames per row
    # [B, T] int64: the text id each target frame says (from the alignment; 0 past each row's frames)
    frame_symbols: Tensor | None = None
    aligned: Tensor | None = None  # [B] bool: `frame_symbols` comes from an alignment, not an even spread
    # What the data layer reports; a batch built by hand (a benchmark, a test) may leave it out.
    keys: list[str] = field(default_factory=list)  # [B] sample keys `{group}/{speaker}/{id}`
    prompt_keys: list[str] = field(default_factory=list)  # [B] the key each row's prompt was cut from
    speakers: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    n_tokens: int = 0  # real positions of the concatenated [text; prompt; response] rows
    n_padded_tokens: int = 0  # the same, padded: n_tokens / n_padded_tokens is the batch's fill
    unknown_symbols: dict[str, int] = field(default_factory=dict)  # symbols the map read as `<unk>`
    # a copy of the rank's last validation batch that keeps every rank's batch count equal: not counted
    repeat: bool = False

    @classmethod
    def empty_repeat(cls) -> Batch:
        """A batch of no rows flagged `repeat`: the stand-in a validation reader that read no batch to
        repeat yields, so that its rank still yields the agreed count."""
        none = torch.zeros(0, dtype=torch.long)
        cond = Conditioning(none.view(0, 0), none, none.view(0, 0, 0), none)
        return cls(cond, none.view(0, 0, 0), none, repeat=True)

    @property
    def size(self) -> int:
        """B, the number of rows."""
        return self.cond.size

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return replace(
            self,
            cond=self.cond.to(device, non_blocking),
            codes=self.codes.to(device, non_blocking=non_blocking),
            code_lengths=self.code_lengths.to(device, non_blocking=non_blocking),
            frame_symbols=None
            if self.frame_symbols is None
            else self.frame_symbols.to(device, non_blocking=non_blocking),
            aligned=None if self.aligned is None else self.aligned.to(device, non_blocking=non_blocking),
        )
