"""What the `solver_regularisation*` experiments share (issue 19 §2): the regulariser and
weight-grid sections, the loop over regulariser × weight × seed, the validated choice of the
best regulariser, and the NFE-against-metric figure. Each task module supplies a `Task`.

Protocol. For each regulariser of `regularisation.kinds` (`none` and the `jaxdyn.regularize`
kinds), each weight of its grid `regularisation.weights.KIND` and each of `num_seeds` seeds
(the same initialisation and batches for every regulariser and weight of a seed), the task's
model is trained by `fit` with the task's loss plus the weighted penalty. Then, for the final
model (nothing is selected during training): `train_seconds`, and on the validation and test
splits the task metric and the mean NFE and accepted steps of an adaptive prediction solve
(`evaluation.*`, the same for every regulariser).

Choice, on validation only: a (regulariser, weight) is *within spread* when its mean
validation metric is no worse than the unregularised mean by more than one sample sd of the
unregularised seeds (better counts as within); among those, the one with the lowest mean
validation NFE is the best, and `nfe_ratio_best` is its mean test NFE over the unregularised
mean test NFE, reported only if its test metric is within the same spread on test
(`equal_accuracy_on_test`; else `None`, with the ratio kept as `nfe_ratio_best_any_accuracy`).
"""

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PRNGKeyArray
from omegaconf import DictConfig

from ..config import ConfigError, at_least, choice, distinct_names, positive, positive_list, section
from ..plotting import Figure
from ..regularize import KINDS, Regularizer
from ..solve import SOLVERS
from ..train import FitResult
from ._records import append_result, start_results, summary_stats
from ._training import fit_from_config

__all__ = ["NAMES", "EvaluationConfig", "RegularisationConfig", "Task", "TaskConfig",
           "WeightsConfig", "check_grid", "check_solve", "label", "report", "run_task",
           "train"]  # fmt: skip

NAMES = ("none", *KINDS)
_STIFFNESS_SOLVERS = ("tsit5", "dopri5")  # the stiffness estimate's solvers (STABILITY_SIZES)


@dataclasses.dataclass
class WeightsConfig:
    """A grid of weights per regulariser (each trained and scored; the choice among them is
    made on validation). The defaults are the spiral task's a-priori levels (see its config)."""

    error: list[float] = positive_list([1e-2], "weights")
    stiffness: list[float] = positive_list([2e-4], "weights")
    local_error: list[float] = positive_list([3e-2], "weights")
    local_stiffness: list[float] = positive_list([3e-4], "weights")
    taylor: list[float] = positive_list([1e-5], "weights")


@dataclasses.dataclass
class RegularisationConfig:
    kinds: list[str] = distinct_names(NAMES, NAMES)
    weights: WeightsConfig = section(WeightsConfig)
    reduction: str = choice("max", ("max", "sum"))  # of the stiffness penalties over steps
    taylor_order: int = at_least(2, 1)


@dataclasses.dataclass
class EvaluationConfig:
    """The adaptive prediction solve whose NFE is counted (the same for every regulariser)."""

    solver: str = choice("dopri5", SOLVERS)
    rtol: float = positive(1e-5)
    atol: float = positive(1e-5)
    max_steps: int = at_least(16384, 1)


@dataclasses.dataclass
class TaskConfig:
    """The keys every task's config has (each task adds `experiment`, its data, model, solves
    and `train`)."""

    seed: int = 0
    num_seeds: int = at_least(3, 1)  # seeds seed, seed+1, …: the same for every configuration
    target_nfe_ratio: float = positive(0.75)
    figures: bool = True
    regularisation: RegularisationConfig = section(RegularisationConfig)


def check_grid(cfg: DictConfig) -> None:
    """Each (regulariser, weight) names its own run directory (`label`): no two may share one."""
    labels = [label(kind, weight) for kind, weight in _grid(cfg)]
    repeated = sorted({name for name in labels if labels.count(name) > 1})
    if repeated:
        raise ConfigError(
            f"regularisation.weights repeat {repeated} (to 6 significant figures): give each "
            "weight once"
        )


def check_solve(cfg: DictConfig) -> None:
    """The penalties read the adaptive solver's error estimate (and, for the stiffness ones,
    Tsit5's or Dopri5's last stages): the training solve must be adaptive, with one of those.
    Also `check_grid`."""
    check_grid(cfg)
    s, kinds = cfg.solve, set(cfg.regularisation.kinds) - {"none"}
    if kinds and (s.rtol is None or s.atol is None):
        raise ConfigError(
            f"regularisation.kinds {sorted(kinds)} need an adaptive training solve: set "
            "solve.rtol and solve.atol"
        )
    if kinds & {"stiffness", "local_stiffness"} and s.solver not in _STIFFNESS_SOLVERS:
        raise ConfigError(
            f"solve.solver={s.solver}: the stiffness regularisers need one of "
            f"{list(_STIFFNESS_SOLVERS)}"
        )


