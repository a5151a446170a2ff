"""RetNet backbone (Sun et al., 2023) from torchscale's `RetNetDecoder`, with an optional mixture of experts.

What comes from torchscale unchanged: the layers, their parameters (state-dict keys match a plain
`RetNetDecoder`, so torchscale checkpoints load), its parallel (training) form, its rotation of queries and
keys and its per-head decay. What we replace, and why:

- **Batched recurrent decoding.** torchscale's recurrent form takes one position per call, one position
  (`slen`) for the whole batch and one normaliser (`scale`) per head for the whole batch, so rows whose
  prefixes differ in length cannot decode together. `BatchedRetention.recurrent_forward` runs the same
  recurrence with per-row positions and per-row normalisers, for `t >= 1` right-padded positions at once
  (a chunk: parallel inside, the carried state across), and leaves a row's state untouched on its padded
  positions. It also keeps the parallel form's `|sum(QK)|` normaliser, which torchscale's recurrent form
  drops (the group norm hides it only up to its eps), so `step` reproduces `forward` to float rounding.
- **Single-process mixture of experts.** torchscale's `MOELayer` needs an initialised `torch.distributed`
  group (it queries world sizes when built and all-reduces token counts on every call) and its gates fail
  on CPU. `LocalMoE` keeps torchscale's experts, gate weights, balancing loss and parameter names, and
  has no expert capacity: no token is dropped, so an MoE output never depends on other tokens of the batch.

Embeddings pass straight through: `no_scale_embedding=True` and `layernorm_embedding=False`, so torchscale
only applies its `dropout` to them (as to every residual branch), and its token embedding and output
projection are absent.

Not supported, with an error saying so (retention is causal by construction):
- `causal=False`: use a transformer for the NAR (`model.shared: false`, NAR backbone `transformer`).
- `prefix_lengths` (prefix-LM mask): the text and prompt are read causally instead.
- `ContextWindow` (`max_ar_context`): the recurrent state has constant size whatever the context length,
  and its decay already fades old positions; there is no cache to evict from.
- `position_offsets` (`training.sliding_context.max_shift`): retention has no positions to move on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torchscale.architecture.config import RetNetConfig
from torchscale.architecture.retnet import DecoderLayer, RetNetDecoder
from torchscale.component.feedforward_network import FeedForwardNetwork
from torchscale.component.multiscale_retention import MultiScaleRetention

from valle.models.backbones.base import Backbone, BackboneOutput
from valle.models.cache import ContextWindow

NO_BIDIRECTIONAL = (
    "RetNet retention is causal by construction and has no bidirectional form; build the NAR on a "
    "transformer (model.shared: false with the NAR backbone 'transformer')"
)
NO_PREFIX_LM = "RetNet reads the text and prompt causally; prefix_lengths (prefix-LM mask) is not supported"
NO_WINDOW = (
    "RetNet keeps a constant-size recurrent state and its decay already fades old positions; "
    "a ContextWindow (max_ar_context) is not supported"
)

NO_SHIFT = (
    "RetNet's positions are its retention decay, which cannot be moved on; training.sliding_context "
    "(max_shift) needs model/backbone=transformer"
)

RetentionState = dict[str, Tensor]  # one layer: "kv" [B,H,Dk,Dv], "key_sum" [B,H,Dk], "scale" [B,H]


@dataclass(frozen=True)
class Chunk:
    """What the recurrent form needs besides q, k, v: passed where torchscale passes its decay."""

    log_decay: Tensor  # [H] log of each head's per-position decay
    lengths: Tensor  # [B] int64 real positions of each row in this chunk


def retention_chunk(
    q: Tensor, k: Tensor, v: Tensor, chunk: Chunk, state: RetentionState
) -> tuple[Tensor, RetentionState]:
    """Retention of `t` new positions per row given the state of everything before them.

    The state holds decay-weighted sums over a row's past: `kv = sum_i d^(n-1-i) k_i v_i^T`,
    `key_sum = sum_i d^(n-1-i) k_i` and `scale = sum_i d^(n-1-i)`. For query j of the chunk every past key
    weighs `d^(j+1)` times its weight in the state, so the output is torchscale's parallel form restricted
    to row j of its mask: divide by sqrt(scale), then by |sum of the normalised q.k|, clamped at 1.

    Args:
        q: [B, H, t, Dk] rotated queries.
        k: [B, H, t, Dk] rotated, scaled keys.
        v: [B, H, t, Dv] values.
        chunk: per-head log decay and per-row lengths; positions past lengths[b] leave row b's state as is.
        state: the layer's state before the chunk.

    Returns:
        (output [B, t, H, Dv], state after each row's last real position).
    """
    steps = torch.arange(q.shape[2], device=q.device)
    log_decay = chunk.log_decay.to(q.dtype)
    gap = steps[:, None] - steps[None, :]  # [t, t] query minus key
    # clamp: the exponent of a masked (future) key would grow without bound and overflow to inf.
    inner = torch.exp(gap.clamp(min=0) * log_decay[:, None, None]) * (gap >= 0)  # [H, t, t]
    carry = torch.exp((steps + 1) * log_decay[:, None])  # [H, t] decay of the state at query j

    scale = carry * state["scale"][..., None] + inner.sum(-1)  # [B, H, t]
    qk = (q @ k.transpose(-1, -2)) * inner  # [B, H, t, t]
    weighted = qk @ v + carry[..., None] * (q @ state["kv"])  # [B, H, t, Dv]
    total = qk.sum(-1) + carry * (q @ state["key_sum"][..., None])[..., 0]  # [B, H, t]
    root = scale.sqrt()
    denominator = (total.detach() / root).abs().clamp(min=1) * root
    output = (weighted / denominator[..., None]).transpose(1, 2)

    # Weight of chunk position i in the state after the row's last real position; 0 past it.
    age = chunk.lengths[:, None] - 1 - steps  # [B, t]
    weight = torch.exp(age.clamp(min=0)[:, None, :] * log_decay[:, None]) * (age >= 0)[:, None, :]
    keep = torch.exp(chunk.lengths[:, None] * log_decay)  # [B, H] decay of the old state over the chunk
    weighted_keys = k * weight[..., None]  # [B, H, t, Dk]
    new_state = {
        "kv": keep[..., None, None] * state["kv"] + weighted_keys.transpose(-1, -2) @ v,
        "key_sum": keep[..., None] * state["key_sum"] + weighted_keys.sum(2),
        "scale": keep * state["scale"] + weight.sum(-1),
    }
    return output, new_state


class BatchedRetention(MultiScaleRetention):
    """torchscale's multi-scale retention whose recurrent form takes a right-padded chunk per row."""

    def recurrent_forward(
        self, qr: Tensor, kr: Tensor, v: Tensor, decay: Chunk, incremental_state: RetentionState
    ) -> Tensor:
        """qr, kr [B, H, t, Dk], v [B, t, H * Dv] → [B, t, H, Dv]; updates `incremental_state` in place."""
        batch, length, _ = v.shape
        v = v.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        output, new_state = retention_chunk(qr, kr, v, decay, incremental_state)
        incremental_state.update(new_state)
        return output


class Router(nn.Module):
    """The gate's linear scorer, under torchscale's parameter name (`moe_layer.gate.wg.weight`)."""

    def __init__(self, d_model: int, n_experts: int) -> None:
        super().__init__()
        self.wg = nn.Linear(d_model, n_experts, bias=False)


class LocalMoE(nn.Module):
    """Top-1 (Switch) or top-2 (GShard) mixture of experts for one process, without expert capacity.

    torchscale's `MOELayer` needs an initialised torch.distributed group, and its gates call `torch.histc`
    on integer tensors, which CPUs do not implement. Here every expert runs on exactly the tokens routed to
    it, so no token is ever dropped: a token's output depends on that token alone (padding and other rows
    cannot change it, and decoding matches the full forward). Gate weights and the balancing loss follow
    torchscale's top1gating / top2gating: top-1 weighs by the best probability, top-2 renormalises the two,
    and the loss is `E^2 * mean_e(mean gate prob_e * share of tokens whose best expert is e)`.
    Parameter names match `MOELayer` (`gate.wg`, `experts`), so torchscale MoE checkpoints load.
    """

    def __init__(self, d_model: int, experts: nn.ModuleList, top_k: int, fp32_gate: bool) -> None:
        super().__init__()
        self.gate = Router(d_model, len(experts))
        self.experts = experts
        self.top_k = top_k
        self.fp32_gate = fp32_gate

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, T, D] → (output [B, T, D], load-balancing loss scalar)."""
        tokens = x.reshape(-1, x.shape[-1])  # [S, D]
        logits = self.gate.wg(tokens)
        probs = torch.softmax(logits.float() if self.fp32_gate else logits, dim=-1)  # [S, E]
        best, chosen = probs.topk(self.top_k, dim=-1)  # [S, k]
        if self.top_k > 1:
            best = best / best.sum(-1, keepdim=True).clamp(min=torch.finfo(best.dtype).eps)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token, slot = (chosen == e).nonzero(as_tuple=True)
            weight = best[token, slot, None].to(x.dtype)
            out.index_add_(0, token, expert(tokens[token]) * weight)
        n_experts = len(self.experts)
        share = torch.nn.functional.one_hot(chosen[:, 0], n_experts).to(probs.dtype).mean(0)
        l_aux = (probs.mean(0) * share).mean() * n_experts**2
        return out.reshape(x.shape), l_aux


def make_expert(args: RetNetConfig) -> FeedForwardNetwork:
    """One expert as torchscale builds it. Not `make_experts`: under torch.distributed that one builds only
    this rank's share of the experts (expert parallelism), which a data-parallel replica must not do."""
    return FeedForwardNetwork(
        args.decoder_embed_dim,
        args.decoder_ffn_embed_dim,
        args.activation_fn,
        args.dropout,
        args.activation_dropout,
        args.layernorm_eps,
        args.subln,
    )


