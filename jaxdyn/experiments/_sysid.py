"""What the system-identification experiments share: measurement noise, coefficient scores
and a resumable sweep over noise levels."""

import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from ._records import append_result, start_results, summary_stats

__all__ = ["by_level", "coefficient_errors", "noise_sweep", "noisy"]


def noisy(x: np.ndarray, level: float, key, axis: int | None = 0) -> np.ndarray:
    """`x` plus Gaussian noise of standard deviation `level × RMS(x)` (the RMS over `axis`:
    per coordinate for `axis=0`, over everything for `None`), float64."""
    scale = level * np.sqrt(np.mean(x**2, axis=axis))
    return x + scale * np.asarray(jax.random.normal(key, x.shape, dtype=jnp.float64))


def coefficient_errors(coefficients, truth: np.ndarray) -> tuple[float, int]:
    """The worst relative error of the true (non-zero) terms and the number of wrong terms
    (true terms missed plus spurious ones)."""
    c = np.asarray(coefficients)
    true = truth != 0
    rel = np.abs(c - truth)[true] / np.abs(truth[true])
    return float(rel.max()), int(np.sum((c != 0) != true))


def noise_sweep(
    run_dir: Path,
    levels: list[float],
    num_draws: int,
    evaluate: Callable[[float, int], dict],
    *,
    resume: bool,
) -> tuple[dict, list[dict]]:
    """Run `evaluate(level, draw)` for every noise level and draw, with a progress bar, one
    row of `results.jsonl` per finished pair (a resumed run skips them). `evaluate` returns
    `{"scores": {method: (max_rel_error, wrong_terms)}, …}`. Returns the table `{method: [one
    row per level: noise_level, max_rel_coef_error and wrong_terms as mean ± sd]}` and the
    rows."""
    path, done = start_results(run_dir, ("noise_level", "draw"), resume=resume)
    units = [(level, draw) for level in levels for draw in range(num_draws)]
    for level, draw in tqdm(units, desc="noise sweep", file=sys.stderr, disable=None):
        if (level, draw) not in done:
            row = {"noise_level": level, "draw": draw, **evaluate(level, draw)}
            append_result(path, row)
            done[(level, draw)] = row
    rows = [done[unit] for unit in units]
    table = {}
    for method in rows[0]["scores"]:
        table[method] = []
        for level in levels:
            errors, wrong = zip(*(r["scores"][method] for r in rows if r["noise_level"] == level),
                                strict=True)  # fmt: skip
            table[method].append({"noise_level": level,
                                  "max_rel_coef_error": summary_stats(errors),
                                  "wrong_terms": summary_stats(wrong)})  # fmt: skip
    return table, rows


def by_level(table: dict) -> dict:
    """The sweep's means under flat keys, `{"errors" | "wrong_terms": {method: {"noise_5pct":
    mean}}}` (methods' spaces as underscores), for records and `--seeds` statistics."""

    def label(level: float) -> str:
        return f"noise_{100 * level:g}pct".replace(".", "_")

    return {
        out: {method.replace(" ", "_"): {label(r["noise_level"]): r[key]["mean"] for r in rows}
              for method, rows in table.items()}
        for out, key in (("errors", "max_rel_coef_error"), ("wrong_terms", "wrong_terms"))
    }  # fmt: skip
