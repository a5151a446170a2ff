"""Text + prompt → speech: the one inference path (CLI, Python API, notebook, demo).

import valle
loaded = valle.load("model.pt")
results = valle.synthesize(loaded, ["Hello there."], ["ref.wav"], ar_temperature=0.8, top_p=0.9)
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from valle.card import LoadedModel
from valle.codecs.base import Codec
from valle.errors import ConfigError
from valle.models.quantize import quantize as quantize_model
from valle.models.valle import Valle
from valle.recognizer_card import LoadedRecognizer, load_recognizer
from valle.sampling.ar import ArRows, check_guidance
from valle.sampling.best_of import check_best_of
from valle.sampling.candidates import check_medusa
from valle.sampling.decode import ar_limits, decode
from valle.sampling.pipeline import ArSampler, NarSampler, SamplerConfig, make_generator
from valle.sampling.prompt import Prompt, check_prompt_seconds, load_prompt
from valle.sampling.stream import StreamDecoder, StreamSettings
from valle.text.continuation import continuation_start
from valle.text.phonemize import TextError, phonemize
from valle.text.split import split_sentences
from valle.text.symbols import HEAD_IDS, TAIL_IDS
from valle.utils.batch import Conditioning

log = logging.getLogger(__name__)
LONG_TEXT_MODES = ("fixed", "sliding", "whole")
PromptSource = str | Path | Prompt  # an audio file, a voice preset (.npz) or a loaded prompt


@dataclass
class Synthesis:
    """One synthesized utterance."""

    text: str
    codes: torch.Tensor  # [L, T]
    wav: torch.Tensor  # [samples] at `sample_rate`
    sample_rate: int
    hit_limit: bool  # some sentence reached max_ar_steps without a stop token


class Spoken(NamedTuple):
    """One sentence's decode (`Synthesizer.generate`)."""

    codes: torch.Tensor  # [L, T]
    # [L - 1, T, K] the NAR's distributions whose expected codewords are decoded
    # (`SamplerConfig.expected_codewords`), else None
    expected: torch.Tensor | None
    hit_limit: bool  # it reached max_ar_steps without a stop token


@dataclass
class SpeechStream:
    """One text being spoken chunk by chunk (`Synthesizer.stream`): iterate it for the audio chunks
    ([samples] float at `sample_rate`); once a sentence is said, its codes [L, T] are in `codes` (and
    with `expected_codewords` the distributions [L - 1, T, K] its audio was decoded from, in `expected`)."""

    text: str
    sample_rate: int
    codes: list[torch.Tensor] = field(default_factory=list)
    expected: list[torch.Tensor | None] = field(default_factory=list)
    hit_limit: bool = False  # some sentence reached max_ar_steps without a stop token
    chunks: Iterator[torch.Tensor] = field(default_factory=lambda: iter(()))

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.chunks


def decoding_model(model: Valle, device: str, quantize: str | None = None) -> Valle:
    """`model` itself when it is ready to decode (on `device`, in eval mode, not to be quantized), else a
    ready copy: a caller's model is never moved, switched to eval mode or quantized behind its back."""
    target = torch.device(device)
    on_device = all(
        p.device.type == target.type and target.index in (None, p.device.index) for p in model.parameters()
    )
    if on_device and not model.training and not quantize:
        return model
    ready = copy.deepcopy(model).to(device).eval()
    return quantize_model(ready, quantize) if quantize else ready