class RetNetLayer(DecoderLayer):
    """torchscale's decoder layer with `BatchedRetention` and, in MoE layers, `LocalMoE`."""

    def __init__(self, args: RetNetConfig, depth: int, is_moe_layer: bool = False) -> None:
        # Built dense first: torchscale's MoE layer cannot be constructed outside torch.distributed.
        super().__init__(args, depth, is_moe_layer=False)
        if is_moe_layer:
            del self.ffn
            self.is_moe_layer = True
            experts = nn.ModuleList(make_expert(args) for _ in range(args.moe_expert_count))
            top_k = 1 if args.moe_top1_expert else 2
            self.moe_layer = LocalMoE(self.embed_dim, experts, top_k, args.moe_gating_use_fp32)

    def build_retention(self, embed_dim: int, args: RetNetConfig) -> BatchedRetention:
        return BatchedRetention(args, embed_dim, args.decoder_value_embed_dim, args.decoder_retention_heads)


class RetNetStack(RetNetDecoder):
    """`RetNetDecoder` built from `RetNetLayer`s (torchscale's extension point for custom layers)."""

    def build_decoder_layer(self, args: RetNetConfig, depth: int, is_moe_layer: bool = False) -> RetNetLayer:
        return RetNetLayer(args, depth, is_moe_layer=is_moe_layer)


