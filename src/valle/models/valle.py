"""Valle: the AR and NAR codec language models as one nn.Module (no sampling, no Lightning)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from valle.models.backbones import Backbone, ContextWindow, build_backbone
from valle.models.config import BackboneConfig, ValleConfig
from valle.models.embeddings import Embeddings, sinusoidal
from valle.models.medusa import MedusaHeads
from valle.models.sequence import (
    ADVANCE_CLASSES,
    IGNORE,
    REMAINING_CLASSES,
    Packed,
    build_ar,
    build_nar,
    prefix_targets,
    response_positions,
    shifted_positions,
)
from valle.utils.batch import Batch, Conditioning


class Heads(nn.Module):
    """Output projections: one per level (default) or one shared; V + 1 outputs (the last is stop)."""

    def __init__(self, n_heads: int, d_model: int, codebook_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_heads, codebook_size + 1, d_model) * d_model**-0.5)
        self.bias = nn.Parameter(torch.zeros(n_heads, codebook_size + 1))

    def forward(self, hidden: Tensor, level: int) -> Tensor:
        """hidden [..., D] → logits [..., V + 1] of `level`'s head (the shared one when there is one)."""
        k = min(level, self.weight.shape[0] - 1)
        return hidden @ self.weight[k].t() + self.bias[k]


class CodecLM(nn.Module):
    """Embeddings, a backbone and heads: a complete model for the AR, the NAR, or both when shared."""

    def __init__(self, config: ValleConfig, backbone: BackboneConfig) -> None:
        super().__init__()
        s = config.scale
        self.embeddings = Embeddings(
            config.n_text_tokens,
            config.n_levels,
            config.codebook_size,
            s.d_model,
            said=config.monotonic_alignment,
            said_context=config.said_context,
        )
        self.backbone: Backbone = build_backbone(
            backbone.name,
            d_model=s.d_model,
            n_heads=s.n_heads,
            n_layers=s.n_layers,
            ff_mult=s.ff_mult,
            dropout=backbone.dropout,
            **backbone.options,
        )
        self.heads = Heads(1 if config.shared_head else config.n_levels, s.d_model, config.codebook_size)
        # monotonic alignment: how far the next frame moves on through the text, and how many more frames
        # say the current symbol (valle.models.sequence), side by side in one projection
        pointer_outputs = ADVANCE_CLASSES + REMAINING_CLASSES
        self.advance = nn.Linear(s.d_model, pointer_outputs) if config.monotonic_alignment else None
        self.medusa: MedusaHeads | None = None  # the AR's (Valle sets it)


@dataclass
class LevelOutput:
    """Logits and targets at the response positions of the rows trained on one level."""

    level: int
    logits: Tensor  # [n_tokens, V + 1] for the AR (the last is stop), [n_tokens, V] for NAR levels
    targets: Tensor  # [n_tokens]


@dataclass
class TrainOutput:
    levels: list[LevelOutput]
    aux_loss: Tensor  # scalar: mixture-of-experts balancing loss
    text: LevelOutput | None = None  # AR next-text-id predictions on the text (with prefix_losses)
    prompt: LevelOutput | None = None  # AR next-frame level-0 predictions on the prompt (with prefix_losses)
    ar_rows: Tensor | None = None  # [B_ar] the batch rows trained on the AR, in `ar_attention`'s order
    ar_attention: tuple[Tensor, ...] = ()  # [B_ar, H, S, S] per layer asked for (`attention_layers`)
    advance: LevelOutput | None = None  # monotonic alignment: the AR's advance predictions (aligned rows)
    remaining: LevelOutput | None = None  # and its frames-left-on-this-symbol predictions
    # Medusa head k's guesses of the code k + 1 frames after the base head's (level = k), AR rows only
    medusa: list[LevelOutput] = field(default_factory=list)