@dataclasses.dataclass(frozen=True)
class Task:
    """One task of the experiment.

    - `name`: e.g. `spiral`; `metric`: the name of the task metric (`rel_l2`, `accuracy`);
      `higher_is_better`: its direction.
    - `build_model(key)`: a freshly initialised model.
    - `loss(regularizer)`: `fit`'s loss `(model, batch, key) -> (loss, {"data_loss",
      "penalty"})` with that `Regularizer` (`None`: the data loss alone, penalty 0).
    - `data`: `fit`'s data pytree.
    - `evaluators`: `{"validation": f, "test": f}`, `f(model, key) -> {"metric", "nfe",
      "steps"}` (the adaptive prediction solve); the validation one is `fit`'s `eval_fn`.
    """

    name: str
    metric: str
    higher_is_better: bool
    build_model: Callable[[PRNGKeyArray], eqx.Module]
    loss: Callable[[Regularizer | None], Callable]
    data: Any
    evaluators: dict[str, Callable]


def label(kind: str, weight: float) -> str:
    """`none`, or `KIND@WEIGHT` (e.g. `error@0.01`): one trained configuration."""
    return "none" if kind == "none" else f"{kind}@{weight:g}"


def _grid(cfg: DictConfig) -> list[tuple[str, float]]:
    r = cfg.regularisation
    return [
        (kind, 0.0) if kind == "none" else (kind, float(w))
        for kind in r.kinds
        for w in ([0.0] if kind == "none" else r.weights[kind])
    ]


def _regularizer(cfg: DictConfig, kind: str, weight: float) -> Regularizer | None:
    r = cfg.regularisation
    if kind == "none":
        return None
    return Regularizer(kind, weight, reduction=r.reduction, order=r.taylor_order)