@dataclass
class RetNetCache:
    """Recurrent state of every layer for a batch of rows being decoded.

    Attributes:
        layers: per layer, the `RetentionState` tensors, updated in place by `RetNetBackbone.step`.
        next_position: [B] int64 absolute position of each row's next token.
        max_length: positions a row may reach; the state does not grow, but callers size decoding by it
            and an overrun is a bug on their side, reported as it is for the transformer's KV cache.
    """

    layers: list[RetentionState]
    next_position: Tensor
    max_length: int

    def clone(self) -> RetNetCache:
        """An independent copy: decoding on from both gives the same outputs (beam search, retries)."""
        layers = [{name: t.clone() for name, t in state.items()} for state in self.layers]
        return replace(self, layers=layers, next_position=self.next_position.clone())

    def reorder(self, index: Tensor) -> RetNetCache:
        """The cache of rows `index` [B'] (beam search: each new beam continues its parent's row)."""
        layers = [{name: t.index_select(0, index) for name, t in state.items()} for state in self.layers]
        return replace(self, layers=layers, next_position=self.next_position.index_select(0, index))

    def join(self, other: RetNetCache) -> RetNetCache:
        """This cache's rows followed by `other`'s: the recurrent state has no length to pad."""
        layers = [
            {name: torch.cat([mine[name], theirs[name]]) for name in mine}
            for mine, theirs in zip(self.layers, other.layers, strict=True)
        ]
        return RetNetCache(
            layers,
            torch.cat([self.next_position, other.next_position]),
            max(self.max_length, other.max_length),
        )

    def check_room(self, n: int) -> None:
        """Raise if some row would pass `max_length` with n more positions."""
        reached = int(self.next_position.max()) + n
        if reached > self.max_length:
            raise ValueError(
                f"the RetNet cache was created for max_length={self.max_length} positions and a row would "
                f"reach {reached}; create it with a larger max_length"
            )


