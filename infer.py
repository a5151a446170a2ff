"""python infer.py ckpt=model.pt text="..." prompt=ref.wav — see docs/inference.md."""

import os
from pathlib import Path

import hydra

os.environ.setdefault("VALLE_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="infer")
def main(cfg) -> None:
    from valle.cli.infer import run

    run(cfg)


if __name__ == "__main__":
    main()