def _finite(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def train(
    cfg: DictConfig,
    task: Task,
    kind: str,
    weight: float,
    seed: int,
    run_dir: Path,
    resume: bool,
    loss: Callable | None = None,
) -> FitResult:
    """`fit` of one (regulariser, weight, seed) in `run_dir/KIND@WEIGHT/seed_S` (resumed from
    its checkpoint with `resume`: a finished one is read back, not trained again)."""
    model_key, train_key = jax.random.split(jax.random.key(seed))
    sub = run_dir / label(kind, weight) / f"seed_{seed}"
    sub.mkdir(parents=True, exist_ok=True)
    loss = task.loss(_regularizer(cfg, kind, weight)) if loss is None else loss
    return fit_from_config(loss, task.build_model(model_key), task.data, cfg.train,
                           key=train_key, run_dir=sub, resume=resume, has_aux=True,
                           eval_fn=task.evaluators["validation"])  # fmt: skip


def _train_one(cfg, task: Task, kind, weight, seed, loss, run_dir, resume) -> dict:
    start = time.perf_counter()
    result = train(cfg, task, kind, weight, seed, run_dir, resume, loss)
    seconds = time.perf_counter() - start
    row = {"regulariser": kind, "weight": weight, "seed": seed, "train_seconds": seconds}
    for split, evaluate in task.evaluators.items():
        out = eqx.filter_jit(evaluate)(result.model, jax.random.key(0))
        row[f"{split}_{task.metric}"] = _finite(out["metric"])
        row[f"{split}_nfe"] = _finite(out["nfe"])
        row[f"{split}_steps"] = _finite(out["steps"])
    return row


def _stats(rows: list[dict], key: str) -> dict:
    values = [row[key] for row in rows]
    if any(v is None for v in values):
        return {"mean": None, "std": None, "runs": values,
                "non_finite": sum(v is None for v in values)}  # fmt: skip
    return summary_stats(values)


def _within(stats: dict, reference: dict, higher_is_better: bool) -> bool:
    """`stats`' mean metric is no worse than the reference's mean by more than one sample sd
    of the reference's seeds."""
    if stats["mean"] is None or reference["mean"] is None:
        return False
    if higher_is_better:
        return stats["mean"] >= reference["mean"] - reference["std"]
    return stats["mean"] <= reference["mean"] + reference["std"]


def report(cfg: DictConfig, task: Task, rows: dict, seeds: list[int]) -> dict:
    """The summary: per configuration (`label`) mean ± sd of every figure, and the choice of
    the best on validation with its test NFE ratio (module docstring)."""
    metric = task.metric
    figures = ["train_seconds"] + [f"{split}_{name}" for split in ("validation", "test")
                                   for name in (metric, "nfe", "steps")]  # fmt: skip
    per = {}
    for kind, weight in _grid(cfg):
        runs = [rows[(kind, weight, s)] for s in seeds]
        name = label(kind, weight)
        per[name] = {key: _stats(runs, key) for key in figures}
        per[name]["kind"], per[name]["weight"] = kind, weight
        warm = [r["train_seconds"] for r in runs[1:]]
        per[name]["train_seconds_warm"] = float(np.mean(warm)) if warm else None
    summary: dict[str, Any] = {"task": task.name, "metric": metric, "seeds": seeds,
                               "regularisers": per}  # fmt: skip
    ratio = best = None
    equal_on_test = False
    if "none" in per and per["none"]["test_nfe"]["mean"]:
        base = per["none"]

        def within(name: str, split: str) -> bool:
            key = f"{split}_{metric}"
            return _within(per[name][key], base[key], task.higher_is_better)

        eligible = [name for name in per if name != "none"
                    and per[name]["validation_nfe"]["mean"] is not None
                    and within(name, "validation")]  # fmt: skip
        summary["eligible_on_validation"] = eligible
        if eligible:
            best = min(eligible, key=lambda name: per[name]["validation_nfe"]["mean"])
            if per[best]["test_nfe"]["mean"] is not None:
                ratio = per[best]["test_nfe"]["mean"] / base["test_nfe"]["mean"]
            equal_on_test = within(best, "test")
        summary["nfe_ratios"] = {
            name: per[name]["test_nfe"]["mean"] / base["test_nfe"]["mean"]
            for name in per if name != "none" and per[name]["test_nfe"]["mean"] is not None
        }  # fmt: skip
    summary["best_regulariser"] = best
    # The ratio is the one at equal accuracy: None when the choice fails it on test.
    summary["nfe_ratio_best"] = ratio if equal_on_test else None
    summary["nfe_ratio_best_any_accuracy"] = ratio
    summary["equal_accuracy_on_test"] = equal_on_test
    met = ratio is not None and ratio <= cfg.target_nfe_ratio and equal_on_test
    summary["target_met_task"] = met
    summary["target_nfe_ratio"] = cfg.target_nfe_ratio
    summary["target_met"] = False
    summary["target_note"] = (
        f"issue 19's target needs NFE ratio <= {cfg.target_nfe_ratio} at equal accuracy on at "
        f"least two of three tasks (spiral, digits, sde), each its own run; this run is task "
        f"{task.name!r} (met on it: {met}): benchmarks/RESULTS.md counts the tasks"
    )
    worse = "below" if task.higher_is_better else "above"
    summary["within_spread_rule"] = (
        f"a configuration's mean {metric} is not {worse} the unregularised mean by more than "
        "one sample sd over the unregularised seeds; the best is chosen on validation (lowest "
        "mean validation NFE among those within spread on validation), its ratio = mean test "
        "NFE / unregularised mean test NFE"
    )
    return summary


def _pareto(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple]:
    """The points no other point beats in both NFE (fewer) and metric, sorted by NFE."""
    sign = -1.0 if higher_is_better else 1.0
    front, best = [], np.inf
    for nfe, value in sorted(points, key=lambda p: (p[0], sign * p[1])):
        if sign * value < best:
            front.append((nfe, value))
            best = sign * value
    return front


def figure(run_dir: Path, task: Task, summary: dict) -> None:
    """`nfe_vs_metric.png`: mean test NFE against mean test metric per regulariser and weight
    (bars: sd over seeds), and the Pareto front of those means."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    colours = {kind: f"C{i}" for i, kind in enumerate(NAMES)}
    points = []
    for name, entry in summary["regularisers"].items():
        nfe, value = entry["test_nfe"], entry[f"test_{task.metric}"]
        if nfe["mean"] is None or value["mean"] is None:
            continue
        points.append((nfe["mean"], value["mean"]))
        ax.errorbar(value["mean"], nfe["mean"], xerr=value["std"], yerr=nfe["std"],
                    color=colours[entry["kind"]], marker="s" if name == "none" else "o",
                    capsize=2, linestyle="none")  # fmt: skip
        ax.annotate(name, (value["mean"], nfe["mean"]), fontsize=6, alpha=0.8)
    front = _pareto(points, task.higher_is_better)
    if len(front) > 1:
        nfe, value = np.asarray(front).T
        ax.plot(value, nfe, color="0.5", linestyle="--", linewidth=1, label="Pareto front")
    present = {entry["kind"] for entry in summary["regularisers"].values()}
    for kind in [k for k in NAMES if k in present]:  # the legend in the config's order
        ax.plot([], [], color=colours[kind], marker="o", linestyle="none", label=kind)
    ax.set(xlabel=f"test {task.metric} (mean ± sd over seeds)",
           ylabel="test prediction NFE (adaptive, per sample)",
           title=f"{task.name}: NFE against {task.metric}")  # fmt: skip
    if not task.higher_is_better:
        ax.set_xscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "nfe_vs_metric.png", dpi=120)


def run_task(cfg: DictConfig, task: Task, run_dir: Path, resume: bool) -> dict:
    """Train every (regulariser, weight, seed) not already in `results.jsonl`, then report."""
    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
    path, done = start_results(run_dir, ("regulariser", "weight", "seed"), resume=resume)
    for kind, weight in _grid(cfg):
        loss = task.loss(_regularizer(cfg, kind, weight))
        for seed in seeds:
            if (kind, weight, seed) in done:
                continue
            row = _train_one(cfg, task, kind, weight, seed, loss, run_dir, resume)
            print(f"[{cfg.experiment}] {label(kind, weight)} seed {seed}: test NFE "
                  f"{row['test_nfe']}, test {task.metric} {row[f'test_{task.metric}']}, "
                  f"train {row['train_seconds']:.1f} s", flush=True)  # fmt: skip
            done[(kind, weight, seed)] = row
            append_result(path, row)
    summary = report(cfg, task, done, seeds)
    if cfg.figures:
        figure(run_dir, task, summary)
    return summary
