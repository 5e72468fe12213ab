"""The `metrics.jsonl` log: one JSON object per training step."""

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write

__all__ = ["append_metrics", "read_metrics", "truncate_metrics"]


def _plain(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def append_metrics(path: str | Path, rows: Iterable[dict]) -> None:
    """Append rows (dicts of scalars or arrays) to a JSON-lines file, in one write."""
    text = "".join(json.dumps({k: _plain(v) for k, v in row.items()}) + "\n" for row in rows)
    with open(path, "a") as f:
        f.write(text)
        f.flush()


def read_metrics(path: str | Path) -> list[dict]:
    """All rows of a JSON-lines metrics file (empty if it does not exist). A torn last line,
    left by a run killed while appending, is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {number + 1} is not JSON") from None
    return rows


def truncate_metrics(path: str | Path, step: int) -> None:
    """Keep only the rows with `row["step"] < step` (used when resuming from a checkpoint);
    the file is replaced atomically."""
    path = Path(path)
    if path.exists():
        rows = [row for row in read_metrics(path) if row["step"] < step]
        text = "".join(json.dumps(row) + "\n" for row in rows).encode()
        atomic_write(path, lambda f: f.write(text))
