"""The sampler pipeline: `SamplerConfig` (the `sampler` Hydra group) → AR and NAR samplers.

This module is the only place the order of the steps (docs/design.md, "Sampler pipeline") is set
(the AR's logits arrive already mixed by classifier-free guidance, `cfg_scale`: `valle.sampling.ar.Guide`):

1. repetition penalty (AR)      2. length penalty (AR)      3. temperature / dynamic temperature
4. top-k, then top-p            5. sample, greedy (T = 0) or mirostat v2      6. RAS (AR)

Beam search replaces steps 3 to 6: `ArSampler.beam_log_probs` gives steps 1 and 2 as
log-probabilities and `valle.sampling.beam` chooses the beams.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, replace
from typing import overload

import torch
from torch import Tensor

import valle.sampling.processors as processors
from valle.errors import ConfigError

MAX_CANDIDATES = 64  # a Medusa pass's guesses (`medusa_tree`): beyond this a pass costs more than it keeps


@dataclass
class SamplerConfig:
    """Decoding settings (the `sampler` group); see configs/sampler/default.yaml for each key.

    Raises:
        ValueError: on construction, listing every inconsistent setting and how to fix it.
    """

    ar_temperature: float = 1.0  # 0 = greedy
    nar_temperature: float = 0.0  # 0 = greedy (argmax), the VALL-E default for the NAR
    # 0 = the audio is decoded from the NAR's codes; T > 0: levels 1.. are decoded from the codewords
    # expected under the NAR's distribution at temperature T (a mean-square estimate of the residual
    # rather than one guess of it; docs/inference.md, "Expected codewords"); the codes stay as drawn
    expected_codewords: float = 0.0
    min_ar_temperature: float | None = None  # set: dynamic temperature in [min, ar_temperature]
    min_nar_temperature: float | None = None
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off
    repetition_penalty_decay: float = 1.0  # 1 = the same penalty at every distance
    length_penalty: float = 0.0  # alpha; > 0 longer outputs, < 0 shorter
    mirostat_tau: float = 0.0  # target surprise in bits; 0 = off
    mirostat_eta: float = 0.1
    beam_width: int = 1  # 1 = no beam search
    # draw N level-0 candidates a row and keep the one a recognizer hears its text in best (1 = off; needs
    # the synthesizer's recognizer, see valle.sampling.best_of); costs N AR rows, one NAR
    best_of: int = 1
    ras_window: int = 0  # K; 0 = RAS off
    ras_threshold: float = 0.1  # t_r
    max_ar_steps: int | None = None  # None = max_ar_steps_per_phoneme * text length
    max_ar_steps_per_phoneme: float = 20.0
    max_ar_context: int | None = None  # keep only the last N response tokens in the context
    seed: int | None = None
    speed: float = 1.0  # > 1 faster speech: each symbol's drawn duration / speed (monotonic alignment only)
    # the temperature of each symbol's duration draw (monotonic alignment only): 1 = the model's
    # distribution, < 1 closer to its likeliest length (less spread in the lengths), 0 = the likeliest
    duration_temperature: float = 1.0
    # classifier-free guidance of the AR by the text: 1 = off; > 1 says the text more firmly (needs a
    # model trained with model.text_dropout > 0); costs a second AR pass per step
    cfg_scale: float = 1.0
    # multi-token decoding: each AR step also checks the model's Medusa heads' guesses of the next frames
    # and keeps those the sampler draws anyway (needs model.medusa.heads > 0; the same tokens as off)
    medusa: bool = False
    # which of the heads' guesses a pass checks: the top widths[d - 1] of head d, as a tree (e.g. [3, 2, 1]:
    # 15 candidates); None = a chain of each head's top guess
    medusa_tree: list[int] | None = None

    def __post_init__(self) -> None:
        if self.medusa_tree is not None:  # a Hydra ListConfig, a tuple or JSON's list: one type from here on
            self.medusa_tree = [int(w) for w in self.medusa_tree]
        problems = self._problems()
        if problems:
            raise ConfigError("invalid sampler config:\n  - " + "\n  - ".join(problems))

    def _problems(self) -> list[str]:
        out = []
        for name in ("ar", "nar"):
            t, min_t = getattr(self, f"{name}_temperature"), getattr(self, f"min_{name}_temperature")
            if t < 0:
                out.append(f"{name}_temperature={t} must be >= 0 (0 = greedy)")
            if min_t is not None and not 0 <= min_t <= t:
                out.append(f"min_{name}_temperature={min_t} must lie in [0, {name}_temperature={t}]")
            if min_t is not None and t == 0:
                out.append(
                    f"min_{name}_temperature is set but {name}_temperature=0 means greedy; "
                    f"set {name}_temperature > 0 or min_{name}_temperature=null"
                )
        if self.expected_codewords < 0:
            out.append(f"expected_codewords={self.expected_codewords} must be >= 0 (0 = decode the codes)")
        if self.top_k < 0:
            out.append(f"top_k={self.top_k} must be >= 0 (0 = off)")
        if not 0 < self.top_p <= 1:
            out.append(f"top_p={self.top_p} must lie in (0, 1] (1 = off)")
        if self.repetition_penalty < 1:
            out.append(f"repetition_penalty={self.repetition_penalty} must be >= 1 (1 = off)")
        if not 0 <= self.repetition_penalty_decay <= 1:
            out.append(f"repetition_penalty_decay={self.repetition_penalty_decay} must lie in [0, 1]")
        out += self._sampling_problems()
        for key in ("max_ar_steps", "max_ar_context"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                out.append(f"{key}={getattr(self, key)} must be >= 1 or null")
        if not 0.25 <= self.speed <= 4.0:
            out.append(f"speed={self.speed} must lie in [0.25, 4] (1 = as the model speaks)")
        if not 0.0 <= self.duration_temperature <= 2.0:
            out.append(
                f"duration_temperature={self.duration_temperature} must lie in [0, 2] "
                "(1 = the model's distribution, 0 = its likeliest duration)"
            )
        if not 0.0 <= self.cfg_scale <= 10.0:
            out.append(f"cfg_scale={self.cfg_scale} must lie in [0, 10] (1 = off; 1.5-3 typical)")
        if self.medusa_tree is not None:
            out += self._tree_problems(self.medusa_tree)
        if self.max_ar_steps_per_phoneme <= 0:
            out.append(f"max_ar_steps_per_phoneme={self.max_ar_steps_per_phoneme} must be > 0")
        return out

    @staticmethod
    def _tree_problems(widths: list[int]) -> list[str]:
        if not widths or min(widths) < 1:
            return [f"medusa_tree={widths} must list widths >= 1, one per head (e.g. [3, 2, 1]), or be null"]
        candidates = sum(math.prod(widths[: d + 1]) for d in range(len(widths)))  # each level's nodes
        if candidates > MAX_CANDIDATES:
            return [
                f"medusa_tree={widths} checks {candidates} candidates a pass, more than {MAX_CANDIDATES}; "
                "use smaller widths (e.g. [3, 2, 1]: 15)"
            ]
        return []

    def _sampling_problems(self) -> list[str]:
        out = []
        if self.mirostat_tau < 0 or (self.mirostat_tau > 0 and self.mirostat_eta <= 0):
            out.append(
                f"mirostat needs tau >= 0 and eta > 0, got tau={self.mirostat_tau}, eta={self.mirostat_eta}"
            )
        if self.ras_window < 0 or not 0 <= self.ras_threshold <= 1:
            out.append(
                f"ras_window={self.ras_window} must be >= 0 and ras_threshold={self.ras_threshold} in [0, 1]"
            )
        if self.beam_width < 1:
            out.append(f"beam_width={self.beam_width} must be >= 1 (1 = no beam search)")
        greedy = self.ar_temperature == 0
        if self.best_of < 1:
            out.append(f"best_of={self.best_of} must be >= 1 (1 = one draw, no recognizer)")
        elif self.best_of > 1 and (greedy or self.beam_width > 1):
            why = (
                "ar_temperature=0 (greedy) draws the same one each time"
                if greedy
                else "beam search keeps one"
            )
            out.append(f"best_of={self.best_of} picks among different draws, but {why}; set best_of=1")
        if self.mirostat_tau > 0 and greedy:
            out.append("mirostat samples, but ar_temperature=0 means greedy; set ar_temperature > 0")
        if self.ras_window > 0 and greedy:
            out.append(
                "RAS resamples from the tempered distribution, but ar_temperature=0 means "
                "greedy; set ar_temperature > 0 or ras_window=0"
            )
        if self.medusa and (self.mirostat_tau > 0 or self.beam_width > 1 or self.cfg_scale != 1.0):
            out.append(
                "medusa=true decodes several frames a step and cannot be combined with mirostat, beam search "
                "or cfg_scale; drop them or set medusa=false"
            )
        if self.beam_width > 1:
            clashes = [
                f"{k}={getattr(self, k)}"
                for k, off in (("mirostat_tau", 0.0), ("ras_window", 0), ("top_k", 0), ("top_p", 1.0))
                if getattr(self, k) != off
            ]
            if clashes:
                out.append(
                    f"beam search (beam_width={self.beam_width}) scores the full distribution "
                    f"and cannot be combined with {', '.join(clashes)}; drop them or set "
                    f"beam_width=1"
                )
        return out

    def batch_key(self) -> tuple:
        """What rows decoding in one batch must share: every setting but the seed and the step limits,
        which each row keeps for itself (`valle.sampling.ar.ArRows`)."""
        return astuple(replace(self, seed=None, max_ar_steps=None, max_ar_steps_per_phoneme=1.0))

    @overload
    def ar_step_limit(self, n_phonemes: int) -> int: ...

    @overload
    def ar_step_limit(self, n_phonemes: Tensor) -> Tensor: ...

    def ar_step_limit(self, n_phonemes: int | Tensor) -> int | Tensor:
        """The AR step guard: `max_ar_steps`, or `max_ar_steps_per_phoneme` per text token.

        20 frames per phoneme is about 2.5 times a typical phoneme's duration (80-100 ms) at the
        75-86 Hz frame rates of EnCodec and DAC, so it never cuts real speech short but stops a
        model that fails to emit the stop token.

        Args:
            n_phonemes: text length, an int or a [B] tensor.

        Returns:
            Maximum number of AR steps, of the same kind as `n_phonemes`.
        """
        if self.max_ar_steps is not None:
            if isinstance(n_phonemes, Tensor):
                return torch.full_like(n_phonemes, self.max_ar_steps)
            return self.max_ar_steps
        if isinstance(n_phonemes, Tensor):
            return torch.ceil(n_phonemes * self.max_ar_steps_per_phoneme).long()
        return math.ceil(n_phonemes * self.max_ar_steps_per_phoneme)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A seeded generator on `device`, or None (torch's global generator) when seed is None."""
    if seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def _temper(logits: Tensor, t: float, min_t: float | None) -> Tensor:
    """Step 3 (for T > 0): dynamic temperature when `min_t` is set, else a fixed one."""
    if min_t is not None:
        return processors.dynamic_temperature(logits, min_t, t)
    return processors.temperature(logits, t)


