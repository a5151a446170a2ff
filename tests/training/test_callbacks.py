from __future__ import annotations

from lightning.pytorch.loggers import TensorBoardLogger

from tests.training.conftest import cpu_trainer, tiny_datamodule, tiny_module
from valle.training.callbacks import SampleAudio


def test_validation_samples_are_written_and_logged(tiny_shards, tmp_path):
    dm = tiny_datamodule(tiny_shards, n_buckets=1)  # one length bucket: the first batch holds several rows
    trainer = cpu_trainer(
        tmp_path,
        max_steps=2,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        limit_val_batches=1,
        logger=TensorBoardLogger(str(tmp_path), name="tb"),
        callbacks=[SampleAudio(n_samples=2, codec_weights="random", max_seconds=0.5)],
    )
    trainer.fit(tiny_module(dm), dm)
    wavs = sorted((tmp_path / "samples" / "step0000002").glob("*.wav"))
    assert len(wavs) == 2 and all(w.stat().st_size > 44 for w in wavs)
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
