"""The import rules of docs/api.md ("Layers and imports"), read from the source."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jaxdyn"

# Each layer imports only from the layers before it (and from itself within one package).
# Top-level private modules (`jaxdyn/_*.py`) are helpers shared by every layer.
LAYERS = [
    {"_checks", "_environment", "_evaluations", "_output", "_trees"},
    {"_jaxopt", "_solvers", "metrics"},
    {"solve"},
    {"implicit", "train"},
    {"data"},
    {"models"},
    {"baselines", "generative"},  # capability packages; new families join this layer
    {"config", "plotting"},
    {"experiments"},
    {"sweep"},
    {"cli"},
]
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}
HEAVY = ("sklearn", "sktime", "ott", "ot", "matplotlib", "jaxopt", "torch", "tensorflow", "optuna")


def _modules():
    """`(dotted name, package-relative parts, ast)` for every module of jaxdyn."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        package = name if is_package else name.rpartition(".")[0]
        yield name, package, ast.parse(path.read_text(), str(path))


def _imports(package: str, tree: ast.Module):
    """`(target module, imported names, line)` of every jaxdyn import in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "jaxdyn":
                yield target, [alias.name for alias in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jaxdyn":
                    yield alias.name, [], node.lineno


def _top(dotted: str) -> str:
    """The package of `jaxdyn.x.y` (`x`), or `""` for `jaxdyn` itself."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_package_has_a_layer():
    packages = {_top(name) for name, _, _ in _modules()} - {""}
    assert packages <= set(RANK), f"place {sorted(packages - set(RANK))} in LAYERS (docs/api.md)"


def test_packages_import_only_downward():
    wrong = []
    for name, package, tree in _modules():
        source = _top(name)
        if not source:  # jaxdyn/__init__.py re-exports the public API
            continue
        for target, _, line in _imports(package, tree):
            dest = _top(target)
            if dest in ("", source):
                continue
            if RANK[dest] >= RANK[source]:
                wrong.append(f"{name}:{line} imports {target} ({source} -> {dest})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_private_names_across_modules():
    """No `from x import _name` between modules, and no other package's private modules
    (a package's own private modules and top-level `jaxdyn._*` helpers are fine)."""
    wrong = []
    for name, package, tree in _modules():
        for target, names, line in _imports(package, tree):
            private_parts = [p for p in target.split(".")[2:] if p.startswith("_")]
            own = target == package or target.startswith(package + ".")
            if private_parts and not own and _top(target) != "":
                wrong.append(f"{name}:{line} imports the private module {target}")
            for imported in names:
                submodule = imported.startswith("_") and (
                    (own and target == package) or target == "jaxdyn"  # `from .. import _jaxopt`
                )
                if imported.startswith("_") and not submodule:
                    wrong.append(f"{name}:{line} imports {imported} from {target}")
    assert not wrong, "private imports:\n" + "\n".join(wrong)


@pytest.mark.parametrize("module", ["jaxdyn", "jaxdyn.implicit", "jaxdyn.generative"])
def test_importing_leaves_heavy_libraries_unloaded(module):
    """`import jaxdyn` (and its capability packages) costs JAX's core stack only: heavy
    libraries are imported by the functions that use them."""
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = sorted({m.split(".")[0] for m in loaded} & set(HEAVY))
    assert not heavy, f"import {module} loads {heavy}"


def test_import_jaxdyn_loads_families_on_first_use():
    """`import jaxdyn` loads `solve` and `train`; a family loads when first read, and the lazy
    top-level names are the families' own objects."""
    code = (
        "import sys, jaxdyn\n"
        "before = sorted({m.split('.')[1] for m in sys.modules if m.startswith('jaxdyn.')})\n"
        "from jaxdyn.models import NeuralODE\n"
        "assert jaxdyn.NeuralODE is NeuralODE and 'models' in dir(jaxdyn)\n"
        "assert jaxdyn.generative.__name__ == 'jaxdyn.generative'\n"
        "print(' '.join(before))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(loaded) <= set(LAYERS[0]) | {"_jaxopt", "_solvers", "metrics", "solve", "train"}
    assert {"solve", "train"} <= set(loaded)
