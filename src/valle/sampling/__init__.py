"""Decoding: pure logit processors, the sampler pipeline and beam search (docs/design.md, "Decoding")."""

from valle.sampling.pipeline import ArSampler, NarSampler, SamplerConfig, make_generator

__all__ = ["ArSampler", "NarSampler", "SamplerConfig", "make_generator"]
