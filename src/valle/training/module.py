"""ValleModule: the LightningModule that trains `Valle` (docs/design.md, "Training step")."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import cast

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from valle.card import ModelCard
from valle.errors import ConfigError
from valle.models.config import ValleConfig
from valle.models.lora import LoRAConfig, apply_lora, lora_state_dict
from valle.models.valle import LevelOutput, TrainOutput, Valle
from valle.training.alignment import (
    DurationPrior,
    GuidedAttentionConfig,
    guided_attention_loss,
    rolled_text,
    spoken_frames,
)
from valle.training.optim import OptimConfig, build_optimizer
from valle.training.rng import capture_rng_state, gather_from_ranks, restore_rng_state
from valle.training.text_before import precede_with_text
from valle.utils.batch import Batch

log = logging.getLogger(__name__)


@dataclass
class MedusaTraining:
    """How the Medusa heads (`model.medusa.heads`) learn: the `training.medusa` keys (docs/training.md)."""

    loss_weight: float = 0.2  # weight of head 1's cross-entropy next to the model's own loss
    decay: float = 0.8  # head k's weight is loss_weight · decay^(k-1): the further ahead, the less it counts
    # train the heads alone on a trained model (`init_from=`), as Medusa-1; false: jointly (Medusa-2)
    freeze_backbone: bool = False
    # "recording": the heads learn the recording's codes; "model": the base head's own argmax at those
    # frames (self-distillation), which is what decoding checks their guesses against
    targets: str = "recording"

    def __post_init__(self) -> None:
        if self.targets not in ("recording", "model"):
            raise ConfigError(f"training.medusa.targets={self.targets!r}: choose 'recording' or 'model'")
        if self.loss_weight < 0 or not 0 < self.decay <= 1:
            raise ConfigError(
                f"training.medusa: loss_weight={self.loss_weight} must be >= 0 "
                f"and decay={self.decay} in (0, 1]"
            )


@dataclass
class SlidingContext:
    """Training the AR for `max_ar_context` (the `training.sliding_context` keys, docs/training.md): in a
    share `p` of the steps, every AR response position sees the text, the prompt and only the last W
    response positions, W drawn uniformly from [min_frames, max_frames] each such step. With
    `max_shift` > 0, each row of such a step is also placed as if deep into a long output: its response
    and text positions move on by a shift drawn per row from [0, max_shift] frames, the prompt's stay
    (`valle.models.sequence`, "position_shift"), so that decoding far past the training lengths meets
    positions training has shown. With `text_before`, a shifted row's text is also preceded by what the
    other rows say, about as much as the row would say in its shift (`valle.training.text_before`), and
    keeps its own positions: the view decoding has in the middle of one long text."""

    p: float = 0.0  # 0 = off
    min_frames: int = 100
    max_frames: int = 400
    max_shift: int = 0  # frames; 0 = positions unchanged
    text_before: bool = False  # precede a shifted row's text with the text said in its shift

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0 or not 1 <= self.min_frames <= self.max_frames:
            raise ConfigError(
                f"training.sliding_context: p={self.p} must be in [0, 1] and 1 <= min_frames="
                f"{self.min_frames} <= max_frames={self.max_frames}"
            )
        if self.max_shift < 0 or (self.max_shift > 0 and self.p == 0):
            raise ConfigError(
                f"training.sliding_context.max_shift={self.max_shift}: a shift in frames >= 0 that the "
                "sliding steps draw; with max_shift > 0 set p > 0 too (e.g. p: 0.5, max_shift: 1600)"
            )
        if self.text_before and self.max_shift == 0:
            raise ConfigError(
                "training.sliding_context.text_before=true precedes a shifted row's text with what is "
                "said in its shift: set max_shift > 0 too (e.g. p: 0.5, max_shift: 1600)"
            )

    def draw(self, rows: int) -> tuple[int | None, Tensor | None]:
        """This step's window (None: the whole context) and its `rows` rows' position shifts [rows]
        (None: unmoved); from torch's generator (restored per step)."""
        if self.p <= 0 or float(torch.rand(())) >= self.p:
            return None, None
        window = int(torch.randint(self.min_frames, self.max_frames + 1, ()))
        if self.max_shift == 0:
            return window, None
        return window, torch.randint(0, self.max_shift + 1, (rows,))


