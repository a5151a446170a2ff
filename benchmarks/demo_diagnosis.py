"""Where a demo model loses the words: phone error rate of each stage between the recording and the output.

    python benchmarks/demo_diagnosis.py --out outputs/demo --model outputs/demo/model.pt [--group builtin]

For the first `--items` recordings of `--voices` voices of the demo corpus (`--group builtin`: voices and
sentences it was trained on; `held_out`: neither), each prompted by the voice's next recording
(cross-utterance, 3 s), pocketsphinx's phone decoding reads:

- the recording, and its codec resynthesis (every level);
- the true level 0 alone, and the true level 0 with the NAR's levels above it;
- the AR's teacher-forced argmax (each frame predicted from the true frames before it), alone and
  with the NAR's levels;
- the model's own output (the demo's sampler), with sentence ID among `--candidates` texts of the group.

A stage that loses much more than the one before it is where to look (docs/benchmarks.md, "Where the
words are lost").
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

import valle
from valle.audio import load_for_codec
from valle.cli.demo.settings import PROMPT_SECONDS, SIZES, sampler_config
from valle.evaluate.phones import PhoneRecognizer, per, text_to_phones
from valle.evaluate.sentence_id import SentenceIdentifier
from valle.sampling.nar import decode_nar
from valle.sampling.pipeline import NarSampler, SamplerConfig
from valle.sampling.prompt import Prompt, prompt_audio
from valle.sampling.synthesize import Synthesizer
from valle.utils.batch import Batch, Conditioning

STAGES = (
    "recording",
    "resynthesis",
    "true level 0",
    "true level 0 + NAR",
    "teacher-forced AR",
    "teacher-forced AR + NAR",
    "free running",
)


def recordings(out: Path, group: str, voices: int, items: int) -> list[tuple[Path, Path, str]]:
    """(recording, prompt recording, transcript) for the first `items` of the first `voices` voices."""
    chosen = []
    for folder in sorted((out / "corpus" / group).iterdir())[:voices]:
        wavs = sorted(folder.glob("*.wav"))
        chosen += [
            (wavs[i], wavs[i + 1], wavs[i].with_suffix(".txt").read_text().strip()) for i in range(items)
        ]
    return chosen


@torch.inference_mode()
def stage_audio(synthesizer: Synthesizer, wav: Path, prompt: Prompt, text: str) -> dict[str, torch.Tensor]:
    """Every stage but free running, for one recording."""
    model, codec, rate = synthesizer.model, synthesizer.codec, synthesizer.codec.sample_rate
    truth = load_for_codec(wav, rate)
    codes = codec.encode(truth, rate)  # [L, T]
    ids = synthesizer.text_ids(text, "en-us")
    cond = Conditioning.pad([ids], [prompt.codes], synthesizer.loaded.symbols.pad_id, torch.tensor([False]))
    batch = Batch(cond, codes[None], torch.tensor([codes.shape[1]]))
    [ar] = model(batch, torch.zeros(1, dtype=torch.long)).levels
    argmax = ar.logits[:, : model.config.codebook_size].argmax(-1)[: codes.shape[1]]

    def with_nar(level0: torch.Tensor) -> torch.Tensor:
        return decode_nar(model, cond, level0[None], batch.code_lengths, NarSampler(SamplerConfig()))[0]

    return {
        "recording": truth,
        "resynthesis": codec.decode(codes),
        "true level 0": codec.decode_levels(codes[:1]),
        "true level 0 + NAR": codec.decode(with_nar(codes[0])),
        "teacher-forced AR": codec.decode_levels(argmax[None]),
        "teacher-forced AR + NAR": codec.decode(with_nar(argmax)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--model", type=Path, required=True, help="an exported model or a training snapshot")
    parser.add_argument("--group", default="builtin", choices=("builtin", "held_out"))
    parser.add_argument("--voices", type=int, default=3)
    parser.add_argument("--items", type=int, default=5, help="recordings per voice")
    parser.add_argument("--candidates", type=int, default=60, help="sentence ID among this many texts")
    args = parser.parse_args()
    torch.manual_seed(0)
    synthesizer = Synthesizer(valle.load(args.model))
    if not hasattr(synthesizer.codec, "decode_levels"):
        raise SystemExit(
            f"{args.model}: its codec {synthesizer.codec.name!r} cannot decode level 0 alone; "
            "this diagnosis needs the demo's mel codec"
        )
    rate = synthesizer.codec.sample_rate
    chosen = recordings(args.out, args.group, args.voices, args.items)
    prompts = [
        Prompt(synthesizer.codec.encode(prompt_audio(p, rate, PROMPT_SECONDS), rate), source=str(p))
        for _, p, _ in chosen
    ]
    texts = [text for _, _, text in chosen]
    others = sorted(
        {p.read_text().strip() for p in (args.out / "corpus" / args.group).glob("*/*.txt")} - set(texts)
    )
    random.Random(0).shuffle(others)
    candidates = list(dict.fromkeys(texts + others))[: max(args.candidates, len(set(texts)))]
    spoken = synthesizer.synthesize(
        texts, prompts, "en-us", sampler_config(SIZES["full"]), prompt_seconds=None
    )
    phones, identifier = PhoneRecognizer(), SentenceIdentifier(candidates)
    heard: dict[str, list[list[str]]] = {stage: [] for stage in STAGES}
    identified = 0
    for (wav, _, text), prompt, output in zip(chosen, prompts, spoken, strict=True):
        audio = {**stage_audio(synthesizer, wav, prompt, text), "free running": output.wav}
        for stage in STAGES:
            heard[stage].append(phones.recognize(audio[stage].reshape(-1), rate))
        guess = identifier.identify(output.wav, rate)
        identified += guess is not None and candidates[guess] == text
    references = [text_to_phones(text) for text in texts]
    print(f"{args.model} on {len(chosen)} {args.group} recordings")
    print("| what is decoded | PER % |\n|---|---:|")
    for stage in STAGES:
        print(f"| {stage} | {100 * per(references, heard[stage]):.1f} |")
    print(f"free running: sentence ID {identified}/{len(chosen)} among {len(candidates)} texts")


if __name__ == "__main__":
    main()
