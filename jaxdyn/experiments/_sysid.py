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

__all__ = [
    "by_level",
    "coefficient_errors",
    "noise_sweep",
    "noisy",
    "sweep_axes",
    "weak_residual",
]


def noisy(x: np.ndarray, level: float, key, axis: int | None = 0) -> np.ndarray:
    """`x` plus Gaussian noise of standard deviation `level × RMS(x)` (the RMS over `axis`:
    per coordinate for `axis=0`, over everything for `None`), float64."""
    scale = level * np.sqrt(np.mean(x**2, axis=axis))
    return x + scale * np.asarray(jax.random.normal(key, x.shape, dtype=jnp.float64))


def weak_residual(gram, coefficients, rhs) -> float:
    """`‖G ξ − b‖² / ‖b‖²`: how well coefficients `ξ` (`(features,)` or `(dim, features)`,
    pysindy's layout) explain a weak form `(G, b)` of data they were not fitted on — the
    validation score of the sysid experiments."""
    coefficients = jnp.asarray(coefficients)
    prediction = gram @ (coefficients.T if coefficients.ndim == 2 else coefficients)
    return float(jnp.sum((prediction - rhs) ** 2) / jnp.sum(jnp.asarray(rhs) ** 2))


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


def sweep_axes(error_axis, wrong_axis, table: dict, levels: list[float]) -> None:
    """Draw the sweep: each method's coefficient error (mean ± sd, log scale) and wrong terms
    against the noise level; validated variants dashed, in their method's colour."""
    for i, (name, rows) in enumerate(table.items()):
        err = np.array([[r["max_rel_coef_error"]["mean"], r["max_rel_coef_error"]["std"]]
                        for r in rows])  # fmt: skip
        style = "--" if name.endswith("validated") else "-"
        error_axis.errorbar(levels, err[:, 0], err[:, 1], fmt="o" + style, color=f"C{i // 2}",
                            capsize=3, label=name)  # fmt: skip
        wrong_axis.plot(levels, [r["wrong_terms"]["mean"] for r in rows], "o" + style,
                        color=f"C{i // 2}", label=name)  # fmt: skip
    for ax in (error_axis, wrong_axis):
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlabel("noise level (fraction of RMS)")
    error_axis.set(yscale="log", ylabel="max relative coefficient error", title="coefficients")
    wrong_axis.set(ylabel="wrong terms (missed + spurious)", title="support errors")
    wrong_axis.legend(fontsize=7)
