"""python train.py experiment=retnet_dac data.root=SHARDS — see docs/training.md."""

import os
import sys
from pathlib import Path

import hydra

from valle.cli.argv import TRAIN_VERBATIM_KEYS, verbatim_overrides
from valle.errors import exit_on_user_error

os.environ.setdefault("VALLE_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
@exit_on_user_error
def main(cfg) -> float | None:
    from valle.cli.train import run

    return run(cfg)


if __name__ == "__main__":
    sys.argv[1:] = verbatim_overrides(sys.argv[1:], TRAIN_VERBATIM_KEYS)  # paths as typed
    main()
