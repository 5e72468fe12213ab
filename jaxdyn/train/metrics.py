"""The `metrics.jsonl` log: one JSON object per training step."""

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["append_metrics", "read_metrics", "truncate_metrics"]


def _plain(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def append_metrics(path: str | Path, rows: Iterable[dict]) -> None:
    """Append rows (dicts of scalars or arrays) to a JSON-lines file."""
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps({k: _plain(v) for k, v in row.items()}) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    """All rows of a JSON-lines metrics file (empty if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(path: str | Path, step: int) -> None:
    """Keep only the rows with `row["step"] < step` (used when resuming from a checkpoint)."""
    path = Path(path)
    if path.exists():
        rows = [row for row in read_metrics(path) if row["step"] < step]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
