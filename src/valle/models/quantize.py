"""int8 weights for CPU inference: the linear layers run as dynamic-int8 matmuls (fbgemm).

A one-token decode step of a small model reads every weight once per token, so on a CPU it is bound
by memory bandwidth: int8 weights read a quarter of the bytes of fp32. Activations are quantized per
call (dynamic quantization), weights per output channel. The result is a different model numerically:
on a random-weight tiny model the logits move by 6.7 % (relative L2) and greedy tokens differ from fp32
ones where the top logits are close, so it
is opt-in (`quantize=int8` in infer.py) and measured in `benchmarks/ar_decode.py`, part (d).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

MODES = ("int8",)


class Int8Linear(nn.Module):
    """An inference-only `nn.Linear` with int8 per-channel weights, prepacked for fbgemm."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float().cpu()
        scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
        zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
        q = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
        bias = None if linear.bias is None else linear.bias.detach().float().cpu()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._packed = torch.ops.quantized.linear_prepack(q, bias)

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic(x, self._packed)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize(model: nn.Module, mode: str | None) -> nn.Module:
    """Replace the model's `nn.Linear` layers in place (mode "int8"); None returns it unchanged.

    Raises:
        ValueError: an unknown mode, or a model not on the CPU (these kernels are CPU-only).
    """
    if mode is None:
        return model
    if mode not in MODES:
        raise ValueError(f"unknown quantize={mode!r}; use one of {', '.join(MODES)} or null")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"quantize={mode} runs on the CPU only (fbgemm kernels); the model is on {device}. "
                         "Use device=cpu, or quantize=null on a GPU")
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        raise ValueError(f"quantize={mode} needs torch's fbgemm engine, which this build lacks "
                         f"(engines: {torch.backends.quantized.supported_engines})")
    _swap_linears(model.eval())
    return model


def _swap_linears(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child))
        else:
            _swap_linears(child)
