"""Cheaper neural ODEs by regularising the solver's own heuristics (issue 19 §2), task (a):
the quickstart spiral.

Question: does training with a penalty on what the adaptive solver computes (its error
estimate, ERNODE; its stiffness estimate, SRNODE: Pal, Ma, Shah & Rackauckas 2021), on the
same at one sampled time (local variants: Pal, Edelman & Rackauckas 2023), or on the second
time derivative (TayNODE: Kelly, Bettencourt, Johnson & Duvenaud 2020) give a model that an
adaptive solver integrates in fewer function evaluations (NFE) at equal accuracy? The papers
report 0.56–0.73× the unregularised prediction NFE; the issue's target is ≤ 0.75× at a task
metric within the unregularised model's seed spread, on at least two of three tasks: (a) this
spiral, (b) `solver_regularisation_digits`, (c) `solver_regularisation_sde`, each its own run
(`target_met` of one run is false, with its reason; `target_met_task` is the task's).

Task (a), the spiral: the quickstart's data, neural ODE and held-out initial conditions
(`quickstart.build_model`, `quickstart.initial_conditions`), trained by `fit` on random
windows of the training trajectory with `jaxdyn.regularize.regularized_loss` (mean squared
error plus the weighted penalty; `none`: the same mean squared error alone), logging
`data_loss` and `penalty`. The prediction solve integrates the full horizon `[0, t1]` from
each held-out initial condition, one solve per trajectory; the task metric is the
quickstart's held-out relative L2 error of those predictions (`rel_l2`, lower is better).
The protocol, the validated choice of the best regulariser and weight, and the figure
(`nfe_vs_metric.png`) are shared with the other tasks (`experiments._regularisation`); rows
(`results.jsonl`, one per regulariser × weight × seed) make `--resume` skip finished
trainings; each training has its own directory `KIND@WEIGHT/seed_S` (metrics, checkpoint).
"""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
from omegaconf import DictConfig

from ..config import ConfigError, SolveConfig, TrainConfig, section
from ..data import spiral, windows
from ..models import NeuralODE
from ..regularize import Regularizer, regularized_loss
from ._registry import register
from ._regularisation import EvaluationConfig, Task, TaskConfig, check_solve, run_task
from .quickstart import FieldConfig, SpiralDataConfig, build_model, initial_conditions


@dataclasses.dataclass
class SolverRegularisationConfig(TaskConfig):
    experiment: str = "solver_regularisation"
    data: SpiralDataConfig = section(SpiralDataConfig)
    model: FieldConfig = section(FieldConfig)
    solve: SolveConfig = section(SolveConfig, solver="dopri5", rtol=1e-5, atol=1e-5)
    train: TrainConfig = section(TrainConfig, steps=10000, batch_size=128, lr=3e-3,
                                 schedule="cosine", chunk=500)  # fmt: skip
    evaluation: EvaluationConfig = section(EvaluationConfig)


def _check(cfg: DictConfig) -> None:
    check_solve(cfg)
    if cfg.data.window > cfg.data.num_points:
        raise ConfigError(f"data.window={cfg.data.window} must be <= data.num_points")


class _Loss(eqx.Module):
    """`regularized_loss` on a batch of windows (each solved from its first point), or, with
    no regulariser, its data term alone; `(loss, {"data_loss", "penalty"})` for `fit`'s
    `has_aux`. A module, so the seeds of one regulariser share `fit`'s compiled chunk."""

    ts: jax.Array
    regularizer: Regularizer | None

    def __call__(self, model: NeuralODE, batch, key):
        if self.regularizer is None:
            data_loss = jnp.mean(jnp.square(model(self.ts, batch[:, 0]) - batch))
            return data_loss, {"data_loss": data_loss, "penalty": jnp.zeros_like(data_loss)}
        return regularized_loss(model, self.ts, batch[:, 0], batch, self.regularizer, key=key)


class _Prediction(eqx.Module):
    """The adaptive prediction solves from `ys[:, 0]` over `ts`, one solve per trajectory:
    `{"metric": relative L2 error (NaN if a solve failed), "nfe": mean NFE, "steps": mean
    accepted steps}`; the model's solver and tolerances replaced by the evaluation's."""

    ts: jax.Array
    ys: jax.Array
    solver: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __call__(self, model: NeuralODE, key):
        model = dataclasses.replace(model, solver=self.solver, rtol=self.rtol, atol=self.atol,
                                    dt0=None, max_steps=self.max_steps, adjoint="direct",
                                    on_failure="nan")  # fmt: skip
        sol = jax.vmap(lambda y0: model.solve(self.ts, y0))(self.ys[:, 0])
        error = jnp.linalg.norm(sol.ys - self.ys) / jnp.linalg.norm(self.ys)
        return {"metric": error, "nfe": jnp.mean(sol.stats.num_fevals.astype(error.dtype)),
                "steps": jnp.mean(sol.stats.num_accepted_steps.astype(error.dtype))}  # fmt: skip


def build_task(cfg: DictConfig) -> Task:
    """The spiral task of a config: data, model, loss and evaluators."""
    d, e = cfg.data, cfg.evaluation
    ts, ys = spiral(d.num_points, d.t1, tuple(d.y0))
    ts_window = ts[: d.window] - ts[0]
    splits = dict(zip(("validation", "test"), initial_conditions(cfg), strict=True))
    evaluators = {
        split: _Prediction(
            ts, jnp.stack([spiral(d.num_points, d.t1, tuple(y0))[1] for y0 in y0s]),
            e.solver, e.rtol, e.atol, e.max_steps,
        )
        for split, y0s in splits.items()
    }  # fmt: skip
    return Task(name="spiral", metric="rel_l2", higher_is_better=False,
                build_model=lambda key: build_model(cfg, key=key),
                loss=lambda regularizer: _Loss(ts_window, regularizer),
                data=windows(ys, d.window), evaluators=evaluators)  # fmt: skip


@register("solver_regularisation", SolverRegularisationConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """Solver-heuristic regularisers (ERNODE/SRNODE, local, TayNODE) on the spiral: NFE at
    equal accuracy."""
    return run_task(cfg, build_task(cfg), run_dir, resume)
