"""SampleAudio: after validation, speak a few validation texts and log the audio and spectrograms."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import lightning as L
import torch
from matplotlib.figure import Figure  # not pyplot, which would pick a backend for the process

from valle.audio import write_wav
from valle.card import ModelCard
from valle.codecs.base import Codec, CodecInfo
from valle.sampling.decode import Decoded, decode
from valle.sampling.pipeline import SamplerConfig
from valle.utils.batch import Batch, Conditioning

log = logging.getLogger(__name__)


class SampleAudio(L.Callback):
    """Synthesize `n_samples` rows of the first validation batch (their own prompts, greedy decoding),
    write them to `RUN_DIR/samples/stepN/` and log audio and spectrograms to TensorBoard.

    Args:
        n_samples: rows to speak.
        codec_weights: the codec's weights for decoding: None for those the data was encoded with, or
            "pretrained", "random" or a file.
        max_seconds: AR step limit per sample.
    """

    def __init__(
        self, n_samples: int = 2, codec_weights: str | None = None, max_seconds: float = 10.0
    ) -> None:
        self.n_samples, self.codec_weights, self.max_seconds = n_samples, codec_weights, max_seconds
        self._batch: Batch | None = None
        self._codec: Codec | None = None

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and not batch.repeat:
            self._batch = batch

    @torch.inference_mode()
    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self._batch is None:
            return
        card = cast(ModelCard, module.card)  # a ValleModule's
        info = card.codec
        if self._codec is None:
            self._codec = card.build_codec(self.codec_weights).to(module.device).eval()
        codec = self._codec
        rows = torch.arange(min(self.n_samples, self._batch.size), device=self._batch.cond.device)
        spoken = self._speak(module.model, self._batch.cond.select(rows), info)
        folder = Path(trainer.default_root_dir) / "samples" / f"step{trainer.global_step:07d}"
        for i, key in enumerate(self._batch.keys[: len(rows)]):
            wav = spoken.audio(codec, i) if int(spoken.lengths[i]) else torch.zeros(1)
            write_wav(folder / f"{key.replace('/', '_')}.wav", wav, info.sample_rate)
            self._log(trainer, f"val_samples/{i}", wav, info.sample_rate)
        log.info("validation samples: %s", folder)

    def _speak(self, model, cond: Conditioning, info: CodecInfo) -> Decoded:
        max_steps = max(1, int(self.max_seconds * info.frame_rate))
        config = SamplerConfig(ar_temperature=0.0, max_ar_steps=max_steps)
        # each row as training laid it out: a prefix row continues its prompt (its text covers the prompt,
        # its text positions and, with monotonic alignment, its start symbol follow from that)
        return decode(model, cond, config)

    @staticmethod
    def _log(trainer: L.Trainer, tag: str, wav: torch.Tensor, sample_rate: int) -> None:
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if experiment is not None and hasattr(experiment, "add_audio"):  # TensorBoard
                experiment.add_audio(tag, wav[None], trainer.global_step, sample_rate)
                fig = Figure(figsize=(6, 2.5))
                ax = fig.subplots()
                ax.specgram(wav.numpy(), Fs=sample_rate, NFFT=1024, noverlap=768)
                ax.set(xlabel="s", ylabel="Hz")
                experiment.add_figure(f"{tag}_spectrogram", fig, trainer.global_step)
