"""AR decodes through two computation paths agree up to near-ties of the sampler's choice.

Two decoding paths (the static or compiled step against the eager loop, an int8 fallback, ...) compute the
same logits only up to float rounding, which depends on the CPU, the thread count and the kernels. Greedy
decoding takes an argmax, which flips wherever the two best logits are closer than that rounding; after a
flip the row's histories differ and so does everything it decodes next. Exact token equality is therefore
not a property of the code. This is, per row:

1. at every step at which the row's tokens so far are the same on both paths, the logits agree within
   `atol + rtol * |logit|` (a broken cache or step fails here, at its first step);
2. the chosen tokens agree until the first step where they do not; with greedy decoding, there the two
   tokens' scores (the logits after the penalties) are a near-tie of the reference path: within twice the
   logits' tolerance. With sampling the draw itself can flip on rounding, so only 1 is checked there;
3. after that step nothing more is compared for the row; a row that never parts has the same codes, length
   and `hit_limit` on both paths.

Decode each path with its own `RecordingSampler`, then call `assert_decodes_match_up_to_near_ties`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from valle.sampling.ar import ArResult
from valle.sampling.pipeline import ArSampler, SamplerConfig, SamplerState

LOGIT_ATOL = 1e-4  # the paths measured agree to 7e-7 on the tiny test model's logits (of size 3)
LOGIT_RTOL = 1e-4


class RecordingSampler(ArSampler):
    """An `ArSampler` that also keeps, step by step, the logits it was given and the tokens it chose.

    Args:
        cfg: the sampler settings.
        stop_token: id of the stop token in the AR vocabulary.
    """

    def __init__(self, cfg: SamplerConfig, stop_token: int) -> None:
        super().__init__(cfg, stop_token)
        self.logits: list[Tensor] = []  # per step: [B, V + 1] as the model gave them
        self.scores: list[Tensor] = []  # per step: [B, V + 1] after the penalties (greedy's argmax)
        self.tokens: list[Tensor] = []  # per step: [B] the sampler's choice

    def __call__(
        self,
        logits: Tensor,
        history: Tensor,
        step: int | Tensor,
        generator: torch.Generator | None = None,
        state: SamplerState | None = None,
    ) -> Tensor:
        tokens = super().__call__(logits, history, step, generator, state)
        self.logits.append(logits.float().clone())
        self.scores.append(self.penalise(logits, history, step).float())
        self.tokens.append(tokens.clone())
        return tokens


def assert_decodes_match_up_to_near_ties(
    expected: ArResult,
    expected_steps: RecordingSampler,
    got: ArResult,
    got_steps: RecordingSampler,
    *,
    atol: float = LOGIT_ATOL,
    rtol: float = LOGIT_RTOL,
) -> None:
    """Assert that decode `got` follows the reference decode `expected` as far as float rounding lets it.

    Args:
        expected: the reference path's result; expected_steps: the RecordingSampler it decoded with.
        got: the other path's result; got_steps: its RecordingSampler (same settings).
        atol, rtol: how closely the two paths' logits must agree while their histories are the same.
    """
    assert got.codes.shape[0] == expected.codes.shape[0], "the two decodes have different batch sizes"
    for row in range(expected.codes.shape[0]):
        last = min(int(expected.lengths[row]), int(got.lengths[row]))  # the shorter one's stop or limit step
        if _parting_step(row, last, expected_steps, got_steps, atol, rtol) is not None:
            continue
        n = int(expected.lengths[row])
        assert int(got.lengths[row]) == n, f"row {row}: length {int(got.lengths[row])}, expected {n}"
        assert torch.equal(got.codes[row, :n], expected.codes[row, :n]), f"row {row}: the paths' codes differ"
        assert bool(got.hit_limit[row]) == bool(expected.hit_limit[row]), f"row {row}: hit_limit differs"


def _parting_step(
    row: int, last: int, expected: RecordingSampler, got: RecordingSampler, atol: float, rtol: float
) -> int | None:
    """The first step (up to `last`) where the row's tokens differ, checked to be a rounding flip, or None."""
    for step in range(min(last + 1, len(expected.tokens), len(got.tokens))):
        torch.testing.assert_close(
            got.logits[step][row],
            expected.logits[step][row],
            atol=atol,
            rtol=rtol,
            msg=lambda m, step=step: f"row {row}, step {step}: the logits differ after the same tokens\n{m}",
        )
        want, have = int(expected.tokens[step][row]), int(got.tokens[step][row])
        if want == have:
            continue
        if expected.cfg.ar_temperature == 0:
            scores = expected.scores[step][row]
            gap = float(scores[want] - scores[have])
            tie = 2 * (atol + rtol * float(scores[want].abs()))
            assert gap <= tie, (
                f"row {row}, step {step}: greedy chose {have} instead of {want}, whose score is higher by "
                f"{gap:.2e} (a near-tie is at most {tie:.1e})"
            )
        return step
    return None
