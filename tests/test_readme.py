"""The README's library example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)  # the example writes runs/mine
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    assert bool(namespace["sol"].succeeded)
    assert namespace["result"].step == 500
    assert (tmp_path / "runs" / "mine" / "checkpoint" / "state.eqx").is_file()


def test_readme_stochastic_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    namespace: dict = {}
    exec(compile(blocks[1], str(README), "exec"), namespace)
    assert namespace["sol"].ys.shape == (1000, 11, 1)
    assert namespace["logits"].shape == (1, 3)