def _truncate(logits: Tensor, k: int, p: float) -> Tensor:
    """Step 4: top-k, then top-p (each a no-op when off)."""
    return processors.top_p(processors.top_k(logits, k), p)


@dataclass
class SamplerState:
    """Per-sequence sampler state kept across AR steps (held by the AR loop, not the sampler).

    Attributes:
        mirostat: per-row mu when mirostat is on, else None.
    """

    mirostat: processors.MirostatState | None = None


class ArSampler:
    """Chooses the next level-0 token of each row from the AR logits (docs/design.md, "Sampler pipeline",
    steps 1-6).

    Args:
        cfg: the sampler settings.
        stop_token: id of the stop token in the AR vocabulary.
    """

    def __init__(self, cfg: SamplerConfig, stop_token: int) -> None:
        self.cfg = cfg
        self.stop_token = stop_token

    def new_state(self, batch: int, device: torch.device | str = "cpu") -> SamplerState:
        """Fresh state for a batch of `batch` sequences."""
        if self.cfg.mirostat_tau > 0:
            return SamplerState(processors.MirostatState.initial(batch, self.cfg.mirostat_tau, device))
        return SamplerState()

    def select_state(self, state: SamplerState, rows: Tensor) -> SamplerState:
        """The state of rows `rows` [B'] (the rows that decode on)."""
        if state.mirostat is None:
            return state
        return SamplerState(processors.MirostatState(state.mirostat.mu.index_select(0, rows)))

    def join_states(self, state: SamplerState, other: SamplerState) -> SamplerState:
        """The state of `state`'s rows followed by `other`'s (rows joining a running batch)."""
        if state.mirostat is None or other.mirostat is None:
            return state
        return SamplerState(processors.MirostatState(torch.cat([state.mirostat.mu, other.mirostat.mu])))

    def penalise(self, logits: Tensor, history: Tensor, step: int | Tensor) -> Tensor:
        """Steps 1 and 2: repetition penalty, then length penalty (and no stop as the first token).

        Args:
            logits: [B, V] float.
            history: [B, T] int64 tokens so far, `processors.EMPTY` for none.
            step: steps decoded so far, an int or a [B] tensor.
        """
        cfg = self.cfg
        # An utterance has at least one frame: the stop token is never the first output (an undertrained
        # model would otherwise give empty audio, which no codec decodes and no scorer reads).
        if isinstance(step, int):
            if step == 0:
                logits = logits.clone()
                logits[:, self.stop_token] = float("-inf")
        else:
            first = (step == 0)[:, None] & (
                torch.arange(logits.shape[1], device=logits.device) == self.stop_token
            )
            logits = logits.masked_fill(first, float("-inf"))
        if cfg.repetition_penalty != 1.0:
            logits = processors.repetition_penalty(
                logits, history, cfg.repetition_penalty, cfg.repetition_penalty_decay
            )
        if cfg.length_penalty != 0.0:
            logits = processors.length_penalty(logits, self.stop_token, step, cfg.length_penalty)
        return logits

    def __call__(
        self,
        logits: Tensor,
        history: Tensor,
        step: int | Tensor,
        generator: processors.Generators = None,
        state: SamplerState | None = None,
    ) -> Tensor:
        """Steps 1 to 6 on one AR step's logits.

        Args:
            logits: [B, V] float.
            history: [B, T] int64 response tokens so far (newest last), `processors.EMPTY` for none.
            step: steps decoded so far, an int or a [B] tensor.
            generator: source of randomness (see `make_generator`).
            state: from `new_state`; required with mirostat, updated in place.

        Returns:
            [B] int64 tokens.

        Raises:
            ValueError: with beam search (use `beam_log_probs`) or mirostat without a state.
        """
        cfg = self.cfg
        if cfg.beam_width > 1:
            raise ValueError(
                "beam_width > 1: score beams with beam_log_probs() and "
                "valle.sampling.beam.beam_step(), not ArSampler.__call__"
            )
        logits = self.penalise(logits, history, step)  # 1, 2
        if cfg.ar_temperature == 0:
            return processors.greedy(logits)  # 3-5: argmax; truncation cannot change it, RAS is refused
        full = _temper(logits, cfg.ar_temperature, cfg.min_ar_temperature)  # 3
        logits = _truncate(full, cfg.top_k, cfg.top_p)  # 4
        if cfg.mirostat_tau > 0:  # 5
            if state is None or state.mirostat is None:
                raise ValueError("mirostat keeps a per-row state: pass state=sampler.new_state(batch)")
            tokens = processors.mirostat_sample(
                logits, state.mirostat, cfg.mirostat_tau, cfg.mirostat_eta, generator
            )
        else:
            tokens = processors.sample(logits, generator)
        if cfg.ras_window > 0:  # 6
            tokens = processors.repetition_aware(
                tokens, full, history, cfg.ras_window, cfg.ras_threshold, generator
            )
        return tokens

    def beam_log_probs(self, logits: Tensor, history: Tensor, step: int | Tensor) -> Tensor:
        """Log-probabilities for beam search: steps 1 and 2, then log-softmax (no temperature).

        Args:
            logits: [N, V] float, one row per live beam (N = B * W).
            history: [N, T] int64 tokens of each beam.
            step: steps decoded so far.

        Returns:
            [N, V] float32 log-probabilities.
        """
        return torch.log_softmax(self.penalise(logits, history, step).float(), dim=-1)