@dataclass
class TrainingConfig:
    """The `training` config keys: what each step learns."""

    level_p: list[float] | None = None  # probability of training each level; default uniform over 0..L-1
    label_smoothing: float = 0.0
    aux_loss_weight: float = 0.01  # mixture-of-experts balancing loss
    text_loss_weight: float = 0.0  # AR: predict the next text id on the text positions too
    prompt_loss_weight: float = 0.0  # AR: predict the next prompt frame's level-0 code on the prompt
    # AR: drop this share of the response's input codes (Tacotron's prenet dropout, as whole tokens), so
    # that copying the last frame stops paying and the text has to be read (docs/training.md)
    ar_input_dropout: float = 0.0
    # AR: feed this share of the response's input codes from the model's own draws instead of the
    # recording's (scheduled sampling), so it learns to recover from its own frames (docs/training.md)
    ar_self_feed: float = 0.0
    # monotonic alignment (model.monotonic_alignment): weight of the AR's "how far does the next frame
    # move on through the text" cross-entropy
    advance_loss_weight: float = 1.0
    seed: int = 0  # levels are drawn from (seed, step), so a resumed run draws what it would have
    guided_attention: GuidedAttentionConfig = field(default_factory=GuidedAttentionConfig)
    medusa: MedusaTraining = field(default_factory=MedusaTraining)
    sliding_context: SlidingContext = field(default_factory=SlidingContext)

    def __post_init__(self) -> None:
        if isinstance(self.guided_attention, dict):
            self.guided_attention = GuidedAttentionConfig(**self.guided_attention)
        if isinstance(self.medusa, dict):
            self.medusa = MedusaTraining(**self.medusa)
        if isinstance(self.sliding_context, dict):
            self.sliding_context = SlidingContext(**self.sliding_context)
        if self.sliding_context.text_before and self.guided_attention.weight > 0:
            raise ConfigError(
                "training.sliding_context.text_before=true with training.guided_attention.weight="
                f"{self.guided_attention.weight}: the guided diagonal starts at a row's own text, which "
                "text_before moves; set one of them off"
            )
        if not 0.0 <= self.ar_self_feed <= 1.0:
            raise ConfigError(f"training.ar_self_feed={self.ar_self_feed}: must be in [0, 1] (e.g. 0.3)")
        if not 0.0 <= self.ar_input_dropout < 1.0:
            raise ConfigError(
                f"training.ar_input_dropout={self.ar_input_dropout}: must be in [0, 1) (e.g. 0.3)"
            )


def freeze_medusa_stage(model: Valle, config: MedusaTraining, init_from: str | None, lora: bool) -> None:
    """Medusa heads train alone on a frozen model (`freeze_backbone`), or beside LoRA's adapters (LoRA
    freezes everything else). Raises ConfigError for a freeze with nothing to train or start from."""
    heads = model.ar.medusa
    if config.freeze_backbone:
        if heads is None or not init_from:
            raise ConfigError(
                "training.medusa.freeze_backbone=true trains Medusa heads on a trained model: set "
                "model.medusa.heads=K (e.g. 3) and init_from=<checkpoint or export>"
            )
        model.requires_grad_(False)
    if heads is not None and (config.freeze_backbone or lora):
        heads.requires_grad_(True)


def level_distribution(config: TrainingConfig, n_levels: int) -> Tensor:
    """[L] probabilities of each level (docs/design.md, "Training step": level 0 with 1/L, the others
    uniform by default)."""
    if config.level_p is None:
        return torch.full((n_levels,), 1.0 / n_levels)
    p = torch.tensor(config.level_p, dtype=torch.float)
    if len(p) != n_levels or (p < 0).any() or p.sum() <= 0:
        raise ConfigError(
            f"training.level_p must hold {n_levels} non-negative weights (one per level), "
            f"got {config.level_p}"
        )
    return p / p.sum()


