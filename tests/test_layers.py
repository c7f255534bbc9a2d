"""The package's layers: imports only go down them, and no module imports itself round a circle.

The layer order is written here, once, lowest first. A module's layer is the first folder
under ``sae_paper/`` (``sae_paper/core/train.py`` is in ``core``); the top-level modules are
named one by one. Modules of one layer may import each other (the circle check still
applies); a module may import any lower layer, never a higher one. Every import counts,
also one inside a function: a lazy import still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sae_paper

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("data",),
    ("core",),
    ("analysis", "interop"),
    ("report",),
    ("chapters",),
    ("book",),
    ("cli", "__main__", "__init__"),
)
"""Lowest first. ``__init__`` is the package's own facade (``from sae_paper import make_sae``):
it sits on top, so no module of the package may import from ``sae_paper`` itself."""

RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
PACKAGE_DIR = Path(sae_paper.__file__).parent


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the package's modules it imports (``from a.b import c`` counts as ``a.b.c``
    where ``c`` is a module, else as ``a.b``), for every ``.py`` file under ``root``."""
    modules = {module_name(path, root, package): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    targets.add(candidate if candidate in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def layer_of(module: str, package: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(graph: dict[str, set[str]], package: str) -> list[str]:
    """Every import from a lower layer into a higher one, as ``importer (layer) → imported (layer)``."""
    found = []
    for importer, targets in sorted(graph.items()):
        low = layer_of(importer, package)
        if low not in RANK:
            found.append(f"{importer}: its layer {low!r} is not in LAYERS")
            continue
        for target in sorted(targets):
            high = layer_of(target, package)
            if RANK.get(high, len(LAYERS)) > RANK[low]:
                found.append(f"{importer} ({low}) → {target} ({high})")
    return found


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_imports_only_go_down_the_layers():
    graph = import_graph(PACKAGE_DIR, "sae_paper")
    assert len(graph) > 40, "the walk found too few modules: is the package where the test looks?"
    assert upward_imports(graph, "sae_paper") == []


def test_no_import_circles():
    assert import_circles(import_graph(PACKAGE_DIR, "sae_paper")) == []


def test_every_layer_folder_says_what_it_holds():
    for folder in sorted(p for p in PACKAGE_DIR.iterdir() if p.is_dir() and any(p.glob("*.py"))):
        assert folder.name in RANK, f"{folder.name}/ is a folder of sae_paper but not a layer of LAYERS"
        docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
        assert len(docstring.split()) >= 30, f"{folder.name}/__init__.py needs a paragraph saying what lives there"


def test_modules_stay_small_enough_to_hold_in_your_head():
    too_long = {str(p.relative_to(PACKAGE_DIR)): n for p in PACKAGE_DIR.rglob("*.py")
                if (n := len(p.read_text().splitlines())) > 450}
    assert too_long == {}


@pytest.fixture
def toy_package(tmp_path: Path) -> Path:
    """A package with one import per layer, all downward: the checks must pass it."""
    root = tmp_path / "toy"
    files = {
        "__init__.py": "from toy.errors import Oops\n",
        "errors.py": "class Oops(Exception): pass\n",
        "data/__init__.py": "",
        "data/paths.py": "from toy.errors import Oops\n",
        "core/__init__.py": "",
        "core/train.py": "from toy.data import paths\nfrom .sae import SAE\n",
        "core/sae.py": "def f():\n    from toy.data.paths import Oops\n",
        "chapters/__init__.py": "",
        "chapters/one.py": "import toy.core.train\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checks_pass_a_package_that_only_imports_downward(toy_package):
    graph = import_graph(toy_package, "toy")
    assert graph["toy.core.train"] == {"toy.data.paths", "toy.core.sae"}
    assert upward_imports(graph, "toy") == [] and import_circles(graph) == []


def test_an_upward_import_is_caught_even_inside_a_function(toy_package):
    (toy_package / "data/paths.py").write_text("def load():\n    from toy.core.train import SAE\n")
    assert upward_imports(import_graph(toy_package, "toy"), "toy") == ["toy.data.paths (data) → toy.core.train (core)"]


def test_importing_the_facade_from_inside_the_package_is_upward(toy_package):
    (toy_package / "core/sae.py").write_text("from toy import Oops\n")
    assert upward_imports(import_graph(toy_package, "toy"), "toy") == ["toy.core.sae (core) → toy (__init__)"]


def test_a_circle_inside_one_layer_is_caught(toy_package):
    (toy_package / "core/sae.py").write_text("from . import train\n")
    assert import_circles(import_graph(toy_package, "toy")) == [["toy.core.sae", "toy.core.train"]]


def test_the_checkout_is_found_from_the_package_wherever_the_process_runs(tmp_path):
    """``repo_root`` counts folders up from ``data/paths.py``: moving that file must move the count too."""
    import subprocess
    import sys

    found = subprocess.run([sys.executable, "-c", "from sae_paper.data.paths import repo_root; print(repo_root())"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found) == PACKAGE_DIR.parents[1] and (Path(found) / "pyproject.toml").is_file()
