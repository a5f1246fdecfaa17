"""The package's layers and the one direction of dependency between them, held by a test.

Every `import` and `from ... import` anywhere in a module (also inside functions) counts: an
import placed inside a function to dodge a cycle is still an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gcsim"

# Layer -> the layers it may import (besides itself). The flow: spec -> sweep table -> fit ->
# behavioural model -> simulator -> validation report; the CLI sits on top of everything.
ALLOWED = {
    "core": set(),
    "spice": {"core"},
    "characterize": {"core", "spice"},
    "fit": {"core"},
    "hw": {"core", "fit"},
    "simulate": {"core", "fit", "hw"},
    "validate": {"core", "spice", "fit", "hw", "simulate"},
    "energy": {"core", "fit", "hw"},
    # The benches time every stage, the validation's SPICE tiles included (bench growth).
    "bench": {"core", "spice", "characterize", "fit", "hw", "simulate", "validate"},
    "pipeline": {"core", "spice", "characterize", "fit", "hw", "simulate", "validate"},
    "cli": {"core", "spice", "characterize", "fit", "hw", "simulate", "validate", "energy",
            "bench", "pipeline", "schemas", "accuracy"},
    "schemas": {"core", "spice", "characterize", "fit", "hw"},
    "nn": {"core", "fit", "hw", "simulate"},
    # Task accuracy on the twin: PyTorch models trained and evaluated through gcsim.nn; its
    # exported mode builds a bundle's published form (gcsim.hw.export) for the twin to run.
    "accuracy": {"core", "hw", "nn", "simulate"},
    "_data": set(),  # package data only: netlists, specs and fits in an installed wheel
}
# Top-level modules that belong to no layer: the package marker and `python -m gcsim`.
ROOT_MODULES = {"__init__", "__main__"}


def layer_of(module: str) -> str | None:
    """'gcsim.fit.cell' -> 'fit'; 'gcsim' -> None."""
    parts = module.split(".")
    if parts[0] != "gcsim" or len(parts) == 1:
        return None
    return parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, resolved to absolute names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from a.b import c` names module a.b.c or an attribute of a.b: keep a.b.c, and
            # whoever needs a module strips it back to the longest one that exists.
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names
                      if (target, alias.name) != ("gcsim", "__version__")]
    return [(line, target) for line, target in found if target.split(".")[0] == "gcsim"]


def violations(root: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        source = layer_of(module_name(path))
        if source is None:
            continue
        if source not in ALLOWED:
            if path.parent == root and path.stem in ROOT_MODULES:
                continue
            out.append(f"{path.relative_to(root.parent)}: module in no known layer {source!r}")
            continue
        for line, target in imports_of(path):
            target_layer = layer_of(target)
            if target_layer is None or target_layer == source:
                continue
            if target_layer not in ALLOWED[source]:
                out.append(f"{path.relative_to(root.parent)}:{line}: {source} imports "
                           f"{target} ({target_layer} is not below {source})")
    return out


def test_every_import_points_down_the_layers():
    assert violations() == []


# Third-party packages only some layers may import: torch is the optional `ml` extra, so the
# rest of gcsim must import (and run) without it (gcsim accuracy's command imports
# gcsim.accuracy only when it runs).
OPTIONAL_IMPORTS = {"torch": {"nn", "accuracy"}}


def optional_import_violations(root: Path = PACKAGE) -> list[str]:
    """Imports of an optional package (OPTIONAL_IMPORTS) outside the layers allowed it."""
    out = []
    for path in sorted(root.rglob("*.py")):
        layer = layer_of(module_name(path))
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                allowed = OPTIONAL_IMPORTS.get(name.split(".")[0])
                if allowed is not None and layer not in allowed:
                    out.append(f"{path.relative_to(root.parent)}:{node.lineno}: imports {name}, "
                               f"which only {', '.join(sorted(allowed))} may")
    return out


def test_only_gcsim_nn_and_accuracy_import_torch():
    assert optional_import_violations() == []


def test_a_planted_torch_import_is_caught(tmp_path):
    tree = tmp_path / "gcsim"
    for folder in ("simulate", "nn"):
        (tree / folder).mkdir(parents=True)
        (tree / folder / "__init__.py").write_text("")
    (tree / "__init__.py").write_text("")
    (tree / "simulate" / "fast.py").write_text("def f():\n    import torch.nn.functional\n")
    (tree / "nn" / "twin.py").write_text("import torch\nfrom torch import nn\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tree
    try:
        found = optional_import_violations(tree)
    finally:
        PACKAGE = saved
    assert len(found) == 1 and "simulate/fast.py:2: imports torch.nn.functional" in found[0]


def test_a_planted_back_edge_is_caught(tmp_path):
    """The check itself can fail: a fit module importing the simulator is reported."""
    tree = tmp_path / "gcsim"
    (tree / "fit").mkdir(parents=True)
    (tree / "simulate").mkdir()
    (tree / "__init__.py").write_text("")
    (tree / "fit" / "__init__.py").write_text("")
    (tree / "simulate" / "__init__.py").write_text("")
    (tree / "fit" / "cell.py").write_text("def f():\n    from gcsim.simulate import x\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tree
    try:
        found = violations(tree)
    finally:
        PACKAGE = saved
    assert len(found) == 1 and "fit imports gcsim.simulate" in found[0]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_the_layer_graph_has_no_cycle(layer):
    seen, stack = set(), [layer]
    while stack:
        current = stack.pop()
        for lower in ALLOWED[current]:
            assert lower != layer, f"{layer} can reach itself through {current}"
            if lower not in seen:
                seen.add(lower)
                stack.append(lower)


def module_cycles(root: Path = PACKAGE) -> list[list[str]]:
    """Cycles in the module import graph (every import counts, also those inside functions)."""
    modules = {module_name(path): path for path in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for _, target in imports_of(path):
            # `from gcsim.x import y` may name the module gcsim.x.y or an attribute of gcsim.x.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
        graph[name] = targets
    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for target in sorted(graph[node]):
            # A package's __init__ re-exporting its own modules is not a cycle back into it.
            if node.startswith(target + ".") or target.startswith(node + "."):
                continue
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycles_between_modules():
    assert module_cycles() == []


def test_a_planted_cycle_is_caught(tmp_path):
    tree = tmp_path / "gcsim"
    (tree / "fit").mkdir(parents=True)
    for name in ("__init__.py", "fit/__init__.py"):
        (tree / name).write_text("")
    (tree / "fit" / "schema.py").write_text("def f():\n    from gcsim.fit.kinds import K\n")
    (tree / "fit" / "kinds.py").write_text("from gcsim.fit import schema\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tree
    try:
        found = module_cycles(tree)
    finally:
        PACKAGE = saved
    assert found == [["gcsim.fit.kinds", "gcsim.fit.schema", "gcsim.fit.kinds"]]


def test_every_subpackage_ships_in_the_wheel():
    """pyproject.toml lists the packages (the data packages live outside gcsim/): a new
    subpackage missing from the list would be left out of the wheel."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    present = {module_name(init) for init in PACKAGE.rglob("__init__.py")}
    assert present - listed == set()