class Synthesizer:
    """A loaded model with its codec, ready to speak.

    Args:
        loaded: from `valle.load`.
        codec: the codec to decode with (default: the model's, built with `codec_weights`: None for the
            weights it was trained with, see `ModelCard.build_codec`).
        device: where the model and codec run. `loaded.model` is never changed: when it is on another
            device or in training mode, the synthesizer decodes with a copy (one more model in memory).
        quantize: "int8" runs the model's linear layers and heads with int8 weights (CPU only, faster,
            slightly different tokens; see `valle.models.quantize`) on a copy, leaving `loaded.model`
            as it was; None keeps the weights as loaded.
        compile: decode AR steps through one compiled static graph (`valle.sampling.compiled`; the same
            tokens; CUDA graphs on a GPU); falls back to eager decoding with a log line.
        recognizer: judges `SamplerConfig.best_of` candidates (`valle.models.recognizer`; trained on the
            model's own shards: checked against its codec and symbol map here).

    Raises:
        ValueError: the codec or the recognizer does not read the model's codes.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        codec: Codec | None = None,
        device: str = "cpu",
        codec_weights: str | None = None,
        quantize: str | None = None,
        compile: bool = False,
        recognizer: LoadedRecognizer | None = None,
    ) -> None:
        self.loaded = loaded
        self.compile = compile
        self.model = decoding_model(loaded.model, device, quantize)
        self.codec = (codec or loaded.card.build_codec(codec_weights)).to(device).eval()
        loaded.card.codec.check_compatible(self.codec.info, "the decoding codec")
        if recognizer is not None:
            recognizer.check_model(loaded.card.symbols, loaded.card.codec, "the model")
            recognizer.to(device).network.eval()
        self.recognizer = recognizer
        self.device = device

    def text_ids(self, text: str, language: str) -> torch.Tensor:
        """Text → [bos, <lang>, phonemes..., eos] ids with the model's symbol map (punctuation it lacks
        folded into the pauses it knows: `SymbolMap.fold_punctuation`)."""
        unknown: Counter = Counter()
        symbols = self.loaded.card.symbols
        ids = symbols.encode(symbols.fold_punctuation(phonemize(text, language)), language, unknown)
        if unknown:
            log.warning(
                "%d phoneme(s) unknown to the model read as <unk>: %s",
                sum(unknown.values()),
                " ".join(unknown),
            )
        return torch.tensor(ids, dtype=torch.long)

    def prompt(
        self, source: str | Path | Prompt, prompt_seconds: float | None = 3.0, text: str | None = None
    ) -> Prompt:
        return source if isinstance(source, Prompt) else load_prompt(source, self.codec, prompt_seconds, text)

    def conditioning(self, texts: Sequence[str], prompts: Sequence[Prompt], language: str) -> Conditioning:
        """The model's input rows for (sentence, prompt) pairs, on the synthesizer's device.

        Raises:
            TextError: a text espeak-ng cannot phonemize (e.g. an unknown language).
        """
        ids = [
            self.text_ids(f"{p.text} {t}" if p.text else t, language)
            for t, p in zip(texts, prompts, strict=True)
        ]
        # A prompt with its transcript is continued: the text covers it (continuation mode).
        continues = torch.tensor([bool(p.text) for p in prompts])
        starts = None
        if self.model.config.monotonic_alignment:  # a continued prompt's own words are already said
            starts = torch.tensor(
                [self._continuation_start(row, p.text, language) for row, p in zip(ids, prompts, strict=True)]
            )
        cond = Conditioning.pad(
            ids, [p.codes for p in prompts], self.loaded.card.symbols.pad_id, continues, starts
        )
        return cond.to(self.device)

    def _continuation_start(self, ids: torch.Tensor, said: str | None, language: str) -> int:
        """Where the text pointer starts in a row's text `ids`: its first id, or after the words `said`
        that the prompt has spoken (`valle.text.continuation`)."""
        if not said:
            return 0
        symbols = self.loaded.card.symbols
        head, tail = HEAD_IDS, len(ids) - TAIL_IDS
        prompt = self.text_ids(said, language)[HEAD_IDS:-TAIL_IDS].tolist()
        separators = {symbols.id(" ")} if " " in symbols else set()
        return head + continuation_start(ids[head:tail].tolist(), prompt, separators)

    def stream(
        self,
        text: str,
        prompt: str | Path | Prompt,
        language: str = "en-us",
        config: SamplerConfig | None = None,
        settings: StreamSettings | None = None,
        prompt_seconds: float | None = 3.0,
    ) -> SpeechStream:
        """Speak `text` in `prompt`'s voice as audio chunks, each yielded as soon as it is decoded.

            for chunk in synthesizer.stream("Hello there. How are you?", "ref.wav"):
                play(chunk)  # [samples] float at synthesizer.codec.sample_rate

        Sentence after sentence, each with the prompt. Joined, the chunks are the whole utterance
        (`valle.sampling.stream`): a one-sentence text's level-0 codes are those `synthesize` gives with
        the same seed; the NAR levels are fixed chunk by chunk, from the frames so far.

        Args:
            settings: how the stream is cut (default: `StreamSettings.for_codec`, 0.5 s chunks).

        Raises:
            TextError: empty text or unknown language; AudioError: a bad prompt; ConfigError: beam search
                or best_of > 1 (they pick only at the end). Raised here, before the first chunk.
        """
        config = config or SamplerConfig()
        if config.beam_width > 1 or config.best_of > 1:
            raise ConfigError(
                "beam search and best_of pick their best candidate only at the end and cannot stream: "
                "beam_width=1 best_of=1"
            )
        sentences = split_sentences(text)
        if not sentences:
            raise TextError(f"empty text {text!r}: nothing to say")
        loaded = self.prompt(prompt, prompt_seconds)
        conds = [self.conditioning([sentence], [loaded], language) for sentence in sentences]
        stream = SpeechStream(text, self.codec.sample_rate)
        settings = settings or StreamSettings.for_codec(self.codec.frame_rate)
        stream.chunks = self._stream(conds, config, settings, stream)
        return stream

    @torch.inference_mode()
    def _stream(
        self, conds: list[Conditioning], config: SamplerConfig, settings: StreamSettings, stream: SpeechStream
    ) -> Iterator[torch.Tensor]:
        generator = make_generator(config.seed, self.device)
        nar_generator = make_generator(config.seed, self.device)  # its own: NAR draws leave the AR's alone
        sampler = ArSampler(config, self.model.config.stop_token)
        if config.medusa:
            log.info("streaming takes one frame a step: sampler.medusa applies to whole decodes, not here")
        for cond in conds:
            rows = ArRows(
                self.model, cond, sampler, ar_limits(config, cond), generator=generator, fast=self.compile
            )
            decoder = StreamDecoder(self.model, self.codec, cond, NarSampler(config), settings, nar_generator)
            while not rows.done:
                code = int(rows.step()[0])
                if not rows.done:  # one row: its stop is the batch's
                    chunk = decoder.push(code, rows.last_symbols()[0])
                    if chunk is not None:
                        yield chunk
            yield decoder.finish()
            stream.codes.append(decoder.codes())
            stream.expected.append(decoder.fixed_expected)
            stream.hit_limit = stream.hit_limit or bool(rows.hit_limit[0])

    def generate(
        self,
        texts: Sequence[str],
        prompts: Sequence[Prompt],
        language: str,
        config: SamplerConfig,
        progress: bool = False,
    ) -> list[Spoken]:
        """One AR + NAR pass for a batch of (text, prompt) pairs → each one's codes (`Spoken`)."""
        check_guidance(self.model, config.cfg_scale)  # before any work: one line, not a half-drawn bar
        check_medusa(self.model, config)
        check_best_of(config.best_of, self.recognizer)
        cond = self.conditioning(texts, prompts, language)
        steps = ar_limits(config, cond).max_steps
        bar = tqdm(total=steps, desc="AR", unit="step", disable=not progress, leave=False)
        levels = tqdm(
            total=self.model.config.n_levels - 1, desc="NAR", unit="level", disable=not progress, leave=False
        )
        out = decode(
            self.model,
            cond,
            config,
            fast=self.compile,
            recognizer=None if self.recognizer is None else self.recognizer.network,
            on_step=lambda _: bar.update(),
            on_level=lambda _: levels.update(),
        )
        bar.close()
        levels.close()
        if bool(out.hit_limit.any()):
            log.warning(
                "%d of %d utterance(s) reached max_ar_steps without a stop token (raise "
                "sampler.max_ar_steps, or check the prompt and text)",
                int(out.hit_limit.sum()),
                len(texts),
            )
        return [
            Spoken(
                out.codes[b, :, : int(n)].cpu(),
                None if out.expected is None else out.expected[b, :, : int(n)].cpu(),
                bool(out.hit_limit[b]),
            )
            for b, n in enumerate(out.lengths)
        ]

    def synthesize(
        self,
        texts: str | Sequence[str],
        prompts: PromptSource | Sequence[PromptSource],
        language: str = "en-us",
        config: SamplerConfig | None = None,
        long_text: str = "fixed",
        prompt_seconds: float | None = 3.0,
        progress: bool = False,
    ) -> list[Synthesis]:
        """Speak each text in the voice of its prompt.

        Args:
            texts: one string per utterance (a lone string is one utterance); long ones are split into
                sentences.
            prompts: one per text, or one for all (alone or in a list): audio files, voice presets (.npz)
                or `Prompt`s.
            language: espeak-ng language of the texts.
            config: sampler settings (defaults: `SamplerConfig()`).
            long_text: "fixed" (every sentence gets the same prompt), "sliding" (each sentence is
                prompted by the end of the previous one's output) or "whole" (the whole text in one AR
                run: for a model trained with `training.sliding_context` with `max_shift` and
                `text_before`, decoding with a `max_ar_context` inside its windows; docs/inference.md).
            prompt_seconds: audio prompts are cropped to this many seconds (None: kept whole); with
                "sliding", the length of the previous output that prompts the next sentence.

        Returns:
            one `Synthesis` per text, in order: a list, even for a lone string.

        Raises:
            TextError: empty text or unknown language; AudioError: a bad prompt; ConfigError: a bad
                setting, or as many prompts as neither 1 nor the texts.
        """
        config = config or SamplerConfig()
        if long_text not in LONG_TEXT_MODES:
            raise ConfigError(f"long_text={long_text!r}: choose one of {LONG_TEXT_MODES}")
        check_prompt_seconds(prompt_seconds)
        # A str is a Sequence of str too: taken as a list, "Hello" would be five texts "H", "e", ...
        texts = [texts] if isinstance(texts, str) else list(texts)
        prompts = [prompts] if isinstance(prompts, (str, Path, Prompt)) else list(prompts)
        if len(prompts) == 1 and len(texts) > 1:
            prompts = prompts * len(texts)
        if len(prompts) != len(texts):
            raise ConfigError(
                f"{len(texts)} texts but {len(prompts)} prompts; give one prompt, or one per text"
            )
        loaded_prompts = [self.prompt(p, prompt_seconds) for p in prompts]
        sentences = [split_sentences(t) for t in texts]
        for text, parts in zip(texts, sentences, strict=True):
            if not parts:
                raise TextError(f"empty text {text!r}: nothing to say")
        if long_text == "whole":
            sentences = [[" ".join(parts)] for parts in sentences]
        pieces = (self._sliding if long_text == "sliding" else self._fixed)(
            sentences, loaded_prompts, language, config, prompt_seconds, progress
        )
        return [
            self._finish(text, parts, whole=long_text == "whole")
            for text, parts in zip(texts, pieces, strict=True)
        ]

    def _fixed(self, sentences, prompts, language, config, prompt_seconds, progress):
        flat = [(s, p) for parts, p in zip(sentences, prompts, strict=True) for s in parts]
        out = iter(self.generate([s for s, _ in flat], [p for _, p in flat], language, config, progress))
        return [[next(out) for _ in parts] for parts in sentences]

    def _sliding(self, sentences, prompts, language, config, prompt_seconds, progress):
        pieces: list[list] = [[] for _ in sentences]
        current = list(prompts)
        for i in range(max(len(parts) for parts in sentences)):
            rows = [r for r, parts in enumerate(sentences) if i < len(parts)]
            outputs = self.generate(
                [sentences[r][i] for r in rows], [current[r] for r in rows], language, config, progress
            )
            for r, spoken in zip(rows, outputs, strict=True):
                pieces[r].append(spoken)
                frames = int((prompt_seconds or 3.0) * self.codec.frame_rate)
                current[r] = Prompt(spoken.codes[:, -frames:], None, "previous sentence")
        return pieces

    def _finish(self, text: str, parts: list[Spoken], whole: bool = False) -> Synthesis:
        codes = torch.cat([part.codes for part in parts], dim=1)
        found = [part.expected for part in parts if part.expected is not None]
        expected = torch.cat(found, dim=1) if len(found) == len(parts) else None  # every part, or none
        longest = self.loaded.card.stats.get("longest_seconds")
        # each sentence is one AR run: its length, not the joined output's, is what training bounds
        longest_sentence = max(part.codes.shape[1] for part in parts) / self.codec.frame_rate
        if longest and longest_sentence > longest:
            log.warning(
                "%s is longer (%.1f s) than the longest utterance seen in training (%.1f s); quality may "
                "drop: %s",
                "an AR run over the whole text" if whole else "an output sentence",
                longest_sentence,
                longest,
                "unless the model was trained for long runs (training.sliding_context with text_before) "
                "and decodes with sampler.max_ar_context, say it sentence by sentence (long_text=fixed)"
                if whole
                else "split the text further",
            )
        wav = self.codec.decode(codes, expected).cpu() if codes.shape[1] else torch.zeros(0)
        return Synthesis(text, codes, wav, self.codec.sample_rate, any(part.hit_limit for part in parts))


def synthesize(
    model: LoadedModel,
    texts: str | Sequence[str],
    prompts: PromptSource | Sequence[PromptSource],
    language: str = "en-us",
    codec_weights: str | None = None,
    device: str = "cpu",
    recognizer: LoadedRecognizer | str | Path | None = None,
    **sampler: Any,
) -> list[Synthesis]:
    """`valle.synthesize(model, texts, prompts, **sampler)` → one `Synthesis` per text, as a list (see
    `Synthesizer.synthesize`: a lone text or prompt is one, and one prompt serves every text). Sampler
    keys are `SamplerConfig`'s; `recognizer` (a `LoadedRecognizer` or its file) judges `best_of` draws."""
    known = {f.name for f in fields(SamplerConfig)}
    unknown = sorted(set(sampler) - known)
    if unknown:
        raise TypeError(f"unknown sampler setting(s) {unknown}; known: {sorted(known)}")
    config = replace(SamplerConfig(), **sampler)
    if recognizer is not None and not isinstance(recognizer, LoadedRecognizer):
        recognizer = load_recognizer(recognizer, device)
    synthesizer = Synthesizer(model, device=device, codec_weights=codec_weights, recognizer=recognizer)
    return synthesizer.synthesize(texts, prompts, language, config)