class Valle(nn.Module):
    """VALL-E: an AR over RVQ level 0 and a NAR over levels 1..L-1 (docs/design.md, "Model").

    Args:
        config: a ValleConfig with the data's sizes filled in (`config.with_data(...)`).
    """

    def __init__(self, config: ValleConfig) -> None:
        super().__init__()
        if config.n_text_tokens <= 0:
            raise ValueError(
                "ValleConfig.n_text_tokens is 0: fill the data's sizes with config.with_data(...)"
            )
        self.config = config
        self.ar = CodecLM(config, config.backbone)
        self.nar_stack = None if config.shared else CodecLM(config, config.nar_backbone or config.backbone)
        if config.medusa.heads:
            self.ar.medusa = MedusaHeads(config.medusa.heads, config.scale.d_model, config.codebook_size + 1)
            self.start_medusa()

    def start_medusa(self) -> None:
        """Medusa heads := copies of the AR's level-0 head (at construction, and after `init_from` loads a
        trained model that had none: `valle.checkpoints.load_model_weights`)."""
        if self.ar.medusa is not None:
            self.ar.medusa.start_from(self.ar.heads.weight[0], self.ar.heads.bias[0])

    @property
    def nar(self) -> CodecLM:
        return self.nar_stack if self.nar_stack is not None else self.ar

    # ---------------------------------------------------------------------------------------- training
    def ar_packed(
        self,
        rows: _Rows,
        input_dropout: float = 0.0,
        input_codes: Tensor | None = None,
        position_shift: Tensor | None = None,
        shift_text: bool = True,
    ) -> Packed:
        return build_ar(
            self.ar.embeddings,
            rows.cond,
            rows.codes,
            rows.code_lengths,
            stop_token=self.config.stop_token,
            segment_positions=self.config.segment_positions,
            input_dropout=input_dropout,
            frame_symbols=rows.frame_symbols,
            input_codes=input_codes,
            position_shift=position_shift,
            shift_text=shift_text,
        )

    def ar_self_fed_inputs(self, rows: _Rows, share: float) -> Tensor:
        """[B, T] level-0 input codes with about `share` of them the model's own draws (scheduled
        sampling, Bengio et al. 2015, in one parallel pass as Duckworth et al. 2019): code j is replaced by
        a draw from what the model predicts for frame j given the true frames before it, the input it
        would have fed itself when decoding. Drawn without gradients; the targets stay the recording's."""
        codes = rows.codes[:, 0]
        with torch.no_grad():
            packed = self.ar_packed(rows)
            hidden = self.ar.backbone(
                packed.x,
                packed.lengths,
                causal=True,
                prefix_lengths=packed.prefix_lengths if self.config.prefix_lm else None,
            ).hidden
            response = _response_states(hidden, packed.prefix_lengths, codes.shape[1])
            logits = self.ar_logits(response)[..., : self.config.codebook_size].float()
            drawn = torch.multinomial(logits.softmax(-1).flatten(0, 1), 1).view_as(codes)
        fed = torch.rand(codes.shape, device=codes.device) < share
        return torch.where(fed, drawn, codes)

    def nar_packed(
        self,
        rows: _Rows,
        levels: Tensor,
        position_shift: Tensor | None = None,
        shift_text: bool = True,
    ) -> Packed:
        return build_nar(
            self.nar.embeddings,
            rows.cond,
            rows.codes,
            rows.code_lengths,
            levels,
            segment_positions=self.config.segment_positions,
            frame_symbols=rows.frame_symbols,
            position_shift=position_shift,
            shift_text=shift_text,
        )

    def forward(
        self,
        batch: Batch,
        levels: Tensor,
        prefix_losses: bool = False,
        attention_layers: Sequence[int] = (),
        ar_input_dropout: float = 0.0,
        ar_self_feed: float = 0.0,
        ar_context: int | None = None,
        medusa_distill: bool = False,
        position_shift: Tensor | None = None,
        shift_text: bool = True,
    ) -> TrainOutput:
        """Teacher-forced logits for every row at its level.

        Args:
            batch: a padded batch (`valle.data.batching.collate` makes them), tensors on the model's device.
            levels: [B] int64, the RVQ level each row is trained on (0 = AR).
            prefix_losses: also return the AR rows' predictions on their text (next id, through the
                tied text embedding) and prompt (next frame's level-0 code) for the optional losses.
            attention_layers: AR backbone layers whose attention probabilities to return (the
                guided-attention loss, `valle.training.alignment`).
            ar_input_dropout: share of the AR's response inputs dropped (`build_ar`; training only).
            ar_self_feed: share of the AR's response inputs replaced by the model's own draws
                (`ar_self_fed_inputs`; training only).
            ar_context: each AR response position sees the text and prompt and only the `ar_context`
                most recent response positions (its own included): the window decoding slides with
                `max_ar_context`, positions unchanged, so training on it teaches what decoding sees.
            medusa_distill: Medusa heads learn the base head's own argmax, not the recording's codes.
            position_shift: [B] int64: each row's response (and text) positions moved that many frames
                on, as deep into a long output (`valle.models.sequence`; training only).
            shift_text: False: `position_shift` leaves the text's positions alone (the batch's text
                already starts with what was said before: `valle.training.text_before`).

        Returns:
            per-level logits and targets at response positions, and the auxiliary loss.
        """
        outputs, aux, attention = [], torch.zeros((), device=levels.device), ()
        ar_rows = (levels == 0).nonzero().squeeze(1)
        advance = remaining = None
        medusa: list[LevelOutput] = []
        if len(ar_rows):
            rows = _rows(batch, ar_rows)
            if self.training and self.config.text_dropout > 0:
                rows = _drop_text(rows, self.config.text_dropout)
            cond = rows.cond
            fed = self.ar_self_fed_inputs(rows, ar_self_feed) if ar_self_feed > 0 else None
            shift = None if position_shift is None else position_shift[ar_rows]
            packed = self.ar_packed(rows, ar_input_dropout, fed, shift, shift_text)
            # the prefix and the start vector are always kept, as decoding keeps them (`ar_prefix`)
            window = ContextWindow(ar_context, packed.prefix_lengths + 1) if ar_context else None
            h = self.ar.backbone(
                packed.x,
                packed.lengths,
                causal=True,
                prefix_lengths=packed.prefix_lengths if self.config.prefix_lm else None,
                window=window,
                **({"attention_layers": attention_layers} if attention_layers else {}),
                **_moved(shift, packed),
            )
            attention = h.attention
            assert packed.targets is not None  # training batches carry their codes
            outputs.append(_level_output(self.ar.heads, h.hidden, packed.targets, 0, with_stop=True))
            aux = aux + h.aux_loss
            if self.ar.advance is not None and packed.advance_targets is not None:
                assert packed.remaining_targets is not None  # built together
                advance, remaining = (
                    _pointer_output(self, h.hidden, targets, rows.aligned, part)
                    for part, targets in enumerate((packed.advance_targets, packed.remaining_targets))
                )
            if self.ar.medusa is not None:
                base = outputs[0] if medusa_distill else None  # the AR's level output
                medusa = _medusa_outputs(self.ar.medusa, h.hidden, packed.targets, base)
            if prefix_losses:
                text_out, prompt_out = self._prefix_outputs(cond, h.hidden)
        nar_rows = (levels > 0).nonzero().squeeze(1)
        if len(nar_rows):
            shift = None if position_shift is None else position_shift[nar_rows]
            packed = self.nar_packed(_rows(batch, nar_rows), levels[nar_rows], shift, shift_text)
            h = self.nar.backbone(packed.x, packed.lengths, causal=False, **_moved(shift, packed))
            aux = aux + h.aux_loss
            assert packed.targets is not None  # training batches carry their codes
            row_levels = levels[nar_rows]
            for level in sorted(set(row_levels.tolist())):
                targets = torch.where((row_levels == level)[:, None], packed.targets, IGNORE)
                outputs.append(_level_output(self.nar.heads, h.hidden, targets, level, with_stop=False))
        if prefix_losses and len(ar_rows):
            return TrainOutput(
                outputs, aux, text_out, prompt_out, ar_rows, attention, advance, remaining, medusa
            )
        return TrainOutput(
            outputs,
            aux,
            ar_rows=ar_rows,
            ar_attention=attention,
            advance=advance,
            remaining=remaining,
            medusa=medusa,
        )

    def _prefix_outputs(self, cond: Conditioning, hidden: Tensor) -> tuple[LevelOutput, LevelOutput]:
        text_targets, prompt_targets = prefix_targets(cond, hidden.shape[1])
        where = text_targets != IGNORE
        text_logits = hidden[where] @ self.ar.embeddings.text.weight.t()  # tied: no extra parameters
        text = LevelOutput(-1, text_logits, text_targets[where])
        where = prompt_targets != IGNORE
        prompt_logits = self.ar.heads(hidden[where], 0)[:, : self.config.codebook_size]
        return text, LevelOutput(0, prompt_logits, prompt_targets[where])

    # ---------------------------------------------------------------------------------------- decoding
    def ar_prefix(self, cond: Conditioning) -> Packed:
        """The AR's input before its first code: `[text ; sep ; prompt ; sep ; start]` (as in training)."""
        return build_ar(
            self.ar.embeddings,
            cond,
            stop_token=self.config.stop_token,
            segment_positions=self.config.segment_positions,
        )

    def ar_step_input(
        self, codes: Tensor, step: int | Tensor = 0, said: Tensor | None = None, text_shown: bool = True
    ) -> Tensor:
        """Level-0 codes [B] just decoded at decoding step `step` (an int, or [B] when rows are at
        different steps) → the next AR input [B, 1, D] (as `build_ar` embeds them: code j is response
        position j + 1). Codes [B, n] (with `step` and `said` [B, n]) are n consecutive inputs a row:
        → [B, n, D] (speculative decoding feeds its guesses together).

        `said`: the said codes of what the next frame says (valle.models.said: the text ids, with
        `said_context` packed with their context; monotonic alignment: required then, unless `text_shown`
        is False: rows shown no text, classifier-free guidance's unconditional rows)."""
        emb = self.ar.embeddings
        # a finished row's stop id: its output is unused
        x = emb.embed_level0(codes.clamp(max=self.config.codebook_size - 1)) + emb.level.weight[0]
        if self.config.segment_positions > 0:
            if isinstance(step, Tensor):
                x = x + sinusoidal(step + 1, x.shape[-1]).to(x.dtype)
            else:
                x = x + response_positions(x.shape[-1], step + 1, 1, x.device)[0].to(x.dtype)
        if emb.said is not None and text_shown:
            if said is None:
                raise ValueError("a model with monotonic alignment needs the text id each step says")
            x = x + emb.embed_said(said)
        return x if codes.dim() == 2 else x[:, None, :]

    def ar_logits(self, hidden: Tensor) -> Tensor:
        """AR hidden states [..., D] → logits [..., V + 1] over level-0 codes and stop."""
        return self.ar.heads(hidden, 0)

    def ar_pointer(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """AR hidden states [..., D] → (logits [..., ADVANCE_CLASSES]: how far the next frame moves on
        through the text, logits [..., REMAINING_CLASSES]: how many more frames say the current symbol);
        monotonic alignment only."""
        if self.ar.advance is None:
            raise ValueError("this model has no monotonic alignment (model.monotonic_alignment=false)")
        logits = self.ar.advance(hidden)
        return logits[..., :ADVANCE_CLASSES], logits[..., ADVANCE_CLASSES:]

    def nar_logits(
        self,
        cond: Conditioning,
        codes: Tensor,
        code_lengths: Tensor,
        level: int,
        frame_symbols: Tensor | None = None,
    ) -> Tensor:
        """Logits [B, T, V] of level `level` for every response frame, given levels < `level` of `codes`
        (and, with monotonic alignment, the text id each frame says)."""
        levels = torch.full((codes.shape[0],), level, dtype=torch.long, device=codes.device)
        packed = build_nar(
            self.nar.embeddings,
            cond,
            codes,
            code_lengths,
            levels,
            with_targets=False,
            segment_positions=self.config.segment_positions,
            frame_symbols=frame_symbols,
        )
        hidden = self.nar.backbone(packed.x, packed.lengths, causal=False).hidden
        response = _response_states(hidden, packed.prefix_lengths, codes.shape[2])
        return self.nar.heads(response, level)[..., : self.config.codebook_size]


@dataclass
class _Rows:
    """What the model reads of some rows of a batch."""

    cond: Conditioning
    codes: Tensor
    code_lengths: Tensor
    frame_symbols: Tensor | None
    aligned: Tensor | None


def _moved(shift: Tensor | None, packed: Packed) -> dict[str, Tensor]:
    """The backbone's `position_offsets` keyword for rows moved on by `shift` (none when not moved, so a
    backbone without movable positions is only asked when a run moves them)."""
    if shift is None:
        return {}
    return {"position_offsets": shifted_positions(shift, packed.prefix_lengths, packed.x.shape[1])}


def _rows(batch: Batch, rows: Tensor) -> _Rows:
    """The conditioning, codes, lengths and alignment of `rows` (the batch's own when it is every row)."""
    if len(rows) == batch.size:
        return _Rows(batch.cond, batch.codes, batch.code_lengths, batch.frame_symbols, batch.aligned)

    def pick(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.index_select(0, rows)

    return _Rows(
        batch.cond.select(rows),
        batch.codes.index_select(0, rows),
        batch.code_lengths.index_select(0, rows),
        pick(batch.frame_symbols),
        pick(batch.aligned),
    )


def _response_states(hidden: Tensor, prefix_lengths: Tensor, frames: int) -> Tensor:
    """hidden [B, S, D] → [B, frames, D]: the states at each row's response positions (clamped past its
    end: those rows' extra frames are padding)."""
    at = prefix_lengths[:, None] + torch.arange(frames, device=hidden.device)[None, :]
    return hidden.gather(1, at.clamp(max=hidden.shape[1] - 1)[:, :, None].expand(-1, -1, hidden.shape[2]))


def _drop_text(rows: _Rows, share: float) -> _Rows:
    """`rows` with about `share` of them shown no text (`ValleConfig.text_dropout`); those teach no
    durations (the pointer heads need the text)."""
    dropped = torch.rand(rows.cond.size, device=rows.cond.device) < share
    aligned = rows.aligned if rows.aligned is not None else torch.ones_like(dropped)
    return replace(rows, cond=rows.cond.without_text(dropped), aligned=aligned & ~dropped)


def _pointer_output(
    model: Valle, hidden: Tensor, targets: Tensor, aligned: Tensor | None, part: int
) -> LevelOutput:
    """Advance (`part` 0) or frames-left (1) logits where there is a target, in rows whose frame symbols
    come from an alignment (an even spread would teach the wrong durations)."""
    if aligned is not None:
        targets = torch.where(aligned[:, None], targets, IGNORE)
    where = targets != IGNORE
    return LevelOutput(-2 - part, model.ar_pointer(hidden[where])[part], targets[where])


def _medusa_outputs(
    heads: MedusaHeads, hidden: Tensor, targets: Tensor, base: LevelOutput | None = None
) -> list[LevelOutput]:
    """Head k's logits where frame j + k + 1 has a target, read at position j: the AR's own targets
    [B, S] shifted left by k + 1 (a row's stop is the last target any head reaches). With `base` (the
    AR's output at those targets, in the same order), the targets are the base head's own argmax
    instead of the recording's codes (self-distillation: what greedy decoding checks the guesses against)."""
    if base is not None:
        targets = targets.masked_scatter(targets != IGNORE, base.logits.detach().argmax(-1))
    out = []
    for k in range(heads.size):
        shift = k + 1
        ahead = torch.nn.functional.pad(targets[:, shift:], (0, shift), value=IGNORE)
        where = (ahead != IGNORE) & (targets != IGNORE)  # both in the response: j is a response input
        out.append(LevelOutput(k, heads(hidden[where], k), ahead[where]))
    return out


def _level_output(heads: Heads, hidden: Tensor, targets: Tensor, level: int, with_stop: bool) -> LevelOutput:
    """Logits only where there is a target: the heads are the largest matmul, so skip the rest.

    The NAR never predicts stop, so its stop column is dropped rather than set to -inf: a -inf
    logit makes label-smoothed cross-entropy (which averages over every class) infinite.
    """
    where = targets != IGNORE
    logits = heads(hidden[where], level)
    if not with_stop:
        logits = logits[:, :-1]
    return LevelOutput(level, logits, targets[where])
