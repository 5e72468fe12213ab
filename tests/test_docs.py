"""The API reference documents every public name (issue 12, §5).

A package's public names are what its `__init__` re-exports (`from .m import f as f`) or its
`__all__` lists (docs/api.md). The reference (mkdocs.yml, docs/reference/) renders each public
module of jaxdyn with one bare `::: jaxdyn.X` directive, and mkdocstrings selects the members
with Griffe's `is_public` (`filters: public`). These tests read the same Griffe model that the
build renders, so they need no build (`make docs` / `make test` run the strict build itself):

- every public module has a page;
- every name that is public at run time is one that the page renders;
- every public function and class has a docstring the reference shows. Constants (tables of
  names, numbers, type aliases) are exempt: the reference renders their value, which is what a
  reader looks up; a docstring under them is welcome.
"""

import functools
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import griffe
import pytest
import yaml

import jaxdyn

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"
DIRECTIVE = re.compile(r"^:::[ \t]*(\S+)[ \t]*$")

# Today's known gaps, by module: remove an entry when its fix lands (the xfails are strict, so
# a fixed module fails as XPASS and these lists cannot go stale).
# Public functions and classes without a docstring the reference can show:
KNOWN_UNDOCUMENTED: dict[str, list[str]] = {}
# Public names the reference cannot render (a function named like a public submodule: static
# analysis sees the submodule; hence the modules behind a package are private, `data/_toy2d.py`):
KNOWN_UNRENDERED: dict[str, list[str]] = {}

PUBLIC_MODULES = ["jaxdyn"] + [
    f"jaxdyn.{m.name}" for m in pkgutil.iter_modules(jaxdyn.__path__) if not m.name.startswith("_")
]


def _modules(known: dict[str, list[str]], problem: str) -> list:
    """`PUBLIC_MODULES` as parameters, the ones with a known gap marked `xfail(strict=True)`."""
    params = []
    for module in PUBLIC_MODULES:
        if module in known:
            reason = f"{problem}: " + ", ".join(f"{module}.{n}" for n in known[module])
            module = pytest.param(module, marks=pytest.mark.xfail(strict=True, reason=reason))
        params.append(module)
    return params


@functools.cache
def _griffe_package() -> griffe.Module:
    """jaxdyn as the reference sees it: static analysis with the extension mkdocs.yml loads,
    of the same source files as the imported package."""
    extensions = griffe.load_extensions(*_handler_options()["extensions"])
    source = Path(jaxdyn.__file__).resolve().parent.parent
    return griffe.load("jaxdyn", search_paths=[source], extensions=extensions)


@functools.cache
def _handler_options() -> dict:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            return plugin["mkdocstrings"]["handlers"]["python"]["options"]
    raise AssertionError("mkdocs.yml: no mkdocstrings plugin")


def _static_module(module_name: str) -> griffe.Module:
    package = _griffe_package()
    return package if module_name == "jaxdyn" else package[module_name.removeprefix("jaxdyn.")]


def _directives() -> dict[str, Path]:
    """`::: identifier` -> the reference page that renders it."""
    found = {}
    for page in sorted(REFERENCE.rglob("*.md")):
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith(":::"):
                match = DIRECTIVE.match(line)
                assert match, f"{page.relative_to(ROOT)}:{i + 1}: malformed directive {line!r}"
                following = lines[i + 1] if i + 1 < len(lines) else ""
                # Per-page options (a `members:` list, other filters) would hide names that
                # these tests count as rendered: every page uses mkdocs.yml's options.
                assert not following.startswith((" ", "\t")), (
                    f"{page.relative_to(ROOT)}:{i + 1}: `{match[1]}` has local options; "
                    "set options in mkdocs.yml so every page selects members the same way"
                )
                found[match[1]] = page
    return found


def _runtime_public(module) -> dict[str, object]:
    """Public names at run time: `__all__`, else every non-underscore name bar submodules."""
    if hasattr(module, "__all__"):
        return {name: getattr(module, name) for name in module.__all__}
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }


def _is_foreign(value) -> bool:
    """A re-exported function or class of another library (documented there)."""
    owner = getattr(value, "__module__", None)
    is_code = inspect.isclass(value) or inspect.isroutine(value)
    return is_code and isinstance(owner, str) and owner.split(".")[0] != "jaxdyn"


def test_options_select_public_names():
    """The tests below model mkdocstrings' selection with these options: keep them in step."""
    options = _handler_options()
    assert options.get("filters") == "public", options.get("filters")
    assert "members" not in options
    assert options.get("show_if_no_docstring") is True
    assert options.get("inherited_members", False) is False
    assert "griffe_public_redundant_aliases" in options.get("extensions", [])


def test_every_reference_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(entry):
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, list):
            for item in entry:
                yield from pages(item)
        elif isinstance(entry, dict):
            for item in entry.values():
                yield from pages(item)

    in_nav = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in REFERENCE.rglob("*.md")}
    assert on_disk <= in_nav, f"reference pages missing from mkdocs.yml nav: {on_disk - in_nav}"
    missing = {p for p in in_nav if not (ROOT / "docs" / p).is_file()}
    assert not missing, f"mkdocs.yml nav names pages that do not exist: {missing}"


def test_every_public_module_has_a_page():
    directives = _directives()
    missing = [m for m in PUBLIC_MODULES if m not in directives]
    assert not missing, "no reference page renders: " + ", ".join(
        f"{m} (add docs/reference/{m.split('.')[-1]}.md with `::: {m}` and list it in nav)"
        for m in missing
    )


@pytest.mark.parametrize("module_name", _modules(KNOWN_UNRENDERED, "not rendered"))
def test_every_public_name_is_rendered(module_name):
    """Each runtime public name is a member Griffe calls public, so its page renders it."""
    module = importlib.import_module(module_name)
    static = _static_module(module_name)
    problems = []
    for name, value in _runtime_public(module).items():
        if _is_foreign(value):
            continue
        member = static.members.get(name)
        if member is None:
            problems.append(f"{module_name}.{name}: not found by static analysis")
        elif member.is_module and not inspect.ismodule(value):
            problems.append(
                f"{module_name}.{name}: shadowed by the submodule of the same name, which the "
                "reference sees instead: rename the module (e.g. make it private) or the name"
            )
        elif not member.is_public:
            problems.append(
                f"{module_name}.{name}: public at run time but not rendered: re-export it as "
                f"`from .m import {name} as {name}` or list it in `__all__`"
            )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module_name", _modules(KNOWN_UNDOCUMENTED, "no docstring yet"))
def test_every_public_function_and_class_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    static = _static_module(module_name)
    missing = []
    for name, value in _runtime_public(module).items():
        is_code = inspect.isclass(value) or inspect.isroutine(value)
        if not is_code or _is_foreign(value):
            continue  # constants: the reference shows their value (see the module docstring)
        member = static.members.get(name)
        if member is None or member.is_module:
            continue  # not rendered at all: test_every_public_name_is_rendered says so
        if member.docstring is None or not member.docstring.value.strip():
            line = f"{module_name}.{name}: no docstring in the reference"
            if inspect.isroutine(value) and value.__doc__:
                line += (
                    " (its __doc__ is assigned at run time, unseen: write a def with a docstring)"
                )
            missing.append(line)
    assert not missing, "\n".join(missing)
