"""python prepare.py layout=libritts input=DIR output=DIR codec=encodec — see docs/data.md."""

import os
from pathlib import Path

import hydra

os.environ.setdefault("VALLE_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="prepare")
def main(cfg) -> None:
    from valle.cli.prepare import run

    run(cfg)


if __name__ == "__main__":
    main()
