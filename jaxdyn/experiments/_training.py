"""`fit` driven by a `TrainConfig`: the one place experiments map config to the loop."""

from pathlib import Path

import equinox as eqx
from jaxtyping import PRNGKeyArray, PyTree
from omegaconf import DictConfig

from ..train import FitResult, fit, make_optimizer

__all__ = ["fit_from_config"]


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
) -> FitResult:
    """`fit` with the optimiser, schedule, steps, batch size, chunk and checkpointing of the
    config's `train` section (a `jaxdyn.config.TrainConfig`)."""
    return fit(
        loss_fn, model, data,
        make_optimizer(train.optimizer, train.lr, schedule=train.schedule, steps=train.steps),
        steps=train.steps, batch_size=train.batch_size, key=key, chunk=train.chunk,
        has_aux=has_aux, run_dir=run_dir, checkpoint_every=train.checkpoint_every,
        resume=resume,
    )  # fmt: skip
