"""`fit` driven by a `TrainConfig`: the one place experiments map config to the loop.

An experiment that trains several models builds its optimiser (and loss) once and passes it
to every call: `fit` compiles its training chunk once per (loss, optimiser) pair, so a fresh
optimiser per run would recompile for every run.
"""

from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import optax
from jaxtyping import PRNGKeyArray, PyTree
from omegaconf import DictConfig

from ..train import FitResult, StepCounted, counting_steps, fit, make_optimizer

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


class _StepLoss(eqx.Module):
    """`loss_fn(model, step, batch, key)` as `fit`'s `(counted, batch, key)`. A module, so two
    wrappers of one loss compare equal and `fit` reuses its compiled chunk."""

    loss_fn: Callable

    def __call__(self, counted: StepCounted, batch, key):
        return self.loss_fn(counted.model, jax.lax.stop_gradient(counted.step), batch, key)


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
) -> FitResult:
    """`fit` with the steps, batch size, chunk and checkpointing of the config's `train`
    section, and its optimiser (`optimizer_from_config(train, count_steps=with_step)` unless
    `optimizer` is given).

    `with_step=True` trains a `StepCounted` model whose optimiser advances the counter (a
    given `optimizer` must be a `counting_steps` one), so that `loss_fn(model, step, batch,
    key)` can read the step (e.g. for a KL warm-up); the checkpoint holds the counter, so a
    resumed run continues where it stopped; the result's `.model.model` is the trained model.
    """
    if with_step:
        loss_fn, model = _StepLoss(loss_fn), StepCounted(model)
    return fit(
        loss_fn, model, data, optimizer or optimizer_from_config(train, count_steps=with_step),
        steps=train.steps, batch_size=train.batch_size, key=key, chunk=train.chunk,
        has_aux=has_aux, run_dir=run_dir, checkpoint_every=train.checkpoint_every,
        resume=resume,
    )  # fmt: skip
