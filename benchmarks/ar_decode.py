"""AR decoding speed: recompute-everything against incremental decoding against a bare one-token forward.

    .venv/bin/python benchmarks/ar_decode.py --presets tiny small --lengths 75 375 750 --repeats 3

For each preset and response length N (random weights, batch 1, a text of 40 ids, a 3 s prompt of
225 frames with 8 levels of 1024 codes), prints tokens/s and the real-time factor (RTF: seconds of
compute per second of audio, 75 codes = 1 s of EnCodec audio) of:

  (a) recompute: every step runs the full causal forward over the whole sequence so far (`build_ar`
      with the codes so far) and takes the last position's logits. Its cost grows with the step, so
      by default it is timed at every `--recompute-stride`-th step length and the per-step times in
      between are linearly interpolated and summed ("estimated from K timed steps"); stride 1 times
      every step.
  (b) incremental: `valle.sampling.ar.decode_ar` (prefill, then one token per step with the cache),
      with a greedy sampler whose stop logit is masked, so every run is exactly N steps.
  (c) floor: `backbone.step` + `ar_logits` for one token on a warm cache of the same capacity,
      averaged over N steps (no sampler, no bookkeeping).
  (d) (b) with int8 weights in every linear layer and output head (`valle.models.quantize`,
      infer.py `quantize=int8`; CPU only). Not the same model numerically: compare its speed, not its tokens.
  (e) (b) with `fast=True`: each step one compiled static graph (`valle.sampling.compiled`; CUDA graphs
      on a GPU). The warm-up run includes compilation; the timed runs do not. Its tokens are checked
      against (b)'s.
  (f) one Medusa verification pass (`sampler.medusa`): `tree_step` over the newest frame and a candidate
      tree (the last of `--medusa-trees`; default 3-2-1, 15 candidates), their logits and forgetting the
      candidates, like (c); with (d), int8 too. (f)/(c) is what a pass costs in one-token steps: Medusa
      decodes faster when a pass keeps more frames than that.

With `--medusa MODEL --demo DIR` it measures Medusa decoding instead (`sampler.medusa`,
valle.sampling.ar.Speculation) on a trained model whose heads are trained (an export or checkpoint with
`model.medusa.heads > 0`), one utterance at a time, on the demo's held-out cross-utterance items (their
texts and 3 s prompts from DIR, a `make demo` folder): for greedy and the demo's sampler (T 0.8, top-p
0.9), fp32 and int8, AR frames per second plain against Medusa with each of `--medusa-trees` (default:
the chain 1,1,1 and the tree 3,2,1), the mean frames a pass keeps, and whether every item's frames are
the plain decode's.

    .venv/bin/python benchmarks/ar_decode.py --medusa outputs/demo/recipes/medusa3/run/checkpoints/last.ckpt \
        --demo outputs/demo --items 12

Times are the median of `--repeats` runs after one warm-up run (recompute step lengths: of
`--recompute-repeats`). (b)/(a) is the speed-up of
incremental decoding over recompute (a's time / b's time); (c)/(b) is the floor's per-step time over
b's per-step time excluding the prefill (1.0 = no overhead beyond the forward itself); (d)/(b) is
int8's speed-up over fp32 incremental decoding (b's time / d's time); (e)/(b) the compiled step's.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import Tensor

from valle.models.backbones import TreeStepping
from valle.models.config import BackboneConfig, ValleConfig
from valle.models.quantize import quantize
from valle.models.sequence import build_ar
from valle.models.valle import Valle
from valle.sampling.ar import ArRows, DecodeLimits, _start, decode_ar
from valle.sampling.candidates import CandidateTree
from valle.sampling.decode import ar_limits
from valle.sampling.pipeline import ArSampler, SamplerConfig
from valle.utils.batch import Conditioning

Widths = tuple[int, ...]  # a candidate tree: how many of each Medusa head's guesses (sampler.medusa_tree)


def widths_arg(text: str) -> Widths:
    return tuple(int(w) for w in text.split(","))


FRAMES_PER_SECOND = 75  # EnCodec 24 kHz
N_TEXT_TOKENS, N_LEVELS, CODEBOOK = 100, 8, 1024
TEXT_IDS, PROMPT_FRAMES = 40, 225


def build_model(preset: str, backbone: str) -> Valle:
    if backbone == "transformer":
        config = getattr(ValleConfig, preset)()
    else:
        config = getattr(ValleConfig, preset)(
            shared=False,
            backbone=BackboneConfig("retnet", 0.0),
            nar_backbone=BackboneConfig("transformer", 0.0),
        )
    torch.manual_seed(0)
    return Valle(config.with_data(N_TEXT_TOKENS, N_LEVELS, CODEBOOK)).eval()


def inputs() -> Conditioning:
    g = torch.Generator().manual_seed(1)
    text = torch.randint(0, N_TEXT_TOKENS, (1, TEXT_IDS), generator=g)
    prompt = torch.randint(0, CODEBOOK, (1, N_LEVELS, PROMPT_FRAMES), generator=g)
    return Conditioning(text, torch.tensor([TEXT_IDS]), prompt, torch.tensor([PROMPT_FRAMES]))


class GreedyNoStop(ArSampler):
    """Argmax over the codes only (the stop logit is masked): a run is exactly max_steps long.

    An `ArSampler` whose choice skips the pipeline (no penalties, no stop at step 0 to mask).
    """

    def __init__(self) -> None:
        super().__init__(SamplerConfig(ar_temperature=0.0), stop_token=CODEBOOK)

    def __call__(
        self,
        logits: Tensor,
        history: Tensor,
        step: int | Tensor,
        generator: object = None,
        state: object = None,
    ) -> Tensor:
        return logits[:, :-1].argmax(dim=-1)


greedy_no_stop = GreedyNoStop()


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------ (a) recompute
def recompute_step(model: Valle, data: Conditioning, codes: Tensor) -> Tensor:
    """One recompute-everything step: full causal forward over prefix + `codes` [1, t], next code [1]."""
    t = codes.shape[1]
    full = torch.zeros(1, N_LEVELS, t, dtype=torch.long)
    full[:, 0] = codes
    packed = build_ar(model.ar.embeddings, data, full, torch.tensor([t]), stop_token=model.config.stop_token)
    # The response is [start, E(c_0), ..., E(c_{t-1})]: the last position predicts code t.
    hidden = model.ar.backbone(packed.x, packed.lengths, causal=True).hidden
    return greedy_no_stop(model.ar_logits(hidden[:, -1]), codes, t, None)


@torch.inference_mode()
def recompute_full(model: Valle, data: Conditioning, steps: int) -> Tensor:
    codes = torch.zeros(1, 0, dtype=torch.long)
    for _ in range(steps):
        codes = torch.cat([codes, recompute_step(model, data, codes)[:, None]], dim=1)
    return codes


@torch.inference_mode()
def recompute_estimate(
    model: Valle, data: Conditioning, steps: int, stride: int, repeats: int, timed_cache: dict[int, float]
) -> tuple[float, int]:
    """Sum of per-step times over steps 0..steps-1, timed at every stride-th length and interpolated.

    `timed_cache` keeps the per-length times of this model, so longer runs reuse the shorter ones'.
    """
    timed = sorted(set(range(0, steps, stride)) | {steps - 1})
    for t in timed:
        if t not in timed_cache:
            codes = torch.randint(0, CODEBOOK, (1, t), generator=torch.Generator().manual_seed(t))
            timed_cache[t] = median_time(lambda c=codes: recompute_step(model, data, c), repeats)
    total = 0.0
    for lo, hi in zip(timed, timed[1:], strict=False):  # steps lo .. hi-1, linear between timed lengths
        for t in range(lo, hi):
            total += timed_cache[lo] + (timed_cache[hi] - timed_cache[lo]) * (t - lo) / (hi - lo)
    return total + timed_cache[timed[-1]], len(timed)


# ------------------------------------------------------------------------------------------ (b), (c)
@torch.inference_mode()
def incremental(model: Valle, data: Conditioning, steps: int, fast: bool = False) -> Tensor:
    return decode_ar(model, data, greedy_no_stop, DecodeLimits(steps), fast=fast).codes


@torch.inference_mode()
def prefill(model: Valle, data: Conditioning, steps: int) -> None:
    _start(model, data, DecodeLimits(steps))


@torch.inference_mode()
def bare_steps(model: Valle, data: Conditioning, steps: int, repeats: int) -> float:
    """Mean seconds of backbone.step + ar_logits for one token, over `steps` steps on a fresh cache."""
    x = model.ar_step_input(torch.tensor([7]))
    backbone = model.ar.backbone

    def run() -> float:
        cache, _ = _start(model, data, DecodeLimits(steps))
        start = time.perf_counter()
        for _ in range(steps):
            model.ar_logits(backbone.step(x, cache)[:, 0])
        return (time.perf_counter() - start) / steps

    run()
    return statistics.median(run() for _ in range(repeats))


@torch.inference_mode()
def bare_passes(
    model: Valle, data: Conditioning, steps: int, repeats: int, widths: Widths = (1, 1, 1)
) -> float:
    """Mean seconds of one Medusa verification pass (`Speculation`): `tree_step` over the root and the
    candidate tree of `widths` + their logits + accepting the root alone, over `steps` passes on a fresh
    cache."""
    tree = CandidateTree.of_widths(widths)
    x = model.ar_step_input(torch.full((1, tree.size), 7), tree.depth[None, :])
    backbone = model.ar.backbone
    assert isinstance(backbone, TreeStepping)
    root, one = torch.zeros(1, 1, dtype=torch.long), torch.ones(1, dtype=torch.long)  # keep the root alone

    def run() -> float:
        cache, _ = _start(model, data, DecodeLimits(steps), ahead=tree.size)
        start = time.perf_counter()
        for _ in range(steps):
            model.ar_logits(backbone.tree_step(x, cache, tree.depth, tree.sees))
            cache.accept(tree.size, root, one)
        return (time.perf_counter() - start) / steps

    run()
    return statistics.median(run() for _ in range(repeats))


@dataclass
class Row:
    preset: str
    backbone: str
    steps: int
    a_seconds: float | None = None
    a_timed: int = 0  # steps timed for the estimate; == steps when every step was timed
    b_seconds: float | None = None
    b_prefill: float | None = None
    c_step: float | None = None
    d_seconds: float | None = None
    e_seconds: float | None = None
    f_pass: float | None = None  # one Medusa pass over the candidate tree (bare, like c)
    f_int8: tuple[float, float] | None = None  # int8: (one-token step, one pass)
    e_same_tokens: bool | None = None

    def line(self) -> str:
        n = self.steps
        rtf = lambda s: s / (n / FRAMES_PER_SECOND)  # noqa: E731
        parts = [f"{self.preset:5s} {self.backbone:11s} N={n:4d}"]
        if self.a_seconds is not None:
            label = "all steps timed" if self.a_timed >= n else f"estimated from {self.a_timed} timed steps"
            parts.append(
                f"(a) {self.a_seconds:8.2f} s {n / self.a_seconds:7.1f} tok/s "
                f"RTF {rtf(self.a_seconds):7.3f} [{label}]"
            )
        b_step = None
        if self.b_seconds is not None:
            b_step = (self.b_seconds - self.b_prefill) / n
            parts.append(
                f"(b) {self.b_seconds:7.3f} s {n / self.b_seconds:7.1f} tok/s RTF {rtf(self.b_seconds):6.3f} "
                f"(prefill {self.b_prefill * 1e3:.1f} ms, {b_step * 1e3:.2f} ms/step)"
            )
        if self.c_step is not None:
            parts.append(f"(c) {self.c_step * 1e3:.2f} ms/step {1 / self.c_step:7.1f} tok/s")
        if self.d_seconds is not None:
            parts.append(
                f"(d) int8 {self.d_seconds:7.3f} s {n / self.d_seconds:7.1f} tok/s "
                f"RTF {rtf(self.d_seconds):6.3f}"
            )
        if self.e_seconds is not None:
            parts.append(
                f"(e) compiled {self.e_seconds:7.3f} s {n / self.e_seconds:7.1f} tok/s "
                f"RTF {rtf(self.e_seconds):6.3f} (tokens {'==' if self.e_same_tokens else '!='} (b))"
            )
        ratios = []
        if self.e_seconds is not None and self.b_seconds is not None:
            ratios.append(f"(e)/(b) {self.b_seconds / self.e_seconds:.2f}x")
        if self.d_seconds is not None and self.b_seconds is not None:
            ratios.append(f"(d)/(b) {self.b_seconds / self.d_seconds:.2f}x")
        if self.a_seconds is not None and self.b_seconds is not None:
            ratios.append(f"(b)/(a) {self.a_seconds / self.b_seconds:6.1f}x")
        if self.c_step is not None and b_step is not None:
            ratios.append(f"(c)/(b) {self.c_step / b_step:.2f}")
        if self.f_pass is not None and self.c_step is not None:
            parts.append(f"(f) Medusa pass {self.f_pass * 1e3:.2f} ms")
            ratios.append(f"(f)/(c) {self.f_pass / self.c_step:.2f}")
        if self.f_int8 is not None:
            ratios.append(f"int8 (f)/(c) {self.f_int8[1] / self.f_int8[0]:.2f}")
        return " | ".join(parts + ([" ".join(ratios)] if ratios else []))


def seeded_rows(model: Valle, cond: Conditioning, sampler: ArSampler, limits: DecodeLimits) -> ArRows:
    """`decode_ar`'s loop, keeping the rows: their result and, with Medusa, the frames each pass kept."""
    rows = ArRows(
        model, cond, sampler, limits, generator=torch.Generator().manual_seed(0), speculate=sampler.cfg.medusa
    )
    while not rows.done:
        rows.advance()
    return rows


