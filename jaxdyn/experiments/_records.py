"""What experiments record: `results.jsonl` (one row per finished unit of an experiment, a
model × seed × setting, so that `--resume` skips what is done), the loss curve of a run, and
the count of failed solves beside the metrics computed without them.

Rows go through the metrics log's reader and writer (`jaxdyn.train.metrics`): a torn last line
from a killed run is skipped."""

from pathlib import Path

import numpy as np

from ..metrics import wasserstein2_squared
from ..plotting import loss_curve
from ..train.metrics import append_metrics, read_metrics

__all__ = [
    "append_result",
    "failed_rows",
    "flatten",
    "loss_figure",
    "mean_se",
    "seed_statistics",
    "start_results",
    "summary_stats",
    "w2_squared",
]


def start_results(run_dir: Path, keys: tuple[str, ...], *, resume: bool) -> tuple[Path, dict]:
    """`(path, done)`: the run's `results.jsonl` and its finished rows, indexed by their values
    of `keys`. With `resume` the rows already written are kept (none if there is no file);
    without it the file starts empty."""
    path = run_dir / "results.jsonl"
    if not resume:
        path.write_text("")
        return path, {}
    return path, {tuple(row[k] for k in keys): row for row in read_metrics(path)}


def append_result(path: Path, row: dict) -> None:
    """Append one finished row."""
    append_metrics(path, [row])


def summary_stats(values) -> dict:
    """Mean, sample standard deviation (0 for one run) and the runs themselves."""
    values = np.asarray(values, dtype=float)
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "runs": values.tolist()}


def flatten(tree, prefix: str = "") -> dict:
    """The leaves of nested dicts under dotted keys (`{"test": {"nll": 1.0}}` → `test.nll`)."""
    if isinstance(tree, dict):
        pairs = (flatten(sub, f"{prefix}{key}.").items() for key, sub in tree.items())
        return {k: v for items in pairs for k, v in items}
    return {prefix[:-1]: tree}


def seed_statistics(summaries: dict) -> dict:
    """Per figure (a number or boolean in some run), over the runs of several seeds
    (`{seed: summary}`), under its dotted path:

    - a number in every run: `{"mean", "std", "runs"}` (sample standard deviation, 0 for one
      run); where a run reported a non-finite value or `None` (a failed evaluation),
      `{"mean": None, "std": None, "runs", "non_finite"}`: counted, never averaged over;
    - a boolean in every run (e.g. `target_met`): `{"true", "of"}`;
    - otherwise `{"left_out": why}` (not reported by every run, or not of one kind), so that
      no figure disappears without a word.
    """
    leaves = [flatten(summary) for summary in summaries.values()]
    stats = {}
    for key in dict.fromkeys(k for run in leaves for k in run):
        values = [run.get(key, _MISSING) for run in leaves]
        if not any(isinstance(v, int | float) for v in values):
            continue  # not a figure: text, lists, or None everywhere
        missing = sum(v is _MISSING for v in values)
        if missing:
            stats[key] = {"left_out": f"reported by {len(values) - missing} of {len(values)} runs"}
        elif all(isinstance(v, bool) for v in values):
            stats[key] = {"true": sum(values), "of": len(values)}
        elif any(isinstance(v, bool) for v in values):
            stats[key] = {"left_out": "a boolean in some runs only"}
        elif all(v is None or isinstance(v, int | float) for v in values):
            finite = [v is not None and bool(np.isfinite(v)) for v in values]
            runs = [float(v) if ok else None for v, ok in zip(values, finite, strict=True)]
            if all(finite):
                stats[key] = summary_stats(runs)
            else:
                stats[key] = {"mean": None, "std": None, "runs": runs,
                              "non_finite": finite.count(False)}  # fmt: skip
        else:
            stats[key] = {"left_out": "a number in some runs only"}
    return stats


_MISSING = object()


def mean_se(values) -> dict:
    """Mean, standard error of the mean (`None` for one value) and the count."""
    values = np.asarray(values, dtype=np.float64)
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else None
    return {"mean": float(values.mean()), "se": se, "n": int(values.size)}


def w2_squared(x, y) -> float | None:
    """`W2²` between the samples `x` and `y` (`jaxdyn.metrics.wasserstein2_squared`, in
    float64), or `None` where `x` has a non-finite value: a diverged solve, recorded as such."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        return None
    return wasserstein2_squared(x, np.asarray(y, dtype=np.float64))


def loss_figure(run_dir: Path, title: str) -> list[dict]:
    """The rows of the run's `metrics.jsonl`; their losses drawn to `loss.png` (if any)."""
    rows = read_metrics(run_dir / "metrics.jsonl")
    if rows:
        loss_curve(np.asarray([row["loss"] for row in rows]), run_dir / "loss.png", title=title)
    return rows


def failed_rows(values, axis: int = 0) -> np.ndarray:
    """A boolean mask over `axis` of `values`: True where any entry of that slice is
    non-finite. With `on_failure="nan"` a failed solve is NaN, so this marks the failed paths
    of a batch of solves, to be counted and left out of the metrics."""
    values = np.moveaxis(np.asarray(values), axis, 0)
    return ~np.all(np.isfinite(values.reshape(values.shape[0], -1)), axis=1)
