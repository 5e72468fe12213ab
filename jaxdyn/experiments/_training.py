"""`fit` driven by a `TrainConfig`: the one place experiments map config to the loop.

An experiment that trains several models builds its optimiser (and loss) once and passes it
to every call: `fit` compiles its training chunk once per (loss, optimiser) pair, so a fresh
optimiser per run would recompile for every run.

An experiment with a validation split passes its `eval_fn`; the `train` section's
`eval_every`, `best_metric`, `mode`, `patience` and `ema_decay` then reach `fit`. Under
`jaxdyn._evaluations.reporting_evaluations` (a sweep's pruning) every evaluation is also handed
to the reporter (`fit`'s `on_evaluation`).
"""

import functools
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import PRNGKeyArray, PyTree
from omegaconf import DictConfig

from .._evaluations import evaluation_reporter
from ..config import ConfigError
from ..train import (
    OPTIMIZERS,
    FitResult,
    StepCounted,
    counting_steps,
    data_mesh,
    fit,
    make_optimizer,
)

__all__ = ["fit_from_config", "optimizer_from_config"]


def optimizer_from_config(
    train: DictConfig, *, clip_norm: float | None = None, count_steps: bool = False
) -> optax.GradientTransformation:
    """The optimiser of the config's `train` section (a `jaxdyn.config.TrainConfig`):
    `optimizer` at `lr` with `schedule` over `steps`, or, when the section has `lr_decay` set,
    `lr · lr_decay^step` (torchsde's `ExponentialLR`) in place of the schedule. `clip_norm`
    clips gradients to that global norm first; `count_steps` wraps the result in
    `counting_steps`, for `fit_from_config(..., with_step=True)`."""
    decay = train.get("lr_decay")
    if decay is not None and train.schedule != "constant":
        raise ValueError(
            f"train.lr_decay={decay} replaces the schedule: set train.schedule=constant, or "
            f"train.lr_decay=null to use train.schedule={train.schedule}"
        )
    if decay is None:
        optimizer = make_optimizer(train.optimizer, train.lr, schedule=train.schedule,
                                   steps=train.steps)  # fmt: skip
    else:
        rate = optax.exponential_decay(train.lr, transition_steps=1, decay_rate=decay)
        optimizer = make_optimizer(train.optimizer, 1.0, schedule="constant")
        optimizer = optax.chain(optimizer, optax.scale_by_schedule(rate))
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
    return counting_steps(optimizer) if count_steps else optimizer


@functools.cache
def _rate_in_state(name: str, schedule: str, steps: int) -> optax.GradientTransformation:
    """`make_optimizer(name, lr, schedule=schedule, steps=steps)` with `lr` in the optimiser
    state (`optax.inject_hyperparams`), not in the compiled program: one object per
    `(name, schedule, steps)`, so runs that differ only in `lr` (a sweep's trials) share `fit`'s
    compiled chunk. `init` puts a placeholder rate 1 in the state; `_initial_state` sets `lr`."""

    def factory(learning_rate):
        if schedule == "constant":
            return OPTIMIZERS[name](learning_rate)
        return OPTIMIZERS[name](optax.cosine_decay_schedule(learning_rate, steps))

    return optax.inject_hyperparams(factory)(learning_rate=1.0)


def _initial_state(optimizer: optax.GradientTransformation, model: eqx.Module, lr: float):
    """`optimizer.init` of the model's parameters with the learning rate `lr` in the state."""
    state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    rate = state.hyperparams["learning_rate"]
    return state._replace(hyperparams={**state.hyperparams,
                                       "learning_rate": jnp.asarray(lr, rate.dtype)})  # fmt: skip


class _StepLoss(eqx.Module):
    """`loss_fn(model, step, batch, key)` as `fit`'s `(counted, batch, key)`. A module, so two
    wrappers of one loss compare equal and `fit` reuses its compiled chunk."""

    loss_fn: Callable

    def __call__(self, counted: StepCounted, batch, key):
        return self.loss_fn(counted.model, jax.lax.stop_gradient(counted.step), batch, key)


_VALIDATION_DEFAULTS = {"eval_every": 1, "best_metric": None, "mode": "min", "patience": None,
                        "ema_decay": None}  # fmt: skip


def validation_options(train: DictConfig, eval_fn: Callable | None) -> dict:
    """`fit`'s evaluation keywords from the `train` section; a `ConfigError` naming the key
    when one is set for an experiment that has no validation split (no `eval_fn`)."""
    options = {name: train.get(name, default) for name, default in _VALIDATION_DEFAULTS.items()}
    if eval_fn is None:
        for name, default in _VALIDATION_DEFAULTS.items():
            if options[name] != default:
                raise ConfigError(
                    f"config key 'train.{name}' is set ({options[name]!r}) but this experiment "
                    "has no validation split to evaluate; remove it"
                )
        return {}
    return {"eval_fn": eval_fn, **options}


def fit_from_config(
    loss_fn,
    model: eqx.Module,
    data: PyTree,
    train: DictConfig,
    *,
    key: PRNGKeyArray,
    run_dir: Path,
    resume: bool,
    has_aux: bool = False,
    optimizer: optax.GradientTransformation | None = None,
    with_step: bool = False,
    eval_fn: Callable | None = None,
) -> FitResult:
    """`fit` with the steps, batch size, chunk and checkpointing of the config's `train`
    section, and its optimiser (`optimizer_from_config(train, count_steps=with_step)` unless
    `optimizer` is given).

    `with_step=True` trains a `StepCounted` model whose optimiser advances the counter (a
    given `optimizer` must be a `counting_steps` one), so that `loss_fn(model, step, batch,
    key)` can read the step (e.g. for a KL warm-up); the checkpoint holds the counter, so a
    resumed run continues where it stopped; the result's `.model.model` is the trained model.

    `eval_fn(model, key) -> {name: scalar}` on the experiment's validation split turns on the
    section's `eval_every`, `best_metric`, `mode`, `patience` and `ema_decay` (see `fit`);
    without it, setting any of them is a `ConfigError`.
    """
    options = validation_options(train, eval_fn)
    if with_step:
        loss_fn, model = _StepLoss(loss_fn), StepCounted(model)
        if eval_fn is not None:
            options["eval_fn"] = _StepEval(eval_fn)
    kwargs = dict(
        batch_size=train.batch_size, key=key, chunk=train.chunk, has_aux=has_aux,
        run_dir=run_dir, checkpoint_every=train.checkpoint_every, **options,
        mesh=data_mesh(train.get("devices", 1)), parallel=train.get("parallel", "compiler"),
    )  # fmt: skip
    if optimizer is None and not with_step and train.get("lr_decay") is None:
        # The default optimiser, with the rate in its state: runs that differ in lr alone
        # reuse one compiled chunk (a resumed run reads its state from the checkpoint).
        optimizer = _rate_in_state(train.optimizer, train.schedule, train.steps)
        kwargs["opt_state"] = _initial_state(optimizer, model, train.lr)
    optimizer = optimizer or optimizer_from_config(train, count_steps=with_step)
    if eval_fn is not None:  # a sweep's reporter (if any) sees every evaluation
        kwargs["on_evaluation"] = evaluation_reporter()
    return fit(loss_fn, model, data, optimizer, steps=train.steps, resume=resume, **kwargs)


class _StepEval(eqx.Module):
    """`eval_fn(model, key)` on the model inside a `StepCounted` one."""

    eval_fn: Callable

    def __call__(self, counted: StepCounted, key):
        return self.eval_fn(counted.model, key)
