"""ValleConfig: everything needed to rebuild a model, saved in every checkpoint and export."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from valle.errors import ConfigError


@dataclass
class ScaleConfig:
    """Sizes only (the `model/scale` group): audiocraft's model_scale idiom."""

    d_model: int = 512
    n_heads: int = 8
    n_layers: int = 8
    ff_mult: float = 4.0


@dataclass
class BackboneConfig:
    """Which backbone (the `model/backbone` group) and its own options (positions, MoE, ...)."""

    name: str = "transformer"
    dropout: float = 0.1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MedusaConfig:
    """Medusa heads on the AR (the `model.medusa` keys; valle.models.medusa): `heads` = K extra heads
    guessing the codes 2 .. K + 1 frames ahead, for multi-token decoding; 0 = none."""

    heads: int = 0


@dataclass
class ValleConfig:
    """The model: an AR over RVQ level 0 and a NAR over levels 1..L-1 (docs/design.md, "Model").

    `n_text_tokens`, `n_levels` and `codebook_size` come from the data (symbol map and codec) and are
    filled in by the training entry point.
    """

    n_text_tokens: int = 0
    n_levels: int = 8
    codebook_size: int = 1024
    shared: bool = True  # one backbone and embeddings for AR and NAR (the seed's "ar+nar")
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    nar_backbone: BackboneConfig | None = None  # with shared=false: the NAR's backbone (default: same)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    prefix_lm: bool = False  # AR: text and prompt attend to each other bidirectionally
    shared_head: bool = False  # one output head for every level instead of one per level
    # > 0: add per-segment sinusoidal positions (text, prompt, response; VALL-E paper), the text's scaled
    # by this factor ≈ audio frames per text symbol (valle.models.sequence); 0 = off
    segment_positions: float = 0.0
    # VALL-E R's monotonic alignment: every response frame also gets the embedding of the text symbol it
    # says, and the AR predicts when the next frame moves on (valle.models.sequence; needs aligned shards)
    monotonic_alignment: bool = False
    # with monotonic alignment: each frame is also told the symbols before and after the one it says, how
    # many frames into it it is, and (after the symbol's first frame, once its length is drawn) how many
    # frames of it are left, as a duration-informed acoustic model is (valle.models.said; aligned shards)
    said_context: bool = False
    # share of AR training rows shown no text (valle.models.sequence), so that the same model is also the
    # unconditional one classifier-free guidance needs (`sampler.cfg_scale`); 0 = off, 0.1-0.2 typical
    text_dropout: float = 0.0
    medusa: MedusaConfig = field(default_factory=MedusaConfig)

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        if isinstance(self.nar_backbone, dict):
            self.nar_backbone = BackboneConfig(**self.nar_backbone)
        if isinstance(self.scale, dict):
            self.scale = ScaleConfig(**self.scale)
        if isinstance(self.medusa, dict):
            self.medusa = MedusaConfig(**self.medusa)
        if self.medusa.heads < 0:
            raise ConfigError(f"model.medusa.heads={self.medusa.heads}: must be >= 0 (0 = none, e.g. 3)")
        if self.scale.d_model % self.scale.n_heads:
            raise ConfigError(
                f"model.scale: d_model={self.scale.d_model} is not divisible by n_heads={self.scale.n_heads}"
            )
        if not 0.0 <= self.text_dropout < 1.0:
            raise ConfigError(f"model.text_dropout={self.text_dropout}: must be in [0, 1) (e.g. 0.15)")
        if self.said_context and not self.monotonic_alignment:
            raise ConfigError(
                "model.said_context=true needs model.monotonic_alignment=true (the context is of the symbol "
                "each frame says); set both, or said_context=false"
            )
        if self.n_levels < 1:
            raise ConfigError(f"n_levels must be >= 1, got {self.n_levels}")

    @property
    def stop_token(self) -> int:
        """The AR's extra output id: the codebook's size."""
        return self.codebook_size

    def with_data(self, n_text_tokens: int, n_levels: int, codebook_size: int) -> ValleConfig:
        return replace(self, n_text_tokens=n_text_tokens, n_levels=n_levels, codebook_size=codebook_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ValleConfig:
        return cls(**data)

    @classmethod
    def tiny(cls, **overrides: Any) -> ValleConfig:
        """Tests and CPU smoke runs: a 0.1 M-parameter backbone (plus embeddings and heads)."""
        settings = {
            "scale": ScaleConfig(d_model=64, n_heads=4, n_layers=2, ff_mult=2.0),
            "backbone": BackboneConfig(dropout=0.0),
            **overrides,
        }
        return cls(**settings)

    @classmethod
    def small(cls, **overrides: Any) -> ValleConfig:
        """About 30 M parameters with 8 levels of 1024 codes."""
        return cls(**{"scale": ScaleConfig(d_model=512, n_heads=8, n_layers=8, ff_mult=4.0), **overrides})

    @classmethod
    def base(cls, **overrides: Any) -> ValleConfig:
        """The seed's full size: d_model 1024, 16 heads, 12 layers."""
        return cls(**{"scale": ScaleConfig(d_model=1024, n_heads=16, n_layers=12, ff_mult=4.0), **overrides})