@torch.inference_mode()
def medusa_part(path: str, demo: str, items: int, repeats: int, trees: list[Widths]) -> None:
    """Medusa against plain incremental decoding on a trained model (module docstring)."""
    from pathlib import Path

    import valle
    from valle.cli.demo.settings import PROMPT_SECONDS
    from valle.cli.demo.speak import read_manifest
    from valle.sampling.prompt import Prompt, prompt_audio
    from valle.sampling.synthesize import Synthesizer

    loaded = valle.load(path)
    print(f"{path}: {loaded.config.medusa.heads} Medusa heads; AR frames per second, batch 1")
    every = read_manifest(Path(demo))
    chosen = [every[i * len(every) // items] for i in range(items)]  # spread over the held-out voices
    for quantized in (None, "int8"):
        synthesizer = Synthesizer(loaded, quantize=quantized)
        codec, rate = synthesizer.codec, synthesizer.codec.sample_rate
        conds = []
        for item in chosen:
            prompt_path = (Path(demo) / item.truth).with_name(f"{item.prompt_key}.wav")
            prompt = Prompt(codec.encode(prompt_audio(prompt_path, rate, PROMPT_SECONDS), rate))
            conds.append(synthesizer.conditioning([item.text], [prompt], "en-us"))
        model = synthesizer.model
        for name, settings in (
            ("greedy", {"ar_temperature": 0.0}),
            ("T 0.8 top-p 0.9", {"ar_temperature": 0.8, "top_p": 0.9}),
        ):
            plain_seconds, frames = 0.0, 0
            tallies = [Counter() for _ in trees]  # per tree: seconds, kept, row_passes, same
            for cond in conds:
                config = SamplerConfig(seed=0, max_ar_steps_per_phoneme=12, **settings)
                sampler, limits = ArSampler(config, model.config.stop_token), ar_limits(config, cond)
                run = partial(seeded_rows, model, cond, sampler, limits)
                plain_seconds += median_time(run, repeats)
                plain = run().result()
                frames += int(plain.lengths[0])
                for i, widths in enumerate(trees):
                    medusa = replace(config, medusa=True, medusa_tree=list(widths))
                    run = partial(
                        seeded_rows, model, cond, ArSampler(medusa, model.config.stop_token), limits
                    )
                    tally = tallies[i]
                    tally["seconds"] += median_time(run, repeats)
                    rows = run()
                    assert rows.speculation is not None
                    tally["kept"] += rows.speculation.kept
                    tally["row_passes"] += rows.speculation.row_passes
                    tally["same"] += torch.equal(plain.codes, rows.result().codes)
            label = quantized or "fp32"
            print(f"{label:>4} {name:>16}: plain {frames / plain_seconds:7.1f} frames/s", flush=True)
            for widths, tally in zip(trees, tallies, strict=True):
                candidates = CandidateTree.of_widths(widths).size - 1
                print(
                    f"{'':>22}Medusa tree {list(widths)} ({candidates} candidates): "
                    f"{frames / tally['seconds']:7.1f} frames/s ({plain_seconds / tally['seconds']:.2f}x) | "
                    f"{tally['kept'] / max(tally['row_passes'], 1):.2f} frames kept a pass | "
                    f"same frames {tally['same']}/{len(conds)}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], choices=["tiny", "small", "base"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[75, 375, 750])
    parser.add_argument("--backbone", default="transformer", choices=["transformer", "retnet"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--recompute-stride",
        type=int,
        default=25,
        help="time recompute at every k-th step length and interpolate (1: time every step)",
    )
    parser.add_argument(
        "--recompute-repeats",
        type=int,
        default=1,
        help="timed runs per recompute step length (after one warm-up each)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["a", "b", "c"],
        choices=["a", "b", "c", "d", "e", "f"],
        help="which measurements to make",
    )
    parser.add_argument("--medusa", help="a trained model with Medusa heads: measure Medusa decoding instead")
    parser.add_argument("--demo", help="with --medusa: a `make demo` folder (its held-out items)")
    parser.add_argument("--items", type=int, default=12, help="with --medusa: how many held-out items")
    parser.add_argument(
        "--medusa-trees",
        nargs="+",
        type=widths_arg,
        default=[(1, 1, 1), (3, 2, 1)],
        help="candidate trees (sampler.medusa_tree) as comma-separated widths, e.g. 1,1,1 3,2,1: with "
        "--medusa each is measured; part (f) times the last",
    )
    args = parser.parse_args()
    if args.medusa:
        if not args.demo:
            parser.error("--medusa needs --demo DIR (the held-out items' texts and prompts)")
        medusa_part(args.medusa, args.demo, args.items, args.repeats, args.medusa_trees)
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    data = inputs()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch 1, text {TEXT_IDS} ids, "
        f"prompt {PROMPT_FRAMES} frames x {N_LEVELS} levels; medians of {args.repeats} runs"
    )
    for preset in args.presets:
        model = build_model(preset, args.backbone)
        params = sum(p.numel() for p in model.ar.parameters()) / 1e6
        print(f"{preset}: AR stack {params:.1f} M parameters ({args.backbone})")
        int8 = quantize(copy.deepcopy(model), "int8") if "d" in args.parts else None
        timed_cache: dict[int, float] = {}
        for n in args.lengths:
            row = Row(preset, args.backbone, n)
            if "a" in args.parts and args.recompute_stride <= 1:
                row.a_seconds, row.a_timed = (
                    median_time(partial(recompute_full, model, data, n), args.repeats),
                    n,
                )
            elif "a" in args.parts:
                row.a_seconds, row.a_timed = recompute_estimate(
                    model, data, n, args.recompute_stride, args.recompute_repeats, timed_cache
                )
            if "b" in args.parts:
                row.b_seconds = median_time(partial(incremental, model, data, n), args.repeats)
                row.b_prefill = median_time(partial(prefill, model, data, n), args.repeats)
            if "c" in args.parts:
                row.c_step = bare_steps(model, data, n, args.repeats)
            if int8 is not None:
                row.d_seconds = median_time(partial(incremental, int8, data, n), args.repeats)
            if "f" in args.parts:
                row.f_pass = bare_passes(model, data, n, args.repeats, args.medusa_trees[-1])
                if row.c_step is None:
                    row.c_step = bare_steps(model, data, n, args.repeats)
                if int8 is not None:
                    row.f_int8 = (
                        bare_steps(int8, data, n, args.repeats),
                        bare_passes(int8, data, n, args.repeats, args.medusa_trees[-1]),
                    )
            if "e" in args.parts:
                row.e_seconds = median_time(partial(incremental, model, data, n, True), args.repeats)
                row.e_same_tokens = torch.equal(
                    incremental(model, data, n, True), incremental(model, data, n)
                )
            print(row.line(), flush=True)


if __name__ == "__main__":
    main()
