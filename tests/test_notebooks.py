"""Every notebook in `notebooks/` runs, cell by cell, and its own asserts hold.

The cells run in the test process, not in a Jupyter kernel (nbmake, used before 2026-12-06): a
kernel starts and imports JAX and jaxdyn again, ~1.2 s of CPU a notebook (notebooks 02 and 07,
two repeats each at load 12: 19.7 s against 17.3 s of user + sys). What the kernel gave is kept:
a fresh namespace per notebook; the library's default precision (x64 off while the notebook
runs, as in a new process, and the tests' float64 restored after, whatever happens; a notebook
that turns x64 on does so for itself); matplotlib's non-interactive backend, its rcParams
restored after; the notebook's folder as the working directory. What carries over from earlier
tests in the same worker: modules already imported, compiled programs, and the tests'
fast-compile XLA flags (tests/conftest.py). Warnings are errors here as in every test.
IPython-only syntax (magics, shell escapes) would not run, and the first test refuses it by
name, so a notebook stays plain Python.
"""

import ast
import json
import pathlib

import jax
import matplotlib
import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def _code_cells(path: pathlib.Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]  # nbformat 4: a source is a string or lines
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def test_there_are_notebooks_and_their_cells_are_plain_python():
    assert len(NOTEBOOKS) >= 9
    for path in NOTEBOOKS:
        for index, source in enumerate(_code_cells(path)):
            for line in source.splitlines():
                assert not line.lstrip().startswith(("%", "!")), (
                    f"{path.name} cell {index}: IPython syntax {line.strip()!r}"
                )
            ast.parse(source, filename=f"{path.name} cell {index}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs(path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")  # what a headless worker uses anyway
    monkeypatch.chdir(path.parent)
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    namespace = {"__name__": "__main__"}
    try:
        with matplotlib.rc_context():  # a notebook's rcParams end with it
            try:
                for index, source in enumerate(_code_cells(path)):
                    exec(compile(source, f"{path.name} cell {index}", "exec"), namespace)
            finally:
                plt.close("all")
    finally:
        jax.config.update("jax_enable_x64", x64)
