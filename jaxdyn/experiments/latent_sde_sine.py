"""A latent SDE on an irregularly sampled sine (Li et al. 2020, §7.1; torchsde's
`examples/latent_sde.py`).

Data. `num_obs` observations `x_k = A sin(2π ν t_k) + ε_k`, `ε_k ~ N(0, noise_std²)`, at
sorted uniform random times `t_k` in `obs_range`; `num_test` held-out noiseless points
`A sin(2π ν s_j)` at other uniform random times in `obs_range`.

Model. A `jaxdyn.models.LatentSDE` whose latent starts at `t0 = 0`, fitted to the one series
by maximising the ELBO estimated with `model.n_samples` posterior paths per step; the KL weight
rises linearly from `1/warmup` to 1 over `model.kl_warmup` steps (`kl_warmup`, read from a step
counter kept with the model). The default follows torchsde's `examples/latent_sde.py`
(`--data irregular_sine`) as closely as the model allows: a one-dimensional latent observed
directly (identity decoder) through a Laplace likelihood of scale 0.05; a fixed OU prior
`dz = θ(μ - z) dt + σ dW` with θ = 1, μ = 0, σ = 0.5 and `p(z0)` its stationary law
`N(0, σ²/2θ)`; the posterior `dz = f(sin t, cos t, z) dt + σ dW` sharing the fixed diffusion,
`f` a tanh MLP whose last layer starts at zero; the path KL integrated on `[0, horizon]`, past
the last observation; Euler–Maruyama with dt = 0.01; Adam, lr 1e-2 decayed by 0.999 per step;
KL warm-up over 100 steps. Differences: `q(z0)` comes from the (backwards-GRU) encoder rather
than being a free parameter (the same thing for one series), the drift network is smaller
(`width` 64, torchsde 200), and there are fewer steps and posterior samples per step (2000 x 64
against 5000 x 512), to finish in a few minutes on 2 CPU cores. The earlier setup (learned OU
prior and per-dimension diffusion, posterior drift with the encoder's context and t, linear
decoder, Gaussian likelihood) is selectable: `model.prior=ou model.diffusion=learned
model.diffusion_scale=1.0 model.time_input=t model.posterior_context=true
model.activation=softplus model.zero_init=false model.decoder=linear model.likelihood=normal
model.latent_size=2 ...` (see configs/latent_sde_sine.yaml).

Evaluation. `eval_samples` posterior paths on `[0, horizon]`, decoded. The 95% band is the
pointwise 2.5%–97.5% quantile range of the decoded posterior paths (the decoder mean, without
the observation noise, which is `obs_std`). Target: the band covers at least
`target.coverage` of the held-out noiseless points. Also recorded: the band's mean width on
the observation range and the RMSE of the pointwise posterior median against the truth there.
"""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PRNGKeyArray, PyTree
from omegaconf import DictConfig

from ..config import TrainConfig, at_least, choice, positive
from ..models.latent_sde import (
    ACTIVATIONS,
    DECODERS,
    DIFFUSIONS,
    LIKELIHOODS,
    PRIORS,
    TIME_INPUTS,
    LatentSDE,
)
from ..plotting import Figure, loss_curve
from ..solve import SDE_SOLVERS
from ..train import (
    FitResult,
    StepCounted,
    counting_steps,
    fit,
    kl_warmup,
    make_optimizer,
    read_metrics,
)
from ._registry import register


def _interval(values) -> bool:
    return len(values) == 2 and 0 <= values[0] < values[1]


@dataclasses.dataclass
class SineDataConfig:
    num_obs: int = at_least(16, 2)
    obs_range: list[float] = dataclasses.field(
        default_factory=lambda: [0.4, 1.6],
        metadata={"check": (_interval, "a list [low, high] with 0 <= low < high")},
    )
    amplitude: float = positive(0.8)
    frequency: float = positive(1.0)  # x = amplitude · sin(2π · frequency · t)
    noise_std: float = at_least(0.01, 0.0)
    horizon: float = positive(2.0)  # the posterior is shown on [0, horizon]
    num_test: int = at_least(200, 1)  # held-out noiseless points in obs_range


