"""The import rules of docs/api.md ("Layers and imports"), read from the source."""

import ast
import json
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
    # capability packages; new families join this layer
    {"baselines", "generative", "learning", "physics", "regularize", "sysid"},
    {"config", "plotting"},
    {"experiments"},
    {"sweep"},
    {"cli"},
]
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}
HEAVY = ("sklearn", "sktime", "ott", "ot", "matplotlib", "jaxopt", "torch", "tensorflow", "optuna",
         "pysindy", "pydmd", "exponax")  # fmt: skip


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


# One fresh interpreter imports `jaxdyn`, then `jaxdyn.implicit`, then reads `jaxdyn.generative`
# as an attribute (the lazy path: not imported before), and records the modules loaded after
# each (each set contains what a fresh import of that module alone loads: a check on it is at
# least as strict); then reads a lazy top-level name.
_IMPORTS = """
import json, sys
loaded = {}
import jaxdyn
families = sorted({m.split('.')[1] for m in sys.modules if m.startswith('jaxdyn.')})
loaded['jaxdyn'] = sorted(sys.modules)
import jaxdyn.implicit
loaded['jaxdyn.implicit'] = sorted(sys.modules)
lazy = 'jaxdyn.generative' not in sys.modules  # read as an attribute: the lazy path
lazy = lazy and jaxdyn.generative.__name__ == 'jaxdyn.generative'
loaded['jaxdyn.generative'] = sorted(sys.modules)
from jaxdyn.models import NeuralODE
lazy = lazy and jaxdyn.NeuralODE is NeuralODE and 'models' in dir(jaxdyn)
print(json.dumps({'loaded': loaded, 'families': families, 'lazy': lazy}))
"""


@pytest.fixture(scope="module")
def imports() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORTS], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("module", ["jaxdyn", "jaxdyn.implicit", "jaxdyn.generative"])
def test_importing_leaves_heavy_libraries_unloaded(imports, module):
    """`import jaxdyn` (and its capability packages) costs JAX's core stack only: heavy
    libraries (jaxopt among them) are imported by the functions that use them."""
    heavy = sorted({m.split(".")[0] for m in imports["loaded"][module]} & set(HEAVY))
    assert not heavy, f"import {module} loads {heavy}"


def test_import_jaxdyn_loads_families_on_first_use(imports):
    """`import jaxdyn` loads `solve` and `train`; a family loads when first read, and the lazy
    top-level names are the families' own objects."""
    loaded = imports["families"]
    assert set(loaded) <= set(LAYERS[0]) | {"_jaxopt", "_solvers", "metrics", "solve", "train"}
    assert {"solve", "train"} <= set(loaded)
    assert imports["lazy"]
