"""`python -m valle.export ckpt=PATH out=PATH [dtype=fp32|fp16|bf16]`: a checkpoint → one portable file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from valle.cli.options import REQUIRED, choice, parse_options
from valle.export import export_checkpoint


@dataclass
class ExportOptions:
    ckpt: str = REQUIRED  # a Lightning checkpoint (or an export, to convert its dtype)
    out: str = REQUIRED  # the file to write (atomically)
    dtype: str = choice("fp32", "fp16", "bf16")


def main(argv: list[str]) -> Path:
    options = parse_options("valle.export", ExportOptions, argv, doc=__doc__ or "")
    out = export_checkpoint(options.ckpt, options.out, options.dtype)
    print(f"exported {options.ckpt} → {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return out