def check_prefix_losses(model: ValleConfig, training: TrainingConfig) -> None:
    """Refuse text/prompt losses over a bidirectional prefix: each position would see what it predicts."""
    if model.prefix_lm and (training.text_loss_weight > 0 or training.prompt_loss_weight > 0):
        raise ConfigError(
            f"model.prefix_lm=true with training.text_loss_weight={training.text_loss_weight} / "
            f"training.prompt_loss_weight={training.prompt_loss_weight}: the bidirectional prefix "
            "lets text and prompt positions see the tokens those losses predict; set "
            "model.prefix_lm=false or both weights to 0"
        )


def check_ddp_finds_unused_parameters(wrapped: nn.Module | None) -> None:
    """Refuse DDP that expects every parameter in every step: this model leaves some out (a step whose
    rows all train the NAR never uses the AR's start vector; split AR and NAR stacks skip a whole
    stack), and DDP then waits forever for their gradients."""
    if isinstance(wrapped, DistributedDataParallel) and not wrapped.find_unused_parameters:
        raise ConfigError(
            "trainer.strategy: DDP with find_unused_parameters=False hangs on this model (each "
            "row trains one level, so some steps leave parameters unused); use "
            "trainer.strategy=ddp_find_unused_parameters_true (the trainer=ddp preset does)"
        )