@dataclasses.dataclass
class LatentSDEModelConfig:
    """A `LatentSDE` and its ELBO (see `LatentSDE`); the defaults are generic (learned prior
    and diffusion, context, linear decoder); each experiment sets its own."""

    latent_size: int = at_least(2, 1)
    context_size: int = at_least(8, 1)
    hidden_size: int = at_least(16, 1)
    width: int = at_least(32, 1)
    depth: int = at_least(2, 0)
    prior: str = choice("ou", PRIORS)
    time_input: str = choice("t", TIME_INPUTS)  # the posterior drift's time features
    posterior_context: bool = True  # the posterior drift sees the encoder's context
    activation: str = choice("softplus", tuple(ACTIVATIONS))  # of the drift networks
    zero_init: bool = False  # the posterior drift's last layer starts at zero
    diffusion: str = choice("learned", DIFFUSIONS)
    diffusion_scale: float = positive(1.0)  # the learned diffusion's bound, or the constant
    ou_rate: float = positive(1.0)  # the OU prior's rate (its start when learned)
    decoder: str = choice("linear", DECODERS)
    likelihood: str = choice("normal", LIKELIHOODS)
    obs_std: float = positive(0.05)  # the likelihood's scale (torchsde: 0.05)
    dt0: float = positive(0.02)
    solver: str = choice("euler", SDE_SOLVERS)
    n_samples: int = at_least(32, 1)  # posterior paths per ELBO estimate
    kl_warmup: int = at_least(500, 0)  # steps of linear KL-weight warm-up
    kl_to_horizon: bool = False  # integrate the path KL to the horizon, past the data


@dataclasses.dataclass
class LatentSDETrainConfig(TrainConfig):
    """`TrainConfig` plus `lr_decay`: when set, the learning rate is `lr · lr_decay^step`
    (torchsde's `ExponentialLR`), replacing `schedule`."""

    lr_decay: float | None = dataclasses.field(
        default=None, metadata={"check": (lambda v: 0 < v <= 1, "in (0, 1]")}
    )


@dataclasses.dataclass
class SineEvaluationConfig:
    eval_samples: int = at_least(512, 2)
    grid_points: int = at_least(201, 2)  # on [0, horizon], for the figure
    plot_paths: int = at_least(20, 0)


@dataclasses.dataclass
class SineTargetConfig:
    coverage: float = dataclasses.field(
        default=0.9, metadata={"check": (lambda v: 0 <= v <= 1, "in [0, 1]")}
    )


@dataclasses.dataclass
class LatentSDESineConfig:
    experiment: str = "latent_sde_sine"
    seed: int = 0
    data: SineDataConfig = dataclasses.field(default_factory=SineDataConfig)
    model: LatentSDEModelConfig = dataclasses.field(
        default_factory=lambda: LatentSDEModelConfig(
            latent_size=1,
            prior="ou_fixed",
            time_input="sincos",
            posterior_context=False,
            activation="tanh",
            zero_init=True,
            width=64,
            diffusion="constant",
            diffusion_scale=0.5,
            ou_rate=1.0,
            decoder="identity",
            likelihood="laplace",
            obs_std=0.05,
            dt0=0.01,
            n_samples=64,
            kl_warmup=100,
            kl_to_horizon=True,
        )  # fmt: skip
    )
    evaluation: SineEvaluationConfig = dataclasses.field(default_factory=SineEvaluationConfig)
    target: SineTargetConfig = dataclasses.field(default_factory=SineTargetConfig)
    train: LatentSDETrainConfig = dataclasses.field(
        default_factory=lambda: LatentSDETrainConfig(
            steps=2000,
            batch_size=None,
            optimizer="adam",
            lr=1e-2,
            schedule="constant",
            chunk=250,
            lr_decay=0.999,
        )  # fmt: skip
    )


