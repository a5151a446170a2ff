"""Choose the acoustic prompt for each training sample.

`same_speaker` (default): the prompt is a crop of *another* utterance of the same speaker, so the
model learns to carry a voice across utterances (VALL-E's setting). Shards are written in key order,
so a speaker's utterances arrive together in the stream; they are grouped before the shuffle buffer
and each one borrows from a sibling. A speaker with a single utterance falls back to `prefix` (the
DataModule warns with their count: `single_utterance_speakers`).

`prefix` (lifeiteng's prefix_mode 1): the first seconds of the utterance are the prompt and the
model is trained on the rest, so prompt and target never overlap. The text is the whole transcript:
this is VALL-E's continuation mode. `prefix_share` mixes the two in same_speaker mode.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass

import numpy as np

from valle.data.shards import ShardSample
from valle.errors import ConfigError

PROMPT_MODES = ("same_speaker", "prefix")


@dataclass
class PromptConfig:
    """The `data.prompt` keys."""

    mode: str = "same_speaker"
    min_seconds: float = 3.0
    max_seconds: float = 6.0
    max_prefix_fraction: float = 0.5  # prefix prompts take at most this share of the utterance
    max_group: int = 256  # utterances of one speaker held at once while choosing prompts
    # same_speaker mode: this share of samples gets a prefix prompt instead, so one model learns both
    # of VALL-E's inference modes (cross-utterance and continuation)
    prefix_share: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in PROMPT_MODES:
            raise ConfigError(f"data.prompt.mode={self.mode!r}: choose one of {PROMPT_MODES}")
        if not 0.0 <= self.prefix_share <= 1.0:
            raise ConfigError(f"data.prompt.prefix_share={self.prefix_share}: must be between 0 and 1")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ConfigError(
                "data.prompt: need 0 < min_seconds <= max_seconds, got "
                f"{self.min_seconds} and {self.max_seconds}"
            )


@dataclass
class PromptedSample:
    """A sample with its prompt: `response` is what the model must produce after `prompt`."""

    sample: ShardSample
    prompt: np.ndarray  # int16 [levels, prompt frames]
    response: np.ndarray  # int16 [levels, frames]
    prompt_key: str  # the utterance the prompt came from (the sample's own key in prefix mode)
    response_start: int = (
        0  # the utterance's frame the response starts at (the prompt's length in prefix mode)
    )


def _prompt_frames(config: PromptConfig, frame_rate: float, rng: random.Random) -> int:
    return max(1, round(rng.uniform(config.min_seconds, config.max_seconds) * frame_rate))


def _prefix_split(
    sample: ShardSample, config: PromptConfig, frame_rate: float, rng: random.Random
) -> PromptedSample:
    total = sample.codes.shape[1]
    frames = min(_prompt_frames(config, frame_rate, rng), max(1, int(total * config.max_prefix_fraction)))
    frames = min(frames, total - 1) if total > 1 else 0
    return PromptedSample(sample, sample.codes[:, :frames], sample.codes[:, frames:], sample.key, frames)


def _sibling_crop(
    sample: ShardSample, sibling: ShardSample, config: PromptConfig, frame_rate: float, rng: random.Random
) -> PromptedSample:
    frames = min(_prompt_frames(config, frame_rate, rng), sibling.codes.shape[1])
    start = rng.randint(0, sibling.codes.shape[1] - frames)
    return PromptedSample(sample, sibling.codes[:, start : start + frames], sample.codes, sibling.key)


def prompt_group(
    group: list[ShardSample],
    config: PromptConfig,
    frame_rate: float,
    rng: random.Random,
    fixed_seed: int | None = None,
) -> Iterator[PromptedSample]:
    """Prompts for one speaker's utterances, each from a different utterance of the group.

    Args:
        fixed_seed: draw each sample's prompt from a generator seeded by (fixed_seed, key) instead of
            `rng`, so an utterance gets the same prompt on every pass (validation stays comparable).
    """
    for i, sample in enumerate(group):
        r = rng if fixed_seed is None else random.Random(f"{fixed_seed}/{sample.key}")
        # `prefix_share and` keeps the random stream of runs without it unchanged
        if (
            config.mode == "prefix"
            or len(group) == 1
            or (config.prefix_share and r.random() < config.prefix_share)
        ):
            yield _prefix_split(sample, config, frame_rate, r)
        else:
            j = r.randrange(len(group) - 1)
            yield _sibling_crop(sample, group[j + (j >= i)], config, frame_rate, r)


def single_utterance_speakers(utterances: Mapping[str, int], config: PromptConfig) -> int:
    """How many speakers fall back to prefix prompts in `same_speaker` mode: those with one utterance
    (`utterances`: speaker → utterance count)."""
    if config.mode != "same_speaker":
        return 0
    return sum(1 for count in utterances.values() if count == 1)


def speaker_groups(samples: Iterable[ShardSample], max_group: int) -> Iterator[list[ShardSample]]:
    """Consecutive samples of one speaker, at most `max_group` at a time."""
    group: list[ShardSample] = []
    for sample in samples:
        if group and (sample.speaker != group[0].speaker or len(group) >= max_group):
            yield group
            group = []
        group.append(sample)
    if group:
        yield group


def attach_prompts(
    samples: Iterable[ShardSample],
    config: PromptConfig,
    frame_rate: float,
    rng: random.Random,
    keep: Set[str] | None = None,
    fixed_seed: int | None = None,
) -> Iterator[PromptedSample]:
    """Give every sample a prompt; with `keep`, only samples whose key is in it are emitted
    (the others still serve as prompts — validation borrows prompts from training utterances).
    `fixed_seed`: see `prompt_group`."""
    for group in speaker_groups(samples, config.max_group):
        for prompted in prompt_group(group, config, frame_rate, rng, fixed_seed):
            if keep is None or prompted.sample.key in keep:
                yield prompted
