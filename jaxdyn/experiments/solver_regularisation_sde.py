"""Cheaper neural SDEs by regularising the solver's own error estimate (issue 19 §2), task (c):
the `sde_fit` double well.

Data: paths of the stochastic double well `dx = (x − x³) dt + σ dW` (`jaxdyn.data.
double_well_paths`, `sde_fit`'s settings), observed every `obs_dt`; the paths are split into
train / validation / test (`validation_paths`, `test_paths`; the rest train). Model: `sde_fit`'s
neural SDE (MLP drift, softplus-MLP diagonal diffusion, Itô), fitted by the Gaussian transition
likelihood of the observed steps (`model.estimator`, `jaxdyn.train.transition_nll`) over
minibatches of whole paths. Regulariser: ERNODE for SDEs (`jaxdyn.regularize.
sde_error_penalty`, Pal, Ma, Shah & Rackauckas 2021): the error estimates of an adaptive SPaRK
solve of the model from the minibatch's initial states (uniform over the data's range) over `[0,
solve.span]` (the batch as one system, `solve.rtol`/`atol`, a fresh Brownian path each step),
summed over its accepted steps.
Only `error` is offered: the other kinds of `jaxdyn.regularize` read ODE solvers' stages.

Prediction: the learned SDE simulated by adaptive SPaRK (`evaluation.*`, one solve per path,
the same for every model) from the held-out paths' initial states; NFE is the mean number of
drift evaluations per path; the task metric is the mean over `evaluation.times` of the
Wasserstein-1 distance between the simulated and the held-out paths' marginals (`marginal_w1`,
lower is better; a failed path makes it NaN). The protocol, the validated choice and the
figure are `experiments._regularisation`'s.
"""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
from omegaconf import DictConfig

from ..config import ConfigError, TrainConfig, at_least, choice, distinct_names, positive, section
from ..data import double_well_paths
from ..metrics import wasserstein_1d
from ..models import ACTIVATIONS, MLPField, NeuralSDE, SoftplusField
from ..regularize import Regularizer
from ..train import TRANSITION_DENSITIES, transition_nll
from ._registry import register
from ._regularisation import RegularisationConfig, Task, TaskConfig, check_grid, run_task
from .sde_fit import DoubleWellConfig, observation_intervals


@dataclasses.dataclass
class SDETaskDataConfig(DoubleWellConfig):
    validation_paths: int = at_least(150, 2)
    test_paths: int = at_least(150, 2)


@dataclasses.dataclass
class SDETaskModelConfig:
    width: int = at_least(32, 1)
    depth: int = at_least(2, 0)
    activation: str = choice("tanh", ACTIVATIONS)
    estimator: str = choice("local_linear", TRANSITION_DENSITIES)


@dataclasses.dataclass
class AdaptiveSDEConfig:
    """An adaptive SPaRK solve."""

    rtol: float = positive(1e-2)
    atol: float = positive(1e-2)
    max_steps: int = at_least(4096, 1)


@dataclasses.dataclass
class PenaltySolveConfig(AdaptiveSDEConfig):
    """The training penalty's solve, from the minibatch's initial states over `[0, span]`."""

    span: float = positive(1.0)


@dataclasses.dataclass
class SDEPredictionConfig(AdaptiveSDEConfig):
    times: list[float] = dataclasses.field(
        default_factory=lambda: [0.5, 1.0, 2.0, 5.0],
        metadata={"check": (lambda v: len(v) > 0 and min(v) > 0, "a list of times > 0")},
    )


@dataclasses.dataclass
class SDERegularisationConfig(RegularisationConfig):
    kinds: list[str] = distinct_names(["none", "error"], ["none", "error"])


@dataclasses.dataclass
class SolverRegularisationSDEConfig(TaskConfig):
    experiment: str = "solver_regularisation_sde"
    data_seed: int = 0  # the paths and their split, the same for every seed
    data: SDETaskDataConfig = section(SDETaskDataConfig)
    model: SDETaskModelConfig = section(SDETaskModelConfig)
    solve: PenaltySolveConfig = section(PenaltySolveConfig)
    train: TrainConfig = section(TrainConfig, steps=3000, lr=3e-3, schedule="cosine", chunk=500)
    regularisation: SDERegularisationConfig = section(SDERegularisationConfig)
    evaluation: SDEPredictionConfig = section(SDEPredictionConfig)


def _check(cfg: DictConfig) -> None:
    d = cfg.data
    check_grid(cfg)
    try:
        observation_intervals(cfg)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if cfg.solve.span > d.horizon:
        raise ConfigError(f"solve.span={cfg.solve.span} must be <= data.horizon={d.horizon}")
    if d.validation_paths + d.test_paths >= d.num_paths:
        raise ConfigError(
            f"data.validation_paths + data.test_paths ({d.validation_paths + d.test_paths}) "
            f"must leave training paths of data.num_paths={d.num_paths}"
        )


