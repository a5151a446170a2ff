"""Streaming against whole-utterance synthesis: time to first audio and real-time factor, in one run.

    .venv/bin/python benchmarks/stream_latency.py --presets tiny small --frames 150 --repeats 3
    .venv/bin/python benchmarks/stream_latency.py --demo outputs/demo      # agreement on the demo model

Speed (random weights, EnCodec's real architecture at random init, 24 kHz, 8 levels at 75 frames/s; a
one-sentence text, a 3 s prompt; the stop token masked so that every run says exactly `--frames`
frames): for each preset, fp32 and int8 (`quantize="int8"`), prints

  whole:   `Synthesizer.synthesize`: the first audio is the whole utterance, so time to first audio (TTFA)
           is the total time;
  stream:  `Synthesizer.stream` with the default `StreamSettings` (0.25 s first chunk, then 0.5 s):
           TTFA is the time to its first chunk;
  and the real-time factor (seconds of compute per second of audio) of each, and whole's TTFA / stream's.

`--demo DIR` instead speaks the demo's 60 held-out cross-utterance items both ways with its sampler and
seed and reports: level-0 agreement (1.0 by construction), the NAR codes' agreement between the stream
(levels fixed chunk by chunk) and the whole-utterance pass, and the instrument's sentence ID, PER and WER
of each (`valle.cli.demo.scoring`).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from valle.card import LoadedModel, ModelCard
from valle.codecs import build_codec
from valle.models.config import ValleConfig
from valle.models.valle import Valle
from valle.sampling.pipeline import SamplerConfig
from valle.sampling.prompt import Prompt
from valle.sampling.synthesize import Synthesizer
from valle.text import SymbolMap, phonemize

TEXT = "The garden gate was left open all night, and the dog ran out."


def synthesizer_for(preset: str, quantize: str | None) -> Synthesizer:
    codec = build_codec("encodec", bandwidth_kbps=6.0, weights="random").eval()
    symbols = SymbolMap.build([phonemize(TEXT)], ["en-us"])
    torch.manual_seed(0)
    config = getattr(ValleConfig, preset)().with_data(len(symbols), codec.n_levels, codec.codebook_size)
    model = Valle(config).eval()
    with torch.no_grad():  # never the stop token: every run says exactly max_ar_steps frames
        model.ar.heads.bias[0, -1] = -1e4
    card = ModelCard(model.config, symbols, codec.info, {})
    return Synthesizer(LoadedModel(model, card), codec, quantize=quantize)


def time_one(
    synthesizer: Synthesizer, prompt: Prompt, config: SamplerConfig, stream: bool
) -> tuple[float, float]:
    """(time to first audio, total time) in seconds."""
    start = time.perf_counter()
    if not stream:
        synthesizer.synthesize([TEXT], [prompt], config=config)
        total = time.perf_counter() - start
        return total, total
    first = None
    for _chunk in synthesizer.stream(TEXT, prompt, config=config):
        first = first or time.perf_counter() - start
    return first or 0.0, time.perf_counter() - start


def speed(presets: list[str], lengths: list[int], repeats: int) -> None:
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; frames per utterance {lengths}; "
        f"medians of {repeats}"
    )
    for preset in presets:
        for quantize in (None, "int8"):
            synthesizer = synthesizer_for(preset, quantize)
            codec = synthesizer.codec
            prompt = Prompt(
                torch.randint(0, 1024, (codec.n_levels, 225), generator=torch.Generator().manual_seed(1))
            )
            for frames in lengths:
                config = SamplerConfig(ar_temperature=0.8, top_p=0.9, max_ar_steps=frames, seed=0)
                seconds = frames / codec.frame_rate
                rows = {}
                for mode in ("whole", "stream"):
                    time_one(synthesizer, prompt, config, mode == "stream")  # warm-up
                    runs = [time_one(synthesizer, prompt, config, mode == "stream") for _ in range(repeats)]
                    rows[mode] = (
                        statistics.median(r[0] for r in runs),
                        statistics.median(r[1] for r in runs),
                    )
                (w_first, w_total), (s_first, s_total) = rows["whole"], rows["stream"]
                print(
                    f"{preset:5s} {quantize or 'fp32':4s} {seconds:4.1f} s | whole TTFA {w_first:6.3f} s RTF "
                    f"{w_total / seconds:5.3f} | stream TTFA {s_first:6.3f} s RTF {s_total / seconds:5.3f} | "
                    f"TTFA whole/stream {w_first / s_first:5.1f}x | "
                    f"total stream/whole {s_total / w_total:4.2f}x",
                    flush=True,
                )


def demo(out: Path) -> None:
    import valle
    from valle.audio import write_wav
    from valle.cli.demo.scoring import AudioCache, eval_rows, one_thread, scorers
    from valle.cli.demo.settings import PROMPT_SECONDS, SIZES, sampler_config
    from valle.cli.demo.speak import read_manifest
    from valle.evaluate.report import evaluate_rows, format_markdown
    from valle.sampling.prompt import prompt_audio

    synthesizer = Synthesizer(valle.load(out / "model.pt"))
    codec, rate = synthesizer.codec, synthesizer.codec.sample_rate
    config = sampler_config(SIZES["full"])
    items = read_manifest(out)
    agree0, agree_nar, spoken = [], [], {"whole": [], "stream": []}
    for item in items:
        path = (out / item.truth).with_name(f"{item.prompt_key}.wav")
        prompt = Prompt(codec.encode(prompt_audio(path, rate, PROMPT_SECONDS), rate), source=str(path))
        [whole] = synthesizer.synthesize([item.text], [prompt], config=config)
        stream = synthesizer.stream(item.text, prompt, config=config)
        audio = torch.cat(list(stream))
        [codes] = stream.codes
        agree0.append(
            float((codes[0] == whole.codes[0]).float().mean()) if codes.shape == whole.codes.shape else 0.0
        )
        if codes.shape == whole.codes.shape:
            agree_nar.append(float((codes[1:] == whole.codes[1:]).float().mean()))
        for mode, wav in (("whole", whole.wav), ("stream", audio)):
            relative = f"samples/stream_check/{mode}/{item.key}.wav"
            write_wav(out / relative, wav, rate)
            spoken[mode].append(replace(item, outputs={"cross-utterance": relative}))
    candidates = list(dict.fromkeys(item.text for item in items))
    rows = {}
    for mode in ("whole", "stream"):
        [scored] = eval_rows(spoken[mode], AudioCache(out), rows=("cross-utterance",)).values()
        for s in scored:
            s.candidates = candidates
        rows[mode] = scored
    with one_thread():
        scores = evaluate_rows(rows, scorers=scorers, jobs=2)
    print(
        f"{len(items)} items; level-0 agreement {statistics.mean(agree0):.3f}; NAR code agreement "
        f"{statistics.mean(agree_nar):.3f} (stream against whole, levels 1..L-1)"
    )
    print(format_markdown(scores))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--frames", type=int, nargs="+", default=[150, 375])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo", type=Path, help="a `make demo` output folder: agreement and the instrument")
    args = parser.parse_args()
    logging.getLogger("valle").setLevel(logging.ERROR)  # random weights: the expected warnings, every run
    if args.demo:
        demo(args.demo)
    else:
        speed(args.presets, args.frames, args.repeats)


if __name__ == "__main__":
    main()
