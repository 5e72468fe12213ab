"""Quickstart: learn the cubic spiral with a neural ODE (the torchdiffeq demo).

Data: `dy/dt = (y**3) @ A`, `A = [[-0.1, 2], [-2, -0.1]]`, 1000 points on `[0, 25]`. Model: a
neural ODE whose field is an MLP on `y**3` (Chen et al. 2018), trained, as in the demo, on
random short windows of the trajectory from `y0 = [2, 0]` with an L1 loss. Headline (the
demo's): relative L2 error of the full-horizon prediction from `y0`, the trajectory trained on.
Generalisation, on trajectories never trained on: `num_validation + num_test` initial
conditions on the circle of radius `|y0|`, evenly spread in angle (alternate ones to
validation). `validation.loss` (every `train.eval_every` chunks; what a sweep or
`train.best_metric` selects on) and `test_rel_l2_error` (scored once, at the end) are the
relative L2 errors of their full-horizon predictions.
"""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray
from omegaconf import DictConfig

from ..config import SolveConfig, TrainConfig, at_least, choice, positive, section
from ..data import spiral, spiral_field, windows
from ..models import ACTIVATIONS, FEATURES, MLPField, NeuralODE
from ..plotting import Figure
from ..solve import RESULTS
from ..train import read_metrics
from ._records import loss_figure
from ._registry import register
from ._training import fit_from_config


@dataclasses.dataclass
class SpiralDataConfig:
    num_points: int = at_least(1000, 2)
    t1: float = positive(25.0)
    y0: list[float] = dataclasses.field(
        default_factory=lambda: [2.0, 0.0],
        metadata={"check": (lambda v: len(v) == 2, "a list of 2 numbers")},
    )
    window: int = at_least(10, 2)  # points per training window (<= num_points)
    num_validation: int = at_least(2, 1)  # held-out trajectories for validation
    num_test: int = at_least(2, 1)  # held-out trajectories for the test


@dataclasses.dataclass
class FieldConfig:
    width: int = at_least(50, 1)
    depth: int = at_least(1, 0)
    activation: str = choice("tanh", ACTIVATIONS)
    feature: str = choice("cube", FEATURES)
    time: bool = False


@dataclasses.dataclass
class QuickstartConfig:
    experiment: str = "quickstart"
    seed: int = 0
    target_rel_error: float = 0.1
    figures: bool = True  # false: no PNGs (e.g. for the trials of a sweep)
    data: SpiralDataConfig = section(SpiralDataConfig)
    model: FieldConfig = section(FieldConfig)
    solve: SolveConfig = section(SolveConfig)
    train: TrainConfig = section(TrainConfig)


def build_model(cfg: DictConfig, *, key: PRNGKeyArray) -> NeuralODE:
    """The neural ODE a quickstart config describes."""
    m, s = cfg.model, cfg.solve
    field = MLPField(dim=2, width=m.width, depth=m.depth, activation=m.activation,
                     feature=m.feature, time=m.time, key=key)  # fmt: skip
    return NeuralODE(field, solver=s.solver, rtol=s.rtol, atol=s.atol, dt0=s.dt0,
                     adjoint=s.adjoint, max_steps=s.max_steps, batch=s.batch)  # fmt: skip