def build_sde(cfg: DictConfig, *, key) -> NeuralSDE:
    """`sde_fit`'s neural SDE, solved by adaptive SPaRK at `cfg.solve`'s tolerances (the
    batch as one system: the training penalty's solve)."""
    m, s = cfg.model, cfg.solve
    drift_key, diffusion_key = jax.random.split(key)
    size = dict(dim=1, width=m.width, depth=m.depth, activation=m.activation)
    return NeuralSDE(MLPField(**size, key=drift_key),
                     SoftplusField(MLPField(**size, key=diffusion_key)), noise="diagonal",
                     solver="srk", rtol=s.rtol, atol=s.atol, brownian="virtual",
                     max_steps=s.max_steps, batch="joint")  # fmt: skip


class _Loss(eqx.Module):
    """The transition NLL of a minibatch of whole paths plus the weighted error penalty of the
    model's adaptive solve from the paths' first states over `ts = [0, span]`."""

    ts: jax.Array
    obs_dt: float = eqx.field(static=True)
    estimator: str = eqx.field(static=True)
    regularizer: Regularizer | None = None

    def __call__(self, model: NeuralSDE, batch, key):
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)
        data_loss = transition_nll(self.estimator, model.drift, model.diffusion, flat,
                                   self.obs_dt)  # fmt: skip
        if self.regularizer is None:
            return data_loss, {"data_loss": data_loss, "penalty": jnp.zeros_like(data_loss)}
        _, penalty = self.regularizer(model, self.ts, batch[1][:, 0], key=key)
        loss = data_loss + self.regularizer.weight * penalty
        return loss, {"data_loss": data_loss, "penalty": penalty}


class _Prediction(eqx.Module):
    """Adaptive SPaRK paths of the model from `ys[:, 0]` (one solve each, on the split's own
    fixed Brownian paths `noise`, the same for every model): `{"metric": mean W₁ to the
    held-out marginals at the evaluation times (NaN if a path failed), "nfe": mean drift
    evaluations per path, "steps": mean accepted steps}`."""

    ts: jax.Array
    ys: jax.Array
    index: jax.Array
    noise: jax.Array
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __call__(self, model: NeuralSDE, key):
        model = dataclasses.replace(model, rtol=self.rtol, atol=self.atol,
                                    max_steps=self.max_steps, adjoint="direct",
                                    on_failure="nan", batch="vmap")  # fmt: skip
        sol = model.solve(self.ts, self.ys[:, 0], key=self.noise)
        paths = sol.ys[:, self.index, 0]
        finite = jnp.all(jnp.isfinite(paths))  # wasserstein_1d refuses non-finite samples
        w1 = jax.vmap(wasserstein_1d, (1, 1))(jnp.where(finite, paths, 0.0),
                                               self.ys[:, self.index, 0])  # fmt: skip
        dtype = w1.dtype
        return {"metric": jnp.where(finite, jnp.mean(w1), jnp.nan),
                "nfe": jnp.mean(sol.stats.num_fevals.astype(dtype)),
                "steps": jnp.mean(sol.stats.num_accepted_steps.astype(dtype))}  # fmt: skip


def build_task(cfg: DictConfig) -> Task:
    """The sde task of a config: data, model, loss and evaluators."""
    d, e = cfg.data, cfg.evaluation
    num_obs = observation_intervals(cfg)
    ts = jnp.linspace(0.0, d.horizon, num_obs + 1)
    # The data's keys, and each split's sampling noise, from a root that no training seed's key
    # equals (the seeds use key(seed)); validation and test sample on different paths.
    root = jax.random.fold_in(jax.random.key(cfg.data_seed), 0x5DE)
    x0_key, path_key, *noise = jax.random.split(root, 4)
    x0 = jax.random.uniform(x0_key, (d.num_paths, 1), minval=d.x0_range[0], maxval=d.x0_range[1])
    ys = double_well_paths(x0, ts, key=path_key, sigma=d.sigma, sigma_x=d.sigma_x,
                           dt0=d.obs_dt / d.fine_factor, solver=d.solver)  # fmt: skip
    n_val, n_test = d.validation_paths, d.test_paths
    splits = {"validation": ys[:n_val], "test": ys[n_val : n_val + n_test]}
    train = ys[n_val + n_test :]
    paths = (jnp.broadcast_to(ts[:-1], train.shape[:1] + ts[:-1].shape), train[:, :-1],
             train[:, 1:])  # fmt: skip
    index = jnp.asarray(sorted({min(max(round(t / d.obs_dt), 1), num_obs) for t in e.times}))
    evaluators = {
        name: _Prediction(ts, split, index, key, e.rtol, e.atol, e.max_steps)
        for (name, split), key in zip(splits.items(), noise, strict=True)
    }
    span = jnp.array([0.0, cfg.solve.span])
    return Task(name="sde", metric="marginal_w1", higher_is_better=False,
                build_model=lambda key: build_sde(cfg, key=key),
                loss=lambda regularizer: _Loss(span, d.obs_dt, cfg.model.estimator, regularizer),
                data=paths, evaluators=evaluators)  # fmt: skip


@register("solver_regularisation_sde", SolverRegularisationSDEConfig, check=_check)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """ERNODE for neural SDEs on the double well: NFE of adaptive sampling at equal accuracy."""
    return run_task(cfg, build_task(cfg), run_dir, resume)
