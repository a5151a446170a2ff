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
    # `python -m valle.X` entry points (a `__main__` module, an `if __name__ == "__main__":` block) may
    # import what the rule forbids: they only hand the command line to the command in cli/
    entry_points_exempt: bool = False


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
        "valle.load and valle.synthesize (the card, export, checkpoints, sampling/, voice) never import "
        "training/ or data/: padding lives in utils/, below both",
        scope=(
            "valle.card",
            "valle.export",
            "valle.checkpoints",
            "valle.sampling",
            "valle.serving",
            "valle.cli.voice",
            "valle.cli.export",
            "valle.cli.serve",
        ),
        forbidden=("valle.training", "valle.data"),
    ),
    Rule(
        "sampling-reads-the-card",
        "sampling/ and serving/ learn what a model is from its `ModelCard` (valle.card), never from the "
        "files it came in: they import neither export.py nor checkpoints.py (cli/serve.py loads the file)",
        scope=("valle.sampling", "valle.serving"),
        forbidden=("valle.export", "valle.checkpoints"),
    ),
    Rule(
        "card-below-files-and-sampling",
        "the model card is plain data over models/, codecs/ and text/: it imports none of the layers "
        "that read or use it (export, checkpoints, sampling/, training/, evaluate/)",
        scope=("valle.card",),
        forbidden=("valle.export", "valle.checkpoints", "valle.sampling", "valle.training", "valle.evaluate"),
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
        "configs are composed at the edge: Hydra and OmegaConf only in cli/",
        scope=("valle",),
        exempt=("valle.cli",),
        forbidden=("hydra", "omegaconf"),
    ),
    Rule(
        "nothing-imports-cli",
        "cli/ is the top: run(cfg) functions over the library, which never calls back into them",
        scope=("valle",),
        exempt=("valle.cli",),
        forbidden=("valle.cli",),
        entry_points_exempt=True,
    ),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_main_guard(node: ast.AST) -> bool:
    """`if __name__ == "__main__":`"""
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators)
    )


def imports(path: Path, entry_points: bool = True) -> list[tuple[int, str, list[str]]]:
    """(line, statement, modules) per import statement; `from a import b` names both a and a.b.

    With `entry_points=False`, a `__main__` module and `if __name__ == "__main__":` blocks are skipped.
    """
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    if not entry_points and path.name == "__main__.py":
        return []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    if not entry_points:
        tree.body = [node for node in tree.body if not is_main_guard(node)]
    found = []
    for node in ast.walk(tree):
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
        for line, statement, names in imports(MODULES[module], not rule.entry_points_exempt):
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
    """The demo imports most of valle inside its functions; the reader must see those imports."""
    assert any("valle.cli.train.run" in names for _, _, names in imports(MODULES["valle.cli.demo.stages"]))


def test_only_entry_points_may_call_into_cli() -> None:
    """`python -m valle.demo` runs valle/demo.py, whose one job is to hand the command line to cli/."""
    assert any("valle.cli.demo" in names for _, _, names in imports(MODULES["valle.demo"]))
    assert imports(MODULES["valle.demo"], entry_points=False) == []
    assert imports(MODULES["valle.evaluate.__main__"], entry_points=False) == []


def module_imports(module: str) -> set[str]:
    """The valle modules `module` imports (a `from package import name` counts the package); an entry
    point's block runs only under `python -m`, never on import, so it cannot close a cycle."""
    found = imports(MODULES[module], entry_points=False)
    return {name for _, _, names in found for name in names if name in MODULES} - {module}


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