def initial_conditions(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    """The held-out initial conditions, validation `(num_validation, 2)` and test
    `(num_test, 2)`: `n = num_validation + num_test` points on the circle of radius `|y0|`
    at angles `angle(y0) + 2πk/(n + 1)`, `k = 1…n` (`k = 0` is `y0`, the training
    trajectory); alternate ones (`k = 1, 3, …`) are validation while it needs more."""
    d = cfg.data
    n = d.num_validation + d.num_test
    radius, angle = np.hypot(*d.y0), np.arctan2(d.y0[1], d.y0[0])
    angles = angle + 2 * np.pi * np.arange(1, n + 1) / (n + 1)
    points = radius * np.stack([np.cos(angles), np.sin(angles)], -1)
    chosen = list(range(0, n, 2))[: d.num_validation]  # k = 1, 3, …
    chosen += [i for i in range(n - 1, -1, -1) if i not in chosen][: d.num_validation - len(chosen)]
    validation = np.isin(np.arange(n), chosen)
    return points[validation], points[~validation]


def _trajectories(cfg: DictConfig, y0s: np.ndarray) -> jax.Array:
    """The spiral from each of `y0s`: shape `(len(y0s), num_points, 2)`."""
    return jnp.stack([spiral(cfg.data.num_points, cfg.data.t1, tuple(y0))[1] for y0 in y0s])


def _rel_l2(pred, ys):
    return jnp.linalg.norm(pred - ys) / jnp.linalg.norm(ys)


def _figures(run_dir: Path, ts, ys, pred, model: NeuralODE) -> None:
    ts, ys, pred = map(np.asarray, (ts, ys, pred))
    fig = Figure(figsize=(7, 4.5))
    axes = fig.subplots(2, 1, sharex=True)
    for i, ax in enumerate(axes):
        ax.plot(ts, ys[:, i], "k-", lw=1.5, label="true")
        ax.plot(ts, pred[:, i], "C1--", lw=1.5, label="neural ODE")
        ax.set_ylabel(f"$y_{i + 1}$")
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("t")
    fig.suptitle("spiral: true vs learned trajectory")
    fig.tight_layout()
    fig.savefig(run_dir / "trajectory.png", dpi=120)

    lim = 1.1 * np.abs(ys).max()
    grid = np.linspace(-lim, lim, 21)
    X, Y = np.meshgrid(grid, grid)
    points = jnp.asarray(np.stack([X.ravel(), Y.ravel()], -1), dtype=jnp.float32)
    A = jnp.asarray([[-0.1, 2.0], [-2.0, -0.1]], dtype=jnp.float32)
    fig = Figure(figsize=(10, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, f, title in (
        (axes[0], lambda y: spiral_field(0.0, y, A), "true field"),
        (axes[1], lambda y: model.field(0.0, y), "learned field"),
    ):
        v = np.asarray(jax.vmap(f)(points)).reshape(X.shape + (2,))
        ax.streamplot(X, Y, v[..., 0], v[..., 1], color="0.7", density=1.0, linewidth=0.7)
        ax.plot(ys[:, 0], ys[:, 1], "k-", lw=1.5, label="true")
        ax.plot(pred[:, 0], pred[:, 1], "C1--", lw=1.5, label="neural ODE")
        ax.set(title=title, xlabel="$y_1$", xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    axes[0].set_ylabel("$y_2$")
    axes[1].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(run_dir / "phase_portrait.png", dpi=120)


class _WindowLoss(eqx.Module):
    """The L1 error of the model's solves over a batch of windows, each from its first point.
    A module (not a closure), so that runs of one shape share `fit`'s compiled chunk."""

    ts: jax.Array

    def __call__(self, model: NeuralODE, batch, key):
        return jnp.mean(jnp.abs(model(self.ts, batch[:, 0]) - batch))


class _HeldOutError(eqx.Module):
    """`{"loss": rel. L2 error}` of the full-horizon solves from held-out initial conditions
    (`ys[:, 0]`); a failed solve makes it NaN (never the best), not the run fail."""

    ts: jax.Array
    ys: jax.Array

    def __call__(self, model: NeuralODE, key):
        model = dataclasses.replace(model, on_failure="nan")
        return {"loss": _rel_l2(model(self.ts, self.ys[:, 0]), self.ys)}


@register("quickstart", QuickstartConfig)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Neural ODE on the cubic spiral (torchdiffeq demo); target rel. L2 error <= 0.1."""
    ts, ys = spiral(cfg.data.num_points, cfg.data.t1, tuple(cfg.data.y0))
    validation_y0s, test_y0s = initial_conditions(cfg)
    ts_window = ts[: cfg.data.window] - ts[0]
    model_key, train_key = jax.random.split(jax.random.key(cfg.seed))
    model = build_model(cfg, key=model_key)

    validation = _HeldOutError(ts, _trajectories(cfg, validation_y0s))
    result = fit_from_config(_WindowLoss(ts_window), model, windows(ys, cfg.data.window),
                             cfg.train, key=train_key, run_dir=run_dir, resume=resume,
                             eval_fn=validation)  # fmt: skip
    # The reported model: the best on validation when `train.best_metric` asks, else the EMA
    # when there is one, else the last.
    if result.best_model is not None:
        reported, validation = result.best_model, result.best_value
    else:
        reported = result.model if result.ema_model is None else result.ema_model
        validation = result.evaluations[-1]["validation.loss"] if result.evaluations else None
    # Evaluate without raising: a failed long-horizon solve is a result to record, not a
    # reason to lose the trained model (which is in the checkpoint) and the figures.
    model = dataclasses.replace(reported, on_failure="return")
    solution = eqx.filter_jit(model.solve)(ts, ys[0])
    pred = solution.ys
    succeeded = bool(solution.succeeded)
    rel_error = float(_rel_l2(pred, ys)) if succeeded else None
    # Jitted as `fit` jits the validation: with as many test as validation trajectories (the
    # default), the same compiled program, not a second solve compiled for the test. The key
    # is `fit`'s validation argument; the held-out error is deterministic and ignores it.
    test_error = eqx.filter_jit(_HeldOutError(ts, _trajectories(cfg, test_y0s)))
    test = test_error(reported, jax.random.key(0))["loss"]

    if cfg.figures:
        _figures(run_dir, ts, ys, pred, model)
        rows = loss_figure(run_dir, "quickstart: L1 window loss")
    else:
        rows = read_metrics(run_dir / "metrics.jsonl")
    losses = [row["loss"] for row in rows]
    return {
        "rel_l2_error": rel_error,
        "eval_solve": RESULTS[solution.result] or "successful",
        "target_rel_l2_error": cfg.target_rel_error,
        "target_met": succeeded and rel_error <= cfg.target_rel_error,
        "validation.loss": validation,
        "test_rel_l2_error": float(test) if np.isfinite(test) else None,  # None: a failed solve
        "best_step": result.best_step,
        "final_loss": float(losses[-1]) if losses else None,
        "steps": result.step,
        "eval_solver_steps": int(solution.stats.num_steps),
    }
