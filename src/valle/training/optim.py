"""AdamW with warmup + cosine / inverse-sqrt / constant learning-rate schedules."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from valle.errors import ConfigError

if TYPE_CHECKING:
    from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

SCHEDULES = ("cosine", "inverse_sqrt", "constant")


@dataclass
class OptimConfig:
    """The `optim` config group."""

    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_steps: int = 1000
    total_steps: int | None = None  # cosine: where the decay ends (default: the trainer's max_steps)
    min_lr_ratio: float = 0.1  # cosine ends at lr × min_lr_ratio

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule={self.schedule!r}: choose one of {SCHEDULES}")


def lr_factor(step: int, config: OptimConfig, total_steps: int) -> float:
    """The multiplier of `config.lr` at optimizer step `step` (0-based)."""
    warmup = max(1, config.warmup_steps)
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "inverse_sqrt":
        return math.sqrt(warmup / (step + 1))
    if config.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, config: OptimConfig, total_steps: int) -> OptimizerLRSchedulerConfig:
    """Lightning's optimizer dict: AdamW (fused on CUDA) stepping a per-step LambdaLR.

    No weight decay on biases, norms and embeddings (1-D parameters and embedding tables): decaying
    them only slows training.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.dim() < 2 or "embeddings." in name else decay).append(param)
    fused = all(p.is_cuda for p in decay + no_decay) and torch.cuda.is_available()
    beta1, beta2 = config.betas
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(beta1, beta2),
        eps=config.eps,
        fused=fused or None,
    )
    total = config.total_steps or total_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config, total))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
