"""Imports point down the layers (README, "Layout"): each rule there, checked on every module's source.

The imports are read with `ast`, nested and `TYPE_CHECKING` ones included, so nothing is imported and the
whole check takes well under a second.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
VALLE = SRC / "valle"


@dataclass(frozen=True)
class Rule:
    """Modules under `scope` (less `exempt`) import nothing under `forbidden` (less `allowed`)."""

    name: str
    why: str
    scope: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    # module → reason: known violations, each an xfail(strict) case of its own, so fixing one flips it
    known: dict[str, str] = field(default_factory=dict)


HELPERS = ("valle.audio", "valle.errors", "valle.utils")
ABOVE_DATA = ("valle.models", "valle.training", "valle.sampling", "valle.export", "valle.evaluate")
RULES = [
    Rule(
        "models-without-lightning-or-hydra",
        "models/ is plain PyTorch: Valle(nn.Module) imports and runs without Lightning or Hydra",
        scope=("valle.models",),
        forbidden=("lightning", "pytorch_lightning", "hydra", "omegaconf"),
    ),
    Rule(
        "models-see-only-tensors",
        "a model takes tensors and its config: models/ imports no valle layer but the shared helpers",
        scope=("valle.models",),
        forbidden=("valle",),
        allowed=HELPERS,
    ),
    Rule(
        "data-below-models",
        "data/ never imports models/ or what builds on it: shards and batches are tested without a model",
        scope=("valle.data",),
        forbidden=ABOVE_DATA,
    ),
    Rule(
        "bottom-layers-import-only-helpers",
        "text/, codecs/ and the shared helpers (audio, errors, utils) are the bottom: "
        "they import no other valle layer",
        scope=("valle.text", "valle.codecs", "valle.audio", "valle.errors", "valle.utils"),
        forbidden=("valle",),
        allowed=HELPERS,
    ),
    Rule(
        "inference-without-training",
        "valle.load and valle.synthesize (export, checkpoints, sampling/, voice) never import training/ "
        "or data/: padding lives in utils/, below both",
        scope=("valle.export", "valle.checkpoints", "valle.sampling", "valle.voice"),
        forbidden=("valle.training", "valle.data"),
    ),
    Rule(
        "cache-internals-stay-in-models",
        "sampling/ decodes through the cache contracts (`DecodeCache`, `StaticCache`, `StaticStepping`), "
        "never through a particular backbone or its cache's insides",
        scope=("valle.sampling",),
        forbidden=(
            "valle.models.backbones.transformer",
            "valle.models.backbones.retnet",
            "valle.models.cache.KVCache",
        ),
    ),
    Rule(
        "lightning-only-in-training",
        "Lightning is imported only by training/, data/datamodule.py and cli/: valle.load needs none",
        scope=("valle",),
        exempt=("valle.training", "valle.data.datamodule", "valle.cli"),
        forbidden=("lightning", "pytorch_lightning"),
    ),
    Rule(
        "one-lightning-namespace",
        "`lightning` only, never `pytorch_lightning`: two namespaces in one process do not mix",
        scope=("valle",),
        forbidden=("pytorch_lightning",),
    ),
    Rule(
        "hydra-only-in-cli",
        "configs are composed at the edge: Hydra and OmegaConf only in cli/ (and demo.py, which composes "
        "train.py's config)",
        scope=("valle",),
        exempt=("valle.cli", "valle.demo"),
        forbidden=("hydra", "omegaconf"),
    ),
    Rule(
        "nothing-imports-cli",
        "cli/ is the top: run(cfg) functions over the library, which never calls back into them",
        scope=("valle",),
        exempt=("valle.cli",),
        forbidden=("valle.cli",),
        known={
            "valle.demo": "issue 12 item 3: demo.py calls valle.cli.train.run; "
            "the demo command belongs in cli/",
        },
    ),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, statement, modules) per import statement; `from a import b` names both a and a.b."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.append((node.lineno, ast.unparse(node), [alias.name for alias in node.names]))
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names = [module] + [f"{module}.{alias.name}" for alias in node.names if alias.name != "*"]
            found.append((node.lineno, ast.unparse(node), names))
    return found


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


MODULES = {module_name(path): path for path in sorted(VALLE.rglob("*.py"))}


def in_scope(rule: Rule, only: str | None = None) -> list[str]:
    names = [only] if only else [m for m in MODULES if m not in rule.known]
    return [m for m in names if under(m, rule.scope) and not under(m, rule.exempt)]


def violations(rule: Rule, only: str | None = None) -> list[str]:
    found = []
    for module in in_scope(rule, only):
        layer = ".".join(module.split(".")[:2])  # a layer may import itself
        for line, statement, names in imports(MODULES[module]):
            if any(under(n, rule.forbidden) and not under(n, rule.allowed + (layer,)) for n in names):
                path = MODULES[module].relative_to(SRC.parent)
                found.append(f"{path}:{line} `{statement}` breaks rule {rule.name!r}: {rule.why}")
    return found


def cases():
    for rule in RULES:
        yield pytest.param(rule, None, id=rule.name)
        for module, reason in rule.known.items():
            yield pytest.param(
                rule, module, id=f"{rule.name}[{module}]", marks=pytest.mark.xfail(strict=True, reason=reason)
            )


@pytest.mark.parametrize(("rule", "only"), cases())
def test_imports_point_down(rule: Rule, only: str | None) -> None:
    found = violations(rule, only)
    assert not found, "\n".join(found)


def test_every_rule_applies_to_some_module() -> None:
    """A renamed folder must not leave a rule checking nothing."""
    assert [r.name for r in RULES if not in_scope(r)] == []
    assert all(module in MODULES for r in RULES for module in r.known)


def test_nested_imports_are_read() -> None:
    """demo.py imports most of valle inside its functions; the reader must see those imports."""
    assert any("valle.cli.train.run" in names for _, _, names in imports(MODULES["valle.demo"]))


def module_imports(module: str) -> set[str]:
    """The valle modules `module` imports (a `from package import name` counts the package)."""
    return {name for _, _, names in imports(MODULES[module]) for name in names if name in MODULES} - {module}


def test_no_import_cycles() -> None:
    """A cycle (a imports b, b imports a, even inside a function) means the two are one concern split
    in two, or a piece that belongs below both: move it down (as `utils/padding.py`, `data/records.py`
    and `evaluate/scoring.py` were)."""
    graph = {module: module_imports(module) for module in MODULES}
    cycles = []
    for start in graph:
        stack, seen = [(start, (start,))], set()
        while stack:
            module, path = stack.pop()
            for nxt in graph[module]:
                if nxt == start:
                    cycles.append(" → ".join((*path, start)))
                elif nxt not in seen and nxt > start:  # each cycle once, from its smallest module
                    seen.add(nxt)
                    stack.append((nxt, (*path, nxt)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
