"""LoRA fine-tuning (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models").

A frozen projection `W` [out, in] learns only a low-rank update:
`y = x W^T + dropout(x) A^T B^T * alpha / rank` with `A` [rank, in] and `B` [out, rank]. `B` starts at
zero, so a fresh adapter leaves the model's outputs unchanged, and fine-tuning moves only
`rank * (in + out)` numbers per wrapped layer.

The flow:

    # after loading pretrained weights:
    targets = apply_lora(model, LoRAConfig(rank=8, modules=["ar.backbone."]))
    ...train; only the adapters have requires_grad...
    torch.save(lora_state_dict(model), "adapter.pt")  # kilobytes, not the model
    merge_lora(model)                                 # plain nn.Linear again, for export

Wrapping renames a base weight from `<name>.weight` to `<name>.base.weight`; `merge_lora` restores the plain
names. So load pretrained weights before `apply_lora`, and load an adapter into a model that went through
`apply_lora` with the same config (`alpha` is not stored in the adapter state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from valle.errors import ConfigError

# Attention and feed-forward projections of each backbone: ours (transformer) and torchscale's (RetNet,
# whose MoE router `wg` is deliberately not a target). Names that a model lacks simply match nothing.
TRANSFORMER_TARGETS = ["qkv", "out", "up", "down"]
RETNET_TARGETS = ["q_proj", "k_proj", "v_proj", "g_proj", "out_proj", "fc1", "fc2", "gate"]
DEFAULT_TARGETS = TRANSFORMER_TARGETS + RETNET_TARGETS
ADAPTER_PARAMS = ("lora_a", "lora_b")


@dataclass
class LoRAConfig:
    """Which layers get adapters, and how large they are (the `lora.*` config keys).

    Attributes:
        rank: r, the inner width of each update (>= 1).
        alpha: the update is scaled by alpha / rank, so changing the rank need not change the learning rate.
        dropout: on the adapter's input only (training only); the frozen path sees the undropped input.
        targets: last name components of the nn.Linear layers to wrap (e.g. "qkv" matches
            "blocks.3.attn.qkv").
        modules: if set, wrap only layers whose full dotted name starts with one of these prefixes, e.g.
            ["ar.backbone."] for the AR backbone of `Valle` alone (names as `model.named_modules()` gives).
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    modules: list[str] | None = None

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"lora.rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.targets:
            raise ConfigError(f"lora.targets is empty; name the layers to adapt, e.g. {DEFAULT_TARGETS}")


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update.

    Args:
        base: the layer to adapt; its parameters are frozen in place.
        rank: r, the inner width of the update.
        alpha: the update is scaled by alpha / rank.
        dropout: on the adapter's input, training only.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = alpha / rank
        device, dtype = base.weight.device, base.weight.dtype
        # A [r, in] and B [out, r]
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=device, dtype=dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=device, dtype=dtype))
        # nn.Linear's own init for A; B = 0 makes a fresh adapter an exact no-op.
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x [..., in] → [..., out]."""
        update = F.linear(F.linear(self.dropout(x), self.lora_a), self.lora_b)
        return self.base(x) + update * self.scale

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """The base layer with the update folded into its weight (W += B A * scale); the adapter is spent."""
        delta = (
            self.lora_b.float() @ self.lora_a.float()
        ) * self.scale  # [out, in]; fp32 so bf16 W keeps B A
        self.base.weight.add_(delta.to(self.base.weight.dtype))
        return self.base

    def extra_repr(self) -> str:
        return f"rank={self.lora_a.shape[0]}, scale={self.scale:g}"


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` at dotted `name` inside `model` (a ModuleList index is a name like any other)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _lora_modules(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


def _matching_linears(model: nn.Module, config: LoRAConfig) -> tuple[dict[str, nn.Linear], list[str]]:
    """(the Linear layers `config` selects by name, the names of every Linear layer outside an adapter)."""
    inside_adapters = {f"{name}.base" for name, _ in _lora_modules(model)}
    linears = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name not in inside_adapters
    }
    prefixes = tuple(config.modules) if config.modules is not None else ("",)
    chosen = {
        name: m
        for name, m in linears.items()
        if name.rpartition(".")[2] in config.targets and name.startswith(prefixes)
    }
    return chosen, list(linears)


def apply_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Wrap the selected nn.Linear layers of `model` in LoRALinear, in place, and freeze everything else.

    A layer is selected when the last component of its dotted name is in `config.targets` and, if
    `config.modules` is set, its full name starts with one of those prefixes. Afterwards only the adapters'
    `lora_a`/`lora_b` have requires_grad (embeddings, norms and heads are frozen too).

    Returns:
        The dotted names of the wrapped layers, in module order.

    Raises:
        ValueError: nothing matched; the message lists the targets and some Linear layers that do exist.
    """
    chosen, linears = _matching_linears(model, config)
    if not chosen:
        where = f" under {config.modules}" if config.modules is not None else ""
        raise ConfigError(
            f"LoRA matched no nn.Linear named {config.targets}{where}; set lora.targets/lora.modules to "
            f"layers that exist, e.g. {linears[:6] or 'none: the model has no nn.Linear layers'}"
        )
    model.requires_grad_(False)
    for name, base in chosen.items():
        _replace(model, name, LoRALinear(base, config.rank, config.alpha, config.dropout))
    return list(chosen)


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Only the adapter weights, keyed like `model.state_dict()` (`<layer>.lora_a`, `<layer>.lora_b`)."""
    return {
        f"{name}.{param}": getattr(module, param).detach()
        for name, module in _lora_modules(model)
        for param in ADAPTER_PARAMS
    }


@torch.no_grad()
def load_lora_state_dict(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy adapter weights from `lora_state_dict` output into a model that went through `apply_lora`.

    Raises:
        ValueError: missing or unexpected adapter keys, or a shape that differs (another rank).
    """
    own = {f"{name}.{p}": getattr(m, p) for name, m in _lora_modules(model) for p in ADAPTER_PARAMS}
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    if missing or unexpected:
        raise ConfigError(
            f"adapter state does not fit this model: missing {missing[:4]} ({len(missing)}), unexpected "
            f"{unexpected[:4]} ({len(unexpected)}); call apply_lora with the config the adapter was "
            f"trained with"
        )
    for key, param in own.items():
        if state[key].shape != param.shape:
            raise ConfigError(
                f"adapter {key} has shape {tuple(state[key].shape)}, the model expects {tuple(param.shape)}; "
                "was it trained with another lora.rank?"
            )
        param.copy_(state[key])


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain nn.Linear back, in place.

    The result has no LoRA modules, the original state-dict keys, and the same outputs (up to rounding).
    Parameters keep the requires_grad that `apply_lora` left them with (frozen).

    Returns:
        `model` itself.
    """
    for name, module in _lora_modules(model):
        _replace(model, name, module.merged())
    return model
