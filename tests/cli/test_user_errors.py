"""A user's mistake prints one line and exits non-zero, from every entry point; a bug keeps its traceback."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.cli.conftest import run_entry_point
from tests.conftest import real_speech_dir
from valle.cli import recognizer as recognizer_cli
from valle.codecs import describe_codec
from valle.data.index import ShardIndex
from valle.errors import ConfigError, exit_on_user_error
from valle.text import SymbolMap

HYDRA_HINT = "HYDRA_FULL_ERROR"


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit status 1, and stderr ends with `error: ...` naming every fragment; no traceback, no Hydra hint."""
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and HYDRA_HINT not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(f in last for f in fragments), last


@pytest.fixture
def silent_wav(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(str(path), np.zeros(24_000, dtype=np.float32), 24_000)
    return path


def test_infer_py_names_a_missing_checkpoint_in_one_line_or_with_a_traceback_on_request(tmp_path):
    args = ("infer.py", f"ckpt={tmp_path / 'nope.ckpt'}", "text=Hello, you.", "prompt=ref.wav")
    assert_one_line_error(run_entry_point(*args, cwd=tmp_path), "nope.ckpt", "no such checkpoint")
    full = run_entry_point(*args, cwd=tmp_path, full_error=True)
    assert full.returncode != 0 and "Traceback" in full.stderr and "MissingFileError" in full.stderr


@pytest.mark.slow
def test_infer_py_user_mistakes_before_the_model_loads(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert_one_line_error(
        run_entry_point("infer.py", f"ckpt={garbage}", "text=Hi.", "prompt=r.wav", cwd=tmp_path),
        f"ckpt={garbage}",
        "not a valle checkpoint or export (torch could not read it: not the zip archive",
    )
    assert_one_line_error(
        run_entry_point("infer.py", "text=Hi.", "prompt=r.wav", cwd=tmp_path), "ckpt is required"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["prompt={silent}", "text=Hello."], ["silent.wav", "silent"]),
        (["prompt={speech}", "text=  ..."], ["empty text"]),
        (["prompt={speech}", "text=Hello.", "language=xx-nowhere"], ["unknown language 'xx-nowhere'"]),
        # decoding options this model was not trained for
        (["prompt={speech}", "text=Hello.", "sampler.cfg_scale=2"], ["cfg_scale=2.0", "model.text_dropout"]),
        (["prompt={speech}", "text=Hello.", "sampler.medusa=true"], ["medusa=true", "model.medusa.heads"]),
    ],
)
def test_infer_py_bad_prompt_or_text_is_one_line(random_export, silent_wav, tmp_path, args, fragments):
    speech = real_speech_dir() / "LJ049-0124.wav"
    args = [a.format(silent=silent_wav, speech=speech) for a in args]
    result = run_entry_point(
        "infer.py", f"ckpt={random_export}", *args, f"out={tmp_path / 'o.wav'}", cwd=tmp_path
    )
    assert_one_line_error(result, *fragments)


@pytest.mark.slow
def test_train_py_and_prepare_py_name_a_missing_folder(tmp_path):
    assert_one_line_error(
        run_entry_point("train.py", "experiment=tiny_cpu", f"data.root={tmp_path / 'none'}", cwd=tmp_path),
        "no shard index",
    )
    output = tmp_path / "shards, it's (v=2) [new]"  # taken verbatim: Hydra's logs go into this very folder
    assert_one_line_error(
        run_entry_point(
            "prepare.py",
            f"input={tmp_path / 'none'}",
            f"output={output}",
            "codec.weights=random",
            cwd=tmp_path,
        ),
        "input=",
        "no such folder",
    )
    assert (output / "logs").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, fragments",
    [
        (["valle.voice", "make", "prompt={silent}", "out={tmp}/v.npz", "codec.weights=random"], ["silent"]),
        (["valle.plot", "{tmp}"], ["no CSV log"]),
        (["valle.export", "ckpt={tmp}/none.ckpt", "out={tmp}/m.pt"], ["none.ckpt", "no such checkpoint"]),
        (["valle.export", "ckpt={tmp}/none.ckpt", "out={tmp}"], ["is a folder", "model.pt"]),
        (["valle.evaluate", "hyp_dir={tmp}/none", "ref_dir={tmp}"], ["hyp_dir=", "no such folder"]),
        (
            ["valle.demo", "out={tmp}", "stage=export"],
            ["run/checkpoints", "no checkpoint to export", "stage=train"],
        ),
    ],
)
def test_python_m_commands_report_user_errors_in_one_line(silent_wav, tmp_path, command, fragments):
    command = [c.format(silent=silent_wav, tmp=tmp_path) for c in command]
    assert_one_line_error(run_entry_point(*command, cwd=tmp_path), *fragments)


def test_the_wrapper_exits_on_user_errors_only(capsys, monkeypatch):
    monkeypatch.delenv(HYDRA_HINT, raising=False)

    def mistaken():
        raise ConfigError("texts=a.txt: the file holds no text\n(one utterance per line)")

    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(mistaken)()
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: texts=a.txt: the file holds no text (one utterance per line)\n"
    with pytest.raises(ZeroDivisionError):  # a bug: its traceback is the useful part
        exit_on_user_error(lambda: 1 / 0)()
    monkeypatch.setenv(HYDRA_HINT, "1")
    with pytest.raises(ConfigError):
        exit_on_user_error(mistaken)()


def test_recognizer_refuses_shards_without_utterances_and_a_missing_accelerator_up_front(tmp_path):
    ShardIndex(describe_codec("encodec", weights="random"), SymbolMap([], []), [], []).save(tmp_path)
    with pytest.raises(ConfigError, match="the shards hold no utterance"):
        recognizer_cli.main([f"data.root={tmp_path}", f"out={tmp_path}/r.pt", "accelerator=cpu"])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="accelerator=gpu: no CUDA device"):
            recognizer_cli.main([f"data.root={tmp_path}", f"out={tmp_path}/r.pt", "accelerator=gpu"])


def test_plotting_a_run_that_has_not_logged_yet_says_why(tmp_path):
    from valle.plot import plot_run

    (tmp_path / "csv" / "version_0").mkdir(parents=True)  # what the CSV logger leaves before its first row
    (tmp_path / "csv" / "version_0" / "hparams.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match="logged no metrics yet.*log_every_n_steps"):
        plot_run(tmp_path)