class RetNetBackbone(Backbone):
    """Causal RetNet over embedded positions; every `moe_freq`-th layer a mixture of experts.

    Args:
        d_model: width D.
        n_heads: retention heads; D and the value width must be divisible by it.
        n_layers: layers.
        ff_mult: feed-forward (and expert) hidden width as a multiple of D.
        dropout: on embeddings and residual branches (training only).
        value_mult: retention value width as a multiple of D (the paper uses 2).
        activation: "gelu" or "swish" in the feed-forward networks.
        layernorm_eps: of every RMSNorm.
        moe_freq: 0 for a dense model; else layers moe_freq, 2 * moe_freq, ... (1-based) are MoE.
        moe_expert_count: experts per MoE layer.
        moe_top1_expert: route each token to its best expert (Switch); else to its best two (GShard).
        moe_gating_use_fp32: compute the router's softmax in fp32 under mixed precision.
    """

    def __init__(
        self,
        d_model: int = 512,
        n_heads: int = 8,
        n_layers: int = 12,
        ff_mult: float = 4.0,
        dropout: float = 0.1,
        value_mult: float = 2.0,
        activation: str = "gelu",
        layernorm_eps: float = 1e-6,
        moe_freq: int = 0,
        moe_expert_count: int = 0,
        moe_top1_expert: bool = False,
        moe_gating_use_fp32: bool = True,
    ) -> None:
        super().__init__()
        value_dim = int(value_mult * d_model)
        if d_model % n_heads or value_dim % n_heads:
            raise ValueError(
                f"d_model={d_model} and value width {value_dim} must be divisible by n_heads={n_heads}"
            )
        if activation not in ("gelu", "swish"):
            raise ValueError(f"unknown activation {activation!r}; use 'gelu' or 'swish'")
        if moe_freq and moe_expert_count < (1 if moe_top1_expert else 2):
            raise ValueError(
                f"moe_freq={moe_freq} needs moe_expert_count >= {1 if moe_top1_expert else 2} "
                f"(got {moe_expert_count}); set moe_freq: 0 for a dense model"
            )
        self.d_model = d_model
        self.n_heads = n_heads
        config = RetNetConfig(
            decoder_embed_dim=d_model,
            decoder_value_embed_dim=value_dim,
            decoder_retention_heads=n_heads,
            decoder_ffn_embed_dim=int(ff_mult * d_model),
            decoder_layers=n_layers,
            activation_fn=activation,
            dropout=dropout,
            layernorm_eps=layernorm_eps,
            # Our embeddings arrive finished: no sqrt(D) scale, no extra norm, no vocabulary projection.
            no_scale_embedding=True,
            layernorm_embedding=False,
            no_output_layer=True,
            moe_freq=moe_freq,
            moe_expert_count=moe_expert_count,
            moe_top1_expert=moe_top1_expert,
            moe_gating_use_fp32=moe_gating_use_fp32,
        )
        self.decoder = RetNetStack(config)

    def forward(
        self,
        x: Tensor,
        lengths: Tensor,
        causal: bool,
        prefix_lengths: Tensor | None = None,
        window: ContextWindow | None = None,
        attention_layers: Sequence[int] = (),
        position_offsets: Tensor | None = None,
    ) -> BackboneOutput:
        """See `Backbone.forward`. x [B, T, D] → hidden [B, T, D], aux_loss = MoE loss summed over layers.

        Right padding needs no mask: retention is causal, so positions past lengths[b] never reach earlier
        ones (they only count in the MoE balancing loss).

        Raises:
            ValueError: causal=False, prefix_lengths, window or position_offsets (see the module
                docstring).
        """
        check_causal_only(causal, prefix_lengths, window)
        if position_offsets is not None:
            raise ValueError(NO_SHIFT)
        if attention_layers:
            raise ValueError(
                "RetNet has retention, not attention probabilities: the guided-attention loss "
                "(training.guided_attention) needs model/backbone=transformer"
            )
        # torchscale reads only the length of its first argument when token embeddings are given.
        hidden, extra = self.decoder(x, token_embeddings=x, features_only=True)
        losses = [loss for loss in extra["l_aux"] if loss is not None]
        aux_loss = torch.stack(losses).sum() if losses else x.new_zeros(())
        return BackboneOutput(hidden, aux_loss)

    def new_cache(
        self,
        batch_size: int,
        max_length: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        window: ContextWindow | None = None,
    ) -> RetNetCache:
        """See `Backbone.new_cache`: zero state (constant size, whatever max_length); no window."""
        if window is not None:
            raise ValueError(NO_WINDOW)
        param = next(self.parameters())
        device, dtype = device or param.device, dtype or param.dtype
        key_dim = self.d_model // self.n_heads
        value_dim = self.decoder.args.decoder_value_embed_dim // self.n_heads

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(batch_size, self.n_heads, *shape, device=device, dtype=dtype)

        layers = [
            {"kv": zeros(key_dim, value_dim), "key_sum": zeros(key_dim), "scale": zeros()}
            for _ in self.decoder.layers
        ]
        start = torch.zeros(batch_size, dtype=torch.long, device=device)
        return RetNetCache(layers, start, max_length)

    def step(
        self,
        x: Tensor,
        cache: RetNetCache,
        lengths: Tensor | None = None,
        prefix_lengths: Tensor | None = None,
    ) -> Tensor:
        """See `Backbone.step`. x [B, t, D] right-padded → hidden [B, t, D] of the new positions."""
        if prefix_lengths is not None:
            raise ValueError(NO_PREFIX_LM)
        batch, length, _ = x.shape
        if lengths is None:
            lengths = torch.full((batch,), length, dtype=torch.long, device=x.device)
        cache.check_room(length)
        positions = cache.next_position[:, None] + torch.arange(length, device=x.device)
        rel_pos = (self._rotation(positions), Chunk(self.decoder.retnet_rel_pos.decay, lengths))
        h, _ = self.decoder.forward_embedding(None, x)
        for layer, state in zip(self.decoder.layers, cache.layers, strict=True):
            h, _ = layer(h, incremental_state=state, retention_rel_pos=rel_pos)
        cache.next_position += lengths
        return self.decoder.layer_norm(h) if self.decoder.layer_norm is not None else h

    def _rotation(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """(sin, cos) [B, 1, t, Dk] of absolute `positions` [B, t], computed as `RetNetRelPos` does."""
        angle = self.decoder.retnet_rel_pos.angle
        angles = positions.to(angle)[:, None, :, None] * angle
        return torch.sin(angles), torch.cos(angles)


def check_causal_only(causal: bool, prefix_lengths: Tensor | None, window: ContextWindow | None) -> None:
    """Raise a `ValueError` naming the fix for an attention pattern RetNet cannot express."""
    if not causal:
        raise ValueError(NO_BIDIRECTIONAL)
    if prefix_lengths is not None:
        raise ValueError(NO_PREFIX_LM)
    if window is not None:
        raise ValueError(NO_WINDOW)
