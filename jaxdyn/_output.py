"""Where a run or a sweep writes when the user names no directory, and what a run directory
says about itself before anything is imported to read it (the CLI reads it before JAX starts)."""

import datetime
import itertools
import json
from pathlib import Path

__all__ = ["SEEDS_FILE", "new_output_dir", "read_seeds"]

SEEDS_FILE = "seeds.json"


def read_seeds(run_dir: str | Path) -> list[int] | None:
    """The seeds of the multi-seed run in `run_dir` (its `seeds.json`), or `None` for a
    single run."""
    path = Path(run_dir) / SEEDS_FILE
    return json.loads(path.read_text())["seeds"] if path.is_file() else None


def new_output_dir(root: str, name: str) -> Path:
    """Create and return `root/<name>/<date-time>`, with a suffix (`-1`, `-2`, …) when another
    run or sweep started in the same second: two never share a directory."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in itertools.count():
        out = Path(root) / name / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            out.mkdir(parents=True, exist_ok=False)
            return out
        except FileExistsError:
            continue
    raise AssertionError("unreachable")
