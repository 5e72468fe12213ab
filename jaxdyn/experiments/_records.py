"""`results.jsonl`: one row per finished unit of an experiment (a model × seed × setting), so
that `--resume` skips what is done. Rows go through the metrics log's reader and writer
(`jaxdyn.train.metrics`): a torn last line from a killed run is skipped."""

from pathlib import Path

import numpy as np

from ..train.metrics import append_metrics, read_metrics

__all__ = ["append_result", "read_results", "summary_stats"]


def read_results(path: Path, keys: tuple[str, ...]) -> dict[tuple, dict]:
    """The rows of `path` (none if it does not exist), indexed by their values of `keys`."""
    return {tuple(row[k] for k in keys): row for row in read_metrics(path)}


def append_result(path: Path, row: dict) -> None:
    """Append one finished row."""
    append_metrics(path, [row])


def summary_stats(values) -> dict:
    """Mean, sample standard deviation (0 for one run) and the runs themselves."""
    values = np.asarray(values, dtype=float)
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "runs": values.tolist()}
