"""python infer.py ckpt=model.pt text="..." prompt=ref.wav — see docs/inference.md."""

import os
import sys
from pathlib import Path

import hydra

from valle.cli.argv import INFER_VERBATIM_KEYS, verbatim_overrides
from valle.errors import exit_on_user_error

os.environ.setdefault("VALLE_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="infer")
@exit_on_user_error
def main(cfg) -> None:
    from valle.cli.infer import run

    run(cfg)


if __name__ == "__main__":
    sys.argv[1:] = verbatim_overrides(sys.argv[1:], INFER_VERBATIM_KEYS)  # sentences and paths as typed
    main()
