"""The package's import graph: no cycle, and every import points down the documented layers.

Every ``import`` counts: at module level, inside functions (lazy) and under
``if TYPE_CHECKING``. Importing ``a.b.c`` also runs the ``__init__`` of every package on the
way (``a.b``) that does not already contain the importer; those edges count too. The
package root ``reparam`` (the public facade, which imports from every layer) is the top
layer and is never an edge's target. The layers, lowest first, are the table of
docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reparam"

#: Lowest first. A module may import from its own layer or any layer below, never above.
LAYERS: list[list[str]] = [
    ["reparam.errors"],
    ["reparam.numerics", "reparam.registry", "reparam.files"],
    ["reparam.devices", "reparam.distributed", "reparam.optim", "reparam.data", "reparam.data.*", "reparam.networks", "reparam.tables", "reparam.tables.*"],
    ["reparam.latents", "reparam.latents.*", "reparam.likelihoods", "reparam.likelihoods.*"],
    ["reparam.flows", "reparam.flows.*", "reparam.priors", "reparam.priors.*"],
    ["reparam.model", "reparam.model.*"],
    ["reparam.objectives", "reparam.objectives.*"],
    ["reparam.evaluate", "reparam.evaluate.*"],
    ["reparam.config", "reparam.config_keys"],
    ["reparam.runs", "reparam.checkpoint", "reparam.share", "reparam.share.*"],
    ["reparam.report", "reparam.report.*", "reparam.explore", "reparam.explore.*"],
    ["reparam.train", "reparam.train.*"],
    ["reparam.*.commands", "reparam.*.command", "reparam.cli", "reparam.__main__", "reparam"],
]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def is_package(name: str, mods: dict[str, Path]) -> bool:
    return name in mods and mods[name].name == "__init__.py"


def imported(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its source."""
    package = name if is_package(name, mods) else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in mods else base)
    return {m for m in out if m in mods}


def edges() -> dict[str, set[str]]:
    """Module -> the package modules its imports run, implicit package __init__s included."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        for target in imported(name, path, mods):
            parts = target.split(".")
            for i in range(2, len(parts) + 1):  # every package on the way, but the root
                step = ".".join(parts[:i])
                if not (name == step or name.startswith(step + ".")):
                    targets.add(step)
        graph[name] = targets - {name}
    return graph


def layer(name: str) -> int:
    matches = [i for i, patterns in enumerate(LAYERS) if any(fnmatch(name, p) for p in patterns)]
    assert matches, f"{name} is in no layer of tests/test_imports.py (and docs/ARCHITECTURE.md)"
    return max(matches)  # commands match their package's layer and the top one


def test_every_module_has_a_layer():
    for name in modules():
        layer(name)


def test_imports_point_down_the_layers():
    wrong = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})" for a, targets in edges().items() for b in targets if layer(b) > layer(a)]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle():
    graph, state, cycles = edges(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_no_component_imports_config():
    """Components take their config section as a plain object; only the layers above config read it."""
    below = [n for n in modules() if layer(n) < layer("reparam.config")]
    graph = edges()  # parsed once: every module's file is read and walked
    offenders = [n for n in below if "reparam.config" in graph[n]]
    assert not offenders, offenders