def build_latent_sde(m: DictConfig, data_size: int, key: PRNGKeyArray) -> LatentSDE:
    """The `LatentSDE` a `model` config section describes."""
    return LatentSDE(
        data_size, m.latent_size, context_size=m.context_size, hidden_size=m.hidden_size,
        width=m.width, depth=m.depth, prior=m.prior, time_input=m.time_input,
        posterior_context=m.posterior_context, activation=m.activation, zero_init=m.zero_init,
        diffusion=m.diffusion, diffusion_scale=m.diffusion_scale, ou_rate=m.ou_rate,
        decoder=m.decoder, likelihood=m.likelihood, obs_std=m.obs_std, dt0=m.dt0,
        solver=m.solver, on_failure="nan", key=key,
    )  # fmt: skip


def fit_with_kl_warmup(
    loss_fn, model: LatentSDE, data: PyTree, train: DictConfig, *, key: PRNGKeyArray,
    run_dir: Path, resume: bool,
) -> FitResult:  # fmt: skip
    """`fit` on a `StepCounted` model, the optimiser advancing the counter, so that
    `loss_fn(model, step, batch, key)` can compute its KL weight from the step; the run's
    checkpoint holds the counter, so a resumed run continues the warm-up where it stopped.
    `train.lr_decay` (when the section has it and it is set) decays the learning rate
    exponentially per step instead of `train.schedule`."""

    def counted_loss(counted: StepCounted, batch, key):
        return loss_fn(counted.model, jax.lax.stop_gradient(counted.step), batch, key)

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
    result = fit(
        counted_loss, StepCounted(model), data, counting_steps(optimizer), steps=train.steps,
        batch_size=train.batch_size, key=key, chunk=train.chunk, has_aux=True, run_dir=run_dir,
        checkpoint_every=train.checkpoint_every, resume=resume,
    )  # fmt: skip
    return result


def _sine(d: DictConfig, t: np.ndarray) -> np.ndarray:
    return d.amplitude * np.sin(2 * np.pi * d.frequency * t)