class ValleModule(L.LightningModule):
    """Trains the AR and NAR of `Valle` with teacher forcing.

    Its hyper-parameters are plain data (the card as `ModelCard.to_dict(with_state=False)`), so
    `ValleModule.load_from_checkpoint(path)` needs no training config: the checkpoint describes its model,
    symbols and codec. (A checkpoint written before the card existed loads with
    `load_from_checkpoint(path, card=valle.checkpoints.read_card(path))`.)

    Args:
        card: the model card (or its `to_dict()`): config with the data's sizes filled in, symbols,
            codec, and the codec weights the model must carry (`codec_state`: the mel codec's codebooks,
            see `valle.codecs.carried_state`), saved in every checkpoint, not in the hyper-parameters.
            Its stats are counted afresh (`self.stats`) and restored from a checkpoint on resume.
        optim: `OptimConfig` as a dict.
        training: `TrainingConfig` as a dict.
        lora: `LoRAConfig` as a dict: train adapters on the model of `init_from`.
        init_from: the checkpoint or export a LoRA fine-tune adapts.
    """

    level_p: Tensor  # [L] buffer: the share of training rows each level gets

    def __init__(
        self,
        card: ModelCard | dict,
        optim: dict | None = None,
        training: dict | None = None,
        lora: dict | None = None,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        card = card if isinstance(card, ModelCard) else ModelCard.from_dict(card)
        hparams = {"optim": optim, "training": training, "lora": lora, "init_from": init_from}
        self.save_hyperparameters({"card": card.to_dict(with_state=False), **hparams})
        self.config = card.config
        self.optim_config = OptimConfig(**(optim or {}))
        self.training_config = TrainingConfig(**(training or {}))
        check_prefix_losses(self.config, self.training_config)
        guided = self.training_config.guided_attention
        guided.check(self.config.scale.n_layers, self.config.scale.n_heads)
        if self.training_config.sliding_context.p > 0 and self.config.backbone.name != "transformer":
            raise ConfigError(
                f"training.sliding_context.p > 0 slides an attention window; the {self.config.backbone.name} "
                "backbone has none (its state already forgets with distance): set p=0"
            )
        if guided.weight > 0 and self.config.text_dropout > 0:
            raise ConfigError(
                "training.guided_attention.weight > 0 with model.text_dropout > 0: rows shown no text have "
                "no text to attend to; set one of them to 0"
            )
        self.model = Valle(self.config)
        # Fitted on the training batches and kept in checkpoints; not part of the exported model.
        self.duration_prior = (
            DurationPrior(self.config.n_text_tokens)
            if guided.weight > 0 and guided.prior == "durations"
            else None
        )
        if lora:
            if not init_from:
                raise ConfigError("lora.* adapts a trained model: set init_from=<checkpoint or export> too")
            apply_lora(self.model, LoRAConfig(**lora))
            # Checkpoints hold only what trains (the adapters, and Medusa heads); the frozen base comes from
            # `init_from` on every load.
            self.strict_loading = False
        freeze_medusa_stage(self.model, self.training_config.medusa, init_from, bool(lora))
        self.register_buffer(
            "level_p", level_distribution(self.training_config, self.config.n_levels), persistent=False
        )
        classes = lambda level: self.config.codebook_size + (level == 0)  # noqa: E731  (the AR's stop)
        self.metrics = nn.ModuleDict(
            {
                f"{split}_{name}_l{level}": MulticlassAccuracy(classes(level), top_k=k, average="micro")
                for split in ("train", "val")
                for name, k in (("acc", 1), ("top10", 10))
                for level in range(self.config.n_levels)
            }
            | {  # Medusa head k: how often its guess of the code k + 1 frames ahead is right (top-1, top-5)
                f"val_{name}_medusa{k + 1}": MulticlassAccuracy(classes(0), top_k=top, average="micro")
                for name, top in (("acc", 1), ("top5", 5))
                for k in range(self.config.medusa.heads)
            }
        )
        self.stats = {"steps": 0, "samples": 0, "tokens": 0, "longest_seconds": 0.0, "train_seconds": 0.0}
        self.card = replace(card, stats=self.stats)  # the card's stats are the ones training counts
        self._step_started = 0.0
        self._val_sums: Tensor | None = None  # [L, 2]: cross-entropy sum and token count per level
        self._gap_sums: Tensor | None = None  # [3]: the text-dependence gap's sums (`_text_gap_sums`)
        self._rng_next_step: dict | None = None  # generator state the next training step starts from
        self._unknown_symbols: Counter = Counter()  # read as <unk> this epoch

    def on_fit_start(self) -> None:
        check_ddp_finds_unused_parameters(self.trainer.strategy.model)

    # ------------------------------------------------------------------------------------------- steps
    def sample_levels(self, batch_size: int) -> Tensor:
        """The level each row trains on, drawn from a generator seeded by (seed, step, rank); every row is
        an AR row while only Medusa heads train (they read the AR's hidden states alone)."""
        if self.training_config.medusa.freeze_backbone:
            return torch.zeros(batch_size, dtype=torch.long, device=self.device)
        generator = torch.Generator().manual_seed(
            self.training_config.seed * 1_000_003 + int(self.global_step) * 1009 + self.global_rank
        )
        return torch.multinomial(self.level_p.cpu(), batch_size, replacement=True, generator=generator).to(
            self.device
        )

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        # Each step starts from the generator state the previous one ended with (or the checkpoint's),
        # so what runs between steps (validation, a fresh data iterator after a resume, sample audio)
        # never changes the dropout masks: a resumed run draws exactly what the uninterrupted one did.
        if self._rng_next_step is not None:
            restore_rng_state(self._rng_next_step)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        self._step_started = time.perf_counter()
        tc = self.training_config
        prefix = tc.text_loss_weight > 0 or tc.prompt_loss_weight > 0
        guided = tc.guided_attention
        window, shifts = tc.sliding_context.draw(batch.size)
        # what the model reads; the losses and counts stay those of the batch itself
        read, shift_text = batch, True
        if shifts is not None and tc.sliding_context.text_before:
            read, shift_text = precede_with_text(batch, shifts), False
        output = self.model(
            read,
            self.sample_levels(batch.size),
            prefix_losses=prefix,
            attention_layers=guided.layers if guided.weight > 0 else (),
            ar_input_dropout=tc.ar_input_dropout,
            ar_self_feed=tc.ar_self_feed,
            ar_context=window,
            medusa_distill=tc.medusa.targets == "model",
            position_shift=None if shifts is None else shifts.to(self.device),
            shift_text=shift_text,
        )
        loss = (
            self._train_loss(output, batch)
            + self._prefix_loss(output)
            + self._alignment_loss(output, batch)
            + self._advance_loss(output, "train")
            + self._medusa_loss(output, "train")
        )
        self._count(batch)
        self._rng_next_step = capture_rng_state()  # backward and the optimizer draw nothing
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.stats["train_seconds"] += time.perf_counter() - self._step_started
        self._unknown_symbols.update(batch.unknown_symbols)

    def on_train_epoch_end(self) -> None:
        if self._unknown_symbols:
            top = ", ".join(f"{symbol!r} {n}" for symbol, n in self._unknown_symbols.most_common(10))
            log.warning(
                "epoch %d%s: %d phoneme symbols missing from the symbol map were read as <unk> "
                "(most frequent: %s); prepare the data without a fixed symbols= map, or extend it",
                self.current_epoch,
                f" (rank {self.global_rank})" if self.trainer.world_size > 1 else "",
                self._unknown_symbols.total(),
                top,
            )
        self._unknown_symbols.clear()

    def _train_loss(self, output: TrainOutput, batch: Batch) -> Tensor:
        """Mean cross-entropy over every trained token of the batch (+ the MoE balancing loss), logged."""
        total: Tensor | float = 0.0
        count = 0
        for out in output.levels:
            loss_sum = F.cross_entropy(
                out.logits.float(),
                out.targets,
                reduction="sum",
                label_smoothing=self.training_config.label_smoothing,
            )
            n = out.targets.numel()
            total, count = total + loss_sum, count + n
            self.log(f"train/loss_l{out.level}", loss_sum / n, batch_size=n)
            self._log_accuracy(out, "train")
        loss = total / max(count, 1) + self.training_config.aux_loss_weight * output.aux_loss
        batch_size = batch.size
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        if output.aux_loss.requires_grad or output.aux_loss.item():
            self.log("train/aux_loss", output.aux_loss, batch_size=batch_size)
        self._log_padding(batch, "train")
        return loss

    def _log_accuracy(
        self, out: LevelOutput, split: str, tag: str | None = None, names: Sequence[str] = ("acc", "top10")
    ) -> None:
        """Log `split/{name}_{tag}` for each accuracy `name` (tag: the level's `l{level}` by default)."""
        tag = tag or f"l{out.level}"
        for name in names:
            metric = cast(Metric, self.metrics[f"{split}_{name}_{tag}"])  # a MulticlassAccuracy
            metric(out.logits.detach(), out.targets)
            self.log(f"{split}/{name}_{tag}", metric, batch_size=out.targets.numel())

    def _log_padding(self, batch: Batch, split: str) -> None:
        self.log(
            f"{split}/padding",
            1 - batch.n_tokens / max(batch.n_padded_tokens, 1),
            batch_size=batch.size,
        )

    # ------------------------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(self.config.n_levels, 2, device=self.device)
        self._gap_sums = torch.zeros(3, device=self.device)  # CE own text, CE other text, tokens

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if batch.repeat:  # padding that keeps every rank's batch count equal: already counted
            return
        # Every level of every row, so each level's metrics see the whole validation set. Plain
        # cross-entropy (no label smoothing), so runs with different smoothing compare.
        val_sums, gap_sums = self._val_sums, self._gap_sums
        assert val_sums is not None and gap_sums is not None  # made in on_validation_epoch_start
        batch_size = batch.size
        for level in range(self.config.n_levels):
            levels = torch.full((batch_size,), level, dtype=torch.long, device=self.device)
            output = self.model(batch, levels, medusa_distill=self.training_config.medusa.targets == "model")
            [out] = output.levels
            loss_sum = F.cross_entropy(out.logits.float(), out.targets, reduction="sum")
            self._advance_loss(output, "val")
            self._medusa_loss(output, "val")
            val_sums[level] += torch.stack([loss_sum, loss_sum.new_tensor(out.targets.numel())])
            self._log_accuracy(out, "val")
            if level == 0 and batch_size > 1:
                gap_sums += self._text_gap_sums(batch, loss_sum, out.targets.numel())  # in place
        self._log_padding(batch, "val")

    def _text_gap_sums(self, batch: Batch, own_sum: Tensor, n: int) -> Tensor:
        """[CE sum with the rows' own text, CE sum with another row's text, tokens] of the AR (level 0)."""
        levels = torch.zeros(batch.size, dtype=torch.long, device=self.device)
        [other] = self.model(rolled_text(batch), levels).levels
        other_sum = F.cross_entropy(other.logits.float(), other.targets, reduction="sum")
        return torch.stack([own_sum, other_sum, own_sum.new_tensor(n)])

    def on_validation_epoch_end(self) -> None:
        """Per-level losses over the whole validation set (all ranks), the AR's, the NAR's, and the total
        `val/loss` that checkpoints monitor: the levels weighted as training draws them (`level_p`)."""
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        if not sums[:, 1].all():  # no validation samples: no loss, rather than a "best" of 0
            return
        losses = sums[:, 0] / sums[:, 1]
        total = float((self.level_p * losses).sum())
        losses = losses.tolist()  # plain numbers: already summed over ranks, nothing left to sync
        for level, loss in enumerate(losses):
            self.log(f"val/loss_l{level}", loss)
        self.log("val/loss_ar", losses[0])
        if self.config.n_levels > 1:
            self.log("val/loss_nar", sum(losses[1:]) / len(losses[1:]))
        self.log("val/loss", total, prog_bar=True)
        gap = self.trainer.strategy.reduce(self._gap_sums, reduce_op="sum")
        # docs/design.md, "Text-dependence gap": a model that ignores the text has gap ≈ 0, however low
        # its loss
        if gap[2] > 0:
            self.log("val/loss_ar_other_text", float(gap[1] / gap[2]))
            self.log("val/text_gap", float((gap[1] - gap[0]) / gap[2]), prog_bar=True)

    def _advance_loss(self, output: TrainOutput, split: str) -> Tensor | float:
        """Monotonic alignment: the weighted cross-entropies of the AR's pointer predictions (how far the
        next frame moves on, how many more frames the symbol lasts), each logged with its accuracy
        (`{split}/loss_advance`, `{split}/acc_advance`, `{split}/loss_remaining`, `{split}/acc_remaining`)."""
        total: Tensor | float = 0.0
        for name, part in (("advance", output.advance), ("remaining", output.remaining)):
            if part is None or not part.targets.numel():
                continue
            loss = F.cross_entropy(part.logits.float(), part.targets)
            n = part.targets.numel()
            self.log(f"{split}/loss_{name}", loss, batch_size=n)
            accuracy = (part.logits.argmax(-1) == part.targets).float().mean()
            self.log(f"{split}/acc_{name}", accuracy, batch_size=n)
            total = total + loss
        return self.training_config.advance_loss_weight * total

    def _medusa_loss(self, output: TrainOutput, split: str) -> Tensor | float:
        """Σ_k loss_weight · decay^(k-1) · CE of Medusa head k (`training.medusa`), logged per head; in
        validation also each head's top-1 and top-5 accuracy."""
        config = self.training_config.medusa
        total: Tensor | float = 0.0
        for out in output.medusa:
            n = out.targets.numel()
            if not n:
                continue
            head = out.level + 1
            loss = F.cross_entropy(out.logits.float(), out.targets)
            total = total + config.loss_weight * config.decay ** (head - 1) * loss
            self.log(f"{split}/loss_medusa{head}", loss, batch_size=n)
            if split == "val":
                self._log_accuracy(out, split, f"medusa{head}", ("acc", "top5"))
        return total

    def _prefix_loss(self, output: TrainOutput) -> Tensor | float:
        """The optional, small-weighted AR losses on the text and prompt positions."""
        total: Tensor | float = 0.0
        for name, part, weight in (
            ("text", output.text, self.training_config.text_loss_weight),
            ("prompt", output.prompt, self.training_config.prompt_loss_weight),
        ):
            if part is not None and weight > 0 and part.targets.numel():
                loss = F.cross_entropy(part.logits.float(), part.targets)
                self.log(f"train/loss_{name}", loss, batch_size=part.targets.numel())
                total = total + weight * loss
        return total

    def _alignment_loss(self, output: TrainOutput, batch: Batch) -> Tensor | float:
        """The guided-attention loss on the AR rows (`training.guided_attention`), weighted and logged."""
        guided = self.training_config.guided_attention
        rows = output.ar_rows
        if not output.ar_attention or rows is None:  # the two are set together
            return 0.0
        cond, code_lengths = batch.cond.select(rows), batch.code_lengths[rows]
        text, text_lengths, prompt_lengths = cond.text, cond.text_lengths, cond.prompt_lengths
        continues = cond.continuing
        centres = None
        if self.duration_prior is not None:
            self.duration_prior.update(
                text, text_lengths, spoken_frames(prompt_lengths, code_lengths, continues)
            )
            centres = self.duration_prior.centres(text, text_lengths, output.ar_attention[0].shape[-1])
        loss = guided_attention_loss(
            output.ar_attention,
            guided.heads,
            guided.sigma,
            text_lengths,
            prompt_lengths,
            code_lengths,
            continues,
            centres,
        )
        self.log("train/loss_guided_attention", loss, batch_size=len(rows))
        return guided.weight * loss

    def _count(self, batch: Batch) -> None:
        self.stats["steps"] = int(self.global_step) + 1
        self.stats["samples"] += int(batch.size)
        self.stats["tokens"] += int(batch.code_lengths.sum()) * self.config.n_levels
        frames = int(batch.code_lengths.max()) + int(batch.cond.prompt_lengths.max())
        self.stats["longest_seconds"] = max(
            self.stats["longest_seconds"], frames / self.card.codec.frame_rate
        )

    # -------------------------------------------------------------------------------- optimizer, state
    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        total = (
            self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches
        )
        return build_optimizer(self.model, self.optim_config, int(total))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["valle_stats"] = dict(self.stats)
        checkpoint["rng_states"] = gather_from_ranks(self._rng_next_step or capture_rng_state())  # [rank]
        if self.card.codec_state is not None:
            checkpoint["codec_state"] = self.card.codec_state
        if self.hparams["lora"]:
            trained = {f"model.{k}" for k in lora_state_dict(self.model)}
            trained |= {f"model.{k}" for k, p in self.model.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trained}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.stats.update(checkpoint.get("valle_stats", {}))
        self.card.codec_state = checkpoint.get("codec_state", self.card.codec_state)
        self._rng_next_step = self._own_rng_state(checkpoint.get("rng_states") or [])

    def _own_rng_state(self, states: list[dict]) -> dict | None:
        """This rank's saved generator state; restored at the next training step (`on_train_batch_start`)."""
        if self.global_rank < len(states):
            return states[self.global_rank]
        if states:
            log.warning(
                "the checkpoint holds generator states of %d ranks, this run has more: rank %d "
                "continues from its seed, so its dropout masks differ from the interrupted run's",
                len(states),
                self.global_rank,
            )
        return None

    def describe(self) -> dict:
        """Model, optimisation and training settings as plain data (for logs and exports)."""
        return {
            "model": self.config.to_dict(),
            "optim": asdict(self.optim_config),
            "training": asdict(self.training_config),
        }