class NarSampler:
    """Chooses the codes of one NAR level: steps 3 to 5 with the NAR temperature.

    The NAR predicts a whole level in parallel from a vocabulary without the stop token, so there is
    no history of earlier steps to penalise, no length and no per-step feedback: repetition and
    length penalties, mirostat and RAS do not apply. top-k and top-p do, when the NAR samples.

    Args:
        cfg: the sampler settings.
    """

    def __init__(self, cfg: SamplerConfig) -> None:
        self.cfg = cfg

    def __call__(
        self,
        logits: Tensor,
        history: Tensor | None = None,
        step: int | Tensor = 0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Codes for every position of the level.

        Args:
            logits: [..., V] float, e.g. [B, T, V] for a whole response.
            history: unused; accepted so both samplers share one call signature.
            step: unused; as `history`.
            generator: source of randomness.

        Returns:
            [...] int64 codes (the leading shape of `logits`).
        """
        cfg = self.cfg
        flat = logits.reshape(-1, logits.shape[-1])
        if cfg.nar_temperature == 0:
            tokens = processors.greedy(flat)
        else:
            tempered = _temper(flat, cfg.nar_temperature, cfg.min_nar_temperature)
            tokens = processors.sample(_truncate(tempered, cfg.top_k, cfg.top_p), generator)
        return tokens.reshape(logits.shape[:-1])

    def expected(self, logits: Tensor) -> Tensor | None:
        """The distributions [..., V] whose expected codewords the codec decodes (`expected_codewords`
        > 0: the softmax at that temperature), else None (the codes are decoded)."""
        if self.cfg.expected_codewords == 0:
            return None
        return (logits.float() / self.cfg.expected_codewords).softmax(-1)