@register("latent_sde_sine", LatentSDESineConfig)
def run(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """A latent SDE on 16 irregular noisy observations of a sine: posterior band coverage."""
    d, m, e = cfg.data, cfg.model, cfg.evaluation
    low, high = d.obs_range
    if high > d.horizon:
        raise ValueError(f"data.obs_range {list(d.obs_range)} must lie in [0, {d.horizon}]")
    rng = np.random.default_rng(cfg.seed)
    obs_ts = np.sort(rng.uniform(low, high, d.num_obs)).astype(np.float32)
    if np.any(np.diff(obs_ts) <= 0):
        raise ValueError("two observation times coincide; change the seed")
    xs = (_sine(d, obs_ts) + d.noise_std * rng.standard_normal(d.num_obs)).astype(np.float32)
    xs = xs[:, None]
    test_ts = np.sort(rng.uniform(low, high, d.num_test)).astype(np.float32)
    model_key, train_key, eval_key = jax.random.split(jax.random.key(cfg.seed), 3)
    model = build_latent_sde(m, 1, model_key)

    def loss_fn(model: LatentSDE, step, batch, key):
        weight = kl_warmup(step, m.kl_warmup)
        out = model.elbo(obs_ts, batch[0], key=key, n_samples=m.n_samples, kl_weight=weight,
                         t0=0.0, t1=d.horizon if m.kl_to_horizon else None)  # fmt: skip
        metrics = {"elbo": out.log_likelihood - out.kl_z0 - out.kl_path, "kl_weight": weight,
                   "log_likelihood": out.log_likelihood, "kl_path": out.kl_path,
                   "kl_z0": out.kl_z0}  # fmt: skip
        return -out.value, metrics

    result = fit_with_kl_warmup(loss_fn, model, jnp.asarray(xs)[None], cfg.train, key=train_key,
                                run_dir=run_dir, resume=resume)  # fmt: skip
    model = result.model.model

    # The posterior on [0, horizon], at the plot grid and the held-out times together.
    grid = np.linspace(0.0, d.horizon, e.grid_points).astype(np.float32)
    times = np.union1d(np.union1d(grid, test_ts), obs_ts)  # obs_ts: observed_in_band
    sample = eqx.filter_jit(
        lambda model, key: model.decode(
            model.sample_posterior(
                times, jnp.asarray(xs), obs_ts, key=key, n_samples=e.eval_samples
            )  # fmt: skip
        )[..., 0]
    )
    paths = np.asarray(sample(model, eval_key))  # (samples, time)
    lower, median, upper = np.quantile(paths, [0.025, 0.5, 0.975], axis=0)
    at_test = np.searchsorted(times, test_ts)
    truth_test = _sine(d, test_ts)
    inside = (lower[at_test] <= truth_test) & (truth_test <= upper[at_test])
    coverage = float(np.mean(inside))
    in_range = (times >= low) & (times <= high)
    width = float(np.mean(upper[in_range] - lower[in_range]))
    rmse = float(np.sqrt(np.mean((median[at_test] - truth_test) ** 2)))
    at_obs = np.searchsorted(times, obs_ts)
    on_grid = np.searchsorted(times, grid)

    _posterior_figure(run_dir, d, grid, paths[:, on_grid], lower[on_grid], upper[on_grid],
                      obs_ts, xs[:, 0], test_ts, e.plot_paths, coverage)  # fmt: skip
    rows = read_metrics(run_dir / "metrics.jsonl")
    if rows:
        loss_curve(np.asarray([r["loss"] for r in rows]), run_dir / "loss.png",
                   title="latent_sde_sine: -(log-likelihood - KL weight x KL)")  # fmt: skip
    final = rows[-1] if rows else {}
    return {
        "target": {"coverage": float(cfg.target.coverage)},
        "target_met": bool(coverage >= cfg.target.coverage),
        "coverage": coverage,
        "band": "pointwise 2.5%-97.5% quantiles of decoded posterior paths (no obs. noise)",
        "band_mean_width": width,
        "median_rmse": rmse,
        "observed_in_band": float(
            np.mean((lower[at_obs] <= xs[:, 0]) & (xs[:, 0] <= upper[at_obs]))
        ),  # fmt: skip
        "final_elbo": _float(final.get("elbo")),
        "final_log_likelihood": _float(final.get("log_likelihood")),
        "final_kl_z0": _float(final.get("kl_z0")),
        "final_kl_path": _float(final.get("kl_path")),
        "num_obs": int(d.num_obs),
        "num_test": int(d.num_test),
        "steps": result.step,
    }


def _float(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _posterior_figure(run_dir, d, grid, paths, lower, upper, obs_ts, xs, test_ts, n_paths,
                      coverage) -> None:  # fmt: skip
    fig = Figure(figsize=(8, 4.2))
    ax = fig.subplots()
    ax.axvspan(*d.obs_range, color="0.95", lw=0, label="observation range")
    ax.fill_between(grid, lower, upper, color="C0", alpha=0.25, lw=0,
                    label="95% band (2.5-97.5% quantiles)")  # fmt: skip
    for i in range(min(n_paths, paths.shape[0])):
        ax.plot(grid, paths[i], color="C0", lw=0.6, alpha=0.5,
                label="posterior samples" if i == 0 else None)  # fmt: skip
    fine = np.linspace(0, d.horizon, 400)
    ax.plot(fine, _sine(d, fine), "k--", lw=1.2, label="truth")
    ax.plot(test_ts, _sine(d, test_ts), "k.", ms=2, alpha=0.5, label="held-out points")
    ax.plot(obs_ts, xs, "o", color="C3", ms=5, label="observations")
    ax.set(xlabel="t", ylabel="x", title=f"latent SDE posterior: held-out coverage {coverage:.0%}")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(run_dir / "posterior.png", dpi=120)
