"""Command-line values taken verbatim: sentences and file paths pass through Hydra's override grammar.

Hydra parses `key=value` with a grammar in which `,` makes a sweep, `[...]`/`{...}` make a list or a
dict, `'`, `"`, `(`, `)`, `:`, `=`, `#`, `~` and `$` are syntax, and `${...}` is interpolated. A
sentence as people write it (`text="Hello there, it's me."`) or a Lightning checkpoint path
(`ckpt=epoch=3-step=100.ckpt`) then fails to parse or means something else. The root shims rewrite
the values of the keys listed here into a quoted literal before Hydra sees them, so whatever the
shell passed arrives in the config unchanged.

One limit: Hydra resolves the name of its run directory once more when it configures its log file,
so a `${` in prepare.py's `output` (its logs go under it) still reaches Hydra's resolver there.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from hydra.core.override_parser.types import Quote, QuotedString

INFER_VERBATIM_KEYS = ("text", "prompt_text", "ckpt", "prompt", "texts", "out", "out_dir")
PREPARE_VERBATIM_KEYS = ("input", "output")
TRAIN_VERBATIM_KEYS = ("data.root", "run_dir", "init_from", "ckpt_path")

# `key=value`, with Hydra's optional `+` (add) or `++` (force-add) before the key.
_OVERRIDE = re.compile(r"^(?P<key>\+{0,2}(?P<name>[\w.]+))=(?P<value>.*)$", re.DOTALL)
# A run of backslashes before `${`: OmegaConf reads `\${` as a literal `${`, and `\\` before it as one `\`.
_INTERPOLATION = re.compile(r"(\\*)\$\{")


def escape_interpolation(text: str) -> str:
    """`text` as an OmegaConf string value that reads back as `text`: no `${...}` is ever resolved.

    Backslashes right before `${` are doubled (OmegaConf halves them there) and one more escapes the `$`.
    """
    return _INTERPOLATION.sub(lambda m: m.group(1) * 2 + "\\${", text)


def literal_override(key: str, value: str) -> str:
    """`key='value'` in Hydra's override grammar, parsed back to exactly `value` in the composed config."""
    return f"{key}={QuotedString(text=escape_interpolation(value), quote=Quote.single).with_quotes()}"


def verbatim_overrides(argv: Sequence[str], keys: Collection[str]) -> list[str]:
    """Quote the values of `keys` in command-line overrides; every other argument passes unchanged.

    Args:
        argv: the arguments after the program name, as the shell passed them.
        keys: config keys whose values are free text or file paths.

    Returns:
        The arguments for Hydra, e.g. `text=Hi, you` → `text='Hi, you'`.
    """
    rewritten = []
    for arg in argv:
        match = _OVERRIDE.match(arg)
        if match and match["name"] in keys:
            arg = literal_override(match["key"], match["value"])
        rewritten.append(arg)
    return rewritten
