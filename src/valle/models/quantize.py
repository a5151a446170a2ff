"""int8 weights for CPU inference: linear layers and output heads run as dynamic-int8 matmuls (fbgemm).

A one-token decode step of a small model reads every weight once per token, so on a CPU it is bound
by memory bandwidth: int8 weights read a quarter of the bytes of fp32. Weights are quantized per output
channel, activations per call (dynamic quantization). The result is a different model numerically,
if only slightly: on a random-weight tiny model the logits move by 1.6 % (relative L2) and greedy
tokens can differ from fp32 ones where the top logits are closer than that, so it is opt-in
(`quantize=int8` in infer.py) and measured in `benchmarks/ar_decode.py`, part (d).

The matmul is fbgemm's int8-weight kernel, called directly (`fbgemm_linear_int8_weight_fp32_activation`)
with the per-channel scales applied to its output. `torch.ops.quantized.linear_dynamic` runs the same
kernel with about 55 µs more work per call on 2 CPU cores (1.6-2.8x slower on the `small` preset's
shapes, benchmarks/int8_linear.py), a sixth of a one-token step of `small`; and with 8-bit weights it
saturates (see `WEIGHT_MAX`). torch marks the entry point deprecated; the pinned torch 2.9.1 has it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import TypeVar

import torch
from torch import Tensor, nn

from valle.errors import ConfigError
from valle.models.valle import Heads

MODES = ("int8",)
FBGEMM_CPUS = ("AVX2", "AVX512")  # torch.backends.cpu.get_cpu_capability() values fbgemm runs on

# fbgemm's AVX2 kernel adds pairs of uint8 x int8 activation-weight products in int16 before widening
# (CPUs without VNNI), which overflows with full-range weights: 2 * 255 * 127 > 32767. Weights in
# [-63, 63] keep every pair in range. On the `small` layer shapes this takes the error against fp32
# from 7-14 % (saturated, what `linear_dynamic` with 8-bit weights gives) to about 1 %
# (benchmarks/int8_linear.py).
WEIGHT_MAX = 63


@contextlib.contextmanager
def _quiet_deprecation() -> Iterator[None]:
    """Ignore torch's "fbgemm_... is deprecated" warnings inside the block; the pinned version has them.

    torch gives each of them once per process (TORCH_WARN_ONCE): taken here, locally, at quantization
    time, they leave no process-wide filter behind and the decode loop needs none.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"fbgemm_\w+ is deprecated", category=UserWarning)
        yield


class Int8Linear(nn.Module):
    """An inference-only `x @ weight.T + bias` with int8 per-channel weights, prepacked for fbgemm.

    Args:
        weight: [out, in] float weights.
        bias: [out] or None.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        weight = weight.detach().float().cpu()
        self.out_features, self.in_features = weight.shape
        self._scales = (weight.abs().amax(dim=1) / WEIGHT_MAX).clamp(min=1e-12)
        # Integer weights with unit scale for the kernel; the per-channel scales multiply its output.
        self._weight = (
            torch.round(weight / self._scales[:, None]).clamp(-WEIGHT_MAX, WEIGHT_MAX).to(torch.int8)
        )
        self._column_sums = self._weight.sum(dim=1, dtype=torch.int32)  # the kernel's zero-point correction
        self._zeros = torch.zeros(self.out_features)
        self._bias = None if bias is None else bias.detach().float().cpu()
        with _quiet_deprecation():
            self._packed = torch.fbgemm_pack_quantized_matrix(self._weight)
            self(torch.zeros(1, self.in_features))  # the kernel's first call is the one that warns

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.fbgemm_linear_int8_weight_fp32_activation(
            x, self._weight, self._packed, self._column_sums, 1.0, 0, self._zeros
        )
        if self._bias is None:
            return y.mul_(self._scales)
        return torch.addcmul(self._bias, y, self._scales)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int8Heads(nn.Module):
    """`Heads` (one output projection per level) with each level's projection an `Int8Linear`."""

    def __init__(self, heads: Heads) -> None:
        super().__init__()
        self.levels = nn.ModuleList(Int8Linear(w, b) for w, b in zip(heads.weight, heads.bias, strict=True))

    def forward(self, hidden: Tensor, level: int) -> Tensor:
        """hidden [..., D] → logits [..., V + 1] of `level`'s head (the shared one when there is one)."""
        return self.levels[min(level, len(self.levels) - 1)](hidden)


M = TypeVar("M", bound=nn.Module)


def quantize(model: M, mode: str | None) -> M:
    """Replace the model's `nn.Linear` layers and `Heads` in place (mode "int8"); None returns it unchanged.

    Raises:
        ValueError: an unknown mode, a model not on the CPU (these kernels are CPU-only), or a CPU
            that fbgemm does not support.
    """
    if mode is None:
        return model
    if mode not in MODES:
        raise ConfigError(f"unknown quantize={mode!r}; use one of {', '.join(MODES)} or null")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ConfigError(
            f"quantize={mode} runs on the CPU only (fbgemm kernels); the model is on {device}. "
            "Use device=cpu, or quantize=null on a GPU"
        )
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        raise ConfigError(
            f"quantize={mode} needs torch's fbgemm engine, which this build lacks "
            f"(engines: {torch.backends.quantized.supported_engines})"
        )
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in FBGEMM_CPUS:
        raise ConfigError(
            f"quantize={mode} needs an x86 CPU with AVX2 for fbgemm; this one runs torch's "
            f"{capability} kernels. Use quantize=null"
        )
    _swap(model.eval())
    return model


def _swap(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear.from_linear(child))
        elif isinstance(child, Heads):
            setattr(module, name, Int8Heads(child))
        else:
            _swap(child)
